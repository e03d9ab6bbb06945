"""robot_rl.algos.ope: offline policy evaluation of policies on an episode store.

Fitted Q Evaluation (:mod:`robot_rl.algos.ope.fqe`, trained by the shared offline trainer) and
weighted importance sampling with a logged or estimated behaviour policy
(:mod:`robot_rl.algos.ope.importance`), each with a bootstrap confidence interval over episodes
(:mod:`robot_rl.algos.ope.evaluate`). Estimates are in the units of a discounted sim return
``sum_{t<H} gamma^t r_t`` computed with the store's reward.
"""

from robot_rl.algos.ope.data import BEHAVIOUR_LOGPROB_KEY, OPEData, load_ope_data
from robot_rl.algos.ope.evaluate import OPEConfig, OPEResult, evaluate_policies, spearman
from robot_rl.algos.ope.fqe import FQE, FQEConfig, fit_fqe
from robot_rl.algos.ope.importance import BehaviourConfig, GaussianBehaviour, is_estimates
from robot_rl.algos.ope.policies import ArtifactTarget, ExpertTarget, FunctionTarget, TargetPolicy

__all__ = [
    "BEHAVIOUR_LOGPROB_KEY",
    "FQE",
    "ArtifactTarget",
    "BehaviourConfig",
    "ExpertTarget",
    "FQEConfig",
    "FunctionTarget",
    "GaussianBehaviour",
    "OPEConfig",
    "OPEData",
    "OPEResult",
    "TargetPolicy",
    "evaluate_policies",
    "fit_fqe",
    "is_estimates",
    "load_ope_data",
    "spearman",
]
