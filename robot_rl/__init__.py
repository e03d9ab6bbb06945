"""robot_rl: sim-to-real learning for a 7-DoF arm with a gripper."""

import ctypes.util as _ctypes_util
import os as _os

# MuJoCo picks its OpenGL backend once, when first imported. On a headless machine choose
# one that can work before anything imports mujoco, unless the user already chose:
# OSMesa (software, always works where the library is installed), else EGL (GPU drivers).
# Where neither exists, rendering fails and callers skip videos (see robot_rl.sim.rendering).
if "MUJOCO_GL" not in _os.environ and not _os.environ.get("DISPLAY"):
    if _ctypes_util.find_library("OSMesa"):
        _os.environ["MUJOCO_GL"] = "osmesa"
        _os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
    elif _ctypes_util.find_library("EGL"):
        _os.environ["MUJOCO_GL"] = "egl"
        _os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

__version__ = "0.1.0"
