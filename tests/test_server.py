"""The webhook end to end: a real ``imagegate serve`` process over real HTTPS.

Requests are shaped as kube-apiserver sends them (tests/fixtures/admission/*.json).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import os
import re
import signal
import socket
import ssl
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonpatch
import pytest
from cryptography import x509
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from imagegate.shell.webhook.certs import load_ca, make_certificates
from imagegate.shell.webhook.metrics import LATENCY_BUCKETS, Metrics
from tests.conftest import POLICY_HEADER
from tests.processes import children_of, running
from tests.webhook_process import WebhookProcess, run_webhook

FIXTURES = Path(__file__).parent / "fixtures" / "admission"

POLICY = """\
apiVersion: imagegate.toolforge.org/v1
kind: ImagePolicy
trusted: [docker-registry.svc.toolforge.org]
tags:
  disallow: [warnme]            # a tag only test_warn_mode_returns_warnings uses
byoc:
  default: deny
namespaces:
  exclude: [kube-system]
"""
GRANTS = """\
apiVersion: imagegate.toolforge.org/v1
kind: ImageGrants
grants:
  - namespace: tool-warned
    registries: [quay.io/w]
    mode: warn
"""


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


def response_of(http: httpx.Response, uid: str) -> dict[str, Any]:
    assert http.status_code == 200, http.text
    assert http.headers["content-type"] == "application/json"
    body = http.json()
    assert body["apiVersion"] == "admission.k8s.io/v1" and body["kind"] == "AdmissionReview"
    response: dict[str, Any] = body["response"]
    assert response["uid"] == uid
    return response


@pytest.fixture(scope="module")
def webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebhookProcess]:
    workdir = tmp_path_factory.mktemp("webhook")
    (workdir / "policy.yaml").write_text(POLICY)
    (workdir / "grants").mkdir()
    (workdir / "grants" / "grants.yaml").write_text(GRANTS)
    # A request that stalls gets its 408 after 2 s, not the default 10 (test_slow_body_gets_408).
    with run_webhook(
        workdir, "--request-timeout", "2", policy=workdir / "policy.yaml", grants=workdir / "grants" / "grants.yaml"
    ) as process:
        yield process


def test_pod_create_denied_listing_every_violation(webhook: WebhookProcess) -> None:
    review = fixture("pod-create.json")
    response = response_of(webhook.client().post("/validate", json=review), review["request"]["uid"])
    assert response["allowed"] is False
    status = response["status"]
    assert status["code"] == 403 and status["reason"] == "Forbidden"
    assert 'initContainer "setup"' in status["message"]
    assert "docker.io/library/busybox:1.36" in status["message"]
    assert response["auditAnnotations"]["decision"] == "denied"


def test_allowed_pod_has_no_status(webhook: WebhookProcess) -> None:
    review = fixture("pod-create.json")
    review["request"]["object"]["spec"]["initContainers"] = []
    response = response_of(webhook.client().post("/validate", json=review), review["request"]["uid"])
    assert response == {"uid": review["request"]["uid"], "allowed": True}


def test_deployment_update_with_new_image(webhook: WebhookProcess) -> None:
    review = fixture("deployment-update.json")
    response = response_of(webhook.client().post("/validate", json=review), review["request"]["uid"])
    assert response["allowed"] is False
    assert "ghcr.io/someone/webapp:2.0" in response["status"]["message"]
    # the same update without the image change (e.g. a scale) is allowed
    review["request"]["object"]["spec"]["template"] = review["request"]["oldObject"]["spec"]["template"]
    assert response_of(webhook.client().post("/validate", json=review), review["request"]["uid"])["allowed"]


def test_ephemeral_container_subresource(webhook: WebhookProcess) -> None:
    review = fixture("pod-ephemeralcontainers-update.json")
    response = response_of(webhook.client().post("/validate", json=review), review["request"]["uid"])
    assert response["allowed"] is False
    assert 'ephemeralContainer "debugger-x7k2p"' in response["status"]["message"]


def test_dry_run_gets_the_same_answer(webhook: WebhookProcess) -> None:
    real, dry = fixture("pod-create.json"), fixture("pod-create-dryrun.json")
    client = webhook.client()
    real_response = response_of(client.post("/validate", json=real), real["request"]["uid"])
    dry_response = response_of(client.post("/validate", json=dry), dry["request"]["uid"])
    real_response.pop("uid")
    dry_response.pop("uid")
    assert real_response == dry_response
    assert '"dry_run": true' in webhook.logs()


def test_warn_mode_returns_warnings(webhook: WebhookProcess) -> None:
    """A warn grant's findings about the images it admits are warnings; the rest is still enforced."""
    review = fixture("pod-create.json")
    review["request"]["namespace"] = review["request"]["object"]["metadata"]["namespace"] = "tool-warned"
    review["request"]["object"]["spec"]["initContainers"][0]["image"] = "quay.io/w/setup:warnme"
    response = response_of(webhook.client().post("/validate", json=review), review["request"]["uid"])
    assert response["allowed"] is True
    assert any("quay.io/w/setup:warnme" in warning for warning in response["warnings"])
    assert response["auditAnnotations"]["decision"] == "warned"
    # outside the grant's registries (busybox, as the fixture has it) the grant's mode does not apply
    review = fixture("pod-create.json")
    review["request"]["namespace"] = review["request"]["object"]["metadata"]["namespace"] = "tool-warned"
    response = response_of(webhook.client().post("/validate", json=review), review["request"]["uid"])
    assert response["allowed"] is False
    assert "busybox" in response["status"]["message"]
    assert "neither trusted nor in the registries granted" in response["status"]["message"]


