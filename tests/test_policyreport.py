"""core/policyreport.py: a namespace's report from decisions, its bound, "did it change", grant Events by day."""

from __future__ import annotations

import datetime as dt
import textwrap
from typing import Any

import msgspec

from imagegate.core.policy import Policy, load_policy
from imagegate.core.policyreport import (
    MAX_RESULTS_BYTES,
    GrantEventReason,
    ReportFormat,
    due_events,
    grant_events,
    grant_images,
    judge_namespace,
    record_sent,
    report_content,
    report_document,
)
from tests.conftest import POLICY_HEADER

NOW = dt.datetime(2027, 3, 20, 12, tzinfo=dt.UTC)
TODAY = NOW.date()


def policy(extra: str = "", grants: str = "[]") -> Policy:
    text = POLICY_HEADER + textwrap.dedent(
        f"""
        trusted: [registry.example.org]
        namespaces: {{include: ["tool-*"]}}
        byoc:
          grants: {grants}
        """
    )
    return load_policy(text + extra, "policy.yaml")


def pod(name: str, *images: str, owner: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": "tool-a", "uid": f"uid-{name}"}
    if owner:
        metadata["ownerReferences"] = [{"kind": "ReplicaSet", "name": owner, "uid": f"uid-{owner}", "controller": True}]
    containers = [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": {"containers": containers}}


def replicaset(name: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "tool-a", "uid": f"uid-{name}"},
        "spec": {"template": {"spec": {"containers": [{"name": "c0", "image": image}]}}},
    }


def test_a_finding_is_reported_once_at_its_top_owner_and_the_clean_owners_pass() -> None:
    objects = [
        replicaset("web", "docker.io/x:1"),
        pod("web-1", "docker.io/x:1", owner="web"),
        pod("ok", "registry.example.org/a:1"),
    ]
    judgement = judge_namespace(policy(), "tool-a", objects, NOW, {})
    assert judgement is not None
    document = report_document(judgement, ReportFormat.openreports)
    assert document["apiVersion"] == "openreports.io/v1alpha1" and document["kind"] == "Report"
    assert document["metadata"]["name"] == "imagegate" and document["source"] == "imagegate"
    fail, passed = document["results"]
    assert (fail["result"], fail["severity"], fail["rule"]) == ("fail", "high", "untrusted-registry")
    assert fail["resources"] == [
        {"kind": "ReplicaSet", "namespace": "tool-a", "name": "web", "apiVersion": "apps/v1", "uid": "uid-web"}
    ]
    assert fail["properties"] == {"objects": "2", "image": "docker.io/x:1", "container": 'container "c0"'}
    assert (passed["result"], passed["rule"], passed["resources"][0]["name"]) == ("pass", "images", "ok")
    assert document["summary"] == {"fail": 1, "error": 0, "warn": 0, "pass": 1, "skip": 0}
    wg = report_document(judgement, ReportFormat.wgpolicyk8s)
    assert (wg["apiVersion"], wg["kind"], "source" in wg) == ("wgpolicyk8s.io/v1alpha2", "PolicyReport", False)
    assert judge_namespace(policy(), "kube-system", objects, NOW, {}) is None  # not governed: no report


def test_audit_mode_findings_are_warnings_of_low_severity() -> None:
    judgement = judge_namespace(policy("mode: audit\n"), "tool-a", [pod("p", "docker.io/x:1")], NOW, {})
    assert judgement is not None
    (result,) = report_document(judgement, ReportFormat.openreports)["results"]
    assert (result["result"], result["severity"]) == ("warn", "low")


def test_a_report_never_exceeds_its_bound_and_counts_what_it_leaves_out() -> None:
    long = "x" * 300
    objects = [pod(f"p{i}", f"docker.io/{long}/img{i}:1") for i in range(4000)]
    judgement = judge_namespace(policy(), "tool-a", objects, NOW, {})
    assert judgement is not None
    document = report_document(judgement, ReportFormat.openreports, max_results=100_000)
    assert len(msgspec.json.encode(document)) < MAX_RESULTS_BYTES + 4096  # under the API server's 1.5 MiB
    assert document["summary"]["fail"] == 4000
    more = document["results"][-1]
    listed = len(document["results"]) - 1
    assert more["rule"] == "more-results" and more["result"] == "fail"
    assert more["message"].startswith(f"{4000 - listed} more results not listed ({4000 - listed} fail)")
    few = report_document(judgement, ReportFormat.openreports, max_results=10)
    assert len(few["results"]) == 11 and few["results"][-1]["properties"] == {"omitted": "3990"}


def test_content_compares_what_readers_see_not_the_servers_bookkeeping() -> None:
    judgement = judge_namespace(policy(), "tool-a", [pod("p", "docker.io/x:1")], NOW, {})
    assert judgement is not None
    document = report_document(judgement, ReportFormat.openreports)
    served = msgspec.json.decode(msgspec.json.encode(document))
    served["metadata"] |= {"resourceVersion": "42", "uid": "u", "managedFields": [{"manager": "imagegate-reports"}]}
    assert report_content(served) == report_content(document)
    later = judge_namespace(policy(), "tool-a", [pod("p", "docker.io/x:2")], NOW, {})
    assert later is not None
    assert report_content(report_document(later, ReportFormat.openreports)) != report_content(document)
    unlabelled = {**served, "metadata": {**served["metadata"], "labels": {}}}
    assert report_content(unlabelled) != report_content(document)


GRANTS = (
    "[{namespace: tool-a, registries: [ghcr.io/example], expires: 2027-03-25, ticket: T1},"
    " {namespace: tool-b, expires: 2027-03-01},"
    " {namespace: tool-c, expires: 2027-12-31},"
    " {namespace: tool-gone, expires: 2027-03-21}]"
)


def test_grant_events_name_the_date_and_the_images() -> None:
    granted = policy(grants=GRANTS)
    judgement = judge_namespace(
        granted, "tool-a", [pod("p", "ghcr.io/example/app:1", "registry.example.org/a:1")], NOW, {}
    )
    assert judgement is not None
    images = {"tool-a": grant_images(judgement.decisions)}
    assert images == {"tool-a": ["ghcr.io/example/app:1"]}
    events = grant_events(granted, NOW, images, ["tool-a", "tool-b", "tool-c"])
    assert [(e.namespace, e.reason) for e in events] == [
        ("tool-a", GrantEventReason.expiring),
        ("tool-b", GrantEventReason.expired),
    ]  # tool-c: outside the 14 days; tool-gone: no such namespace
    expiring, expired = events
    assert (
        "good through 2027-03-25 UTC (5 days left)" in expiring.message and "ghcr.io/example/app:1" in expiring.message
    )
    assert "ticket T1" in expiring.message
    assert "ended on 2027-03-01" in expired.message and "no running object uses it now" in expired.message
    assert expiring.name(TODAY) == "imagegate.grantexpiring.20270325.20270320"
    # after the grant ends, the images refused for want of it are the ones named
    ended = judge_namespace(granted, "tool-b", [pod("q", "ghcr.io/other/app:1")], NOW, {})
    assert ended is not None and grant_images(ended.decisions) == ["ghcr.io/other/app:1"]


def test_an_event_is_due_once_a_day() -> None:
    events = grant_events(policy(grants=GRANTS), NOW, {}, ["tool-a", "tool-b"])
    assert due_events(events, None, TODAY) == events
    record = record_sent(None, [events[0].key], TODAY)
    assert due_events(events, record, TODAY) == events[1:]
    record = record_sent(record, [events[1].key], TODAY)
    assert due_events(events, record, TODAY) == []
    tomorrow = TODAY + dt.timedelta(days=1)
    assert due_events(events, record, tomorrow) == events  # a new day: told again
    assert msgspec.json.decode(record_sent(record, [], tomorrow)) == {"day": tomorrow.isoformat(), "sent": []}
    assert due_events(events, "not json", TODAY) == events  # an unreadable record: the Events' names still guard
