"""Evaluation and training-curve figures are written as valid PNG images."""

import matplotlib.image as mpimg
import numpy as np
import pytest

from robot_rl.eval.plots import DPI, plot_evaluations, plot_training_curves
from robot_rl.eval.runner import evaluate

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def two_results(env_factory, constant_policy):
    expert = evaluate(env_factory(), constant_policy(1.0), n_episodes=10, seed=0, progress=False)
    failing = evaluate(env_factory(), constant_policy(-1.0), n_episodes=10, seed=0, progress=False)
    return {"scripted expert": expert, "BC policy": failing}


def test_plot_evaluations_writes_a_png_of_the_expected_size(tmp_path, two_results):
    path = plot_evaluations(two_results, tmp_path / "plots" / "eval.png", title="Reach-v0")
    assert path.read_bytes()[:8] == PNG_MAGIC
    img = mpimg.imread(path)
    # Width grows with the number of evaluations: max(8, 4 + 2.4 * 2) inches at DPI.
    assert img.shape[:2] == (round(4.6 * DPI), round(8.8 * DPI))
    assert img.shape[2] in (3, 4)
    assert img[..., :3].std() > 0.05  # something was drawn


def test_plot_evaluations_single_and_empty_run(tmp_path, env_factory, constant_policy):
    empty = evaluate(env_factory(), constant_policy(1.0), n_episodes=0, seed=0, progress=False)
    path = plot_evaluations({"nothing yet": empty}, tmp_path / "one.png")
    assert mpimg.imread(path).shape[:2] == (round(4.6 * DPI), round(8.0 * DPI))


def test_plot_evaluations_rejects_no_evaluations(tmp_path):
    with pytest.raises(ValueError, match="no evaluations"):
        plot_evaluations({}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_plot_training_curves_writes_a_png(tmp_path):
    steps = np.arange(0, 2000, 50)
    series = {
        "train": list(zip(steps, 2.0 * np.exp(-steps / 500) + 0.1, strict=True)),
        "validation": list(zip(steps, 2.2 * np.exp(-steps / 600) + 0.15, strict=True)),
        "final": [(2000, 0.12)],
    }
    path = plot_training_curves(series, tmp_path / "loss.png", log_y=True)
    img = mpimg.imread(path)
    assert img.shape[:2] == (round(4.6 * DPI), round(8.0 * DPI))
    assert img[..., :3].std() > 0.05


def test_plot_training_curves_rejects_bad_series(tmp_path):
    with pytest.raises(ValueError, match="'train' must be a non-empty list of"):
        plot_training_curves({"train": [1.0, 2.0]}, tmp_path / "loss.png")
    with pytest.raises(ValueError, match="no series"):
        plot_training_curves({}, tmp_path / "loss.png")
