"""Physics backends that step many worlds of one model together.

:mod:`robot_rl.sim.backends.warp` holds :class:`~robot_rl.sim.backends.warp.WarpBackend`
(MuJoCo Warp); it is imported lazily because ``warp``/``mujoco_warp`` are an optional extra.
"""
