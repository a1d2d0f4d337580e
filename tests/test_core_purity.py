"""The core stays pure (issue 24): no ``imagegate.core`` module imports the shell, an event loop,
sockets, an HTTP client or anything else that does I/O, or reads the clock.

Read from the source with ``ast``, every import counted wherever it is written (module level,
inside a function, under ``TYPE_CHECKING``), as tests/test_import_graph.py reads the graph.
The clock is read through ``datetime.now()``/``utcnow()``/``today()`` (any spelling: ``dt.datetime.now``,
``date.today``) or the ``time`` module, which is refused as a whole. Files are read through
``open()`` or ``importlib.resources``/``importlib.metadata`` (package data, the built-in policy:
shell/builtin_policy.py reads it), ``io`` and ``pathlib``, all refused.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent.parent / "src" / "imagegate" / "core"

# Top-level modules the core never imports: the shell, event loops, sockets, HTTP, processes,
# files, the clock.
FORBIDDEN_MODULES = frozenset(
    {
        "asyncio",
        "h11",
        "http",
        "httptools",
        "httpx",
        "importlib",
        "io",
        "ldap3",
        "lightkube",
        "multiprocessing",
        "os",
        "pathlib",
        "selectors",
        "shutil",
        "socket",
        "ssl",
        "subprocess",
        "tempfile",
        "threading",
        "time",
        "urllib",
        "uvloop",
    }
)
CLOCK_CALLS = frozenset({"now", "utcnow", "today"})
FILE_CALLS = frozenset({"open"})  # the builtin; os.open and Path.open are refused with their modules


def _refused_import(name: str, level: int) -> bool:
    if level:  # relative: from .. import shell / from ..shell import x (the core is one level down)
        return level >= 2 and (name == "shell" or name.startswith("shell."))
    return (
        name == "imagegate.shell" or name.startswith("imagegate.shell.") or name.partition(".")[0] in FORBIDDEN_MODULES
    )


def impurities(source: str, filename: str = "<source>") -> list[str]:
    """Each import of a forbidden module and each clock read in ``source``, with its line."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found.extend(
                f"{filename}:{node.lineno}: imports {a.name}" for a in node.names if _refused_import(a.name, 0)
            )
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            # the module and each name as a submodule: from imagegate import shell, from .. import shell
            names = [module, *(f"{module}.{a.name}" if module else a.name for a in node.names)]
            found.extend(f"{filename}:{node.lineno}: imports {n}" for n in names if _refused_import(n, node.level))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in CLOCK_CALLS:
            found.append(f"{filename}:{node.lineno}: reads the clock ({ast.unparse(node.func)}())")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FILE_CALLS:
            found.append(f"{filename}:{node.lineno}: opens a file ({node.func.id}())")
    return found


def test_the_core_is_pure() -> None:
    modules = sorted(CORE.rglob("*.py"))  # subpackages too (core/contents/)
    assert len(modules) > 20 and CORE / "decide.py" in modules  # the walk found the core
    found = [line for path in modules for line in impurities(path.read_text(), str(path.relative_to(CORE)))]
    assert found == [], "the core must do no I/O and read no clock:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "source",
    [
        "import asyncio",
        "import socket as s",
        "import httpx",
        "from imagegate.shell.registry.client import RegistryClient",
        "import imagegate.shell",
        "from imagegate import shell",
        "from ..shell import cli",
        "from .. import shell",
        "def f():\n    import time\n    return time.monotonic()",
        "from time import monotonic",
        "import datetime as dt\nx = dt.datetime.now(dt.UTC)",
        "from datetime import date\nx = date.today()",
        "from importlib import resources\nx = resources.files('imagegate')",
        "import importlib.metadata",
        "with open('/etc/passwd') as f:\n    f.read()",
        "import io",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from imagegate.shell.webhook.metrics import Metrics",
    ],
)
def test_each_impurity_is_found(source: str) -> None:
    assert impurities(source), source


@pytest.mark.parametrize(
    "source",
    [
        "import datetime as dt\nx = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)",
        "from imagegate.core.reference import parse_docker_ref",
        "from . import names",
        "import msgspec",
        "def f(now: object) -> object:\n    return now",
    ],
)
def test_pure_code_passes(source: str) -> None:
    assert impurities(source) == []
