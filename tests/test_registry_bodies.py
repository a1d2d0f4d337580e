"""Issue 27 items 7 and 8: a registry's answer that breaks while its body streams, or never ends.

A tenant with a grant for a registry it runs controls every byte of its answers. A body cut short
of its Content-Length, a malformed chunk, a Content-Encoding that lies, headers followed by
silence, or a body trickled a byte at a time must each be a :class:`RegistryError` of a named kind
(the policy's ``onError``, pinning's warning), within ``registry.timeoutSeconds`` for the whole
answer: never an internal error (500, ``imagegate_request_errors_total{reason="internal"}``, exit
70). The registry here is a real HTTPS server on loopback that misbehaves on purpose, byte by
byte; each layer is checked: the client, the webhook (``imagegate serve``), ``check --registry``
and ``inspect``.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import json
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from imagegate.core.oci import digest_of
from imagegate.core.policy import DEFAULT_LOOKUP_TIMEOUT, PolicyError, RegistryConfig, load_policy
from imagegate.core.reference import parse_docker_ref
from imagegate.shell.registry.auth import DockerConfigCredentials, Login
from imagegate.shell.registry.client import RegistryClient, RegistryError, RegistryErrorKind, RegistrySettings
from imagegate.shell.registry.gate import TENANT_WORDS, RegistryGate, pin_failure_note, tenant_reason
from imagegate.shell.webhook.certs import CertificateFiles, make_certificates
from tests.conftest import GRANTS_HEADER, POLICY_HEADER, admission_review, run_imagegate
from tests.registry_process import STALL_TIMEOUT, SteppedLoop, fault_handler, https_server
from tests.test_registry import MANIFEST
from tests.webhook_process import run_webhook

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
# The client in this process runs on a SteppedLoop that the registry moves on as it stalls,
# trickles or is slow, so that each deadline ends when the registry's behaviour says, never
# because a loaded machine was slow: registry.timeoutSeconds is STALL_TIMEOUT (30 s) there, more
# than a loaded machine takes in real time. Each "slow" answer moves the clock SLOW_STEP (each
# request within STALL_TIMEOUT, a lookup of two not within LOOKUP); each trickled byte TRICKLE_STEP.
SLOW_STEP = 20.0
TRICKLE_STEP = 5.0
# imagegate run as a process (serve, check, inspect...) waits in real time:
TIMEOUT = 1.0  # registry.timeoutSeconds: small, so a stall or a trickle costs a second
TRICKLE = 0.2  # real seconds between two bytes of a trickled body: no single read waits long
SLOW = 3.0  # real seconds before each "slow" answer: past TIMEOUT; one within WEBHOOK_LOOKUP, two not

# Each fault, and the kind the client names it by.
FAULTS: dict[str, RegistryErrorKind] = {
    "short": RegistryErrorKind.TRUNCATED,  # fewer bytes than its Content-Length, then the connection ends
    "chunk-cut": RegistryErrorKind.TRUNCATED,  # a chunked body whose connection ends inside a chunk
    "bad-chunk": RegistryErrorKind.PROTOCOL,  # a chunk size that is not hexadecimal
    "two-lengths": RegistryErrorKind.PROTOCOL,  # two Content-Length headers that disagree
    "gzip-lie": RegistryErrorKind.ENCODING,  # Content-Encoding: gzip on bytes that are not gzip
    "gzip-cut": RegistryErrorKind.ENCODING,  # a gzip stream without its end
    "brotli": RegistryErrorKind.ENCODING,  # an encoding imagegate never asks for
    "gzip-bomb": RegistryErrorKind.TOO_LARGE,  # 64 KiB of gzip that inflates to 64 MiB
    "stall": RegistryErrorKind.TIMEOUT,  # headers, then nothing
    "trickle": RegistryErrorKind.TIMEOUT,  # a byte every 0.2 s: no read ever waits a second
}
# What the webhook and check are tested with: one of each class of the issue.
CLASSES = ("short", "bad-chunk", "gzip-lie", "stall", "trickle")


@functools.cache
def _bomb() -> bytes:
    """64 MiB of spaces as gzip: about 64 KiB on the wire."""
    return gzip.compress(b" " * (64 * 1024 * 1024), compresslevel=9)


@dataclass
class FaultRegistry:
    host: str
    tls: CertificateFiles
    hits: list[str]
    # the loop of the client in this process, which the registry moves on (none: real time)
    clock: list[SteppedLoop] = field(default_factory=list)


def _broken_answer(fault: str) -> tuple[tuple[str, ...], bytes] | None:
    """The headers and the bytes after them of each fault sent at once (None for the others)."""
    length = f"Content-Length: {len(MANIFEST)}"
    chunked = "Transfer-Encoding: chunked"
    gzipped = "Content-Encoding: gzip"
    cut = gzip.compress(MANIFEST)[:-8]  # no CRC and length trailer
    answers = {
        "short": ((length,), MANIFEST[:20]),
        "chunk-cut": ((chunked,), b"%x\r\n%s" % (len(MANIFEST), MANIFEST[:20])),
        "bad-chunk": ((chunked,), b"zz\r\n" + MANIFEST + b"\r\n0\r\n\r\n"),
        "two-lengths": ((length, f"Content-Length: {len(MANIFEST) + 1}"), MANIFEST),
        "gzip-lie": ((length, gzipped), MANIFEST),
        "gzip-cut": ((f"Content-Length: {len(cut)}", gzipped), cut),
        "brotli": ((length, "Content-Encoding: br"), MANIFEST),
        "gzip-bomb": ((f"Content-Length: {len(_bomb())}", gzipped), _bomb()),
    }
    return answers.get(fault)


def _behaviour(stop: threading.Event, clock: list[SteppedLoop]) -> Any:
    """The fault is the repository's last segment: ``/v2/<anything>/<fault>/manifests/<tag>``.
    With a client's loop in ``clock`` the registry moves its clock on where it would take time."""

    def behaviour(handler: BaseHTTPRequestHandler) -> None:
        handler.close_connection = True
        parts = handler.path.split("/")
        fault = parts[-3] if len(parts) >= 4 else ""
        write = handler.wfile.write
        loop = clock[0] if clock else None  # this request's client: a later test's is not moved

        def wait(real: float, stepped: float) -> bool:
            """Take ``real`` seconds, or move the client's clock ``stepped``; whether to stop."""
            if loop is None:
                return stop.wait(real)
            loop.step(stepped)
            return stop.wait(0.02)  # pace: a step reaches the loop before the next byte does

        def head(*headers: str) -> None:
            lines = ["HTTP/1.1 200 OK", f"Content-Type: {OCI_MANIFEST}", "Connection: close", *headers, "", ""]
            write("\r\n".join(lines).encode())

        length = f"Content-Length: {len(MANIFEST)}"
        try:
            if (answer := _broken_answer(fault)) is not None:
                head(*answer[0])
                write(answer[1])
            elif fault == "stall":
                head(length)
                if loop is not None:
                    loop.step(STALL_TIMEOUT)
                stop.wait(20)
            elif fault == "slow":  # every answer whole and well-formed, each after SLOW seconds
                if wait(SLOW, SLOW_STEP):
                    return
                body = b"{}" if "/blobs/" in handler.path else MANIFEST
                head(f"Content-Length: {len(body)}")
                write(body)
            elif fault == "trickle":
                head(length)
                for byte in MANIFEST:
                    if wait(TRICKLE, TRICKLE_STEP):
                        return
                    write(bytes([byte]))
            else:
                write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        except OSError:  # the client hung up: what it should do
            pass
        except RuntimeError:  # its loop closed: the client is gone
            pass

    return behaviour


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultRegistry]:
    tls = make_certificates(tmp_path_factory.mktemp("faulty") / "tls", ["127.0.0.1"])
    stop = threading.Event()
    hits: list[str] = []
    _bomb()  # made before it is sent, not while the client waits
    clock: list[SteppedLoop] = []
    with https_server(fault_handler(_behaviour(stop, clock), hits), tls) as host:
        try:
            yield FaultRegistry(host, tls, hits, clock)
        finally:
            stop.set()  # the stalled and trickling handlers end