def test_mutate_never_denies(webhook: WebhookProcess) -> None:
    review = fixture("pod-create.json")
    response = response_of(webhook.client().post("/mutate", json=review), review["request"]["uid"])
    assert response["allowed"] is True
    if "patch" in response:
        assert response["patchType"] == "JSONPatch"
        assert isinstance(json.loads(base64.b64decode(response["patch"])), list)


def test_exempt_namespace_and_delete_are_allowed(webhook: WebhookProcess) -> None:
    review = fixture("pod-create.json")
    review["request"]["namespace"] = review["request"]["object"]["metadata"]["namespace"] = "kube-system"
    assert response_of(webhook.client().post("/validate", json=review), review["request"]["uid"])["allowed"]
    delete = fixture("pod-create.json")
    delete["request"].update(operation="DELETE", object=None, oldObject=delete["request"]["object"])
    assert response_of(webhook.client().post("/validate", json=delete), delete["request"]["uid"])["allowed"]


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        (b"not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "not an AdmissionReview"),
        (
            json.dumps(
                {
                    "apiVersion": "admission.k8s.io/v1beta1",
                    "kind": "AdmissionReview",
                    "request": {"uid": "u", "operation": "CREATE"},
                }
            ).encode(),
            400,
            "expected apiVersion admission.k8s.io/v1",
        ),
        (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).encode(), 400, "no request"),
        (
            json.dumps(
                {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"operation": "CREATE"}}
            ).encode(),
            400,
            "uid",
        ),
        (
            json.dumps(
                {
                    "apiVersion": "admission.k8s.io/v1",
                    "kind": "AdmissionReview",
                    "request": {"uid": "", "operation": "CREATE"},
                }
            ).encode(),
            400,
            "empty uid",
        ),
        (
            json.dumps(
                {
                    "apiVersion": "admission.k8s.io/v1",
                    "kind": "AdmissionReview",
                    "request": {"uid": 5, "operation": "CREATE"},
                }
            ).encode(),
            400,
            "Expected `str`",
        ),
        (b"\xff\xfe\x00\x01", 400, "not valid JSON"),
        (b"[" * 100_000, 400, "not an AdmissionReview"),
        (
            b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u",'
            b'"operation":"CREATE","object":{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}}}",
            400,
            "nested too deeply",
        ),
    ],
    ids=lambda value: value.decode(errors="replace")[:40] if isinstance(value, bytes) else str(value)[:40],
)
def test_malformed_requests_get_400(webhook: WebhookProcess, body: bytes, status: int, text: str) -> None:
    response = webhook.client().post("/validate", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    assert text in response.text


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": None}, "request.kind is missing"),
        ({"kind": {"group": "", "version": "v1", "kind": "ConfigMap"}}, "contradicts request.resource"),
        ({"operation": "PATCH"}, "request.operation 'PATCH' is not one of"),
        ({"object": None}, "CREATE without request.object"),
    ],
)
@pytest.mark.parametrize("endpoint", ["/validate", "/mutate"])
def test_a_malformed_review_is_denied_not_allowed(
    webhook: WebhookProcess, endpoint: str, change: dict[str, Any], message: str
) -> None:
    """Denied in the AdmissionReview (HTTP 200), so even failurePolicy Ignore cannot turn it into an allow."""
    review = fixture("pod-create.json")
    review["request"]["object"]["spec"]["initContainers"] = []  # otherwise allowed
    review["request"].update({k: v for k, v in change.items() if v is not None})
    for key in (k for k, v in change.items() if v is None and k != "object"):
        review["request"].pop(key)
    if "object" in change:
        review["request"]["object"] = None
    response = response_of(webhook.client().post(endpoint, json=review), review["request"]["uid"])
    assert response["allowed"] is False and response["status"]["code"] == 400
    assert message in response["status"]["message"]


