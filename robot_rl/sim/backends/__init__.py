"""Physics backends that step many worlds of one model together.

:mod:`robot_rl.sim.backends.cpu` is the ``cpu`` physics of
:class:`~robot_rl.sim.batched.BatchedSim` (``mujoco.rollout`` on host threads);
:mod:`robot_rl.sim.backends.warp_physics` its ``warp`` physics, over
:class:`~robot_rl.sim.backends.warp.WarpBackend` (MuJoCo Warp), which is imported lazily
because ``warp``/``mujoco_warp`` are an optional extra. Both share the state layout of
:mod:`robot_rl.sim.backends.state_layout`.
"""