def _failing(registry: FaultRegistry, go: Callable[[], Coroutine[Any, Any, None]]) -> RegistryError:
    """Run ``go`` on a loop whose clock ``registry`` moves on: the RegistryError it ends with."""
    loop = SteppedLoop()
    registry.clock[:] = [loop]
    try:
        with pytest.raises(RegistryError) as caught, asyncio.Runner(loop_factory=lambda: loop) as runner:
            runner.run(go())
    finally:
        registry.clock.clear()
    return caught.value


def _resolve(registry: FaultRegistry, image: str, **settings: Any) -> RegistryError:
    settings = {"timeout": STALL_TIMEOUT, "lookup_timeout": 4 * STALL_TIMEOUT, **settings}

    async def go() -> None:
        async with RegistryClient(RegistrySettings(ca_file=registry.tls.ca_cert, **settings)) as c:
            await c.resolve(parse_docker_ref(f"{registry.host}/{image}"))

    return _failing(registry, go)


# --- the client ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", list(FAULTS))
def test_every_broken_body_is_a_named_registry_error(faulty: FaultRegistry, fault: str) -> None:
    """The stalled and trickled answers end at registry.timeoutSeconds (the registry keeps them
    going for 20 s of real time, and cuts them short then: a TIMEOUT is the deadline's)."""
    error = _resolve(faulty, f"tool-a/{fault}:1")
    assert error.kind is FAULTS[fault], str(error)
    assert faulty.host in str(error) or "manifest" in str(error)


