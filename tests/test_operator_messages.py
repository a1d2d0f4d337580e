"""Issue 14: operator commands say what they did, with the message and exit code a user sees.

Every test runs the real ``imagegate`` command (a subprocess, as ``run_imagegate`` does).
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT, run_imagegate

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


# --- item 1: check shows every finding, per object --------------------------------------------


def _deploy_policy(tmp_path: Path) -> list[str]:
    """deploy/'s own policy and identities, as its Deployment passes them (--identities)."""
    configmaps = {
        d["metadata"]["name"]: d for d in yaml.safe_load_all((REPO_ROOT / "deploy/base/configmaps.yaml").read_text())
    }
    (tmp_path / "policy.yaml").write_text(configmaps["imagegate-policy"]["data"]["policy.yaml"])
    (tmp_path / "identities.yaml").write_text(configmaps["imagegate-identities"]["data"]["identities.yaml"])
    assert (
        "--identities=/etc/imagegate/identities/identities.yaml"
        in (REPO_ROOT / "deploy/base/deployment.yaml").read_text()
    )
    return ["-p", str(tmp_path / "policy.yaml"), "--identities", str(tmp_path / "identities.yaml")]


def _sections(table: str) -> dict[str, str]:
    """The table's sections (one per object), by the object's first line ("Pod ns/name")."""
    found = {}
    for section in re.split(r"^[┡├].*$", table, flags=re.MULTILINE)[1:]:
        cells = [line.split("│")[2].strip() for line in section.splitlines() if line.startswith("│")]
        found[cells[0]] = section
    return found


def test_check_examples_with_deploys_policy_shows_why_each_object_is_denied(tmp_path: Path) -> None:
    deploy_policy = _deploy_policy(tmp_path)
    result = run_imagegate("check", str(REPO_ROOT / "examples"), *deploy_policy)
    assert result.returncode == 1, result.stderr
    table = result.stdout
    sections = _sections(table)
    # the trusted pod's image is fine, but the pod is denied by the tool profile: both shown
    web = sections["Pod tool-example/web"]
    assert "│ allowed │" in web and "│ denied  │" in web
    assert "tool-profile:identity" in web and "no uid/gid is known for namespace tool-example" in web
    custom = sections["Deployment tool-example/custom"]
    assert custom.count("untrusted-registry") == 2 and "tool-profile:identity" in custom
    assert table.strip().splitlines()[-1] == (
        "2 objects: 2 denied, 0 with warnings, 0 audited, 0 allowed, 0 exempt; "
        "3 images: 2 denied, 0 with warnings, 0 audited, 1 allowed, 0 exempt; "
        "4 findings (4 enforced, 0 warnings, 0 audit)"
    )
    as_json = run_imagegate("check", str(REPO_ROOT / "examples"), *deploy_policy, "-o", "json")
    counts = json.loads(as_json.stdout)["counts"]
    assert counts["objects"]["denied"] == 2 and counts["images"] == {
        "denied": 2,
        "warn": 0,
        "audit": 0,
        "allowed": 1,
        "exempt": 0,
    }


