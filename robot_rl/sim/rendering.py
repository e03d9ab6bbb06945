"""Whether offscreen rendering works here, asked once, so that commands can skip videos
with a clear message instead of failing after the work that came before them."""

from __future__ import annotations

import functools


@functools.cache
def rendering_unavailable_reason() -> str | None:
    """None when MuJoCo can render offscreen; otherwise why not (one line)."""
    import os

    import mujoco

    try:
        model = mujoco.MjModel.from_xml_string(
            "<mujoco><worldbody><geom size='0.1'/></worldbody></mujoco>"
        )
        with mujoco.Renderer(model, 16, 16) as renderer:
            renderer.update_scene(mujoco.MjData(model))
            renderer.render()
    except Exception as e:  # any GL failure means: no videos here
        backend = os.environ.get("MUJOCO_GL", "default")
        return (
            f"offscreen rendering failed with MUJOCO_GL={backend} ({type(e).__name__}: {e}); "
            "install libosmesa6 (launch/setup.sh does, as root) or set MUJOCO_GL=egl on a GPU"
        )
    return None
