"""A Sigstore instance of the tests' own, made with ``cryptography``: keyless signatures offline.

What the public-good instance is to cosign, :class:`SigstoreInstance` is to the tests:

* a Fulcio-like CA (a root that issues short-lived leaf certificates naming an OIDC issuer,
  extensions 1.3.6.1.4.1.57264.1.1 and .1.8, and a subject, the SAN);
* a certificate-transparency log, whose SCT is embedded in each leaf (sigstore-python requires one);
* a Rekor log that signs each entry's inclusion promise, the "SET";
* the ``trusted_root.json`` naming the three, for the policy's ``signatures.trustedRoot``.

:meth:`SigstoreInstance.sign_keyless` makes what ``cosign sign`` attaches to a simple-signing
payload layer in the tag scheme: the signature, certificate, chain and bundle annotations.
Every part can be spoiled on purpose (another log key, an expired certificate, ...).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
CHAIN_ANNOTATION = "dev.sigstore.cosign/chain"
BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"

OIDC_ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")  # the issuer, raw bytes
OIDC_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")  # the issuer, a DER UTF8String
SCT_LIST = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
BUNDLE_V01 = "application/vnd.dev.sigstore.bundle+json;version=0.1"
BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _spki(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _log_id(key: ec.EllipticCurvePrivateKey) -> bytes:
    """RFC 6962's log id: the SHA-256 of the log's public key (Rekor's and CT logs' alike)."""
    return hashlib.sha256(_spki(key)).digest()


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(encoded)]) + encoded


def _der(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(content)) + content


def pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def canonical_json(document: dict[str, Any]) -> bytes:
    """RFC 8785 for what Rekor signs (strings and integers only: sorted keys, no spaces)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class KeylessSignature:
    """What cosign puts on a tag-scheme layer for a keyless signature, and the parts it is made of."""

    signature: bytes
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    bundle: dict[str, Any] | None  # cosign's "SET" bundle annotation; None: no log entry

    def annotations(self) -> dict[str, str]:
        found = {
            SIGNATURE_ANNOTATION: _b64(self.signature),
            CERTIFICATE_ANNOTATION: pem(self.certificate),
            CHAIN_ANNOTATION: "".join(pem(c) for c in self.chain),
        }
        if self.bundle is not None:
            found[BUNDLE_ANNOTATION] = json.dumps(self.bundle)
        return found


