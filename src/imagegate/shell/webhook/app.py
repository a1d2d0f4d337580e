"""The request handler (``WebhookApp``): the routes, the admission decision, its answer, metrics and log line.

A plain callable on imagegate's own HTTP/1.1 protocol (``http.py``), no framework: five routes,
and every microsecond on the hot path is a pod creation waiting. ``POST /validate``,
``POST /mutate``, ``GET /healthz``, ``GET /readyz``, ``GET /metrics``. It also runs the
process's background work: the policy watch, the base-image refresh, the metrics flush and
the TLS reloader.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import ssl
import time
from collections.abc import Awaitable

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST

import imagegate.shell.registry.content_answerer  # noqa: F401 (registers the content rules' answerer)
from imagegate.core.admission import (
    AdmissionRequest,
    ReviewError,
    ReviewOutcome,
    decode_review,
    internal_error,
    oversized_review,
    review,
)
from imagegate.core.policy import Policy
from imagegate.core.records import MAX_LISTED_FINDINGS, SERVED_WEBHOOKS, Answers, Outcome, Webhook, bounded
from imagegate.shell.logs import get_logger
from imagegate.shell.policy_source import PolicySource, ReloadResult
from imagegate.shell.registry.answerers import close_answerers, settle
from imagegate.shell.registry.gate import RegistryGate
from imagegate.shell.webhook.http import Request, Response
from imagegate.shell.webhook.metrics import METRICS_FLUSH_SECONDS, Metrics
from imagegate.shell.webhook.settings import ServerSettings
from imagegate.shell.webhook.tls_reload import TlsReloader

__all__ = ["WebhookApp"]

log = get_logger("imagegate.server")


_WEBHOOK_AT = {f"/{webhook}": webhook for webhook in SERVED_WEBHOOKS}
_JSON = b"application/json"
_OK = Response(200, b"ok\n")
_NOT_FOUND = Response(404, b"not found\n")
_USE_POST = Response(405, b"use POST\n", headers=((b"allow", b"POST"),))
_USE_GET = Response(405, b"use GET\n", headers=((b"allow", b"GET, HEAD"),))
# Read on every review: bound once (an enum member read is slow on 3.11, core/records.py).
_VALIDATE = Webhook.VALIDATE
_AUDITED = Outcome.AUDITED
_ALLOWED = Outcome.ALLOWED.value


class WebhookApp:
    """The request handler and its background work. One per server process."""

    def __init__(self, settings: ServerSettings, source: PolicySource, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.source = source
        self.metrics = metrics or Metrics(per_namespace=settings.metrics_per_namespace)
        self.metrics.observe_policy(source)
        self.tls: TlsReloader | None = None
        self.gate = RegistryGate(
            settings.policy_path.parent if settings.policy_path else None, observer=self.metrics.observe_request
        )
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
            self.metrics.observe_certificate(self.settings.tls_cert)
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
        await close_answerers()  # background reads (content) first: they use the gate's clients
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
                return self._answer(review(None, request, now=now, webhook=endpoint), request, endpoint, started)
            outcome = review(policy, request, now=now, webhook=endpoint)
            if outcome.decision is not None and outcome.decision.asks(endpoint):
                return self._settled(policy, request, now, outcome, endpoint, started)
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
    ) -> Response:
        try:
            outcome = await settle(
                self.gate,
                policy,
                lambda answers: review(policy, request, now=now, webhook=endpoint, answers=self._counted(answers)),
                lambda result: result.decision,
                webhook=endpoint,
                first=first,
            )
        except Exception:
            return self._internal_error(request, endpoint, started)
        return self._answer(outcome, request, endpoint, started)

    def _counted(self, answers: Answers) -> Answers:
        self.metrics.count_verdicts(answers)
        return answers

    def _internal_error(self, request: AdmissionRequest, endpoint: Webhook, started: float) -> Response:
        log.exception("internal error; denying", uid=bounded(request.uid), endpoint=endpoint.value)
        self.metrics.child(self.metrics.errors, endpoint, "internal").inc()
        return self._answer(internal_error(request), request, endpoint, started)

    def _answer(self, outcome: ReviewOutcome, request: AdmissionRequest, endpoint: Webhook, started: float) -> Response:
        """The HTTP response, counted in metrics and logged (one line, never the body)."""
        elapsed = time.perf_counter() - started
        decision = outcome.decision
        # The metric's results are allowed, denied and warned: an audited object was allowed, silently.
        result = _ALLOWED if outcome.outcome is _AUDITED else outcome.outcome.value
        validating = endpoint is _VALIDATE
        findings = decision.findings if decision is not None and validating else ()
        if validating and decision is not None and decision.allowed and decision.pins_needed:
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
