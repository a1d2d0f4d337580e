"""A grant's end, seen before it happens: admission warnings in its last days, a metric per state.

And what happens when it has ended, exactly: new Pods that need it are denied (new replicas,
rescheduled Pods, restarted Jobs), while objects already admitted and running Pods are not
touched (docs/policy.md, "When a grant expires").
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from imagegate.core.admission import decode_review, review
from imagegate.core.decide import decide
from imagegate.core.policy import Policy, PolicyError, load_policy
from imagegate.core.records import Webhook
from imagegate.core.report import grant_states
from tests.conftest import GRANTS_HEADER, POLICY_HEADER, admission_review
from tests.webhook_process import run_webhook

TRUSTED = "docker-registry.svc.toolforge.org/toolforge-python311:latest"
BYOC = "ghcr.io/example/app:1"
NOW = dt.datetime(2027, 3, 20, 12, tzinfo=dt.UTC)


def policy(expires: str, extra: str = "", ticket: str = "T1234") -> Policy:
    return load_policy(
        POLICY_HEADER
        + textwrap.dedent(
            f"""
            trusted: [docker-registry.svc.toolforge.org]
            byoc:
              {extra}
              grants:
                - namespace: tool-foo
                  registries: [ghcr.io/example]
                  expires: {expires}
                  ticket: "{ticket}"
            """
        ),
        "policy.yaml",
    )


def pod(image: str) -> dict[str, Any]:
    return {"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "app", "image": image}]}}


def deployment(image: str, replicas: int = 1) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {"replicas": replicas, "template": {"spec": pod(image)["spec"]}},
    }


def test_a_grant_in_its_last_days_warns_on_every_admission_of_its_namespace() -> None:
    soon = policy("2027-03-31")
    for image in (BYOC, TRUSTED):  # every object of the namespace, not only those that use the grant
        decision = decide(soon, pod(image), namespace="tool-foo", now=NOW)
        assert decision.allowed
        (notice,) = decision.notices
        assert notice.startswith(
            "BYOC grant for tool-foo (ghcr.io/example) is good through 2027-03-31 UTC (11 days left)"
        )
        assert "renewal: T1234" in notice and "running Pods go on" in notice
    assert decide(soon, pod(TRUSTED), namespace="tool-bar", now=NOW).notices == ()
    # 11 days left: inside the default 14; outside a setting of 7; never with null
    assert (
        decide(policy("2027-03-31", "warnBeforeExpiryDays: 7"), pod(BYOC), namespace="tool-foo", now=NOW).notices == ()
    )
    silent = policy("2027-03-31", "warnBeforeExpiryDays: null")
    assert decide(silent, pod(BYOC), namespace="tool-foo", now=NOW).notices == ()
    assert decide(policy("2027-04-30"), pod(BYOC), namespace="tool-foo", now=NOW).notices == ()
    last_day = policy("2027-03-20", "warnBeforeExpiryDays: 0")  # 0: only on its last day
    assert "(today is its last day)" in decide(last_day, pod(BYOC), namespace="tool-foo", now=NOW).notices[0]
    one_day = decide(policy("2027-03-21", "warnBeforeExpiryDays: 1"), pod(BYOC), namespace="tool-foo", now=NOW)
    assert "(1 day left)" in one_day.notices[0]
    no_ticket = decide(policy("2027-03-31", ticket=""), pod(BYOC), namespace="tool-foo", now=NOW)
    assert "ask the platform admins to renew it" in no_ticket.notices[0]


def test_the_warning_reaches_the_user_through_validate_only() -> None:
    soon = policy("2027-03-31")
    body = json.dumps(admission_review(pod(TRUSTED), "tool-foo")).encode()
    validated = json.loads(review(soon, decode_review(body), now=NOW).body)["response"]
    assert validated["allowed"] is True
    (warning,) = validated["warnings"]
    assert warning.startswith("imagegate: BYOC grant for tool-foo") and len(warning) <= 256
    assert "auditAnnotations" not in validated  # a notice is not a finding
    mutated = json.loads(review(soon, decode_review(body), now=NOW, webhook=Webhook.MUTATE).body)["response"]
    assert "warnings" not in mutated  # said once, not once per webhook


def test_the_setting_is_validated() -> None:
    for bad in ("warnBeforeExpiryDays: -1", "warnBeforeExpiryDays: many", "warnBeforeExpiryDays: 400"):
        with pytest.raises(PolicyError) as caught:
            policy("2027-03-31", bad)
        assert caught.value.path == "byoc.warnBeforeExpiryDays", str(caught.value)


def test_grant_states_use_the_same_rule() -> None:
    states = [(s.state, s.days_left) for s in grant_states(policy("2027-03-31").grants, NOW, 14)]
    assert states == [("expiring", 11)]
    ended = policy("2027-03-19")
    assert [s.state for s in grant_states(ended.grants, NOW, 14)] == ["expired"]
    assert [s.state for s in grant_states(policy("2027-03-31").grants, NOW, None)] == ["active"]


def test_what_an_expired_grant_does_to_running_workloads() -> None:
    """Objects already admitted stay; every new Pod that needs the grant is denied."""
    ended = policy("2027-03-19")
    old = deployment(BYOC, replicas=2)
    scaled = copy.deepcopy(old)
    scaled["spec"]["replicas"] = 5
    # the scale itself is admitted: the template's image was admitted before
    assert decide(ended, scaled, namespace="tool-foo", now=NOW, old_object=old).allowed
    # but each replica the ReplicaSet creates is a new Pod: denied, so the scale-up adds nothing,
    # and a Pod rescheduled after a node drain or eviction does not come back
    replica = decide(ended, pod(BYOC), namespace="tool-foo", now=NOW)
    assert not replica.allowed
    assert "expired on 2027-03-19" in replica.message()
    # a new image in the template is judged, and denied
    changed = copy.deepcopy(old)
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "ghcr.io/example/app:2"
    assert not decide(ended, changed, namespace="tool-foo", now=NOW, old_object=old).allowed


def test_the_server_warns_and_counts_grants_by_state(tmp_path: Path) -> None:
    today = dt.datetime.now(dt.UTC).date()
    (tmp_path / "policy.yaml").write_text(f"{POLICY_HEADER}trusted: [docker-registry.svc.toolforge.org]\n")
    (tmp_path / "grants.yaml").write_text(
        GRANTS_HEADER
        + textwrap.dedent(
            f"""
            grants:
              - {{namespace: tool-soon, expires: {today + dt.timedelta(days=3)}, ticket: T1}}
              - {{namespace: tool-later, expires: {today + dt.timedelta(days=60)}}}
              - {{namespace: tool-never}}
              - {{namespace: tool-gone, expires: {today - dt.timedelta(days=2)}}}
            """
        )
    )
    with run_webhook(tmp_path, policy=tmp_path / "policy.yaml", grants=tmp_path / "grants.yaml") as webhook:
        client = webhook.client()
        response = client.post("/validate", json=admission_review(pod(TRUSTED), "tool-soon")).json()["response"]
        assert response["allowed"] is True
        (warning,) = response["warnings"]
        assert f"BYOC grant for tool-soon is good through {today + dt.timedelta(days=3)} UTC (3 days left)" in warning
        quiet = client.post("/validate", json=admission_review(pod(TRUSTED), "tool-later")).json()["response"]
        assert "warnings" not in quiet
        metrics = client.get("/metrics").text
        for state, count in (("active", 2), ("expiring", 1), ("expired", 1)):
            assert f'imagegate_grants{{state="{state}"}} {count}.0' in metrics, metrics
