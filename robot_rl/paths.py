"""Where the repository's data folders are: code finds them relative to the repo root.

The supported install is editable from a clone (as with LeRobot and Diffusion Policy), so
``conf/``, ``sim_assets/`` and ``hardware/`` sit next to the ``robot_rl`` package.
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = REPO_ROOT / "conf"
SIM_ASSETS_DIR = REPO_ROOT / "sim_assets"
HARDWARE_DIR = REPO_ROOT / "hardware"


def code_version() -> str:
    """The package version plus the git commit of the checkout, when there is one."""
    import subprocess

    from robot_rl import __version__

    try:
        sha = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        return f"{__version__}+g{sha}{'.dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return __version__
