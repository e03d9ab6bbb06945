"""The safety filter in the simulator: a scripted policy that drives the hand into the
table, or a joint into its stop, is held off, and the report names the constraint."""

import mujoco
import numpy as np

from robot_rl.config.schema import SimConfig
from robot_rl.sim.env import RobotEnv


def _lowest_pad_z(env):
    """Lowest point of the finger pads (boxes) in the physics, metres."""
    m, d = env.model, env.data
    low = np.inf
    for g in (env.scene.left_pad, env.scene.right_pad):
        corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)])
        pts = d.geom_xpos[g] + (corners * m.geom_size[g]) @ d.geom_xmat[g].reshape(3, 3).T
        low = min(low, pts[:, 2].min())
    return low


def _drive_down(safety_filter):
    # Joint 2 forward at full speed bends the arm over, hand first into the table (the
    # end-effector actions cannot: the task's target box stops them above it).
    env = RobotEnv(
        "reach", action_mode="joint_delta", sim_config=SimConfig(safety_filter=safety_filter)
    )
    env.reset(seed=0)
    lowest, acted = np.inf, set()
    action = np.zeros(8)
    action[1], action[7] = 1.0, 1.0
    for _ in range(60):
        *_, info = env.step(action)
        mujoco.mj_kinematics(env.model, env.data)
        lowest = min(lowest, _lowest_pad_z(env))
        acted |= {k for k, v in info["safety"].items() if v}
    return lowest, acted


def test_hand_driven_into_the_table_is_held_off():
    lowest_off, _ = _drive_down(False)
    assert lowest_off < 0.0  # without the filter the pads press into the table top
    lowest_on, acted = _drive_down(True)
    clearance = RobotEnv("reach").scene.description.finger_table_clearance_m
    # The filter holds the commanded posture at the clearance; the servo tracks it to
    # within a millimetre or two (and the pads never press into the table).
    assert lowest_on > 0.0 and lowest_on > clearance - 0.002
    assert "table" in acted


def test_joint_driven_into_its_stop_brakes_in_time_within_its_limits():
    env = RobotEnv("reach", action_mode="joint_delta")
    desc = env.scene.description
    lo = desc.limits.joint_pos_min_rad[3] + desc.joint_pos_margin_rad
    env.reset(seed=0)
    commands, acted = [env._q_cmd[3]], set()
    action = np.zeros(8)
    action[3], action[7] = -1.0, 1.0  # joint 4 down at full speed, gripper open
    for _ in range(120):
        *_, info = env.step(action)
        commands.append(env._q_cmd[3])
        acted |= {k for k, v in info["safety"].items() if v}
    commands = np.array(commands)
    assert commands.min() >= lo - 1e-9
    assert commands[-1] < lo + 0.05 and commands[-1] == commands[-2]  # there, at rest
    dt = env.control_dt_s
    acc = np.diff(commands, 2) / dt**2
    # At 1 rad/s, the fastest joint_delta command, stopping in one 50 ms step would take
    # 20 rad/s^2; joint 4 may brake at 12.5, so the filter starts braking early.
    assert np.abs(acc).max() <= desc.limits.joint_acc_max_rad_s2[3] * (1 + 1e-9)
    assert "stop" in acted
