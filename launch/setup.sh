#!/usr/bin/env bash
# Bootstraps everything robot_rl needs on a fresh Debian machine with Python 3.11:
# system packages (OSMesa for offscreen rendering), a virtual environment in .venv,
# the CPU build of torch, and the package itself in editable mode with its extras.
# Idempotent: a second run only checks. Usage: bash launch/setup.sh [extras, default "dev,warp"]
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-dev,warp}"
stamp=".venv/.robot_rl_setup"
want="$(cat pyproject.toml launch/setup.sh | sha1sum | cut -c1-16) extras=$extras"

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  log "environment up to date (.venv)"
  exit 0
fi

# Offscreen rendering for videos needs OSMesa; without root or apt we degrade: no videos.
if ! ldconfig -p 2>/dev/null | grep -q libOSMesa; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    log "installing libosmesa6 (offscreen rendering)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libosmesa6 >/dev/null) \
      || log "WARNING: could not install libosmesa6; videos will be skipped"
  else
    log "WARNING: libOSMesa not found and cannot install it (need root + apt); videos will be skipped"
  fi
fi

py="${PYTHON:-python3}"
if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "robot_rl needs Python >= 3.11; found $("$py" --version)" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  if ! "$py" -m venv .venv 2>/dev/null; then
    # Debian's python3 ships venv separately.
    rm -rf .venv
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      "$py" -m venv .venv
    else
      echo "cannot create a virtual environment: install python3-venv" >&2
      exit 1
    fi
  fi
fi
# pip's own notices (e.g. about index locations in a system pip.conf) are not ours to show.
pip() {
  .venv/bin/python -m pip --disable-pip-version-check -q "$@" 2>&1 | { grep -vE "is ignored|^\s*$" || true; }
  return "${PIPESTATUS[0]}"
}
pip install --upgrade pip
# torch first, pinned: this takes the CPU build; a bare range would pull a multi-GB CUDA build.
log "installing torch 2.13.0 (CPU build)"
pip install "torch==2.13.0"
log "installing robot-rl[$extras] (editable)"
pip install -e ".[$extras]"
check="import robot_rl, mujoco, torch, zarr"
case ",$extras," in *,dev,*) check="$check, pytest, xdist" ;; esac
case ",$extras," in *,warp,*) check="$check, warp, mujoco_warp" ;; esac
.venv/bin/python -c "$check" || { echo "setup: the installed environment is incomplete ($check)" >&2; exit 1; }
echo "$want" > "$stamp"
log "done: $(.venv/bin/python -c 'import mujoco, torch; print(f"mujoco {mujoco.__version__}, torch {torch.__version__}")')"
