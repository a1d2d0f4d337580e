"""Peers' policy cases (gatekeeper-library, Kyverno) run through imagegate's policy.

Each case's parameters are translated to our policy form; then our decision must agree
with the peer's expected outcome, container for container. Where we differ on purpose,
the case is listed in ``DELIBERATE`` with the reason, and the test checks that we really
do differ (a stale entry fails).

The translation itself encodes our one big deliberate difference: peers match the raw
``image`` string by prefix, we match parsed, normalized references on whole segments.
So gatekeeper's ``openpolicyagent/`` becomes ``docker.io/openpolicyagent`` (the image
``openpolicyagent/opa`` means exactly that), and an entry that names no registry is
read as a Docker Hub path, never as a string prefix (``allowed`` would also have
allowed ``allowedevil/x`` in gatekeeper).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pytest
import yaml

from imagegate.core.decide import decide
from imagegate.core.policy import Policy, load_policy
from imagegate.core.reference import parse_normalized
from tests.conftest import CONFORMANCE, case_id, load_conformance

NOW = dt.datetime(2026, 11, 24, tzinfo=dt.UTC)
FIELD_TO_KIND = {
    "containers": "container",
    "initContainers": "initContainer",
    "ephemeralContainers": "ephemeralContainer",
}

# case id -> why our answer differs from the peer's.
UNVERIFIABLE_DIGEST = (
    "gatekeeper's regex accepts any '@algo:chars' (multihash+base58, sha256+b64u); imagegate accepts only "
    "digests it can verify (sha256/384/512 hex), so these images are denied as invalid references"
)
DELIBERATE: dict[str, str] = {
    "imagedigests/rego-unit/containers/test_input_allowed_containers_with_unregistered_algorithms": UNVERIFIABLE_DIGEST,
    "imagedigests/rego-unit/initContainers/test_input_init_allowed_containers_with_unregistered_algorithms": UNVERIFIABLE_DIGEST,
}


def _registry_first(entry: str) -> str:
    """A raw prefix as gatekeeper writes it, in our registry-first form."""
    entry = entry.rstrip("/")
    first = entry.split("/")[0]
    if "." in first or ":" in first or first == "localhost":
        return entry
    return f"docker.io/{entry}"


def _exact_image(entry: str) -> str:
    """allowedreposv2's exact-equality entry: the normalized repository (with its tag, if any).

    Gatekeeper compares the whole image string, so '.../postgres' there does not allow
    '.../postgres:16'; our repository entry allows every tag of that repository (the
    registry and path are what identify who publishes it). No case exercises the gap.
    """
    return str(parse_normalized(entry))


def policy_from(
    trusted: list[str],
    blocked: Sequence[str] = (),
    byoc_default: str = "deny",
    tags: dict[str, Any] | None = None,
) -> Policy:
    document: dict[str, Any] = {
        "apiVersion": "imagegate.toolforge.org/v1",
        "kind": "ImagePolicy",
        "trusted": list(trusted),
        "blocked": list(blocked),
        "byoc": {"default": byoc_default},
    }
    if tags:
        document["tags"] = tags
    return load_policy(yaml.safe_dump(document), "<translated>")


def _exempt(entries: list[str]) -> list[str]:
    """gatekeeper's exemptImages: an entry ending in '*' is a prefix, any other is exact."""
    return [_registry_first(e[:-1].rstrip("/")) if e.endswith("*") else _exact_image(e) for e in entries]


def gatekeeper_policy(name: str, parameters: dict[str, Any]) -> Policy:
    if name == "allowedrepos":
        return policy_from([_registry_first(e) for e in parameters["repos"]])
    if name == "allowedreposv2":
        entries = []
        for entry in parameters["allowedImages"]:
            if entry.endswith("/*"):
                entries.append(_registry_first(entry[:-2]))
            elif entry.endswith("*"):
                entries.append(_registry_first(entry))  # a glob inside the last segment
            else:
                entries.append(_exact_image(entry))
        return policy_from(entries)
    if name == "disallowedrepos":
        return policy_from([], blocked=[_registry_first(e) for e in parameters["repos"]], byoc_default="allow")
    exempt = _exempt(parameters.get("exemptImages", []))
    if name == "disallowedtags":
        tags = {"disallow": parameters["tags"], "requireTag": True, "exempt": exempt}
        return policy_from([], byoc_default="allow", tags=tags)
    if name == "imagedigests":
        return policy_from([], byoc_default="allow", tags={"requireDigest": True, "exempt": exempt})
    raise AssertionError(name)


