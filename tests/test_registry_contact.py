"""Issue 13 item 10: imagegate is no probe of the platform's network.

A tenant writes the image, and the image names the host imagegate would contact for base
verification and pinning. Only the registries the policy names (``trusted``, the grants'
``registries``, ``baseImages``, ``registry.contact``) are contacted, or every registry with
``registry.contact: any``; and what a tenant reads about a failed lookup is its kind, never what
the network said. "No connection" is shown by a loopback socket that listens and never answers:
any connection attempt would wait in its backlog, and the test counts them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import socket
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagegate.core.decide import decide
from imagegate.core.policy import Policy, PolicyError, load_grants, load_policy
from imagegate.core.questions import BaseQuestion, DigestQuestion
from imagegate.core.records import Webhook
from imagegate.core.reference import parse_docker_ref
from imagegate.shell.registry.answerers import answer
from imagegate.shell.registry.auth import MAX_TOKEN_ANSWER_BYTES
from imagegate.shell.registry.client import RegistryClient, RegistryError, RegistryErrorKind, RegistrySettings
from imagegate.shell.registry.gate import RegistryGate, pin_failure_note, tenant_reason
from imagegate.shell.webhook.certs import make_certificates
from tests.conftest import GRANTS_HEADER, POLICY_HEADER, admission_review, run_imagegate
from tests.loopback import free_port
from tests.oci_images import OciLayout, layers, skopeo_inspect
from tests.registry_process import (
    UNHURRIED,
    UNHURRIED_CLIENT,
    UNHURRIED_LOOKUP,
    UNHURRIED_REQUEST,
    Registry,
    fault_handler,
    https_server,
    reply,
    run_registry,
)
from tests.webhook_process import run_webhook

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
BASE = layers("contact-base", 2)
APP = layers("contact-app", 1)


class Listener:
    """A loopback socket that listens and never answers; counts the connections made to it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.host = f"127.0.0.1:{self.sock.getsockname()[1]}"

    def connections(self) -> int:
        """Connections the kernel completed since the last call (they wait in the backlog)."""
        self.sock.setblocking(False)
        count = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    found = Listener()
    try:
        yield found
    finally:
        found.close()


@dataclasses.dataclass
class Pushed:
    registry: Registry
    config: Path

    def ref(self, name: str) -> str:
        return f"{self.registry.host}/{name}"


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pushed]:
    workdir = tmp_path_factory.mktemp("contact")
    with run_registry(workdir / "registry", "htpasswd") as reg:
        layout = OciLayout(workdir / "layout")
        reg.push(layout, "base", BASE, "toolforge/base:1")
        reg.push(layout, "app", [*BASE, *APP], "tool-a/app:1")
        yield Pushed(reg, reg.docker_config(workdir / "config.json"))


def _pod(*images: str) -> dict[str, Any]:
    containers = [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
    return {"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": containers}}


def _policy(text: str) -> Policy:
    return load_policy(POLICY_HEADER + text, "policy.yaml")


def _lookups(policy: Policy, image: str, *, pins: bool) -> Any:
    """The registry's part of a decision, through the gate the webhook uses."""

    async def go() -> Any:
        gate = RegistryGate()
        try:
            first = decide(policy, _pod(image), namespace="tool-a", now=NOW)
            found = await answer(gate, policy, first, webhook=Webhook.CHECK if pins else Webhook.VALIDATE)
            return first, found, dict(gate._clients)
        finally:
            await gate.aclose()

    return asyncio.run(go())


# --- the policy: which registries, and the key that adds some -------------------------------