def test_a_trickled_body_ends_at_the_requests_deadline(faulty: FaultRegistry) -> None:
    """No read waits longer than TRICKLE_STEP, so httpx's per-read timeout never fires: the request's deadline does."""
    error = _resolve(faulty, "tool-a/trickle:1")
    assert error.kind is RegistryErrorKind.TIMEOUT
    assert f"took longer than {STALL_TIMEOUT:g}s (registry.timeoutSeconds)" in str(error)


def test_every_kind_has_words_for_a_tenant() -> None:
    """Each kind a tenant can be told, told in fixed words (refused and not-contacted say their own)."""
    assert set(TENANT_WORDS) | {RegistryErrorKind.REFUSED, RegistryErrorKind.NOT_CONTACTED} == set(RegistryErrorKind)


# --- answers whose bodies httpx itself would read whole -------------------------------------------


def _endless_after(status: int, headers: dict[str, str], sent: list[int], stop: threading.Event) -> Any:
    """Requests without Authorization get ``status`` with an endless chunked body; the others a 404."""

    def behaviour(handler: BaseHTTPRequestHandler) -> None:
        handler.close_connection = True
        if "Authorization" in handler.headers or handler.path.endswith("/elsewhere"):
            handler.wfile.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
            return
        lines = [f"HTTP/1.1 {status} Answer", "Transfer-Encoding: chunked", *(f"{k}: {v}" for k, v in headers.items())]
        handler.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        piece = b" " * 65536
        sent.append(0)
        try:
            while sent[-1] < 64 * 1024 * 1024 and not stop.is_set():
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                sent[-1] += len(piece)
        except OSError:
            pass

    return behaviour


@pytest.mark.parametrize("status", [302, 401])
def test_a_redirect_or_a_challenge_is_followed_without_reading_its_body(tmp_path: Path, status: int) -> None:
    """httpx reads a redirect's body, and a refused request's before it retries, whole: endless
    here. The client follows both itself, reading neither body."""
    tls = make_certificates(tmp_path / "tls", ["127.0.0.1"])
    sent: list[int] = []
    stop = threading.Event()
    headers = {"Location": "/v2/tool-a/app/manifests/elsewhere"} if status == 302 else {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="test"'
    with https_server(fault_handler(_endless_after(status, headers, sent, stop), []), tls) as host:
        credentials = DockerConfigCredentials({host: Login("tool-builder", "pass")})
        try:
            error = _resolve(
                FaultRegistry(host, tls, []), "tool-a/app:1", credentials=credentials, max_manifest_bytes=65536
            )
        finally:
            stop.set()
    assert error.kind is RegistryErrorKind.NOT_FOUND, str(error)
    assert sent and max(sent) < 16 * 1024 * 1024, sent


# --- the webhook ------------------------------------------------------------------------------------


def _policy(
    registry: FaultRegistry, tmp_path: Path, on_error: str, lookup: float = 30, timeout: float = TIMEOUT
) -> tuple[Path, Path]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        POLICY_HEADER
        + f"""
trusted: [{registry.host}/toolforge]
registry:
  caFile: {registry.tls.ca_cert}
  timeoutSeconds: {timeout}
  lookupTimeoutSeconds: {lookup}
  onError: {on_error}
baseImages: {{trusted: ["{registry.host}/toolforge/base:1"]}}
pinning: {{enabled: true}}
"""
    )
    grants = tmp_path / "grants.yaml"
    grants.write_text(
        GRANTS_HEADER
        + f"""
grants:
  - namespace: tool-a
    registries: [{registry.host}/tool-a]
    requireBaseImage: true
"""
    )
    return policy, grants


