"""Grants as a lifecycle (issue 23 items 5, 8, 10; issue 27 item 9): renewals that keep every
field, revocations on record, required fields, checks against the namespaces that exist, and
the numbers and names the grant commands take.

Every case runs the real ``imagegate`` command (a subprocess) and asserts its message and
exit code: 0 done, 1 something found wrong, 2 bad input (one ``error:`` line).
"""

from __future__ import annotations

import pytest

from imagegate.core.names import is_dns_label
from imagegate.core.policy import PolicyError, load_identities
from tests.conftest import REPO_ROOT, run_imagegate

DUMP = REPO_ROOT / "tests" / "fixtures" / "cluster-dump.json"


def one_error(result: object, *fragments: str) -> str:
    """Exit 2 and exactly one ``error:`` line naming every fragment; no traceback."""
    stderr: str = result.stderr  # type: ignore[attr-defined]
    assert result.returncode == 2, (result.returncode, stderr)  # type: ignore[attr-defined]
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    for fragment in fragments:
        assert fragment in lines[0], stderr
    return lines[0]


# --- names and numbers (issue 23 item 8) ---------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["check", "-n", "Bad NS", "examples"], ["--namespace", "'Bad NS' is not a namespace name"]),
        (["audit", "--compare", "--from", str(DUMP), "--select", "Bad_NS", "selected"], ["--select", "'Bad_NS'"]),
        (["grants", "add", "Bad_NS", "-g", "grants.yaml"], ["'Bad_NS' is not a namespace name"]),
        (["grants", "revoke", "-x", "-g", "grants.yaml"], ["-x"]),
        (["grants", "add", "x" * 64, "-g", "grants.yaml"], ["is not a namespace name", "1 to 63"]),
        (["grants", "expiring", "--days", "-5", "-g", "grants.yaml"], ["--days", "greater than or equal to 0"]),
        (["audit", "--from", str(DUMP), "--expiring-days", "-3"], ["--expiring-days", "greater than or equal"]),
        (
            ["audit", "--compare", "--from", str(DUMP), "--box-ends", "2020-01-01", "time-boxed"],
            ["--box-ends 2020-01-01 is in the past"],
        ),
    ],
)
def test_names_and_numbers_are_checked(args: list[str], fragments: list[str]) -> None:
    one_error(run_imagegate(*args), *fragments)


def test_one_namespace_rule_for_every_document() -> None:
    """A 75-character namespace was an identity (load_identities) but never a grant."""
    long = "tool-" + "x" * 70
    assert not is_dns_label(long) and is_dns_label("x" * 63) and not is_dns_label("x" * 64)
    text = f"apiVersion: imagegate.toolforge.org/v1\nkind: ToolIdentities\nidentities:\n  {long}: {{uid: 5}}\n"
    with pytest.raises(PolicyError, match="is not a namespace name"):
        load_identities(text, "identities.yaml")
