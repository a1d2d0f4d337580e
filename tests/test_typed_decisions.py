"""What a decision is made of is typed: subjects, how an image was allowed, modes, outcomes."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import msgspec

from imagegate.core.admission import decode_review, review
from imagegate.core.decide import Rule, decide
from imagegate.core.policy import load_policy
from imagegate.core.records import (
    Allowance,
    ImageUse,
    Mode,
    ObjectSubject,
    Outcome,
    PodRules,
    PodSubject,
    Webhook,
    outcome_of,
)
from imagegate.core.report import audit_report
from tests.conftest import POLICY_HEADER, run_imagegate

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)

# One namespace per mode: the grant admits the image, so its tag finding is in the grant's mode.
POLICY_TEXT = (
    POLICY_HEADER
    + """\
trusted: [docker-registry.svc.toolforge.org, "tools-harbor.wmcloud.org/{namespace}"]
tags: {disallow: [latest]}
byoc:
  grants:
    - {namespace: tool-enforce, registries: [ghcr.io/x]}
    - {namespace: tool-warn, registries: [ghcr.io/x], mode: warn}
    - {namespace: tool-audit, registries: [ghcr.io/x], mode: audit}
    - {namespace: tool-open}
podSecurity:
  level: baseline
  mode: warn
  overrides: [{namespaces: [tool-audit], mode: audit}]
