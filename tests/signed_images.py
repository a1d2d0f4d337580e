"""Signatures the tests make themselves (``cryptography``) and attach to images in a real registry.

Two layouts, as cosign and the OCI 1.1 specification write them:

* :func:`push_signature_tag`: cosign's ``sha256-<hex>.sig`` manifest, one simple-signing
  payload layer per signature, the signature in the layer's annotation;
* :func:`push_referrer_fallback`: an artifact manifest whose ``subject`` is the image, listed
  in the ``sha256-<hex>`` index (the referrers tag schema a registry without the API needs).

Attestations: in-toto statements with SLSA v0.2 (:func:`slsa_v02_statement`) and v1
(:func:`slsa_v1_statement`) provenance as Tekton Chains writes them, in DSSE envelopes
(:func:`dsse_envelope`), pushed as cosign's ``sha256-<hex>.att`` (:func:`push_attestation_tag`)
or as DSSE referrers (:func:`dsse_layers` with :func:`push_referrer_fallback`).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from tests.registry_process import Registry

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
IN_TOTO = "application/vnd.in-toto+json"
TEKTON_CHAINS = "https://tekton.dev/chains/v2"
SOURCE = "git+https://gitlab.wikimedia.org/toolforge-repos/wikibugs2.git"

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def new_key(kind: str = "p256") -> PrivateKey:
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind in ("rsa", "rsa-pss"):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(kind)


def public_pem(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def write_public_key(key: PrivateKey, path: Path) -> Path:
    path.write_bytes(public_pem(key))
    return path


def sign(key: PrivateKey, payload: bytes, *, pss: bool = False) -> bytes:
    """What cosign signs with each kind of key: ECDSA with the curve's hash, RSA PKCS#1 v1.5 (or PSS), Ed25519."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        digest: hashes.HashAlgorithm = hashes.SHA384() if key.curve.name == "secp384r1" else hashes.SHA256()
        return key.sign(payload, ec.ECDSA(digest))
    if isinstance(key, rsa.RSAPrivateKey):
        if pss:
            return key.sign(payload, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
        return key.sign(payload, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(payload)


def simple_signing_payload(repository: str, digest: str, **extra: Any) -> bytes:
    """The payload cosign signs for an image (``critical`` as cosign writes it)."""
    critical = {
        "identity": {"docker-reference": repository},
        "image": {"docker-manifest-digest": digest},
        "type": extra.pop("type", "cosign container image signature"),
    }
    return json.dumps({"critical": critical, "optional": extra or None}).encode()


@dataclass(frozen=True)
class Signature:
    payload: bytes
    signature: bytes
    annotations: dict[str, str] | None = None  # in place of the signature annotation


def sig_layers(registry: Registry, repository: str, signatures: list[Signature]) -> list[dict[str, Any]]:
    layers = []
    for item in signatures:
        descriptor = registry.put_blob(repository, item.payload)
        annotations = item.annotations
        if annotations is None:
            annotations = {SIGNATURE_ANNOTATION: base64.b64encode(item.signature).decode()}
        layers.append({"mediaType": SIMPLE_SIGNING, **descriptor, "annotations": annotations})
    return layers


def _config(registry: Registry, repository: str, body: bytes, media_type: str) -> dict[str, Any]:
    return {"mediaType": media_type, **registry.put_blob(repository, body)}


def push_signature_tag(registry: Registry, repository: str, digest: str, signatures: list[Signature]) -> str:
    """cosign's tag layout: ``sha256-<hex>.sig``, one layer per signature. Returns the tag."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _config(registry, repository, b'{"architecture":"","os":"","rootfs":{"type":"layers"}}', OCI_CONFIG),
        "layers": sig_layers(registry, repository, signatures),
    }
    tag = digest.replace(":", "-") + ".sig"
    registry.put_manifest(repository, tag, json.dumps(manifest).encode(), OCI_MANIFEST)
    return tag


def image_descriptor(digest: str, size: int, media_type: str = OCI_MANIFEST) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest, "size": size}


def push_referrer_fallback(
    registry: Registry,
    repository: str,
    subject: dict[str, Any],
    artifact_type: str,
    layers: list[dict[str, Any]],
    *,
    annotations: dict[str, str] | None = None,
) -> str:
    """An artifact referring to ``subject``, listed in the ``sha256-<hex>`` fallback index. Returns its digest."""
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": _config(registry, repository, b"{}", OCI_EMPTY),
        "layers": layers,
        "subject": subject,
    }
    if annotations:
        manifest["annotations"] = annotations
    body = json.dumps(manifest).encode()
    artifact_digest = "sha256:" + hashlib.sha256(body).hexdigest()
    registry.put_manifest(repository, artifact_digest, body, OCI_MANIFEST)
    tag = subject["digest"].replace(":", "-")
    existing = registry.get_manifest(repository, tag)
    entries = existing["manifests"] if existing else []
    entries.append(
        {"mediaType": OCI_MANIFEST, "digest": artifact_digest, "size": len(body), "artifactType": artifact_type}
    )
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    registry.put_manifest(repository, tag, json.dumps(index).encode(), OCI_INDEX)
    return artifact_digest


# --- attestations ------------------------------------------------------------------------------


def slsa_v02_statement(digest: str, source: str = SOURCE, builder: str = TEKTON_CHAINS) -> dict[str, Any]:
    """SLSA v0.2 as Tekton Chains (format slsa/v1) writes it for a TaskRun."""
    return {
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://slsa.dev/provenance/v0.2",
        "subject": [{"name": "tools-harbor.wmcloud.org/tool-wikibugs/wikibugs", "digest": {"sha256": digest[7:]}}],
        "predicate": {
            "builder": {"id": builder},
            "buildType": "tekton.dev/v1beta1/TaskRun",
            "invocation": {
                "configSource": {},
                "parameters": {"APP_IMAGE": "tools-harbor.wmcloud.org/tool-wikibugs/wikibugs:latest"},
            },
            "buildConfig": {"steps": [{"entryPoint": "/cnb/lifecycle/creator", "arguments": None}]},
            "metadata": {"buildStartedOn": "2024-05-01T10:00:00Z", "completeness": {"parameters": False}},
            "materials": [
                {
                    "uri": "oci://docker-registry.tools.wmflabs.org/toolforge-bookworm0-builder",
                    "digest": {"sha256": "1" * 64},
                },
                {"uri": f"{source}@refs/heads/main", "digest": {"sha1": "2" * 40}},
            ],
        },
    }


def slsa_v1_statement(digest: str, source: str = SOURCE, builder: str = TEKTON_CHAINS) -> dict[str, Any]:
    """SLSA v1 as Tekton Chains (format slsa/v2alpha3) writes it for a PipelineRun."""
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "predicateType": "https://slsa.dev/provenance/v1",
        "subject": [{"name": "tools-harbor.wmcloud.org/tool-x/x", "digest": {"sha256": digest[7:]}}],
        "predicate": {
            "buildDefinition": {
                "buildType": "https://tekton.dev/chains/v2/slsa",
                "externalParameters": {"runSpec": {"pipelineRef": {"name": "buildpacks"}}},
                "internalParameters": {"tekton-pipelines-feature-flags": {"EnableAPIFields": "beta"}},
                "resolvedDependencies": [
                    {"uri": "oci://gcr.io/tekton-releases/git-clone", "digest": {"sha256": "3" * 64}, "name": "task"},
                    {"uri": source, "digest": {"sha1": "4" * 40}, "name": "inputs/result"},
                ],
            },
            "runDetails": {
                "builder": {"id": builder},
                "metadata": {"invocationID": "https://tekton.dev/pipelineruns/abc"},
            },
        },
    }


def pae(payload_type: str, payload: bytes) -> bytes:
    """The DSSE v1 pre-authentication encoding, written out here as the specification states it."""
    return b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type.encode(), len(payload), payload)


def dsse_envelope(
    keys: list[PrivateKey], statement: dict[str, Any] | bytes, payload_type: str = IN_TOTO
) -> dict[str, Any]:
    """A DSSE envelope over ``statement``, one signature per key (over the PAE, as cosign signs)."""
    payload = statement if isinstance(statement, bytes) else json.dumps(statement).encode()
    return {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [
            {"keyid": "", "sig": base64.b64encode(sign(key, pae(payload_type, payload))).decode()} for key in keys
        ],
    }


def dsse_layers(registry: Registry, repository: str, envelopes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The layers of a ``.att`` manifest: one envelope each, its predicate type annotated as cosign does."""
    layers = []
    for envelope in envelopes:
        statement = json.loads(base64.b64decode(envelope["payload"]))
        kind = statement.get("predicateType", "") if isinstance(statement, dict) else ""
        descriptor = registry.put_blob(repository, json.dumps(envelope).encode())
        layers.append({"mediaType": DSSE_ENVELOPE, **descriptor, "annotations": {"predicateType": kind}})
    return layers


def push_attestation_tag(registry: Registry, repository: str, digest: str, envelopes: list[dict[str, Any]]) -> str:
    """cosign's attestation layout: ``sha256-<hex>.att``, one DSSE envelope layer per attestation. Returns the tag."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _config(registry, repository, b'{"architecture":"","os":"","rootfs":{"type":"layers"}}', OCI_CONFIG),
        "layers": dsse_layers(registry, repository, envelopes),
    }
    tag = digest.replace(":", "-") + ".att"
    registry.put_manifest(repository, tag, json.dumps(manifest).encode(), OCI_MANIFEST)
    return tag
