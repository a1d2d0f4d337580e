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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagegate.core.report import top_owners
from tests.conftest import REPO_ROOT, cli_env, run_imagegate
from tests.oci_images import OciLayout, layers
from tests.registry_process import UNHURRIED, Registry, run_registry

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
    # the argument is checked by the one namespace-name rule before any file is read
    assert bad_name.returncode == 2 and "'Tool_C' is not a namespace name" in bad_name.stderr
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
        d["metadata"]["name"]: d
        for part in ("base", "state")
        for d in yaml.safe_load_all((REPO_ROOT / f"deploy/{part}/configmaps.yaml").read_text())
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
    # the words, from the same run as JSON (the table wraps its last column where the paths'
    # widths put the cut, so a phrase may be split across lines)
    judged = {
        f"{o['kind']} {o['namespace']}/{o['name']}": o
        for o in json.loads(run_imagegate("check", str(REPO_ROOT / "examples"), *deploy_policy, "-o", "json").stdout)[
            "objects"
        ]
    }
    web_rules = {v["rule"]: v["message"] for v in judged["Pod tool-example/web"]["violations"]}
    assert "no uid/gid is known for namespace tool-example" in web_rules["tool-profile:identity"]
    assert "tool-profile" in " ".join(web.split())
    custom_rules = [v["rule"] for v in judged["Deployment tool-example/custom"]["violations"]]
    assert custom_rules.count("untrusted-registry") == 2 and "tool-profile:identity" in custom_rules
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
            env=cli_env(TERM="xterm"),
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
    identities = str(REPO_ROOT / "tests" / "fixtures" / "toolforge" / "identities.yaml")
    piped = run_imagegate("check", str(tmp_path / "dump.json"), "-o", "json", "--identities", identities)
    assert piped.returncode == 1 and piped.stderr == ""
    code, _stdout, terminal = _with_terminal_stderr(
        tmp_path, "audit", "--from", str(tmp_path / "dump.json"), "-o", "json"
    )
    assert code == 1 and "judging 300 objects" in terminal
    assert (
        run_imagegate("audit", "--from", str(tmp_path / "dump.json"), "-o", "json", "--identities", identities).stderr
        == ""
    )


# --- item 11: audit reports a finding once, at its top owner -----------------------------------

AUDIT_POLICY = POLICY_HEAD + "trusted: [docker-registry.svc.toolforge.org]\nnamespaces: {include: ['tool-*']}\n"


def _pod_spec(image: str, **more: Any) -> dict[str, Any]:
    return {"containers": [{"name": "app", "image": image}], **more}


def _family(namespace: str, image: str, *, references: bool = True, pods: int = 2) -> list[dict[str, Any]]:
    """A Deployment, its ReplicaSet and Pods, and a CronJob with a Job and a Pod, all running ``image``."""

    def meta(name: str, owner: tuple[str, str] | None = None) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": name, "namespace": namespace, "uid": f"{namespace}-{name}"}
        if owner is not None and references:
            kind, owner_name = owner
            metadata["ownerReferences"] = [
                {"kind": kind, "name": owner_name, "uid": f"{namespace}-{owner_name}", "controller": True}
            ]
        return metadata

    template = {"metadata": {"labels": {"app": "web"}}, "spec": _pod_spec(image)}
    objects: list[dict[str, Any]] = [
        {"kind": "Deployment", "metadata": meta("web"), "spec": {"template": template}},
        {"kind": "ReplicaSet", "metadata": meta("web-5d", ("Deployment", "web")), "spec": {"template": template}},
    ]
    objects += [
        {"kind": "Pod", "metadata": meta(f"web-5d-{n}", ("ReplicaSet", "web-5d")), "spec": _pod_spec(image)}
        for n in range(pods)
    ]
    job_pod = _pod_spec(image, restartPolicy="OnFailure")
    job_template = {"spec": {"template": {"spec": job_pod}}}
    objects += [
        {"kind": "CronJob", "metadata": meta("nightly"), "spec": {"jobTemplate": job_template}},
        {"kind": "Job", "metadata": meta("nightly-1", ("CronJob", "nightly")), "spec": {"template": {"spec": job_pod}}},
        {"kind": "Pod", "metadata": meta("nightly-1-x", ("Job", "nightly-1")), "spec": job_pod},
    ]
    return objects


