"""The metrics operators expect, read from a running ``imagegate serve``'s /metrics (issue 26 item 4).

Build info; every series whose labels are known in advance present at 0 from the start (so
``increase()`` sees the first event); registry requests, errors and durations by registry,
bounded to the registries the policy names; the registry's verdicts; the serving
certificate's expiry. Against a real docker-registry (tests/registry_process.py), a registry
that is down, and one whose TLS certificate nobody vouches for.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.metadata
import platform
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families

from imagegate.core import decide
from imagegate.core.oci import Descriptor
from imagegate.core.podprofile import TOOL_PROFILE_CHECKS
from imagegate.core.podsecurity import CHECKS
from imagegate.core.policy import load_policy
from imagegate.core.records import SERVED_WEBHOOKS, Mode
from imagegate.core.reference import parse_docker_ref
from imagegate.shell.builtin_policy import DEFAULT_POLICY_YAML
from imagegate.shell.registry.auth import DockerConfigCredentials
from imagegate.shell.registry.client import RegistryClient, RegistryError, RegistrySettings
from imagegate.shell.registry.errors import RegistryErrorKind
from imagegate.shell.webhook.certs import make_certificates
from imagegate.shell.webhook.metrics import (
    LATENCY_BUCKETS,
    MAX_REGISTRY_LABELS,
    OTHER_REGISTRY,
    REGISTRY_BUCKETS,
    finding_rules,
)
from tests.conftest import POLICY_HEADER, REPO_ROOT, admission_review
from tests.loopback import free_port
from tests.oci_images import OciLayout, layers
from tests.registry_process import (
    UNHURRIED_CLIENT,
    UNHURRIED_LOOKUP,
    UNHURRIED_REQUEST,
    Registry,
    fault_handler,
    https_server,
    reply,
    run_registry,
)
from tests.webhook_process import WebhookProcess, run_webhook

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]
BASE = layers("metrics-base", 2)
APP = layers("metrics-app", 1)


def scrape(webhook: WebhookProcess) -> Series:
    """Every sample of /metrics, by name and labels."""
    text = webhook.client().get("/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(series: Series, name: str, **labels: str) -> float:
    return series[(name, tuple(sorted(labels.items())))]


def labelled(series: Series, name: str, label: str) -> set[str]:
    return {dict(labels)[label] for found, labels in series if found == name}


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WebhookProcess, Series]]:
    """The built-in policy served, scraped before any request."""
    with run_webhook(tmp_path_factory.mktemp("metrics")) as webhook:
        yield webhook, scrape(webhook)


def test_build_info(started: tuple[WebhookProcess, Series]) -> None:
    _webhook, series = started
    (labels,) = [dict(found[1]) for found in series if found[0] == "imagegate_build_info"]
    compiled = not str(decide.__file__).endswith(".py")  # the serving process imports the same package
    assert labels == {
        "version": importlib.metadata.version("imagegate"),
        "python": platform.python_version(),
        "compiled": str(compiled).lower(),
    }
    assert value(series, "imagegate_build_info", **labels) == 1


def test_every_series_known_in_advance_is_there_at_zero(started: tuple[WebhookProcess, Series]) -> None:
    _webhook, series = started
    for endpoint in SERVED_WEBHOOKS:
        for result in ("allowed", "denied", "warned"):
            assert value(series, "imagegate_decisions_total", endpoint=endpoint.value, result=result) == 0
        for reason in ("bad-review", "internal"):
            assert value(series, "imagegate_request_errors_total", endpoint=endpoint.value, reason=reason) == 0
    for rule in finding_rules():
        for mode in Mode:
            assert value(series, "imagegate_findings_total", rule=rule, mode=mode.value) == 0
    for name in ("imagegate_policy_reloads_total", "imagegate_tls_reloads_total"):
        assert value(series, name, result="ok") == value(series, name, result="error") == 0
    for check in ("base", "signature", "attestation", "content"):  # the chart's dashboard reads these
        for verdict in ("pass", "fail", "unverified"):
            assert value(series, "imagegate_verdicts_total", check=check, verdict=verdict) == 0
    # the built-in policy's registries, and "other"
    named = load_policy(DEFAULT_POLICY_YAML).contact_scope().registries
    assert labelled(series, "imagegate_registry_requests_total", "registry") == {*named, OTHER_REGISTRY}
    for registry in (*named, OTHER_REGISTRY):
        assert value(series, "imagegate_registry_requests_total", registry=registry) == 0
        assert value(series, "imagegate_registry_request_duration_seconds_count", registry=registry) == 0
        for kind in RegistryErrorKind:
            assert value(series, "imagegate_registry_errors_total", registry=registry, kind=kind.value) == 0
    assert value(series, "imagegate_unpinned_admissions_total") == 0
    # no identities file: none loaded, said as 0 (tests/test_day_two.py loads some)
    assert value(series, "imagegate_identities") == 0


def test_the_finding_rules_are_every_rule_a_finding_can_name() -> None:
    """finding_rules() is read from the rule lists; each list holds every check its module makes."""

    def checks_made(module: str) -> set[str]:
        """The check names the module's CheckResult(...) calls write (its source, compiled or not)."""
        tree = ast.parse((REPO_ROOT / "src" / "imagegate" / "core" / f"{module}.py").read_text())
        return {
            str(node.args[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and getattr(node.func, "id", None) == "CheckResult"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        }

    assert checks_made("podprofile") == set(TOOL_PROFILE_CHECKS)
    assert checks_made("podsecurity") <= {check.id for check in CHECKS}
    rules = set(finding_rules())
    assert {f"tool-profile:{check}" for check in TOOL_PROFILE_CHECKS} <= rules
    assert {f"pod-security:{check.id}" for check in CHECKS} <= rules
    assert {"untrusted-registry", "signature-mismatch", "object-too-large"} <= rules


def test_the_tls_certificate_expiry(started: tuple[WebhookProcess, Series]) -> None:
    webhook, series = started
    served = x509.load_pem_x509_certificate(webhook.tls.cert.read_bytes())
    expiry = value(series, "imagegate_tls_certificate_expiry_timestamp_seconds")
    assert expiry == served.not_valid_after_utc.timestamp()


def test_decision_latency_buckets_reach_10_seconds(started: tuple[WebhookProcess, Series]) -> None:
    webhook, _series = started
    http = webhook.client()
    pod = {"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
    assert http.post("/validate", json=admission_review(pod, "default")).status_code == 200
    series = scrape(webhook)
    bounds = labelled(series, "imagegate_request_duration_seconds_bucket", "le")
    assert {"2.5", "5.0", "10.0", "+Inf"} <= bounds and len(bounds) == len(LATENCY_BUCKETS) + 1
    assert max(LATENCY_BUCKETS) == max(REGISTRY_BUCKETS) == 10


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, Path]]:
    workdir = tmp_path_factory.mktemp("metrics-registry")
    with run_registry(workdir / "registry", "htpasswd") as reg:
        layout = OciLayout(workdir / "layout")
        reg.push(layout, "base", BASE, "toolforge/base:1")
        reg.push(layout, "app", [*BASE, *APP], "tool-a/app:1")
        reg.push(layout, "other", APP, "tool-a/other:1")
        yield reg, reg.docker_config(workdir / "config.json")


def test_registry_requests_errors_and_verdicts(registry: tuple[Registry, Path], tmp_path: Path) -> None:
    reg, config = registry
    down = f"127.0.0.1:{free_port()}"
    other_ca = make_certificates(tmp_path / "other-ca", ["127.0.0.1"])  # a CA imagegate does not trust
    with https_server(fault_handler(lambda handler: reply(handler, 404, b"{}"), []), other_ca) as bad_tls:
        (tmp_path / "policy.yaml").write_text(
            POLICY_HEADER
            + f"""
trusted: [{reg.host}/toolforge]
byoc: {{default: allow, requireBaseImage: true}}
registry:
  caFile: {reg.tls.ca_cert}
  credentialsFile: {config}
  timeoutSeconds: {UNHURRIED_REQUEST:g}
  lookupTimeoutSeconds: {UNHURRIED_LOOKUP:g}
  contact: ["{down}", "{bad_tls}"]
baseImages: {{trusted: ["{reg.host}/toolforge/base:1"]}}
"""
        )
        with run_webhook(tmp_path, policy=tmp_path / "policy.yaml") as webhook:
            http = webhook.client()

            def validate(image: str) -> dict[str, Any]:
                pod = {
                    "kind": "Pod",
                    "metadata": {"name": "p"},
                    "spec": {"containers": [{"name": "c", "image": image}]},
                }
                response: dict[str, Any] = http.post("/validate", json=admission_review(pod, "tool-a")).json()[
                    "response"
                ]
                return response

            assert validate(f"{reg.host}/tool-a/app:1")["allowed"] is True  # built on the trusted base
            assert validate(f"{reg.host}/tool-a/other:1")["allowed"] is False  # not built on it
            assert validate(f"{down}/tool/app:1")["allowed"] is False  # unreachable: onError deny
            assert validate(f"{bad_tls}/tool/app:1")["allowed"] is False
            series = scrape(webhook)
    requests = value(series, "imagegate_registry_requests_total", registry=reg.host)
    assert requests >= 3  # the base's manifest and config, the images'
    assert value(series, "imagegate_registry_request_duration_seconds_count", registry=reg.host) == requests
    assert value(series, "imagegate_registry_request_duration_seconds_bucket", registry=reg.host, le="10.0") == requests
    assert sum(v for (name, labels), v in series.items() if name == "imagegate_registry_errors_total" and
               dict(labels)["registry"] == reg.host) == 0  # fmt: skip
    assert value(series, "imagegate_registry_errors_total", registry=down, kind="unreachable") >= 1
    assert value(series, "imagegate_registry_errors_total", registry=bad_tls, kind="tls") >= 1
    assert value(series, "imagegate_registry_requests_total", registry=OTHER_REGISTRY) == 0
    assert value(series, "imagegate_verdicts_total", check="base", verdict="pass") == 1
    assert value(series, "imagegate_verdicts_total", check="base", verdict="fail") == 3
    assert value(series, "imagegate_verdicts_total", check="signature", verdict="pass") == 0
    # the decisions that asked a registry are in the latency histogram with the others
    assert value(series, "imagegate_request_duration_seconds_count", endpoint="validate") == 4


def test_the_registry_label_is_bounded(tmp_path: Path) -> None:
    """A policy naming more registries than :data:`MAX_REGISTRY_LABELS` gets that many labels and "other"."""
    contact = [f"registry-{i:02}.example.org" for i in range(MAX_REGISTRY_LABELS + 4)]
    text = POLICY_HEADER + f"trusted: [docker.io/library/nginx]\nregistry: {{contact: [{', '.join(contact)}]}}\n"
    (tmp_path / "policy.yaml").write_text(text)
    named = sorted(load_policy(text).contact_scope().registries)  # docker.io (nginx's) and the 20
    assert len(named) == MAX_REGISTRY_LABELS + 5
    with run_webhook(tmp_path, policy=tmp_path / "policy.yaml") as webhook:
        series = scrape(webhook)
    assert labelled(series, "imagegate_registry_requests_total", "registry") == {
        *named[:MAX_REGISTRY_LABELS],
        OTHER_REGISTRY,
    }


def test_every_request_path_is_observed(registry: tuple[Registry, Path]) -> None:
    """Documents (``_request``) and streamed layers (``blob_stream``, the contents reader) both
    tell the observer: the registry as the policy names it, the time, how it ended."""
    reg, config = registry
    seen: list[tuple[str, float, RegistryErrorKind | None]] = []
    settings = RegistrySettings(
        ca_file=reg.tls.ca_cert,
        credentials=DockerConfigCredentials.from_docker_config(config),
        observer=lambda *told: seen.append(told),
        **UNHURRIED_CLIENT,
    )
    ref = parse_docker_ref(f"{reg.host}/tool-a/app:1")
    manifest = reg.get_manifest("tool-a/app", "1")
    layer = Descriptor(
        manifest["layers"][0]["mediaType"], manifest["layers"][0]["digest"], manifest["layers"][0]["size"]
    )
    missing = Descriptor(layer.media_type, "sha256:" + "0" * 64, 1)

    async def go() -> int:
        async with RegistryClient(settings) as client:
            await client.resolve(ref)
            documents = len(seen)
            async with asyncio.timeout(30) as ends, client.blob_stream(ref, layer, ends) as chunks:
                read = sum([len(chunk) async for chunk in chunks])
            with pytest.raises(RegistryError):
                async with asyncio.timeout(30) as ends, client.blob_stream(ref, missing, ends) as chunks:
                    pass
            assert len(seen) == documents + 2
            return read

    assert asyncio.run(go()) == layer.size
    assert {registry for registry, _seconds, _failure in seen} == {reg.host}
    assert all(seconds > 0 for _registry, seconds, _failure in seen)
    assert [failure for _registry, _seconds, failure in seen[:-1]] == [None] * (len(seen) - 1)
    assert seen[-1][2] is RegistryErrorKind.NOT_FOUND
