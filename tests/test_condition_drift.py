"""The needs-mutation condition follows the policy that is served, wherever it is set (issue 22 item 1).

* The Helm chart renders the policy and the condition from one document: for generated
  ``policy.override`` values (Helm's engine, several cluster versions), the rendered
  condition and its fingerprint annotation are what ``imagegate webhooks -p`` prints for the
  rendered policy.
* A policy changed behind the webhooks' back (a ConfigMap edited later) is visible: ``/readyz``
  and the ``imagegate_mutate_condition`` metric name the served policy's fingerprint, and
  ``/validate`` warns, without denying, about an object ``/mutate`` should have pinned.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagegate.core.policy import load_policy
from imagegate.core.webhooks import (
    CONDITION_ANNOTATION,
    condition_fingerprint,
    mutation_condition,
    mutation_scope,
)
from imagegate.shell.builtin_policy import DEFAULT_POLICY_YAML
from tests.conftest import IDENTITIES_HEADER, admission_review, cli_env, run_imagegate
from tests.shipped import CHART, one, policy_text, render_chart
from tests.webhook_process import run_webhook


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def webhooks_printed(policy: Path) -> list[dict[str, Any]]:
    done = run_imagegate("webhooks", "-p", str(policy), timeout=60, env=cli_env())
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def needs_mutation(configurations: list[dict[str, Any]]) -> tuple[str, str]:
    """The mutating configuration's needs-mutation expression and its fingerprint annotation."""
    mutating = one(configurations, "MutatingWebhookConfiguration")
    (expression,) = (
        c["expression"]
        for hook in mutating["webhooks"]
        for c in hook.get("matchConditions", ())
        if c["name"] == "needs-mutation"
    )
    return expression, mutating["metadata"]["annotations"][CONDITION_ANNOTATION]


LEVELS = st.sampled_from(["privileged", "baseline", "restricted"])
POD_SECURITY = st.fixed_dictionaries(
    {},
    optional={
        "mutate": st.booleans(),
        "level": LEVELS,
        "overrides": st.lists(st.fixed_dictionaries({"namespaces": st.just(["tool-x*"]), "level": LEVELS}), max_size=2),
        "toolProfile": st.one_of(st.none(), st.just({}), st.just({"namespaces": ["tool-*"]})),
    },
)
OVERRIDES = st.fixed_dictionaries(
    {},
    optional={
        "pinning": st.fixed_dictionaries({"enabled": st.booleans()}),
        "podSecurity": POD_SECURITY,
    },
)


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(override=OVERRIDES, kube=st.sampled_from(["v1.31.4", "v1.32.13", "v1.33.1", "v1.35.0"]))
def test_the_charts_condition_is_the_one_for_the_policy_it_renders(
    chart: helm.Chart, tmp_path: Path, override: dict[str, Any], kube: str
) -> None:
    documents = render_chart(chart, {"policy": {"override": override}}, kube_version=kube)
    rendered = tmp_path / "policy.yaml"
    rendered.write_text(policy_text(documents))
    expected = needs_mutation(webhooks_printed(rendered))
    assert needs_mutation(documents) == expected, override


def test_every_scope_is_reachable_through_the_charts_values(chart: helm.Chart) -> None:
    """The generated values above can reach each scope: the chart's reading of the policy is exercised whole."""
    seen = set()
    for override in (
        {},
        {"pinning": {"enabled": True}},
        {"podSecurity": {"toolProfile": None}},
        {
            "podSecurity": {
                "toolProfile": None,
                "level": "baseline",
                "overrides": [{"namespaces": ["a"], "level": "restricted"}],
            }
        },
        {"podSecurity": {"toolProfile": None, "level": "baseline"}, "pinning": {"enabled": True}},
        {"podSecurity": {"mutate": False}},
        {"podSecurity": {"toolProfile": {}}, "pinning": {"enabled": True}},
    ):
        documents = render_chart(chart, {"policy": {"override": override}})
        policy = load_policy(policy_text(documents))
        expression, fingerprint = needs_mutation(documents)
        assert expression == mutation_condition(policy) and fingerprint == condition_fingerprint(expression)
        seen.add(mutation_scope(policy).name)
    assert seen == {"tool", "tool-pinning", "restricted", "none-pinning", "none"}


# --- a policy changed behind the webhooks' back --------------------------------------------

PINNING_POLICY = DEFAULT_POLICY_YAML + "pinning: {enabled: true}\n"
# As Toolforge's jobs framework writes it: the full security context, nothing for /mutate to fill in.
POD = {
    "metadata": {"name": "p"},
    "spec": {
        "securityContext": {
            "runAsUser": 52503,
            "runAsGroup": 52503,
            "fsGroup": 52503,
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
            "supplementalGroupsPolicy": "Strict",
        },
        "containers": [
            {
                "name": "c",
                "image": "docker-registry.svc.toolforge.org/app:1",
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            }
        ],
    },
}


def _ready(webhook: Any) -> dict[str, Any]:
    found: dict[str, Any] = webhook.client().get("/readyz").json()
    return found


def test_the_served_policys_condition_is_reported_and_an_unpinned_object_warned(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(DEFAULT_POLICY_YAML)
    shipped = condition_fingerprint(mutation_condition(load_policy(DEFAULT_POLICY_YAML)))
    pinning = condition_fingerprint(mutation_condition(load_policy(PINNING_POLICY)))
    assert shipped != pinning
    identities = tmp_path / "identities.yaml"
    identities.write_text(IDENTITIES_HEADER + "identities: {tool-x: {uid: 52503}}\n")
    with run_webhook(tmp_path, "--identities", str(identities), policy=policy) as webhook:
        http = webhook.client()
        assert _ready(webhook)["mutateCondition"] == shipped
        assert f'imagegate_mutate_condition{{fingerprint="{shipped}"}} 1.0' in http.get("/metrics").text
        before = http.post("/validate", json=admission_review(POD, "tool-x")).json()["response"]
        assert before["allowed"] is True and "not pinned" not in str(before.get("warnings"))
        policy.write_text(PINNING_POLICY)  # the ConfigMap edited; the webhooks not re-rendered
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and _ready(webhook)["mutateCondition"] != pinning:
            time.sleep(0.1)
        assert _ready(webhook)["mutateCondition"] == pinning
        metrics = http.get("/metrics").text
        assert f'imagegate_mutate_condition{{fingerprint="{pinning}"}} 1.0' in metrics
        assert f'imagegate_mutate_condition{{fingerprint="{shipped}"}} 0.0' in metrics
        # /validate sees a tag where /mutate would have pinned: admitted, with a warning.
        after = http.post("/validate", json=admission_review(POD, "tool-x")).json()["response"]
        assert after["allowed"] is True
        (warning,) = [w for w in after["warnings"] if "not pinned" in w]
        assert len(warning) <= 256 and "docker-registry.svc.toolforge.org/app:1" in warning
        assert "imagegate_unpinned_admissions_total 1.0" in http.get("/metrics").text
