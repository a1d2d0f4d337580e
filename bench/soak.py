"""Soak: a steady load for a long time while everything around the webhook changes, every answer checked.

Usage::

    python bench/soak.py [--minutes 10] [--rate 400] [--workers 2] [--on-error deny|allow]

Needs ``docker-registry`` and ``skopeo`` (Debian packages) and ``pip install '.[bench]'``.
Starts docker-registry (TLS, Basic auth; a base image and a tool's app image built on it, pushed
by skopeo) and ``imagegate serve`` with a policy under restricted Pod Security whose grant
requires base-image verification, then sends ``/validate`` reviews from 50 keep-alive TLS
connections with independent (Poisson) arrivals at about ``--rate`` reviews/s, for
``--minutes``. Every body has an expected answer, checked on every answer:

* ``trusted``: a pod of the platform's base image: allowed;
* ``granted``: a pod of the tool's image, admitted by its grant once the registry proves it is
  built on the trusted base: allowed while the registry answers; while it is frozen, denied as
  ``registry.onError: deny`` says (``--on-error allow``: allowed) once the tag's cached digest
  has expired;
* ``foreign``: a pod of an image from a registry nobody trusts or granted: denied, as untrusted.

Every pod passes restricted Pod Security, so what decides is the image rules. Meanwhile, one
step every ``--step-seconds`` (15), in a cycle: the grants file rewritten (valid); replaced by
invalid YAML (refused: the last good grants stay); restored, with the TLS certificate renewed;
the TLS key replaced by a mismatched one (refused: the old pair stays); the pair restored and
the registry frozen (SIGSTOP) for ``--freeze-seconds`` (90: longer than the registry client
keeps a tag's digest, so the frozen registry is what decides); the registry back (SIGCONT).

It reports the requests, the failed ones (no answer, HTTP errors), the unexpected answers, the
latency seen by the client, the counts per body and phase (the phase when the review was sent),
the RSS of every server process at the start and the end, and what /metrics said. A failed
request or an unexpected answer makes it exit 1, and so does a run with a whole freeze in which
the frozen registry decided no review. ``--trust-foreign`` trusts the foreign image's registry
in the policy, so that the soak must fail (the tests check that it does).
Everything is on loopback and stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import ssl
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from server_bench import process_tree, rss_mb, start_imagegate, stop
from tests.loopback import free_port
from tests.oci_images import OciLayout, layers
from tests.registry_process import run_registry

from imagegate.shell.registry.client import RegistrySettings
from imagegate.shell.webhook.certs import load_ca, make_certificates

NAMESPACE = "tool-soak"
FOREIGN = "ghcr.io/evil/x:1"
GRANTS_OK = (
    "apiVersion: imagegate.toolforge.org/v1\nkind: ImageGrants\ngrants:\n"
    "  - {namespace: tool-soak, registries: ['%s/tool-soak'], requireBaseImage: true}\n"
)
CONNECTIONS = 50
REQUEST_TIMEOUT = 10.0  # the longest the API server waits for a webhook (timeoutSeconds at most 30; deploy/ says 5)
REGISTRY_TIMEOUT = 2.0  # the policy's registry.timeoutSeconds

THAW_SECONDS = 10  # docker-registry works through the connections that piled up while it was stopped
# How long the registry client keeps what the registry said: a tag's digest, a failure.
_CLIENT = RegistrySettings(timeout=REGISTRY_TIMEOUT)
# While frozen, the granted image is still admitted until its tag's cached digest expires (and a
# lookup begun just before the freeze times out); after the freeze, failures stay cached a while.
FROZEN_GRACE = _CLIENT.tag_ttl + 2 * REGISTRY_TIMEOUT + 1
THAW_GRACE = _CLIENT.negative_ttl + 2 * REGISTRY_TIMEOUT + THAW_SECONDS

ALLOWED, DENIED = "allowed", "denied"
# What a denial must say, by body: the rule in the audit annotation's findings and words of the
# message. The rule that should decide, not any denial: a granted image denied because its
# registry is frozen says so (a base check that could not be made, denied by onError), never
# that the image is not built on the base; the foreign one is outside the tool's grant.
DENIED_BY = {
    "foreign": ("outside-grant", "neither trusted nor in the registries granted"),
    "granted": ("base-image-mismatch", "denied by registry.onError: deny"),
}


@dataclass(frozen=True)
class Phase:
    name: str
    registry: str  # up | frozen-cached | frozen | thawing


def expected(body: str, phase: Phase, on_error: str) -> frozenset[str]:
    """The answers that are right for ``body`` sent in ``phase``."""
    if body == "trusted":
        return frozenset({ALLOWED})
    if body == "foreign":
        return frozenset({DENIED})
    if on_error == "allow" or phase.registry == "up":
        return frozenset({ALLOWED})
    if phase.registry == "frozen":
        return frozenset({DENIED})
    return frozenset({ALLOWED, DENIED})  # the tag's digest may still be cached, or a failure


def judge(body: str, status: int, payload: bytes) -> str:
    """What the answer said: allowed, denied (by the rule that should decide), or what else it was."""
    if status != 200:
        return f"HTTP {status}"
    try:
        response = json.loads(payload)["response"]
    except (ValueError, KeyError, TypeError):
        return "not an AdmissionReview"
    if response.get("allowed") is True:
        return ALLOWED
    findings = str(response.get("auditAnnotations", {}).get("findings", ""))
    message = str(response.get("status", {}).get("message", ""))
    rule, says = DENIED_BY.get(body, ("", ""))
    if not rule or not findings.startswith(f"{rule} ") or ";" in findings or says not in message:
        return f"denied otherwise: {message[:300]}"
    return DENIED


@dataclass
class Tally:
    """Answers by (body, phase): the counts of the report, and what was wrong."""

    counts: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (body, phase, answer)
    latencies: dict[str, list[float]] = field(default_factory=dict)  # by body
    failed: int = 0
    wrong: int = 0  # answers that were not the right one
    unexpected: list[str] = field(default_factory=list)  # what was wrong, each kind once
    first_seen: dict[str, float] = field(default_factory=dict)

    def record(
        self, body: str, sent: Phase, answered: Phase, answer: str, on_error: str, took: float, at: float = 0.0
    ) -> None:
        right = expected(body, sent, on_error) | expected(body, answered, on_error)  # a phase may end in flight
        if answer in (ALLOWED, DENIED) or answer.startswith("denied otherwise"):
            self.latencies.setdefault(body, []).append(took)
            kind = answer if answer in right else "unexpected"
            if answer not in right:
                self.wrong += 1
                self.note(f"{body} in {sent.name}: {answer}, expected {' or '.join(sorted(right))}", at)
        else:
            self.failed += 1
            kind = "failed"
            self.note(f"{body} in {sent.name}: {answer}", at)
        self.counts[(body, sent.name, kind)] += 1

    def note(self, what: str, at: float) -> None:
        """Each kind of wrong answer once, with when it was first seen (seconds into the run)."""
        if len(self.first_seen) < 1000 and what not in self.first_seen:
            self.first_seen[what] = at
            self.unexpected.append(f"{what} (first at {at:.1f} s)")


def review(image: str, n: int) -> bytes:
    """A pod of ``image`` in the tool's namespace that passes restricted Pod Security."""
    container = {
        "name": "c",
        "image": image,
        "env": [{"name": "A", "value": "x" * 64}],
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    spec = {
        "containers": [container],
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
    }
    return json.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": f"soak-{n}",
                "operation": "CREATE",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": NAMESPACE,
                "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p{n}"}, "spec": spec},
            },
        }
    ).encode()