def test_check_shows_tag_and_pod_security_findings_beside_allowed_images(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(
        POLICY_HEAD
        + "trusted: [docker-registry.svc.toolforge.org]\n"
        + "tags: {disallow: [latest]}\n"
        + "podSecurity: {level: baseline, mutate: false}\n"
        + "namespaces: {include: ['tool-*']}\n"
    )
    (tmp_path / "pods.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: tagged, namespace: tool-a}\n"
        "spec:\n  containers:\n    - {name: app, image: docker-registry.svc.toolforge.org/python311:latest}\n"
        "---\n"
        "apiVersion: v1\nkind: Pod\nmetadata: {name: privileged, namespace: tool-a}\n"
        "spec:\n  containers:\n    - name: app\n      image: docker-registry.svc.toolforge.org/python311:3\n"
        "      securityContext: {privileged: true}\n"
        "---\n"
        "apiVersion: v1\nkind: Pod\nmetadata: {name: other, namespace: kube-system}\n"
        "spec:\n  containers:\n    - {name: app, image: busybox}\n    - {name: b, image: busybox}\n"
    )
    result = run_imagegate("check", str(tmp_path / "pods.yaml"), "-p", str(tmp_path / "policy.yaml"))
    assert result.returncode == 1
    sections = _sections(result.stdout)
    tagged = sections["Pod tool-a/tagged"]
    assert "disallowed-tag" in tagged and "uses the disallowed tag 'latest'" in tagged
    privileged = sections["Pod tool-a/privileged"]
    assert "pod-security:privileged" in privileged and "│ allowed │" in privileged
    assert "namespace not governed" in sections["Pod kube-system/other"]
    assert result.stdout.strip().splitlines()[-1] == (
        "3 objects: 2 denied, 0 with warnings, 0 audited, 0 allowed, 1 exempt; "
        "4 images: 1 denied, 0 with warnings, 0 audited, 1 allowed, 2 exempt; "
        "2 findings (2 enforced, 0 warnings, 0 audit)"
    )


# --- item 10: empty input, progress only on a terminal ----------------------------------------


def test_empty_input_says_so(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "blank.yaml").write_text("# nothing here yet\n---\n")
    (tmp_path / "nothing.yaml").write_text("")
    for target, reason in [
        (tmp_path / "empty", "directory with no .yaml, .yml, .json files"),
        (tmp_path / "blank.yaml", "file holds no objects"),
        (tmp_path / "nothing.yaml", "empty file"),
    ]:
        result = run_imagegate("check", str(target))
        assert result.returncode == 0, result.stderr
        assert f"note: {target}: no Kubernetes objects ({reason}" in result.stderr
        assert "0 objects" in result.stdout
    stdin = run_imagegate("check", "-", stdin="")
    assert stdin.returncode == 0 and "note: <stdin>: no Kubernetes objects (standard input is empty)" in stdin.stderr
    audit = run_imagegate("audit", "--from", str(tmp_path / "empty"))
    assert audit.returncode == 0 and "no Kubernetes objects" in audit.stderr
    layers = run_imagegate("layers", "--from", str(tmp_path / "nothing.yaml"))
    assert layers.returncode == 2 and "empty file" in layers.stderr and "no images" in layers.stderr


def _with_terminal_stderr(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    """Run imagegate with stderr on a pseudo-terminal (stdout a file): exit code, stdout, terminal bytes."""
    main, secondary = pty.openpty()
    with (tmp_path / "stdout").open("w+") as stdout:
        process = subprocess.Popen(
            [sys.executable, "-m", "imagegate", *args],
            stdout=stdout,
            stderr=secondary,
            stdin=subprocess.DEVNULL,
            env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "TERM": "xterm"},
        )
        os.close(secondary)
        seen = bytearray()
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            seen.extend(chunk)
        code = process.wait(timeout=120)
        os.close(main)
        stdout.seek(0)
        return code, stdout.read(), seen.decode(errors="replace")


def test_progress_on_a_terminal_and_nothing_on_a_pipe(tmp_path: Path) -> None:
    items = [
        {
            "kind": "Pod",
            "metadata": {"name": f"p{n}", "namespace": "tool-a"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }
        for n in range(300)
    ]
    (tmp_path / "dump.json").write_text(json.dumps({"kind": "List", "items": items}))
    code, stdout, terminal = _with_terminal_stderr(tmp_path, "check", str(tmp_path / "dump.json"), "-o", "json")
    assert code == 1 and len(json.loads(stdout)["objects"]) == 300
    assert "judging 300 objects" in terminal
    piped = run_imagegate("check", str(tmp_path / "dump.json"), "-o", "json")
    assert piped.returncode == 1 and piped.stderr == ""
    code, _stdout, terminal = _with_terminal_stderr(
        tmp_path, "audit", "--from", str(tmp_path / "dump.json"), "-o", "json"
    )
    assert code == 1 and "judging 300 objects" in terminal
    assert run_imagegate("audit", "--from", str(tmp_path / "dump.json"), "-o", "json").stderr == ""
