"""The content rules at admission (issue 25 item 4): one piece (core/contents/admission.py) and one
answerer (shell/registry/content_answerer.py), through the decision/registry seam.

Pure decisions with the answers written out: offline, a read still going on, a read that failed,
verdicts, a grant's proof. Then through the gate against docker-registry, with images of real
Debian files (the images tests/test_content_scan.py pushes), and a fresh webhook under load while
its reads are cold. Every case of issue 25 item 6 through /validate and `check --registry`:
tests/test_content_end_to_end.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from imagegate.core.contents.admission import CONTENT_FAILED, CONTENT_UNVERIFIED, ContentQuestion
from imagegate.core.contents.policy import ContentAnswer, ContentVerdict
from imagegate.core.decide import decide
from imagegate.core.policy import Policy, load_policy
from imagegate.core.questions import BaseQuestion
from imagegate.core.records import Answers, BaseImageVerdict, Decision, Question, Verdict, Webhook
from imagegate.core.reference import parse_docker_ref
from imagegate.shell.registry.answerers import settle
from imagegate.shell.registry.content_answerer import ANSWERER
from imagegate.shell.registry.gate import RegistryGate
from tests.conftest import POLICY_HEADER
from tests.registry_process import UNHURRIED, Registry
from tests.test_content_scan import registry  # noqa: F401 (the module's fixture: images of real files)

NOW = dt.datetime(2026, 12, 7, tzinfo=dt.UTC)
IMAGE = "ghcr.io/example/app:1"
RULES = r"""content:
  rules:
    - name: toolforge-integration
      grants: true
      requirePackages: [{name: libnss-sss}]
