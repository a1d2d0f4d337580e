"""Image indexes judged by what the node pulls, against a real registry (docker-registry).

The children are real images pushed by skopeo; the indexes over them are written byte for byte
here and PUT to the registry (which checks that every child exists), so an index can spell its
platforms as an attacker would: another case, ``x86_64``, a default variant, no platform at
all, Go-only key spellings. The cluster runs linux/amd64 (and linux/arm64 where said).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagegate.core.decide import decide
from imagegate.core.oci import OCI_INDEX, Index, parse_manifest
from imagegate.core.platforms import node_platform, normalize, parse_platform, runnable_entries
from imagegate.core.policy import Policy, load_policy
from imagegate.core.questions import BaseQuestion, DigestQuestion
from imagegate.core.records import NO_ANSWERS, Answers, DenyOrAllow, Webhook
from imagegate.core.reference import parse_docker_ref
from imagegate.shell.registry.answerers import answer, settle
from imagegate.shell.registry.gate import RegistryGate
from tests.conftest import POLICY_HEADER, run_imagegate
from tests.oci_images import OciLayout, layers, skopeo_copy
from tests.registry_process import UNHURRIED, Registry, run_registry


def policy_of(text: str) -> Policy:
    """A policy document with its header (every document says what it is)."""
    return load_policy(POLICY_HEADER + text, "policy.yaml")


BASE_AMD = layers("base-amd64", 3)
BASE_ARM = layers("base-arm64", 3)
APP = layers("app", 2)
ROGUE = layers("rogue", 3)


@dataclasses.dataclass
class Children:
    registry: Registry
    descriptors: dict[str, dict[str, Any]]  # name -> the child's descriptor (no platform)
    tmp: Path

    def index(self, tag: str, entries: list[tuple[str, dict[str, Any] | None]], raw: bytes | None = None) -> str:
        """PUT an index of ``entries`` (child name, platform object or None) as tool-a/app:``tag``."""
        manifests = []
        for name, platform in entries:
            descriptor = dict(self.descriptors[name])
            if platform is not None:
                descriptor["platform"] = platform
            manifests.append(descriptor)
        body = raw or json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}).encode()
        self.registry.put_manifest("tool-a/app", tag, body, OCI_INDEX)
        return f"{self.registry.host}/tool-a/app:{tag}"


@pytest.fixture(scope="module")
def children(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Children]:
    workdir = tmp_path_factory.mktemp("indexes")
    with run_registry(workdir / "registry", "htpasswd") as reg:
        layout = OciLayout(workdir / "layout")
        images = {
            "base-amd": layout.image(BASE_AMD),
            "base-arm": layout.image(BASE_ARM, architecture="arm64"),
            "good-amd": layout.image([*BASE_AMD, *APP]),
            "good-arm": layout.image([*BASE_ARM, *APP], architecture="arm64"),
            "rogue-amd": layout.image([*ROGUE, *APP]),
            "rogue-arm": layout.image([*ROGUE, *APP], architecture="arm64"),
            "rogue-386": layout.image([*ROGUE, *APP], architecture="386"),
        }
        for name, descriptor in images.items():
            layout.tag(descriptor, name)
            repository = "toolforge/base" if name.startswith("base") else "tool-a/app"
            skopeo_copy(
                layout.root,
                name,
                f"{reg.host}/{repository}:{name}",
                cert_dir=reg.cert_dir,
                credentials=reg.credentials,
            )
        descriptors = {name: {k: v for k, v in d.items() if k != "platform"} for name, d in images.items()}
        found = Children(reg, descriptors, workdir)
        base_index = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [
                    {**descriptors["base-amd"], "platform": {"os": "linux", "architecture": "amd64"}},
                    {**descriptors["base-arm"], "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
                ],
            }
        ).encode()
        reg.put_manifest("toolforge/base", "1", base_index, OCI_INDEX)
        yield found


def policy(children: Children, platforms: str = "[linux/amd64]", extra: str = "") -> Policy:
    return policy_of(policy_text(children, platforms, extra))


def policy_text(children: Children, platforms: str = "[linux/amd64]", extra: str = "") -> str:
    reg = children.registry
    config = reg.docker_config(children.tmp / "config.json")
    return f"""
