"""The answering seam's framework: what an answerer is given (:class:`Asking`), what it is
(:class:`Answerer`), and the registry of one answerer per question type.

The built-in answerers and :func:`~imagegate.shell.registry.answerers.answer` live in
shell/registry/answerers.py, which imports every built-in answerer (the content rules' one
from its own module): an answerer's module imports this one, never answerers.py, so that
answerers.py can import it without a cycle.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from imagegate.core.decide import Decision
from imagegate.core.policy import Policy
from imagegate.core.records import NO_ANSWERS, Answers, Question, Webhook
from imagegate.core.reference import Reference
from imagegate.shell.registry.gate import RegistryGate, decision_deadline

__all__ = ["Answerer", "Asking", "answered", "answerer_for", "close_answerers", "register", "unregister"]

Q = TypeVar("Q", bound=Question[Any])
A = TypeVar("A")


@dataclass
class Asking:
    """What an answerer is given beside its question: the gate (clients, caches, checkers), the
    policy, the decision that asks, the deadline of all its lookups, the answers known so far
    (an ``after_others`` answerer sees the others'), and notes for the user."""

    gate: RegistryGate
    policy: Policy
    decision: Decision
    ends: float  # the loop time the decision's lookups must end by
    earlier: Answers = NO_ANSWERS
    moved: frozenset[Reference] = frozenset()  # tags the answers disagreed about (moved while looked up)
    notes: list[str] = field(default_factory=list)
    # whom the answers are for: a served request (validate, mutate) answers within its budget and
    # is sent again; ``check`` is asked once, by a command that must say what it found
    webhook: Webhook = Webhook.VALIDATE

    def deadline(self) -> AbstractAsyncContextManager[object]:
        """The deadline of the decision's registry lookups (``registry.lookupTimeoutSeconds``)."""
        return decision_deadline(self.policy, self.ends)

    def verified_digest(self, ref: Reference) -> str | None:
        """The digest an answer about ``ref`` judged (all agree, else ``ref`` is in ``moved``)."""
        for question, found in self.earlier.found.items():
            if question.ref == ref:
                digests = question.judged_digests(found)
                if digests:
                    return digests[0]
        return None


class Answerer(Generic[Q, A]):
    """Answers one type of question (see the module's docstring)."""

    question: ClassVar[type[Question[Any]]]
    after_others: ClassVar[bool] = False

    def known(self, asking: Asking, question: Q) -> A | None:
        """The answer from what is remembered alone (no await), or None: it must be looked up."""
        return None

    async def answer(self, asking: Asking, question: Q) -> A | None:  # pragma: no cover - each answerer has its own
        raise NotImplementedError

    async def aclose(self) -> None:
        """Stop what it does in the background (a server's shutdown); nothing by default."""


_ANSWERERS: dict[type[Question[Any]], Answerer[Any, Any]] = {}


def register(answerer: Answerer[Any, Any]) -> None:
    """Answer ``answerer.question`` with ``answerer`` from now on (one answerer per question type)."""
    known = _ANSWERERS.get(answerer.question)
    if known is not None and known is not answerer:
        raise ValueError(f"{answerer.question.__name__} has an answerer already: {type(known).__name__}")
    _ANSWERERS[answerer.question] = answerer


def unregister(question: type[Question[Any]]) -> None:
    """Forget the answerer of ``question`` (a test's own rule, when the test ends)."""
    _ANSWERERS.pop(question, None)


def answered() -> tuple[type[Question[Any]], ...]:
    """The question types answered now (what the verdict metric starts its series from)."""
    return tuple(_ANSWERERS)


async def close_answerers() -> None:
    """Stop every answerer's background work (before the gate's clients close: it uses them)."""
    for answerer in list(_ANSWERERS.values()):
        await answerer.aclose()


def answerer_for(question: Question[Any]) -> Answerer[Any, Any]:
    found = _ANSWERERS.get(type(question))
    if found is None:  # a rule asking what nothing answers is a bug: never an allow
        raise LookupError(f"no answerer is registered for {type(question).__name__}")
    return found
