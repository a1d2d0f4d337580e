"""What scripts/test.sh's compiled pass runs, read from setup.py (one list: the compiled modules and their tests).

setup.py is read, not imported (importing it would run setuptools). ``python3 -m tests.compiled_pass
modules`` prints the compiled modules' dotted names, ``tests`` the pytest arguments of the pass.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

SETUP = Path(__file__).resolve().parent.parent / "setup.py"


def _literal(name: str) -> object:
    for node in ast.parse(SETUP.read_text()).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise LookupError(f"setup.py has no {name}")


def compiled_tests() -> dict[str, list[str]]:
    """Each compiled module's dotted name and the test files that exercise it in-process."""
    value = _literal("COMPILED")
    assert isinstance(value, dict)
    return {
        path.removeprefix("src/").removesuffix(".py").replace("/", "."): list(tests) for path, tests in value.items()
    }


def smoke_tests() -> list[str]:
    """The webhook tests the compiled pass runs besides the modules' own tests."""
    value = _literal("COMPILED_SMOKE")
    assert isinstance(value, list)
    return [str(test) for test in value]


def pytest_arguments() -> list[str]:
    """The compiled pass's test files and tests, each once, in a stable order."""
    files = sorted({test for tests in compiled_tests().values() for test in tests})
    return [*files, *smoke_tests()]


if __name__ == "__main__":
    if sys.argv[1:] == ["modules"]:
        print("\n".join(compiled_tests()))
    elif sys.argv[1:] == ["tests"]:
        print("\n".join(pytest_arguments()))
    else:
        sys.exit("usage: python3 -m tests.compiled_pass modules|tests")
