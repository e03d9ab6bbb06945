"""Shared test setup: markers that skip cleanly where their hardware is absent."""

import pytest

# MuJoCo picks its OpenGL backend when first imported; robot_rl chooses an offscreen one
# on headless machines. Import it before any test module imports mujoco directly, so the
# render tests do not depend on which module a pytest-xdist worker happens to load first.
import robot_rl  # noqa: F401


def pytest_configure(config):
    # The suite runs under pytest-xdist, one worker per core: torch's own intra-op threads
    # on top oversubscribe the cores (tests ran ~7x slower with 2 threads per worker on 2
    # cores), so each worker computes on one thread.
    import torch

    torch.set_num_threads(1)


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    skip_hw = pytest.mark.skip(reason="needs a physical robot (set ROBOT_RL_HARDWARE=1)")
    import os

    has_gpu = _has_cuda()
    has_hw = os.environ.get("ROBOT_RL_HARDWARE") == "1"
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(skip_gpu)
        if "hardware" in item.keywords and not has_hw:
            item.add_marker(skip_hw)
