"""The registry client and base-image verification against a real registry (docker-registry).

Images are built here as OCI layouts and pushed by skopeo; skopeo also cross-checks what our
client reads. Faults come from a real HTTPS server that misbehaves on purpose.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from imagegate.core.baseimage import verify_image
from imagegate.core.decide import decide
from imagegate.core.oci import digest_of
from imagegate.core.policy import BaseImagesConfig, Policy, RegistryConfig, load_policy
from imagegate.core.questions import BaseQuestion
from imagegate.core.records import Decision, Webhook
from imagegate.core.reference import parse_docker_ref
from imagegate.shell.registry.answerers import Asking, BaseAnswerer, answer
from imagegate.shell.registry.auth import DockerConfigCredentials
from imagegate.shell.registry.client import RegistryClient, RegistryError, RegistrySettings
from imagegate.shell.registry.gate import RegistryGate
from imagegate.shell.webhook.certs import make_certificates
from tests.conftest import POLICY_HEADER, admission_review, run_imagegate
from tests.oci_images import OciLayout, layer, layers, skopeo_copy, skopeo_inspect
from tests.registry_process import (
    STALL_TIMEOUT,
    UNHURRIED,
    UNHURRIED_CLIENT,
    Registry,
    SteppedLoop,
    fault_handler,
    https_server,
    reply,
    run_registry,
)

BASE_V1 = layers("bullseye-v1", 3)
BASE_V2 = [*BASE_V1[:2], layer({"bullseye/security-update": b"v2\n"})]  # a rebuilt base: last layer differs
APP = layers("app", 2)
OTHER = layers("alpine", 2)


@dataclasses.dataclass
class Pushed:
    registry: Registry
    layout: Path
    digests: dict[str, str]

    def ref(self, name: str) -> str:
        return f"{self.registry.host}/{name}"


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pushed]:
    workdir = tmp_path_factory.mktemp("registry")
    with run_registry(workdir / "registry", "htpasswd") as reg:
        layout = OciLayout(workdir / "layout")
        reg.push(layout, "base-v1", BASE_V1, "toolforge/bullseye:v1")
        reg.push(layout, "base-v1", BASE_V1, "toolforge/bullseye:latest")
        reg.push(layout, "on-v1", [*BASE_V1, *APP], "tool-a/app:on-v1", docker_format=True)
        reg.push(layout, "base-v2", BASE_V2, "toolforge/bullseye:v2")
        reg.push(layout, "on-v2", [*BASE_V2, *APP], "tool-a/app:on-v2")
        reg.push(
            layout,
            "other",
            [*OTHER, *APP],
            "tool-a/app:other",
            annotations={"org.opencontainers.image.base.name": f"{reg.host}/toolforge/bullseye:v1"},
        )
        reg.push(layout, "short", BASE_V1[:2], "tool-a/app:short")
        amd = layout.image([*BASE_V1, *APP])
        arm = layout.image([*layers("arm-base", 3), *APP], architecture="arm64")
        layout.tag(layout.index([amd, arm]), "multi")
        skopeo_copy(
            layout.root,
            "multi",
            f"{reg.host}/tool-a/app:multi",
            cert_dir=reg.cert_dir,
            credentials=reg.credentials,
            all_platforms=True,
        )
        digests = {
            tag: skopeo_inspect(f"{reg.host}/{tag}", cert_dir=reg.cert_dir, credentials=reg.credentials)["Digest"]
            for tag in ("toolforge/bullseye:v1", "tool-a/app:on-v1", "tool-a/app:multi")
        }
        yield Pushed(reg, workdir / "layout", digests)


def client(pushed: Pushed, tmp_path: Path, **settings: Any) -> RegistryClient:
    credentials = DockerConfigCredentials.from_docker_config(pushed.registry.docker_config(tmp_path / "config.json"))
    settings = {**UNHURRIED_CLIENT, **settings}  # time is not what these tests are about
    return RegistryClient(RegistrySettings(ca_file=pushed.registry.tls.ca_cert, credentials=credentials, **settings))


async def _resolving(c: RegistryClient, ref: str) -> Any:
    async with c:
        return await c.resolve(parse_docker_ref(ref))


def resolve(c: RegistryClient, ref: str) -> Any:
    return asyncio.run(_resolving(c, ref))


def test_reads_what_skopeo_reads(pushed: Pushed, tmp_path: Path) -> None:
    for tag in ("tool-a/app:on-v1", "toolforge/bullseye:v1"):
        image = resolve(client(pushed, tmp_path), pushed.ref(tag))
        seen = skopeo_inspect(
            pushed.ref(tag), cert_dir=pushed.registry.cert_dir, credentials=pushed.registry.credentials
        )
        assert image.digest == seen["Digest"] == pushed.digests[tag]
        (platform,) = image.platforms
        assert [layer.digest for layer in platform.layers] == seen["Layers"]
    docker = resolve(client(pushed, tmp_path), pushed.ref("tool-a/app:on-v1"))
    assert docker.media_type == "application/vnd.docker.distribution.manifest.v2+json"
    assert docker.platforms[0].diff_ids == tuple(item.diff_id for item in [*BASE_V1, *APP])


def test_index_examines_every_runnable_platform(pushed: Pushed, tmp_path: Path) -> None:
    image = resolve(client(pushed, tmp_path, platforms=("linux/amd64", "linux/arm64")), pushed.ref("tool-a/app:multi"))
    assert image.digest == pushed.digests["tool-a/app:multi"]
    assert image.media_type == "application/vnd.oci.image.index.v1+json"
    assert [p.platform for p in image.platforms] == ["linux/amd64", "linux/arm64"]
    only_amd = resolve(client(pushed, tmp_path), pushed.ref("tool-a/app:multi"))
    assert [p.platform for p in only_amd.platforms] == ["linux/amd64"]
    assert only_amd.available_platforms == ("linux/amd64", "linux/arm64")


def test_credentials_are_required(pushed: Pushed) -> None:
    anonymous = RegistryClient(RegistrySettings(ca_file=pushed.registry.tls.ca_cert, **UNHURRIED_CLIENT))
    with pytest.raises(RegistryError) as caught:
        resolve(anonymous, pushed.ref("tool-a/app:on-v1"))
    assert caught.value.kind == "auth"


def test_unknown_tag_and_untrusted_tls(pushed: Pushed, tmp_path: Path) -> None:
    with pytest.raises(RegistryError) as caught:
        resolve(client(pushed, tmp_path), pushed.ref("tool-a/app:nope"))
    assert caught.value.kind == "not-found"
    stranger = RegistryClient(RegistrySettings(**UNHURRIED_CLIENT))  # the system CAs do not know our test CA
    with pytest.raises(RegistryError) as caught:
        resolve(stranger, pushed.ref("tool-a/app:on-v1"))
    # a TLS failure, not "unreachable": the registry answered, we could not verify it
    assert caught.value.kind == "tls" and "TLS certificate verification failed" in str(caught.value)


def _bases(pushed: Pushed, *refs: str) -> BaseImagesConfig:
    return BaseImagesConfig(trusted=tuple(parse_docker_ref(pushed.ref(r)) for r in refs), remember_days=30)


def _registry_config(pushed: Pushed, tmp_path: Path, **kw: Any) -> RegistryConfig:
    return RegistryConfig(
        ca_file=str(pushed.registry.tls.ca_cert),
        credentials_file=str(pushed.registry.docker_config(tmp_path / "config.json")),
        **{**UNHURRIED_CLIENT, **kw},
    )


def test_base_verification_remembers_earlier_bases(pushed: Pushed, tmp_path: Path) -> None:
    gate = RegistryGate()
    config = _registry_config(pushed, tmp_path)
    day0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)

    async def scenario() -> dict[str, Any]:
        c = gate.client(config)
        # the base's tag points at v1 on day 0, at v2 a month later; both versions are known
        await gate.bases.refresh(c, _bases(pushed, "toolforge/bullseye:v1"), day0)
        await gate.bases.refresh(
            c, _bases(pushed, "toolforge/bullseye:v1", "toolforge/bullseye:v2"), day0 + dt.timedelta(days=29)
        )
        verdicts = {}
        for tag in ("on-v1", "on-v2", "other", "short"):
            verdicts[tag] = verify_image(
                await c.resolve(parse_docker_ref(pushed.ref(f"tool-a/app:{tag}"))), gate.bases.versions
            )
        # beyond the window the old version is forgotten (the newest of each base stays)
        await gate.bases.refresh(c, _bases(pushed, "toolforge/bullseye:v2"), day0 + dt.timedelta(days=45))
        verdicts["on-v1-later"] = verify_image(
            await c.resolve(parse_docker_ref(pushed.ref("tool-a/app:on-v1"))), gate.bases.versions
        )
        await gate.aclose()
        return verdicts

    verdicts = asyncio.run(scenario())
    assert verdicts["on-v1"].ok and "3 base layers + 2 own" in verdicts["on-v1"].detail
    assert verdicts["on-v2"].ok
    assert not verdicts["other"].ok
    assert "nearest trusted base" in verdicts["other"].detail and "layer 1 differs" in verdicts["other"].detail
    assert "claims base" in verdicts["other"].detail and "not proof" in verdicts["other"].detail
    assert not verdicts["short"].ok and "only 2 layers" in verdicts["short"].detail
    assert not verdicts["on-v1-later"].ok
    assert "layer 3 differs" in verdicts["on-v1-later"].detail


def test_single_flight_and_cache(pushed: Pushed, tmp_path: Path) -> None:
    c = client(pushed, tmp_path)

    async def go() -> None:
        async with c:
            ref = parse_docker_ref(pushed.ref("tool-a/app:on-v1"))
            results = await asyncio.gather(*(c.resolve(ref) for _ in range(50)))
            assert len({r.digest for r in results}) == 1
            assert c.fetches == {"manifest": 1, "blob": 1}
            await c.resolve(ref)  # cached
            assert c.fetches == {"manifest": 1, "blob": 1}

    asyncio.run(go())


def test_digest_reads_the_manifest_only_and_resolve_reuses_it(pushed: Pushed, tmp_path: Path) -> None:
    """A digest lookup (signatures, pins) is one manifest GET; a resolution beside or after it
    reads that manifest again neither, and both see the one digest."""
    c = client(pushed, tmp_path)

    async def go() -> None:
        async with c:
            ref = parse_docker_ref(pushed.ref("tool-a/app:on-v2"))
            digest = await c.digest(ref)
            assert c.fetches == {"manifest": 1}  # no config: a digest needs none
            image = await c.resolve(ref)
            assert image.digest == digest
            assert c.fetches == {"manifest": 1, "blob": 1}
            other = parse_docker_ref(pushed.ref("tool-a/app:other"))
            found = await asyncio.gather(c.digest(other), c.resolve(other), c.digest(other))
            assert found[0] == found[1].digest == found[2]
            assert c.fetches == {"manifest": 2, "blob": 2}

    asyncio.run(go())


def test_many_distinct_images_each_fetched_once(pushed: Pushed, tmp_path: Path) -> None:
    seen = skopeo_inspect(
        pushed.ref("tool-a/app:on-v1"),
        cert_dir=pushed.registry.cert_dir,
        credentials=pushed.registry.credentials,
        raw=True,
    )
    body = json.dumps(seen).encode()
    for n in range(20):
        pushed.registry.put_manifest("tool-a/app", f"many-{n}", body, seen["mediaType"])
    c = client(pushed, tmp_path)

    async def go() -> None:
        async with c:
            refs = [parse_docker_ref(pushed.ref(f"tool-a/app:many-{n}")) for n in range(20)]
            await asyncio.gather(*(c.resolve(r) for r in refs for _ in range(3)))
            assert c.fetches["manifest"] == 20  # one per tag, though each was asked for three times

    asyncio.run(go())


def test_token_auth_registry(tmp_path: Path) -> None:
    with run_registry(tmp_path / "token-registry", "token") as reg:
        layout = OciLayout(tmp_path / "layout")
        reg.push(layout, "img", [*BASE_V1, *APP], "tool-t/app:1")
        requests_before = len(reg.token_requests)
        credentials = DockerConfigCredentials.from_docker_config(reg.docker_config(tmp_path / "config.json"))
        c = RegistryClient(RegistrySettings(ca_file=reg.tls.ca_cert, credentials=credentials, **UNHURRIED_CLIENT))

        async def go() -> None:
            async with c:
                image = await c.resolve(parse_docker_ref(f"{reg.host}/tool-t/app:1"))
                assert len(image.platforms[0].diff_ids) == 5
                await c.resolve(parse_docker_ref(f"{reg.host}/tool-t/app@{image.digest}"))

        asyncio.run(go())
        # one token for the repository scope, reused for the second request
        assert len(reg.token_requests) - requests_before == 1
        anonymous = RegistryClient(RegistrySettings(ca_file=reg.tls.ca_cert, **UNHURRIED_CLIENT))
        with pytest.raises(RegistryError) as caught:
            resolve(anonymous, f"{reg.host}/tool-t/app:1")
        assert caught.value.kind == "auth"


# --- faults ------------------------------------------------------------------------------

MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + "a" * 64, "size": 10},
        "layers": [],
    }
).encode()


def _manifest_headers(body: bytes, digest: str | None = None) -> dict[str, str]:
    return {
        "Content-Type": "application/vnd.oci.image.manifest.v1+json",
        "Docker-Content-Digest": digest or digest_of(body),
    }


def _behave(kind: str, hits: list[str], released: threading.Event, loop: SteppedLoop) -> Any:
    def behaviour(handler: BaseHTTPRequestHandler) -> None:
        if kind == "slow":  # with the request: the client's clock past its timeout, no answer until it gave up
            loop.step(STALL_TIMEOUT)
            released.wait(120)
            reply(handler, 200, MANIFEST, _manifest_headers(MANIFEST))
        elif kind == "500":
            reply(handler, 500, b"internal error")
        elif kind == "429":
            if len(hits) == 1:
                reply(handler, 429, b"", {"Retry-After": "0.2"})
            else:
                reply(handler, 404, b"{}")
        elif kind == "429-long":
            reply(handler, 429, b"", {"Retry-After": "120"})
        elif kind == "mismatch":
            reply(handler, 200, MANIFEST, _manifest_headers(MANIFEST, "sha256:" + "b" * 64))
        elif kind == "huge":
            reply(
                handler, 200, b" " * (5 * 1024 * 1024), {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
            )
        elif kind == "redirect-loop":
            reply(handler, 302, b"", {"Location": handler.path})
        elif kind == "garbage":
            reply(
                handler,
                200,
                b'{"schemaVersion": "two", "layers": 5}',
                _manifest_headers(b'{"schemaVersion": "two", "layers": 5}'),
            )
        elif kind == "token-down":
            reply(handler, 401, b"", {"WWW-Authenticate": 'Bearer realm="https://127.0.0.1:1/token",service="x"'})

    return behaviour


@pytest.mark.parametrize(
    ("kind", "error_kind", "text"),
    [
        ("slow", "timeout", f"took longer than {STALL_TIMEOUT:g}s (registry.timeoutSeconds)"),
        ("500", "http", "HTTP 500"),
        ("429", "not-found", "HTTP 404"),  # retried after Retry-After, then answered
        ("429-long", "rate-limited", "HTTP 429"),
        ("mismatch", "digest-mismatch", "does not match its digest"),
        ("huge", "too-large", "the limit is"),
        ("redirect-loop", "redirects", "redirects"),
        ("garbage", "malformed", "malformed"),
        ("token-down", "unreachable", "token answer of https://127.0.0.1:1/token"),
    ],
)
def test_registry_faults(tmp_path: Path, kind: str, error_kind: str, text: str) -> None:
    """Each fault a named error. The slow registry's timeout is reached by the test moving the
    client's clock once the registry holds the request (SteppedLoop), never by the machine's
    speed: the request's timeout (STALL_TIMEOUT) ends it, the lookup's (four times it) not yet."""
    tls = make_certificates(tmp_path / "tls", ["127.0.0.1"])
    hits: list[str] = []
    released = threading.Event()
    loop = SteppedLoop()
    with https_server(fault_handler(_behave(kind, hits, released, loop), hits), tls) as host:
        settings = RegistrySettings(ca_file=tls.ca_cert, timeout=STALL_TIMEOUT, lookup_timeout=4 * STALL_TIMEOUT)
        started = time.monotonic()
        try:
            with pytest.raises(RegistryError) as caught, asyncio.Runner(loop_factory=lambda: loop) as runner:
                runner.run(_resolving(RegistryClient(settings), f"{host}/tool/app:1"))
        finally:
            released.set()
        assert caught.value.kind == error_kind, str(caught.value)
        assert text in str(caught.value)
        # nothing waited out: not the 120 s Retry-After of "429-long", not the stalled registry
        assert time.monotonic() - started < 60


def test_registry_down(tmp_path: Path) -> None:
    from tests.loopback import free_port  # noqa: PLC0415

    c = RegistryClient(RegistrySettings(**UNHURRIED_CLIENT))  # refused at once: no timeout involved
    with pytest.raises(RegistryError) as caught:
        resolve(c, f"127.0.0.1:{free_port()}/tool/app:1")
    assert caught.value.kind == "unreachable"


# --- decisions with the registry -----------------------------------------------------------


def _policy(pushed: Pushed, tmp_path: Path, on_error: str = "deny", extra: str = "") -> Policy:
    config = pushed.registry.docker_config(tmp_path / "config.json")
    return load_policy(
        f"""
