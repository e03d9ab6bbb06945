"""The authored MJCF against the published Panda kinematics (modified DH, Craig)."""

import mujoco
import numpy as np
import pytest

from robot_rl.config.schema import RobotConfig
from robot_rl.kinematics import SerialChain, mat_to_quat, quat_to_mat
from robot_rl.sim.ik import DifferentialIK, quat_error
from robot_rl.sim.scene import TabletopScene

# (a_{i-1}, d_i, alpha_{i-1}) for joints 1..7, then the flange (theta = 0).
PANDA_MDH = [
    (0.0, 0.333, 0.0),
    (0.0, 0.0, -np.pi / 2),
    (0.0, 0.316, np.pi / 2),
    (0.0825, 0.0, np.pi / 2),
    (-0.0825, 0.384, -np.pi / 2),
    (0.0, 0.0, np.pi / 2),
    (0.088, 0.0, np.pi / 2),
]
FLANGE_D = 0.107
TCP_OFFSET = 0.1034
HAND_YAW = -np.pi / 4


def mdh(a, d, alpha, theta):
    ca, sa, ct, st = np.cos(alpha), np.sin(alpha), np.cos(theta), np.sin(theta)
    return np.array(
        [
            [ct, -st, 0, a],
            [st * ca, ct * ca, -sa, -d * sa],
            [st * sa, ct * sa, ca, d * ca],
            [0, 0, 0, 1],
        ]
    )


def published_fk(q):
    """Flange and TCP poses from the datasheet parameters (independent of the MJCF)."""
    t = np.eye(4)
    for (a, d, alpha), qi in zip(PANDA_MDH, q, strict=True):
        t = t @ mdh(a, d, alpha, qi)
    flange = t @ mdh(0, FLANGE_D, 0, 0)
    tcp = flange @ mdh(0, 0, 0, HAND_YAW) @ mdh(0, TCP_OFFSET, 0, 0)
    return flange, tcp


@pytest.fixture(scope="module")
def scene():
    return TabletopScene(RobotConfig())


def _configs(scene, n, seed=0):
    rng = np.random.default_rng(seed)
    known = [
        np.zeros(7).clip(scene.arm_pos_min, scene.arm_pos_max),
        scene.limits.home_joint_pos_rad,
        np.array([0.5, 0.3, -0.4, -1.5, 0.7, 2.0, -1.0]),
    ]
    return known + [rng.uniform(scene.arm_pos_min, scene.arm_pos_max) for _ in range(n)]


def test_forward_kinematics_matches_published_dh(scene):
    data = scene.new_data()
    flange_site = mujoco.mj_name2id(scene.model, mujoco.mjtObj.mjOBJ_SITE, "flange")
    for q in _configs(scene, 30):
        data.qpos[scene.arm_qpos_adr] = q
        mujoco.mj_kinematics(scene.model, data)
        flange, tcp = published_fk(q)
        np.testing.assert_allclose(data.site_xpos[flange_site], flange[:3, 3], atol=1e-6)
        np.testing.assert_allclose(
            data.site_xmat[flange_site].reshape(3, 3), flange[:3, :3], atol=1e-6
        )
        np.testing.assert_allclose(data.site_xpos[scene.tcp_site], tcp[:3, 3], atol=1e-6)
        np.testing.assert_allclose(
            data.site_xmat[scene.tcp_site].reshape(3, 3), tcp[:3, :3], atol=1e-6
        )


def test_ready_pose_is_the_known_franka_ready_pose(scene):
    _, tcp = published_fk(scene.limits.home_joint_pos_rad)
    np.testing.assert_allclose(tcp[:3, 3], [0.307, 0.0, 0.487], atol=2e-3)
    np.testing.assert_allclose(tcp[:3, 2], [0, 0, -1], atol=1e-5)  # pointing down


def test_model_limits_match_datasheet(scene):
    lim = scene.limits
    np.testing.assert_allclose(scene.arm_pos_min, lim.joint_pos_min_rad)
    np.testing.assert_allclose(scene.arm_pos_max, lim.joint_pos_max_rad)
    force = scene.model.actuator_forcerange[scene.arm_actuators]
    np.testing.assert_allclose(force[:, 1], lim.joint_torque_max_nm)
    np.testing.assert_allclose(force[:, 0], -lim.joint_torque_max_nm)
    assert scene.gripper_width_max_m == pytest.approx(lim.gripper_width_max_m)
    assert scene.model.opt.timestep == pytest.approx(0.002)


def _ik(scene, **kwargs):
    chain = SerialChain(scene.model, scene.limits.joint_names, "tcp")
    return DifferentialIK(
        chain, scene.arm_pos_min, scene.arm_pos_max, scene.limits.home_joint_pos_rad, **kwargs
    )