trusted: [{reg.host}/toolforge]
byoc:
  grants:
    - {{namespace: tool-a, registries: ["{reg.host}/tool-a"], requireBaseImage: true}}
registry: {{caFile: {reg.tls.ca_cert}, credentialsFile: {config}, platforms: {platforms}, {UNHURRIED}}}
baseImages: {{trusted: ["{reg.host}/toolforge/base:1"]}}
{extra}
"""


def pod(image: str) -> dict[str, Any]:
    return {"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "app", "image": image}]}}


def judge(rules: Policy, image: str, *, pins: bool = False) -> Any:
    gate = RegistryGate()
    now = dt.datetime.now(dt.UTC)

    def evaluate(answers: Answers) -> Any:
        return decide(rules, pod(image), namespace="tool-a", now=now, answers=answers)

    async def go() -> Any:
        try:
            return await settle(gate, rules, evaluate, lambda d: d, webhook=Webhook.CHECK if pins else Webhook.VALIDATE)
        finally:
            await gate.aclose()

    return asyncio.run(go())


AMD = {"os": "linux", "architecture": "amd64"}


@pytest.mark.parametrize(
    ("entries", "allowed", "why"),
    [
        ([("good-amd", AMD)], True, "built on"),
        # the first matching entry is good and a later one is bad: a runtime may take either
        ([("good-amd", AMD), ("rogue-amd", AMD)], False, "nearest trusted base"),
        # odd spellings of the platform the node runs: containerd normalizes them all to linux/amd64
        ([("rogue-amd", {"os": "Linux", "architecture": "x86_64"}), ("good-amd", AMD)], False, "nearest trusted base"),
        ([("rogue-amd", {"os": "LINUX", "architecture": "AMD64"}), ("good-amd", AMD)], False, "nearest trusted base"),
        ([("rogue-amd", {"os": "linux", "architecture": "x86-64"}), ("good-amd", AMD)], False, "nearest trusted base"),
        ([("rogue-amd", {"os": "linux", "architecture": "amd64", "variant": "v1"}), ("good-amd", AMD)], False, ""),
        ([("rogue-amd", {"architecture": "amd64"}), ("good-amd", AMD)], False, ""),  # no os: the node's
        # another amd64 variant: containers/image prefers it on a CPU that has it
        ([("good-amd", AMD), ("rogue-amd", {"os": "linux", "architecture": "amd64", "variant": "v3"})], False, ""),
        # an entry without a platform is a candidate for containerd
        ([("good-amd", AMD), ("rogue-amd", None)], False, ""),
        ([("rogue-amd", None), ("good-amd", AMD)], False, ""),
        # Go's encoding/json matches keys case-insensitively: this is linux/amd64 to the node
        ([("rogue-amd", {"OS": "linux", "Architecture": "amd64"}), ("good-amd", AMD)], False, ""),
        # 386 is only a fallback when the index offers no amd64 at all
        ([("rogue-386", {"os": "linux", "architecture": "386"}), ("good-amd", AMD)], True, "built on"),
        ([("rogue-386", {"os": "linux", "architecture": "i386"})], False, ""),
        # other platforms are not pulled by an amd64 node
        ([("good-amd", AMD), ("rogue-arm", {"os": "linux", "architecture": "arm64"})], True, "built on"),
        ([("good-amd", AMD), ("rogue-amd", {"os": "windows", "architecture": "amd64"})], True, "built on"),
        ([("good-amd", AMD), ("rogue-amd", {"os": "unknown", "architecture": "unknown"})], True, "built on"),
    ],
)
def test_every_entry_an_amd64_node_might_pull_is_verified(
    children: Children, entries: list[tuple[str, dict[str, Any] | None]], allowed: bool, why: str
) -> None:
    tag = f"case-{abs(hash(json.dumps(entries))) % 10**8}"
    decision = judge(policy(children), children.index(tag, entries))
    assert decision.allowed is allowed, decision.message()
    text = decision.verdicts[0].allowed_by if allowed else decision.message()
    assert why in (text or "")


@pytest.mark.parametrize(
    ("platforms", "entries", "allowed"),
    [
        # the cluster's platforms are normalized as containerd does: aarch64 is arm64, v8 its default
        ("[linux/aarch64]", [("good-arm", {"os": "linux", "architecture": "arm64"})], True),
        ("['Linux/ARM64/v8']", [("good-arm", {"os": "linux", "architecture": "aarch64", "variant": "8"})], True),
        (
            "[linux/arm64]",
            [
                ("good-arm", {"os": "linux", "architecture": "arm64"}),
                ("rogue-arm", {"os": "linux", "architecture": "arm64", "variant": "v8"}),
            ],
            False,
        ),
        (
            "[linux/amd64, linux/arm64]",
            [("good-amd", AMD), ("good-arm", {"os": "linux", "architecture": "aarch64"})],
            True,
        ),
        (
            "[linux/amd64, linux/arm64]",
            [("good-amd", AMD), ("rogue-arm", {"os": "linux", "architecture": "AArch64"})],
            False,
        ),
    ],
)
def test_arm64_spellings(
    children: Children, platforms: str, entries: list[tuple[str, dict[str, Any] | None]], allowed: bool
) -> None:
    tag = f"arm-{abs(hash(json.dumps([platforms, entries]))) % 10**8}"
    decision = judge(policy(children, platforms), children.index(tag, entries))
    assert decision.allowed is allowed, decision.message()


def test_duplicate_keys_are_read_as_go_reads_them(children: Children) -> None:
    """The registry stores the bytes; the node's Go decoder keeps the last ``manifests``."""
    good = {**children.descriptors["good-amd"], "platform": AMD}
    rogue = {**children.descriptors["rogue-amd"], "platform": AMD}
    raw = (
        f'{{"schemaVersion": 2, "mediaType": "{OCI_INDEX}", '
        f'"manifests": [{json.dumps(good)}], "Manifests": [{json.dumps(rogue)}]}}'
    ).encode()
    image = children.index("duplicate-keys", [], raw=raw)
    decision = judge(policy(children), image)
    assert not decision.allowed and "nearest trusted base" in decision.message()


