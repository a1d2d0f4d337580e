"""Content rules judged for an image read from its registry: within a request's budget when the
files are at hand, in the background when they are not.

:meth:`ContentJudge.answer` resolves the image (the client's caches, single flight), then looks
for the verdicts of these rules on that digest (kept by digest and rules: a later request asks
nothing of the registry). Otherwise it starts the read (shell/registry/contents.py: every platform
a node might pull, layers read once per process) and the judgement (core/contents/: inventory,
rules), and waits for it at most ``budget`` seconds: a cold read of a large image does not fit in
an admission request, so the read goes on in the background, the answer says ``pending`` (the
rule's ``onError`` decides: enforce denies with "being read, retry shortly", which Kubernetes'
controllers do), and the request after it finds the verdicts. Concurrent requests for one image
share one read. A read that fails is an answer with its ``problem`` (the rule's ``onError``
again). When the failure is the image's bytes (a :class:`ContentReadError`: a bomb, a digest
mismatch, a corrupt, truncated or hostile layer, a limit), that answer is kept for its digest, the
rules and the limits for ``registry.contents.failureTtlSeconds``: a tenant asking again and again
for a broken image makes imagegate stream its layers at most once per that time. A failure of the
registry (a timeout, an HTTP 5xx, a connection refused) says nothing of the image: never kept,
the next request reads again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from cachetools import LRUCache

from imagegate.core.contents.files import FileSelection
from imagegate.core.contents.inventory import INVENTORY_FILES, read_inventory
from imagegate.core.contents.limits import ContentLimits
from imagegate.core.contents.policy import ContentAnswer, ContentRule, ContentVerdict, judge
from imagegate.core.policy import ContactScope
from imagegate.core.reference import Reference
from imagegate.shell.registry.client import RegistryClient
from imagegate.shell.registry.contents import ContentReadError, reader_for
from imagegate.shell.registry.errors import RegistryError

__all__ = ["VERDICTS_KEPT", "ContentJudge"]

VERDICTS_KEPT = 4096  # images' verdicts kept (a few hundred bytes each)
FAILURES_KEPT = 1024  # images' failed reads kept, each until its failureTtlSeconds ends

_Key = tuple[str, tuple[ContentRule, ...]]


class ContentJudge:
    """Judges content rules on images, keeping verdicts by image digest; one per process.
    ``clock`` (monotonic seconds) ends kept failures: a test's own clock moves them on."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._verdicts: LRUCache[_Key, tuple[ContentVerdict, ...]] = LRUCache(VERDICTS_KEPT)
        # failed reads of an image's bytes, by digest, rules and limits: (the answer, when it ends)
        self._failures: LRUCache[tuple[str, tuple[ContentRule, ...], ContentLimits], tuple[ContentAnswer, float]] = (
            LRUCache(FAILURES_KEPT)
        )
        # answers in the making, by reference and rules: one read per image however many ask
        self._reads: dict[_Key, asyncio.Task[ContentAnswer]] = {}
        self.reads_started = 0  # judgements that had to read the image's files (tests, metrics)

    def known(self, digest: str, rules: Sequence[ContentRule]) -> tuple[ContentVerdict, ...] | None:
        """The verdicts of ``rules`` on ``digest`` when they are kept (no await: the warm path)."""
        return self._verdicts.get((digest, tuple(rules)))

    async def answer(
        self,
        client: RegistryClient,
        ref: Reference,
        rules: Sequence[ContentRule],
        budget: float | None,
        limits: ContentLimits | None = None,
        scope: ContactScope | None = None,
    ) -> ContentAnswer:
        """The verdicts of ``rules`` on the image ``ref`` names, waiting at most ``budget`` seconds
        (None: until they are found, or the read fails); past it the answer is ``pending`` and the
        resolution and read go on."""
        key = (str(ref), tuple(rules))
        task = self._reads.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._answer(client, ref, key[1], limits, scope))
            # a read that fails after its requests gave up is said by the next request, which reads again
            task.add_done_callback(lambda done: done.cancelled() or done.exception())
            task.add_done_callback(lambda _done: self._reads.pop(key, None))
            self._reads[key] = task
        done, _ = await asyncio.wait({task}, timeout=None if budget is None else max(0.0, budget))
        return task.result() if done else ContentAnswer(pending=True)

    async def settled(self) -> None:
        """Wait for the reads in flight (a test's sync point)."""
        while self._reads:
            await asyncio.wait(set(self._reads.values()))

    async def aclose(self) -> None:
        """Cancel the reads in flight (a server's shutdown: nobody waits for their verdicts, and
        their registry clients are about to close); verdicts already kept stay."""
        loop = asyncio.get_running_loop()
        reads = [task for task in self._reads.values() if task.get_loop() is loop]  # others' loops are gone
        for task in reads:
            task.cancel()
        if reads:
            await asyncio.wait(reads)
        self._reads.clear()

    async def _answer(
        self,
        client: RegistryClient,
        ref: Reference,
        rules: tuple[ContentRule, ...],
        limits: ContentLimits | None,
        scope: ContactScope | None,
    ) -> ContentAnswer:
        try:
            resolved = await client.resolve(ref)
        except RegistryError as exc:
            return ContentAnswer(problem=str(exc), kind=_kind(exc))
        key = (resolved.digest, rules)
        kept = self._verdicts.get(key)
        if kept is not None:
            return ContentAnswer(kept, resolved.digest)
        limits = limits or ContentLimits()
        failure_key = (resolved.digest, rules, limits)
        failed = self._failures.get(failure_key)
        if failed is not None:
            if self._clock() < failed[1]:
                return failed[0]
            del self._failures[failure_key]
        self.reads_started += 1
        selection = FileSelection()
        for rule in rules:
            selection |= rule.files
        try:
            reader = reader_for(client, limits, scope=scope)
            per_platform = []
            for image in resolved.platforms:  # every platform a node might pull: a rule must hold on each
                files = await reader.read_image(ref, image, selection | INVENTORY_FILES)
                inventory = await asyncio.to_thread(read_inventory, files)
                per_platform.append(
                    (image.platform, [judge(rule, inventory, files, resolved.digest) for rule in rules])
                )
        except ContentReadError as exc:  # the image's bytes: the same until the digest changes
            answer = ContentAnswer(digest=resolved.digest, problem=str(exc), kind=_kind(exc))
            if limits.failure_ttl_seconds > 0:
                ends = self._clock() + limits.failure_ttl_seconds
                self._failures[failure_key] = (answer, ends)
            return answer
        except RegistryError as exc:  # the registry's (timeout, 5xx, connection): asked again next time
            return ContentAnswer(digest=resolved.digest, problem=str(exc), kind=_kind(exc))
        verdicts = tuple(_combined(rule, per_platform, index, resolved.digest) for index, rule in enumerate(rules))
        self._verdicts[key] = verdicts
        return ContentAnswer(verdicts, resolved.digest)


def _kind(exc: RegistryError) -> str:
    """The class of a failed read, for its denial: the content's fault when it is one, else the registry's."""
    return str(exc.content if isinstance(exc, ContentReadError) else exc.kind)


def _combined(
    rule: ContentRule, per_platform: list[tuple[str, list[ContentVerdict]]], index: int, digest: str
) -> ContentVerdict:
    """One rule's verdict over every platform: its failures, each named by platform when there are several."""
    failures: list[str] = []
    for platform, verdicts in per_platform:
        prefix = f"{platform}: " if len(per_platform) > 1 else ""
        failures.extend(prefix + failure for failure in verdicts[index].failures)
    return ContentVerdict(rule.name, not failures, tuple(failures), rule.mode, digest)