class Connection:
    """One keep-alive HTTPS connection, as the API server keeps one per request in flight."""

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        self.port, self.context = port, context
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> tuple[int, bytes]:
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(
                "127.0.0.1", self.port, ssl=self.context, server_hostname="127.0.0.1"
            )
        head = b"POST /validate HTTP/1.1\r\nHost: imagegate\r\nContent-Type: application/json\r\n"
        self.writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        lines = (await self.reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
        status = int(lines[0].split()[1])
        length = next(int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length:"))
        payload = await self.reader.readexactly(length)
        if any(line.lower() == b"connection: close" for line in lines):
            self.close()
        return status, payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def send_load(
    port: int,
    context: ssl.SSLContext,
    bodies: list[tuple[str, bytes]],
    rate: float,
    until: float,
    phase: Callable[[], Phase],
    tally: Tally,
    on_error: str,
    origin: float,
) -> None:
    """``CONNECTIONS`` clients, each sending after an exponential wait (Poisson arrivals overall)."""
    turn = iter(range(sys.maxsize))

    async def client() -> None:
        connection = Connection(port, context)
        mean_wait = CONNECTIONS / rate
        while time.monotonic() < until:
            await asyncio.sleep(random.expovariate(1 / mean_wait))
            name, body = bodies[next(turn) % len(bodies)]
            sent, started = phase(), time.monotonic()
            try:
                status, payload = await asyncio.wait_for(connection.post(body), REQUEST_TIMEOUT)
                answer = judge(name, status, payload)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError) as exc:
                connection.close()
                answer = f"no answer: {type(exc).__name__} {exc}"
            finished = time.monotonic()
            tally.record(name, sent, phase(), answer, on_error, finished - started, finished - origin)
        connection.close()

    await asyncio.gather(*(client() for _ in range(CONNECTIONS)))


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> int:  # noqa: C901, PLR0912, PLR0915 (a script's main: its options, the run, then its report)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--on-error", choices=("deny", "allow"), default="deny", help="the policy's registry.onError")
    parser.add_argument("--step-seconds", type=float, default=15.0, help="time between disturbances")
    parser.add_argument("--freeze-seconds", type=float, default=90.0, help="how long the registry stays frozen")
    parser.add_argument(
        "--trust-foreign", action="store_true", help="trust the foreign image's registry: the soak must then fail"
    )
    options = parser.parse_args()
    for tool in ("docker-registry", "skopeo"):
        if shutil.which(tool) is None:
            print(f"{tool} not found: apt-get install {tool}", file=sys.stderr)
            return 2
    duration = options.minutes * 60
    events: list[str] = []
    tally = Tally()
    timeline: list[tuple[float, Phase]] = []
    with tempfile.TemporaryDirectory(prefix="imagegate-soak-") as scratch:
        tmp = Path(scratch)
        with run_registry(tmp / "registry", "htpasswd") as registry:
            layout = OciLayout(tmp / "layout")
            base = layers("base", 4)
            registry.push(layout, "base", base, "toolforge/base:1")
            registry.push(layout, "app", [*base, *layers("app", 2)], "tool-soak/app:1")
            tls = make_certificates(tmp / "tls", ["127.0.0.1", "localhost"])
            grants = tmp / "grants" / "grants.yaml"
            grants.parent.mkdir()
            grants.write_text(GRANTS_OK % registry.host)
            trusted = [f"{registry.host}/toolforge", *(["ghcr.io/evil"] if options.trust_foreign else [])]
            (tmp / "policy.yaml").write_text(
                "apiVersion: imagegate.toolforge.org/v1\nkind: ImagePolicy\n"
                f"trusted: [{', '.join(trusted)}]\n"
                f"registry: {{caFile: {registry.tls.ca_cert}, "
                f"credentialsFile: {registry.docker_config(tmp / 'config.json')}, "
                f"onError: {options.on_error}, timeoutSeconds: {REGISTRY_TIMEOUT}}}\n"
                f"baseImages: {{trusted: ['{registry.host}/toolforge/base:1']}}\n"
                "podSecurity: {level: restricted}\n"
            )
            images = {
                "trusted": f"{registry.host}/toolforge/base:1",
                "granted": f"{registry.host}/tool-soak/app:1",
                "foreign": FOREIGN,
            }
            bodies = [(name, review(image, n)) for n, (name, image) in enumerate(images.items())]
            port = free_port()
            server = start_imagegate(tmp, tls, port, options.workers, ("--grants", str(grants)))
            context = ssl.create_default_context(cafile=tls.ca_cert)
            url = f"https://127.0.0.1:{port}"
            started = time.monotonic()

            def now() -> float:
                return time.monotonic() - started

            def phase() -> Phase:
                return timeline[-1][1]

            def enter(name: str, registry_state: str) -> None:
                timeline.append((now(), Phase(name, registry_state)))

            async def ready_json() -> dict[str, object]:
                answer = await asyncio.to_thread(httpx.get, f"{url}/readyz", verify=context, timeout=5)
                result: dict[str, object] = answer.json()
                return result

            async def disturb(until: float) -> None:
                ca = load_ca(tls.cert.parent)
                step = 0
                while time.monotonic() + options.step_seconds < until:
                    await asyncio.sleep(options.step_seconds)
                    step += 1
                    at = round(now())
                    kind = step % 5
                    if kind == 1:
                        grants.write_text(GRANTS_OK % registry.host + f"  - {{namespace: tool-extra-{step}}}\n")
                        enter("grants rewritten", "up")
                        events.append(f"{at}s grants rewritten")
                    elif kind == 2:
                        grants.write_text("grants: [broken\n")
                        enter("grants invalid (refused)", "up")
                        events.append(f"{at}s grants replaced with invalid YAML")
                    elif kind == 3:
                        ready = await ready_json()
                        events.append(f"{at}s readyz policyError={bool(ready['policyError'])}")
                        grants.write_text(GRANTS_OK % registry.host)
                        await asyncio.to_thread(make_certificates, tls.cert.parent, ["127.0.0.1", "localhost"], ca=ca)
                        enter("TLS renewed", "up")
                        events.append(f"{at}s grants restored; TLS certificate renewed")
                    elif kind == 4:
                        other = await asyncio.to_thread(make_certificates, tmp / f"other-{step}", ["127.0.0.1"])
                        shutil.copy(other.key, tls.key)
                        enter("TLS key mismatched (refused)", "up")
                        events.append(f"{at}s TLS key replaced by a mismatched one")
                    else:
                        ready = await ready_json()
                        events.append(f"{at}s readyz tlsError={bool(ready['tlsError'])}")
                        await asyncio.to_thread(make_certificates, tls.cert.parent, ["127.0.0.1", "localhost"], ca=ca)
                        registry.process.send_signal(19)  # SIGSTOP: the registry hangs
                        enter("registry frozen, tag cached", "frozen-cached")
                        events.append(f"{at}s TLS pair restored; registry frozen")
                        frozen_for = min(options.freeze_seconds, max(0.0, until - time.monotonic() - 1))
                        if frozen_for > FROZEN_GRACE:
                            await asyncio.sleep(FROZEN_GRACE)
                            enter("registry frozen", "frozen")
                            events.append(f"{round(now())}s registry frozen past the tag cache")
                            await asyncio.sleep(frozen_for - FROZEN_GRACE)
                        else:
                            await asyncio.sleep(frozen_for)
                        registry.process.send_signal(18)  # SIGCONT
                        enter("registry back, thawing", "thawing")
                        events.append(f"{round(now())}s registry back")
                        await asyncio.sleep(THAW_GRACE)  # whole, even past the end: never "steady" while thawing
                        enter("steady", "up")

            async def run() -> None:
                enter("steady", "up")
                until = time.monotonic() + duration
                disturber = asyncio.create_task(disturb(until))
                await send_load(port, context, bodies, options.rate, until, phase, tally, options.on_error, started)
                disturber.cancel()
                registry.process.send_signal(18)

            try:
                for _ in range(150):
                    try:
                        if httpx.get(f"{url}/readyz", verify=context, timeout=1).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    time.sleep(0.2)
                time.sleep(3)  # workers up, bases resolved
                pids = process_tree(server.pid)
                rss_start = {pid: rss_mb(pid) for pid in pids}
                started = time.monotonic()
                uvloop.run(run())
                registry.process.send_signal(18)
                rss_end = {pid: rss_mb(pid) for pid in pids if Path(f"/proc/{pid}").exists()}
                metrics = httpx.get(f"{url}/metrics", verify=context, timeout=5).text
            finally:
                registry.process.send_signal(18)
                stop(server)
    answered = sum(len(times) for times in tally.latencies.values())
    total = answered + tally.failed
    print(
        f"soak: {options.minutes:g} min, {CONNECTIONS} connections, ~{options.rate}/s Poisson, "
        f"{options.workers} workers, registry.onError {options.on_error}\n"
    )
    print(f"requests: {total:,} ({total / duration:,.0f}/s); failed: {tally.failed}; unexpected answers: {tally.wrong}")
    for body, times in tally.latencies.items():
        print(
            f"latency of {body} (client side): p50 {percentile(times, 0.5) * 1000:.2f} ms, "
            f"p99 {percentile(times, 0.99) * 1000:.2f} ms"
        )
    print()
    phases = list(dict.fromkeys(p.name for _t, p in timeline))
    print("| body | phase (when sent) | right answer | allowed | denied | failed | unexpected |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    registry_of = {p.name: p for _t, p in timeline}
    for body in ("trusted", "granted", "foreign"):
        for name in phases:
            counts = [tally.counts[(body, name, kind)] for kind in (ALLOWED, DENIED, "failed", "unexpected")]
            if any(counts):
                right = " or ".join(sorted(expected(body, registry_of[name], options.on_error)))
                print(f"| {body} | {name} | {right} | " + " | ".join(f"{c:,}" for c in counts) + " |")
    for pid, start_mb in rss_start.items():
        print(f"process {pid}: RSS {start_mb:.0f} MB at start, {rss_end.get(pid, float('nan')):.0f} MB at end")
    for line in metrics.splitlines():
        if line.startswith(
            ("imagegate_policy_reloads_total", "imagegate_tls_reloads_total", "imagegate_decisions_total")
        ):
            print(line)
    print("events:")
    for event in events:
        print(f"  {event}")
    failures = list(tally.unexpected)
    decided_frozen = sum(tally.counts[("granted", "registry frozen", kind)] for kind in (ALLOWED, DENIED))
    if any(p.registry == "frozen" for _t, p in timeline) and decided_frozen == 0:
        failures.append("the registry was frozen past the tag cache, and no granted review was decided meanwhile")
    for failure in failures[:20]:
        print(f"FAILED: {failure}", file=sys.stderr)
    if len(failures) > 20:
        print(f"FAILED: and {len(failures) - 20} more kinds of failure", file=sys.stderr)
    return 1 if failures or tally.failed else 0


if __name__ == "__main__":
    sys.exit(main())