def test_an_index_is_judged_on_the_entry_go_reads(children: Children, tmp_path: Path) -> None:
    """Issue 27: containerd decodes an index with Go's encoding/json, which decodes a repeated
    key into what the first occurrence made. A platform given twice keeps the fields the second
    leaves out; a repeated ``manifests`` is decoded into the entries already there. Each index
    is judged, by ``check --registry``, on the entry a linux/amd64 node pulls as Go reads it
    (tests/fixtures/go_json has what Go itself makes of such documents)."""

    def entry(name: str, *platforms: dict[str, Any]) -> str:
        descriptor = json.dumps(children.descriptors[name])[:-1]
        return descriptor + "".join(f', "platform": {json.dumps(p)}' for p in platforms) + "}"

    def index(manifests: str) -> bytes:
        return f'{{"schemaVersion": 2, "mediaType": "{OCI_INDEX}", {manifests}}}'.encode()

    linux, arm = {"os": "linux"}, {"os": "linux", "architecture": "arm64"}
    bodies = {
        # the attack: the first entry is off-base; its second platform names no architecture,
        # so a decoder that replaces objects sees no amd64 there, but the node pulls it
        "twice-rogue": (index(f'"manifests": [{entry("rogue-amd", AMD, linux)}, {entry("good-amd", AMD)}]'), False),
        "twice-good": (index(f'"manifests": [{entry("good-amd", AMD, linux)}, {entry("rogue-arm", arm)}]'), True),
        # the second array is decoded into the first's entries: one entry, the first's digest,
        # its platform now linux/amd64
        "elementwise-rogue": (
            index(
                f'"manifests": [{entry("rogue-amd", arm)}, {entry("good-amd", AMD)}], '
                '"manifests": [{"platform": {"architecture": "amd64"}}]'
            ),
            False,
        ),
        "elementwise-good": (
            index(
                f'"manifests": [{entry("good-amd", arm)}, {entry("rogue-amd", AMD)}], '
                '"manifests": [{"platform": {"architecture": "amd64"}}]'
            ),
            True,
        ),
    }
    pods = []
    for tag, (body, _) in bodies.items():
        children.registry.put_manifest("tool-a/app", tag, body, OCI_INDEX)
        image = f"{children.registry.host}/tool-a/app:{tag}"
        pods.append({**pod(image), "metadata": {"name": tag, "namespace": "tool-a"}})
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(POLICY_HEADER + policy_text(children))
    checked = run_imagegate(
        "check",
        "-",
        "-p",
        str(policy_file),
        "-o",
        "json",
        "--registry",
        stdin=json.dumps({"kind": "List", "items": pods}),
    )
    assert checked.returncode == 1, checked.stderr
    objects = json.loads(checked.stdout)["objects"]
    for (tag, (_, allowed)), judged in zip(bodies.items(), objects, strict=True):
        assert judged["allowed"] is allowed, (tag, judged)
        if not allowed:
            assert judged["violations"][0]["rule"] == "base-image-mismatch", (tag, judged["violations"][0])


