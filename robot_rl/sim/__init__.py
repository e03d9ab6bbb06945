"""Simulation: the tabletop scene, tasks, IK and the Gymnasium envs.

Importing this package registers ``robot_rl/Reach-v0``, ``robot_rl/Push-v0`` and
``robot_rl/Lift-v0`` with Gymnasium (without importing MuJoCo until one is made).
"""

import gymnasium as gym

ENV_IDS = {
    "reach": "robot_rl/Reach-v0",
    "push": "robot_rl/Push-v0",
    "lift": "robot_rl/Lift-v0",
}

for _task, _env_id in ENV_IDS.items():
    if _env_id not in gym.registry:
        gym.register(id=_env_id, entry_point="robot_rl.sim.env:RobotEnv", kwargs={"task": _task})
