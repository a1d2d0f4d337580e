"""``imagegate serve``: the admission webhook over HTTPS.

A request handler (no framework: five routes, and every microsecond on the hot path is
a pod creation waiting) on imagegate's own HTTP/1.1 protocol (``shell/webhook/http.py``: uvloop
and httptools, chosen by measurement), a live ``SSLContext`` that takes a renewed
certificate without dropping a connection, and one process per core sharing the port.

Routes: ``POST /validate``, ``POST /mutate``, ``GET /healthz``, ``GET /readyz``,
``GET /metrics``.

It holds four parts that could stand apart: the metrics (``Metrics``), the TLS reloader
(``TlsReloader``), the request handler (``WebhookApp``) and the listening socket and worker
processes (``run_server``). Their links run one way (the reloader counts reloads in a
``Metrics``; the app holds both; the workers build the app from ``ServerSettings``), so apart
none would import one that imports it back: they share a module only because it is not split yet.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import datetime as dt
import errno
import ipaddress
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import structlog
import uvloop
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

from imagegate.core.admission import (
    SIZE_CHECK_BYTES,
    AdmissionRequest,
    ReviewError,
    ReviewOutcome,
    decode_review,
    internal_error,
    oversized_review,
    review,
)
from imagegate.core.policy import Policy
from imagegate.core.records import MAX_LISTED_FINDINGS, Outcome, Webhook, bounded
from imagegate.core.report import GRANT_STATES, grant_states
from imagegate.core.webhooks import condition_fingerprint, mutation_condition
from imagegate.shell.exits import EXIT_BAD_INPUT, EXIT_INTERNAL_ERROR
from imagegate.shell.filewatch import changes
from imagegate.shell.logs import configure_logging
from imagegate.shell.policy_source import PolicySource, ReloadResult
from imagegate.shell.registry.gate import RegistryGate, needs_registry, settle
from imagegate.shell.webhook.histograms import BatchedHistogram, Counts
from imagegate.shell.webhook.http import HttpServer, Limits, Request, Response, server_ssl_context
from imagegate.shell.webhook.serve_defaults import (
    DEFAULT_HOST,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_PORT,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_WORKERS,
)

__all__ = ["ListenError", "Metrics", "ServerSettings", "WebhookApp", "check_listen", "run_server"]

log = structlog.get_logger("imagegate.server")
disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series double the output and no dashboard uses them

# An AdmissionReview carries the object and the old object; etcd caps objects at 1.5 MiB
# by default, so 8 MiB leaves room for both and refuses anything absurd.
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
METRICS_FLUSH_SECONDS = 1.0
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
SERVING_MODULE = (
    "imagegate.shell.webhook.serving"  # what `imagegate serve` runs: python -m SERVING_MODULE SETTINGS_JSON
)
SHUTDOWN_GRACE_SECONDS = 15.0  # in-flight requests finish; the kubelet waits 30 s by default


@dataclass(frozen=True)
class ServerSettings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    tls_cert: Path | None = None
    tls_key: Path | None = None
    policy_path: Path | None = None
    grants_path: Path | None = None
    identities_path: Path | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    log_decisions: bool = True
    log_level: str = "info"
    log_json: bool = True
    workers: int = DEFAULT_WORKERS
    metrics_per_namespace: bool = False  # one series per namespace: opt-in (docs/deploy.md)
    shutdown_grace: float = SHUTDOWN_GRACE_SECONDS  # how long requests in flight at SIGTERM may take

    def to_json(self) -> str:
        """For the serving process (``shell/webhook/serving.py``), which gets them on its command line."""
        return msgspec.json.encode(self, enc_hook=str).decode()

    @classmethod
    def from_json(cls, text: str) -> ServerSettings:
        return msgspec.json.decode(text, type=cls, dec_hook=lambda kind, value: kind(value))


class Metrics:
    """The Prometheus metrics one server process exports at ``/metrics``."""

    def __init__(self, *, per_namespace: bool = False) -> None:
        # Bounded by default: a label per namespace is a series per tool (3,000 on Toolforge)
        # for every endpoint, result, rule and mode; Prometheus' guidance is to keep label
        # values to a small, fixed set. Operators who want the breakdown opt in.
        self.per_namespace = per_namespace
        by_namespace = ["namespace"] if per_namespace else []
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._decisions: dict[tuple[str, ...], int] = {}
        self._findings: dict[tuple[str, ...], int] = {}
        self._latencies: Counts = {}  # endpoint -> (sum, count per bucket)
        self.registry = CollectorRegistry()
        self.decisions = Counter(
            "imagegate_decisions_total",
            "Admission decisions by endpoint and result (allowed, denied, warned)"
            + (" and namespace." if per_namespace else "."),
            ["endpoint", "result", *by_namespace],
            registry=self.registry,
        )
        self.findings = Counter(
            "imagegate_findings_total",
            "Broken rules by rule and mode" + (" and namespace." if per_namespace else "."),
            ["rule", "mode", *by_namespace],
            registry=self.registry,
        )
        shared = os.environ.get(MULTIPROCESS_ENV)
        self.latency = BatchedHistogram(
            "imagegate_request_duration_seconds",
            "Time from request start to response, by endpoint.",
            "endpoint",
            LATENCY_BUCKETS,
            Path(shared) if shared else None,
        )
        self.registry.register(self.latency)
        self.errors = Counter(
            "imagegate_request_errors_total",
            "Requests answered with an HTTP error, by endpoint and reason.",
            ["endpoint", "reason"],
            registry=self.registry,
        )
        self.reloads = Counter(
            "imagegate_policy_reloads_total",
            "Policy reload attempts that changed the policy (ok) or were refused (error).",
            ["result"],
            registry=self.registry,
        )
        # With several worker processes the gauges are combined: the worst worker counts.
        self.policy_ok = Gauge(
            "imagegate_policy_valid",
            "1 when the files on disk validate; 0 while an invalid version is refused.",
            registry=self.registry,
            multiprocess_mode="livemin",
        )
        self.policy_loaded = Gauge(
            "imagegate_policy_loaded",
            "1 when a valid policy is in force (ready).",
            registry=self.registry,
            multiprocess_mode="livemin",
        )
        self.grants = Gauge(
            "imagegate_grants",
            "BYOC grants by state: active, expiring (within byoc.warnBeforeExpiryDays), expired.",
            ["state"],
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.identities = Gauge(
            "imagegate_identities",
            "Tool identities (namespace -> uid/gid) loaded; 0 with a tool profile denies every tool pod.",
            registry=self.registry,
            multiprocess_mode="livemin",
        )
        # Which needs-mutation condition the served policy wants: compare it with the annotation
        # on the MutatingWebhookConfiguration (a policy edited without re-rendering the webhooks).
        self.mutate_condition = Gauge(
            "imagegate_mutate_condition",
            "1 for the fingerprint of the needs-mutation condition the served policy needs (0: an earlier one).",
            ["fingerprint"],
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self._fingerprint: tuple[Policy, str] | None = None
        self.unpinned = Counter(
            "imagegate_unpinned_admissions_total",
            "Objects /validate admitted by tag where pinning applies: /mutate was skipped or the registry failed.",
            registry=self.registry,
        )
        self.tls_reloads = Counter(
            "imagegate_tls_reloads_total",
            "TLS certificate reloads, ok or refused (broken pair: the old one stays).",
            ["result"],
            registry=self.registry,
        )

    def record(
        self, endpoint: str, result: str, namespace: str, findings: Iterable[tuple[str, str]], elapsed: float
    ) -> None:
        """Count one decision. Buffered in plain dicts and written to the metrics by :meth:`flush`.

        With several workers every metric update is a write to a shared memory-mapped file
        under a lock; three of those per request cost a tenth of a decision. Buffered,
        a busy worker writes each series about once a second instead.
        """
        key = (endpoint, result, namespace) if self.per_namespace else (endpoint, result)
        self._decisions[key] = self._decisions.get(key, 0) + 1
        for rule, mode in findings:
            finding_key = (rule, mode, namespace) if self.per_namespace else (rule, mode)
            self._findings[finding_key] = self._findings.get(finding_key, 0) + 1
        total, counts = self._latencies.get(endpoint) or (0.0, self.latency.new_counts())
        counts[bisect.bisect_left(LATENCY_BUCKETS, elapsed)] += 1  # the first bucket whose le >= elapsed
        self._latencies[endpoint] = (total + elapsed, counts)

    def flush(self) -> None:
        """Write what :meth:`record` buffered (each second, before each scrape, at shutdown)."""
        decisions, findings, latencies = self._decisions, self._findings, self._latencies
        self._decisions, self._findings, self._latencies = {}, {}, {}
        for labels, count in decisions.items():
            self.child(self.decisions, *labels).inc(count)
        for labels, count in findings.items():
            self.child(self.findings, *labels).inc(count)
        self.latency.add(latencies)

    def child(self, metric: Counter, *values: str) -> Any:
        """``metric.labels(*values)``, remembered: ``labels()`` locks and validates on every call."""
        key = (id(metric), values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found

    def exposition(self) -> bytes:
        """The text for /metrics: this process's, or all workers' when there are several.

        Other workers' decisions show up within :data:`METRICS_FLUSH_SECONDS`.
        """
        self.flush()
        if self.latency.directory is not None:  # several workers: PROMETHEUS_MULTIPROC_DIR
            combined = CollectorRegistry()
            multiprocess.MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
            combined.register(self.latency)  # reads every worker's file
            return generate_latest(combined)
        return generate_latest(self.registry)

    def fingerprint(self, policy: Policy) -> str:
        """The needs-mutation condition's fingerprint for ``policy`` (remembered for the policy in force)."""
        # The policy itself is kept, not its id(): a reloaded policy may be given a freed one's id.
        if self._fingerprint is not None and self._fingerprint[0] is policy:
            return self._fingerprint[1]
        found = condition_fingerprint(mutation_condition(policy))
        previous, self._fingerprint = self._fingerprint, (policy, found)
        if previous is None or previous[1] != found:
            if previous is not None:
                self.mutate_condition.labels(previous[1]).set(0)
            self.mutate_condition.labels(found).set(1)
        return found

    def observe_policy(self, source: PolicySource) -> None:
        self.policy_loaded.set(1 if source.current is not None else 0)
        self.policy_ok.set(0 if source.last_error else 1)
        if source.current is not None:
            policy = source.current
            self.fingerprint(policy)
            counts = dict.fromkeys(GRANT_STATES, 0)
            for state in grant_states(policy.grants, dt.datetime.now(dt.UTC), policy.warn_before_expiry_days):
                counts[state.state] += 1
            for name, count in counts.items():
                self.grants.labels(name).set(count)
            tool = policy.pod_security.tool if policy.pod_security else None
            self.identities.set(len(tool.identities) if tool else 0)


