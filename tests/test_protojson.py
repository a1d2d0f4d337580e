"""Sigstore bundles read as protobuf's JSON parser (protojson) reads them (core/protojson.py).

Each spelling protojson accepts must read as the canonical one (what sigstore-python's models
read); each it refuses must be refused, naming the field. The rules are protobuf-go's
``encoding/protojson`` ``Unmarshal`` with default options (its decode.go: field names by JSON or
proto name, duplicate fields, ``oneof`` set twice, ``null`` as unset, ``unmarshalInt``,
``unmarshalBytes``, ``unmarshalEnum``). End to end, a one-entry log's bundle written that way
verifies through a registry (tests/test_keyless_signing.py).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagegate.core.protojson import BundleError, read_bundle

CONFORMANCE = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "sigstore" / "bundle-verify"


def entry(**fields: Any) -> bytes:
    return json.dumps({"verificationMaterial": {"tlogEntries": [fields]}}).encode()


def read_entry(**fields: Any) -> dict[str, Any]:
    entry_read: dict[str, Any] = read_bundle(entry(**fields))["verificationMaterial"]["tlogEntries"][0]
    return entry_read


CANONICAL_ENTRY = {"logIndex": "0", "integratedTime": "0", "canonicalizedBody": ""}


def test_absent_fields_are_zero() -> None:
    """A one-entry log: no logIndex, no hashes (protobuf JSON writers omit zero and empty fields)."""
    read = read_entry(inclusionProof={"rootHash": "AAAA", "treeSize": "1", "checkpoint": {"envelope": "x"}})
    assert read == {
        **CANONICAL_ENTRY,
        "inclusionProof": {
            "logIndex": "0",
            "rootHash": "AAAA",
            "treeSize": "1",
            "hashes": [],
            "checkpoint": {"envelope": "x"},
        },
    }
    assert read_bundle(b"{}") == {"mediaType": ""}  # an unset message stays unset; sigstore-python says it is missing


@pytest.mark.parametrize(
    "spelling",
    [
        {"logIndex": "7"},
        {"log_index": "7"},  # the proto name
        {"logIndex": 7},  # int64 as a number
        {"logIndex": 7.0},
        {"logIndex": "7.000"},
        {"logIndex": 0.7e1},
        {"logIndex": "70e-1"},
        {"logIndex": "7", "integratedTime": None},  # null: unset
    ],
)
def test_int64_spellings(spelling: dict[str, Any]) -> None:
    assert read_entry(**spelling) == {**CANONICAL_ENTRY, "logIndex": "7"}


@pytest.mark.parametrize(
    ("spelling", "base64"),
    [
        ("+/+/", "+/+/"),
        ("-_-_", "+/+/"),  # URL-safe
        ("AQ", "AQ=="),  # unpadded: length not a multiple of four
        ("AQ==", "AQ=="),
        ("AQID\nBA==", ""),
    ],
)
def test_bytes_spellings(spelling: str, base64: str) -> None:
    if spelling == "AQID\nBA==":  # nine characters: protojson reads it unpadded, so the = is refused
        with pytest.raises(BundleError, match="canonicalizedBody is not base64"):
            read_entry(canonicalizedBody=spelling)
        return
    assert read_entry(canonicalizedBody=spelling)["canonicalizedBody"] == base64


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (b'{"mediaType": "a", "media_type": "b"}', "media_type: the field is given twice (also as 'mediaType')"),
        (b'{"mediaType": "a", "mediaType": "b"}', "mediaType: the field is given twice"),
        (b'{"mediaType": "a", "extra": 1}', "extra: Bundle has no such field"),
        (b'{"messageSignature": {}, "dsseEnvelope": {}}', "'messageSignature' is already set (one of Bundle.content)"),
        (entry(logIndex="1.5"), 'logIndex is not an integer of 64 bits: "1.5"'),
        (entry(logIndex=" 1"), 'logIndex is not an integer: " 1"'),
        (entry(logIndex="0x10"), "is not an integer"),
        (entry(logIndex=2**63), "is not an integer of 64 bits"),
        (entry(logIndex=True), "is not an integer: true"),
        (entry(logId={"keyId": "a b"}), "logId.keyId is not base64 (' ' at character 2)"),
        (entry(kindVersion={"kind": 1}), "kindVersion.kind is not a string: 1"),
        (entry(inclusionProof={"hashes": "AAAA"}), "inclusionProof.hashes is not a list"),
        (entry(inclusionProof={"hashes": [None]}), "inclusionProof.hashes[0] is not a string: null"),
        (b'{"messageSignature": {"messageDigest": {"algorithm": "MD5"}}}', "algorithm is not a HashAlgorithm"),
        (b'{"verificationMaterial": []}', "verificationMaterial is not an object"),
        (b"[]", "the bundle is not a JSON object"),
        (b'{"mediaType": NaN}', "the bundle is not JSON"),
        (b'{"mediaType": "\\ud800"}', "unpaired surrogate"),
        (b"\xff", "the bundle is not UTF-8"),
        (b"[" * 100_000, "nested too deeply"),
    ],
)
def test_what_protojson_refuses_is_refused_naming_the_field(document: bytes, reason: str) -> None:
    with pytest.raises(BundleError) as raised:
        read_bundle(document)
    assert reason in str(raised.value)


def test_enums_by_name_or_number() -> None:
    for spelling in ("SHA2_256", 1):
        read = read_bundle(json.dumps({"messageSignature": {"messageDigest": {"algorithm": spelling}}}).encode())
        assert read["messageSignature"]["messageDigest"] == {"algorithm": "SHA2_256", "digest": ""}


# scalars sigstore-python's models leave unset (None) where protobuf has only the zero value,
# which sigstore-python reads as unset too (``if entry.integrated_time``)
ZEROS = {"integrated_time": "0", "keyid": "", "hint": ""}


def unset_as_zero(dumped: Any) -> Any:
    if isinstance(dumped, dict):
        return {k: ZEROS[k] if v is None and k in ZEROS else unset_as_zero(v) for k, v in dumped.items()}
    if isinstance(dumped, list):
        return [unset_as_zero(item) for item in dumped]
    return dumped


def test_every_conformance_bundle_reads_to_itself() -> None:
    """What sigstore-python's models read from the suite's bundles is what they read from ours,
    but for the bundles protojson refuses (two malformed on purpose, and one whose timestamp is wrapped: see
    tests/test_sigstore_conformance.py)."""
    from sigstore_models.bundle.v1 import Bundle  # noqa: PLC0415

    refused = []
    for path in sorted(CONFORMANCE.glob("*/bundle.sigstore.json")):
        try:
            ours = read_bundle(path.read_bytes())
        except BundleError:
            refused.append(path.parent.name)
            continue
        try:
            theirs = Bundle.from_json(path.read_bytes())
        except ValueError:
            continue  # malformed for sigstore-python too
        expected = unset_as_zero(theirs.model_dump())
        assert Bundle.from_json(json.dumps(ours)).model_dump() == expected, path.parent.name
    assert refused == [
        "bundle-invalid-base64-signature_fail",
        "bundle-malformed-json_fail",
        "rekor2-timestamp-with-incorrect-time_fail",
    ], refused


NAMES = sorted(
    {"mediaType", "media_type", "verificationMaterial", "tlogEntries", "tlog_entries", "logIndex", "log_index"}
    | {"inclusionProof", "hashes", "treeSize", "rootHash", "checkpoint", "envelope", "messageSignature"}
    | {"messageDigest", "algorithm", "digest", "signature", "dsseEnvelope", "payload", "payloadType", "signatures"}
    | {"sig", "keyid", "certificate", "rawBytes", "x509CertificateChain", "certificates", "publicKey", "hint"}
    | {"integratedTime", "kindVersion", "kind", "version", "logId", "keyId", "canonicalizedBody", "other"}
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["0", "1", "1.0", "1e3", "-_", "AQ==", "AQ", "SHA2_256", "x\ny", "12345678901234567890"]),
)
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(NAMES), inner, max_size=5),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(NAMES), documents, max_size=6))
def test_any_document_is_read_or_refused_never_a_crash(document: dict[str, Any]) -> None:
    """Whatever a tenant writes, the reader either reads it or says why (a BundleError), and what it
    reads, sigstore-python's models read or refuse (a ValueError), never another exception."""
    from sigstore_models.bundle.v1 import Bundle  # noqa: PLC0415

    try:
        read = read_bundle(json.dumps(document).encode())
    except BundleError:
        return
    with contextlib.suppress(ValueError):
        Bundle.from_json(json.dumps(read))
