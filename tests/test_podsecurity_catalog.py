"""The check catalogue is validated in code, as pod-security-admission's ``validateChecks``
(policy/registry.go) validates its registry: at import, and for any catalogue a caller passes."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from imagegate.core import podsecurity
from imagegate.core.podsecurity import CHECKS, Check, Level, VersionedCheck, checks_for, validate_checks
from imagegate.core.podsecurity_shortcut import evaluate

LATEST = podsecurity.LATEST_VERSION


def _privileged() -> Check:
    (check,) = (c for c in CHECKS if c.id == "privileged")
    return check


def _entry(since: tuple[int, int], run: Any = None) -> VersionedCheck:
    model = _privileged().versions[0]
    return VersionedCheck(since, model.run if run is None else run, model.reads)


BROKEN = {
    "duplicate id": (*CHECKS, _privileged()),
    "privileged is no check level": (*CHECKS[1:], Check(CHECKS[0].id, Level.PRIVILEGED, CHECKS[0].versions)),
    "no versions": (Check("empty", Level.BASELINE, ()),),
    "versions out of order": (Check("x", Level.BASELINE, (_entry((1, 30)), _entry((1, 25)))),),
    "a version twice": (Check("x", Level.RESTRICTED, (_entry((1, 25)), _entry((1, 25)))),),
    "no function": (Check("x", Level.BASELINE, (_entry((1, 25), run="not callable"),)),),
}


def test_the_real_catalogue_is_valid() -> None:
    validate_checks(CHECKS)
    assert len(CHECKS) > 15


def test_a_level_that_is_no_level_is_refused() -> None:
    """Typed code cannot name one; built anyway, it is refused: by Check itself when the module is
    compiled (mypyc checks the field's type), else by validate_checks."""
    with pytest.raises((TypeError, ValueError), match=r"Level object expected|invalid level 'strict'"):
        validate_checks((*CHECKS[1:], Check(CHECKS[0].id, "strict", CHECKS[0].versions)))  # type: ignore[arg-type]


@pytest.mark.parametrize("catalog", BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_catalogue_is_refused(catalog: tuple[Check, ...]) -> None:
    with pytest.raises(ValueError, match="Pod Security check"):
        validate_checks(catalog)
    # and a caller's catalogue is refused before it judges a pod
    with pytest.raises(ValueError, match="Pod Security check"):
        checks_for(Level.RESTRICTED, LATEST, frozenset(), catalog)
    with pytest.raises(ValueError, match="Pod Security check"):
        evaluate(Level.RESTRICTED, LATEST, {}, {"containers": [{"name": "c", "image": "i"}]}, catalog=catalog)


def test_a_valid_catalogue_with_a_new_version_is_accepted() -> None:
    grown = Check("x", Level.BASELINE, (_entry((1, 0)), _entry((1, 30))))
    validate_checks((*CHECKS, grown))
    assert ("x", grown.versions[1]) in checks_for(Level.BASELINE, LATEST, frozenset(), (*CHECKS, grown))


def test_the_module_validates_its_catalogue_at_import() -> None:
    """A module-level ``validate_checks(CHECKS)`` statement: importing a broken catalogue fails."""
    source = Path(__file__).resolve().parent.parent / "src" / "imagegate" / "core" / "podsecurity.py"
    tree = ast.parse(source.read_text())  # the source: the module may be compiled
    statements = [ast.unparse(node) for node in tree.body if isinstance(node, ast.Expr)]
    assert "validate_checks(CHECKS)" in statements