def test_malformed_object_in_a_valid_review_is_denied(webhook: WebhookProcess) -> None:
    review = fixture("pod-create.json")
    review["request"]["object"]["spec"]["containers"] = {"name": "x"}
    response = response_of(webhook.client().post("/validate", json=review), review["request"]["uid"])
    assert response["allowed"] is False and "malformed" in response["status"]["message"]


def test_oversized_body_gets_413(webhook: WebhookProcess) -> None:
    response = webhook.client().post("/validate", content=b" " * (8 * 1024 * 1024 + 1))
    assert response.status_code == 413
    # and the server still answers afterwards
    assert webhook.client().get("/healthz").text == "ok\n"


def test_slow_body_gets_408(webhook: WebhookProcess) -> None:
    context = ssl.create_default_context(cafile=webhook.tls.ca_cert)
    with (
        socket.create_connection(("127.0.0.1", webhook.port), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
        started = time.monotonic()
        reply = tls.recv(4096)
        assert reply.startswith(b"HTTP/1.1 408"), reply
        assert 1.5 < time.monotonic() - started < 10  # --request-timeout 2 (the sweeper runs twice a second)


def test_methods_and_paths(webhook: WebhookProcess) -> None:
    client = webhook.client()
    assert client.get("/validate").status_code == 405
    assert client.post("/healthz").status_code == 405
    assert client.get("/nope").status_code == 404
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True


def test_metrics_and_logs(webhook: WebhookProcess) -> None:
    review = fixture("pod-create.json")
    webhook.client().post("/validate", json=review)
    metrics = webhook.client().get("/metrics").text
    # bounded by default: no label per namespace (--metrics-per-namespace opts in, tests/test_cli_errors.py)
    # every series is there from the start at 0: these were counted (the fixture is shared: at least 1)
    assert re.search(r'^imagegate_decisions_total\{endpoint="validate",result="denied"\} [1-9]', metrics, re.M)
    assert re.search(r'^imagegate_findings_total\{mode="enforce",rule="untrusted-registry"\} [1-9]', metrics, re.M)
    assert "namespace=" not in metrics
    assert "imagegate_request_duration_seconds_bucket" in metrics
    assert "imagegate_policy_loaded 1.0" in metrics
    logs = webhook.logs()
    decision_lines = [json.loads(line) for line in logs.splitlines() if '"event": "decision"' in line]
    assert decision_lines and decision_lines[-1]["uid"] == review["request"]["uid"]
    assert "do-not-log-me" not in logs  # request bodies (env values) are never logged


def test_policy_reload_live_and_invalid_kept_out(webhook: WebhookProcess, tmp_path: Path) -> None:
    grants = Path(webhook.log_path.parent / "grants" / "grants.yaml")
    review = fixture("pod-create.json")
    client = webhook.client()
    grants.write_text(GRANTS + "  - namespace: tool-example\n")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if response_of(client.post("/validate", json=review), review["request"]["uid"])["allowed"]:
            break
        time.sleep(0.1)
    else:
        pytest.fail("grant was not picked up")
    grants.write_text("grants: [this is: not valid\n")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and client.get("/readyz").json()["policyError"] is None:
        time.sleep(0.1)
    ready = client.get("/readyz").json()
    assert ready["ready"] is True and "invalid YAML" in ready["policyError"]
    assert response_of(client.post("/validate", json=review), review["request"]["uid"])["allowed"]  # last good
    assert "imagegate_policy_valid 0.0" in client.get("/metrics").text
    grants.write_text(GRANTS)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and client.get("/readyz").json()["policyError"] is not None:
        time.sleep(0.1)
    assert not response_of(client.post("/validate", json=review), review["request"]["uid"])["allowed"]


def not_after(der: bytes) -> float:
    return x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp()


def expiry_metric(client: httpx.Client) -> float:
    (line,) = (
        m
        for m in client.get("/metrics").text.splitlines()
        if m.startswith("imagegate_tls_certificate_expiry_timestamp_seconds ")
    )
    return float(line.split()[1])


def test_certificate_rotation_while_serving(webhook: WebhookProcess) -> None:
    client = webhook.client()
    review = fixture("pod-create.json")
    assert client.post("/validate", json=review).status_code == 200  # opens a kept-alive connection
    before = webhook.served_certificate()
    assert expiry_metric(client) == not_after(before)
    # cert-manager renews: same CA, new key and certificate written in place (another lifetime)
    make_certificates(webhook.tls.cert.parent, ["localhost", "127.0.0.1"], ca=load_ca(webhook.tls.cert.parent), days=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and webhook.served_certificate() == before:
        time.sleep(0.1)
    after = webhook.served_certificate()
    assert after != before
    # the expiry alert's metric follows the certificate in use
    assert expiry_metric(client) == not_after(after) != not_after(before)
    # the connection opened before the rotation still works, with no error
    for _ in range(5):
        assert client.post("/validate", json=review).status_code == 200
    # a broken pair (key of another certificate) is refused; the current one keeps serving
    other = make_certificates(webhook.log_path.parent / "other-tls", ["localhost"])
    webhook.tls.key.write_bytes(other.key.read_bytes())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and client.get("/readyz").json()["tlsError"] is None:
        time.sleep(0.1)
    assert "keeping the old certificate" in client.get("/readyz").json()["tlsError"]
    assert webhook.served_certificate() == after
    assert 'imagegate_tls_reloads_total{result="error"} 1.0' in client.get("/metrics").text
    assert expiry_metric(client) == not_after(after)  # the refused pair changed nothing
    # put a good pair back for the tests after this one
    make_certificates(webhook.tls.cert.parent, ["localhost", "127.0.0.1"], ca=load_ca(webhook.tls.cert.parent))


def test_start_without_a_valid_policy_is_not_ready_and_denies(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(POLICY_HEADER + "trusted: [nginx]\n")
    with run_webhook(tmp_path, policy=tmp_path / "policy.yaml", expect_ready=503) as webhook:
        ready = webhook.client().get("/readyz")
        assert ready.status_code == 503 and "does not start with a registry" in ready.json()["policyError"]
        review = fixture("pod-create.json")
        review["request"]["object"]["spec"]["initContainers"] = []
        response = response_of(webhook.client().post("/validate", json=review), review["request"]["uid"])
        assert response["allowed"] is False and response["status"]["code"] == 503
        # fixing the file makes it ready without a restart
        (tmp_path / "policy.yaml").write_text(POLICY)
        webhook.wait_ready()


def test_start_with_an_empty_policy_is_not_ready_and_denies(tmp_path: Path) -> None:
    """docs/policy.md: an invalid policy at start leaves the server up, unready and denying."""
    (tmp_path / "policy.yaml").write_text("# the policy goes here\n")
    with run_webhook(tmp_path, policy=tmp_path / "policy.yaml", expect_ready=503) as webhook:
        client = webhook.client()
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["ready"] is False
        assert "policy.yaml:1: the document is empty (or only comments)" in ready.json()["policyError"]
        assert "imagegate_policy_valid 0.0" in client.get("/metrics").text
        review = fixture("pod-create.json")
        review["request"]["object"]["spec"]["initContainers"] = []
        for endpoint in ("/validate", "/mutate"):
            response = response_of(client.post(endpoint, json=review), review["request"]["uid"])
            assert response["allowed"] is False and response["status"]["code"] == 503
        (tmp_path / "policy.yaml").write_text(POLICY)
        webhook.wait_ready()
        assert "imagegate_policy_valid 1.0" in client.get("/metrics").text
        assert response_of(client.post("/validate", json=review), review["request"]["uid"])["allowed"]


def test_an_emptied_grants_file_is_refused_live(webhook: WebhookProcess) -> None:
    """The issue's case: a grants ConfigMap emptied by mistake must not replace the policy in force."""
    grants = Path(webhook.log_path.parent / "grants" / "grants.yaml")
    review = fixture("pod-create.json")
    review["request"]["namespace"] = review["request"]["object"]["metadata"]["namespace"] = "tool-warned"
    review["request"]["object"]["spec"]["initContainers"] = []
    review["request"]["object"]["spec"]["containers"][0]["image"] = "quay.io/w/app:1"  # allowed only by the grant
    client = webhook.client()
    assert response_of(client.post("/validate", json=review), review["request"]["uid"])["allowed"]
    try:
        grants.write_text("# emptied by mistake\n")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and client.get("/readyz").json()["policyError"] is None:
            time.sleep(0.1)
        ready = client.get("/readyz")
        # still ready: making every pod unready would deny every request in the cluster
        assert ready.status_code == 200 and "grants.yaml:1: the document is empty" in ready.json()["policyError"]
        assert "imagegate_policy_valid 0.0" in client.get("/metrics").text
        assert 'imagegate_policy_reloads_total{result="error"}' in client.get("/metrics").text
        response = response_of(client.post("/validate", json=review), review["request"]["uid"])
        assert response["allowed"]  # judged by the last good grants
    finally:
        grants.write_text(GRANTS)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and client.get("/readyz").json()["policyError"] is not None:
        time.sleep(0.1)
    assert "imagegate_policy_valid 1.0" in client.get("/metrics").text


def test_graceful_shutdown(tmp_path: Path) -> None:
    with run_webhook(tmp_path) as webhook:
        client = webhook.client()
        assert client.get("/healthz").status_code == 200
        webhook.process.send_signal(signal.SIGTERM)
        assert webhook.process.wait(timeout=20) == 0  # an orderly stop, not death by signal
        assert "imagegate stopped" in webhook.logs()  # the lifespan shutdown ran


def _read_until_closed(tls: ssl.SSLSocket) -> bytes:
    received = b""
    with contextlib.suppress(ssl.SSLError, ConnectionError):
        while chunk := tls.recv(65536):
            received += chunk
    return received


def _started_request(tls: ssl.SSLSocket, head: bytes) -> None:
    """Send a request's head asking ``100-continue``: its answer shows the server is receiving it
    (bytes merely sent could still be in the kernel when a signal comes)."""
    tls.sendall(head.replace(b"\r\n\r\n", b"\r\nexpect: 100-continue\r\n\r\n", 1))
    received = b""
    while not received.endswith(b"\r\n\r\n"):
        chunk = tls.recv(1)
        assert chunk, received
        received += chunk
    assert received.startswith(b"HTTP/1.1 100"), received


def test_shutdown_closes_idle_connections_at_once_and_answers_in_flight(tmp_path: Path) -> None:
    """SIGTERM closes idle keep-alive connections (the API server keeps some open) at once and
    waits only for requests in flight: one half sent when the signal comes still gets its answer,
    and the process exits well within the 15 s grace."""
    review = json.dumps(fixture("pod-create.json")).encode()
    head = b"POST /validate HTTP/1.1\r\nhost: imagegate\r\ncontent-type: application/json\r\n"
    head += b"content-length: %d\r\n\r\n" % len(review)
    with run_webhook(tmp_path) as webhook:
        idle = webhook.client()
        assert idle.get("/healthz").status_code == 200  # and its connection stays open, idle
        context = ssl.create_default_context(cafile=webhook.tls.ca_cert)
        with (
            socket.create_connection(("127.0.0.1", webhook.port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            _started_request(tls, head)
            tls.sendall(review[:100])
            signalled = time.monotonic()
            webhook.process.send_signal(signal.SIGTERM)
            deadline = signalled + 10
            while "stopping" not in webhook.logs() and time.monotonic() < deadline:
                time.sleep(0.02)
            assert "in_flight=1" in webhook.logs() or '"in_flight": 1' in webhook.logs(), webhook.logs()
            tls.sendall(review[100:])
            answer = _read_until_closed(tls)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
        assert b'"allowed":false' in answer
        assert webhook.process.wait(timeout=14) == 0, webhook.logs()
        assert time.monotonic() - signalled < 5, "shutdown waited for the idle connection"


def test_shutdown_grace_bounds_a_request_that_never_completes(tmp_path: Path) -> None:
    """A request still arriving when --shutdown-grace runs out is dropped: the stop is bounded."""
    with run_webhook(tmp_path, "--shutdown-grace", "1", "--request-timeout", "60") as webhook:
        context = ssl.create_default_context(cafile=webhook.tls.ca_cert)
        with (
            socket.create_connection(("127.0.0.1", webhook.port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            _started_request(tls, b"POST /validate HTTP/1.1\r\nhost: imagegate\r\ncontent-length: 1000\r\n\r\n")
            signalled = time.monotonic()
            webhook.process.send_signal(signal.SIGTERM)
            assert webhook.process.wait(timeout=10) == 0, webhook.logs()
            waited = time.monotonic() - signalled
            assert _read_until_closed(tls) == b""  # dropped unanswered: it never arrived whole
        assert 0.9 < waited < 5, waited  # the grace, not the 15 s default nor the request timeout


def test_update_without_change_of_review_shape(webhook: WebhookProcess) -> None:
    """The review from the API server may carry fields we do not know; they are ignored."""
    review = copy.deepcopy(fixture("pod-create.json"))
    review["request"]["someFutureField"] = {"x": 1}
    response = response_of(webhook.client().post("/validate", json=review), review["request"]["uid"])
    assert response["allowed"] is False


def test_mutate_then_validate_like_the_api_server(tmp_path: Path) -> None:
    """The API server calls /mutate, applies the JSONPatch, then calls /validate with the result."""
    (tmp_path / "policy.yaml").write_text(
        POLICY
        + "podSecurity:\n  level: restricted\n  toolProfile:\n"
        + "    identities: {tool-example: {uid: 52503}}\n"
        + "    hostPaths: [{path: '/data/project/{tool}'}]\n"
    )
    review = fixture("pod-create.json")
    review["request"]["object"]["spec"]["initContainers"] = []
    with run_webhook(tmp_path, policy=tmp_path / "policy.yaml") as webhook:
        client = webhook.client()
        mutated = response_of(client.post("/mutate", json=review), review["request"]["uid"])
        assert mutated["allowed"] is True and mutated["patchType"] == "JSONPatch"
        patch = json.loads(base64.b64decode(mutated["patch"]))
        review["request"]["object"] = jsonpatch.apply_patch(review["request"]["object"], patch)
        spec = review["request"]["object"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["fsGroup"] == 52503
        assert spec["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        validated = response_of(client.post("/validate", json=review), review["request"]["uid"])
        assert validated == {"uid": review["request"]["uid"], "allowed": True}
        # a pod that asks for root is denied, naming the field and the allowed value
        review["request"]["object"]["spec"]["securityContext"]["runAsUser"] = 0
        denied = response_of(client.post("/validate", json=review), review["request"]["uid"])
        assert denied["allowed"] is False
        assert "runAsUser=0; only 52503 is allowed" in denied["status"]["message"]


def test_workers_share_one_view_of_metrics(tmp_path: Path) -> None:
    """With --workers 2 every scrape sums all workers, whichever worker answers it."""
    with run_webhook(tmp_path, "--workers", "2") as webhook:
        review = fixture("pod-create.json")
        for _ in range(40):  # a new connection each time: the kernel spreads them over the workers
            with httpx.Client(
                base_url=webhook.url, verify=ssl.create_default_context(cafile=webhook.tls.ca_cert)
            ) as client:
                assert client.post("/validate", json=review).status_code == 200

        def validated() -> float:
            """/validate's decisions, every result summed (each series is there from the start, at 0)."""
            with httpx.Client(
                base_url=webhook.url, verify=ssl.create_default_context(cafile=webhook.tls.ca_cert)
            ) as client:
                metrics = client.get("/metrics").text
            lines = [m for m in metrics.splitlines() if m.startswith('imagegate_decisions_total{endpoint="validate"')]
            assert len(lines) == 3  # allowed, denied, warned
            return sum(float(line.rsplit(" ", 1)[1]) for line in lines)

        # each worker writes its counts about once a second (METRICS_FLUSH_SECONDS)
        deadline = time.monotonic() + 5
        while validated() != 40 and time.monotonic() < deadline:
            time.sleep(0.2)
        for _ in range(6):
            assert validated() == 40
        with httpx.Client(
            base_url=webhook.url, verify=ssl.create_default_context(cafile=webhook.tls.ca_cert)
        ) as client:
            metrics = client.get("/metrics").text
        assert 'imagegate_request_duration_seconds_count{endpoint="validate"} 40.0' in metrics
        assert 'imagegate_request_duration_seconds_bucket{endpoint="validate",le="+Inf"} 40.0' in metrics


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's (prctl)")
def test_workers_end_when_their_parent_is_killed(tmp_path: Path) -> None:
    """The serving parent SIGKILLed (the OOM killer: no signal forwarded): its workers stop
    themselves (PR_SET_PDEATHSIG) and the port is free, not served by orphans."""
    # the parent's metrics directory, which a killed parent cannot remove, under tmp_path
    with run_webhook(tmp_path, "--workers", "2", env={"TMPDIR": str(tmp_path)}) as webhook:
        deadline = time.monotonic() + 60  # both workers up: a bound for a loaded machine, not a wait
        while webhook.logs().count('"event": "serving"') < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        children = children_of(webhook.process.pid)
        assert len(children) >= 2, webhook.logs()  # two workers (and multiprocessing's resource tracker)
        webhook.process.kill()
        webhook.process.wait()
        deadline = time.monotonic() + 10
        while any(map(running, children)) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [pid for pid in children if running(pid)]
        for pid in left:  # the assertion below fails; they are not left behind for it
            os.kill(pid, signal.SIGKILL)
        assert not left, webhook.logs()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", webhook.port), timeout=5).close()


def test_buffered_latencies_count_as_observations() -> None:
    """Metrics.record + flush exports the same histogram as prometheus_client's own observe()."""
    values = [0.0001, 0.0005, 0.0007, 0.003, 0.02, 0.02, 2.0, 0.5, 1.0, 0.00049]
    ours = Metrics()
    for value in values:
        ours.record("validate", "allowed", "tool-x", [], value)
    reference = CollectorRegistry()
    observed = Histogram(
        "imagegate_request_duration_seconds", "", ["endpoint"], buckets=LATENCY_BUCKETS, registry=reference
    )
    for value in values:
        observed.labels("validate").observe(value)

    def histogram(text: bytes) -> list[str]:
        return [line for line in text.decode().splitlines() if line.startswith("imagegate_request_duration_seconds")]

    ours_lines, reference_lines = histogram(ours.exposition()), histogram(generate_latest(reference))
    assert ours_lines == reference_lines and len(ours_lines) == len(LATENCY_BUCKETS) + 3  # +Inf, _sum, _count