@dataclass
class SigstoreInstance:
    """A Fulcio-like CA, a CT log and a Rekor log, each a P-256 key (the CA's root is P-384, as Fulcio's)."""

    root_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    ct_key: ec.EllipticCurvePrivateKey
    rekor_key: ec.EllipticCurvePrivateKey
    started: dt.datetime
    log_index: int = field(default=0)

    @classmethod
    def create(cls, started: dt.datetime | None = None) -> SigstoreInstance:
        started = started or dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
        root_key = ec.generate_private_key(ec.SECP384R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "imagegate tests"),
                x509.NameAttribute(NameOID.COMMON_NAME, "fulcio-test"),
            ]
        )
        root = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(root_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(started)
            .not_valid_after(started + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA384())
        )
        return cls(
            root_key, root, ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1()), started
        )

    # --- the trusted root ----------------------------------------------------------------------

    def trusted_root(self) -> dict[str, Any]:
        """The ``trusted_root.json`` document (Sigstore's TrustedRoot v0.1) naming this instance."""
        start = self.started.strftime("%Y-%m-%dT%H:%M:%SZ")

        def log(url: str, key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
            return {
                "baseUrl": url,
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": _b64(_spki(key)),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": {"start": start},
                },
                "logId": {"keyId": _b64(_log_id(key))},
            }

        return {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [log("https://rekor.imagegate.invalid", self.rekor_key)],
            "certificateAuthorities": [
                {
                    "subject": {"organization": "imagegate tests", "commonName": "fulcio-test"},
                    "uri": "https://fulcio.imagegate.invalid",
                    "certChain": {
                        "certificates": [{"rawBytes": _b64(self.root.public_bytes(serialization.Encoding.DER))}]
                    },
                    "validFor": {"start": start},
                }
            ],
            "ctlogs": [log("https://ctfe.imagegate.invalid", self.ct_key)],
            "timestampAuthorities": [],
        }

    def write_trusted_root(self, path: Path) -> Path:
        path.write_text(json.dumps(self.trusted_root(), indent=2))
        return path

    # --- Fulcio: a leaf certificate with an embedded SCT -----------------------------------------

    def certificate(
        self,
        key: ec.EllipticCurvePrivateKey,
        *,
        subject: str,
        issuer: str,
        not_before: dt.datetime,
        lifetime: dt.timedelta = dt.timedelta(minutes=10),
    ) -> x509.Certificate:
        """A Fulcio-like leaf for ``key``: code signing, the subject as SAN (an e-mail or a URI), the
        issuer in both extensions, and a precertificate SCT signed by the CT log."""
        san: x509.GeneralName = (
            x509.RFC822Name(subject)
            if "@" in subject and "/" not in subject
            else x509.UniformResourceIdentifier(subject)
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.root.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_before + lifetime)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.root_key.public_key()), critical=False
            )
            .add_extension(x509.SubjectAlternativeName([san]), critical=True)
            .add_extension(x509.UnrecognizedExtension(OIDC_ISSUER_V1, issuer.encode()), critical=False)
            .add_extension(x509.UnrecognizedExtension(OIDC_ISSUER_V2, _der(0x0C, issuer.encode())), critical=False)
        )
        precertificate = builder.sign(self.root_key, hashes.SHA384())
        sct = self._sct(precertificate.tbs_certificate_bytes, not_before)
        leaf = builder.add_extension(x509.UnrecognizedExtension(SCT_LIST, sct), critical=False).sign(
            self.root_key, hashes.SHA384()
        )
        assert leaf.tbs_precertificate_bytes == precertificate.tbs_certificate_bytes
        return leaf

    def _sct(self, tbs_precertificate: bytes, when: dt.datetime) -> bytes:
        """The SCT list extension's value (RFC 6962 section 3.3): one v1 precertificate SCT, TLS-encoded."""
        timestamp = int(when.timestamp() * 1000)
        issuer_key_hash = hashlib.sha256(_spki(self.root_key)).digest()
        signed = (
            struct.pack("!BBQH", 0, 0, timestamp, 1)  # v1, certificate_timestamp, time, precert_entry
            + issuer_key_hash
            + len(tbs_precertificate).to_bytes(3, "big")
            + tbs_precertificate
            + struct.pack("!H", 0)  # no extensions
        )
        signature = self.ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        sct = (
            struct.pack("!B32sQH", 0, _log_id(self.ct_key), timestamp, 0)
            + struct.pack("!BBH", 4, 3, len(signature))  # SHA-256, ECDSA
            + signature
        )
        listed = struct.pack("!H", len(sct)) + sct
        return _der(0x04, struct.pack("!H", len(listed)) + listed)

    # --- Rekor: a hashedrekord entry and its signed entry timestamp -----------------------------

    def log_entry(
        self,
        certificate: x509.Certificate,
        signature: bytes,
        signed_digest: bytes,
        *,
        integrated: dt.datetime,
        rekor_key: ec.EllipticCurvePrivateKey | None = None,
        log_index: int | None = None,
    ) -> dict[str, Any]:
        """cosign's bundle annotation for a hashedrekord entry of ``signature`` over what has the
        SHA-256 ``signed_digest``: ``{"SignedEntryTimestamp", "Payload": {body, integratedTime,
        logIndex, logID}}``; the entry is the log's next one unless ``log_index`` says."""
        body = {
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": signed_digest.hex()}},
                "signature": {"content": _b64(signature), "publicKey": {"content": _b64(pem(certificate).encode())}},
            },
        }
        if log_index is None:
            self.log_index += 1
            log_index = self.log_index
        promised = {
            "body": _b64(json.dumps(body).encode()),
            "integratedTime": int(integrated.timestamp()),
            "logIndex": log_index,
            "logID": _log_id(self.rekor_key).hex(),
        }
        signed_entry_timestamp = (rekor_key or self.rekor_key).sign(canonical_json(promised), ec.ECDSA(hashes.SHA256()))
        return {"SignedEntryTimestamp": _b64(signed_entry_timestamp), "Payload": promised}

    def inclusion_proof(
        self, body: bytes, checkpoint_key: ec.EllipticCurvePrivateKey | None = None, *, one_entry: bool = False
    ) -> dict[str, Any]:
        """The entry as the second leaf of a two-entry log (RFC 6962 hashes) or, ``one_entry``, as
        the only leaf of a new log (index 0, no hashes: the root is the leaf), and the log's signed
        checkpoint (a signed note, as Rekor writes it)."""
        earlier = hashlib.sha256(b"\x00" + b"an earlier entry").digest()
        leaf = hashlib.sha256(b"\x00" + body).digest()
        root = leaf if one_entry else hashlib.sha256(b"\x01" + earlier + leaf).digest()
        size = 1 if one_entry else 2
        origin = "rekor.imagegate.invalid"
        note = f"{origin} - 1\n{size}\n{_b64(root)}\n"
        signature = (checkpoint_key or self.rekor_key).sign(note.encode(), ec.ECDSA(hashes.SHA256()))
        signed = _b64(_log_id(self.rekor_key)[:4] + signature)
        return {
            "logIndex": str(size - 1),
            "rootHash": _b64(root),
            "treeSize": str(size),
            "hashes": [] if one_entry else [_b64(earlier)],
            "checkpoint": {"envelope": f"{note}\n\u2014 {origin} {signed}\n"},
        }

    def bundle(
        self,
        image_digest: str,
        *,
        subject: str,
        issuer: str,
        media_type: str = BUNDLE_V03,
        checkpoint_key: ec.EllipticCurvePrivateKey | None = None,
        one_entry: bool = False,
    ) -> dict[str, Any]:
        """A Sigstore bundle signing an image manifest: a message signature over its digest, the
        certificate, and a log entry with its inclusion promise, proof and checkpoint; ``one_entry``:
        the first entry of a new log (:meth:`inclusion_proof`)."""
        signed_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = self.certificate(key, subject=subject, issuer=issuer, not_before=signed_at)
        digest = bytes.fromhex(image_digest.removeprefix("sha256:"))
        signature = key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        logged = self.log_entry(
            certificate,
            signature,
            digest,
            integrated=signed_at + dt.timedelta(seconds=30),
            log_index=0 if one_entry else None,
        )
        promised = logged["Payload"]
        der = {"rawBytes": _b64(certificate.public_bytes(serialization.Encoding.DER))}
        material: dict[str, Any] = (
            {"x509CertificateChain": {"certificates": [der]}} if media_type == BUNDLE_V01 else {"certificate": der}
        )
        material["tlogEntries"] = [
            {
                "logIndex": str(promised["logIndex"]),
                "logId": {"keyId": _b64(bytes.fromhex(promised["logID"]))},
                "kindVersion": {"kind": "hashedrekord", "version": "0.0.1"},
                "integratedTime": str(promised["integratedTime"]),
                "inclusionPromise": {"signedEntryTimestamp": logged["SignedEntryTimestamp"]},
                "inclusionProof": self.inclusion_proof(
                    base64.b64decode(promised["body"]), checkpoint_key, one_entry=one_entry
                ),
                "canonicalizedBody": promised["body"],
            }
        ]
        return {
            "mediaType": media_type,
            "verificationMaterial": material,
            "messageSignature": {
                "messageDigest": {"algorithm": "SHA2_256", "digest": _b64(digest)},
                "signature": _b64(signature),
            },
        }

    def sign_keyless(
        self,
        payload: bytes,
        *,
        subject: str,
        issuer: str,
        signed_at: dt.datetime | None = None,
        integrated: dt.datetime | None = None,
        logged: bool = True,
        rekor_key: ec.EllipticCurvePrivateKey | None = None,
    ) -> KeylessSignature:
        """A keyless signature of ``payload``, as cosign makes it: an ephemeral key, a certificate for
        it valid ten minutes from ``signed_at``, a log entry integrated at ``integrated``."""
        signed_at = signed_at or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = self.certificate(key, subject=subject, issuer=issuer, not_before=signed_at)
        signature = key.sign(payload, ec.ECDSA(hashes.SHA256()))
        entry = None
        if logged:
            when = integrated or signed_at + dt.timedelta(seconds=30)
            entry = self.log_entry(
                certificate, signature, hashlib.sha256(payload).digest(), integrated=when, rekor_key=rekor_key
            )
        return KeylessSignature(signature, certificate, (self.root,), entry)


def protobuf_json(document: Any) -> Any:
    """``document`` as protobuf's JSON writers write it (protojson, ``MessageToJson``): fields with
    the zero value (``"0"``, ``""``, ``[]``) omitted."""
    if isinstance(document, dict):
        return {k: protobuf_json(v) for k, v in document.items() if v not in ("0", "", [], 0)}
    if isinstance(document, list):
        return [protobuf_json(item) for item in document]
    return document


def proto_names(document: Any) -> Any:
    """``document`` with its fields under their proto names (``log_index``), as protobuf's JSON
    writers can be asked to name them, and its 64-bit integers as JSON numbers: as protojson reads too."""
    if isinstance(document, dict):
        return {
            re.sub(r"(?<=[a-z0-9])([A-Z])", lambda m: "_" + m.group(1).lower(), k): proto_names(v)
            for k, v in document.items()
        }
    if isinstance(document, list):
        return [proto_names(item) for item in document]
    if isinstance(document, str) and document.isdigit() and len(document) < 16:
        return int(document)
    return document
