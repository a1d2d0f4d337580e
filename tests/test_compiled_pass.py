"""The compiled pass of scripts/test.sh runs a chosen set of tests: every compiled module keeps some.

setup.py lists, beside each module mypyc compiles, the tests that exercise it in-process; the
pass runs those and a webhook smoke test, not the whole suite again. These tests fail when a
module is compiled without tests or a listed test no longer touches the module.
"""

from __future__ import annotations

import re

from tests.compiled_pass import compiled_tests, pytest_arguments, smoke_tests
from tests.conftest import REPO_ROOT


def test_every_compiled_module_has_tests_in_the_compiled_pass() -> None:
    modules = compiled_tests()
    assert modules, "setup.py compiles nothing"
    for module, tests in modules.items():
        assert (REPO_ROOT / "src" / (module.replace(".", "/") + ".py")).is_file(), module
        assert tests, f"{module} is compiled but the compiled pass runs none of its tests"


def test_each_listed_test_imports_its_module() -> None:
    for module, tests in compiled_tests().items():
        package, _, name = module.rpartition(".")
        imports = re.compile(rf"\b{re.escape(module)}\b|from {re.escape(package)} import [^\n]*\b{name}\b")
        for test in tests:
            path = REPO_ROOT / test
            assert path.is_file(), f"{test} (listed for {module}) does not exist"
            assert imports.search(path.read_text()), f"{test} is listed for {module} but does not import it"


def test_the_smoke_tests_exist() -> None:
    assert smoke_tests()
    for test in smoke_tests():
        file, _, name = test.partition("::")
        assert re.search(rf"^def {re.escape(name)}\(", (REPO_ROOT / file).read_text(), re.MULTILINE), test
    assert len(pytest_arguments()) == len(set(pytest_arguments()))
