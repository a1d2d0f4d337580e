"""Benchmark ``imagegate serve`` against nginx returning a fixed allow, both over TLS.

Usage::

    python bench/server_bench.py [--duration 10] [--concurrency 10,50,100] [--paced-rate 1000,5000]
                                 [--workers 1,2] [--policies pod-security,images-only] [--no-stacks]
                                 [--rss-only]

Needs ``wrk`` and ``nginx`` (Debian packages; ``scripts/test.sh`` installs them). It starts
both servers on 127.0.0.1 with the same certificate, drives each from a separate ``wrk``
process with keep-alive over TLS, cycling through a mix of realistic AdmissionReviews
(small pod, 10-container pod, Deployment), and prints Markdown tables:

* saturation: ``wrk`` sends as fast as the server answers, at each concurrency;
* paced: 50 connections that each wait between requests, an offered load of about each
  ``--paced-rate`` in reviews/s (the API server's traffic is paced by pod creations, not a
  closed loop), which is where the p99 budget applies. "Poisson": each wait is random
  (exponential), so requests arrive independently; "in phase" (first rate only): every wait
  is the same, so the connections send in bursts of 50, the worst case for a queue;
* for each benchmark policy: ``pod-security`` (trusted registry, a grant, restricted Pod
  Security with the tool profile) and ``images-only`` (the same without ``podSecurity``);
* imagegate's CPU time per request (all its processes, from /proc) and the RSS of each
  worker after the runs;
* ``/mutate`` as well as ``/validate`` for ``pod-security`` with the most workers: pods as
  users write them (the mutating webhook fills in the tool's uid and the secure defaults:
  the JSON patch path) and pods that need no mutation (as the mutating webhook left them,
  as a reinvocation or a platform that writes the full security context sends them);
* the RSS of each worker with the built-in policy (``--identities`` naming the bench's
  tool), after both endpoints answered the mix for a few seconds (``--rss-only``: just this);
* the HTTP stacks alone: a fixed response from imagegate's HTTP protocol, from uvicorn and
  from granian (``pip install '.[bench]'``; each skipped when not installed), next to nginx,
  with the CPU time each spends per request (what counts when the cores are all busy).

What is measured is decisions, not errors: every body of the mix is allowed under both
benchmark policies (100% of the mix; ``EXPECTED_ALLOWED``), which is checked for each body on
both endpoints before each server's runs, and from the server's own decision counters after
them (``imagegate_decisions_total``: no denial). A wrong answer fails the benchmark (exit 1).

Nothing leaves loopback, and every server is stopped at the end.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from reviews import BENCH_POLICY, NAMESPACE, bodies
from tests.processes import start  # the servers end with this script (tests run it, and may be killed)

from imagegate.shell.webhook.certs import CertificateFiles, make_certificates

# Decisions are logged at info, one line each; a busy cluster runs the webhook at warning
# and reads decisions from metrics and audit annotations. Measure that configuration.
LOG_LEVEL = "warning"

# What each body of the mix gets under both benchmark policies, and so the share of the mix that
# is allowed (100%): a mix whose pods were denied would measure denials, not admissions.
EXPECTED_ALLOWED = {"small-pod": True, "ten-container-pod": True, "deployment": True}
ALLOWED_SHARE = sum(EXPECTED_ALLOWED.values()) / len(EXPECTED_ALLOWED)

FIXED_ALLOW = json.dumps(
    {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {"uid": "fixed", "allowed": True}}
)

WRK_SCRIPT = """
local bodies = {}
local index = 0
local pause = 0
function init(args)
  pause = tonumber(args[1])
  for i = 2, #args do
    local handle = io.open(args[i], "rb")
    bodies[#bodies + 1] = handle:read("*a")
    handle:close()
  end
end
function request()
  index = index % #bodies + 1
  return wrk.format("POST", wrk.path, {["Content-Type"] = "application/json"}, bodies[index])
end
"""
# wrk calls delay() only if the script defines it when loaded, so paced runs get their own scripts.
# "in phase": every connection waits the same time; as all 50 start together they stay in step
# and send in bursts of 50, the worst case for a queue. "Poisson": each wait is drawn from an
# exponential distribution with the same mean, so requests arrive independently, as pod
# creations by many users and controllers do.
WRK_IN_PHASE = (
    WRK_SCRIPT
    + """
function delay() return pause end
"""
)
WRK_POISSON = (
    WRK_SCRIPT
    + """
function delay() return -math.log(1 - math.random()) * pause end
"""
)

NGINX_CONF = """
worker_processes auto;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_buffer_size 64k;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    location / {{
      default_type application/json;
      return 200 '{body}';
    }}
  }}
}}
"""


@dataclass
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse_wrk(output: str) -> WrkResult:
    def find(pattern: str) -> str:
        match = re.search(pattern, output)
        if not match:
            raise RuntimeError(f"unexpected wrk output:\n{output}")
        return match.group(1)

    errors = 0
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        errors += int(non_2xx.group(1))
    return WrkResult(
        requests_per_second=float(find(r"Requests/sec:\s+([\d.]+)")),
        p50_ms=_ms(find(r"\n\s+50%\s+(\S+)")),
        p99_ms=_ms(find(r"\n\s+99%\s+(\S+)")),
        requests=int(find(r"(\d+) requests in")),
        errors=errors,
    )


def run_wrk(url: str, connections: int, duration: int, script: Path, args: list[str]) -> WrkResult:
    command = [
        "wrk",
        "--threads",
        "1",
        "--connections",
        str(connections),
        "--duration",
        f"{duration}s",
        "--timeout",
        "5s",
        "--latency",
        "--script",
        str(script),
        url,
        "--",
        *args,
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=duration + 60).stdout
    return parse_wrk(output)


def wait_https(url: str, ca: Path, timeout: float = 30) -> None:
    context = ssl.create_default_context(cafile=ca)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, verify=context, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {timeout}s")


def _status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb(pid: int) -> float:
    return _status_mb(pid, "VmHWM")


def rss_mb(pid: int) -> float:
    return _status_mb(pid, "VmRSS")


def worker_pids(pid: int) -> list[int]:
    """The processes that answer requests: ``pid`` alone, or its spawned workers (not multiprocessing's tracker)."""
    workers = [child for child in process_tree(pid)[1:] if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()]
    return workers or [pid]


def process_tree(pid: int) -> list[int]:
    """``pid`` and its children (the worker processes)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    found = [pid]
    if children.exists():
        for child in children.read_text().split():
            found.extend(process_tree(int(child)))
    return found


def start_imagegate(
    tmp: Path, tls: CertificateFiles, port: int, workers: int, extra: tuple[str, ...] = (), *, builtin: bool = False
) -> subprocess.Popen[bytes]:
    """``imagegate serve`` with ``tmp/policy.yaml`` (``builtin``: the built-in policy), its output in ``tmp/imagegate-N.log``."""
    log = (tmp / f"imagegate-{workers}.log").open("wb")
    policy = ["--identities", str(tmp / "identities.yaml")] if builtin else ["--policy", str(tmp / "policy.yaml")]
    command = [
        sys.executable,
        "-m",
        "imagegate",
        "serve",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--tls-cert",
        str(tls.cert),
        "--tls-key",
        str(tls.key),
        *policy,
        "--log-level",
        LOG_LEVEL,
        *extra,
    ]
    return start(command, stdout=log, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of ``pids`` so far."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def check_mix(url: str, ca: Path, bodies_by_name: dict[str, bytes], endpoint: str = "validate") -> list[str]:
    """Each body of the mix sent once to ``endpoint``: what did not get its expected answer
    (``/mutate`` allows everything)."""
    wrong = []
    with httpx.Client(verify=ssl_context(ca), timeout=10) as client:
        for name, body in bodies_by_name.items():
            answer = client.post(f"{url}/{endpoint}", content=body, headers={"content-type": "application/json"})
            want = EXPECTED_ALLOWED[name] or endpoint == "mutate"
            got = answer.json()["response"]["allowed"] if answer.status_code == 200 else f"HTTP {answer.status_code}"
            if got is not want:
                wrong.append(f"{name} to /{endpoint}: allowed={got}, expected {want}")
    return wrong


def decision_counts(url: str, ca: Path) -> dict[str, float]:
    """The server's decisions so far, by endpoint and result (``validate/allowed``...), from /metrics."""
    text = httpx.get(f"{url}/metrics", verify=ssl_context(ca), timeout=10).text
    found: dict[str, float] = {}
    for match in re.finditer(r'imagegate_decisions_total\{endpoint="(\w+)",result="(\w+)"\} ([\d.e+]+)', text):
        found[f"{match.group(1)}/{match.group(2)}"] = float(match.group(3))
    return found


def check_share(counts: dict[str, float]) -> list[str]:
    """Whether the decisions counted agree with the mix's allowed share (exactly at 100%)."""
    allowed = sum(n for key, n in counts.items() if key.endswith("/allowed"))
    total = sum(counts.values())
    denied = total - allowed
    if ALLOWED_SHARE == 1 and denied:
        return [f"{denied:.0f} of {total:.0f} decisions were not allowed; the whole mix should be"]
    if total and abs(allowed / total - ALLOWED_SHARE) > 1 / len(EXPECTED_ALLOWED):
        return [f"{allowed / total:.0%} of the decisions allowed; the mix should get {ALLOWED_SHARE:.0%}"]
    return []


POLICIES = {
    "pod-security": BENCH_POLICY,
    "images-only": BENCH_POLICY.split("podSecurity:")[0],
}


@dataclass
class Row:
    policy: str
    load: str
    connections: int
    workers: int
    ours: WrkResult
    nginx: WrkResult
    cpu_us: float  # imagegate's CPU time per request, all workers


# The bench's tool, as `imagegate identities` would write it for the built-in policy.
IDENTITIES = f"""\
apiVersion: imagegate.toolforge.org/v1
kind: ToolIdentities
identities:
  {NAMESPACE}: {{uid: 52503, gid: 52503}}
"""
RSS_WARM_UP_SECONDS = 3
# The API server opens a connection per admission call in flight: a few (pods created one at a
# time: one). Each further TLS connection holds about 0.1 MB (OpenSSL's and the event loop's
# buffers), so the figure is taken at 10 connections, then again at 50 to show that cost.
RSS_CONNECTIONS = (10, 50)


def measure_builtin_rss(
    tmp: Path, tls: CertificateFiles, port: int, workers: int, script: Path, validated: list[str], written: list[str]
) -> dict[int, list[float]]:
    """RSS (MB) of each worker with the built-in policy, after both endpoints answered the mix, by connections."""
    imagegate = start_imagegate(tmp, tls, port, workers, builtin=True)
    found = {}
    try:
        wait_https(f"https://127.0.0.1:{port}/readyz", tls.ca_cert)
        for connections in RSS_CONNECTIONS:
            for endpoint, paths in (("validate", validated), ("mutate", written), ("mutate", validated)):
                url = f"https://127.0.0.1:{port}/{endpoint}"
                run_wrk(url, connections * workers, RSS_WARM_UP_SECONDS, script, ["0", *paths])
            httpx.get(f"https://127.0.0.1:{port}/metrics", verify=ssl_context(tls.ca_cert), timeout=5)
            found[connections] = [rss_mb(pid) for pid in worker_pids(imagegate.pid)]
        return found
    finally:
        stop(imagegate)


def builtin_rss_line(workers: int, found: dict[int, list[float]]) -> str:
    few, many = RSS_CONNECTIONS
    each = max(found[many][n] - found[few][n] for n in range(len(found[few]))) / (many - few) * 1024
    return (
        rss_line("built-in policy", workers, found[few])
        + f" after both endpoints at {few} connections per worker; {', '.join(f'{s:.1f}' for s in found[many])} MB"
        + f" at {many} (about {each:.0f} KB per further TLS connection)"
    )


def ssl_context(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca)


def rss_line(label: str, workers: int, sizes: list[float]) -> str:
    each = ", ".join(f"{size:.1f}" for size in sizes)
    return f"{label}, {workers} worker(s): RSS per worker {each} MB"


OPTIONAL_STACKS = ("uvicorn", "granian")  # from ``pip install '.[bench]'``; skipped when missing


def measure_stacks(
    tmp: Path, tls: CertificateFiles, port: int, duration: int, script: Path, bodies_: list[str]
) -> list[tuple[str, WrkResult, float]]:
    """A fixed response from each HTTP stack, 1 process, 50 connections: result and CPU µs per request."""
    results = []
    stacks = ["imagegate"] + [name for name in OPTIONAL_STACKS if importlib.util.find_spec(name)]
    for stack in stacks:
        process = start(
            [
                sys.executable,
                str(Path(__file__).parent / "fixed_response.py"),
                stack,
                str(tls.cert),
                str(tls.key),
                str(port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            url = f"https://127.0.0.1:{port}/validate"
            wait_https(url, tls.ca_cert)
            run_wrk(url, 10, 2, script, ["0", *bodies_])
            pids = process_tree(process.pid)  # granian answers from a child process
            before = cpu_seconds(pids)
            result = run_wrk(url, 50, duration, script, ["0", *bodies_])
            cpu_us = (cpu_seconds(pids) - before) / max(result.requests, 1) * 1e6
            results.append((stack, result, cpu_us))
        finally:
            stop(process)
    return results


def core_build() -> str:
    """How the installed imagegate's core was built (the servers run on this interpreter)."""
    import imagegate.core.decide  # noqa: PLC0415

    compiled = (imagegate.core.decide.__file__ or "").endswith(".so")
    return "compiled with mypyc (IMAGEGATE_MYPYC=1)" if compiled else "pure Python"


def main() -> int:  # noqa: C901, PLR0912, PLR0915 (a script's main: its options, then each measurement in turn)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--concurrency", default="10,50,100", help="comma-separated connection counts")
    parser.add_argument(
        "--paced-rate", default="1000,5000", help="offered reviews/s of the paced runs, comma-separated"
    )
    parser.add_argument("--workers", default="1,2", help="imagegate worker processes to measure, comma-separated")
    parser.add_argument(
        "--policies", default=",".join(POLICIES), help=f"benchmark policies, comma-separated ({', '.join(POLICIES)})"
    )
    parser.add_argument("--no-stacks", action="store_true", help="skip the fixed-response HTTP stack comparison")
    parser.add_argument(
        "--rss-only",
        action="store_true",
        help="only the RSS per worker with the built-in policy (needs wrk, not nginx)",
    )
    parser.add_argument("--port", type=int, default=18443)
    parser.add_argument("--nginx-port", type=int, default=18444)
    options = parser.parse_args()
    for tool in ("wrk",) if options.rss_only else ("wrk", "nginx"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            print(f"{tool} not found: apt-get install {tool}", file=sys.stderr)
            return 2
    concurrencies = [int(c) for c in options.concurrency.split(",")]
    policies = options.policies.split(",")

    with tempfile.TemporaryDirectory(prefix="imagegate-bench-") as scratch:
        tmp = Path(scratch)
        tls = make_certificates(tmp / "tls", ["localhost", "127.0.0.1"])
        body_paths, written_paths = [], []
        for name, body in bodies().items():
            path = tmp / f"{name}.json"
            path.write_bytes(body)
            body_paths.append(str(path))
        for name, body in bodies(mutated=False).items():
            path = tmp / f"{name}-as-written.json"
            path.write_bytes(body)
            written_paths.append(str(path))
        script, in_phase_script, poisson_script = tmp / "mix.lua", tmp / "in-phase.lua", tmp / "poisson.lua"
        script.write_text(WRK_SCRIPT)
        in_phase_script.write_text(WRK_IN_PHASE)
        poisson_script.write_text(WRK_POISSON)
        (tmp / "identities.yaml").write_text(IDENTITIES)
        worker_counts = [int(w) for w in options.workers.split(",")]
        if options.rss_only:
            for workers in worker_counts:
                found = measure_builtin_rss(tmp, tls, options.port, workers, script, body_paths, written_paths)
                print(builtin_rss_line(workers, found))
            return 0
        (tmp / "nginx.conf").write_text(
            NGINX_CONF.format(tmp=tmp, port=options.nginx_port, cert=tls.cert, key=tls.key, body=FIXED_ALLOW)
        )

        nginx = start(
            [shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "nginx.err")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        nginx_url = f"https://127.0.0.1:{options.nginx_port}/validate"
        ours_url = f"https://127.0.0.1:{options.port}/validate"
        mutate_url = f"https://127.0.0.1:{options.port}/mutate"
        max_workers = max(int(w) for w in options.workers.split(","))
        loads = [("saturation", c, script, "0") for c in concurrencies]
        for n, rate in enumerate(int(r) for r in options.paced_rate.split(",")):
            pause_ms = str(max(1, round(50 * 1000 / rate)))  # 50 connections, each one request per pause
            if n == 0:
                loads.append((f"paced ~{rate}/s, in phase", 50, in_phase_script, pause_ms))
            loads.append((f"paced ~{rate}/s, Poisson", 50, poisson_script, pause_ms))
        rows: list[Row] = []
        rss: dict[tuple[str, int], tuple[list[float], float]] = {}
        builtin_rss: dict[int, dict[int, list[float]]] = {}
        stacks: list[tuple[str, WrkResult, float]] = []
        wrong: list[str] = []  # answers that were not what the mix expects
        decided: dict[tuple[str, int], dict[str, float]] = {}
        try:
            wait_https(f"https://127.0.0.1:{options.nginx_port}/", tls.ca_cert)
            run_wrk(nginx_url, 10, 2, script, ["0", *body_paths])  # warm up
            baseline = {
                (load, c): run_wrk(nginx_url, c, options.duration, lua, [pause, *body_paths])
                for load, c, lua, pause in loads
            }
            if not options.no_stacks:
                stacks = measure_stacks(tmp, tls, options.port, options.duration, script, body_paths)
            for policy in policies:
                (tmp / "policy.yaml").write_text(POLICIES[policy])
                for workers in worker_counts:
                    imagegate = start_imagegate(tmp, tls, options.port, workers)
                    try:
                        wait_https(f"https://127.0.0.1:{options.port}/readyz", tls.ca_cert)
                        base = f"https://127.0.0.1:{options.port}"
                        for endpoint, mix in (("validate", bodies()), ("mutate", bodies(mutated=False))):
                            wrong.extend(f"{policy}: {w}" for w in check_mix(base, tls.ca_cert, mix, endpoint))
                        run_wrk(ours_url, 10, 2, script, ["0", *body_paths])  # warm up
                        pids = process_tree(imagegate.pid)
                        measured = [(ours_url, "", load, c, lua, pause, body_paths) for load, c, lua, pause in loads]
                        if policy == "pod-security" and workers == max_workers:
                            # The mutating webhook is on every pod's path too, with pods as users
                            # write them: it patches in the tool's uid and the secure defaults.
                            # And with pods that need nothing (the full security context): an
                            # answer without a patch, as a reinvocation or a platform's pods get.
                            for label, paths in ((" /mutate", written_paths), (" /mutate, no patch", body_paths)):
                                measured += [
                                    (mutate_url, label, load, c, lua, pause, paths)
                                    for load, c, lua, pause in loads
                                    if c == 50
                                ]
                        for url, endpoint, load, c, lua, pause, paths in measured:
                            before = cpu_seconds(pids)
                            ours = run_wrk(url, c, options.duration, lua, [pause, *paths])
                            cpu_us = (cpu_seconds(pids) - before) / max(ours.requests, 1) * 1e6
                            row = Row(policy + endpoint, load, c, workers, ours, baseline[(load, c)], cpu_us)
                            rows.append(row)
                        counted = decision_counts(base, tls.ca_cert)
                        wrong.extend(f"{policy}, {workers} worker(s): {w}" for w in check_share(counted))
                        decided[(policy, workers)] = counted
                        rss[(policy, workers)] = (
                            [rss_mb(pid) for pid in worker_pids(imagegate.pid)],
                            max(peak_rss_mb(pid) for pid in pids),
                        )
                    finally:
                        stop(imagegate)
            for workers in worker_counts:
                builtin_rss[workers] = measure_builtin_rss(
                    tmp, tls, options.port, workers, script, body_paths, written_paths
                )
        finally:
            stop(nginx)

    print(
        f"imagegate vs nginx (fixed allow), TLS, keep-alive, {os.cpu_count()} cores, wrk 1 thread, "
        f"{options.duration}s each, imagegate log level {LOG_LEVEL}, core {core_build()}"
    )
    print(
        f"mix: small pod, 10-container pod, Deployment (round robin), {ALLOWED_SHARE:.0%} of it allowed "
        "(checked per body on both endpoints before each server's runs, and from its decision counters after)\n"
    )
    print(
        "| policy | load | conns | workers | imagegate req/s | p50 ms | p99 ms | CPU µs/req "
        "| nginx req/s | p50 ms | p99 ms | imagegate/nginx | errors |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        ours, theirs = row.ours, row.nginx
        ratio = ours.requests_per_second / theirs.requests_per_second
        print(
            f"| {row.policy} | {row.load} | {row.connections} | {row.workers} | {ours.requests_per_second:,.0f} "
            f"| {ours.p50_ms:.2f} | {ours.p99_ms:.2f} | {row.cpu_us:.0f} | {theirs.requests_per_second:,.0f} "
            f"| {theirs.p50_ms:.2f} | {theirs.p99_ms:.2f} | {ratio:.0%} | {ours.errors + theirs.errors} |"
        )
    print()
    for (policy, workers), (sizes, peak) in rss.items():
        print(f"{rss_line(policy, workers, sizes)} after the runs; peak of the largest process {peak:.0f} MB")
    for workers, found in builtin_rss.items():
        print(builtin_rss_line(workers, found))
    for (policy, workers), counted in decided.items():
        shown = ", ".join(f"{key} {n:,.0f}" for key, n in sorted(counted.items()))
        print(f"decisions counted by imagegate, {policy}, {workers} worker(s): {shown}")
    if stacks:
        nginx_50 = baseline.get(("saturation", 50))
        print("\nHTTP stacks, fixed response, 1 process, 50 connections (CPU: all the server's threads):\n")
        print("| server | req/s | p50 ms | p99 ms | CPU µs/req |")
        print("| --- | --- | --- | --- | --- |")
        if nginx_50 is not None:
            print(
                f"| nginx (auto workers) | {nginx_50.requests_per_second:,.0f} | {nginx_50.p50_ms:.2f} "
                f"| {nginx_50.p99_ms:.2f} | |"
            )
        for stack, result, cpu_us in stacks:
            print(
                f"| {stack} | {result.requests_per_second:,.0f} | {result.p50_ms:.2f} | {result.p99_ms:.2f} "
                f"| {cpu_us:.0f} |"
            )
    for problem in wrong:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