def test_an_index_with_too_many_candidates_or_a_nested_index_is_refused(children: Children) -> None:
    many = children.index("many", [("good-amd", {**AMD, "variant": f"v{n}"}) for n in range(2, 20)])
    decision = judge(policy(children), many)
    assert not decision.allowed
    assert "verifies at most 16, so it refuses the index" in decision.message()
    # a refusal is not an outage: registry.onError: allow does not let it through
    lenient = judge(
        dataclasses.replace(
            policy(children), registry=dataclasses.replace(policy(children).registry, on_error=DenyOrAllow.ALLOW)
        ),
        many,
    )
    assert not lenient.allowed and "refused" in lenient.message()
    nested_descriptor = json.loads(json.dumps(children.descriptors["good-amd"]))
    nested_body = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{**nested_descriptor, "platform": AMD}]}
    ).encode()
    from imagegate.core.oci import digest_of  # noqa: PLC0415

    outer = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {"mediaType": OCI_INDEX, "digest": digest_of(nested_body), "size": len(nested_body), "platform": AMD}
            ],
        }
    ).encode()
    image = children.index("nested", [], raw=outer)
    decision = judge(policy(children), image)
    assert not decision.allowed and "nested indexes" in decision.message()


def test_pinning_pins_the_index_that_was_verified(children: Children) -> None:
    """Verified, then the tag moves to a rogue index: the pin is the verified digest."""
    rules = policy(children, extra="pinning: {enabled: true}\n")
    image = children.index("moving", [("good-amd", AMD)])
    gate = RegistryGate()
    now = dt.datetime.now(dt.UTC)

    async def go() -> tuple[Any, Any]:
        first = decide(rules, pod(image), namespace="tool-a", now=now)
        checked = await answer(gate, rules, first, webhook=Webhook.VALIDATE)
        children.index("moving", [("rogue-amd", AMD)])  # the tag moves
        await asyncio.sleep(0)
        second = decide(rules, pod(image), namespace="tool-a", now=now, answers=checked)
        pinned = await answer(gate, rules, second, webhook=Webhook.MUTATE, earlier=checked)
        await gate.aclose()
        return checked, pinned

    checked, pinned = asyncio.run(go())
    (verdict,) = checked.of(BaseQuestion).values()
    assert verdict.ok and verdict.digest is not None
    assert pinned.of(DigestQuestion)[image] == verdict.digest
    decision = judge(rules, image, pins=True)  # a fresh gate sees the rogue index and refuses it
    assert not decision.allowed and decision.patches == ()


# --- the selection itself, against an independent model of containerd's pull ---------------


