"""Signatures attached to images in a real registry (docker-registry 2.8: no referrers API)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imagegate.core.reference import parse_docker_ref
from imagegate.shell.registry import RegistryClient, RegistrySettings
from imagegate.shell.registry_auth import DockerConfigCredentials
from imagegate.shell.signing import attached, fallback_tag, tag_for
from tests.oci_images import OciLayout, layers, skopeo_inspect
from tests.registry_process import Registry, run_registry
from tests.signed_images import (
    SIMPLE_SIGNING,
    Signature,
    image_descriptor,
    new_key,
    push_referrer_fallback,
    push_signature_tag,
    sig_layers,
    sign,
    simple_signing_payload,
)

BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"


@dataclasses.dataclass
class Images:
    registry: Registry
    digests: dict[str, str]  # repository:tag -> digest
    sizes: dict[str, int]

    def ref(self, name: str) -> str:
        return f"{self.registry.host}/{name}"


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Images]:
    workdir = tmp_path_factory.mktemp("signing")
    with run_registry(workdir / "registry", "htpasswd") as reg:
        layout = OciLayout(workdir / "layout")
        digests: dict[str, str] = {}
        sizes: dict[str, int] = {}
        for name in ("signed", "unsigned", "bundled"):
            reg.push(layout, name, layers(name, 2), f"tool-a/app:{name}")
            raw = skopeo_inspect(
                f"{reg.host}/tool-a/app:{name}", cert_dir=reg.cert_dir, credentials=reg.credentials, raw=True
            )
            seen = reg.get_manifest("tool-a/app", name)
            assert seen == raw
            inspected = skopeo_inspect(
                f"{reg.host}/tool-a/app:{name}", cert_dir=reg.cert_dir, credentials=reg.credentials
            )
            digests[f"tool-a/app:{name}"] = inspected["Digest"]
        yield Images(reg, digests, sizes)


def client(images: Images, tmp_path: Path) -> RegistryClient:
    credentials = DockerConfigCredentials.from_docker_config(images.registry.docker_config(tmp_path / "config.json"))
    return RegistryClient(RegistrySettings(ca_file=images.registry.tls.ca_cert, credentials=credentials))


def run(c: RegistryClient, call: Any) -> Any:
    async def go() -> Any:
        async with c:
            return await call(c)

    return asyncio.run(go())


def test_tag_names() -> None:
    digest = "sha256:" + "ab" * 32
    assert tag_for(digest, "sig") == "sha256-" + "ab" * 32 + ".sig"
    assert fallback_tag(digest) == "sha256-" + "ab" * 32


def test_attached_in_both_layouts(images: Images, tmp_path: Path) -> None:
    """The tag scheme and the referrers fallback index are both read, single flight, on a registry without the API."""
    reg = images.registry
    digest = images.digests["tool-a/app:signed"]
    key = new_key()
    payload = simple_signing_payload(f"{reg.host}/tool-a/app", digest)
    push_signature_tag(reg, "tool-a/app", digest, [Signature(payload, sign(key, payload))])
    body = reg.get_manifest("tool-a/app", digest)
    assert body is not None
    subject = image_descriptor(digest, len(json.dumps(body)))
    bundle_layer = [{"mediaType": BUNDLE_V03, **reg.put_blob("tool-a/app", b'{"mediaType": "x"}')}]
    pushed = push_referrer_fallback(reg, "tool-a/app", subject, BUNDLE_V03, bundle_layer)
    # an artifact of another type, listed in the same index, is not read
    push_referrer_fallback(reg, "tool-a/app", subject, "application/vnd.example.sbom", bundle_layer)

    ref = parse_docker_ref(images.ref("tool-a/app:signed"))
    c = client(images, tmp_path)

    async def both(c: RegistryClient) -> Any:
        calls = [attached(c, ref, digest, tag_suffix="sig", artifact_types=[BUNDLE_V03]) for _ in range(5)]
        return await asyncio.gather(*calls)

    results = run(c, both)
    assert all(r == results[0] for r in results)
    found = results[0]
    assert [a.found_by for a in found] == [f"tag {tag_for(digest, 'sig')}", f"referrers tag {fallback_tag(digest)}"]
    assert found[0].manifest.layers[0].media_type == SIMPLE_SIGNING
    assert found[1].digest == pushed and found[1].artifact_type == BUNDLE_V03
    assert c.fetches["referrers"] == 1  # five callers, one fetch: the registry has no API (404), so the tag

    unsigned = images.digests["tool-a/app:unsigned"]
    nothing = run(
        client(images, tmp_path),
        lambda c: attached(c, ref, unsigned, tag_suffix="sig", artifact_types=[BUNDLE_V03]),
    )
    assert nothing == ()


def test_fallback_entry_for_another_subject_is_ignored(images: Images, tmp_path: Path) -> None:
    """Whoever can push can write the fallback index: an artifact whose subject is another image is not this one's."""
    reg = images.registry
    digest = images.digests["tool-a/app:bundled"]
    other = images.digests["tool-a/app:unsigned"]
    layer = sig_layers(reg, "tool-a/app", [Signature(b"{}", b"x")])
    artifact = push_referrer_fallback(reg, "tool-a/app", image_descriptor(other, 10), BUNDLE_V03, layer)
    index = reg.get_manifest("tool-a/app", fallback_tag(other))
    reg.put_manifest("tool-a/app", fallback_tag(digest), json.dumps(index).encode(), index["mediaType"])
    ref = parse_docker_ref(images.ref("tool-a/app:bundled"))
    found = run(
        client(images, tmp_path), lambda c: attached(c, ref, digest, tag_suffix=None, artifact_types=[BUNDLE_V03])
    )
    assert found == ()
    again = run(
        client(images, tmp_path), lambda c: attached(c, ref, other, tag_suffix=None, artifact_types=[BUNDLE_V03])
    )
    assert [a.digest for a in again] == [artifact]