def _reason(image: str, fault: str) -> str:
    """What a tenant reads about the fault: its kind's fixed words (``tenant_reason``), never the detail."""
    return tenant_reason(image, RegistryError(FAULTS[fault], "detail for the log"))


def _pod(image: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": image}]},
    }


@pytest.mark.parametrize("on_error", ["deny", "allow"])
def test_the_webhook_answers_by_policy_never_an_internal_error(
    faulty: FaultRegistry, tmp_path: Path, on_error: str
) -> None:
    policy, grants = _policy(faulty, tmp_path, on_error)
    with run_webhook(tmp_path, policy=policy, grants=grants) as webhook:
        http = webhook.client()
        answers = {}
        for fault in CLASSES:
            # a trusted image to pin: admitted unpinned, with a warning saying what the registry did
            trusted = f"{faulty.host}/toolforge/{fault}:1"
            pinned = http.post("/mutate", json=admission_review(_pod(trusted), "tool-a"))
            assert pinned.status_code == 200
            pin = pinned.json()["response"]
            assert pin["allowed"] is True, (fault, pin)
            assert "patch" not in pin or trusted not in json.dumps(pin.get("patch")), (fault, pin)
            assert pin_failure_note(trusted, RegistryError(FAULTS[fault], "")) in pin["warnings"], (fault, pin)
            # a granted image that must be built on a trusted base: registry.onError decides
            granted = f"{faulty.host}/tool-a/{fault}:1"
            answer = http.post("/validate", json=admission_review(_pod(granted), "tool-a"))
            assert answer.status_code == 200
            answers[fault] = answer.json()["response"]
        metrics = http.get("/metrics").text
        logged = [json.loads(line) for line in webhook.logs().splitlines() if line.startswith("{")]
    failures = {(e.get("image"), e.get("kind")) for e in logged if e.get("event") == "registry lookup failed"}
    for fault, response in answers.items():
        reason = _reason(f"{faulty.host}/tool-a/{fault}:1", fault)
        assert response.get("status", {}).get("code") != 500, (fault, response)
        if on_error == "deny":
            assert response["allowed"] is False, (fault, response)
            assert f"{reason}; denied by registry.onError: deny" in response["status"]["message"], (fault, response)
        else:  # admitted unverified: the tenant is told in a warning, the detail is in imagegate's log
            assert response["allowed"] is True, (fault, response)
            assert (f"{faulty.host}/tool-a/{fault}:1", FAULTS[fault].value) in failures, (fault, failures)
            said = [w for w in response["warnings"] if "allowed by registry.onError: allow" in w]
            assert len(said) == 1 and "not verified" in said[0], (fault, response["warnings"])
    assert 'imagegate_decisions_total{endpoint="validate"' in metrics  # the counters were read
    for endpoint in ("validate", "mutate"):  # each there from the start, at 0
        assert f'imagegate_request_errors_total{{endpoint="{endpoint}",reason="internal"}} 0.0' in metrics, metrics


# --- the command line ---------------------------------------------------------------------------------