def test_the_registries_the_policy_names_are_contacted_and_no_others() -> None:
    policy = _policy(
        """
trusted:
  - docker.io/library/ubuntu:22.04
  - tools-harbor.wmcloud.org/{namespace}
  - "*.svc.toolforge.org"
byoc:
  grants:
    - {namespace: tool-a, registries: [ghcr.io/tool-a]}
    - {namespace: tool-b}
registry:
  contact: ["quay.io", "Registry.Example.org:5000"]
baseImages:
  trusted: [base.example.org/bullseye:latest]
  requireFor: [builds.example.org/tool-*]
"""
    )
    scope = policy.with_grants(
        load_grants(GRANTS_HEADER + "grants: [{namespace: tool-c, registries: [grants-file.example.org/x]}]")
    ).contact_scope()
    contacted = [
        "INDEX.DOCKER.IO/library/ubuntu:22.04",  # every spelling of Docker Hub is docker.io
        "registry-1.docker.io/tool/app:1",
        "tools-harbor.wmcloud.org:443/tool-zz/app:1",  # the template's registry, in any namespace
        "docker-registry.svc.toolforge.org/x:1",  # the glob
        "ghcr.io/someone-else/app:1",  # a registry is a registry, whatever the path
        "quay.io/x:1",
        "registry.example.org:5000/x:1",
        "base.example.org/other:1",
        "builds.example.org/tool-a/app:1",
        "grants-file.example.org/y:1",
    ]
    not_contacted = [
        "10.0.0.1/x:1",
        "127.0.0.1:6443/x:1",
        "[::1]:2379/x:1",
        "localhost:10250/x:1",
        "registry.example.org/x:1",  # another port is another registry
        "quay.io:8443/x:1",
        "svc.toolforge.org.attacker.example/x:1",
        "metadata.google.internal/x:1",
    ]
    assert [i for i in contacted if not scope.allows(parse_docker_ref(i))] == []
    assert [i for i in not_contacted if scope.allows(parse_docker_ref(i))] == []
    # the grants file's registries count only once the grants are in the policy
    assert not policy.contact_scope().allows(parse_docker_ref("grants-file.example.org/y:1"))
    anything = _policy("registry: {contact: any}\n").contact_scope()
    assert all(anything.allows(parse_docker_ref(i)) for i in not_contacted)


@pytest.mark.parametrize(
    ("contact", "error"),
    [
        ("all", "registry.contact: 'all': write 'any' (every registry an image names) or a list of registries"),
        ("['*']", "registry.contact[0]: '*': write 'contact: any' to let imagegate contact every registry"),
        ("[ghcr.io/org]", "registry.contact[0]: 'ghcr.io/org' names a repository; write the registry alone"),
        ("[quay.io/x:1]", "registry.contact[0]: 'quay.io/x:1' names a repository"),
        ("['https://quay.io']", "registry.contact[0]: 'https://quay.io': write the registry without a scheme"),
        ("[nginx]", "registry.contact[0]: 'nginx' does not start with a registry"),
        ("5", "registry.contact"),
    ],
)
def test_registry_contact_is_validated(contact: str, error: str) -> None:
    with pytest.raises(PolicyError) as caught:
        _policy(f"registry:\n  contact: {contact}\n")
    assert error in str(caught.value) and "policy.yaml:4" in str(caught.value)


_LABEL = st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True)
_HOST = st.one_of(
    st.builds(lambda labels, tld: ".".join([*labels, tld]), st.lists(_LABEL, min_size=1, max_size=3), _LABEL),
    st.builds(lambda parts: ".".join(str(p) for p in parts), st.lists(st.integers(0, 255), min_size=4, max_size=4)),
    st.just("localhost"),
)
_REGISTRY = st.builds(
    lambda host, port: f"{host}:{port}" if port else host, _HOST, st.one_of(st.none(), st.integers(1, 65535))
)
_NAMED = "trusted.example.org"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(registry=_REGISTRY, grant_any=st.booleans(), case=st.sampled_from(["", "upper", "443"]))
def test_property_an_unnamed_registry_is_never_asked(registry: str, grant_any: bool, case: str) -> None:
    """Open BYOC (for everyone, or a grant without ``registries``) with a base required: an image
    from a registry the policy does not name is denied unverified, and no lookup is asked for;
    with ``registry.contact: any`` it is looked up."""
    ref = parse_docker_ref(f"{registry}/tool/app:1")
    if ref.registry_host in (_NAMED, "docker.io"):
        return
    spelled = {"upper": registry.upper(), "443": f"{registry}:443" if ":" not in registry else registry}
    image = f"{spelled.get(case, registry)}/tool/app:1"
    byoc = (
        "byoc: {grants: [{namespace: tool-a, requireBaseImage: true}]}"
        if grant_any
        else ("byoc: {default: allow, requireBaseImage: true}")
    )
    base = f"trusted: [{_NAMED}/platform]\n{byoc}\n"
    decision = decide(_policy(base), _pod(image), namespace="tool-a", now=NOW)
    assert not decision.allowed
    assert decision.questions == ()
    (finding,) = decision.violations
    assert finding.rule == "base-image-unverified"
    assert f"imagegate does not contact the registry {ref.registry_host}:" in finding.reason
    anything = decide(_policy(base + "registry: {contact: any}\n"), _pod(image), namespace="tool-a", now=NOW)
    assert anything.asked(BaseQuestion) == (BaseQuestion(parse_docker_ref(image)),)


