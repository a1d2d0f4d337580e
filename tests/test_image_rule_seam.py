"""A new registry-backed image rule is one core piece and one answerer (issue 24 item 2).

The rule here ("an image has at most N layers") is written in this file only: a question type,
a piece registered with ``register_image_rule`` and an answerer registered with ``register``;
nothing in ``Decision``, ``Answers``, ``decide()`` or the gate knows it. It is judged against a
real docker-registry through the gate, as ``check --registry`` and the webhooks are, offline
(unverified), beside pinning (the digest its answer judged is the one pinned) and when the
registry cannot answer.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import msgspec
import pytest

from imagegate.core.decide import decide
from imagegate.core.imagerules import JudgedImage, Judging, register_image_rule, unregister_image_rule
from imagegate.core.policy import Policy, load_policy
from imagegate.core.questions import DigestQuestion, verdict_of
from imagegate.core.records import Answers, Decision, Finding, Mode, Question, Verdict, Webhook
from imagegate.shell.registry.answerers import Answerer, Asking, answer, register, settle, unregister
from imagegate.shell.registry.errors import RegistryError
from imagegate.shell.registry.gate import RegistryGate, tenant_reason
from imagegate.shell.webhook.metrics import Metrics
from tests.conftest import POLICY_HEADER
from tests.oci_images import OciLayout, layers, skopeo_inspect
from tests.registry_process import UNHURRIED, Registry, run_registry

NOW = dt.datetime(2026, 12, 7, tzinfo=dt.UTC)


# --- the toy rule: everything it takes ------------------------------------------------------------


class LayerCount(msgspec.Struct, frozen=True):
    """The answer: the most layers any platform of the image has, and the digest judged."""

    layers: int | None  # None: the registry could not say (``problem`` says why)
    digest: str | None = None
    problem: str = ""


class LayerCountQuestion(Question[LayerCount], frozen=True):
    """How many layers has the image (at most ``limit``)?"""

    check: ClassVar[str] = "layers"  # imagegate_verdicts_total{check="layers"}: no edit to the metrics
    limit: int

    def judged_digests(self, answer: LayerCount) -> tuple[str, ...]:
        return () if answer.digest is None else (answer.digest,)

    def verdicts(self, answer: LayerCount) -> tuple[Verdict, ...]:
        return (verdict_of(answer.layers is not None and answer.layers <= self.limit, False),)


class MaxLayers:
    """The piece: an image admission let in has at most ``limit`` layers."""

    name = "max-layers"

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def active(self, policy: Policy, namespace: str) -> bool:
        return True

    def judge(self, judging: Judging, image: JudgedImage) -> None:
        ref = image.image.ref
        if ref is None or image.verdict.finding is not None:
            return
        found = judging.ask(LayerCountQuestion(ref, self.limit))
        if found is None:
            why = "its layers could not be counted (no registry lookup in this evaluation)"
            judging.add(self, Finding(image.use, "layers-unverified", why, image.mode))
        elif found.layers is None:
            judging.add(self, Finding(image.use, "layers-unverified", f"its layers: {found.problem}", Mode.ENFORCE))
        elif found.layers > self.limit:
            why = f"has {found.layers} layers, more than {self.limit}"
            judging.add(self, Finding(image.use, "too-many-layers", why, image.mode))


class LayerCountAnswerer(Answerer[LayerCountQuestion, LayerCount]):
    """The answerer: the image read through the gate (its client, caches, contact rules)."""

    question = LayerCountQuestion

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def answer(self, asking: Asking, question: LayerCountQuestion) -> LayerCount:
        self.asked.append(str(question.ref))
        try:
            async with asking.deadline():
                image = await asking.gate.resolve(asking.policy, question.ref)
        except RegistryError as exc:
            return LayerCount(None, problem=tenant_reason(str(question.ref), exc))
        return LayerCount(max(len(p.layers) for p in image.platforms), image.digest)


# --- against docker-registry -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    workdir = tmp_path_factory.mktemp("seam")
    with run_registry(workdir / "registry", "htpasswd") as reg:
        layout = OciLayout(workdir / "layout")
        reg.push(layout, "small", layers("small", 2), "tool-a/small:1")
        reg.push(layout, "big", layers("big", 5), "tool-a/big:1")
        yield reg


@pytest.fixture
def toy_rule() -> Iterator[LayerCountAnswerer]:
    answerer = LayerCountAnswerer()
    register_image_rule(MaxLayers(3))
    register(answerer)
    try:
        yield answerer
    finally:
        unregister_image_rule(MaxLayers.name)
        unregister(LayerCountQuestion)


def _policy(registry: Registry, tmp_path: Path, extra: str = "") -> Policy:
    config = registry.docker_config(tmp_path / "config.json")
    return load_policy(
        f"{POLICY_HEADER}trusted: [{registry.host}/tool-a]\n"
        f"registry: {{caFile: {registry.tls.ca_cert}, credentialsFile: {config}, {UNHURRIED}}}\n{extra}",
        str(tmp_path / "policy.yaml"),
    )


def _pod(*images: str) -> dict[str, Any]:
    containers = [{"name": f"c{n}", "image": image} for n, image in enumerate(images)]
    return {"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": containers}}


def _settled(policy: Policy, obj: dict[str, Any], webhook: Webhook) -> Decision:
    def evaluate(answers: Answers) -> Decision:
        return decide(policy, obj, namespace="tool-a", now=NOW, answers=answers, webhook=webhook)

    async def go() -> Decision:
        gate = RegistryGate()
        try:
            return await settle(gate, policy, evaluate, lambda d: d, webhook=webhook)
        finally:
            await gate.aclose()

    return asyncio.run(go())


def test_a_new_rule_is_a_piece_and_an_answerer(
    registry: Registry, tmp_path: Path, toy_rule: LayerCountAnswerer
) -> None:
    policy = _policy(registry, tmp_path)
    small, big = f"{registry.host}/tool-a/small:1", f"{registry.host}/tool-a/big:1"
    offline = decide(policy, _pod(small, big), namespace="tool-a", now=NOW)
    assert [q.__class__ for q in offline.questions] == [LayerCountQuestion, LayerCountQuestion]
    assert offline.asks(Webhook.VALIDATE) and not offline.allowed
    assert [f.rule for f in offline.findings] == ["layers-unverified"] * 2
    for webhook in (Webhook.VALIDATE, Webhook.CHECK):
        decision = _settled(policy, _pod(small, big), webhook)
        (finding,) = decision.findings
        assert finding.rule == "too-many-layers" and finding.subject.image == big, decision.findings
        assert "has 5 layers, more than 3" in decision.message()
    assert sorted(set(toy_rule.asked)) == [big, small]


def test_its_answer_is_the_digest_pinned(registry: Registry, tmp_path: Path, toy_rule: LayerCountAnswerer) -> None:
    """Its answer says which digest it judged: pinning pins that one, asking the registry nothing more."""
    policy = _policy(registry, tmp_path, "pinning: {enabled: true}\n")
    small = f"{registry.host}/tool-a/small:1"
    decision = _settled(policy, _pod(small), Webhook.MUTATE)
    digest = skopeo_inspect(small, cert_dir=registry.cert_dir, credentials=registry.credentials)["Digest"]
    assert decision.allowed and [p["value"] for p in decision.patches] == [f"{small}@{digest}"]
    first = decide(policy, _pod(small), namespace="tool-a", now=NOW, webhook=Webhook.MUTATE)
    assert {type(q) for q in first.questions} == {LayerCountQuestion, DigestQuestion}

    async def go() -> Answers:
        gate = RegistryGate()
        try:
            found = await answer(gate, policy, first, webhook=Webhook.MUTATE)
            assert gate.client(policy.registry).fetches.get("manifest") == 1  # the digest was not read again
            return found
        finally:
            await gate.aclose()

    assert asyncio.run(go()).of(DigestQuestion) == {small: digest}


def test_its_verdicts_are_counted(registry: Registry, tmp_path: Path, toy_rule: LayerCountAnswerer) -> None:
    """The webhook's verdict metric counts the new rule by the check its question declares."""
    policy = _policy(registry, tmp_path)
    small, big = f"{registry.host}/tool-a/small:1", f"{registry.host}/tool-a/big:1"
    first = decide(policy, _pod(small, big), namespace="tool-a", now=NOW)
    metrics = Metrics()  # made after the rule's answerer is registered: its series start at 0

    def counted(verdict: Verdict) -> float | None:
        return metrics.registry.get_sample_value("imagegate_verdicts_total", {"check": "layers", "verdict": verdict})

    assert [counted(v) for v in Verdict] == [0, 0, 0]

    async def go() -> Answers:
        gate = RegistryGate()
        try:
            return await answer(gate, policy, first, webhook=Webhook.VALIDATE)
        finally:
            await gate.aclose()

    metrics.count_verdicts(asyncio.run(go()))
    assert [counted(v) for v in Verdict] == [1, 1, 0]  # small passes, big fails


def test_a_registry_failure_is_its_answer(registry: Registry, tmp_path: Path, toy_rule: LayerCountAnswerer) -> None:
    policy = _policy(registry, tmp_path)
    missing = f"{registry.host}/tool-a/missing:1"
    decision = _settled(policy, _pod(missing), Webhook.VALIDATE)
    (finding,) = decision.findings
    assert finding.rule == "layers-unverified" and "no such tag or repository" in finding.reason


def test_a_question_without_an_answerer_is_never_an_allow(registry: Registry, tmp_path: Path) -> None:
    policy = _policy(registry, tmp_path)
    register_image_rule(MaxLayers(3))
    try:
        with pytest.raises(LookupError, match="no answerer is registered for LayerCountQuestion"):
            _settled(policy, _pod(f"{registry.host}/tool-a/small:1"), Webhook.VALIDATE)
    finally:
        unregister_image_rule(MaxLayers.name)
