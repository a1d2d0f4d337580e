"""deploy/chart/imagegate, rendered by Helm's own engine (helm-python-sdk embeds Helm's Go library).

Every rendered object is validated against the Kubernetes schemas (kubernetes-validate,
strict: unknown fields refused), its webhooks' matchConditions are evaluated with real CEL
against what kube-apiserver sent, and the default rendering describes the same objects as
the kustomize base.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
from collections.abc import Iterator
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from imagegate.core.policy import load_grants, load_identities, load_policy
from imagegate.shell.builtin_policy import DEFAULT_POLICY_YAML
from tests.cel_conditions import (
    captured_requests,
    evaluate,
    metadata_only_updates,
    sent_by_configuration,
    spec_updates,
    template_preserving_updates,
    webhooks,
)
from tests.conftest import REPO_ROOT
from tests.shipped import CHART, STATE, kustomize_build, notes, one, policy_text, render_chart

KUBERNETES_VERSION = "1.32"  # what the captured API server requests come from
# cert-manager's kinds are custom resources: kubernetes-validate has no schema for them.
CUSTOM_KINDS = {("cert-manager.io/v1", "Issuer"), ("cert-manager.io/v1", "Certificate")}
HELM_LABELS = ("app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "helm.sh/chart")


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def render(chart: helm.Chart, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return render_chart(chart, values)


def without_helm_labels(doc: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    labels = doc["metadata"].get("labels", {})
    for key in HELM_LABELS:
        labels.pop(key, None)
    # deploy/state's equivalent of "keep" is that it is created once, apart from deploy/base
    annotations = doc["metadata"].get("annotations", {})
    if annotations.pop("helm.sh/resource-policy", None) and not annotations:
        del doc["metadata"]["annotations"]
    return doc


def test_default_rendering_is_the_kustomize_base(chart: helm.Chart) -> None:
    rendered = {(d["kind"], d["metadata"]["name"]): without_helm_labels(d) for d in render(chart)}
    base = {(d["kind"], d["metadata"]["name"]): d for d in [*kustomize_build(), *kustomize_build(STATE)]}
    # Helm installs into an existing namespace (helm install -n imagegate --create-namespace):
    # a chart that made its own release namespace could not be installed.
    del base[("Namespace", "imagegate")]
    assert sorted(rendered) == sorted(base)
    for key, expected in base.items():
        assert rendered[key] == expected, key


def test_every_rendered_object_validates_against_the_kubernetes_schemas(chart: helm.Chart) -> None:
    variants: list[dict[str, Any]] = [
        {},
        {"certificates": {"mode": "self-signed"}, "antiAffinity": "preferred", "metrics": {"scrapeAnnotations": True}},
        {"podDisruptionBudget": {"enabled": False}, "antiAffinity": "none", "topologySpread": False},
        {"grants": [{"namespace": "tool-a", "expires": "2027-01-31"}], "identities": {"tool-a": {"uid": 5}}},
    ]
    for values in variants:
        for doc in render(chart, values):
            if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
                with pytest.raises(kubernetes_validate.SchemaNotFoundError):
                    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
                continue
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_schemas_do_refuse_what_the_api_server_would(chart: helm.Chart) -> None:
    deployment = one(render(chart), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePulPolicy"] = "Always"  # a typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_the_policy_is_the_built_in_one_and_values_adjust_it(chart: helm.Chart) -> None:
    policy = one(render(chart), "ConfigMap", "imagegate-policy")["data"]["policy.yaml"]
    assert policy == DEFAULT_POLICY_YAML
    values = {
        "policy": {
            "trusted": ["docker-registry.svc.toolforge.org", "tools-harbor.wmcloud.org/{namespace}"],
            "override": {"mode": "warn", "byoc": {"default": "deny"}},
        }
    }
    adjusted = load_policy(one(render(chart, values), "ConfigMap", "imagegate-policy")["data"]["policy.yaml"])
    assert [str(p) for p in adjusted.trusted] == values["policy"]["trusted"]
    assert adjusted.mode.value == "warn"
    assert adjusted.pod_security is not None and adjusted.pod_security.tool is not None  # the rest kept


def test_grants_and_identities_from_values(chart: helm.Chart) -> None:
    values = {
        "grants": [
            {"namespace": "tool-a", "registries": ["ghcr.io/{tool}"], "expires": "2027-03-31", "ticket": "T1"},
            {"namespace": "tool-b"},
        ],
        "identities": {"tool-a": {"uid": 51000, "gid": 51000}, "tool-b": {"uid": 51001}},
    }
    documents = render(chart, values)
    grants = load_grants(one(documents, "ConfigMap", "imagegate-grants")["data"]["grants.yaml"])
    assert [g.namespace for g in grants] == ["tool-a", "tool-b"]
    assert grants[0].expires == dt.date(2027, 3, 31) and grants[0].ticket == "T1"
    identities = load_identities(one(documents, "ConfigMap", "imagegate-identities")["data"]["identities.yaml"])
    assert identities["tool-b"].gid == 51001
    assert load_grants(one(render(chart), "ConfigMap", "imagegate-grants")["data"]["grants.yaml"]) == ()
    # what `imagegate identities ... -o identities.yaml` writes is a values file (docs/deploy.md)
    written = yaml.safe_load((REPO_ROOT / "tests/fixtures/toolforge/identities.yaml").read_text())
    from_file = one(render(chart, written), "ConfigMap", "imagegate-identities")["data"]["identities.yaml"]
    assert load_identities(from_file) == load_identities(yaml.safe_dump(written))
    # created once, then the CLI's (tests/test_kube_chart_state.py installs and upgrades for real)
    for name in ("imagegate-grants", "imagegate-identities"):
        assert one(documents, "ConfigMap", name)["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}


def test_availability_webhook_and_resource_values(chart: helm.Chart) -> None:
    values = {
        "replicas": 3,
        "antiAffinity": "preferred",
        "podDisruptionBudget": {"minAvailable": 2},
        "webhook": {"failurePolicy": "Ignore", "timeoutSeconds": 10, "exemptNamespaces": ["kube-system"]},
        "resources": {"requests": {"cpu": "1", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
        "metrics": {"scrapeAnnotations": True},
    }
    documents = render(chart, values)
    deployment = one(documents, "Deployment")
    pod = deployment["spec"]["template"]
    assert deployment["spec"]["replicas"] == 3
    assert "preferredDuringSchedulingIgnoredDuringExecution" in pod["spec"]["affinity"]["podAntiAffinity"]
    assert pod["spec"]["containers"][0]["resources"] == values["resources"]
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    assert one(documents, "PodDisruptionBudget")["spec"]["minAvailable"] == 2
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        hooks = one(documents, kind)["webhooks"]
        assert len(hooks) == 2  # CREATE, UPDATE
        for hook in hooks:
            assert hook["failurePolicy"] == "Ignore" and hook["timeoutSeconds"] == 10
            # the release's own namespace is always exempt: imagegate must not gate its own pods
            assert hook["namespaceSelector"]["matchExpressions"][0]["values"] == ["kube-system", "imagegate"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"antiAffinity": "sometimes"}, "antiAffinity"),
        ({"certificates": {"mode": "letsencrypt"}}, "certificates.mode"),
    ],
)
def test_bad_values_fail_the_render_with_the_key(chart: helm.Chart, values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmError, match=message):
        render(chart, values)


def _verify(issuer: x509.Certificate, certificate: x509.Certificate) -> None:
    key = issuer.public_key()
    algorithm = certificate.signature_hash_algorithm
    assert algorithm is not None
    if isinstance(key, rsa.RSAPublicKey):
        key.verify(certificate.signature, certificate.tbs_certificate_bytes, padding.PKCS1v15(), algorithm)
    else:
        assert isinstance(key, ec.EllipticCurvePublicKey)
        key.verify(certificate.signature, certificate.tbs_certificate_bytes, ec.ECDSA(algorithm))


def test_self_signed_mode_needs_no_cert_manager(chart: helm.Chart) -> None:
    documents = render(chart, {"certificates": {"mode": "self-signed"}})
    assert not [d for d in documents if d["apiVersion"].startswith("cert-manager.io/")]
    secret = one(documents, "Secret", "imagegate-tls")
    ca = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["ca.crt"]))
    serving = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    _verify(ca, serving)
    names = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    )
    assert "imagegate.imagegate.svc" in names
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        config = one(documents, kind)
        # nothing for a cainjector to do
        assert "cert-manager.io/inject-ca-from" not in config["metadata"].get("annotations", {})
        for hook in config["webhooks"]:
            assert hook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]


CAPTURED = captured_requests()


def test_the_charts_match_conditions_never_error_and_skip_metadata_only_updates(chart: helm.Chart) -> None:
    hooks = webhooks(("chart", d) for d in render(chart))
    assert len(hooks) == 4 and [bool(hook.conditions) for hook in hooks] == [False, True, False, True]
    for name, request in CAPTURED:
        for hook in hooks:
            for condition in hook.conditions:
                evaluate(condition, request)  # raises ConditionError when it errors
        for change, update in [*metadata_only_updates(request), *template_preserving_updates(request)]:
            if request.get("subResource") != "ephemeralcontainers":
                assert not any(sent_by_configuration(hooks, update).values()), (name, change)
        for change, update in spec_updates(request):
            assert all(sent_by_configuration(hooks, update).values()), (name, change)


@pytest.mark.parametrize(
    "values",
    [
        None,
        {  # everything off by default, on
            "reports": {"enabled": True},
            "metrics": {part: {"enabled": True} for part in ("serviceMonitor", "prometheusRule", "dashboard")},
        },
    ],
)
def test_helm_lint_finds_nothing_worse_than_advice(values: dict[str, Any] | None) -> None:
    report = helm.lint(CHART, values, strict=True, kube_version=f"v{KUBERNETES_VERSION}.0")
    assert report["errors"] == []
    # severity 1 is "info" (Helm suggests an icon); warnings (2) and errors (3) would fail here
    assert [m for m in report["messages"] if m["severity"] >= 2] == []
    assert report["total_charts_linted"] == 1


@pytest.mark.parametrize(
    "kube",
    ["v1.30.14", "v1.31.4", "v1.32.13", "v1.32.9-eks-113cf36", "v1.33.0", "v1.33.0-gke.1000", "v1.34.2", "v1.35.0"],
)
def test_the_policy_fits_the_clusters_version(chart: helm.Chart, kube: str) -> None:
    """Before 1.33 the API server drops supplementalGroupsPolicy: the chart serves whenDropped: warn and
    says so in its notes; from 1.33 the built-in policy, verbatim (issue 22 item 6)."""
    documents = render_chart(chart, kube_version=kube)
    text = policy_text(documents)
    policy = load_policy(text)
    assert policy.pod_security is not None and policy.pod_security.tool is not None
    dropped = policy.pod_security.tool.groups_policy_dropped
    release_notes = notes(chart, kube_version=kube)
    if kube < "v1.33":
        assert dropped is not None and dropped.value == "warn"
        assert f"Kubernetes {kube} drops securityContext.supplementalGroupsPolicy" in release_notes
        assert "whenDropped: warn" in release_notes
    else:
        assert dropped is None and text == DEFAULT_POLICY_YAML
        assert "supplementalGroupsPolicy" not in release_notes
    # The condition follows whatever was served (whenDropped does not change what /mutate fills in).
    assert "needs-mutation" in str(one(documents, "MutatingWebhookConfiguration"))


def test_an_explicit_when_dropped_wins_over_the_version_fit(chart: helm.Chart) -> None:
    for value in ("deny", "audit"):
        values = {
            "policy": {
                "override": {"podSecurity": {"toolProfile": {"supplementalGroupsPolicy": {"whenDropped": value}}}}
            }
        }
        documents = render_chart(chart, values, kube_version="v1.32.13")
        policy = load_policy(policy_text(documents))
        assert policy.pod_security is not None and policy.pod_security.tool is not None
        dropped = policy.pod_security.tool.groups_policy_dropped
        assert (dropped.value if dropped else "deny") == value
        assert "supplementalGroupsPolicy" not in notes(chart, values, kube_version="v1.32.13")
