"""robot_rl.safety: the safety filter and the robot descriptions it enforces.

``from robot_rl.safety import SafetyFilter``; see :mod:`robot_rl.safety.filter`. This
package never imports torch: it runs on numpy arrays on the host and on torch tensors
handed to it, through the array API.
"""

from robot_rl.safety.description import Envelope, RobotDescription, load_description
from robot_rl.safety.filter import CONSTRAINTS, VERSION, RobotState, SafetyFilter, SafetyReport

__all__ = [
    "CONSTRAINTS",
    "VERSION",
    "Envelope",
    "RobotDescription",
    "RobotState",
    "SafetyFilter",
    "SafetyReport",
    "load_description",
]
