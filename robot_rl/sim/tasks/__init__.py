"""Task registry: name -> Task class."""

from robot_rl.sim.tasks.base import Task
from robot_rl.sim.tasks.lift import LiftTask
from robot_rl.sim.tasks.push import PushTask
from robot_rl.sim.tasks.reach import ReachTask

TASKS: dict[str, type[Task]] = {t.name: t for t in (ReachTask, PushTask, LiftTask)}

__all__ = ["TASKS", "LiftTask", "PushTask", "ReachTask", "Task"]
