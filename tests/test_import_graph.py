"""imagegate's modules import each other without a cycle (issue 17).

The graph is read from the source with ``ast``, every import counted wherever it is written
(module level, inside a function, under ``TYPE_CHECKING``): an import deferred into a
function still ties the two modules together, it only hides the cycle until run time.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports (``from a import b``: ``a.b`` when a module)."""
    files = {_module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from . import x, from ..core import y
                    anchor = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets.add(base)
                targets.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in files)
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def find_cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """One cycle (its modules, the first repeated at the end), or None when the graph is acyclic."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)) is not None:
            return found
    return None


def test_imagegate_has_no_import_cycle() -> None:
    graph = import_graph(SRC, "imagegate")
    assert "imagegate.shell.cli.main" in graph and "imagegate.core.decide" in graph  # the walk found the package
    assert graph["imagegate.shell.cli.main"], "the CLI imports other imagegate modules: the graph was read"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize(
    ("sources", "cycle"),
    [
        ({"a.py": "import pkg.b\n", "b.py": "def f() -> None:\n    from pkg import a\n"}, ["pkg.a", "pkg.b", "pkg.a"]),
        (
            {"a.py": "from .b import x\n", "b.py": "from pkg.c import y\n", "c.py": "from . import a\n"},
            ["pkg.a", "pkg.b", "pkg.c", "pkg.a"],
        ),
        ({"a.py": "import pkg.b\n", "b.py": "import os\n"}, None),
    ],
)
def test_the_cycle_finder_sees_deferred_and_relative_imports(
    tmp_path: Path, sources: dict[str, str], cycle: list[str] | None
) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, text in sources.items():
        (package / name).write_text(text)
    assert find_cycle(import_graph(tmp_path, "pkg")) == cycle
