"""The tabletop scene: the MJCF model, every id looked up once by name, and measurements.

Everything that needs to know a name in the MJCF (joints, sites, geoms, the mocap goal)
goes through here, so the rest of ``robot_rl.sim`` works with indices and arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from robot_rl.arrays import Array, array_namespace, const
from robot_rl.config.sim import RobotConfig
from robot_rl.paths import SIM_ASSETS_DIR
from robot_rl.safety.description import RobotDescription, load_description
from robot_rl.safety.limits import RobotLimits

GRIPPER_JOINTS = ("finger_joint1", "finger_joint2")
#: The cube's half edge length in the scene (a 4 cm cube), metres.
CUBE_HALF_SIZE_M = 0.02


def _id(model: mujoco.MjModel, obj: mujoco.mjtObj, name: str) -> int:
    i = mujoco.mj_name2id(model, obj, name)
    if i < 0:
        raise ValueError(f"MJCF model has no {obj.name.removeprefix('mjOBJ_').lower()} '{name}'")
    return i


@dataclass(frozen=True)
class Measurements:
    """What the tasks need to know about the scene at one instant (world frame, metres)."""

    ee_pos: np.ndarray  # (3,)
    cube_pos: np.ndarray  # (3,)
    goal: np.ndarray  # (3,)
    gripper_width_m: float
    left_pad_touches_cube: bool | np.ndarray
    right_pad_touches_cube: bool | np.ndarray


class TabletopScene:
    """Loads the scene MJCF and resolves names to ids.

    Args:
        robot: which scene file, limits file and TCP site to use.
        physics_dt_s: physics step; overrides the MJCF's ``timestep``.
    """

    def __init__(self, robot: RobotConfig, physics_dt_s: float = 0.002) -> None:
        path = SIM_ASSETS_DIR / robot.scene_xml
        if not path.exists():
            raise FileNotFoundError(f"robot.scene_xml: no MJCF at sim_assets/{robot.scene_xml}")
        self.model = mujoco.MjModel.from_xml_path(str(path))
        self.model.opt.timestep = physics_dt_s
        self.description: RobotDescription = load_description(robot.description)
        self.limits: RobotLimits = self.description.limits
        m = self.model
        joints = [_id(m, mujoco.mjtObj.mjOBJ_JOINT, n) for n in self.limits.joint_names]
        self.arm_qpos_adr = np.array([m.jnt_qposadr[j] for j in joints])
        self.arm_dof_adr = np.array([m.jnt_dofadr[j] for j in joints])
        self.arm_actuators = np.array(
            [_id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, f"act_{n}") for n in self.limits.joint_names]
        )
        self.gripper_actuator = _id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, "act_gripper")
        fingers = [_id(m, mujoco.mjtObj.mjOBJ_JOINT, n) for n in GRIPPER_JOINTS]
        self.finger_qpos_adr = np.array([m.jnt_qposadr[j] for j in fingers])
        self.finger_dof_adr = np.array([m.jnt_dofadr[j] for j in fingers])
        self.tcp_site = _id(m, mujoco.mjtObj.mjOBJ_SITE, robot.tcp_site)
        cube_joint = _id(m, mujoco.mjtObj.mjOBJ_JOINT, "cube_joint")
        self.cube_qpos_adr = int(m.jnt_qposadr[cube_joint])
        self.cube_dof_adr = int(m.jnt_dofadr[cube_joint])
        self.cube_body = _id(m, mujoco.mjtObj.mjOBJ_BODY, "cube")
        self.cube_geom = _id(m, mujoco.mjtObj.mjOBJ_GEOM, "cube")
        self.left_pad = _id(m, mujoco.mjtObj.mjOBJ_GEOM, "left_pad")
        self.right_pad = _id(m, mujoco.mjtObj.mjOBJ_GEOM, "right_pad")
        self.goal_mocap = int(m.body_mocapid[_id(m, mujoco.mjtObj.mjOBJ_BODY, "goal")])
        self.left_pad_sensor = int(
            m.sensor_adr[_id(m, mujoco.mjtObj.mjOBJ_SENSOR, "left_pad_cube")]
        )
        self.right_pad_sensor = int(
            m.sensor_adr[_id(m, mujoco.mjtObj.mjOBJ_SENSOR, "right_pad_cube")]
        )
        self.arm_pos_min = m.jnt_range[joints, 0].copy()
        self.arm_pos_max = m.jnt_range[joints, 1].copy()
        self.gripper_width_max_m = 2 * float(m.jnt_range[fingers[0], 1])
        # Position servos: force = kp (ctrl - q) - kv qdot, clamped to the force range.
        act = self.arm_actuators
        self._kp, self._kv = m.actuator_gainprm[act, 0].copy(), -m.actuator_biasprm[act, 2].copy()
        limited = m.actuator_forcelimited[act].astype(bool)
        self._force_lo = np.where(limited, m.actuator_forcerange[act, 0], -np.inf)
        self._force_hi = np.where(limited, m.actuator_forcerange[act, 1], np.inf)

    def arm_torque(self, q: Array, dq: Array, ctrl: Array) -> Array:
        """Joint torques (..., 7) the arm's servos apply at joint positions ``q``,
        velocities ``dq`` and position targets ``ctrl`` (the servo frame): what a torque
        sensor measures in sim. Array-generic (numpy or torch)."""
        xp = array_namespace(q)
        force = const(self._kp, q) * (ctrl - q) - const(self._kv, q) * dq
        return xp.clip(force, const(self._force_lo, q), const(self._force_hi, q))

    def new_data(self) -> mujoco.MjData:
        return mujoco.MjData(self.model)

    # --- reading -------------------------------------------------------------------------
    def gripper_width(self, data: mujoco.MjData) -> float:
        return float(data.qpos[self.finger_qpos_adr].sum())

    def cube_pose(self, data: mujoco.MjData) -> tuple[np.ndarray, np.ndarray]:
        a = self.cube_qpos_adr
        quat = data.qpos[a + 3 : a + 7].copy()
        # The cube starts upright (identity orientation): keep the sign on that side.
        return data.qpos[a : a + 3].copy(), (quat if quat[0] >= 0 else -quat)

    def goal(self, data: mujoco.MjData) -> np.ndarray:
        return data.mocap_pos[self.goal_mocap].copy()

    def pad_contacts(self, sensordata: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Whether the left and right finger pads touch the cube, from sensor data
        (``data.sensordata``, or rows of it for many worlds). Like all contact data, it
        comes from the collision pass at the start of the last physics step."""
        return (
            sensordata[..., self.left_pad_sensor] > 0,
            sensordata[..., self.right_pad_sensor] > 0,
        )

    def measure(self, data: mujoco.MjData, ee_pos: np.ndarray) -> Measurements:
        """The task's view of the scene; ``ee_pos`` comes from the caller's kinematics."""
        left, right = self.pad_contacts(data.sensordata)
        return Measurements(
            ee_pos=ee_pos,
            cube_pos=self.cube_pose(data)[0],
            goal=self.goal(data),
            gripper_width_m=self.gripper_width(data),
            left_pad_touches_cube=left,
            right_pad_touches_cube=right,
        )

    # --- writing -------------------------------------------------------------------------
    def set_cube_pose(self, data: mujoco.MjData, pos: np.ndarray, yaw_rad: float = 0.0) -> None:
        a = self.cube_qpos_adr
        data.qpos[a : a + 3] = pos
        data.qpos[a + 3 : a + 7] = (np.cos(yaw_rad / 2), 0.0, 0.0, np.sin(yaw_rad / 2))
        data.qvel[self.cube_dof_adr : self.cube_dof_adr + 6] = 0.0

    def set_goal(self, data: mujoco.MjData, pos: np.ndarray) -> None:
        data.mocap_pos[self.goal_mocap] = pos