def _audit_table_rows(table: str, title: str) -> list[list[str]]:
    """The rows of one audit table (first line of each row only), as cells."""
    section = table.split(title, 1)[1].split("┗", 1)[0] if "┗" in table else table.split(title, 1)[1]
    section = section.split("└", 1)[0]
    rows = []
    for line in section.splitlines():
        if line.startswith("│"):
            cells = [c.strip() for c in line.strip("│").split("│")]
            if cells[0]:
                rows.append(cells)
    return rows


@pytest.mark.parametrize("references", [True, False], ids=["ownerReferences", "template-equality"])
def test_audit_reports_a_finding_once_at_its_top_owner(tmp_path: Path, references: bool) -> None:
    (tmp_path / "policy.yaml").write_text(AUDIT_POLICY)
    items = _family("tool-a", "ghcr.io/a/app:1", references=references)
    items.append(
        {"kind": "Pod", "metadata": {"name": "alone", "namespace": "tool-a"}, "spec": _pod_spec("quay.io/b/x:2")}
    )
    (tmp_path / "dump.json").write_text(json.dumps({"kind": "List", "items": items}))
    args = ("audit", "--from", str(tmp_path / "dump.json"), "-p", str(tmp_path / "policy.yaml"))
    result = run_imagegate(*args)
    assert result.returncode == 1, result.stderr
    totals = _audit_table_rows(result.stdout, "cluster-wide totals by rule")
    assert totals == [["denied", "untrusted-registry", "3", "8", "1"]]
    rows = _audit_table_rows(result.stdout, "findings by namespace, once per top owner")
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in rows] == [
        ("tool-a", "denied", "untrusted-registry", "CronJob tool-a/nightly", "3"),
        ("tool-a", "denied", "untrusted-registry", "Deployment tool-a/web", "4"),
        ("tool-a", "denied", "untrusted-registry", "Pod tool-a/alone", "1"),
    ]
    assert "8 objects, 8 images: 8 objects would be denied; 3 distinct findings (3 denied" in result.stdout
    by_rule = run_imagegate(*args, "--by", "rule")
    rows = _audit_table_rows(by_rule.stdout, "findings by rule, once per top owner")
    assert rows[0][:5] == ["untrusted-registry", "denied", "tool-a", "CronJob tool-a/nightly", "3"]
    # JSON keeps every object, and the distinct findings with the objects each covers
    report = json.loads(run_imagegate(*args, "-o", "json").stdout)
    assert len(report["namespaces"]["tool-a"]["denied"]["untrusted-registry"]) == 8
    web = next(f for f in report["findings"] if f["owner"] == "Deployment tool-a/web")
    assert sorted(o.split(" (")[0] for o in web["objects"]) == [
        "Deployment tool-a/web",
        "Pod tool-a/web-5d-0",
        "Pod tool-a/web-5d-1",
        "ReplicaSet tool-a/web-5d",
    ]
    assert report["totalsByRule"] == [
        {"outcome": "denied", "rule": "untrusted-registry", "findings": 3, "objects": 8, "namespaces": 1}
    ]


def test_an_owner_missing_from_the_dump_is_still_the_top() -> None:
    """Pods of a ReplicaSet the dump does not hold: one finding, at that ReplicaSet."""
    pods = [
        {
            "kind": "Pod",
            "metadata": {
                "name": f"web-5d-{n}",
                "namespace": "tool-a",
                "ownerReferences": [{"kind": "ReplicaSet", "name": "web-5d", "uid": "u", "controller": True}],
            },
            "spec": _pod_spec("ghcr.io/a/app:1"),
        }
        for n in range(3)
    ]
    assert top_owners(pods) == ["ReplicaSet tool-a/web-5d"] * 3
    result = run_imagegate("audit", "--from", "-", stdin=json.dumps({"kind": "List", "items": pods}))
    assert result.returncode == 1
    rows = _audit_table_rows(result.stdout, "findings by namespace, once per top owner")
    assert [(r[2], r[3], r[4]) for r in rows] == [
        ("tool-profile:identity", "ReplicaSet tool-a/web-5d", "3"),  # the built-in policy's tool profile
        ("untrusted-registry", "ReplicaSet tool-a/web-5d", "3"),
    ]