# --- what a tenant reads about a failed lookup ---------------------------------------------

# every kind whose words are the tenant's (refused and not-contacted are imagegate's own words, told in full)
_KINDS = [
    kind for kind in RegistryErrorKind if kind not in (RegistryErrorKind.REFUSED, RegistryErrorKind.NOT_CONTACTED)
]
_DETAIL = st.builds(
    lambda prefix, address, tail: f"{prefix} 10.{address}.7.9:6443 {tail}",
    st.sampled_from(
        [
            "ConnectError('[Errno 111] Connection refused')",
            "[Errno -2] Name or service not known: kube-apiserver.internal",
            "TLS certificate verification failed (self-signed certificate)",
            "token server https://169.254.169.254/latest/meta-data refused",
            "redis.internal answered HTTP 400",
        ]
    ),
    st.integers(0, 255),
    st.text(max_size=40),
)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(_KINDS), detail=_DETAIL)
def test_property_a_tenant_reads_the_kind_never_the_detail(kind: RegistryErrorKind, detail: str) -> None:
    error = RegistryError(kind, detail)
    reason = tenant_reason("ghcr.io/x/app:1", error)
    note = pin_failure_note("ghcr.io/x/app:1", error)
    for text in (reason, note):
        assert "10." not in text and "Errno" not in text and "169.254" not in text and "internal" not in text
    # a closed set of words: the same for every detail
    assert reason == tenant_reason("ghcr.io/x/app:1", RegistryError(kind, "other words"))
    assert note == pin_failure_note("ghcr.io/x/app:1", RegistryError(kind, "other words"))
    assert note.startswith("imagegate: could not pin ghcr.io/x/app:1 to a digest (")


# --- the webhook, end to end, against docker-registry ----------------------------------------


def _untrusted_tls_server(tmp_path: Path) -> Any:
    """An HTTPS server whose certificate no CA imagegate trusts vouches for."""
    tls = make_certificates(tmp_path / "other-ca", ["127.0.0.1"])
    return https_server(fault_handler(lambda handler: reply(handler, 404, b"{}"), []), tls)


def test_webhook_contacts_only_named_registries_and_tells_kinds(
    pushed: Pushed, tmp_path: Path, listener: Listener
) -> None:
    down = f"127.0.0.1:{free_port()}"
    with _untrusted_tls_server(tmp_path) as bad_tls:
        (tmp_path / "policy.yaml").write_text(
            POLICY_HEADER
            + f"""
trusted: [{pushed.registry.host}/toolforge]
byoc: {{default: allow, requireBaseImage: true}}
registry:
  caFile: {pushed.registry.tls.ca_cert}
  credentialsFile: {pushed.config}
  timeoutSeconds: {UNHURRIED_REQUEST:g}
  lookupTimeoutSeconds: {UNHURRIED_LOOKUP:g}
  contact: ["{down}", "{bad_tls}"]
baseImages: {{trusted: ["{pushed.ref("toolforge/base:1")}"]}}
pinning: {{enabled: true}}
"""
        )
        with run_webhook(tmp_path, policy=tmp_path / "policy.yaml") as webhook:
            http = webhook.client()

            def validate(image: str) -> dict[str, Any]:
                response: dict[str, Any] = http.post("/validate", json=admission_review(_pod(image), "tool-a")).json()[
                    "response"
                ]
                return response

            # named (trusted, and baseImages): asked, and the image is verified on the base
            good = validate(pushed.ref("tool-a/app:1"))
            assert good["allowed"] is True, good
            # named nowhere: denied without a connection, whatever the request
            probe = validate(f"{listener.host}/tool/app:1")
            assert probe["allowed"] is False
            assert f"imagegate does not contact the registry {listener.host}:" in probe["status"]["message"]
            http.post("/mutate", json=admission_review(_pod(f"{listener.host}/x:1"), "tool-a")).raise_for_status()
            assert listener.connections() == 0
            # named, and failing: the kind only; the detail is in imagegate's log
            refused = validate(f"{down}/tool/app:1")["status"]["message"]
            assert "registry unavailable: unreachable; denied by registry.onError: deny" in refused
            tls = validate(f"{bad_tls}/tool/app:1")["status"]["message"]
            assert "registry error (TLS error); denied by registry.onError: deny" in tls
            for message in (refused, tls):
                assert "Errno" not in message and "onnect" not in message and "certificate" not in message
            logs = webhook.logs()
        assert "registry lookup failed" in logs and "is unreachable" in logs and "verification failed" in logs
        assert f"{down}/tool/app:1" in logs