apiVersion: imagegate.toolforge.org/v1
kind: ImagePolicy
trusted: [{pushed.registry.host}/toolforge]
byoc:
  grants:
    - namespace: tool-a
      registries: [{pushed.registry.host}/tool-a]
      requireBaseImage: true
registry: {{caFile: {pushed.registry.tls.ca_cert}, credentialsFile: {config}, onError: {on_error}, {UNHURRIED}}}
baseImages:
  trusted: ["{pushed.ref("toolforge/bullseye:v1")}"]
{extra}
""",
        "policy.yaml",
    )


def _pod(image: str) -> dict[str, Any]:
    return {"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "app", "image": image}]}}


def _decide_with_registry(policy: Policy, obj: dict[str, Any], pins: bool = False) -> Any:
    gate = RegistryGate()
    now = dt.datetime.now(dt.UTC)

    async def go() -> Any:
        first = decide(policy, obj, namespace="tool-a", now=now)
        answers = await answer(gate, policy, first, webhook=Webhook.CHECK if pins else Webhook.VALIDATE)
        await gate.aclose()
        return decide(policy, obj, namespace="tool-a", now=now, answers=answers)

    return asyncio.run(go())


def test_grant_with_required_base(pushed: Pushed, tmp_path: Path) -> None:
    policy = _policy(pushed, tmp_path)
    ok = _decide_with_registry(policy, _pod(pushed.ref("tool-a/app:on-v1")))
    assert ok.allowed, ok.message()
    assert "built on" in ok.verdicts[0].allowed_by
    denied = _decide_with_registry(policy, _pod(pushed.ref("tool-a/app:other")))
    assert not denied.allowed
    assert "base-image-mismatch" in [f.rule for f in denied.violations]
    assert "nearest trusted base" in denied.message()


@pytest.mark.parametrize(("on_error", "allowed"), [("deny", False), ("allow", True)])
def test_registry_error_follows_policy(pushed: Pushed, tmp_path: Path, on_error: str, allowed: bool) -> None:
    policy = _policy(pushed, tmp_path, on_error)
    decision = _decide_with_registry(policy, _pod(pushed.ref("tool-a/app:does-not-exist")))
    assert decision.allowed is allowed
    text = decision.message() if not allowed else decision.verdicts[0].allowed_by
    assert f"registry.onError: {on_error}" in text
    assert "registry error" in text


def test_pinning_patches_tag_to_the_digest_skopeo_sees(pushed: Pushed, tmp_path: Path) -> None:
    policy = _policy(pushed, tmp_path, extra="pinning: {enabled: true}\n")
    image = pushed.ref("toolforge/bullseye:v1")
    decision = _decide_with_registry(policy, _pod(image), pins=True)
    (patch,) = decision.patches
    assert patch == {
        "op": "replace",
        "path": "/spec/containers/0/image",
        "value": f"{image}@{pushed.digests['toolforge/bullseye:v1']}",
    }
    already = _decide_with_registry(policy, _pod(f"{image}@{pushed.digests['toolforge/bullseye:v1']}"), pins=True)
    assert already.patches == () and already.pins_needed == ()
    digest_only = load_policy(
        f"{POLICY_HEADER}trusted: [{pushed.registry.host}/toolforge]\npinning: {{enabled: true, style: digest}}\n"
        f"registry: {{caFile: {pushed.registry.tls.ca_cert}, credentialsFile: {tmp_path / 'config.json'}, {UNHURRIED}}}\n"
    )
    (patch,) = _decide_with_registry(digest_only, _pod(image), pins=True).patches
    assert patch["value"] == f"{pushed.ref('toolforge/bullseye')}@{pushed.digests['toolforge/bullseye:v1']}"


def test_pinning_warning_says_what_the_registry_did(pushed: Pushed, tmp_path: Path) -> None:
    """404 for the tag, a registry that does not answer, and any other error read differently."""
    policy = _policy(pushed, tmp_path, extra="pinning: {enabled: true}\n")

    def notes(pinned: Policy, image: str) -> tuple[str, ...]:
        async def go() -> tuple[str, ...]:
            gate = RegistryGate()
            try:
                first = decide(pinned, _pod(image), namespace="tool-a", now=dt.datetime.now(dt.UTC))
                assert first.pins_needed, first
                return (await answer(gate, pinned, first, webhook=Webhook.MUTATE)).notes
            finally:
                await gate.aclose()

        return asyncio.run(go())

    (missing,) = notes(policy, pushed.ref("toolforge/bullseye:no-such-tag"))
    assert "(the registry has no such tag or repository (HTTP 404)" in missing and "unavailable" not in missing
    assert missing.endswith("; it runs by tag")
    from tests.loopback import free_port  # noqa: PLC0415

    down_host = f"127.0.0.1:{free_port()}"
    down = load_policy(
        f"{POLICY_HEADER}trusted: [{down_host}]\npinning: {{enabled: true}}\nregistry: {{{UNHURRIED}}}\n"
    )
    (unavailable,) = notes(down, f"{down_host}/toolforge/app:1")
    # the kind only: what the connection attempt said goes to the log, never to the tenant
    assert unavailable == (
        f"imagegate: could not pin {down_host}/toolforge/app:1 to a digest (registry unavailable: unreachable); "
        "it runs by tag"
    )
    (tmp_path / "wrong.json").write_text(
        json.dumps({"auths": {pushed.registry.host: {"username": "tool-builder", "password": "wrong"}}})
    )
    refused = load_policy(
        f"{POLICY_HEADER}trusted: [{pushed.registry.host}/toolforge]\npinning: {{enabled: true}}\n"
        f"registry: {{caFile: {pushed.registry.tls.ca_cert}, credentialsFile: {tmp_path / 'wrong.json'}, {UNHURRIED}}}\n"
    )
    (other,) = notes(refused, pushed.ref("toolforge/bullseye:v1"))
    assert "(registry error (authentication failed)); it runs by tag" in other


def test_webhook_uses_the_registry(pushed: Pushed, tmp_path: Path) -> None:
    """The server end to end: base-image verification on /validate, pinning on /mutate."""
    import base64  # noqa: PLC0415

    from tests.webhook_process import run_webhook  # noqa: PLC0415

    config = pushed.registry.docker_config(tmp_path / "config.json")
    (tmp_path / "policy.yaml").write_text(
        f"""
