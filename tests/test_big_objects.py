"""Big objects (issue 27, item 6): a tenant's pod of 20,000 containers must cost the webhook
next to nothing and get a short answer, never seconds of CPU and a 10 MB message.

The limits (``limits.maxContainers``, ``limits.maxVolumes``) are counted once per pod spec: from
the raw body before it is decoded (``oversized_review``, the webhook's path) and from the decoded
object (``decide``, for ``check``, ``audit`` and bodies the first reading does not know); both
give the one finding. Under the limits, a denial lists its first findings and counts the rest.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from imagegate.core.admission import SIZE_CHECK_BYTES, decode_review, oversized_review, review
from imagegate.core.decide import Rule, decide
from imagegate.core.policy import PolicyError, load_policy
from imagegate.core.records import MAX_LISTED_FINDINGS, Webhook
from imagegate.core.workloads import DEFAULT_MAX_CONTAINERS, DEFAULT_MAX_VOLUMES, POD_TEMPLATE_PATHS
from tests.conftest import POLICY_HEADER, admission_review
from tests.webhook_process import run_webhook

NOW = dt.datetime(2026, 12, 7, tzinfo=dt.UTC)
NAMESPACE = "tool-big"
# A tool profile and restricted Pod Security: every bare container breaks several rules, the
# most work a container can cost (the attack's pods were shaped so).
POLICY = (
    POLICY_HEADER
    + f"""\
trusted: [docker-registry.svc.toolforge.org]
podSecurity:
  level: restricted
  toolProfile:
    identities: {{{NAMESPACE}: {{uid: 52503}}}}
"""
)
EVIL = "ghcr.io/evil/x:1"


def pod(containers: int, *, volumes: int = 0, image: str = EVIL, field: str = "containers") -> dict[str, Any]:
    spec: dict[str, Any] = {field: [{"name": f"c{n}", "image": image} for n in range(containers)]}
    if field != "containers":
        spec["containers"] = [{"name": "main", "image": image}]
    if volumes:
        spec["volumes"] = [{"name": f"v{n}", "emptyDir": {}} for n in range(volumes)]
    return {"kind": "Pod", "metadata": {"name": "big", "namespace": NAMESPACE}, "spec": spec}


def at_pod_path(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """An object of ``kind`` carrying ``spec`` where that kind carries its pod spec."""
    obj: dict[str, Any] = {"kind": kind, "metadata": {"name": "big", "namespace": NAMESPACE}}
    node = obj
    *way, last = POD_TEMPLATE_PATHS[kind]
    for token in way:
        node = node.setdefault(token, {})
    node[last] = spec
    return obj


def body_of(obj: dict[str, Any], uid: str = "u") -> bytes:
    return json.dumps(admission_review(obj, NAMESPACE, uid=uid)).encode()


def decision_lines(webhook: Any, uid: str) -> list[str]:
    """The webhook's decision log lines for ``uid``."""
    lines = [line for line in webhook.logs().splitlines() if line.startswith("{")]
    return [line for line in lines if json.loads(line).get("event") == "decision" and json.loads(line)["uid"] == uid]


def full_answer(policy_text: str, body: bytes, *, mutate: bool = False) -> dict[str, Any]:
    outcome = review(
        load_policy(policy_text), decode_review(body), now=NOW, webhook=Webhook.MUTATE if mutate else Webhook.VALIDATE
    )
    response: dict[str, Any] = json.loads(outcome.body)["response"]
    return response


# --- through a real webhook: the attack as it was made --------------------------------------


@pytest.fixture(scope="module")
def webhook(tmp_path_factory: pytest.TempPathFactory) -> Any:
    workdir = tmp_path_factory.mktemp("big-objects")
    policy = workdir / "policy.yaml"
    policy.write_text(POLICY)
    with run_webhook(workdir, policy=policy) as running:
        yield running