def test_check_with_the_registry_denies_by_policy(faulty: FaultRegistry, tmp_path: Path) -> None:
    policy, grants = _policy(faulty, tmp_path, "deny")
    pods = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {**_pod(f"{faulty.host}/tool-a/{fault}:1"), "metadata": {"name": fault, "namespace": "tool-a"}}
            for fault in CLASSES
        ],
    }
    result = run_imagegate(
        "check", "-", "-p", str(policy), "-g", str(grants), "--registry", "-o", "json", stdin=json.dumps(pods)
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    objects = json.loads(result.stdout)["objects"]
    for fault, checked in zip(CLASSES, objects, strict=True):
        assert checked["allowed"] is False
        (violation,) = checked["violations"]
        reason = _reason(f"{faulty.host}/tool-a/{fault}:1", fault)
        assert f"{reason}; denied by registry.onError: deny" in violation["message"], violation


@pytest.mark.parametrize("fault", CLASSES)
def test_inspect_says_what_the_registry_did_in_one_line(faulty: FaultRegistry, tmp_path: Path, fault: str) -> None:
    policy, _grants = _policy(faulty, tmp_path, "deny")
    result = run_imagegate("inspect", f"{faulty.host}/tool-a/{fault}:1", "-p", str(policy))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert f"{faulty.host}/tool-a/{fault}:1" in line
    expected = {
        RegistryErrorKind.TRUNCATED: "early",
        RegistryErrorKind.PROTOCOL: "not valid HTTP/1.1",
        RegistryErrorKind.ENCODING: "Content-Encoding",
        RegistryErrorKind.TIMEOUT: "took longer than",
    }[FAULTS[fault]]
    assert expected in line, line


# --- one deadline per lookup (item 8) -------------------------------------------------------------

# registry.lookupTimeoutSeconds in these tests: a manifest and a config from "slow" take 2 SLOW_STEP
# in this process (LOOKUP_STEPPED), 2 SLOW of real time in imagegate's processes (LOOKUP)
LOOKUP_STEPPED = STALL_TIMEOUT
LOOKUP = 1.0
# the webhook's, which pins with one slow answer (2 s to spare on a loaded machine) and not two
WEBHOOK_LOOKUP = SLOW + 2


def test_a_lookup_has_one_deadline_whatever_its_requests_take(faulty: FaultRegistry) -> None:
    """Each answer of the slow registry comes within its request's deadline; the lookup as a whole
    (a manifest, then its config) does not, and ends at registry.lookupTimeoutSeconds. Without
    that deadline the same lookup reads on (to a config that does not match its digest)."""
    ref = parse_docker_ref(f"{faulty.host}/tool-a/slow:1")

    def lookup(seconds: float) -> RegistryError:
        config = RegistryConfig(timeout=STALL_TIMEOUT, ca_file=str(faulty.tls.ca_cert), lookup_timeout=seconds)

        async def go() -> None:
            gate = RegistryGate()
            try:
                await gate.lookup(config, str(ref), lambda: gate.client(config).resolve(ref))
            finally:
                await gate.aclose()

        return _failing(faulty, go)

    cut = lookup(LOOKUP_STEPPED)
    assert cut.kind is RegistryErrorKind.TIMEOUT, str(cut)
    assert f"took longer than {LOOKUP_STEPPED:g}s (registry.lookupTimeoutSeconds)" in str(cut)
    assert lookup(4 * STALL_TIMEOUT).kind is RegistryErrorKind.DIGEST_MISMATCH


def test_a_shared_lookup_ends_at_its_deadline_even_when_nobody_waits(faulty: FaultRegistry) -> None:
    """The client's single flight has the lookup deadline too: work whose callers all gave up
    (their own deadlines) does not go on in the background for longer."""
    # by digest: one flight reads the manifest, then its config (SLOW_STEP each)
    error = _resolve(faulty, f"tool-a/slow@{digest_of(MANIFEST)}", lookup_timeout=LOOKUP_STEPPED)
    assert error.kind is RegistryErrorKind.TIMEOUT
    assert f"took longer than {LOOKUP_STEPPED:g}s (registry.lookupTimeoutSeconds)" in str(error)


def test_the_webhook_answers_by_policy_within_the_lookup_deadline(faulty: FaultRegistry, tmp_path: Path) -> None:
    """A lookup of two slow answers ends at its deadline (the registry would answer both: a
    digest mismatch, not a timeout); one of one slow answer within it is done (pinned)."""
    policy, grants = _policy(faulty, tmp_path, "deny", lookup=WEBHOOK_LOOKUP, timeout=WEBHOOK_LOOKUP)
    image = f"{faulty.host}/tool-a/slow:1"
    with run_webhook(tmp_path, policy=policy, grants=grants) as webhook:
        http = webhook.client()
        response = http.post("/validate", json=admission_review(_pod(image), "tool-a")).json()["response"]
        trusted = f"{faulty.host}/toolforge/slow:1"
        pinned = http.post("/mutate", json=admission_review(_pod(trusted), "tool-a")).json()["response"]
        logs = webhook.logs()
    reason = tenant_reason(image, RegistryError(RegistryErrorKind.TIMEOUT, ""))
    assert response["allowed"] is False
    assert f"{reason}; denied by registry.onError: deny" in response["status"]["message"], response
    assert f"took longer than {WEBHOOK_LOOKUP:g}s (registry.lookupTimeoutSeconds)" in logs
    # pinning needs one manifest (SLOW): within the deadline, so the trusted image is pinned
    assert pinned["allowed"] is True and "patch" in pinned, pinned


def test_operator_commands_end_each_lookup_at_its_deadline(faulty: FaultRegistry, tmp_path: Path) -> None:
    """check --registry, audit --registry, layers, bases and inspect on a registry that trickles
    (each request ends at timeoutSeconds) and on one whose every answer is slow (the lookup
    ends at lookupTimeoutSeconds): each says so, none waits on, none exits 70."""
    policy, grants = _policy(faulty, tmp_path, "deny", lookup=LOOKUP)
    images = [f"{faulty.host}/tool-a/{fault}:1" for fault in ("trickle", "slow")]
    pods = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {**_pod(image), "metadata": {"name": f"p{i}", "namespace": "tool-a"}} for i, image in enumerate(images)
        ],
    }
    dump = tmp_path / "dump.json"
    dump.write_text(json.dumps(pods))
    options = ("-p", str(policy), "-g", str(grants))
    runs = {
        "check": run_imagegate("check", str(dump), *options, "--registry", "-o", "json"),
        "audit": run_imagegate("audit", "--from", str(dump), *options, "--registry", "-o", "json"),
        "layers": run_imagegate("layers", *images, *options, "-o", "json"),
        "bases": run_imagegate("bases", *images, *options, "-o", "json"),
        **{f"inspect {image}": run_imagegate("inspect", image, "-p", str(policy)) for image in images},
    }
    for command, result in runs.items():
        assert result.returncode not in (0, 70), (command, result.stderr)
        assert "Traceback" not in result.stderr, (command, result.stderr)
    timeout = tenant_reason(images[0], RegistryError(RegistryErrorKind.TIMEOUT, ""))
    # which deadline ends a trickle first (the request's or the lookup's, both 1 s here) depends on
    # the moment each began; the client's and the gate's tests above tell them apart
    ended = f"took longer than {TIMEOUT:g}s (registry."
    for command in ("check", "audit"):
        for image in images:
            denial = f"({image}) is not built on a trusted base image: {timeout}; denied by registry.onError: deny"
            assert denial in runs[command].stdout, (command, runs[command].stdout)
            # the operator reads the detail (the log, on stderr)
            (logged,) = [line for line in runs[command].stderr.splitlines() if f"image={image}" in line]
            assert ended in logged, (command, logged)
    for command in ("layers", "bases"):  # what they could not read, said once per registry and kind; exit 2
        assert runs[command].returncode == 2, (command, runs[command].stderr)
        (line,) = [line for line in runs[command].stderr.splitlines() if "not read" in line]
        assert f"{faulty.host}: 2 images not read (timeout)" in line and ended in line, (command, line)
    for image in images:
        result = runs[f"inspect {image}"]
        assert result.returncode == 2
        (line,) = [line for line in result.stderr.splitlines() if line.strip()]
        assert image in line and ended in line, line


@pytest.mark.parametrize(
    ("registry", "seconds"),
    [("{}", DEFAULT_LOOKUP_TIMEOUT), ("{timeoutSeconds: 6}", 6.0), ("{lookupTimeoutSeconds: 10}", 10.0)],
)
def test_the_lookup_deadline_and_its_default(registry: str, seconds: float) -> None:
    assert load_policy(f"{POLICY_HEADER}registry: {registry}\n", "policy.yaml").registry.lookup_timeout == seconds


@pytest.mark.parametrize("seconds", ["2", "31", "0", "-1"])
def test_a_lookup_deadline_shorter_than_a_request_or_past_30s_is_refused(seconds: str) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(f"{POLICY_HEADER}registry: {{timeoutSeconds: 3, lookupTimeoutSeconds: {seconds}}}\n", "policy.yaml")
    assert "lookupTimeoutSeconds" in str(caught.value) and "between timeoutSeconds (3) and 30" in str(caught.value)