apiVersion: imagegate.toolforge.org/v1
kind: ImagePolicy
trusted: [{pushed.registry.host}/toolforge]
byoc:
  grants:
    - {{namespace: tool-a, registries: ["{pushed.registry.host}/tool-a"], requireBaseImage: true}}
registry: {{caFile: {pushed.registry.tls.ca_cert}, credentialsFile: {config}, {UNHURRIED}}}
baseImages: {{trusted: ["{pushed.ref("toolforge/bullseye:v1")}"]}}
pinning: {{enabled: true}}
"""
    )

    def review(image: str) -> dict[str, Any]:
        return admission_review(_pod(image), "tool-a")

    with run_webhook(tmp_path, policy=tmp_path / "policy.yaml") as webhook:
        http = webhook.client()
        good = http.post("/validate", json=review(pushed.ref("tool-a/app:on-v1"))).json()["response"]
        assert good["allowed"] is True, good
        bad = http.post("/validate", json=review(pushed.ref("tool-a/app:other"))).json()["response"]
        assert bad["allowed"] is False and "nearest trusted base" in bad["status"]["message"]
        mutated = http.post("/mutate", json=review(pushed.ref("tool-a/app:on-v1"))).json()["response"]
        (patch,) = json.loads(base64.b64decode(mutated["patch"]))
        assert patch["value"] == f"{pushed.ref('tool-a/app:on-v1')}@{pushed.digests['tool-a/app:on-v1']}"
        ready = http.get("/readyz").json()
        assert ready["baseImageVersions"] == 1 and ready["baseImagesError"] is None


def test_cli_inspect_and_check_with_registry(pushed: Pushed, tmp_path: Path) -> None:

    policy = _policy(pushed, tmp_path)
    assert policy.base_images.trusted
    (tmp_path / "policy.yaml").write_text(
        f"""
