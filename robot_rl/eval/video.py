"""Evaluation videos: H.264 MP4 files from rendered frames, written through the ffmpeg
binary that imageio-ffmpeg bundles, and tiling of several episodes into one video.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def write_mp4(
    path: str | Path,
    frames: Sequence[np.ndarray] | np.ndarray,
    fps: float = 20.0,
    *,
    quality: float = 7.0,
) -> Path:
    """Writes frames to an H.264 MP4 (yuv420p) that browsers and common players open.

    yuv420p subsamples chroma 2x2, so H.264 needs even frame sizes: odd heights or widths
    are padded by one row/column repeating the edge pixels. Parent directories are created.

    Args:
        path: Output file; conventionally ends in ``.mp4``.
        frames: Sequence of HxWx3 uint8 RGB frames of one size, or a ``(T, H, W, 3)`` array.
        fps: Frames per second of the video, e.g. the env's control rate (20 Hz) for
            real-time playback.
        quality: imageio-ffmpeg quality, 0 (smallest) to 10 (best).

    Returns:
        The path written.

    Raises:
        ValueError: If there are no frames, a frame is not HxWx3 uint8, frames differ in size,
            or ``fps`` is not positive.
    """
    if not fps > 0:
        raise ValueError(f"write_mp4: fps must be > 0, got {fps!r} (writing {path})")
    if len(frames) == 0:
        raise ValueError(f"write_mp4: no frames to write to {path}; expected at least one")
    # Validate everything before ffmpeg starts, so a bad frame leaves no partial file behind.
    arrays = [np.asarray(frame) for frame in frames]
    for i, frame in enumerate(arrays):
        _check_frame(frame, i, path)
    height, width = arrays[0].shape[:2]
    for i, frame in enumerate(arrays):
        if frame.shape[:2] != (height, width):
            raise ValueError(
                f"write_mp4: frame {i} is {frame.shape[0]}x{frame.shape[1]} but frame 0 is "
                f"{height}x{width}; all frames of {path} must have one size"
            )
    pad_h, pad_w = height % 2, width % 2

    import imageio_ffmpeg  # here, so importing robot_rl.eval does not load the ffmpeg wrapper

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = imageio_ffmpeg.write_frames(
        str(path),
        size=(width + pad_w, height + pad_h),
        fps=fps,
        codec="libx264",
        pix_fmt_in="rgb24",
        pix_fmt_out="yuv420p",
        quality=quality,
        # Sizes are made even here; the default block size of 16 would rescale the video.
        macro_block_size=1,
    )
    writer.send(None)  # starts the ffmpeg process
    try:
        for frame in arrays:
            if pad_h or pad_w:
                frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
            writer.send(np.ascontiguousarray(frame))
    finally:
        writer.close()
    return path


def tile_episodes(
    episodes: Sequence[np.ndarray], *, n_cols: int | None = None, gap_px: int = 2
) -> np.ndarray:
    """Tiles several episodes' frames into one grid video, one episode per cell.

    Episodes shorter than the longest hold their last frame, so every cell stays visible
    until the longest episode ends.

    Args:
        episodes: One ``(T_i, H, W, 3)`` uint8 array per episode, all with the same H and W
            (as :attr:`robot_rl.eval.runner.EvalResult.frames` holds them).
        n_cols: Cells per row; defaults to ``ceil(sqrt(len(episodes)))``.
        gap_px: Black pixels between cells.

    Returns:
        A ``(max T_i, rows * H + gaps, n_cols * W + gaps, 3)`` uint8 array.

    Raises:
        ValueError: If there are no episodes, an episode is empty or not ``(T, H, W, 3)``
            uint8, or episodes differ in frame size.
    """
    if len(episodes) == 0:
        raise ValueError("tile_episodes: no episodes given; expected at least one")
    for i, ep in enumerate(episodes):
        if not (isinstance(ep, np.ndarray) and ep.ndim == 4 and ep.shape[3] == 3):
            got = ep.shape if isinstance(ep, np.ndarray) else type(ep).__name__
            raise ValueError(f"tile_episodes: episode {i} must be a (T, H, W, 3) array, got {got}")
        if ep.dtype != np.uint8 or ep.shape[0] == 0:
            raise ValueError(
                f"tile_episodes: episode {i} must hold at least one uint8 frame, "
                f"got {ep.shape[0]} frames of {ep.dtype}"
            )
        if ep.shape[1:3] != episodes[0].shape[1:3]:
            raise ValueError(
                f"tile_episodes: episode {i} has {ep.shape[1]}x{ep.shape[2]} frames but episode "
                f"0 has {episodes[0].shape[1]}x{episodes[0].shape[2]}; all episodes must share "
                "a frame size"
            )
    height, width = episodes[0].shape[1:3]
    n = len(episodes)
    cols = n_cols if n_cols is not None else int(np.ceil(np.sqrt(n)))
    if cols < 1:
        raise ValueError(f"tile_episodes: n_cols must be >= 1, got {n_cols}")
    rows = -(-n // cols)
    n_frames = max(ep.shape[0] for ep in episodes)
    out = np.zeros(
        (n_frames, rows * height + (rows - 1) * gap_px, cols * width + (cols - 1) * gap_px, 3),
        dtype=np.uint8,
    )
    for i, ep in enumerate(episodes):
        r, c = divmod(i, cols)
        y, x = r * (height + gap_px), c * (width + gap_px)
        out[: ep.shape[0], y : y + height, x : x + width] = ep
        out[ep.shape[0] :, y : y + height, x : x + width] = ep[-1]
    return out


def _check_frame(frame: np.ndarray, index: int, path: str | Path) -> None:
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(
            f"write_mp4: frame {index} for {path} must be an HxWx3 uint8 RGB array, "
            f"got {frame.dtype} array of shape {frame.shape}"
        )