"""


def _policy(grant: str = "{namespace: tool-a}", extra: str = "") -> Policy:
    return load_policy(POLICY_HEADER + RULES + extra + f"byoc:\n  grants:\n    - {grant}\n")


def _pod(image: str = IMAGE) -> dict[str, Any]:
    return {"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": image}]}}


def _decide(policy: Policy, answers: Answers | None = None, namespace: str = "tool-a") -> Decision:
    return decide(policy, _pod(), namespace=namespace, now=NOW, answers=answers or Answers())


def _question(policy: Policy) -> ContentQuestion:
    ref = parse_docker_ref(IMAGE)
    return ContentQuestion(ref, policy.content.rules_for(ref, granted=True))


def test_offline_the_rule_asks_and_denies_unverified() -> None:
    policy = _policy()
    decision = _decide(policy)
    assert decision.questions == (_question(policy),)
    (finding,) = decision.findings
    assert finding.rule == CONTENT_UNVERIFIED and not decision.allowed
    assert "its content was not read (no registry lookup in this evaluation)" in finding.reason
    # a namespace without a grant: admission denies first, the content is never asked about
    assert not _decide(policy, namespace="tool-b").questions


def test_a_read_still_going_on_gets_the_rules_on_error() -> None:
    policy = _policy()
    pending = Answers({_question(policy): ContentAnswer(pending=True)})
    denied = _decide(policy, pending)
    assert not denied.allowed
    assert "fails the content rule toolforge-integration: its content is being read, retry shortly" in denied.message()
    lenient = load_policy(
        POLICY_HEADER
        + RULES.replace("grants: true", "grants: true\n      onError: allow")
        + "byoc:\n  grants:\n    - {namespace: tool-a}\n"
    )
    allowed = _decide(lenient, Answers({_question(lenient): ContentAnswer(pending=True)}))
    assert allowed.allowed and not allowed.findings
    assert any("its content is being read, retry shortly (allowed by its onError: allow)" in n for n in allowed.notices)


def test_verdicts_decide_and_the_grant_mode_weakens_them() -> None:
    policy = _policy()
    failed = ContentVerdict("toolforge-integration", False, ("libnss-sss is not installed (dpkg lists 96 packages)",))
    answers = Answers({_question(policy): ContentAnswer((failed,), "sha256:" + "a" * 64)})
    decision = _decide(policy, answers)
    (finding,) = decision.findings
    assert finding.rule == CONTENT_FAILED and finding.mode.value == "enforce"
    assert finding.message == (
        "container \"c\" image 'ghcr.io/example/app:1' fails the content rule toolforge-integration: "
        "libnss-sss is not installed (dpkg lists 96 packages)"
    )
    warned = _policy("{namespace: tool-a, mode: warn}")
    decision = _decide(warned, Answers({_question(warned): ContentAnswer((failed,), "sha256:" + "a" * 64)}))
    assert decision.allowed and [f.mode.value for f in decision.findings] == ["warn"]
    ok = ContentVerdict("toolforge-integration", True)
    assert _decide(policy, Answers({_question(policy): ContentAnswer((ok,), "sha256:" + "a" * 64)})).allowed


def test_each_rule_is_a_verdict_for_the_metric() -> None:
    """imagegate_verdicts_total{check="content"}: the question says its check and each rule's verdict
    (the metric's code names no question type)."""
    policy = _policy(extra=RULES.replace("content:\n  rules:\n", "").replace("toolforge-integration", "second"))
    question = _question(policy)
    assert question.check == "content" and len(question.rules) == 2
    passed, failed = ContentVerdict("toolforge-integration", True), ContentVerdict("second", False, ("gone",))
    assert question.verdicts(ContentAnswer((passed, failed), "sha256:" + "a" * 64)) == (Verdict.PASS, Verdict.FAIL)
    assert question.verdicts(ContentAnswer(pending=True)) == (Verdict.FAIL, Verdict.FAIL)  # onError: deny
    lenient = _policy(
        extra=RULES.replace("grants: true", "grants: true\n      onError: allow")
        .replace("content:\n  rules:\n", "")
        .replace("toolforge-integration", "second")
    )
    assert _question(lenient).verdicts(ContentAnswer(problem="unreachable")) == (Verdict.FAIL, Verdict.UNVERIFIED)


def test_a_grants_proof() -> None:
    ref = parse_docker_ref(IMAGE)
    bases = "baseImages: {trusted: [docker-registry.svc.toolforge.org/toolforge-bookworm-sssd]}\nregistry: {contact: [ghcr.io]}\n"
    layers = _decide(_policy("{namespace: tool-a, proof: layers}", bases))
    assert [type(q) for q in layers.questions] == [BaseQuestion]  # the grant rules are not asked
    content = _decide(_policy("{namespace: tool-a, proof: content}", bases))
    assert [type(q) for q in content.questions] == [ContentQuestion]  # no base check
    unset = _decide(_policy("{namespace: tool-a, requireBaseImage: true}", bases))
    assert {type(q) for q in unset.questions} == {BaseQuestion, ContentQuestion}  # both, as written
    either = _policy("{namespace: tool-a, proof: either}", bases)
    failed = ContentVerdict("toolforge-integration", False, ("libnss-sss is not installed (dpkg lists 9 packages)",))
    content_fails: dict[Question[Any], Any] = {_question(either): ContentAnswer((failed,), "sha256:" + "a" * 64)}
    on_base = Answers({**content_fails, BaseQuestion(ref): BaseImageVerdict(True, "toolforge-bookworm-sssd:1")})
    assert _decide(either, on_base).allowed  # proved by its layers
    off_base = Answers({**content_fails, BaseQuestion(ref): BaseImageVerdict(False, "on no trusted base")})
    assert not _decide(either, off_base).allowed
    both = _decide(_policy("{namespace: tool-a, proof: both}", bases))
    assert {type(q) for q in both.questions} == {BaseQuestion, ContentQuestion}


def test_through_the_gate_against_a_real_registry(registry: tuple[Registry, Path]) -> None:  # noqa: F811
    """The webhook's path: decide, the answerers (this one reading the image's real files), decide again."""
    reg, policy_path = registry
    text = policy_path.read_text().replace("registry: {", f"registry: {{contact: [{reg.host}], ")
    policy = load_policy(text + "byoc:\n  grants:\n    - {namespace: tool-a}\n", str(policy_path))

    def settled(image: str) -> Decision:
        def evaluate(answers: Answers) -> Decision:
            return decide(policy, _pod(image), namespace="tool-a", now=NOW, answers=answers, webhook=Webhook.VALIDATE)

        async def go() -> Decision:
            gate = RegistryGate(policy_path.parent)
            try:
                decision = await settle(gate, policy, evaluate, lambda d: d, webhook=Webhook.VALIDATE)
                await ANSWERER.judge.settled()
                return decision
            finally:
                await gate.aclose()

        return asyncio.run(go())

    integrated = settled(f"{reg.host}/tools/integrated:1")
    assert integrated.allowed, integrated.message()
    # the open-source rule (warn): unrar is from non-free
    assert [f.reason for f in integrated.warnings] == [
        "fails the content rule open-source: 1 package under licences that are not OSI-approved or FSF-libre: "
        "unrar (non-free)"
    ]
    removed = settled(f"{reg.host}/tools/removed:1")
    assert not removed.allowed
    assert "fails the content rule toolforge-integration: libnss-sss is not installed (dpkg lists " in removed.message()


def test_a_warm_answer_comes_from_known_alone(registry: tuple[Registry, Path]) -> None:  # noqa: F811
    """Once the tag's digest and its verdicts are kept, ``known()`` answers with no task and no
    await (the warm path, measured by bench/content_bench.py); before, and for an image the policy
    does not let imagegate contact, it leaves the answer to ``answer()``."""
    from imagegate.shell.registry.answerers import Asking, answer  # noqa: PLC0415

    reg, policy_path = registry
    text = policy_path.read_text().replace("registry: {", f"registry: {{contact: [{reg.host}], ")
    policy = load_policy(text + "byoc:\n  grants:\n    - {namespace: tool-a}\n", str(policy_path))
    image = f"{reg.host}/tools/apps:1"
    decision = decide(policy, _pod(image), namespace="tool-a", now=NOW, webhook=Webhook.VALIDATE)
    (question,) = [q for q in decision.questions if isinstance(q, ContentQuestion)]

    async def go() -> None:
        gate = RegistryGate(policy_path.parent)
        try:
            asking = Asking(gate, policy, decision, asyncio.get_running_loop().time() + 30)
            assert ANSWERER.known(asking, question) is None  # a fresh gate knows no tag: answer() looks it up
            first = await ANSWERER.answer(asking, question)
            await ANSWERER.judge.settled()
            if first.pending:
                first = await ANSWERER.answer(asking, question)
            warm = ANSWERER.known(asking, question)
            assert warm is not None and warm == first and warm.digest is not None
            fetches = dict(gate.client(policy.registry).fetches)
            reads = ANSWERER.judge.reads_started
            found = await answer(gate, policy, decision, webhook=Webhook.VALIDATE)
            assert found.get(question) == warm
            assert gate.client(policy.registry).fetches == fetches and ANSWERER.judge.reads_started == reads
            elsewhere = ContentQuestion(parse_docker_ref("elsewhere.example/tool/app:1"), question.rules)
            assert ANSWERER.known(asking, elsewhere) is None  # answer() says it is not contacted
        finally:
            await gate.aclose()

    asyncio.run(go())


def test_check_waits_for_a_cold_read_a_served_request_does_not(registry: tuple[Registry, Path]) -> None:  # noqa: F811
    """With the lookup budget spent, a served request's cold read answers "being read" (the read
    goes on: the API server's retry finds it); ``check``'s waits for the verdict, since nobody asks
    a command again and "being read, retry shortly" is no verdict."""
    from imagegate.shell.registry.answerers import Asking  # noqa: PLC0415

    reg, policy_path = registry
    text = policy_path.read_text().replace("registry: {", f"registry: {{contact: [{reg.host}], ")
    # a rule set of this test's own: no verdict kept by the process's judge from another test
    policy = load_policy(
        text.replace("name: open-source", "name: open-source-cold") + "byoc:\n  grants:\n    - {namespace: tool-a}\n"
    )
    ref = parse_docker_ref(f"{reg.host}/tools/removed:1")
    question = ContentQuestion(ref, policy.content.rules_for(ref, granted=True))

    async def go(webhook: Webhook) -> ContentAnswer:
        gate = RegistryGate(policy_path.parent)  # its own clients: every layer cold
        try:
            spent = asyncio.get_running_loop().time()  # the budget is used up already
            asking = Asking(gate, policy, Decision("Pod", "p", "tool-a", governed=True), spent, webhook=webhook)
            answer = await ANSWERER.answer(asking, question)
            await ANSWERER.judge.settled()
            return answer
        finally:
            await gate.aclose()

    served = asyncio.run(go(Webhook.VALIDATE))
    assert served.pending and not served.verdicts
    checked = asyncio.run(go(Webhook.CHECK))
    assert not checked.pending and not checked.problem
    integration = {v.rule: v for v in checked.verdicts}["toolforge-integration"]
    assert not integration.ok and integration.failures[0].startswith("libnss-sss is not installed (dpkg lists ")


@pytest.mark.parametrize(
    "budget", [UNHURRIED, "timeoutSeconds: 0.3, lookupTimeoutSeconds: 0.3"], ids=["unhurried", "short"]
)
def test_the_webhook_under_load_while_cold_reads_happen(
    registry: tuple[Registry, Path],  # noqa: F811
    tmp_path: Path,
    budget: str,
) -> None:
    """200 reviews over 20 connections to a fresh ``imagegate serve`` (every read cold): the
    integrated image, one whose later layer purges libnss-sss, and a trusted image no content rule
    covers. Each answer is its image's verdict or, while the read goes on, "being read, retry
    shortly" (a denial); never a 500, never the broken image allowed; and a review sent after an
    image's first verdict came back gets that verdict (the read is cached, not repeated). With the
    suite's unhurried lookup budget the reads finish within it; with a short one (0.3 s) many
    answers are "being read" until the background read lands."""
    import ssl  # noqa: PLC0415
    import time  # noqa: PLC0415

    import httpx  # noqa: PLC0415

    from tests.conftest import admission_review  # noqa: PLC0415
    from tests.webhook_process import run_webhook  # noqa: PLC0415

    reg, policy_path = registry
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        policy_path.read_text()
        .replace("registry: {", f"registry: {{contact: [{reg.host}], ")
        .replace(UNHURRIED, budget)  # the registry fixture's policy has the unhurried budget
        + "trusted: [docker-registry.svc.toolforge.org]\nbyoc:\n  grants:\n    - {namespace: tool-a}\n"
    )
    images = {
        "integrated": f"{reg.host}/tools/integrated:1",
        "removed": f"{reg.host}/tools/removed:1",
        "trusted": "docker-registry.svc.toolforge.org/toolforge-python311-sssd-base:latest",
    }
    being_read = "fails the content rule toolforge-integration: its content is being read, retry shortly"
    missing = "fails the content rule toolforge-integration: libnss-sss is not installed (dpkg lists "
    timed_out = "lookup took longer than 0.3s (registry.lookupTimeoutSeconds)"
    order = [name for _ in range(67) for name in images][:200]

    async def load(webhook_url: str, ca: Path) -> list[tuple[str, float, float, int, dict[str, Any]]]:
        limits = httpx.Limits(max_connections=20, max_keepalive_connections=20)
        verify = ssl.create_default_context(cafile=str(ca))
        async with httpx.AsyncClient(base_url=webhook_url, verify=verify, limits=limits, timeout=60) as client:
            gate = asyncio.Semaphore(20)

            async def one(name: str) -> tuple[str, float, float, int, dict[str, Any]]:
                async with gate:
                    sent = time.monotonic()
                    reply = await client.post("/validate", json=admission_review(_pod(images[name]), "tool-a"))
                    body = reply.json() if reply.status_code == 200 else {}
                    return name, sent, time.monotonic(), reply.status_code, body.get("response", {})

            return await asyncio.gather(*(one(name) for name in order))

    def final(name: str, response: dict[str, Any]) -> bool:
        """Whether ``response`` is ``name``'s verdict (not the read still going on)."""
        message = response.get("status", {}).get("message", "")
        if name == "removed":
            return response["allowed"] is False and missing in message and being_read not in message
        return response["allowed"] is True

    with run_webhook(tmp_path / "webhook", policy=policy) as webhook:
        results = asyncio.run(load(webhook.url, webhook.tls.ca_cert))
        assert [status for *_, status, _ in results if status != 200] == []  # none a 500 (nor anything else)
        first_verdict: dict[str, float] = {}
        for name, _, received, _, response in results:
            message = response.get("status", {}).get("message", "")
            if final(name, response):
                first_verdict[name] = min(first_verdict.get(name, received), received)
            else:  # only a read still going on may answer otherwise, and it denies (onError: deny)
                assert name != "trusted" and response["allowed"] is False, (name, response)
                # with the short budget on a loaded machine the tag's lookup itself may not finish
                # within it: the same onError, said as the lookup's timeout
                assert being_read in message or (budget != UNHURRIED and timed_out in message), (name, message)
        assert not any(name == "removed" and response["allowed"] for name, *_, response in results)
        for name, sent, _, _, response in results:
            if name in first_verdict and sent > first_verdict[name]:
                assert final(name, response), (name, response)
        # once the reads are done every image gets its verdict (the reads go on in the background)
        client = webhook.client()
        deadline = time.monotonic() + 20
        for name, image in images.items():
            while not final(
                name,
                response := client.post("/validate", json=admission_review(_pod(image), "tool-a")).json()["response"],
            ):
                assert time.monotonic() < deadline, (name, response)
                time.sleep(0.2)
        assert "Traceback" not in webhook.logs()