def kyverno_policy(name: str) -> Policy:
    document = yaml.safe_load((CONFORMANCE / "kyverno" / name / f"{name}.yaml").read_text())
    rule = document["spec"]["rules"][0]
    if name == "restrict-image-registries":
        # pattern "eu.foo.io/* | bar.io/*": '|' is OR, '*' any characters -> whole registries
        pattern = rule["validate"]["pattern"]["spec"]["containers"][0]["image"]
        return policy_from([alt.strip().removesuffix("/*") for alt in pattern.split("|")])
    if name == "allowed-image-repos":
        # Kyverno compares images.*.name, the last path segment, on any registry and path.
        # A glob per segment says the same for the depth of every case (registry/ns/name).
        names = rule["validate"]["deny"]["conditions"]["all"][0]["value"]
        return policy_from([f"*/*/{n}" for n in names])
    if name == "disallow-latest-tag":  # require-image-tag ('*:*') + validate-image-tag (not '*:latest')
        return policy_from([], byoc_default="allow", tags={"requireTag": True, "disallow": ["latest"]})
    if name == "require-image-checksum":  # '*@*'
        return policy_from([], byoc_default="allow", tags={"requireDigest": True})
    if name == "restrict-deprecated-registry":  # deny 'k8s.gcr.io/*'
        return policy_from([], blocked=["k8s.gcr.io"], byoc_default="allow")
    raise AssertionError(name)


def _our_offenders(policy: Policy, obj: dict[str, Any]) -> list[tuple[str, str, str]]:
    namespace = (obj.get("metadata") or {}).get("namespace") or "default"
    decision = decide(policy, obj, namespace=namespace, now=NOW)
    assert decision.governed
    # one entry per offending container, however many of its rules it breaks (as peers count)
    return sorted({(f.subject.kind, f.subject.name, f.subject.image) for f in decision.violations})


def _their_offenders(case: dict[str, Any]) -> list[tuple[str, str, str]]:
    return sorted({(FIELD_TO_KIND[o["field"]], o["name"], o["image"]) for o in case["offending_containers"]})


def _compare(case: dict[str, Any], ours: list[tuple[str, str, str]], key: str) -> None:
    theirs = _their_offenders(case)
    agrees = ours == theirs and (case["expected"] == "denied") == bool(ours)
    if key in DELIBERATE:
        assert not agrees, f"{key} now agrees; drop it from DELIBERATE"
        return
    assert (case["expected"] == "denied") == bool(ours), (ours, theirs)
    assert ours == theirs


GATEKEEPER = [
    (name, case)
    for name in ("allowedrepos", "allowedreposv2", "disallowedrepos", "disallowedtags", "imagedigests")
    for case in load_conformance(f"gatekeeper-library/{name}/cases.json")["cases"]
]
KYVERNO = [
    (name, case)
    for name in (
        "restrict-image-registries",
        "allowed-image-repos",
        "disallow-latest-tag",
        "require-image-checksum",
        "restrict-deprecated-registry",
    )
    for case in load_conformance(f"kyverno/{name}/cases.json")["cases"]
]


@pytest.mark.parametrize(("name", "case"), GATEKEEPER, ids=lambda v: v if isinstance(v, str) else case_id(v))
def test_gatekeeper_case(name: str, case: dict[str, Any]) -> None:
    obj = dict(case["object"])
    obj.setdefault("kind", "Pod")  # rego-unit review objects are bare {metadata, spec} pods
    _compare(case, _our_offenders(gatekeeper_policy(name, case["parameters"]), obj), f"{name}/{case['id']}")


@pytest.mark.parametrize(("name", "case"), KYVERNO, ids=lambda v: v if isinstance(v, str) else case_id(v))
def test_kyverno_case(name: str, case: dict[str, Any]) -> None:
    _compare(case, _our_offenders(kyverno_policy(name), case["object"]), f"{name}/{case['id']}")


def test_counts_reported_in_readme() -> None:
    assert len(GATEKEEPER) == 19 + 22 + 19 + 29 + 19
    assert len(KYVERNO) == 21 + 15 + 14 + 14 + 12