def test_platform_normalization_matches_containerd() -> None:
    cases = {
        ("Linux", "x86_64", ""): "linux/amd64",
        ("linux", "x86-64", "v1"): "linux/amd64",
        ("linux", "AMD64", "V3"): "linux/amd64/v3",
        ("linux", "aarch64", ""): "linux/arm64",
        ("linux", "arm64", "v8"): "linux/arm64",
        ("linux", "arm64", "8"): "linux/arm64",
        ("linux", "arm64", "v8.0"): "linux/arm64",
        ("linux", "arm64", "9"): "linux/arm64/v9",
        ("linux", "arm", ""): "linux/arm/v7",
        ("linux", "arm", "7"): "linux/arm/v7",
        ("linux", "armhf", ""): "linux/arm/v7",
        ("linux", "armel", ""): "linux/arm/v6",
        ("linux", "i386", ""): "linux/386",
        ("", "amd64", ""): "linux/amd64",
        ("macos", "arm64", ""): "darwin/arm64",
    }
    for (os, arch, variant), expected in cases.items():
        assert str(normalize(os, arch, variant)) == expected
    assert str(parse_platform("linux/arm64/v8")) == "linux/arm64"
    for bad in ("linux", "linux/", "linux/amd64/v1/x", "linux/am d64", ""):
        with pytest.raises(ValueError, match="os/architecture"):
            parse_platform(bad)


def test_policy_platforms_are_normalized_and_checked() -> None:
    rules = policy_of("registry: {platforms: [Linux/X86_64, linux/amd64, linux/aarch64]}\n")
    assert rules.registry.platforms == ("linux/amd64", "linux/arm64")
    with pytest.raises(ValueError, match=r"registry\.platforms\[0\]"):
        policy_of("registry: {platforms: ['linux']}\n")


def test_go_key_folding_reads_what_go_reads() -> None:
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "Digest": "sha256:" + "a" * 64,
                    "SIZE": 7,
                    "platform": {"o\u017f": "linux", "architecture": "arm64", "ARCHITECTURE": "amd64"},
                },
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": "sha256:" + "b" * 64,
                    "size": 7,
                    # the dotless i does not fold onto "i" in Go: this key is unknown there
                    "platform": {"os": "linux", "architecture": "amd64", "arch\u0131tecture": "arm64"},
                },
            ],
        }
    ).encode()
    index = parse_manifest(body, OCI_INDEX)
    assert isinstance(index, Index)
    first, second = index.manifests
    assert first.digest == "sha256:" + "a" * 64 and first.size == 7
    assert first.platform is not None and (first.platform.os, first.platform.architecture) == ("linux", "amd64")
    assert second.platform is not None and second.platform.architecture == "amd64"


# An independent model of the pull: containerd's (normalize, Only's ordered matcher, stable
# sort with unplatformed entries last, first wins) and containers/image's (exact strings, the
# CPU's preferred variants first). Whatever either pulls must be among the entries verified.
_ARCH_ALIASES: dict[str, tuple[str, str | None]] = {
    "x86_64": ("amd64", None),
    "x86-64": ("amd64", None),
    "aarch64": ("arm64", None),
    "i386": ("386", ""),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v6"),
}


def _containerd_view(platform: tuple[str, str, str], node_os: str) -> tuple[str, str, str]:
    os, arch, variant = (part.lower() for part in platform)
    os = os or node_os
    arch, forced = _ARCH_ALIASES.get(arch, (arch, None))
    variant = forced if forced is not None else variant
    if arch == "amd64" and variant == "v1":
        variant = ""
    if arch == "arm64" and variant in ("8", "v8", "v8.0"):
        variant = ""
    if arch == "arm" and variant in ("", "7"):
        variant = "v7"
    if arch == "arm" and variant in ("5", "6", "8"):
        variant = "v" + variant
    return os, arch, variant


