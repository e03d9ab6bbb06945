"""robot_rl: sim-to-real learning for a 7-DoF arm with a gripper."""

import os as _os

# MuJoCo picks its OpenGL backend when first imported. On a headless machine without
# EGL, OSMesa is what works; choose it before anything imports mujoco, unless the user
# already chose.
if "MUJOCO_GL" not in _os.environ and not _os.environ.get("DISPLAY"):
    _os.environ["MUJOCO_GL"] = "osmesa"
    _os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")

__version__ = "0.1.0"