def test_pinning_asks_only_named_registries(pushed: Pushed, listener: Listener) -> None:
    """BYOC for everyone with pinning: an image from a registry the policy does not name runs by
    tag with a note saying so; named by ``registry.contact`` (or ``any``), it is pinned."""
    registry = f"registry: {{caFile: {pushed.registry.tls.ca_cert}, credentialsFile: {pushed.config}, {UNHURRIED}"
    base = "byoc: {default: allow}\npinning: {enabled: true}\n"
    image = pushed.ref("tool-a/app:1")
    digest = skopeo_inspect(image, cert_dir=pushed.registry.cert_dir, credentials=pushed.registry.credentials)["Digest"]
    first, unnamed, clients = _lookups(_policy(f"{base}{registry}}}\n"), image, pins=True)
    assert first.pins_needed == (image,) and unnamed.of(DigestQuestion) == {}
    (note,) = unnamed.notes
    assert note == (
        f"imagegate: could not pin {image} to a digest (imagegate does not contact the registry "
        f"{pushed.registry.host}: the policy names it nowhere (trusted, a grant's registries, baseImages, "
        "registry.contact)); it runs by tag"
    )
    assert clients == {}  # not even a client was made
    for contact in (f'["{pushed.registry.host}"]', "any"):
        _first, named, _clients = _lookups(_policy(f"{base}{registry}, contact: {contact}}}\n"), image, pins=True)
        assert named.of(DigestQuestion) == {image: digest} and named.notes == ()
    _first, probe, _clients = _lookups(_policy(f"{base}{registry}}}\n"), f"{listener.host}/x:1", pins=True)
    assert "does not contact the registry" in probe.notes[0]
    assert listener.connections() == 0


def test_the_listener_sees_a_contacted_registry(listener: Listener) -> None:
    """The control: with ``contact: any`` the same lookup does connect, and the tenant reads "timeout"."""
    policy = _policy("byoc: {default: allow, requireBaseImage: true}\nregistry: {contact: any, timeoutSeconds: 0.5}\n")
    _first, found, _clients = _lookups(policy, f"{listener.host}/x:1", pins=False)
    (verdict,) = found.of(BaseQuestion).values()
    assert verdict.detail == "registry unavailable: timeout; denied by registry.onError: deny"
    assert listener.connections() >= 1


def test_unreadable_credentials_are_a_verdict_not_a_crash(tmp_path: Path) -> None:
    policy = _policy(
        "byoc: {default: allow, requireBaseImage: true}\n"
        f"registry: {{contact: any, credentialsFile: {tmp_path / 'missing.json'}}}\n"
    )
    _first, found, _clients = _lookups(policy, "ghcr.io/x/app:1", pins=False)
    (verdict,) = found.of(BaseQuestion).values()
    assert not verdict.ok
    assert verdict.detail == (
        "registry error (imagegate's registry credentials are unusable); denied by registry.onError: deny"
    )
    assert "missing.json" not in verdict.detail


