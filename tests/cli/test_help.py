"""Every console script in pyproject.toml, and every subcommand of the argparse ones,
answers ``--help`` in a real process: exit 0, usage text, no traceback.

The commands are discovered (scripts from ``[project.scripts]``, subcommands from each
script's ``build_parser()``), so a new one is covered without touching this file.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tomllib

import pytest

from robot_rl.paths import REPO_ROOT

SCRIPTS: dict[str, str] = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"][
    "scripts"
]


def _parser(target: str) -> argparse.ArgumentParser | None:
    """The argparse parser of the script whose entry point is ``module:function`` (its
    module's ``build_parser()``), or None for a Hydra script."""
    build = getattr(importlib.import_module(target.partition(":")[0]), "build_parser", None)
    return None if build is None else build()


def _subcommands(target: str) -> list[str]:
    parser = _parser(target)
    if parser is None:
        return []
    return [
        name
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for name in action.choices
    ]


COMMANDS = [
    (script, sub)
    for script, target in sorted(SCRIPTS.items())
    for sub in [None, *_subcommands(target)]
]


def _run_script(script: str, *args: str) -> subprocess.CompletedProcess:
    """Runs a console script as its installed wrapper does: ``sys.exit(function())``
    with ``argv[0]`` the script's name."""
    module, _, function = SCRIPTS[script].partition(":")
    code = (
        f"import sys; sys.argv[0] = {script!r}; from {module} import {function}; "
        f"sys.exit({function}())"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
    )


def test_discovery_finds_the_scripts_and_subcommands():
    # Guards the discovery itself: an empty list would make every test below vacuous.
    assert {"robot-rl-data", "robot-rl-record", "robot-rl-pretrain"} <= set(SCRIPTS)
    data_subcommands = {sub for script, sub in COMMANDS if script == "robot-rl-data"}
    assert {"import", "make-dataset", "convert", "relabel"} <= data_subcommands


@pytest.mark.parametrize("script, sub", COMMANDS, ids=[f"{s} {c}" if c else s for s, c in COMMANDS])
def test_help_answers(script, sub):
    proc = _run_script(script, *([sub] if sub else []), "--help")
    out = proc.stdout
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    if _parser(SCRIPTS[script]) is not None:
        usage = f"usage: {script}" + (f" {sub}" if sub else "")
        assert out.startswith(usage), out
        assert len(out.splitlines()) > 2, out
    else:
        # Hydra: the app help with the config groups and the composed config.
        assert "== Configuration groups ==" in out and "== Config ==" in out, out
