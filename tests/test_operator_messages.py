"""Issue 14: operator commands say what they did, with the message and exit code a user sees.

Every test runs the real ``imagegate`` command (a subprocess, as ``run_imagegate`` does).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_imagegate

POLICY_HEAD = "apiVersion: imagegate.toolforge.org/v1\nkind: ImagePolicy\n"
GRANTS_HEAD = "apiVersion: imagegate.toolforge.org/v1\nkind: ImageGrants\n"


# --- item 6: grants ------------------------------------------------------------------------


def test_grants_add_refuses_an_expiry_in_the_past(tmp_path: Path) -> None:
    grants = tmp_path / "grants.yaml"
    grants.write_text(GRANTS_HEAD + "grants: []\n")
    before = grants.read_text()
    past = run_imagegate("grants", "add", "tool-a", "-g", str(grants), "--expires", "2026-11-23", "--now", "2026-11-24")
    assert past.returncode == 2, past.stderr
    assert "--expires 2026-11-23 is in the past (today is 2026-11-24, UTC)" in past.stderr
    assert "granted" not in past.stderr and "Traceback" not in past.stderr
    assert grants.read_text() == before
    # the last day may be today: a grant is good through that whole day
    today = run_imagegate(
        "grants", "add", "tool-a", "-g", str(grants), "--expires", "2026-11-24", "--now", "2026-11-24"
    )
    assert today.returncode == 0, today.stderr
    assert "granted: tool-a" in today.stderr
    # without --now the past is judged against the real clock
    long_ago = run_imagegate("grants", "add", "tool-b", "-g", str(grants), "--expires", "2001-01-01")
    assert long_ago.returncode == 2 and "is in the past" in long_ago.stderr


def test_grants_expiring_as_json(tmp_path: Path) -> None:
    grants = tmp_path / "grants.yaml"
    grants.write_text(
        GRANTS_HEAD
        + "grants:\n"
        + "  - {namespace: tool-soon, expires: 2026-11-30, ticket: T1}\n"
        + "  - {namespace: tool-gone, expires: 2026-11-01}\n"
        + "  - {namespace: tool-later, expires: 2027-06-01}\n"
    )
    found = run_imagegate("grants", "expiring", "-g", str(grants), "--days", "14", "--now", "2026-11-24", "-o", "json")
    assert found.returncode == 1, found.stderr
    listed = json.loads(found.stdout)
    assert [(g["namespace"], g["state"]) for g in listed] == [("tool-gone", "expired"), ("tool-soon", "expiring")]
    assert listed[1]["daysLeft"] == 6 and listed[1]["ticket"] == "T1"
    calm = run_imagegate("grants", "expiring", "-g", str(grants), "--days", "3", "--now", "2026-10-01", "-o", "json")
    assert calm.returncode == 0 and json.loads(calm.stdout) == []


def test_grant_errors_name_the_users_file_or_the_new_entry(tmp_path: Path) -> None:
    grants = tmp_path / "grants.yaml"
    # blank lines and comments: the rewritten text would have other line numbers
    grants.write_text(GRANTS_HEAD + "# our grants\n\ngrants:\n\n  - namespace: tool-a\n\n\n  - namespace: tool-b\n")
    new_entry = run_imagegate("grants", "add", "tool-c", "-g", str(grants), "-r", "nginx")
    assert new_entry.returncode == 2
    assert "error: the new grant for tool-c: registries[0]: 'nginx' does not start with a registry" in new_entry.stderr
    assert f"{grants}:" not in new_entry.stderr  # no line of a text that was never written
    bad_name = run_imagegate("grants", "add", "Tool_C", "-g", str(grants))
    assert bad_name.returncode == 2 and "the new grant for Tool_C: namespace: 'Tool_C' is not a namespace name" in (
        bad_name.stderr
    )
    # an error already in the user's file names its line in that file
    grants.write_text(grants.read_text() + "\n    registries: [nginx]\n")
    in_file = run_imagegate("grants", "add", "tool-c", "-g", str(grants))
    assert in_file.returncode == 2
    assert f"{grants}:12: grants[1].registries[0]:" in in_file.stderr


# --- item 9: policy validate -----------------------------------------------------------------


def test_policy_validate_reads_standard_input(tmp_path: Path) -> None:
    valid = run_imagegate("policy", "validate", "-p", "-", stdin=POLICY_HEAD + "trusted: [ghcr.io/example]\n")
    assert valid.returncode == 0, valid.stderr
    assert "valid: <stdin>" in valid.stdout and "trusted: ghcr.io/example" in valid.stdout
    invalid = run_imagegate("policy", "validate", "-p", "-", stdin=POLICY_HEAD + "trusted: [nginx]\n")
    assert invalid.returncode == 2 and "<stdin>:3: trusted[0]:" in invalid.stderr
    # check reads its policy from stdin too, but not its policy and its manifests at once
    both = run_imagegate("check", "-", "-p", "-", stdin=POLICY_HEAD)
    assert both.returncode == 2 and "standard input" in both.stderr


@pytest.mark.parametrize(
    ("body", "where", "allowed"),
    [
        ("mode: banana\n", "p.yaml:3: mode: Invalid enum value 'banana'", "enforce, warn, audit"),
        ("byoc: {default: maybe}\n", "p.yaml:3: byoc.default: Invalid enum value 'maybe'", "allow, deny"),
        (
            "podSecurity:\n  level: strict\n",
            "p.yaml:4: podSecurity.level: Invalid enum value 'strict'",
            "baseline, privileged, restricted",
        ),
        (
            "pinning: {style: sha}\n",
            "p.yaml:3: pinning.style: Invalid enum value 'sha'",
            "digest, tag-and-digest",
        ),
        (
            "podSecurity:\n  overrides:\n    - {namespaces: [tool-a], mode: loud}\n",
            "p.yaml:5: podSecurity.overrides[0].mode: Invalid enum value 'loud'",
            "enforce, warn, audit",
        ),
    ],
)
def test_enum_errors_list_the_allowed_values(tmp_path: Path, body: str, where: str, allowed: str) -> None:
    (tmp_path / "p.yaml").write_text(POLICY_HEAD + body)
    result = run_imagegate("policy", "validate", "-p", str(tmp_path / "p.yaml"))
    assert result.returncode == 2
    assert where in result.stderr
    listed = result.stderr.split("write one of: ", 1)[1].strip()
    assert sorted(listed.split(", ")) == sorted(allowed.split(", "))


def test_identity_errors_name_the_namespace(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        POLICY_HEAD
        + "podSecurity:\n  toolProfile:\n    identities:\n"
        + "      tool-a: {uid: 51000}\n      tool-b: {uid: fifty}\n      tool-c: {uid: 52000}\n"
    )
    result = run_imagegate("policy", "validate", "-p", str(tmp_path / "p.yaml"))
    assert result.returncode == 2
    assert "p.yaml:7: podSecurity.toolProfile.identities.tool-b.uid: Expected `int`, got `str`" in result.stderr
    assert "[...]" not in result.stderr
    # the same in an identities file, for an unknown key
    (tmp_path / "ids.yaml").write_text(
        "apiVersion: imagegate.toolforge.org/v1\nkind: ToolIdentities\n"
        + "identities:\n  tool-a: {uid: 51000}\n  tool-b: {uid: 51001, gdi: 3}\n"
    )
    (tmp_path / "p.yaml").write_text(POLICY_HEAD + "podSecurity:\n  toolProfile:\n    identitiesFile: ids.yaml\n")
    in_file = run_imagegate("policy", "validate", "-p", str(tmp_path / "p.yaml"))
    assert in_file.returncode == 2
    assert "ids.yaml:5: identities.tool-b.gdi: unknown key 'gdi'" in in_file.stderr


def test_a_missing_file_names_the_key_that_points_to_it(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(POLICY_HEAD + "byoc:\n  default: deny\n  grantsFile: grants.yaml\n")
    result = run_imagegate("policy", "validate", "-p", str(tmp_path / "p.yaml"))
    assert result.returncode == 2
    assert f"{tmp_path}/grants.yaml: file not found (named by byoc.grantsFile in {tmp_path}/p.yaml:5)" in (
        result.stderr
    )
    given = run_imagegate("policy", "validate", "-p", str(tmp_path / "p.yaml"), "-g", str(tmp_path / "g.yaml"))
    assert given.returncode == 2 and "g.yaml: file not found (given by --grants)" in given.stderr
    (tmp_path / "p.yaml").write_text(
        POLICY_HEAD + "podSecurity:\n  toolProfile:\n    identitiesFile: /nonexistent/identities.yaml\n"
    )
    identities = run_imagegate("policy", "validate", "-p", str(tmp_path / "p.yaml"))
    assert identities.returncode == 2
    assert "/nonexistent/identities.yaml: file not found (named by podSecurity.toolProfile.identitiesFile in" in (
        identities.stderr
    )
