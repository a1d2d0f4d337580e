"""The answerer of the content rules' question (core/contents/admission.py): the image's files
read from its registry and the rules judged (shell/registry/content_verdicts.py), within what is
left of the decision's lookup budget; a cold read that does not fit answers ``pending`` and goes
on in the background, so a later request finds its verdicts. ``check`` (a command, asked once:
nobody sends it again) waits for the read instead, which ``registry.contents.timeoutSeconds``
bounds. Registered when imported.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from imagegate.core.contents.admission import ContentQuestion
from imagegate.core.contents.policy import ContentAnswer
from imagegate.core.policy import contact_refusal
from imagegate.core.records import Webhook
from imagegate.shell.registry.answering import Answerer, Asking, register

if TYPE_CHECKING:
    from imagegate.shell.registry.content_verdicts import ContentJudge

__all__ = ["ContentAnswerer"]


class ContentAnswerer(Answerer[ContentQuestion, ContentAnswer]):
    question = ContentQuestion

    def __init__(self) -> None:
        self._judge: ContentJudge | None = None

    @property
    def judge(self) -> ContentJudge:
        """The process's verdicts and reads in flight; the reader and parsers loaded on first use."""
        if self._judge is None:
            from imagegate.shell.registry.content_verdicts import ContentJudge  # noqa: PLC0415 (only when a rule asks)

            self._judge = ContentJudge()
        return self._judge

    async def aclose(self) -> None:
        if self._judge is not None:
            await self._judge.aclose()

    def known(self, asking: Asking, question: ContentQuestion) -> ContentAnswer | None:
        """The verdicts kept for the digest the tag is known to point at (the client's tag cache,
        which expires as for every other lookup), with no task and no await: the warm path. None
        when anything must be looked up or said (:meth:`answer` does it)."""
        judge, policy, ref = self._judge, asking.policy, question.ref
        if judge is None or not policy.contact_scope().allows(ref):
            return None
        client = asking.gate.known_client(policy.registry)
        digest = client.known_digest(ref) if client is not None else None
        if digest is None:
            return None
        verdicts = judge.known(digest, question.rules)
        return None if verdicts is None else ContentAnswer(verdicts, digest)

    async def answer(self, asking: Asking, question: ContentQuestion) -> ContentAnswer:
        policy, ref = asking.policy, question.ref
        scope = policy.contact_scope()
        if not scope.allows(ref):  # a tenant's image never makes imagegate connect wherever it says
            return ContentAnswer(problem=contact_refusal(ref))
        # a served request answers in time and its read goes on ("being read, retry shortly");
        # `check` has nobody to retry: "being read" would be a verdict it never reached
        budget = None if asking.webhook is Webhook.CHECK else asking.ends - asyncio.get_running_loop().time()
        client = asking.gate.client(policy.registry)
        return await self.judge.answer(client, ref, question.rules, budget, policy.registry.contents, scope)


ANSWERER = ContentAnswerer()
register(ANSWERER)
