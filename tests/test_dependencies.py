"""Every third-party package that robot_rl imports is declared in pyproject.toml (as a
dependency or in an extra), so a fresh install never depends on what happens to be there
already."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import robot_rl

REPO = Path(robot_rl.__file__).parent.parent


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_distributions() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    return {_normalize(re.match(r"[A-Za-z0-9_.-]+", r).group(0)) for r in reqs}


def imported_top_modules(root: Path) -> dict[str, str]:
    """Top-level third-party module -> a file that imports it."""
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "robot_rl":
                    out.setdefault(top, str(path.relative_to(REPO)))
    return out


def test_every_imported_package_is_declared():
    declared = declared_distributions()
    dists = packages_distributions()
    missing = []
    for module, where in imported_top_modules(REPO / "robot_rl").items():
        # A module not installed here (an optional extra's) is named by itself.
        names = {_normalize(d) for d in dists.get(module, [module])}
        if not names & declared:
            missing.append(f"{module} (imported in {where}; distribution {sorted(names)})")
    assert not missing, "imported but not declared in pyproject.toml: " + ", ".join(missing)
