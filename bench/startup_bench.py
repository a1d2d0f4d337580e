"""Benchmark how long an ``imagegate`` process takes to start (issue 24, item 7).

Usage::

    python bench/startup_bench.py [--rounds 7] [SRC ...]

Every operator's call and each of the test suite's hundreds of ``imagegate`` processes pays
for what the command line imports before it does anything. Measured, per build:

* ``import``: ``python -c "import imagegate.shell.cli.main"`` (what every command loads);
* ``--help``: ``imagegate --help``;
* ``check``: ``imagegate check -p toolforge.yaml --identities ... examples/pods.yaml`` (the
  built-in policy's file, offline);
* ``serve``: ``imagegate serve`` from the start of the process to the first ``200`` from
  ``/readyz`` (polled every 10 ms), then stopped with SIGTERM.

Each is run as ``python -m imagegate`` with ``PYTHONPATH`` set to a ``src`` directory: give
several (``SRC`` arguments, default this checkout's ``src``) to compare builds; the rounds
interleave them (A B A B ...), so a change in the machine's load falls on both. Printed: the
median wall time and CPU time (user + system, of the process and the children it waited for;
for ``serve``, of the serving process until it was ready) over the rounds, and the load
average (1 minute) before and after: the machine is shared.
"""

from __future__ import annotations

import argparse
import http.client
import os
import resource
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.loopback import free_port

from imagegate.shell.webhook.certs import CertificateFiles, make_certificates

ROOT = Path(__file__).resolve().parent.parent
POLICY = ROOT / "src" / "imagegate" / "policies" / "toolforge.yaml"
IDENTITIES = ROOT / "tests" / "fixtures" / "toolforge" / "identities.yaml"
MANIFESTS = ROOT / "examples" / "pods.yaml"


def environment(src: Path) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(src), "COLUMNS": "120"}


def timed_run(src: Path, *args: str, expect: tuple[int, ...] = (0,)) -> tuple[float, float]:
    """Wall and CPU seconds of one process (and what it waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, *args], env=environment(src), capture_output=True, text=True, check=False, timeout=120
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode not in expect:
        raise SystemExit(f"{src}: {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve_until_ready(src: Path, tls: CertificateFiles) -> tuple[float, float]:
    """Wall seconds from the process's start to its first ready answer, and its CPU seconds then."""
    port = free_port()
    command = [sys.executable, "-m", "imagegate", "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key), "--log-level", "warning"]
    context = ssl.create_default_context(cafile=tls.ca_cert)
    start = time.perf_counter()
    process = subprocess.Popen(command, env=environment(src), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while True:
            if process.poll() is not None:
                raise SystemExit(
                    f"{src}: serve exited {process.returncode}:\n{process.stderr.read().decode() if process.stderr else ''}"
                )
            if time.perf_counter() - start > 60:
                raise SystemExit(f"{src}: serve not ready in 60 s")
            connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
            try:
                connection.request("GET", "/readyz")
                if connection.getresponse().status == 200:
                    return time.perf_counter() - start, _cpu_of(process.pid)
            except OSError:
                time.sleep(0.01)
            finally:
                connection.close()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def load_average() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("src", nargs="*", type=Path, default=[ROOT / "src"], help="src directories to compare")
    options = parser.parse_args()
    sources: list[Path] = [path.resolve() for path in options.src]
    for src in sources:
        if not (src / "imagegate" / "__main__.py").is_file():
            raise SystemExit(f"{src}: not a src directory holding imagegate")
    with tempfile.TemporaryDirectory() as scratch:
        tls = make_certificates(Path(scratch) / "tls", ["127.0.0.1"])
        cases: dict[str, Callable[[Path], tuple[float, float]]] = {
            "import": lambda src: timed_run(src, "-c", "import imagegate.shell.cli.main"),
            "--help": lambda src: timed_run(src, "-m", "imagegate", "--help"),
            "check": lambda src: timed_run(
                src,
                "-m",
                "imagegate",
                "check",
                "-p",
                str(POLICY),
                "--identities",
                str(IDENTITIES),
                str(MANIFESTS),
                expect=(0, 1),
            ),
            "serve": lambda src: serve_until_ready(src, tls),
        }
        print(f"load average before: {load_average()}; {options.rounds} rounds, interleaved")
        samples: dict[tuple[str, Path], list[tuple[float, float]]] = {}
        for _ in range(options.rounds):
            for name, case in cases.items():
                for src in sources:
                    samples.setdefault((name, src), []).append(case(src))
        print(f"load average after: {load_average()}")
    print(f"{'case':8} {'build':50} {'wall ms':>8} {'CPU ms':>8}")
    for (name, src), values in samples.items():
        wall = statistics.median(value[0] for value in values) * 1000
        cpu = statistics.median(value[1] for value in values) * 1000
        print(f"{name:8} {str(src)[-50:]:50} {wall:8.0f} {cpu:8.0f}")


if __name__ == "__main__":
    main()