class TlsReloader:
    """Swaps a new certificate into the live SSLContext when its files change.

    The pair is copied to a private directory and checked there first, so the live
    context only ever loads a pair that is known to match (cert-manager writes the
    certificate and key as two files; a half-written pair is refused and the old one
    keeps serving). Existing connections keep their session; new handshakes get the
    new certificate.
    """

    def __init__(self, cert: Path, key: Path, context: ssl.SSLContext, metrics: Metrics) -> None:
        self.cert, self.key, self.context, self.metrics = cert, key, context, metrics
        self._loaded = self._fingerprint()
        self.last_error: str | None = None

    def _fingerprint(self) -> bytes:
        try:
            return self.cert.read_bytes() + b"\0" + self.key.read_bytes()
        except OSError:
            return b""

    def reload(self) -> bool:
        current = self._fingerprint()
        if current == self._loaded:
            return False
        with tempfile.TemporaryDirectory(prefix="imagegate-tls-") as scratch:
            cert, key = Path(scratch) / "tls.crt", Path(scratch) / "tls.key"
            try:
                shutil.copyfile(self.cert, cert)
                shutil.copyfile(self.key, key)
                # A scratch context first: a load_cert_chain that fails half-way (the certificate
                # taken, the key refused) would leave the live one unable to serve.
                ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
                self.context.load_cert_chain(cert, key)
            except (OSError, ssl.SSLError) as exc:
                why = str(exc)
                if isinstance(exc, ssl.SSLError) and exc.reason == "KEY_VALUES_MISMATCH":
                    why = f"TLS key {self.key} does not belong to the certificate {self.cert}"
                self.last_error = f"TLS reload refused, keeping the old certificate: {why}"
                log.error("tls reload refused; keeping the old certificate", error=why)
                self.metrics.tls_reloads.labels("error").inc()
                return False
        self._loaded = current
        self.last_error = None
        self.metrics.tls_reloads.labels("ok").inc()
        log.info("tls certificate reloaded", cert=str(self.cert))
        return True

    async def watch(self, stop: asyncio.Event) -> None:
        async for _changed in changes([self.cert, self.key], stop):
            self.reload()


