"""Leader election on a ``coordination.k8s.io/v1`` Lease, as client-go's leaderelection does it.

Every replica runs this; the one whose identity the Lease holds, renewed within the renew
deadline, is the leader. A holder's lease is taken over only after it has not changed for
``leaseDurationSeconds`` as *this* replica observed it (its own monotonic clock: no trust in
another machine's clock). Every update carries ``resourceVersion``, so two replicas racing for
the Lease cannot both win (the API server refuses the second with 409).

The Lease also carries what the leader must remember across a failover: the grant Events
already sent today (an annotation), so a new leader does not send them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import Callable

import httpx2 as httpx  # lightkube 1.0 raises httpx2's errors (a fork of httpx), not httpx's
from lightkube import ApiError, AsyncClient
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

from imagegate.shell.logs import get_logger

__all__ = ["LeaderElector"]

log = get_logger("imagegate.reports")


def _micro_time(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC)


class LeaderElector:
    def __init__(
        self,
        client: AsyncClient,
        namespace: str,
        name: str,
        identity: str,
        duration: float,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration = duration
        self.renew_deadline = duration * 2 / 3
        self.retry = max(duration / 5, 0.2)
        self.on_change = on_change
        self.annotations: dict[str, str] = {}  # the leader's own, written with each renewal
        self._leading = False
        self._renewed = 0.0  # monotonic time of our last successful write of the Lease
        self._observed: tuple[str | None, object] | None = None
        self._observed_at = 0.0
        self._wake = asyncio.Event()

    @property
    def is_leader(self) -> bool:
        """Ours, and renewed recently enough that no other replica can have taken it yet."""
        return self._leading and time.monotonic() - self._renewed < self.renew_deadline

    def _set_leading(self, leading: bool) -> None:
        if leading != self._leading:
            self._leading = leading
            log.info("leader" if leading else "not leader", identity=self.identity, lease=self.name)
            if self.on_change is not None:
                self.on_change(leading)

    def renew_soon(self) -> None:
        """Write the Lease now (new annotations), not at the next retry."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._attempt()
            except ApiError as exc:
                log.warning("lease", error=exc.status.message, code=exc.status.code)
            except httpx.HTTPError as exc:
                log.warning("lease: no answer from the API server", error=str(exc))
            if self._leading and not self.is_leader:
                self._set_leading(False)  # could not renew in time: another replica may take it
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(first_of(stop, self._wake), timeout=self.retry)
        await self.release()

    async def _attempt(self) -> None:
        now = dt.datetime.now(dt.UTC)
        try:
            lease = await self.client.get(Lease, self.name, namespace=self.namespace)
        except ApiError as exc:
            if exc.status.code != 404:
                raise
            await self._create(now)
            return
        spec = lease.spec or LeaseSpec()
        if lease.metadata is not None and lease.metadata.annotations and not self._leading:
            # what the last leader remembered (Events sent today), taken over with the Lease
            self.annotations = {
                k: v for k, v in lease.metadata.annotations.items() if k.startswith("imagegate.toolforge.org/")
            }
        if spec.holderIdentity == self.identity:
            await self._write(lease, spec, now, acquired=False)
            return
        seen = (spec.holderIdentity, spec.renewTime)
        if seen != self._observed:
            self._observed, self._observed_at = seen, time.monotonic()
        duration = spec.leaseDurationSeconds or self.duration
        if spec.holderIdentity and time.monotonic() - self._observed_at < duration:
            self._set_leading(False)
            return
        await self._write(lease, spec, now, acquired=True)

    async def _create(self, now: dt.datetime) -> None:
        lease = Lease(
            metadata=ObjectMeta(name=self.name, namespace=self.namespace, annotations=dict(self.annotations) or None),
            spec=LeaseSpec(
                holderIdentity=self.identity,
                leaseDurationSeconds=max(1, round(self.duration)),
                acquireTime=_micro_time(now),
                renewTime=_micro_time(now),
                leaseTransitions=0,
            ),
        )
        try:
            await self.client.create(lease)
        except ApiError as exc:
            if exc.status.code == 409:
                return  # another replica made it first
            raise
        self._renewed = time.monotonic()
        self._set_leading(True)

    async def _write(self, lease: Lease, spec: LeaseSpec, now: dt.datetime, *, acquired: bool) -> None:
        spec.holderIdentity = self.identity
        spec.leaseDurationSeconds = max(1, round(self.duration))
        spec.renewTime = _micro_time(now)
        if acquired:
            spec.acquireTime = _micro_time(now)
            spec.leaseTransitions = (spec.leaseTransitions or 0) + 1
        lease.spec = spec
        if lease.metadata is not None and self.annotations:
            lease.metadata.annotations = {**(lease.metadata.annotations or {}), **self.annotations}
        try:
            await self.client.replace(lease)  # carries resourceVersion: a racing write loses with 409
        except ApiError as exc:
            if exc.status.code == 409:
                return  # changed under us: read it again at the next retry
            raise
        self._renewed = time.monotonic()
        if acquired:
            log.info("lease acquired", identity=self.identity, previous=self._observed[0] if self._observed else None)
        self._set_leading(True)

    async def release(self) -> None:
        """On a clean stop, hand the Lease back at once (another replica needs not wait it out)."""
        if not self._leading:
            return
        self._set_leading(False)
        with contextlib.suppress(ApiError, httpx.HTTPError):
            lease = await self.client.get(Lease, self.name, namespace=self.namespace)
            if lease.spec is not None and lease.spec.holderIdentity == self.identity:
                lease.spec.holderIdentity = None
                lease.spec.leaseDurationSeconds = 1
                if lease.metadata is not None and self.annotations:
                    lease.metadata.annotations = {**(lease.metadata.annotations or {}), **self.annotations}
                await self.client.replace(lease)


async def first_of(*events: asyncio.Event) -> None:
    """Until one of ``events`` is set."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