@pytest.mark.parametrize("endpoint", ["/validate", "/mutate"])
def test_a_pod_of_20000_containers_is_denied_unjudged_with_a_short_answer(webhook: Any, endpoint: str) -> None:
    body = body_of(pod(20_000), uid=f"big{endpoint}")
    assert 900_000 < len(body) < 3 * 1024 * 1024  # what the API server lets through to /mutate
    answer = webhook.client().post(endpoint, content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 200
    assert len(answer.content) < 1024  # the attack got 10.6 MB
    response = answer.json()["response"]
    assert response["allowed"] is False
    message = response["status"]["message"]
    assert response["status"]["code"] == 403
    assert "has 20,000 containers" in message
    assert "at most 100 are allowed (policy limits.maxContainers)" in message
    # Denied before any container was judged: the log's decision names the size finding alone.
    [line] = decision_lines(webhook, f"big{endpoint}")
    assert json.loads(line)["findings"] == [f"{Rule.OBJECT_TOO_LARGE}:object/Pod"]


def test_a_pod_under_the_limit_lists_its_first_findings_and_counts_the_rest(webhook: Any) -> None:
    body = body_of(pod(DEFAULT_MAX_CONTAINERS), uid="at-the-limit")
    answer = webhook.client().post("/validate", content=body, headers={"content-type": "application/json"})
    response = answer.json()["response"]
    message = response["status"]["message"]
    total = int(message.split(": ", 2)[1].split()[0].replace(",", ""))
    assert total > MAX_LISTED_FINDINGS
    assert message.endswith(f"; and {total - MAX_LISTED_FINDINGS:,} more")
    assert message.count("untrusted") + message.count("not from a trusted registry") <= MAX_LISTED_FINDINGS
    assert len(message) < 16 * 1024
    # The log line is bounded the same way: the first findings, then how many more.
    [line] = decision_lines(webhook, "at-the-limit")
    logged = json.loads(line)["findings"]
    assert len(logged) == MAX_LISTED_FINDINGS + 1
    assert logged[-1] == f"and {total - MAX_LISTED_FINDINGS:,} more"
    assert len(line) < 8 * 1024


def test_names_a_tenant_writes_are_cut_in_answers_and_logs(webhook: Any) -> None:
    """/mutate sees objects before the API server validates them: a megabyte name stays out."""
    obj = pod(1)
    obj["metadata"]["name"] = "n" * 1_000_000
    review_doc = admission_review(obj, NAMESPACE, uid="long-name", name="n" * 1_000_000)
    answer = webhook.client().post("/validate", json=review_doc)
    assert answer.json()["response"]["allowed"] is False
    assert len(answer.content) < 16 * 1024
    [line] = decision_lines(webhook, "long-name")
    assert len(line) < 4 * 1024


# --- the one count, read two ways ----------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(POD_TEMPLATE_PATHS))
@pytest.mark.parametrize(
    ("containers", "volumes", "field", "over"),
    [
        (DEFAULT_MAX_CONTAINERS, DEFAULT_MAX_VOLUMES, "containers", False),
        (DEFAULT_MAX_CONTAINERS + 1, 0, "containers", True),
        # the three lists count together: 100 init containers and the main one are 101
        (DEFAULT_MAX_CONTAINERS, 0, "initContainers", True),
        (DEFAULT_MAX_CONTAINERS, 0, "ephemeralContainers", True),
        (1, DEFAULT_MAX_VOLUMES + 1, "containers", True),
    ],
)
def test_the_size_check_before_decoding_agrees_with_the_decision(
    kind: str, containers: int, volumes: int, field: str, over: bool
) -> None:
    spec = pod(containers, volumes=volumes, field=field)["spec"]
    obj = at_pod_path(kind, spec)
    # padded past the size at which the webhook counts first, as every big object is
    obj["metadata"]["annotations"] = {"pad": "x" * SIZE_CHECK_BYTES}
    body = body_of(obj)
    policy = load_policy(POLICY)
    early = oversized_review(policy, body)
    full = full_answer(POLICY, body)
    if not over:
        assert early is None
        assert "object-too-large" not in json.dumps(full)
        return
    assert early is not None
    early_response = json.loads(early[1].body)["response"]
    assert early_response["allowed"] is full["allowed"] is False
    assert early_response["status"] == full["status"]
    decision = decide(policy, obj, namespace=NAMESPACE, now=NOW)
    assert [f.rule for f in decision.findings] == [Rule.OBJECT_TOO_LARGE]


def test_the_first_reading_never_decodes_the_containers() -> None:
    """Items that are not even objects are counted, not read: the full decoding never runs."""
    obj = pod(0)
    obj["spec"]["containers"] = list(range(5_000))
    obj["metadata"]["annotations"] = {"pad": "x" * SIZE_CHECK_BYTES}
    early = oversized_review(load_policy(POLICY), body_of(obj))
    assert early is not None
    assert "has 5,000 containers" in json.loads(early[1].body)["response"]["status"]["message"]


@pytest.mark.parametrize(
    "mangle",
    [
        lambda r: r["request"]["object"]["spec"].update(containers="not a list"),
        lambda r: r["request"].update(operation="DELETE"),
        lambda r: r["request"].update(namespace="kube-system"),  # not governed: the policy says nothing
        lambda r: r.update(apiVersion="admission.k8s.io/v1beta1"),
    ],
)
def test_shapes_the_first_reading_does_not_know_go_to_the_full_decoding(mangle: Any) -> None:
    obj = pod(DEFAULT_MAX_CONTAINERS + 1)
    obj["metadata"]["annotations"] = {"pad": "x" * SIZE_CHECK_BYTES}
    document = admission_review(obj, NAMESPACE)
    mangle(document)
    policy_text = POLICY + "namespaces: {exclude: [kube-system]}\n"
    assert oversized_review(load_policy(policy_text), msgspec.json.encode(document)) is None


def test_the_limits_are_a_policy_setting_with_bounds(tmp_path: Path) -> None:
    policy_text = POLICY + "limits: {maxContainers: 5, maxVolumes: 3}\n"
    at_limit = full_answer(policy_text, body_of(pod(5, volumes=3)))["status"]["message"]
    assert "untrusted" in at_limit or "not from a trusted registry" in at_limit
    assert "limits." not in at_limit  # judged: denied for what it runs, not for its size
    assert "(policy limits.maxContainers)" in full_answer(policy_text, body_of(pod(6)))["status"]["message"]
    assert "(policy limits.maxVolumes)" in full_answer(policy_text, body_of(pod(1, volumes=4)))["status"]["message"]
    for setting in ("maxContainers: 0", "maxContainers: 251", "maxVolumes: 0", "maxVolumes: 501"):
        with pytest.raises(PolicyError, match=r"limits\.max(Containers|Volumes): \d+: between"):
            load_policy(POLICY + f"limits: {{{setting}}}\n")


def test_the_limit_holds_in_audit_mode() -> None:
    """It protects the webhook that every tool shares, not a style: enforced in every mode."""
    answer = full_answer(POLICY + "mode: audit\n", body_of(pod(DEFAULT_MAX_CONTAINERS + 1)))
    assert answer["allowed"] is False
    assert "limits.maxContainers" in answer["status"]["message"]