apiVersion: imagegate.toolforge.org/v1
kind: ImagePolicy
trusted: [{pushed.registry.host}/toolforge]
byoc:
  grants:
    - {{namespace: tool-a, registries: ["{pushed.registry.host}/tool-a"], requireBaseImage: true}}
registry: {{caFile: {pushed.registry.tls.ca_cert}, credentialsFile: {tmp_path / "config.json"}, {UNHURRIED}}}
baseImages: {{trusted: ["{pushed.ref("toolforge/bullseye:v1")}"]}}
"""
    )

    inspected = run_imagegate(
        "inspect", pushed.ref("tool-a/app:on-v1"), "-p", str(tmp_path / "policy.yaml"), "-o", "json"
    )
    assert inspected.returncode == 0, inspected.stderr
    data = json.loads(inspected.stdout)
    assert data["digest"] == pushed.digests["tool-a/app:on-v1"]
    assert len(data["platforms"][0]["layers"]) == 5 and data["base"]["ok"] is True
    pods = json.dumps(
        {
            "kind": "List",
            "items": [
                {**_pod(pushed.ref("tool-a/app:on-v1")), "metadata": {"name": "good", "namespace": "tool-a"}},
                {**_pod(pushed.ref("tool-a/app:other")), "metadata": {"name": "bad", "namespace": "tool-a"}},
            ],
        }
    )
    offline = run_imagegate("check", "-", "-p", str(tmp_path / "policy.yaml"), "-o", "json", stdin=pods)
    assert [o["violations"][0]["rule"] for o in json.loads(offline.stdout)["objects"]] == ["base-image-unverified"] * 2
    online = run_imagegate("check", "-", "-p", str(tmp_path / "policy.yaml"), "-o", "json", "--registry", stdin=pods)
    assert online.returncode == 1
    objects = json.loads(online.stdout)["objects"]
    assert objects[0]["allowed"] is True
    assert objects[1]["violations"][0]["rule"] == "base-image-mismatch"
    missing = run_imagegate("inspect", pushed.ref("tool-a/app:nope"), "-p", str(tmp_path / "policy.yaml"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def _inspect_policy(tmp_path: Path, registry: str) -> Path:
    path = tmp_path / "inspect-policy.yaml"
    path.write_text(
        f"apiVersion: imagegate.toolforge.org/v1\nkind: ImagePolicy\ntrusted: []\nregistry: {{{registry}, {UNHURRIED}}}\n"
    )
    return path


def test_cli_inspect_says_what_really_happened(pushed: Pushed, tmp_path: Path) -> None:
    """Issue 14 item 8: each failure of ``inspect`` named for what it is, exit 2, one line."""
    ca = pushed.registry.tls.ca_cert
    config = pushed.registry.docker_config(tmp_path / "config.json")
    with_credentials = _inspect_policy(tmp_path, f"caFile: {ca}, credentialsFile: {config}")
    image = pushed.ref("tool-a/app:multi")

    def inspect(*args: str) -> Any:
        result = run_imagegate("inspect", *args)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        (line,) = [line for line in result.stderr.splitlines() if line.startswith(("error:", "Error:"))]
        return line

    assert "'banana' is not os/architecture[/variant]" in inspect(
        image, "-p", str(with_credentials), "--platform", "banana"
    )
    assert "unknown architecture 'banana'" in inspect(image, "-p", str(with_credentials), "--platform", "linux/banana")
    assert "unknown operating system 'plan10'" in inspect(
        image, "-p", str(with_credentials), "--platform", "plan10/amd64"
    )
    missing_digest = "sha256:" + "0" * 64
    line = inspect(f"{pushed.registry.host}/tool-a/app@{missing_digest}", "-p", str(with_credentials))
    assert f"tool-a/app@{missing_digest} does not exist" in line
    anonymous = inspect(image, "-p", str(_inspect_policy(tmp_path, f"caFile: {ca}")))
    assert "requires authentication" in anonymous and "no credentials" in anonymous and "refused" not in anonymous
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"auths": {pushed.registry.host: {"username": "tool-builder", "password": "nope"}}}))
    refused = inspect(image, "-p", str(_inspect_policy(tmp_path, f"caFile: {ca}, credentialsFile: {wrong}")))
    assert "refused the credentials of 'tool-builder'" in refused
    stranger = make_certificates(tmp_path / "stranger", ["localhost"])  # a CA that did not sign the registry's
    tls = inspect(image, "-p", str(with_credentials), "--ca-file", str(stranger.ca_cert))
    assert "TLS certificate verification failed" in tls and str(stranger.ca_cert) in tls and "unreachable" not in tls
    no_ca = inspect(image, "-p", str(with_credentials), "--ca-file", str(tmp_path / "no-such-ca.crt"))
    assert "no-such-ca.crt" in no_ca


def test_cli_inspect_platforms_compared_as_containerd_does(pushed: Pushed, tmp_path: Path) -> None:
    config = pushed.registry.docker_config(tmp_path / "config.json")
    policy = _inspect_policy(tmp_path, f"caFile: {pushed.registry.tls.ca_cert}, credentialsFile: {config}")
    result = run_imagegate(
        "inspect", pushed.ref("tool-a/app:multi"), "-p", str(policy), "--platform", "Linux/aarch64", "-o", "json"
    )
    assert result.returncode == 0, result.stderr
    assert [p["platform"] for p in json.loads(result.stdout)["platforms"]] == ["linux/arm64"]


def test_base_refresh_retries_after_a_registry_outage(pushed: Pushed, tmp_path: Path) -> None:
    """A base that could not be resolved (registry down) is tried again, not forgotten for an hour."""
    import signal  # noqa: PLC0415

    policy = _policy(pushed, tmp_path)
    moved = [0.0]  # seconds the registry client's cache clock is moved ahead
    gate = RegistryGate(timer=lambda: time.monotonic() + moved[0])
    # The stopped registry's outage ends the refresh because the test moves the loop's clock past
    # every deadline, again and again until it has ended: not because a loaded machine took long.
    loop = SteppedLoop()
    refreshed = threading.Event()

    def past_every_deadline() -> None:
        while not refreshed.wait(0.05):
            loop.step(UNHURRIED_CLIENT["lookup_timeout"])

    async def scenario() -> tuple[Any, Any]:
        pushed.registry.process.send_signal(signal.SIGSTOP)
        stepping = threading.Thread(target=past_every_deadline)
        stepping.start()
        try:
            await gate.refresh_bases(policy)
            assert gate.bases.last_error is not None and not gate.bases.versions
        finally:
            refreshed.set()
            stepping.join()
            pushed.registry.process.send_signal(signal.SIGCONT)
        moved[0] += 6  # past the client's negative cache (5 s)
        ends = asyncio.get_running_loop().time() + policy.registry.lookup_timeout
        asking = Asking(gate, policy, Decision("Pod", "p", "tool-a", governed=True), ends)
        verdict = await BaseAnswerer().answer(asking, BaseQuestion(parse_docker_ref(pushed.ref("tool-a/app:on-v1"))))
        await gate.aclose()
        return verdict, gate.bases.last_error

    with asyncio.Runner(loop_factory=lambda: loop) as runner:
        verdict, error = runner.run(scenario())
    assert verdict.ok, verdict.detail
    assert error is None


# --- answers without a length ----------------------------------------------------------------

_ENDLESS_CAP = 64 * 1024 * 1024  # the server gives up here, so that a client that reads all of it ends


def _endless(sent: list[int], *, chunked: bool, status: int = 200) -> Any:
    """A registry that answers with a body that never ends, with no Content-Length (or chunked)."""

    def behaviour(handler: BaseHTTPRequestHandler) -> None:
        handler.protocol_version = "HTTP/1.1" if chunked else "HTTP/1.0"
        handler.send_response(status)
        handler.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        if chunked:
            handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        # A small send buffer: what the server got out is then what the client read, plus its
        # own receive buffer, however long a loaded machine takes to close the connection.
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        piece = b" " * 65536
        frame = b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece
        sent.append(0)
        try:
            while sent[-1] < _ENDLESS_CAP:
                handler.wfile.write(frame)
                sent[-1] += len(piece)
        except OSError:  # the client hung up: what a bounded reader does
            pass

    return behaviour


@pytest.mark.parametrize("chunked", [False, True], ids=["until-close", "chunked"])
@pytest.mark.parametrize("status", [200, 404], ids=["ok", "error"])
def test_an_endless_answer_is_read_only_to_the_limit(tmp_path: Path, chunked: bool, status: int) -> None:
    """No Content-Length to refuse up front: the body is counted as it streams, and refused at the limit."""
    tls = make_certificates(tmp_path / "tls", ["127.0.0.1"])
    hits: list[str] = []
    sent: list[int] = []
    with https_server(fault_handler(_endless(sent, chunked=chunked, status=status), hits), tls) as host:
        c = RegistryClient(RegistrySettings(ca_file=tls.ca_cert, **UNHURRIED_CLIENT))
        with pytest.raises(RegistryError) as caught:
            resolve(c, f"{host}/tool/app:1")
    assert caught.value.kind == "too-large", str(caught.value)
    assert "larger than" in str(caught.value)
    # The client stopped reading near the limit (4 MiB for a manifest, 64 KiB for an error
    # answer), plus what the socket buffers held: far from what the server would have sent.
    assert sent and max(sent) < 16 * 1024 * 1024, sent