def test_audit_of_3000_namespaces_prints_a_line_per_distinct_finding(tmp_path: Path) -> None:
    """The issue's dump: 3,000 tool namespaces, each a Deployment with its ReplicaSet and Pod."""
    namespaces = 3000
    items: list[dict[str, Any]] = []
    for n in range(namespaces):
        family = _family(f"tool-{n}", f"ghcr.io/tool-{n}/app:1", pods=1)
        items += family[:3]  # Deployment, ReplicaSet, Pod
    items += [{"kind": "Namespace", "metadata": {"name": f"tool-{n}"}} for n in range(namespaces)]
    (tmp_path / "dump.json").write_text(json.dumps({"kind": "List", "items": items}))
    (tmp_path / "policy.yaml").write_text(AUDIT_POLICY)
    result = run_imagegate(
        "audit", "--from", str(tmp_path / "dump.json"), "-p", str(tmp_path / "policy.yaml"), timeout=600
    )
    assert result.returncode == 1, result.stderr[-2000:]
    # too many findings for a table: one line each (issue 23 item 11), never wrapped
    listed = result.stdout.split("findings by namespace, once per top owner:\n", 1)[1].splitlines()
    rows = [line.split("  ") for line in listed if line.startswith("tool-")]
    assert len(rows) == namespaces  # one per namespace's Deployment, not three
    assert all(r[1] == "denied" and r[3] == f"Deployment {r[0]}/web (3 objects)" for r in rows), rows[:3]
    assert result.stdout.count("\n") < namespaces + 40  # the totals and headers are constant
    assert _audit_table_rows(result.stdout, "cluster-wide totals by rule") == [
        ["denied", "untrusted-registry", "3,000", "9,000", "3,000"]
    ]


# --- items 5 and 7: layers and audit --registry against a real registry ------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, Path, dict[str, int]]]:
    """docker-registry with a trusted base, trusted images, and BYOC images in several tags."""
    workdir = tmp_path_factory.mktemp("registry")
    with run_registry(workdir / "registry", "htpasswd") as reg:
        layout = OciLayout(workdir / "layout")
        base, alpine, common = layers("base", 4), layers("alpine", 3), layers("tool-a-deps", 2)
        parts = {"tool-a-deps": common, "alpine": alpine}
        pushes = {
            "toolforge/base:1": base,
            "toolforge/web:1": [*base, *layers("web", 1)],
            "toolforge/alpine-tool:1": [*alpine, *layers("alpine-tool", 1)],  # trusted, not a trusted base
            "tool-b/app:1": [*alpine, *(parts.setdefault("b", layers("b", 2)))],
        }
        for version in (1, 2, 3):  # three tags of one tool's image: shared with each other only
            parts[f"a{version}"] = layers(f"a{version}", 1)
            pushes[f"tool-a/app:{version}"] = [*base, *common, *parts[f"a{version}"]]
        for dest, image_layers in pushes.items():
            reg.push(layout, dest.replace("/", "-").replace(":", "-"), image_layers, dest)
        policy = workdir / "policy.yaml"
        policy.write_text(
            POLICY_HEAD
            + f"trusted: [{reg.host}/toolforge]\n"
            + "byoc: {default: allow}\n"
            + f"registry: {{caFile: {reg.tls.ca_cert}, credentialsFile: {reg.docker_config(workdir / 'config.json')}, {UNHURRIED}}}\n"
            + f"baseImages: {{trusted: ['{reg.host}/toolforge/base:1']}}\n"
            + "pinning: {enabled: true}\n"
        )
        sizes = {name: sum(len(layer.blob) for layer in found) for name, found in parts.items()}
        yield reg, policy, sizes


