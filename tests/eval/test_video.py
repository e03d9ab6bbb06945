"""write_mp4 writes H.264 files others can read; tile_episodes lays episodes out in a grid."""

import imageio.v2 as iio
import numpy as np
import pytest

from robot_rl.eval.video import tile_episodes, write_mp4


def _frames(n: int, h: int, w: int) -> np.ndarray:
    frames = np.zeros((n, h, w, 3), np.uint8)
    frames[:, :, : w // 2, 0] = 255  # left half red
    for t in range(n):
        frames[t, :, w // 2 :, 2] = 10 * t  # right half grows blue over time
    return frames


def test_write_mp4_reads_back_with_count_size_codec_and_colors(tmp_path):
    frames = _frames(12, 15, 21)  # odd sizes: must be padded to 16x22
    path = write_mp4(tmp_path / "sub" / "ep.mp4", frames, fps=10)
    assert path.exists()
    reader = iio.get_reader(path, format="ffmpeg")
    meta = reader.get_meta_data()
    back = np.stack(list(reader.iter_data()))
    reader.close()
    assert meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p")
    assert meta["fps"] == pytest.approx(10.0)
    assert back.shape == (12, 16, 22, 3)
    # Lossy, but colors survive: red on the left, blue on the right grows over time.
    assert back[0, 7, 3, 0] > 200 and back[0, 7, 3, 2] < 50
    assert back[-1, 7, 18, 2] > back[0, 7, 18, 2] + 60


def test_write_mp4_accepts_a_list_of_frames(tmp_path):
    path = write_mp4(tmp_path / "ep.mp4", list(_frames(3, 8, 8)), fps=20)
    with iio.get_reader(path, format="ffmpeg") as reader:
        assert len(list(reader.iter_data())) == 3


def test_write_mp4_errors_name_the_problem_and_write_nothing(tmp_path):
    out = tmp_path / "bad.mp4"
    with pytest.raises(ValueError, match="no frames"):
        write_mp4(out, [], fps=20)
    mixed = [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 10, 3), np.uint8)]
    with pytest.raises(ValueError, match="frame 1 is 8x10 but frame 0 is 8x8"):
        write_mp4(out, mixed, fps=20)
    with pytest.raises(ValueError, match=r"frame 0 .* uint8"):
        write_mp4(out, [np.zeros((8, 8, 3), np.float32)], fps=20)
    with pytest.raises(ValueError, match="fps"):
        write_mp4(out, _frames(2, 8, 8), fps=0)
    assert not out.exists()


def test_tile_episodes_grid_and_hold_last_frame():
    a = np.full((5, 4, 6, 3), 10, np.uint8)
    b = np.full((3, 4, 6, 3), 200, np.uint8)
    b[-1] = 99
    c = np.full((2, 4, 6, 3), 50, np.uint8)
    tiled = tile_episodes([a, b, c], n_cols=2, gap_px=2)
    assert tiled.shape == (5, 4 * 2 + 2, 6 * 2 + 2, 3)
    assert tiled[0, 0, 0, 0] == 10 and tiled[0, 0, 8, 0] == 200 and tiled[0, 6, 0, 0] == 50
    assert (tiled[4, 0:4, 8:14] == 99).all()  # b holds its last frame
    assert (tiled[:, 4:6] == 0).all()  # gap row stays black
    assert tile_episodes([a, b, c, a]).shape[2] == 6 * 2 + 2  # default: ceil(sqrt(4)) = 2 cols


def test_tile_episodes_rejects_mismatched_sizes():
    with pytest.raises(ValueError, match="episode 1 has 4x5 frames"):
        tile_episodes([np.zeros((2, 4, 6, 3), np.uint8), np.zeros((2, 4, 5, 3), np.uint8)])
    with pytest.raises(ValueError, match="no episodes"):
        tile_episodes([])