def test_ik_reaches_workspace_targets_within_5mm(scene):
    ik = _ik(scene)
    from robot_rl.sim.env import EE_DOWN_QUAT
    from robot_rl.sim.tasks.base import WORKSPACE_MAX_M, WORKSPACE_MIN_M

    rng = np.random.default_rng(0)
    errors = []
    for _ in range(100):
        target = rng.uniform(WORKSPACE_MIN_M, WORKSPACE_MAX_M)
        q = ik.solve(scene.limits.home_joint_pos_rad, target, EE_DOWN_QUAT, iters=200)
        assert np.all(q >= scene.arm_pos_min) and np.all(q <= scene.arm_pos_max)
        _, tcp = published_fk(q)  # judged by the datasheet kinematics, not the solver
        errors.append(np.linalg.norm(tcp[:3, 3] - target))
        assert tcp[2, 2] < -0.999  # still pointing down
    assert max(errors) < 0.005, f"worst IK error {max(errors) * 1000:.2f} mm"


def test_ik_keeps_unreachable_targets_inside_joint_limits(scene):
    ik = _ik(scene, limit_margin_rad=0.02)
    for target in ([2.0, 0, 0.3], [0.0, 0.0, -0.5], [0.05, 0.05, 0.2]):
        q = ik.solve(scene.limits.home_joint_pos_rad, np.array(target), iters=300)
        assert np.all(q >= scene.arm_pos_min + 0.02 - 1e-12)
        assert np.all(q <= scene.arm_pos_max - 0.02 + 1e-12)


def test_batched_chain_kinematics_match_mujoco(scene):
    chain = SerialChain(scene.model, scene.limits.joint_names, "tcp")
    q = np.array(_configs(scene, 40, seed=3))
    pos, rot, jac = chain.jacobian(q)
    data = scene.new_data()
    jacp, jacr = np.zeros((3, scene.model.nv)), np.zeros((3, scene.model.nv))
    for i, qi in enumerate(q):
        data.qpos[scene.arm_qpos_adr] = qi
        mujoco.mj_kinematics(scene.model, data)
        mujoco.mj_comPos(scene.model, data)
        mujoco.mj_jacSite(scene.model, data, jacp, jacr, scene.tcp_site)
        np.testing.assert_allclose(pos[i], data.site_xpos[scene.tcp_site], atol=1e-12)
        np.testing.assert_allclose(rot[i], data.site_xmat[scene.tcp_site].reshape(3, 3), atol=1e-12)
        np.testing.assert_allclose(jac[i, :3], jacp[:, scene.arm_dof_adr], atol=1e-12)
        np.testing.assert_allclose(jac[i, 3:], jacr[:, scene.arm_dof_adr], atol=1e-12)


def test_quaternion_helpers_round_trip_and_agree_with_mujoco():
    rng = np.random.default_rng(0)
    quats = rng.normal(size=(200, 4))
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    quats[quats[:, 0] < 0] *= -1
    mats = quat_to_mat(quats)
    np.testing.assert_allclose(mat_to_quat(mats), quats, atol=1e-12)
    for qa, qb in zip(quats[:50], quats[50:100], strict=True):
        local = np.zeros(3)
        mujoco.mju_subQuat(local, qa, qb)  # rotation from qb to qa, in qb's frame
        np.testing.assert_allclose(quat_error(qa, qb), quat_to_mat(qb) @ local, atol=1e-9)


def test_batched_ik_solves_each_world_independently(scene):
    ik = _ik(scene)
    rng = np.random.default_rng(1)
    from robot_rl.sim.env import EE_DOWN_QUAT
    from robot_rl.sim.tasks.base import WORKSPACE_MAX_M, WORKSPACE_MIN_M

    targets = rng.uniform(WORKSPACE_MIN_M, WORKSPACE_MAX_M, (16, 3))
    q0 = np.tile(scene.limits.home_joint_pos_rad, (16, 1))
    batch = ik.solve(q0, targets, EE_DOWN_QUAT, iters=3)
    one_by_one = np.array([ik.solve(q0[i], targets[i], EE_DOWN_QUAT, iters=3) for i in range(16)])
    np.testing.assert_array_equal(batch, one_by_one)


def test_torch_path_reuses_its_device_constants(scene):
    """Constants reach a torch device once (``arrays.const`` caches them by identity), so
    the per-step code neither re-uploads them nor grows the cache."""
    import torch

    from robot_rl import arrays

    chain = SerialChain(scene.model, scene.limits.joint_names, "tcp")
    q = torch.tensor([[0.9, 0.1, -0.3, 0.3]])
    joints = torch.zeros(2, 7)
    quat_to_mat(q), chain.jacobian(joints)
    n = len(arrays._CONSTS)
    for _ in range(3):
        quat_to_mat(q), chain.jacobian(joints)
    assert len(arrays._CONSTS) == n
