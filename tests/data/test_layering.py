"""`data` is the base layer: it imports no upper layer of robot_rl, and no circle of imports
runs among its own modules.

Reads every import statement of every module under ``robot_rl/data`` with ``ast``, at any
depth (function-local and ``TYPE_CHECKING`` imports included), so a lazy import that
reaches back up counts as much as one at the top of a file.
"""

from __future__ import annotations

import ast
from pathlib import Path

import robot_rl

PACKAGE_ROOT = Path(robot_rl.__file__).parent
# What robot_rl.data may import from robot_rl: itself and the repository's path helpers
# (which import nothing of robot_rl).
ALLOWED = ("robot_rl.data", "robot_rl.paths")


def module_name(path: Path, root: Path = PACKAGE_ROOT) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, root: Path = PACKAGE_ROOT) -> set[str]:
    """Every module ``path`` imports (``from a.b import c`` counts as ``a.b`` and, where
    ``a.b.c`` is a module, as that too)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def data_graph(root: Path = PACKAGE_ROOT) -> dict[str, set[str]]:
    """robot_rl.data module -> the robot_rl modules it imports."""
    modules = {module_name(p, root): p for p in sorted((root / "data").rglob("*.py"))}
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for m in imported_modules(path, root) if m.split(".")[0] == "robot_rl"}
    return graph


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for name, deps in graph.items():
        # ``from a.b import c`` lists a.b and a.b.c (c may be a module): name a.b once.
        for dep in sorted(d for d in deps if d.rpartition(".")[0] not in deps):
            if dep != "robot_rl" and not any(dep == a or dep.startswith(a + ".") for a in ALLOWED):
                bad.append(f"{name} imports {dep}")
    return bad


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A circle of imports among the graph's own modules, or None. A package's
    ``__init__`` re-exporting its modules is not an edge back: importing ``a.b`` runs
    ``a/__init__`` first by Python's rules, never the other way round."""
    edges = {
        name: sorted(d for d in deps if d in graph and not name.startswith(d + "."))
        for name, deps in graph.items()
    }
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in edges[node]:
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in edges:
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_data_imports_no_upper_layer():
    bad = upward_imports(data_graph())
    assert not bad, "robot_rl.data is the base layer; these imports reach up:\n" + "\n".join(bad)


def test_no_import_cycle_among_data_modules():
    cycle = find_cycle(data_graph())
    assert cycle is None, "import circle among robot_rl/data modules: " + " -> ".join(cycle)


def test_the_checks_see_function_local_imports(tmp_path):
    # The guards themselves: a lazy import up, and a lazy import back, are both caught.
    pkg = tmp_path / "robot_rl" / "data"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from robot_rl.data import b\n")
    (pkg / "b.py").write_text(
        "def f():\n    from robot_rl.data.a import x\n    from robot_rl.sim import env\n"
    )
    graph = data_graph(tmp_path / "robot_rl")
    assert upward_imports(graph) == ["robot_rl.data.b imports robot_rl.sim"]
    assert find_cycle(graph) in (
        ["robot_rl.data.a", "robot_rl.data.b", "robot_rl.data.a"],
        ["robot_rl.data.b", "robot_rl.data.a", "robot_rl.data.b"],
    )
