"""The Prometheus metrics one server process exports at ``/metrics`` (``Metrics``).

Decisions, findings and latencies are buffered per process and written about once a second;
with several workers the series are combined over ``PROMETHEUS_MULTIPROC_DIR`` when scraped.
"""

from __future__ import annotations

import bisect
import datetime as dt
import importlib.metadata
import os
import platform
import ssl
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

from imagegate.core import decide
from imagegate.core.decide import Rule
from imagegate.core.podprofile import TOOL_PROFILE_CHECKS
from imagegate.core.podsecurity import CHECKS
from imagegate.core.policy import Policy
from imagegate.core.records import (
    SERVED_WEBHOOKS,
    Answers,
    Mode,
    Outcome,
    PodRules,
    Verdict,
)
from imagegate.core.report import GRANT_STATES, grant_states
from imagegate.core.webhooks import condition_fingerprint, mutation_condition
from imagegate.shell.policy_source import PolicySource
from imagegate.shell.registry.answerers import answered
from imagegate.shell.registry.errors import RegistryErrorKind
from imagegate.shell.webhook.histograms import BatchedHistogram, Counts

__all__ = [
    "LATENCY_BUCKETS",
    "METRICS_FLUSH_SECONDS",
    "MULTIPROCESS_ENV",
    "OTHER_REGISTRY",
    "REGISTRY_BUCKETS",
    "Metrics",
    "certificate_expiry",
    "finding_rules",
    "verdict_checks",
]

disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series double the output and no dashboard uses them

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
METRICS_FLUSH_SECONDS = 1.0
# Up to 10 s: a decision that asks a registry (base images, signatures, pins) can take seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REGISTRY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# The registry label: the registries the policy names (its contact scope), at most this many,
# every other one as "other" (a tenant names the registry in its image: unbounded otherwise).
MAX_REGISTRY_LABELS = 16
OTHER_REGISTRY = "other"
# Every label value known in advance: each series is present from the start, at 0, so that
# increase() and rate() see the first event (a series that appears with it has no "before").
RESULTS = (Outcome.ALLOWED.value, Outcome.DENIED.value, Outcome.WARNED.value)  # audited counts as allowed
ERROR_REASONS = ("bad-review", "internal")
RELOAD_RESULTS = ("ok", "error")


def finding_rules() -> tuple[str, ...]:
    """Every rule a finding can name: the image rules, each Pod Security check, each tool-profile check."""
    image = [rule.value for rule in Rule]
    pod = [f"{PodRules.POD_SECURITY.value}:{check.id}" for check in CHECKS]
    tool = [f"{PodRules.TOOL_PROFILE.value}:{check}" for check in TOOL_PROFILE_CHECKS]
    return tuple(dict.fromkeys([*sorted(image), *pod, *tool]))


def certificate_expiry(cert: Path) -> float | None:
    """The serving certificate's notAfter, in Unix seconds (None when it cannot be read).

    Read with the ssl module's own decoder (CPython's, used by its test suite): serving loads
    no cryptography library.
    """
    try:
        decoded = ssl._ssl._test_decode_cert(str(cert))  # type: ignore[attr-defined]
        return float(ssl.cert_time_to_seconds(decoded["notAfter"]))
    except (AttributeError, KeyError, OSError, ValueError, ssl.SSLError):
        return None


def verdict_checks() -> tuple[str, ...]:
    """The ``check`` label of every question type answered whose answers are verdicts (each
    question type declares its own: a new registry-backed rule is counted with no edit here)."""
    return tuple(dict.fromkeys(question.check for question in answered() if question.check))


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
        self.tls_expiry = Gauge(
            "imagegate_tls_certificate_expiry_timestamp_seconds",
            "When the serving certificate in use expires (its notAfter, Unix seconds).",
            registry=self.registry,
            multiprocess_mode="livemin",
        )
        self.build_info = Gauge(
            "imagegate_build_info",
            "1, labelled with imagegate's version, Python's, and whether the core is compiled (mypyc).",
            ["version", "python", "compiled"],
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.verdicts = Counter(
            "imagegate_verdicts_total",
            "Registry checks in decisions, by check (base, signature, attestation, content) and verdict "
            "(pass, fail, unverified: passed by onError: allow).",
            ["check", "verdict"],
            registry=self.registry,
        )
        self.registry_requests = Counter(
            "imagegate_registry_requests_total",
            'Registry API requests by registry (the policy\'s; any other as "other").',
            ["registry"],
            registry=self.registry,
        )
        self.registry_errors = Counter(
            "imagegate_registry_errors_total",
            "Registry API requests that failed, by registry and kind (timeout, unreachable, auth, http...).",
            ["registry", "kind"],
            registry=self.registry,
        )
        self.registry_duration = Histogram(
            "imagegate_registry_request_duration_seconds",
            "Registry API requests' time, token fetch and redirects included, by registry.",
            ["registry"],
            buckets=REGISTRY_BUCKETS,
            registry=self.registry,
        )
        self._registries: tuple[Policy, frozenset[str]] | None = None
        self._start_at_zero(per_namespace)

    def _start_at_zero(self, per_namespace: bool) -> None:
        """Every series whose labels are known in advance, at 0 (per namespace: not known)."""
        try:
            version = importlib.metadata.version("imagegate")
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        compiled = not str(decide.__file__).endswith(".py")  # mypyc builds an extension module
        self.build_info.labels(version, platform.python_version(), str(compiled).lower()).set(1)
        if not per_namespace:
            for endpoint in SERVED_WEBHOOKS:
                for result in RESULTS:
                    self.child(self.decisions, endpoint.value, result)
            for rule in finding_rules():
                for mode in Mode:
                    self.child(self.findings, rule, mode.value)
        for endpoint in SERVED_WEBHOOKS:
            for reason in ERROR_REASONS:
                self.child(self.errors, endpoint.value, reason)
        for result in RELOAD_RESULTS:
            self.reloads.labels(result)
            self.tls_reloads.labels(result)
        for check in verdict_checks():
            for verdict in Verdict:
                self.verdicts.labels(check, verdict.value)
        self._registry_series(OTHER_REGISTRY)

    def _registry_series(self, registry: str) -> None:
        self.registry_requests.labels(registry)
        self.registry_duration.labels(registry)
        for kind in RegistryErrorKind:
            self.registry_errors.labels(registry, kind.value)

    def registry_label(self, registry: str) -> str:
        """``registry`` when the policy in force names it (one of the first :data:`MAX_REGISTRY_LABELS`), else "other"."""
        named = self._registries[1] if self._registries is not None else frozenset()
        return registry if registry in named else OTHER_REGISTRY

    def observe_request(self, registry: str, seconds: float, failure: RegistryErrorKind | None) -> None:
        """One registry API request ended (the registry client's observer)."""
        label = self.registry_label(registry)
        self.registry_requests.labels(label).inc()
        self.registry_duration.labels(label).observe(seconds)
        if failure is not None:
            self.registry_errors.labels(label, failure.value).inc()

    def count_verdicts(self, answers: Answers) -> None:
        """The registry's verdicts one decision was made with."""
        for question, found in answers.found.items():
            if question.check:
                for verdict in question.verdicts(found):
                    self.verdicts.labels(question.check, verdict.value).inc()

    def observe_certificate(self, cert: Path) -> None:
        expiry = certificate_expiry(cert)
        if expiry is not None:
            self.tls_expiry.set(expiry)

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
            if self._registries is None or self._registries[0] is not policy:
                named = frozenset(sorted(policy.contact_scope().registries)[:MAX_REGISTRY_LABELS])
                self._registries = (policy, named)
                for registry in named:
                    self._registry_series(registry)