def test_operator_commands_contact_only_named_registries(pushed: Pushed, tmp_path: Path, listener: Listener) -> None:
    """check --registry, audit --registry and layers read the policy's registries only."""
    (tmp_path / "policy.yaml").write_text(
        POLICY_HEADER
        + f"""
trusted: [{pushed.registry.host}/toolforge]
byoc: {{default: allow, requireBaseImage: true}}
registry: {{caFile: {pushed.registry.tls.ca_cert}, credentialsFile: {pushed.config}, {UNHURRIED}}}
baseImages: {{trusted: ["{pushed.ref("toolforge/base:1")}"]}}
"""
    )
    probe = f"{listener.host}/tool/app:1"
    pods = {
        "kind": "List",
        "items": [
            {**_pod(probe), "metadata": {"name": "probe", "namespace": "tool-a"}},
            {**_pod(pushed.ref("tool-a/app:1")), "metadata": {"name": "good", "namespace": "tool-a"}},
        ],
    }
    (tmp_path / "dump.json").write_text(json.dumps(pods))
    policy = str(tmp_path / "policy.yaml")
    checked = run_imagegate("check", "-", "-p", policy, "-o", "json", "--registry", stdin=json.dumps(pods))
    assert checked.returncode == 1, checked.stderr
    objects = json.loads(checked.stdout)["objects"]
    assert objects[1]["allowed"] is True
    assert "does not contact the registry" in objects[0]["violations"][0]["message"]
    audited = run_imagegate("audit", "--from", str(tmp_path / "dump.json"), "-p", policy, "--registry", "-o", "json")
    assert audited.returncode == 1, audited.stderr
    assert "does not contact the registry" in audited.stdout
    # a dump's images are the tenants' names: only the policy's registries are asked
    layered = run_imagegate("layers", "--from", str(tmp_path / "dump.json"), "-p", policy, "-o", "json")
    assert layered.returncode == 2, layered.stderr  # one image not read: only part of the report
    report = json.loads(layered.stdout)
    assert [i["image"] for i in report["images"]] == [pushed.ref("tool-a/app:1")]
    assert "does not contact the registry" in report["skipped"][0]
    assert "1 image not read (not-contacted)" in layered.stderr
    assert listener.connections() == 0
    # an image the operator names is asked wherever it is, as inspect does (issue 23 item 4)
    named = run_imagegate("layers", probe, "-p", policy, "-o", "json")
    assert named.returncode == 2 and listener.connections() > 0


# --- token servers: answers are bounded --------------------------------------------------------


@pytest.mark.parametrize("declared", [True, False])
def test_a_token_servers_answer_is_bounded(tmp_path: Path, declared: bool) -> None:
    tls = make_certificates(tmp_path / "tls", ["127.0.0.1"])
    huge = b'{"token": "' + b"a" * (MAX_TOKEN_ANSWER_BYTES + 10) + b'"}'

    def behaviour(handler: BaseHTTPRequestHandler) -> None:
        if handler.path.startswith("/token"):
            if declared:
                reply(handler, 200, huge, {"Content-Type": "application/json"})
            else:  # HTTP/1.0, no length: the body ends when the connection does
                handler.send_response(200)
                handler.end_headers()
                handler.wfile.write(huge)
            return
        realm = f"https://{handler.headers['Host']}/token"
        reply(handler, 401, b"", {"WWW-Authenticate": f'Bearer realm="{realm}",service="x"'})

    with https_server(fault_handler(behaviour, []), tls) as host:

        async def go() -> None:
            async with RegistryClient(RegistrySettings(ca_file=tls.ca_cert, **UNHURRIED_CLIENT)) as client:
                await client.resolve(parse_docker_ref(f"{host}/tool/app:1"))

        with pytest.raises(RegistryError) as caught:
            asyncio.run(go())
    assert caught.value.kind is RegistryErrorKind.TOO_LARGE
    assert f"the limit is {MAX_TOKEN_ANSWER_BYTES}" in str(
        caught.value
    ) or f"larger than {MAX_TOKEN_ANSWER_BYTES}" in str(caught.value)
    assert "token answer" in str(caught.value)
