"""Provenance fields that flag incomplete episodes: defaults, checks, JSON round trip."""

import json

import numpy as np
import pytest

from robot_rl.data.provenance import EpisodeProvenance


def test_overflow_fields_round_trip_and_default_for_old_records():
    p = EpisodeProvenance(
        "teleop", dropped_rows=np.int64(3), gap_rows=[np.int64(4), 9], reset_seed=np.int64(7)
    )
    p.check()
    q = EpisodeProvenance.from_json(p.to_json())
    assert (q.dropped_rows, q.gap_rows, q.reset_seed) == (3, [4, 9], 7)
    old = EpisodeProvenance.from_json('{"source": "scripted", "episode_id": "x"}')
    assert (old.dropped_rows, old.gap_rows, old.reset_seed) == (0, [], None)


@pytest.mark.parametrize(
    "kw, field",
    [
        ({"dropped_rows": -1}, "dropped_rows"),
        ({"dropped_rows": 2, "gap_rows": [5, 3]}, "gap_rows"),
        ({"gap_rows": [1]}, "gap_rows"),
        ({"reset_seed": "3"}, "reset_seed"),
    ],
)
def test_malformed_overflow_fields_are_named(kw, field):
    with pytest.raises(ValueError, match=f"provenance.{field}"):
        EpisodeProvenance("teleop", **kw).check()


def test_safety_interventions_round_trip_and_stay_out_of_the_json_when_empty():
    quiet = EpisodeProvenance(source="scripted", safety_filter_version="1.1 (nominal)")
    assert "safety_interventions" not in json.loads(quiet.to_json())
    counts = {"table": 3, "acceleration": 12, "jerk": 0}
    busy = EpisodeProvenance(source="scripted", safety_interventions=counts)
    back = EpisodeProvenance.from_json(busy.to_json())
    assert back.safety_interventions == {"table": 3, "acceleration": 12}
    back.check()
    with pytest.raises(ValueError, match=r"provenance\.safety_interventions"):
        EpisodeProvenance(source="scripted", safety_interventions={"table": -1}).check()
