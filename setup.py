"""Build hook for setuptools (everything else is in pyproject.toml).

``IMAGEGATE_MYPYC=1 pip install .`` compiles the core's hot modules with mypyc, as the
container image does: a quarter less CPU per admission with pod security (README,
Performance). Without it the package is pure Python, which is what editable installs and
the test run's first pass use; ``scripts/test.sh`` runs the tests again on a compiled build.
"""

from __future__ import annotations

import os

from setuptools import setup

# The modules every admission runs through, and the decoder of every registry document (it
# compiles, and the compiled test pass keeps it so; bench/documents_bench.py measures it). records.py (the msgspec
# Structs) stays interpreted: mypyc drops the keywords of a class statement, so frozen=True
# would be lost.
COMPILED = [
    "src/imagegate/core/reference.py",
    "src/imagegate/core/patterns.py",
    "src/imagegate/core/workloads.py",
    "src/imagegate/core/podsecurity.py",
    "src/imagegate/core/podprofile.py",
    "src/imagegate/core/decide.py",
    "src/imagegate/core/gojson.py",
]


def ext_modules() -> list[object]:
    if os.environ.get("IMAGEGATE_MYPYC") != "1":
        return []
    from mypyc.build import mypycify  # noqa: PLC0415 (only a compiled build needs mypy)

    return list(mypycify(COMPILED, opt_level="3"))


setup(ext_modules=ext_modules())
