"""The CI formats of ``check`` and ``audit`` (``-o compact``, ``junit``, ``sarif``, ``policyreport``).

Each is one renderer over the judged objects ``-o json`` prints (where each was read and its
Decision): nothing is judged again here, and the exit codes stay the commands' own.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterable, Iterator, Sequence
from enum import StrEnum
from typing import Any
from urllib.parse import quote

import msgspec
import yaml

from imagegate.core.decide import Decision
from imagegate.core.policy import Policy
from imagegate.core.policyreport import ReportFormat, namespace_judgement, report_document
from imagegate.core.records import Finding, Mode
from imagegate.shell.cli.common import CheckedObject
from imagegate.shell.manifests import Location

__all__ = [
    "CheckOutput",
    "compact_lines",
    "junit_document",
    "policyreport_list",
    "sarif_document",
    "write_ci",
]

TOOL = "imagegate"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


class CheckOutput(StrEnum):
    """What ``check`` and ``audit`` print: the two every command has, and the CI formats."""

    table = "table"
    json = "json"
    compact = "compact"
    junit = "junit"
    sarif = "sarif"
    policyreport = "policyreport"


# A finding's mode as a SARIF level: enforce denies, warn lets in with a warning, audit only records.
SARIF_LEVEL = {Mode.ENFORCE: "error", Mode.WARN: "warning", Mode.AUDIT: "note"}


def _object(decision: Decision) -> str:
    return f"{decision.kind}/{decision.namespace}/{decision.name}"


def compact_lines(results: Iterable[tuple[Location, Decision]]) -> Iterator[str]:
    """One line per finding, kubeconform's style: ``file:line kind/namespace/name image rule mode: message``."""
    for at, decision in results:
        place = f"{at.source}:{at.line}" if at.line else at.source
        for finding in decision.findings:
            image = finding.subject.image or "-"
            yield f"{place} {_object(decision)} {image} {finding.rule} {finding.mode.value}: {finding.message}"


def _rules(results: Sequence[tuple[Location, Decision]]) -> list[str]:
    """Every rule a finding can name, then any other a finding named (a content rule's, say)."""
    from imagegate.shell.webhook.metrics import finding_rules  # noqa: PLC0415 (prometheus_client: only here)

    return list(dict.fromkeys([*finding_rules(), *(f.rule for _, d in results for f in d.findings)]))


def junit_document(results: Sequence[tuple[Location, Decision]]) -> bytes:
    """JUnit XML: a testsuite per object, a testcase per object and rule; an enforced finding fails
    its testcase (warn and audit findings pass, written to its system-out); an object the policy
    does not govern has its testcases skipped."""
    from xml.etree import ElementTree as ET  # noqa: PLC0415 (only for -o junit)

    rules = _rules(results)
    root = ET.Element("testsuites", name=TOOL)
    totals = {"tests": 0, "failures": 0, "skipped": 0}
    for at, decision in results:
        by_rule: dict[str, list[Finding]] = {}
        for finding in decision.findings:
            by_rule.setdefault(finding.rule, []).append(finding)
        suite = ET.SubElement(root, "testsuite", name=f"{_object(decision)} ({at})", file=at.source)
        counts = {"tests": 0, "failures": 0, "skipped": 0}
        for rule in rules:
            case = ET.SubElement(suite, "testcase", name=rule, classname=_object(decision), time="0")
            case.set("file", at.source)
            if at.line:
                case.set("line", str(at.line))
            counts["tests"] += 1
            found = by_rule.get(rule, [])
            enforced = [f for f in found if f.mode is Mode.ENFORCE]
            if not decision.governed:
                ET.SubElement(case, "skipped", message="namespace not governed by the policy")
                counts["skipped"] += 1
            elif enforced:
                failure = ET.SubElement(case, "failure", message=enforced[0].message, type=rule)
                failure.text = "\n".join(f.message for f in enforced)
                counts["failures"] += 1
            if found and len(found) > len(enforced):
                out = ET.SubElement(case, "system-out")
                out.text = "\n".join(f"{f.mode.value}: {f.message}" for f in found if f.mode is not Mode.ENFORCE)
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
        suite.set("errors", "0")
        suite.set("time", "0")
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("errors", "0")
    ET.indent(root)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document + b"\n"


def _sarif_result(at: Location, decision: Decision, finding: Finding, index: dict[str, int]) -> dict[str, Any]:
    physical: dict[str, Any] = {"artifactLocation": {"uri": quote(at.source)}}
    if at.line:
        physical["region"] = {"startLine": at.line}
    return {
        "ruleId": finding.rule,
        "ruleIndex": index[finding.rule],
        "level": SARIF_LEVEL[finding.mode],
        "message": {"text": f"{_object(decision)}: {finding.message}"},
        "locations": [
            {
                "physicalLocation": physical,
                "logicalLocations": [{"fullyQualifiedName": _object(decision), "kind": "object"}],
            }
        ],
        "properties": {"mode": finding.mode.value, "image": finding.subject.image, "where": str(at)},
    }


def _version() -> str:
    import importlib.metadata  # noqa: PLC0415 (it loads email's parser: only for -o sarif)

    try:
        return importlib.metadata.version(TOOL)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def sarif_document(results: Sequence[tuple[Location, Decision]]) -> dict[str, Any]:
    """SARIF 2.1.0: the rules every finding can name, a result per finding at its file and line."""
    rules = _rules(results)
    index = {rule: number for number, rule in enumerate(rules)}
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": TOOL,
                        "version": _version(),
                        "rules": [{"id": rule, "shortDescription": {"text": rule}} for rule in rules],
                    }
                },
                "results": [
                    _sarif_result(at, decision, finding, index)
                    for at, decision in results
                    for finding in decision.findings
                ],
            }
        ],
    }


def policyreport_list(
    policy: Policy, results: Sequence[CheckedObject], now: dt.datetime, fmt: ReportFormat
) -> dict[str, Any]:
    """The reports ``imagegate reports`` would write for these objects, one per namespace with a
    governed object, as a List ``kubectl apply -f -`` takes: made by core/policyreport.py from the
    decisions already made."""
    by_namespace: dict[str, list[CheckedObject]] = {}
    for checked in results:
        if checked.decision.governed:
            by_namespace.setdefault(checked.decision.namespace, []).append(checked)
    items = []
    for namespace, checked_here in sorted(by_namespace.items()):
        judgement = namespace_judgement(
            policy, namespace, [c.obj for c in checked_here], [c.decision for c in checked_here], now
        )
        if judgement.owners:
            items.append(report_document(judgement, fmt, policy.grants_for(namespace)))
    # the documents hold StrEnum values: plain strings for YAML, as msgspec sends them to the API server
    return {"apiVersion": "v1", "kind": "List", "items": msgspec.to_builtins(items)}


def write_ci(
    output: CheckOutput,
    results: Sequence[CheckedObject],
    policy: Policy,
    now: dt.datetime,
    report_format: ReportFormat,
) -> None:
    """Print ``results`` in one of the CI formats on stdout."""
    pairs = [(c.location, c.decision) for c in results]
    if output is CheckOutput.compact:
        sys.stdout.writelines(line + "\n" for line in compact_lines(pairs))
    elif output is CheckOutput.junit:
        sys.stdout.flush()
        sys.stdout.buffer.write(junit_document(pairs))
    elif output is CheckOutput.sarif:
        sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(sarif_document(pairs))) + b"\n")
    elif output is CheckOutput.policyreport:
        sys.stdout.write(yaml.safe_dump(policyreport_list(policy, results, now, report_format), sort_keys=False))
    else:
        raise ValueError(f"not a CI format: {output}")
