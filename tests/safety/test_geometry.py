"""The filter's distances, computed in array code for many postures at once, against
MuJoCo's own mj_geomDistance on the Panda's MJCF."""

import mujoco
import numpy as np
import pytest
import yaml

from robot_rl.paths import HARDWARE_DIR
from robot_rl.safety.description import load_description
from robot_rl.safety.geometry import ArmGeometry


@pytest.fixture(scope="module")
def panda():
    d = load_description("franka_panda/robot.yaml")
    geo = ArmGeometry(d, d.envelope("nominal"), 0.05)
    model = mujoco.MjModel.from_xml_path(str(d.mjcf_path))
    return d, geo, model


def _postures(d, n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(d.limits.joint_pos_min_rad, d.limits.joint_pos_max_rad, (n, 7))


def test_link_distances_match_mj_geom_distance(panda):
    d, geo, model = panda
    data = mujoco.MjData(model)
    collision = [
        g for g in range(model.ngeom) if model.geom_contype[g] or model.geom_conaffinity[g]
    ]
    q = _postures(d, 60)
    ours = geo.pair_distances(q)  # all postures at once
    capsules = boxes = 0
    fromto = np.zeros(6)
    for k in range(len(q)):
        data.qpos[:7] = q[k]
        data.qpos[7:9] = 0.04  # fingers open, as the filter takes them
        mujoco.mj_kinematics(model, data)
        for p, (i, j) in enumerate(zip(geo._pair_i, geo._pair_j, strict=True)):
            gi, gj = collision[i], collision[j]
            theirs = mujoco.mj_geomDistance(model, data, gi, gj, 10.0, fromto)
            if mujoco.mjtGeom.mjGEOM_BOX in (model.geom_type[gi], model.geom_type[gj]):
                # A box is taken by the capsule around it: never farther than the truth.
                assert ours[k, p] <= theirs + 1e-9
                boxes += 1
            else:
                assert ours[k, p] == pytest.approx(theirs, abs=1e-9)
                capsules += 1
    assert capsules > 1000 and boxes > 100


def test_table_margins_are_the_geoms_lowest_points(tmp_path):
    raw = yaml.safe_load((HARDWARE_DIR / "franka_panda/robot.yaml").read_text())
    raw.update(table_clearance_m=0.0, finger_table_clearance_m=0.0)
    path = tmp_path / "robot.yaml"
    path.write_text(yaml.safe_dump(raw))
    d = load_description(path)
    geo = ArmGeometry(d, d.envelope("nominal"), 0.05)
    model = mujoco.MjModel.from_xml_path(str(d.mjcf_path))
    data = mujoco.MjData(model)
    q = _postures(d, 20, seed=1)
    ours = geo.table_margins(q).min(axis=-1)  # with no clearance: the lowest point's height
    base = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "link0")
    for k in range(len(q)):
        data.qpos[:7] = q[k]
        data.qpos[7:9] = 0.04
        mujoco.mj_kinematics(model, data)
        lowest = np.inf
        for g in range(model.ngeom):
            moving = model.geom_bodyid[g] != base
            if not (model.geom_contype[g] or model.geom_conaffinity[g]) or not moving:
                continue
            size, rot = model.geom_size[g], data.geom_xmat[g].reshape(3, 3)
            if model.geom_type[g] == mujoco.mjtGeom.mjGEOM_BOX:
                low = data.geom_xpos[g][2] - np.abs(rot[2]) @ size
            else:  # capsule: its lower end's sphere
                low = data.geom_xpos[g][2] - abs(rot[2, 2]) * size[1] - size[0]
            lowest = min(lowest, low)
        assert ours[k] == pytest.approx(lowest - d.table_height_m, abs=1e-9)
