"""Operating it: audit of a recorded cluster dump, grant lifecycle, the layer report (real registry,
HTML opened in headless Chromium)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagegate.core.policy import load_grants
from imagegate.shell.cluster.grants_file import edit_grants_file
from tests.conftest import GRANTS_HEADER, POLICY_HEADER, REPO_ROOT, run_imagegate
from tests.oci_images import OciLayout, layers
from tests.registry_process import UNHURRIED, Registry, run_registry

FIXTURES = REPO_ROOT / "tests" / "fixtures"
DUMP = FIXTURES / "cluster-dump.json"
POLICY = FIXTURES / "audit-policy.yaml"


# --- audit ---------------------------------------------------------------------------------


def test_audit_of_a_recorded_dump() -> None:
    result = run_imagegate("audit", "--from", str(DUMP), "-p", str(POLICY), "--now", "2026-11-24", "-o", "json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["objects"] == 8 and report["deniedObjects"] == 4
    namespaces = report["namespaces"]
    assert set(namespaces) == {"tool-byoc", "tool-expired", "tool-root"}
    byoc = namespaces["tool-byoc"]["denied"]["untrusted-registry"]
    assert sorted(e["subject"] for e in byoc) == ["CronJob tool-byoc/nightly", "Pod tool-byoc/byoc-1"]
    expired = namespaces["tool-expired"]["denied"]["untrusted-registry"][0]
    assert "expired on 2026-10-01" in expired["message"]
    assert "tool-profile:runAsUser" in namespaces["tool-root"]["denied"]
    states = {g["namespace"]: g["state"] for g in report["grants"]}
    assert states == {"tool-expired": "expired", "tool-granted": "expiring"}
    assert "4 objects would be denied" in report["summary"]


def test_audit_table_and_a_passing_policy(tmp_path: Path) -> None:
    table = run_imagegate("audit", "--from", str(DUMP), "-p", str(POLICY), "--now", "2026-11-24")
    assert table.returncode == 1
    assert "findings by namespace" in table.stdout and "BYOC grants" in table.stdout
    assert table.stdout.strip().splitlines()[-1].startswith("8 objects")
    # a proposed policy that opens the gate and drops the tool profile: nobody would break
    (tmp_path / "open.yaml").write_text(
        POLICY_HEADER + "byoc: {default: allow}\nnamespaces: {exclude: [kube-system]}\n"
    )
    opened = run_imagegate("audit", "--from", str(DUMP), "-p", str(tmp_path / "open.yaml"))
    assert opened.returncode == 0, opened.stdout


def test_audit_bad_dump(tmp_path: Path) -> None:
    (tmp_path / "dump.json").write_text('{"kind": "List", "items": [')
    result = run_imagegate("audit", "--from", str(tmp_path / "dump.json"))
    assert result.returncode == 2 and "invalid dump" in result.stderr


# --- grants --------------------------------------------------------------------------------


def test_grant_lifecycle_on_a_file(tmp_path: Path) -> None:
    grants = tmp_path / "grants.yaml"
    grants.write_text(GRANTS_HEADER + "grants: []\n")
    added = run_imagegate(
        "grants",
        "add",
        "tool-a",
        "-g",
        str(grants),
        "-r",
        "ghcr.io/a",
        "--expires",
        "2026-12-01",
        "--reason",
        "upstream image",
        "--ticket",
        "T42",
        "--require-base-image",
        "--now",
        "2026-11-24",
    )
    assert added.returncode == 0, added.stderr
    (grant,) = load_grants(grants.read_text(), "grants.yaml")
    assert grant.namespace == "tool-a" and grant.ticket == "T42" and grant.require_base_image
    again = run_imagegate("grants", "add", "tool-a", "-g", str(grants))
    assert again.returncode == 2 and "--replace" in again.stderr
    bad = run_imagegate("grants", "add", "tool-b", "-g", str(grants), "-r", "nginx")
    assert bad.returncode == 2 and "does not start with a registry" in bad.stderr
    assert len(load_grants(grants.read_text(), "g")) == 1  # nothing written on a refused change
    listed = run_imagegate("grants", "list", "-g", str(grants), "-o", "json", "--now", "2026-11-24")
    assert json.loads(listed.stdout)[0]["state"] == "expiring"
    expiring = run_imagegate("grants", "expiring", "-g", str(grants), "--days", "30", "--now", "2026-11-24")
    assert expiring.returncode == 1 and "tool-a" in expiring.stdout
    calm = run_imagegate("grants", "expiring", "-g", str(grants), "--days", "3", "--now", "2026-11-24")
    assert calm.returncode == 0
    printed = run_imagegate(
        "grants",
        "revoke",
        "tool-a",
        "-g",
        str(grants),
        "--reason",
        "moved to the platform's images",
        "--by",
        "alice",
        "--print-configmap",
        "imagegate/imagegate-grants",
    )
    assert printed.returncode == 0, printed.stderr
    configmap = yaml.safe_load(printed.stdout)
    assert configmap["kind"] == "ConfigMap" and configmap["metadata"] == {
        "name": "imagegate-grants",
        "namespace": "imagegate",
    }
    assert load_grants(configmap["data"]["grants.yaml"], "cm") == ()
    missing = run_imagegate("grants", "revoke", "tool-a", "-g", str(grants), "--reason", "again", "--by", "alice")
    assert missing.returncode == 2 and "has no grant" in missing.stderr


def test_concurrent_grant_edits_lose_nothing(tmp_path: Path) -> None:
    grants = tmp_path / "grants.yaml"
    grants.write_text(GRANTS_HEADER + "grants: []\n")
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "imagegate", "grants", "add", f"tool-{n}", "-g", str(grants)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for n in range(12)
    ]
    for process in processes:
        assert process.wait(timeout=60) == 0
    assert sorted(g.namespace for g in load_grants(grants.read_text(), "g")) == sorted(f"tool-{n}" for n in range(12))


def test_an_editor_without_the_lock_is_not_overwritten(tmp_path: Path) -> None:
    """Compare-and-swap: a change made between our read and our write makes us redo ours."""
    grants = tmp_path / "grants.yaml"
    grants.write_text(GRANTS_HEADER + "grants:\n  - namespace: tool-first\n")
    calls = []

    def change(current: list[dict[str, Any]]) -> list[dict[str, Any]]:
        calls.append(len(current))
        if len(calls) == 1:  # someone else saves the file while we are editing
            grants.write_text(GRANTS_HEADER + "grants:\n  - namespace: tool-first\n  - namespace: tool-theirs\n")
        return [*current, {"namespace": "tool-ours"}]

    edit_grants_file(grants, change)
    assert calls == [1, 2]
    assert [g.namespace for g in load_grants(grants.read_text(), "g")] == ["tool-first", "tool-theirs", "tool-ours"]


# --- layers --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, Path]]:
    workdir = tmp_path_factory.mktemp("layers")
    with run_registry(workdir / "registry", "htpasswd") as reg:
        layout = OciLayout(workdir / "layout")
        base = layers("base", 4)
        pushes = {
            "toolforge/base:1": base,
            "toolforge/web:1": [*base, *layers("web", 1)],
            "tool-a/app:1": [*base, *layers("a", 2)],
            "tool-b/app:1": [*layers("alpine", 3), *layers("b", 2)],
        }
        for dest, image_layers in pushes.items():
            reg.push(layout, dest.replace("/", "-").replace(":", "-"), image_layers, dest)
        policy = workdir / "policy.yaml"
        policy.write_text(
            f"{POLICY_HEADER}trusted: [{reg.host}/toolforge]\n"
            f"registry: {{caFile: {reg.tls.ca_cert}, credentialsFile: {reg.docker_config(workdir / 'config.json')}, {UNHURRIED}}}\n"
            f"baseImages: {{trusted: ['{reg.host}/toolforge/base:1']}}\n"
        )
        yield reg, policy


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("chromium is not installed (scripts/test.sh installs Debian's chromium)")
    return found


def test_layer_report_numbers_and_html_chart(registry: tuple[Registry, Path], tmp_path: Path) -> None:
    reg, policy = registry
    images = [f"{reg.host}/{name}" for name in ("toolforge/web:1", "tool-a/app:1", "tool-b/app:1")]
    html = tmp_path / "layers.html"
    result = run_imagegate("layers", *images, "-p", str(policy), "--html", str(html), "-o", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    by_image = {i["image"].split("/", 1)[1]: i for i in report["images"]}
    assert not by_image["toolforge/web:1"]["byoc"] and by_image["tool-a/app:1"]["byoc"]
    # tool-a is built on the base: its base part is the base's layers; tool-b shares nothing
    assert by_image["tool-a/app:1"]["baseBytes"] == by_image["toolforge/web:1"]["baseBytes"] > 0
    assert by_image["tool-b/app:1"]["baseBytes"] == 0
    assert by_image["tool-b/app:1"]["ownBytes"] == by_image["tool-b/app:1"]["totalBytes"]
    assert report["uniqueBytes"] < report["totalBytes"]  # the base is stored once
    assert report["byocAddedBytes"] == by_image["tool-a/app:1"]["ownBytes"] + by_image["tool-b/app:1"]["ownBytes"]

    # open the page in a real browser: the chart must have been drawn
    profile = tmp_path / "chromium-profile"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ]
    dom = subprocess.run(
        [_chromium(), *flags, "--dump-dom", html.as_uri()], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert 'data-rendered="3"' in dom
    assert dom.count('class="bar own"') == 3 and dom.count('class="bar base"') == 3
    assert "tool-b/app:1" in dom
    screenshot = tmp_path / "layers.png"
    subprocess.run(
        [_chromium(), *flags, "--window-size=1400,700", f"--screenshot={screenshot}", html.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert screenshot.stat().st_size > 10_000  # a picture, not a blank page


def test_layers_from_a_dump_with_an_unreachable_image(registry: tuple[Registry, Path], tmp_path: Path) -> None:
    reg, policy = registry
    dump = {
        "kind": "List",
        "items": [
            {
                "kind": "Pod",
                "metadata": {"name": "p", "namespace": "tool-a"},
                "spec": {
                    "containers": [
                        {"name": "a", "image": f"{reg.host}/toolforge/web:1"},
                        {"name": "b", "image": f"{reg.host}/toolforge/missing:1"},
                    ]
                },
            },
        ],
    }
    (tmp_path / "dump.json").write_text(json.dumps(dump))
    result = run_imagegate("layers", "--from", str(tmp_path / "dump.json"), "-p", str(policy), "-o", "json")
    assert result.returncode == 2, result.stderr  # a report on part of the images is not a success
    report = json.loads(result.stdout)
    assert [i["image"] for i in report["images"]] == [f"{reg.host}/toolforge/web:1"]
    assert "does not exist" in report["skipped"][0]
    assert f"error: {reg.host}: 1 image not read (not-found)" in result.stderr
    assert "1 image of 2 not read" in result.stderr
    table = run_imagegate("layers", "--from", str(tmp_path / "dump.json"), "-p", str(policy))
    assert "skipped" not in table.stdout and "not read" not in table.stdout  # stdout is the report only


def test_layers_and_bases_that_read_nothing_fail_with_one_line_per_registry(tmp_path: Path) -> None:
    from tests.webhook_process import free_port  # noqa: PLC0415

    down = f"127.0.0.1:{free_port()}"  # nothing listens there
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY_HEADER + f"trusted: [{down}]\nbaseImages: {{trusted: [{down}/base:1]}}\n")
    items = [
        {"kind": "Pod", "metadata": {"name": f"p{n}", "namespace": "tool-a"},
         "spec": {"containers": [{"name": "c", "image": f"{down}/app{n}:1"}]}}
        for n in range(40)
    ]  # fmt: skip
    (tmp_path / "dump.json").write_text(json.dumps({"kind": "List", "items": items}))
    for command in ("layers", "bases"):
        result = run_imagegate(command, "--from", str(tmp_path / "dump.json"), "-p", str(policy))
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert any(f"{down}: 40 images not read (unreachable)" in line for line in errors), result.stderr
        assert "none of the 40 images could be read: no report" in result.stderr
        assert len(errors) <= 3 and result.stdout == ""  # one line per cause, never one per image
    elsewhere = run_imagegate("layers", "example.invalid/app:1", "-p", str(policy))
    assert elsewhere.returncode == 2 and "not-contacted" not in elsewhere.stderr  # a named image is asked
    assert "example.invalid" in elsewhere.stderr


def test_audit_options_of_compare_alone_are_refused(tmp_path: Path) -> None:
    (tmp_path / "dump.json").write_text(json.dumps({"kind": "List", "items": []}))
    for option in (["--html", str(tmp_path / "a.html")], ["--box-ends", "2099-01-01"], ["--select", "tool-a"]):
        result = run_imagegate("audit", "--from", str(tmp_path / "dump.json"), *option)
        assert result.returncode == 2 and "belongs to --compare" in result.stderr, result.stderr
    assert not (tmp_path / "a.html").exists()


# --- the JSON documents operators script against ---------------------------------------------


def _keys(document: Any) -> Any:
    """The shape of a JSON document: objects as their sorted keys (one level of each list)."""
    if isinstance(document, dict):
        return {key: _keys(value) for key, value in sorted(document.items())}
    if isinstance(document, list):
        return [_keys(document[0])] if document else []
    return type(document).__name__


FINDING = {k: "str" for k in ("container", "containerKind", "image", "message", "mode", "rule")}


def test_every_json_document_keeps_its_keys(registry: tuple[Registry, Path], tmp_path: Path) -> None:
    # The --output json keys are a contract (cli/json_docs.py); a change here is a deliberate one.
    reg, policy = registry
    (tmp_path / "pod.yaml").write_text(
        "kind: Pod\nmetadata: {name: p, namespace: tool-a}\n"
        f"spec: {{containers: [{{name: a, image: '{reg.host}/tool-a/app:1'}}]}}\n"
    )
    check = json.loads(run_imagegate("check", str(tmp_path / "pod.yaml"), "-p", str(policy), "-o", "json").stdout)
    assert _keys(check) == {
        "allowed": "bool",
        "counts": {
            "findings": _keys(check["counts"]["findings"]),
            "images": _keys(check["counts"]["images"]),
            "objects": _keys(check["counts"]["objects"]),
        },
        "objects": [
            {
                "allowed": "bool",
                "audits": [],
                "governed": "bool",
                "kind": "str",
                "message": "str",
                "name": "str",
                "namespace": "str",
                "notices": [],
                "patches": [],
                "source": "str",
                "violations": [FINDING],
                "warnings": [],
                "images": [
                    {
                        "allowedBy": "NoneType",
                        "container": "str",
                        "containerKind": "str",
                        "image": "str",
                        "reference": "str",
                        "rule": "str",
                    }
                ],
            }
        ],
        "summary": "str",
    }
    assert (
        set(check["counts"]["objects"])
        == set(check["counts"]["images"])
        == {"denied", "warn", "audit", "allowed", "exempt"}
    )
    assert set(check["counts"]["findings"]) == {"enforce", "warn", "audit"}

    inspect = json.loads(run_imagegate("inspect", f"{reg.host}/tool-a/app:1", "-p", str(policy), "-o", "json").stdout)
    assert _keys(inspect) == {
        "availablePlatforms": ["str"],
        "base": {"detail": "str", "ok": "bool"},
        "digest": "str",
        "mediaType": "str",
        "platforms": [
            {
                "annotations": {},
                "diffIds": ["str"],
                "layers": [{"digest": "str", "size": "int"}],
                "manifest": "str",
                "platform": "str",
            }
        ],
        "reference": "str",
    }
    layers = json.loads(run_imagegate("layers", f"{reg.host}/tool-a/app:1", "-p", str(policy), "-o", "json").stdout)
    assert _keys(layers) == {
        "baseBytes": "int",
        "byocAddedBytes": "int",
        "skipped": [],
        "totalBytes": "int",
        "uniqueBytes": "int",
        "images": [
            {
                "baseBytes": "int",
                "byoc": "bool",
                "image": "str",
                "ownBytes": "int",
                "sharedBytes": "int",
                "totalBytes": "int",
            }
        ],
    }


def test_audit_and_grants_json_keep_their_keys(tmp_path: Path) -> None:
    audit = json.loads(
        run_imagegate("audit", "--from", str(DUMP), "-p", str(POLICY), "--now", "2026-11-24", "-o", "json").stdout
    )
    grant = {
        "daysLeft": "int",
        "expires": "str",
        "namespace": "str",
        "reason": "str",
        "registries": ["str"],
        "source": "str",
        "state": "str",
        "ticket": "str",
        # every key of a grant (issue 23 item 10): who asked, the checks it makes, its mode
        "requestedBy": "str",
        "requireBaseImage": "bool",
        "signedBy": "NoneType",
        "mode": "NoneType",
    }
    entry = {k: "str" for k in ("image", "message", "mode", "rule", "source", "subject", "where")}
    namespaces = audit["namespaces"]
    assert _keys(audit) == {
        "deniedObjects": "int",
        "findings": [
            {
                "image": "str",
                "message": "str",
                "namespace": "str",
                "objects": ["str"],
                "outcome": "str",
                "owner": "str",
                "rule": "str",
                "where": "str",
            }
        ],
        "grants": [{**grant, "registries": "NoneType"}],  # the first, tool-expired, names no registries
        "namespaces": {
            ns: {o: {r: [entry] for r in rules} for o, rules in namespaces[ns].items()} for ns in namespaces
        },
        "objects": "int",
        "summary": "str",
        "totalsByRule": [{"findings": "int", "namespaces": "int", "objects": "int", "outcome": "str", "rule": "str"}],
    }
    grants = tmp_path / "grants.yaml"
    grants.write_text(
        GRANTS_HEADER + "grants:\n  - {namespace: tool-a, registries: [ghcr.io/a], expires: 2026-12-01}\n"
    )
    listed = json.loads(run_imagegate("grants", "list", "-g", str(grants), "--now", "2026-11-24", "-o", "json").stdout)
    assert _keys(listed) == [grant]
    compared = json.loads(
        run_imagegate(
            "audit",
            "--compare",
            "closed",
            "byoc",
            "--from",
            str(DUMP),
            "-p",
            str(POLICY),
            "--now",
            "2026-11-24",
            "-o",
            "json",
        ).stdout
    )
    assert _keys(compared) == {
        "deniedObjects": ["int"],
        "governed": ["int"],
        "objects": "int",
        "options": ["str"],
        "rules": {r: ["int"] for r in compared["rules"]},
        "toolsDenied": ["int"],
        "warnedObjects": ["int"],
        "unreadObjects": ["int"],
        "namespaces": {ns: {"denied": ["int"], "rules": [["str"]]} for ns in compared["namespaces"]},
        "descriptions": ["str"],
        "boxEnds": "NoneType",
        "tools": "int",
        "reference": "str",
        # per option; the first is closed, the reference, which lets nothing in
        "letsIn": [
            {"images": [], "objects": "int", "registries": [], "tools": [], "ifProved": "int", "ifProvedTools": []}
        ],
    }
