"""Instructions the whole serving process spends per review, under valgrind's callgrind (for bench/ab_cpu.sh).

Usage::

    python bench/server_callgrind.py BENCH_DIR validate|mutate [--requests 2000] [--connections 50]

Runs ``imagegate serve`` (one process, TLS, the benchmark policy of ``BENCH_DIR/reviews.py``,
log level warning) under callgrind with the instrumentation off, opens the connections and
warms them (the TLS handshakes and the policy's caches stay outside the count), then counts
while ``--requests`` reviews of the mix are answered, round robin, each connection sending its
next request when its answer is in (as the API server does). Prints the instructions per
review. The imagegate that runs is the one on ``PYTHONPATH``, so bench/ab_cpu.sh can measure
two commits' builds with the same harness.

Unlike the seconds of CPU that ``bench/server_bench.py`` reads from /proc, the count does not
move with the machine's load: it compares two commits' serving paths (TLS, HTTP, decision,
metrics, answer) on a busy machine. It does not see the kernel (system calls) nor cache misses:
the wall-clock benchmark is still the figure that matters, this one says where a difference is not.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    from imagegate.shell.webhook.certs import make_certificates
except ImportError:  # a build from before shell/ was grouped (the 12-01 main)
    from imagegate.shell.certs import make_certificates  # type: ignore[no-redef]

LOG_LEVEL = "warning"
WARM_UP_PER_CONNECTION = 6


def _reviews(bench_dir: Path):  # type: ignore[no-untyped-def]  # the measured commit's own module
    spec = importlib.util.spec_from_file_location("measured_reviews", bench_dir / "reviews.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"no reviews.py in {bench_dir}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _request(endpoint: str, body: bytes) -> bytes:
    head = f"POST /{endpoint} HTTP/1.1\r\nHost: imagegate\r\nContent-Type: application/json\r\n"
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


async def _answer(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"unexpected answer: {head[:200]!r}")
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    body = await reader.readexactly(length)
    if b'"allowed":true' not in body:
        raise RuntimeError(f"a review of the mix was denied: {body[:300]!r}")
    return body


async def _drive(
    port: int, context: ssl.SSLContext, requests: list[bytes], total: int, connections: int, pid: int
) -> None:
    streams = [await asyncio.open_connection("127.0.0.1", port, ssl=context) for _ in range(connections)]

    async def send(index: int, count: int) -> None:
        reader, writer = streams[index]
        for n in range(count):
            writer.write(requests[(index + n) % len(requests)])
            await _answer(reader)

    await asyncio.gather(*(send(i, WARM_UP_PER_CONNECTION) for i in range(connections)))
    _callgrind_control(pid, "on")
    share, extra = divmod(total, connections)
    await asyncio.gather(*(send(i, share + (i < extra)) for i in range(connections)))
    _callgrind_control(pid, "off")
    for _, writer in streams:
        writer.close()


def _callgrind_control(pid: int, state: str) -> None:
    subprocess.run(["callgrind_control", "-i", state, str(pid)], check=True, capture_output=True, timeout=60)


def _wait_ready(port: int, context: ssl.SSLContext, server: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"imagegate serve exited ({server.returncode}) before it was ready")
        try:
            with ssl_socket(port, context) as sock:
                sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: imagegate\r\nConnection: close\r\n\r\n")
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"imagegate serve was not ready in {timeout:.0f}s")


def ssl_socket(port: int, context: ssl.SSLContext) -> ssl.SSLSocket:
    return context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="127.0.0.1")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bench_dir", type=Path, help="the measured commit's bench/ (its reviews.py)")
    parser.add_argument("endpoint", choices=("validate", "mutate"))
    parser.add_argument("--requests", type=int, default=2000, help="reviews counted")
    parser.add_argument("--connections", type=int, default=50, help="keep-alive connections, as server_bench's 50")
    parser.add_argument("--keep", type=Path, help="copy callgrind's profile here (for callgrind_annotate)")
    options = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind not found: apt-get install valgrind", file=sys.stderr)
        return 2
    reviews = _reviews(options.bench_dir)
    mix = reviews.bodies(mutated=options.endpoint != "mutate")
    requests = [_request(options.endpoint, body) for body in mix.values()]
    with tempfile.TemporaryDirectory(prefix="imagegate-servercg-") as scratch:
        tmp = Path(scratch)
        (tmp / "tls").mkdir()
        tls = make_certificates(tmp / "tls", ["localhost", "127.0.0.1"])
        (tmp / "policy.yaml").write_text(reviews.BENCH_POLICY)
        port = _free_port()
        out = tmp / "callgrind.out"
        command = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            "--trace-children=yes",  # `imagegate serve` replaces itself with the serving process (same pid)
            f"--callgrind-out-file={out}.%p",
            sys.executable,
            "-m",
            "imagegate",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--tls-cert",
            str(tls.cert),
            "--tls-key",
            str(tls.key),
            "--policy",
            str(tmp / "policy.yaml"),
            "--log-level",
            LOG_LEVEL,
        ]
        log = (tmp / "serve.log").open("wb")
        server = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONHASHSEED": "0"}
        )
        try:
            context = ssl.create_default_context(cafile=tls.ca_cert)
            _wait_ready(port, context, server, timeout=600)
            asyncio.run(_drive(port, context, requests, options.requests, options.connections, server.pid))
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=120)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        totals = [
            int(match.group(1))
            for path in tmp.glob("callgrind.out.*")
            for match in re.finditer(r"^totals: (\d+)", path.read_text(errors="replace"), re.MULTILINE)
        ]
        if options.keep is not None:
            for path in tmp.glob("callgrind.out.*"):
                shutil.copy(path, options.keep)
        if not totals:
            print((tmp / "serve.log").read_text(errors="replace")[-2000:], file=sys.stderr)
            raise SystemExit("callgrind wrote no totals")
    print(f"{sum(totals) / options.requests:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