_WEBHOOK_AT = {f"/{webhook}": webhook for webhook in Webhook}
_JSON = b"application/json"
_OK = Response(200, b"ok\n")
_NOT_FOUND = Response(404, b"not found\n")
_USE_POST = Response(405, b"use POST\n", headers=((b"allow", b"POST"),))
_USE_GET = Response(405, b"use GET\n", headers=((b"allow", b"GET, HEAD"),))


class WebhookApp:
    """The request handler and its background work. One per server process."""

    def __init__(self, settings: ServerSettings, source: PolicySource, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.source = source
        self.metrics = metrics or Metrics(per_namespace=settings.metrics_per_namespace)
        self.metrics.observe_policy(source)
        self.tls: TlsReloader | None = None
        self.gate = RegistryGate(settings.policy_path.parent if settings.policy_path else None)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # Decisions are logged at info: skip building the line when info is filtered out.
        level = logging.getLevelNamesMapping().get(settings.log_level.upper(), logging.INFO)
        self._log_decisions = settings.log_decisions and level <= logging.INFO

    # -- background work -----------------------------------------------------------------

    def on_policy_reload(self, result: ReloadResult) -> None:
        if result.error is not None:
            self.metrics.reloads.labels("error").inc()
        elif result.changed:
            self.metrics.reloads.labels("ok").inc()
        self.metrics.observe_policy(self.source)

    async def _refresh_bases(self, stop: asyncio.Event) -> None:
        """Re-resolve the trusted base images on the policy's schedule (and when it changes)."""
        while not stop.is_set():
            policy = self.source.current
            minutes = 60.0
            if policy is not None and policy.base_images.trusted:
                minutes = policy.base_images.refresh_minutes
                try:
                    await self.gate.refresh_bases(policy, force=True)
                except Exception as exc:  # keep refreshing; the error is reported
                    log.error("base image refresh failed", error=str(exc))
                if self.gate.bases.last_error:
                    minutes = min(minutes, 1.0)  # a registry that was down: try again soon
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=minutes * 60)

    async def _flush_metrics(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=METRICS_FLUSH_SECONDS)
            try:
                self.metrics.observe_policy(self.source)  # grant states move with the clock, not only on reloads
                self.metrics.flush()
            except Exception:  # keep flushing; decisions never depend on metrics
                log.exception("writing metrics failed")

    async def startup(self, tls_context: ssl.SSLContext | None = None) -> None:
        self._stop = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self.source.watch(self._stop), name="policy-watch"),
            asyncio.create_task(self._refresh_bases(self._stop), name="base-refresh"),
            asyncio.create_task(self._flush_metrics(self._stop), name="metrics-flush"),
        ]
        if tls_context is not None and self.settings.tls_cert and self.settings.tls_key:
            self.tls = TlsReloader(self.settings.tls_cert, self.settings.tls_key, tls_context, self.metrics)
            self._tasks.append(asyncio.create_task(self.tls.watch(self._stop), name="tls-watch"))
        log.info(
            "imagegate ready" if self.source.current else "imagegate started without a valid policy",
            policy=self.source.current.source if self.source.current else None,
            error=self.source.last_error,
        )

    async def shutdown(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.gate.aclose()
        self.metrics.flush()
        log.info("imagegate stopped")

    # -- HTTP ----------------------------------------------------------------------------

    def __call__(self, request: Request) -> Response | Awaitable[Response]:
        path, method = request.path, request.method
        webhook = _WEBHOOK_AT.get(path)
        if webhook is not None:
            if method != "POST":
                return _USE_POST
            return self._admission(request.body, webhook)
        if method not in ("GET", "HEAD"):
            return _USE_GET
        if path == "/healthz":
            return _OK
        if path == "/readyz":
            return self._readyz()
        if path == "/metrics":
            return Response(200, self.metrics.exposition(), CONTENT_TYPE_LATEST.encode())
        return _NOT_FOUND

    def _readyz(self) -> Response:
        ready = self.source.current is not None
        body = {
            "ready": ready,
            "policy": self.source.current.source if self.source.current else None,
            "policyError": self.source.last_error,
            "tlsError": self.tls.last_error if self.tls else None,
            "baseImagesError": self.gate.bases.last_error,
            "baseImageVersions": len(self.gate.bases.versions),
            "identitiesWarning": self.source.current.identities_missing() if self.source.current else None,
            # compare with the MutatingWebhookConfiguration's imagegate.toolforge.org/needs-mutation
            "mutateCondition": self.metrics.fingerprint(self.source.current) if self.source.current else None,
        }
        return Response(200 if ready else 503, msgspec.json.encode(body), _JSON)

    def _admission(self, body: bytes, endpoint: Webhook) -> Response | Awaitable[Response]:
        """Decide without waiting when no registry lookup is needed (the common case)."""
        mutate = endpoint is Webhook.MUTATE
        started = time.perf_counter()
        try:
            # A large body is first counted: an object over the limits is denied before it is decoded.
            early = oversized_review(self.source.current, body)
        except Exception:  # a bug here only skips the shortcut: the full decoding decides
            log.exception("size check failed", endpoint=endpoint.value)
            early = None
        if early is not None:
            return self._answer(early[1], early[0], endpoint, started)
        try:
            request = decode_review(body)
        except ReviewError as exc:
            self.metrics.child(self.metrics.errors, endpoint, "bad-review").inc()
            log.warning("bad admission review", endpoint=endpoint.value, error=str(exc)[:500])
            return Response(400, f"{exc}\n".encode())
        policy, now = self.source.current, dt.datetime.now(dt.UTC)
        try:
            if policy is None:
                return self._answer(review(None, request, now=now, mutate=mutate), request, endpoint, started)
            outcome = review(policy, request, now=now, mutate=mutate)
            if needs_registry(outcome.decision, pins=mutate):
                return self._settled(policy, request, now, outcome, endpoint, started, mutate=mutate)
        except Exception:  # a bug must not become an allow, nor a dropped request: deny and say so
            return self._internal_error(request, endpoint, started)
        return self._answer(outcome, request, endpoint, started)

    async def _settled(
        self,
        policy: Policy,
        request: AdmissionRequest,
        now: dt.datetime,
        first: ReviewOutcome,
        endpoint: Webhook,
        started: float,
        *,
        mutate: bool,
    ) -> Response:
        try:
            outcome = await settle(
                self.gate,
                policy,
                lambda lookups: review(policy, request, now=now, mutate=mutate, lookups=lookups),
                lambda result: result.decision,
                pins=mutate,
                first=first,
            )
        except Exception:
            return self._internal_error(request, endpoint, started)
        return self._answer(outcome, request, endpoint, started)

    def _internal_error(self, request: AdmissionRequest, endpoint: Webhook, started: float) -> Response:
        log.exception("internal error; denying", uid=bounded(request.uid), endpoint=endpoint.value)
        self.metrics.child(self.metrics.errors, endpoint, "internal").inc()
        return self._answer(internal_error(request), request, endpoint, started)

    def _answer(self, outcome: ReviewOutcome, request: AdmissionRequest, endpoint: Webhook, started: float) -> Response:
        """The HTTP response, counted in metrics and logged (one line, never the body)."""
        elapsed = time.perf_counter() - started
        decision = outcome.decision
        # The metric's results are allowed, denied and warned: an audited object was allowed, silently.
        result = Outcome.ALLOWED.value if outcome.outcome is Outcome.AUDITED else outcome.outcome.value
        findings = decision.findings if decision is not None and endpoint is Webhook.VALIDATE else ()
        if endpoint is Webhook.VALIDATE and decision is not None and decision.allowed and decision.pins_needed:
            self.metrics.unpinned.inc()
        self.metrics.record(
            endpoint, result, request.namespace or "-", [(f.rule, f.mode.value) for f in findings], elapsed
        )
        if self._log_decisions:
            # One line per decision, of bounded size (what the tenant wrote is cut, the findings
            # counted past the first few); never the body (env values can hold secrets).
            listed = decision.findings if decision is not None else ()
            shown = [bounded(f"{f.rule}:{f.subject.kind}/{f.subject.name}") for f in listed[:MAX_LISTED_FINDINGS]]
            if len(listed) > MAX_LISTED_FINDINGS:
                shown.append(f"and {len(listed) - MAX_LISTED_FINDINGS:,} more")
            log.info(
                "decision",
                endpoint=endpoint.value,
                uid=bounded(request.uid),
                operation=bounded(request.operation),
                kind=bounded(request.kind.kind),
                subresource=bounded(request.sub_resource) or None,
                namespace=bounded(request.namespace),
                name=bounded(request.name) or None,
                dry_run=request.dry_run,
                result=result,
                findings=shown,
                patched=outcome.patched,
                ms=round(elapsed * 1000, 3),
            )
        return Response(200, outcome.body, _JSON)


class ListenError(Exception):
    """The server cannot listen where it was told to; the message says why, in one line."""


def _bind_error(host: str, port: int, exc: OSError) -> ListenError:
    if exc.errno == errno.EADDRINUSE:
        return ListenError(
            f"port {port} on {host} is already in use by another process: stop it or choose another --port"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return ListenError(
            f"--host {host} is not an address of this host (`ip address` lists them; 0.0.0.0 listens on all)"
        )
    if exc.errno == errno.EACCES:
        return ListenError(f"port {port} needs privileges this process lacks (ports below 1024): choose --port 8443")
    return ListenError(f"cannot listen on {host} port {port}: {exc.strerror or exc}")


def _listening_socket(host: str, port: int, *, shared: bool) -> socket.socket:
    """The socket to accept on; ``shared``: each worker binds its own and the kernel spreads connections.

    Raises :class:`ListenError` (an unknown host name, an address of another machine, a
    port in use) instead of a bare ``OSError``.
    """
    # An address, never a name to look up: a listen address that depends on DNS is a surprise.
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ListenError(
                f"--host {host!r} is not an IP address (e.g. 127.0.0.1, ::1, 0.0.0.0) or localhost"
            ) from None
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        raise ListenError(f"--host {host!r}: {exc}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if shared:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise _bind_error(host, port, exc) from None
    sock.setblocking(False)
    return sock


def check_listen(host: str, port: int) -> None:
    """Raise :class:`ListenError` unless this process could listen on ``host``:``port`` now.

    Bound without SO_REUSEPORT, so a port that another server holds (even another
    imagegate with several workers) is found in use instead of silently shared.
    """
    _listening_socket(host, port, shared=False).close()


async def _serve(app: WebhookApp, settings: ServerSettings, sock: socket.socket | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    tls_context = None
    if settings.tls_cert is not None and settings.tls_key is not None:
        tls_context = server_ssl_context(str(settings.tls_cert), str(settings.tls_key))
    if sock is None:
        sock = _listening_socket(settings.host, settings.port, shared=settings.workers > 1)
    await app.startup(tls_context)
    # A review big enough to be counted before it is decoded is also decided in the heavy lane.
    limits = Limits(
        max_body_bytes=settings.max_body_bytes,
        request_timeout=settings.request_timeout,
        heavy_body_bytes=SIZE_CHECK_BYTES,
    )
    log.info("serving", url=f"https://{settings.host}:{settings.port}", workers=settings.workers)
    try:
        await HttpServer(app, limits, tls_context).serve(sock, stop, grace=settings.shutdown_grace)
    finally:
        await app.shutdown()


def serve_worker(settings: ServerSettings, sock: socket.socket | None = None) -> None:
    """One server process: its own policy watcher, TLS reloader and event loop."""
    configure_logging(settings.log_level, json=settings.log_json)
    source = PolicySource(
        settings.policy_path, settings.grants_path, strict=False, identities_path=settings.identities_path
    )
    app = WebhookApp(settings, source)
    source.on_reload = app.on_policy_reload  # the app counts reloads in its metrics
    uvloop.run(_serve(app, settings, sock))


def _worker_process(settings: ServerSettings) -> None:
    """A worker's entry point: its failure is one log line and an exit status, not a traceback on stderr."""
    try:
        serve_worker(settings)
    except ListenError as exc:
        log.error("cannot listen", error=str(exc))
        sys.exit(EXIT_BAD_INPUT)
    except Exception:
        log.exception("internal error in a worker; stopping")
        sys.exit(EXIT_INTERNAL_ERROR)


def run_server(settings: ServerSettings) -> int:
    """Serve until SIGTERM/SIGINT; in-flight requests finish (graceful shutdown).

    With ``workers > 1`` the parent starts that many worker processes, forwards the stop
    signal to them and exits when they have; if one dies, the others are stopped and
    the exit status is non-zero, so the kubelet restarts the pod whole.
    """
    if settings.workers <= 1:
        # Bound here, before anything else starts: a port in use is a ListenError for the caller.
        serve_worker(settings, _listening_socket(settings.host, settings.port, shared=False))
        return 0
    metrics_dir = tempfile.mkdtemp(prefix="imagegate-metrics-")
    os.environ[MULTIPROCESS_ENV] = metrics_dir  # inherited by the spawned workers
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_worker_process, args=(settings,), name=f"imagegate-worker-{n}")
        for n in range(settings.workers)
    ]
    for worker in workers:
        worker.start()
    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.pid is not None and worker.is_alive():
                os.kill(worker.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    try:
        while any(worker.is_alive() for worker in workers):
            for worker in workers:
                worker.join(timeout=0.5)
                if not worker.is_alive() and not stopping:
                    print(f"imagegate: {worker.name} exited ({worker.exitcode}); stopping", file=sys.stderr)
                    status = 1
                    forward(signal.SIGTERM, None)
    finally:
        for worker in workers:
            if worker.pid is not None:
                multiprocess.mark_process_dead(worker.pid, metrics_dir)  # type: ignore[no-untyped-call]
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return status