def test_layers_counts_what_no_trusted_image_has_as_byocs(
    registry: tuple[Registry, Path, dict[str, int]],
) -> None:
    reg, policy, sizes = registry
    names = ["toolforge/web:1", "toolforge/alpine-tool:1", "tool-b/app:1", *(f"tool-a/app:{v}" for v in (1, 2, 3))]
    result = run_imagegate("layers", *(f"{reg.host}/{n}" for n in names), "-p", str(policy), "-o", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    # tool-a's shared dependency layers count once, each tag's own layer once; tool-b's alpine
    # layers are in a trusted image, so only its own two are BYOC's; the base is trusted
    expected = sizes["tool-a-deps"] + sizes["a1"] + sizes["a2"] + sizes["a3"] + sizes["b"]
    assert report["byocAddedBytes"] == expected
    by_image = {i["image"].split("/", 1)[1]: i for i in report["images"]}
    assert by_image["tool-a/app:1"]["sharedBytes"] == sizes["tool-a-deps"]  # per image: shared with its other tags
    table = run_imagegate("layers", *(f"{reg.host}/{n}" for n in names), "-p", str(policy))
    assert f"BYOC images add {expected:,} B that no trusted image has" in table.stdout
    # 300 tags of one image were said to "add 0 B": one tag alone adds all its non-base bytes
    one = json.loads(run_imagegate("layers", f"{reg.host}/tool-a/app:1", "-p", str(policy), "-o", "json").stdout)
    assert one["byocAddedBytes"] == sizes["tool-a-deps"] + sizes["a1"]


def test_audit_registry_reports_a_missing_tag_as_an_error(
    registry: tuple[Registry, Path, dict[str, int]], tmp_path: Path
) -> None:
    reg, policy, _sizes = registry
    spec = _pod_spec(f"{reg.host}/toolforge/web:1")
    spec["containers"].append({"name": "b", "image": f"{reg.host}/toolforge/web:nope"})
    pod = {"kind": "Pod", "metadata": {"name": "p", "namespace": "tool-a"}, "spec": spec}
    dump = {"kind": "List", "items": [pod]}
    (tmp_path / "dump.json").write_text(json.dumps(dump))
    args = ("audit", "--from", str(tmp_path / "dump.json"), "-p", str(policy), "--registry")
    report = json.loads(run_imagegate(*args, "-o", "json").stdout)
    namespace = report["namespaces"]["tool-a"]
    assert [e["image"] for e in namespace["pinned"]["pin"]] == [f"{reg.host}/toolforge/web:1"]
    (missing,) = namespace["error"]["image-not-found"]
    assert missing["image"] == f"{reg.host}/toolforge/web:nope" and "does not exist (HTTP 404)" in missing["message"]
    table = run_imagegate(*args)
    assert table.returncode == 1, table.stdout + table.stderr
    rows = _audit_table_rows(table.stdout, "findings by namespace, once per top owner")
    assert [(r[1], r[2]) for r in rows] == [("error", "image-not-found"), ("pinned", "pin")]
    assert "1 errors), 1 images to pin" in table.stdout


def test_layers_progress_on_a_terminal_only(registry: tuple[Registry, Path, dict[str, int]], tmp_path: Path) -> None:
    reg, policy, _sizes = registry
    images = [f"{reg.host}/tool-a/app:{v}" for v in (1, 2, 3)]
    code, stdout, terminal = _with_terminal_stderr(tmp_path, "layers", *images, "-p", str(policy), "-o", "json")
    assert code == 0 and len(json.loads(stdout)["images"]) == 3
    assert "reading 3 images" in terminal
    piped = run_imagegate("layers", *images, "-p", str(policy), "-o", "json")
    assert piped.returncode == 0 and piped.stderr == ""
