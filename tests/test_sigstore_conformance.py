"""The Sigstore conformance suite's bundle cases (../shared/conformance/sigstore/, see SOURCE.md).

Each folder is one verification: ``_fail`` folders must fail, the others pass, with the
folder's identity, issuer and trusted root or the defaults (the public-good root that
sigstore-python ships, offline). Verified as an image's bundle is: the bundle signs the
artifact's SHA-256 digest, then its certificate's issuer and subject are matched against the
expected identity (core/signatures.py), exactly as a ``signatures`` rule does.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from imagegate.core.signatures import KeylessIdentity, PayloadError, SignaturesConfig
from imagegate.shell.registry.signing import SigningError, bundle_verifier
from imagegate.shell.registry.sigstore_adapter import MAX_LIBRARY_ERROR, trusted_root_file, verify_bundle

CASES = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "sigstore" / "bundle-verify"
IDENTITY = (
    "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/"
    "extremely-dangerous-oidc-beacon.yml@refs/heads/main"
)
ISSUER = "https://token.actions.githubusercontent.com"

# Passing cases sigstore-python 4 cannot verify, so imagegate refuses them, saying why: bundles
# signed with a plain key (no certificate: sigstore-python verifies certificates only) and an
# intoto/0.0.2 log entry with only an integrated time; a timestamp exactly at the end of the
# TSA's validity (sigstore-python reads the end as exclusive).
UNSUPPORTED = {
    "trust-root-tsa-validity-end-inclusive": "not enough sources of verified time",
    "managed-key-happy-path": "expected certificate in bundle",
    "managed-key-and-trusted-root": "expected certificate in bundle",
    "intoto-with-custom-trust-root": (
        "unsupported log entry type intoto 0.0.2 (sigstore-python: Integrated time only supported"
    ),
}

# A failing case imagegate refuses for another reason than the one it was written for, on purpose:
# its TSA timestamp is base64 wrapped by openssl (a "\n" in it), so its length is not a multiple
# of four and protojson (the parser of sigstore-go and cosign) reads it unpadded and refuses its
# "=". imagegate reads bundles as protojson does (core/protojson.py), so this one is malformed
# before its time is judged; sigstore-python's lenient base64 read it and refused its time.
OTHER_REASON = {
    "rekor2-timestamp-with-incorrect-time_fail": "rfc3161Timestamps[0].signedTimestamp is not base64",
}


def cases() -> list[Path]:
    return sorted(path for path in CASES.iterdir() if path.is_dir())


def test_every_case_is_here() -> None:
    assert len(cases()) >= 70
    assert {p.name for p in cases()} >= set(UNSUPPORTED) | set(OTHER_REASON)


def verify_case(case: Path) -> tuple[bool, str]:
    artifact = case / "artifact" if (case / "artifact").exists() else CASES / "a.txt"
    digest = "sha256:" + hashlib.sha256(artifact.read_bytes()).hexdigest()
    identity = (case / "identity").read_text().strip() if (case / "identity").exists() else IDENTITY
    issuer = (case / "issuer").read_text().strip() if (case / "issuer").exists() else ISSUER
    root = case / "trusted_root.json"
    try:
        config = SignaturesConfig(trusted_root=str(root) if root.exists() else None)
        verifier = bundle_verifier(trusted_root_file(config, None))
        signer_issuer, subject = verify_bundle(verifier, (case / "bundle.sigstore.json").read_bytes(), digest)
    except (PayloadError, SigningError) as exc:
        return False, str(exc)
    matched = KeylessIdentity(issuer, identity).matches(signer_issuer, subject)
    return matched, f"signed by {subject} (issuer {signer_issuer})"


@pytest.mark.parametrize("case", cases(), ids=lambda p: p.name)
def test_conformance_case(case: Path) -> None:
    ok, why = verify_case(case)
    if case.name in UNSUPPORTED:
        assert not ok and UNSUPPORTED[case.name] in why, why
    elif case.name in OTHER_REASON:
        assert not ok and OTHER_REASON[case.name] in why, why
    elif case.name.endswith("_fail"):
        assert not ok, f"{case.name} must fail, it verified: {why}"
        assert why  # a reason, never a bare failure
    else:
        assert ok, f"{case.name} must verify: {why}"


def test_wrong_identity_is_refused() -> None:
    ok, why = verify_case(CASES / "happy-path-v0.3")
    assert ok, why
    signer = KeylessIdentity(ISSUER, subject_regexp=r"https://github\.com/wikimedia/.+")
    assert not signer.matches(ISSUER, IDENTITY)
    assert KeylessIdentity(ISSUER, subject_regexp=r"https://github\.com/sigstore-conformance/.+").matches(
        ISSUER, IDENTITY
    )


def test_the_library_s_whole_error_is_kept_on_one_line_and_bounded() -> None:
    """sigstore-python's (pydantic's) errors span lines and name every wrong field: all of them are
    kept, on one line; a tenant's bundle cannot make a denial longer than MAX_LIBRARY_ERROR says."""
    ok, why = verify_case(CASES / "bundle-unknown-version_fail")
    assert not ok and "\n" not in why
    assert "2 validation errors" in why and "version=99.9" in why and "inclusionProof Field required" in why
    ok, why = verify_case(CASES / "inclusion-proof-corrupted-hash_fail")
    assert not ok and why.endswith("more characters)") and len(why) < MAX_LIBRARY_ERROR + 100