_CONTAINERD_ORDER = {
    "amd64": [("linux", "amd64", ""), ("linux", "386", "")],
    "arm64": [("linux", "arm64", ""), *(("linux", "arm", f"v{n}") for n in (8, 7, 6, 5))],
}
_CONTAINERS_IMAGE_ORDER = {
    "amd64": [("linux", "amd64", "v3"), ("linux", "amd64", "v2"), ("linux", "amd64", ""), ("linux", "amd64", "v1")],
    "arm64": [("linux", "arm64", "v8"), ("linux", "arm64", "")],
}


def containerd_pulls(entries: list[tuple[str, str, str] | None], node_arch: str) -> int | None:
    order = _CONTAINERD_ORDER[node_arch]

    def rank(position: int) -> int | None:
        platform = entries[position]
        if platform is None:
            return len(order)  # kept, sorted last
        seen = _containerd_view(platform, "linux")
        return order.index(seen) if seen in order else None

    candidates = [(rank(i), i) for i in range(len(entries)) if rank(i) is not None]
    return min(candidates)[1] if candidates else None


def containers_image_pulls(entries: list[tuple[str, str, str] | None], node_arch: str) -> int | None:
    for wanted in _CONTAINERS_IMAGE_ORDER[node_arch]:
        for position, platform in enumerate(entries):
            if platform == wanted:
                return position
    return None


spelled_platforms = st.one_of(
    st.none(),
    st.tuples(
        st.sampled_from(["linux", "Linux", "LINUX", "", "windows", "unknown"]),
        st.sampled_from(["amd64", "AMD64", "x86_64", "X86-64", "arm64", "aarch64", "AArch64", "386", "i386", "arm"]),
        st.sampled_from(["", "", "v1", "v2", "v3", "v8", "8", "V8", "v8.0", "v7", "unknown"]),
    ),
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(spelled_platforms, min_size=1, max_size=8), st.sampled_from(["amd64", "arm64"]))
def test_whatever_a_runtime_pulls_from_a_generated_index_is_verified(
    entries: list[tuple[str, str, str] | None], node_arch: str
) -> None:
    verified = runnable_entries(entries, node_platform(f"linux/{node_arch}"))
    for pulls in (containerd_pulls, containers_image_pulls):
        pulled = pulls(entries, node_arch)
        assert pulled is None or pulled in verified, (pulls.__name__, entries, pulled, verified)


def test_settle_evaluates_once_with_the_base_check_and_the_pin_together(children: Children) -> None:
    """The lookup-free decision names the base check and the pin it leads to: one lookup, one evaluation."""
    rules = policy(children, extra="pinning: {enabled: true}\n")
    image = children.index("settled", [("good-amd", AMD)])
    trusted = f"{children.registry.host}/toolforge/base:1"  # trusted: no base check, pinned at once
    now = dt.datetime.now(dt.UTC)
    seen: list[Answers] = []

    def evaluate(answers: Answers) -> Any:
        seen.append(answers)
        obj = pod(image)
        obj["spec"]["containers"].append({"name": "other", "image": trusted})
        return decide(rules, obj, namespace="tool-a", now=now, answers=answers)

    first = evaluate(NO_ANSWERS)
    base, pinned = BaseQuestion(parse_docker_ref(image)), DigestQuestion(parse_docker_ref(trusted))
    assert first.asked(BaseQuestion) == (base,) and first.pins_needed == (trusted,)
    # image order: the pending check's image first, pinned if its check passes
    assert first.asked(DigestQuestion) == (DigestQuestion(base.ref), pinned)

    async def go() -> Any:
        gate = RegistryGate()
        try:
            return await settle(gate, rules, evaluate, lambda d: d, webhook=Webhook.MUTATE, first=first)
        finally:
            await gate.aclose()

    decision = asyncio.run(go())
    assert len(seen) == 2, seen  # the lookup-free one, and one with everything the registry said
    (verdict,) = seen[1].of(BaseQuestion).values()
    assert decision.allowed and verdict.ok
    assert [p["value"] for p in decision.patches if p["path"].endswith("/0/image")] == [f"{image}@{verdict.digest}"]
