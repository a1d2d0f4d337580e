"""``imagegate reports``: the in-cluster audit, writing one policy report per namespace.

Lists, then watches, every pod-bearing kind (core/workloads.py's one list) and Namespaces,
keeping each object without its status and managedFields; a watch whose resourceVersion has
expired (410) is relisted. The policy, grants and identities files are reloaded as ``serve``
reloads them (shell/policy_source.py). A namespace is judged again when one of its objects
or its labels change, when the policy files change, and each ``--period`` (grants end with
time); its report (core/policyreport.py) is written with server-side apply, and only when
its content differs from what the API server holds. Only the leader of the Lease writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx2 as httpx
import msgspec  # lightkube 1.0 raises httpx2's errors (a fork of httpx), not httpx's
from lightkube import ApiError, AsyncClient
from lightkube.generic_resource import GenericGlobalResource, GenericNamespacedResource, create_api_info
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from imagegate.core.policyreport import (
    MANAGED_BY,
    REPORT_KINDS,
    REPORT_NAME,
    NamespaceJudgement,
    ReportFormat,
    due_events,
    event_document,
    grant_events,
    grant_images,
    judge_namespace,
    record_sent,
    report_content,
    report_document,
)
from imagegate.core.workloads import WORKLOAD_KINDS, WorkloadKind
from imagegate.shell.cluster.lease import LeaderElector, first_of
from imagegate.shell.logs import get_logger
from imagegate.shell.policy_source import PolicySource, ReloadResult

__all__ = ["CrdMissingError", "ReportsController", "ReportsSettings", "ensure_crd"]

log = get_logger("imagegate.reports")

FIELD_MANAGER = "imagegate-reports"
COMPONENT = "imagegate-reports"
EVENTS_ANNOTATION = "imagegate.toolforge.org/grant-events"
# reports judged and written at once: the API server's round trips overlap, the judging does not
_WRITERS = 8
# a report the API server refused as too large is written again with this much less
_SMALLER = 8


def _raw(group: str, version: str, kind: str, plural: str, *, namespaced: bool = True) -> Any:
    """A lightkube resource whose objects stay plain dicts (no model decoding: 12,000 pods read fast)."""
    base: Any = GenericNamespacedResource if namespaced else GenericGlobalResource
    info = create_api_info(group, version, kind, plural)
    return type(kind, (base,), {"_api_info": info, "__module__": __name__})


_WORKLOADS = {w.kind: _raw(w.group, w.version, w.kind, w.resource) for w in WORKLOAD_KINDS}
_NAMESPACES = _raw("", "v1", "Namespace", "namespaces", namespaced=False)
_EVENTS = _raw("", "v1", "Event", "events")
_REPORTS = {fmt: _raw(k.group, k.version, k.kind, k.plural) for fmt, k in REPORT_KINDS.items()}


def _code(exc: httpx.HTTPError) -> int:
    """The HTTP status of a refusal (0: no answer); lightkube raises httpx's own error when the
    body is not a Status (a kind the API server does not serve answers a plain 404)."""
    if isinstance(exc, ApiError):
        return int(exc.status.code or 0)
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code
    return 0


def _said(exc: httpx.HTTPError) -> str:
    if isinstance(exc, ApiError):
        return str(exc.status.message)
    return str(exc) or type(exc).__name__


class CrdMissingError(Exception):
    """The report CRD of the chosen format is not installed (or cannot be read)."""


async def ensure_crd(client: AsyncClient, fmt: ReportFormat) -> None:
    """Say clearly, before anything else, when the report kind is not served."""
    kind = REPORT_KINDS[fmt]
    try:
        async for _item in client.list(_REPORTS[fmt], namespace="*", chunk_size=1):
            break
    except (ApiError, httpx.HTTPStatusError) as exc:
        if _code(exc) == 404:
            raise CrdMissingError(
                f"the {kind.kind} CRD ({kind.crd}, {kind.api_version}) is not installed in this cluster: "
                "imagegate does not ship it; install it from its project (see docs/reports.md)"
                + (", or choose --format wgpolicyk8s" if fmt is ReportFormat.openreports else "")
            ) from None
        raise CrdMissingError(f"cannot list {kind.plural}.{kind.group}: {_said(exc)}") from None
    except httpx.HTTPError as exc:
        raise CrdMissingError(f"no answer from the API server: {exc}") from None


@dataclass(frozen=True)
class ReportsSettings:
    fmt: ReportFormat = ReportFormat.openreports
    period: float = 300.0
    max_results: int = 1000
    events: bool = True
    lease_namespace: str = "imagegate"
    lease_name: str = "imagegate-reports"
    lease_duration: float = 15.0
    identity: str = "imagegate-reports"
    debounce: float = 0.2  # object changes within this long are judged together


class ReportsMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.leader = Gauge("imagegate_reports_leader", "1 while this replica holds the Lease.", registry=r)
        self.written = Counter("imagegate_reports_written", "Reports created or changed.", registry=r)
        self.deleted = Counter("imagegate_reports_deleted", "Reports removed.", registry=r)
        self.unchanged = Counter("imagegate_reports_unchanged", "Reports judged unchanged (not written).", registry=r)
        self.failures = Counter(
            "imagegate_reports_write_failures",
            "Report writes the API server refused, by HTTP status (0: no answer).",
            ["code"],
            registry=r,
        )
        self.last_success = Gauge(
            "imagegate_reports_last_success_timestamp_seconds",
            "End of the last pass in which every write succeeded.",
            registry=r,
        )
        self.pass_seconds = Gauge("imagegate_reports_pass_seconds", "Duration of the last full pass.", registry=r)
        self.policy_valid = Gauge(
            "imagegate_reports_policy_valid", "0 while the policy files on disk do not validate.", registry=r
        )
        self.reload_failures = Counter(
            "imagegate_reports_policy_reload_failures", "Policy reloads refused.", registry=r
        )
        self.events = Counter("imagegate_reports_events", "Grant Events created.", ["reason"], registry=r)
        self.watch_restarts = Counter(
            "imagegate_reports_relists", "Lists made again (a watch expired or failed).", ["kind"], registry=r
        )
        for code in ("0", "409", "422"):
            self.failures.labels(code)
        for reason in ("GrantExpiring", "GrantExpired"):
            self.events.labels(reason)


def _slim(item: Mapping[str, Any], kind: str, api_version: str) -> bytes:
    """What judging needs of an object: no status, no managedFields (most of a pod's bytes), kept
    as JSON bytes (a fifth of the dicts' memory; decoded again only to judge its namespace)."""
    data = {k: v for k, v in item.items() if k != "status"}
    metadata = dict(data.get("metadata") or {})
    metadata.pop("managedFields", None)
    data["metadata"] = metadata
    data["kind"], data["apiVersion"] = kind, api_version
    return msgspec.json.encode(data)


@dataclass
class _Store:
    """What runs: namespace -> (kind, name) -> object, and each namespace's labels."""

    objects: dict[str, dict[tuple[str, str], bytes]] = field(default_factory=dict)
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)
    generation: dict[str, int] = field(default_factory=dict)  # bumped on every change in a namespace
    dirty: set[str] = field(default_factory=set)

    def touch(self, namespace: str) -> None:
        self.generation[namespace] = self.generation.get(namespace, 0) + 1
        self.dirty.add(namespace)

    def put(self, namespace: str, key: tuple[str, str], obj: bytes) -> None:
        self.objects.setdefault(namespace, {})[key] = obj
        self.touch(namespace)

    def drop(self, namespace: str, key: tuple[str, str]) -> None:
        found = self.objects.get(namespace)
        if found is not None and found.pop(key, None) is not None:
            if not found:
                del self.objects[namespace]
            self.touch(namespace)

    def replace_kind(self, kind: str, items: Mapping[tuple[str, str], bytes]) -> None:
        """A fresh list of one kind: what it no longer has goes, what changed is marked."""
        for namespace in list(self.objects):
            for key in [k for k in self.objects[namespace] if k[0] == kind]:
                if (namespace, key[1]) not in items:
                    self.drop(namespace, key)
        for (namespace, name), obj in items.items():
            if self.objects.get(namespace, {}).get((kind, name)) != obj:
                self.put(namespace, (kind, name), obj)


def _identity_of(item: Mapping[str, Any]) -> tuple[str, str]:
    metadata = item.get("metadata") or {}
    return str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


class ReportsController:
    def __init__(
        self,
        client: AsyncClient,
        source: PolicySource,
        settings: ReportsSettings,
        metrics: ReportsMetrics | None = None,
    ) -> None:
        self.client = client
        self.source = source
        self.settings = settings
        self.metrics = metrics or ReportsMetrics()
        self.store = _Store()
        self.listed: set[str] = set()  # kinds listed at least once (the first pass waits for all)
        self.wake = asyncio.Event()
        self.written: dict[str, bytes] = {}  # namespace -> the content of its report on the server
        self.judged: dict[str, tuple[int, dt.date, int]] = {}  # namespace -> inputs of its last judgement
        self.policy_generation = 0
        self.grant_images: dict[str, list[str]] = {}
        self.seeded = False  # `written` read from the server since we became leader
        self.kinds = len(WORKLOAD_KINDS) + 1
        self.lease = LeaderElector(
            client,
            settings.lease_namespace,
            settings.lease_name,
            settings.identity,
            settings.lease_duration,
            on_change=self._leadership,
        )
        source.on_reload = self._reloaded
        self.metrics.policy_valid.set(1 if source.current is not None and source.last_error is None else 0)

    @property
    def healthy(self) -> bool:
        """Every kind listed and watched, and a valid policy loaded."""
        return len(self.listed) == self.kinds and self.source.current is not None

    # --- inputs -------------------------------------------------------------------------

    def _reloaded(self, result: ReloadResult) -> None:
        self.metrics.policy_valid.set(0 if result.error else 1)
        if result.error:
            self.metrics.reload_failures.inc()
        if result.changed:
            self.policy_generation += 1
            self.store.dirty.update(self._namespaces())
            self.wake.set()

    def _leadership(self, leading: bool) -> None:
        self.metrics.leader.set(1 if leading else 0)
        self.seeded = False
        if leading:
            self.judged.clear()
            self.wake.set()

    def _namespaces(self) -> set[str]:
        return set(self.store.objects) | set(self.written) | set(self.store.namespaces)

    async def _follow(self, kind: str, stop: asyncio.Event) -> None:
        """List then watch one kind; relist when the watch's resourceVersion expired or it failed."""
        resource = _NAMESPACES if kind == "Namespace" else _WORKLOADS[kind]
        workload: WorkloadKind | None = next((w for w in WORKLOAD_KINDS if w.kind == kind), None)
        api_version = workload.api_version if workload else "v1"
        scope = None if kind == "Namespace" else "*"
        backoff = 0.5
        while not stop.is_set():
            try:
                listing = self.client.list(resource, namespace=scope, chunk_size=500)
                items: dict[tuple[str, str], Any] = {}
                async for item in listing:  # slimmed as read: a kind's full list is never held
                    items[_identity_of(item)] = item if kind == "Namespace" else _slim(item, kind, api_version)
                version = listing.resourceVersion
                self._replace(kind, items)
                self.listed.add(kind)
                self.wake.set()
                backoff = 0.5
                async for change, item in self.client.watch(resource, namespace=scope, resource_version=version):
                    self._apply(kind, change, item, api_version)
            except httpx.HTTPError as exc:  # ApiError is one
                if _code(exc) == 410:
                    log.info("watch expired; listing again", kind=kind)
                else:
                    log.warning("cannot list or watch; listing again", kind=kind, error=_said(exc), code=_code(exc))
                self.metrics.watch_restarts.labels(kind).inc()
            except (ValueError, TypeError, KeyError, AttributeError):  # an answer we could not read
                log.exception("cannot read the list or watch; listing again", kind=kind)
                self.metrics.watch_restarts.labels(kind).inc()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=backoff)
            backoff = min(backoff * 2, 30.0)

    def _replace(self, kind: str, items: Mapping[tuple[str, str], Any]) -> None:
        if kind == "Namespace":
            fresh = {name: _labels(item) for (_ns, name), item in items.items()}
            for name in set(self.store.namespaces) | set(fresh):
                if self.store.namespaces.get(name) != fresh.get(name):
                    self.store.touch(name)
            self.store.namespaces = fresh
            return
        self.store.replace_kind(kind, items)

    def _apply(self, kind: str, change: str, item: Mapping[str, Any], api_version: str) -> None:
        namespace, name = _identity_of(item)
        if kind == "Namespace":
            if change == "DELETED":
                self.store.namespaces.pop(name, None)
            else:
                labels = _labels(item)
                if self.store.namespaces.get(name) == labels:
                    return
                self.store.namespaces[name] = labels
            self.store.touch(name)
        elif change == "DELETED":
            self.store.drop(namespace, (kind, name))
        elif change in ("ADDED", "MODIFIED"):
            slim = _slim(item, kind, api_version)
            if self.store.objects.get(namespace, {}).get((kind, name)) == slim:
                return  # a status update: nothing judged changed
            self.store.put(namespace, (kind, name), slim)
        else:
            return
        self.wake.set()

    # --- passes -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        kinds = [w.kind for w in WORKLOAD_KINDS] + ["Namespace"]
        tasks = [asyncio.create_task(self._follow(kind, stop), name=f"follow {kind}") for kind in kinds]
        tasks.append(asyncio.create_task(self.lease.run(stop), name="lease"))
        tasks.append(asyncio.create_task(self.source.watch(stop), name="policy"))
        try:
            await self._passes(stop, len(kinds))
        finally:
            stop.set()
            lease = tasks.pop(-2)
            for task in tasks:  # a watch waits on the network: stop it where it is
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.wait_for(asyncio.gather(lease, return_exceptions=True), timeout=5)  # hands the Lease back
            self.metrics.leader.set(0)

    async def _passes(self, stop: asyncio.Event, kinds: int) -> None:
        next_period = time.monotonic() + self.settings.period
        while not stop.is_set():
            timeout = max(0.0, next_period - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(first_of(stop, self.wake), timeout=timeout)
            if stop.is_set():
                return
            self.wake.clear()
            if len(self.listed) < kinds:
                continue  # the first pass sees everything or nothing
            await asyncio.sleep(self.settings.debounce)
            full = time.monotonic() >= next_period or not self.seeded
            if full:
                next_period = time.monotonic() + self.settings.period
            if not self.lease.is_leader:
                continue
            await self.reconcile(full=full)

    async def reconcile(self, *, full: bool) -> None:
        """Judge the namespaces that changed (``full``: every one) and write what differs."""
        policy = self.source.current
        if policy is None:
            return  # no valid policy was ever loaded: nothing to say, and nothing to remove
        started = time.monotonic()
        if not self.seeded:
            if not await self._seed():
                return
            full = True
        now = dt.datetime.now(dt.UTC)
        today = now.date()
        names = self._namespaces() if full else set(self.store.dirty)
        self.store.dirty.difference_update(names)
        failed = 0
        writers = asyncio.Semaphore(_WRITERS)

        async def one(namespace: str, key: tuple[int, dt.date, int]) -> None:
            nonlocal failed
            async with writers:
                if not self.lease.is_leader:  # lost the Lease mid-pass: the next leader does it
                    self.store.dirty.add(namespace)
                    return
                done = await self._reconcile_one(policy, namespace, now)
            if done:
                self.judged[namespace] = key
            else:
                failed += 1
                self.store.dirty.add(namespace)

        waiting = []
        for namespace in sorted(names):
            key = (self.policy_generation, today, self.store.generation.get(namespace, 0))
            if self.judged.get(namespace) == key:
                self.metrics.unchanged.inc()
            else:
                waiting.append(one(namespace, key))
        await asyncio.gather(*waiting)
        if full:
            self.metrics.pass_seconds.set(time.monotonic() - started)
            if self.settings.events:
                await self._send_events(policy, now)
        if not failed:
            self.metrics.last_success.set(time.time())

    async def _seed(self) -> bool:
        """What the API server holds already: our reports' contents (written only where they differ)."""
        resource = _REPORTS[self.settings.fmt]
        written: dict[str, bytes] = {}
        try:
            async for item in self.client.list(
                resource, namespace="*", labels={MANAGED_BY[0]: MANAGED_BY[1]}, chunk_size=500
            ):
                namespace, name = _identity_of(item)
                if name == REPORT_NAME:
                    written[namespace] = report_content(item)
        except httpx.HTTPError as exc:  # ApiError is one
            log.error("cannot list the reports", error=_said(exc), code=_code(exc))
            return False
        self.written = written
        self.judged.clear()
        self.seeded = True
        return True

    async def _reconcile_one(self, policy: Any, namespace: str, now: dt.datetime) -> bool:
        objects = [msgspec.json.decode(raw) for raw in self.store.objects.get(namespace, {}).values()]
        judgement: NamespaceJudgement | None = None
        if objects and namespace in self.store.namespaces:
            try:
                judgement = judge_namespace(policy, namespace, objects, now, self.store.namespaces.get(namespace))
            except Exception:  # a bug judging one namespace must not stop the others' reports
                log.exception("cannot judge namespace", namespace=namespace)
                return False
        if judgement is None or not judgement.owners:
            self.grant_images.pop(namespace, None)
            return await self._delete(namespace)
        self.grant_images[namespace] = grant_images(judgement.decisions)
        grants = policy.grants_for(namespace)
        document = report_document(judgement, self.settings.fmt, grants, max_results=self.settings.max_results)
        content = report_content(document)
        if self.written.get(namespace) == content:
            self.metrics.unchanged.inc()
            return True
        code = await self._apply_report(document)
        if code == 422:  # too large after all (or refused by the CRD): say less, once
            document = report_document(
                judgement,
                self.settings.fmt,
                grants,
                max_results=max(1, self.settings.max_results // _SMALLER),
                max_bytes=64 * 1024,
            )
            content = report_content(document)
            code = await self._apply_report(document)
        if code is not None:
            return False
        self.written[namespace] = content
        self.metrics.written.inc()
        return True

    async def _apply_report(self, document: dict[str, Any]) -> int | None:
        """Server-side apply under one field manager; the refusal's HTTP status, or None when written."""
        namespace = document["metadata"]["namespace"]
        try:
            await self.client.apply(_REPORTS[self.settings.fmt](document), field_manager=FIELD_MANAGER, force=True)
        except httpx.HTTPError as exc:  # ApiError is one
            code = _code(exc)
            log.error("report not written", namespace=namespace, code=code, error=_said(exc))
            self.metrics.failures.labels(str(code)).inc()
            return code
        return None

    async def _delete(self, namespace: str) -> bool:
        if namespace not in self.written:
            return True
        try:
            await self.client.delete(_REPORTS[self.settings.fmt], REPORT_NAME, namespace=namespace)
        except httpx.HTTPError as exc:  # ApiError is one
            code = _code(exc)
            if code != 404:
                log.error("report not deleted", namespace=namespace, code=code, error=_said(exc))
                self.metrics.failures.labels(str(code)).inc()
                return False
        else:
            self.metrics.deleted.inc()
        del self.written[namespace]
        return True

    async def _send_events(self, policy: Any, now: dt.datetime) -> None:
        """The grant Events due today, each once: the Lease remembers what was sent (and the
        Event's name, fixed for the day, makes a second create a 409)."""
        today = now.date()
        events = grant_events(policy, now, self.grant_images, self.store.namespaces)
        record = self.lease.annotations.get(EVENTS_ANNOTATION)
        due = due_events(events, record, today)
        sent = []
        for event in due:
            document = event_document(event, today, now, COMPONENT, self.settings.identity)
            try:
                await self.client.create(_EVENTS(document))
            except httpx.HTTPError as exc:  # ApiError is one
                if _code(exc) != 409:  # 409: it exists, sent today already
                    log.error("event not created", namespace=event.namespace, code=_code(exc), error=_said(exc))
                    continue
            else:
                self.metrics.events.labels(event.reason.value).inc()
                log.info("grant event", namespace=event.namespace, reason=event.reason.value)
            sent.append(event.key)
        if sent:
            self.lease.annotations[EVENTS_ANNOTATION] = record_sent(record, sent, today)
            self.lease.renew_soon()


def _labels(item: Mapping[str, Any]) -> dict[str, str]:
    labels = (item.get("metadata") or {}).get("labels") or {}
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, Mapping) else {}


async def serve_metrics(
    controller: ReportsController, host: str, port: int, stop: asyncio.Event
) -> asyncio.AbstractServer:
    """``/metrics`` (Prometheus text) and ``/healthz`` on plain HTTP: a few lines, no framework."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), timeout=5)
            while (await asyncio.wait_for(reader.readline(), timeout=5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = request.decode("latin-1").split()
            path = parts[1] if len(parts) >= 2 else ""
            if path == "/metrics":
                status, body, kind = "200 OK", generate_latest(controller.metrics.registry), "text/plain; version=0.0.4"
            elif path == "/healthz":
                ok = controller.healthy
                status = "200 OK" if ok else "503 Service Unavailable"
                body, kind = (b"ok\n" if ok else b"not ready: watches or policy\n"), "text/plain"
            else:
                status, body, kind = "404 Not Found", b"not found\n", "text/plain"
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
