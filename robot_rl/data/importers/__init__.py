"""Importers into the episode store: Minari datasets, robomimic HDF5, Gymnasium rollouts,
plain Zarr stores in Diffusion Policy's layout.

Every importer:

- flattens dict observations to store keys (nested dicts joined with ``.``; a single
  array observation is the key ``observation``);
- stores float64 observations as float32 (other dtypes as they are), actions as float32
  vectors of the action space's size, rewards as float32;
- keeps ``terminated``/``truncated`` as the source has them, and marks the last row
  truncated where an episode ends with neither (the zarr importer: truncated or
  terminated, as asked);
- records ``source="import"`` provenance with the origin in ``robot_id`` (the env or
  robot: ``"gym:FetchReach-v4"``, ``"minari:<env id>"``, ``"robomimic:<env name>"``,
  ``"zarr:<robot>"``) and ``policy_id`` (what produced the episode:
  ``"minari:<dataset id>#episode_<i>"``, ``"robomimic:<file name>#demo_<k>"``,
  ``"zarr2:<store name>#episode_<i>"``, ``"gym:random"``); file sources are named by
  their base name only;
- keeps actions in the source's units. Where the action space is not [-1, 1], the
  bounds are returned in :class:`ImportResult` and written into the store's
  ``units["action"]`` as text, since the store has no attribute for them
  (:mod:`robot_rl.data.action_bounds` reads them back: learners map those bounds to
  [-1, 1], and the trained policy acts in the source's units);
- raises ValueError naming the source, episode and key for bad input (missing keys,
  ragged lengths, NaN or inf). File sources are checked whole before the store is
  created or touched, so a bad file leaves it unchanged; rollouts are committed one
  episode at a time, and no import ever leaves a partial episode.

Each creates the target store, or appends to an existing one with ``append=True``.
"""

from robot_rl.data.importers.base import ImportResult, flatten_obs
from robot_rl.data.importers.gym_rollouts import record_gym_rollouts
from robot_rl.data.importers.minari import import_minari, load_minari_dataset
from robot_rl.data.importers.robomimic import import_robomimic
from robot_rl.data.importers.zarr_replay import import_zarr

__all__ = [
    "ImportResult",
    "flatten_obs",
    "import_minari",
    "import_robomimic",
    "import_zarr",
    "load_minari_dataset",
    "record_gym_rollouts",
]