"""
)
POLICY = load_policy(POLICY_TEXT, "typed.yaml")
MODE_OF = {"tool-enforce": Mode.ENFORCE, "tool-warn": Mode.WARN, "tool-audit": Mode.AUDIT}


def pod(namespace: str, *images: str, privileged: bool = False) -> dict[str, Any]:
    containers: list[dict[str, Any]] = [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
    if privileged:
        containers[0]["securityContext"] = {"privileged": True}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": namespace},
        "spec": {"containers": containers},
    }


def test_a_findings_subject_is_an_image_use_a_pod_spec_or_the_object() -> None:
    decision = decide(
        POLICY, pod("tool-enforce", "ghcr.io/x/app:latest", privileged=True), namespace="tool-enforce", now=NOW
    )
    by_rule = {f.rule: f.subject for f in decision.findings}
    assert by_rule[Rule.DISALLOWED_TAG] == ImageUse(
        "container", "c0", "ghcr.io/x/app:latest", "/spec/containers/0/image"
    )
    pod_subject = by_rule["pod-security:privileged"]
    assert pod_subject == PodSubject(PodRules.POD_SECURITY, "privileged", "/spec")
    assert isinstance(pod_subject, PodSubject) and pod_subject.rules is PodRules.POD_SECURITY

    malformed = decide(POLICY, {"kind": "Pod", "spec": {"containers": "nope"}}, namespace="tool-enforce", now=NOW)
    (finding,) = malformed.findings
    assert isinstance(finding.subject, ObjectSubject) and finding.subject.object_kind == "Pod"
    # the flat form the logs, annotations and JSON output print is unchanged
    assert (finding.subject.kind, finding.subject.name, finding.subject.label) == ("object", "Pod", 'object "Pod"')


def test_the_verdict_says_how_an_image_was_allowed() -> None:
    images = ("docker-registry.svc.toolforge.org/base:1", "tools-harbor.wmcloud.org/tool-enforce/app:1")
    trusted = decide(POLICY, pod("tool-enforce", *images, "ghcr.io/x/app:1"), namespace="tool-enforce", now=NOW)
    assert [v.allowance for v in trusted.verdicts] == [Allowance.TRUSTED, Allowance.TRUSTED, Allowance.GRANT]
    denied = decide(POLICY, pod("tool-enforce", "quay.io/y/z:1"), namespace="tool-enforce", now=NOW)
    assert denied.verdicts[0].allowance is None and denied.verdicts[0].finding is not None

    default_allow = load_policy(POLICY_HEADER + "byoc: {default: allow}\n")
    (verdict,) = decide(default_allow, pod("tool-x", "quay.io/y/z:1"), namespace="tool-x", now=NOW).verdicts
    assert verdict.allowance is Allowance.BYOC_DEFAULT

    old = pod("tool-open", "quay.io/y/z:1")
    updated = decide(POLICY, old, namespace="tool-open", now=NOW, old_object=old)
    assert [v.allowance for v in updated.verdicts] == [Allowance.UNCHANGED]


def test_pod_security_modes_stay_typed_from_document_to_finding() -> None:
    settings = POLICY.pod_security
    assert settings is not None and settings.mode is Mode.WARN and settings.overrides[0].mode is Mode.AUDIT
    for namespace, mode in (("tool-warn", Mode.WARN), ("tool-audit", Mode.AUDIT)):
        profile = settings.profile_for(namespace)
        assert profile is not None and profile.mode is mode
        decision = decide(POLICY, pod(namespace, "ghcr.io/x/a:1", privileged=True), namespace=namespace, now=NOW)
        assert [f.mode for f in decision.findings if isinstance(f.subject, PodSubject)] == [mode]


def _review_body(obj: dict[str, Any]) -> bytes:
    request = {
        "uid": "u",
        "operation": "CREATE",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": obj["metadata"]["namespace"],
        "object": obj,
    }
    return msgspec.json.encode({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})


def test_one_mapping_from_mode_to_outcome_for_every_consumer(tmp_path: Path) -> None:
    assert [outcome_of((m,)) for m in Mode] == [Outcome.DENIED, Outcome.WARNED, Outcome.AUDITED]
    assert outcome_of(()) is Outcome.ALLOWED and outcome_of((Mode.AUDIT, Mode.ENFORCE, Mode.WARN)) is Outcome.DENIED
    objects = {ns: pod(ns, "ghcr.io/x/app:latest") for ns in MODE_OF}
    checked = []
    for namespace, mode in MODE_OF.items():
        want = outcome_of((mode,))
        decision = decide(POLICY, objects[namespace], namespace=namespace, now=NOW)
        assert decision.outcome is want and [f.outcome for f in decision.findings] == [want]
        checked.append((namespace, decision))
        # the validating webhook's audit annotation, and the result its metrics and logs read
        answer = review(POLICY, decode_review(_review_body(objects[namespace])), now=NOW)
        body = msgspec.json.decode(answer.body)
        assert body["response"]["auditAnnotations"]["decision"] == want.value and answer.outcome is want
        # the mutating webhook admits: its enforce-mode findings deny nothing
        mutated = review(POLICY, decode_review(_review_body(objects[namespace])), now=NOW, webhook=Webhook.MUTATE)
        assert mutated.outcome is (Outcome.ALLOWED if mode is Mode.ENFORCE else want)
    # audit's grouping
    report = audit_report(checked, POLICY, NOW)
    assert {f.namespace: f.outcome for f in report.findings} == {
        ns: outcome_of((m,)).value for ns, m in MODE_OF.items()
    }
    # check's counts (its words for warned and audited are "warn" and "audit")
    (tmp_path / "policy.yaml").write_text(POLICY_TEXT)
    (tmp_path / "pods.json").write_text(
        json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects.values())})
    )
    result = run_imagegate("check", str(tmp_path / "pods.json"), "-p", str(tmp_path / "policy.yaml"), "-o", "json")
    counts = json.loads(result.stdout)["counts"]
    assert counts["objects"] == {"denied": 1, "warn": 1, "audit": 1, "allowed": 0, "exempt": 0}, result.stderr


def test_an_image_name_is_parsed_once_into_both_forms_the_rules_read() -> None:
    image = POLICY.classify("ghcr.io/x/app")
    assert image.written is not None and image.ref is not None
    assert (image.written.tag, image.ref.tag, image.text) == (None, "latest", "ghcr.io/x/app:latest")
    pinned = POLICY.classify("ghcr.io/x/app:1@sha256:" + "a" * 64)
    assert pinned.written is not None and pinned.ref is not None
    assert (pinned.written.tag, pinned.ref.tag, pinned.ref.digest) == ("1", None, "sha256:" + "a" * 64)
    assert POLICY.classify("Not/Valid").written is None