def test_audit_compare_reads_the_registry_when_asked(registry: tuple[Registry, Path], tmp_path: Path) -> None:  # noqa: F811
    """`audit --compare`: offline, a granted image's content is unread and the option lets nothing
    in, counted apart as what it would let in once proved; with --registry each option's
    questions are answered and the integrated image is let in, the broken one still denied."""
    import json  # noqa: PLC0415

    from tests.conftest import run_imagegate  # noqa: PLC0415

    reg, policy_path = registry
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_path.read_text().replace("registry: {", f"registry: {{contact: [{reg.host}], "))
    dump = tmp_path / "dump.yaml"
    dump.write_text(
        "\n---\n".join(
            json.dumps(
                {"apiVersion": "v1", **_pod(f"{reg.host}/tools/{name}:1"), "metadata": {"name": name, "namespace": ns}}
            )
            for name, ns in (("integrated", "tool-a"), ("removed", "tool-b"))
        )
    )
    args = ["audit", "--from", str(dump), "-p", str(policy), "--compare", "closed", "selected", "-o", "json"]
    selected = ["--select", "tool-a", "--select", "tool-b"]
    offline = json.loads(run_imagegate(*args, *selected).stdout)
    assert offline["deniedObjects"] == [2, 2] and offline["unreadObjects"] == [0, 2]
    assert offline["rules"] == {"content-unverified": [0, 2], "untrusted-registry": [2, 0]}
    assert [(i["objects"], i["ifProved"], i["ifProvedTools"]) for i in offline["letsIn"]] == [
        (0, 0, []),
        (0, 2, ["tool-a", "tool-b"]),
    ]
    read = run_imagegate(*args, *selected, "--registry")
    assert read.returncode == 1, read.stderr  # closed denies both; selected denies the broken one
    answered = json.loads(read.stdout)
    assert answered["deniedObjects"] == [2, 1] and answered["unreadObjects"] == [0, 0]
    assert answered["rules"] == {"content-mismatch": [0, 1], "untrusted-registry": [2, 0]}
    assert answered["namespaces"]["tool-b"]["rules"] == [["untrusted-registry"], ["content-mismatch"]]
    assert [(i["objects"], i["tools"], i["ifProved"]) for i in answered["letsIn"]] == [(0, [], 0), (1, ["tool-a"], 0)]
    table = run_imagegate("audit", "--from", str(dump), "-p", str(policy), "--compare", "closed", "selected", *selected)
    assert "objects denied only for want of a registry answer" in table.stdout
    assert "run with --registry" in table.stdout
