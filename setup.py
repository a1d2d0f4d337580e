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
COMPILED = {
    # module: the tests that exercise it in-process, the ones scripts/test.sh's compiled pass
    # runs (tests/test_compiled_pass.py holds that each module has some and that they import it)
    "src/imagegate/core/reference.py": [
        "tests/test_reference_conformance.py",
        "tests/test_registry_names.py",
        "tests/test_peer_conformance.py",
    ],
    "src/imagegate/core/patterns.py": ["tests/test_patterns.py", "tests/test_hostile_input.py"],
    "src/imagegate/core/workloads.py": ["tests/test_admission_review.py", "tests/test_match_conditions.py"],
    "src/imagegate/core/podspec.py": ["tests/test_one_source.py"],
    "src/imagegate/core/podsecurity.py": [
        "tests/test_podsecurity_conformance.py",
        "tests/test_podsecurity_fields.py",
        "tests/test_podsecurity_shortcut.py",
        "tests/test_podsecurity_catalog.py",
    ],
    "src/imagegate/core/podsecurity_shortcut.py": [
        "tests/test_podsecurity_conformance.py",
        "tests/test_podsecurity_fields.py",
        "tests/test_podsecurity_shortcut.py",
    ],
    "src/imagegate/core/podprofile.py": ["tests/test_podsecurity_fields.py", "tests/test_one_source.py"],
    "src/imagegate/core/decide.py": ["tests/test_decide.py", "tests/test_pod_profile.py"],
    "src/imagegate/core/imagerules.py": ["tests/test_image_rule_seam.py"],
    "src/imagegate/core/gojson.py": ["tests/test_go_json.py"],
}

# The compiled build serving for real: both webhooks of one process, as the API server calls them.
# And its metrics: build info says compiled, every rule's series is there (the rule lists read
# from the compiled modules).
COMPILED_SMOKE = [
    "tests/test_server.py::test_mutate_then_validate_like_the_api_server",
    "tests/test_metrics.py::test_build_info",
    "tests/test_metrics.py::test_every_series_known_in_advance_is_there_at_zero",
]


def ext_modules() -> list[object]:
    if os.environ.get("IMAGEGATE_MYPYC") != "1":
        return []
    from mypyc.build import mypycify  # noqa: PLC0415 (only a compiled build needs mypy)

    return list(mypycify(list(COMPILED), opt_level="3"))


setup(ext_modules=ext_modules())
