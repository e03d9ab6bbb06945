"""Setup of the data tests (the tiny store and episode factory are in tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _sampler_cache_in_tmp(tmp_path_factory, monkeypatch):
    """Out-of-core samplers build their row cache under a temporary directory, never in
    the user's ``~/.cache``."""
    monkeypatch.setenv("ROBOT_RL_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
