"""Soak: a steady load for a long time while everything around the webhook changes.

Usage::

    python bench/soak.py [--minutes 10] [--rate 400] [--workers 2]

Starts docker-registry (base and app images pushed by skopeo) and ``imagegate serve`` with a
policy whose grant requires base-image verification, then drives a paced ``wrk`` load (50
connections, independent (Poisson) arrivals at about ``--rate`` reviews/s, a mix of pods
including one that needs the registry)
for ``--minutes``. During the run, on a schedule:

* the grants file is rewritten (valid), then replaced with invalid YAML and restored;
* the TLS certificate is renewed (same CA), then replaced by a broken pair and restored;
* the registry is stopped and started again (flapping).

It reports requests, failed requests (socket errors and non-2xx: must be 0), latency, the
RSS of every server process at the start and the end, and what /readyz and /metrics said.
Everything is on loopback and stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from server_bench import WRK_POISSON, process_tree, run_wrk, start_imagegate, stop  # type: ignore[import-not-found]
from tests.oci_images import OciLayout, layers
from tests.registry_process import run_registry

from imagegate.shell.certs import load_ca, make_certificates

GRANTS_OK = "apiVersion: imagegate.toolforge.org/v1\nkind: ImageGrants\ngrants:\n  - {namespace: tool-soak, registries: ['%s/tool-soak'], requireBaseImage: true}\n"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def review(image: str, n: int) -> bytes:
    return json.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": f"soak-{n}",
                "operation": "CREATE",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "tool-soak",
                "object": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": f"p{n}"},
                    "spec": {"containers": [{"name": "c", "image": image, "env": [{"name": "A", "value": "x" * 64}]}]},
                },
            },
        }
    ).encode()


def main() -> int:  # noqa: C901, PLR0915 (a script's main: its options, the run, then its report)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2)
    options = parser.parse_args()
    duration = int(options.minutes * 60)
    events: list[str] = []
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
            (tmp / "policy.yaml").write_text(
                "apiVersion: imagegate.toolforge.org/v1\nkind: ImagePolicy\n"
                f"trusted: [{registry.host}/toolforge]\n"
                f"registry: {{caFile: {registry.tls.ca_cert}, credentialsFile: {registry.docker_config(tmp / 'config.json')}, onError: deny}}\n"
                f"baseImages: {{trusted: ['{registry.host}/toolforge/base:1']}}\n"
                "podSecurity: {level: restricted}\n"
            )
            bodies = []
            for n, image in enumerate(
                [f"{registry.host}/toolforge/base:1", f"{registry.host}/tool-soak/app:1", "ghcr.io/evil/x:1"]
            ):
                path = tmp / f"body{n}.json"
                path.write_bytes(review(image, n))
                bodies.append(str(path))
            (tmp / "paced.lua").write_text(WRK_POISSON)
            port = 18643
            server = start_imagegate(tmp, tls, port, options.workers, ("--grants", str(grants)))
            context = ssl.create_default_context(cafile=tls.ca_cert)
            url = f"https://127.0.0.1:{port}"
            try:
                for _ in range(100):
                    try:
                        if httpx.get(f"{url}/readyz", verify=context, timeout=1).status_code == 200:
                            break
                    except httpx.TransportError:
                        time.sleep(0.2)
                time.sleep(3)  # workers up, bases resolved
                pids = process_tree(server.pid)
                rss_start = {pid: rss_mb(pid) for pid in pids}
                pause_ms = max(1, round(50 * 1000 / options.rate))
                stop_events = threading.Event()

                def disturb() -> None:
                    started = time.monotonic()
                    step = 0
                    ca = load_ca(tls.cert.parent)
                    while not stop_events.wait(15):
                        step += 1
                        at = round(time.monotonic() - started)
                        kind = step % 6
                        if kind == 1:
                            grants.write_text(GRANTS_OK % registry.host + f"  - {{namespace: tool-extra-{step}}}\n")
                            events.append(f"{at}s grants rewritten")
                        elif kind == 2:
                            grants.write_text("grants: [broken\n")
                            events.append(f"{at}s grants replaced with invalid YAML")
                        elif kind == 3:
                            ready = httpx.get(f"{url}/readyz", verify=context, timeout=5).json()
                            events.append(f"{at}s readyz policyError={bool(ready['policyError'])}")
                            grants.write_text(GRANTS_OK % registry.host)
                            make_certificates(tls.cert.parent, ["127.0.0.1", "localhost"], ca=ca)
                            events.append(f"{at}s grants restored; TLS certificate renewed")
                        elif kind == 4:
                            other = make_certificates(tmp / f"other-{step}", ["127.0.0.1"])
                            shutil.copy(other.key, tls.key)
                            events.append(f"{at}s TLS key replaced by a mismatched one")
                        elif kind == 5:
                            ready = httpx.get(f"{url}/readyz", verify=context, timeout=5).json()
                            events.append(f"{at}s readyz tlsError={bool(ready['tlsError'])}")
                            make_certificates(tls.cert.parent, ["127.0.0.1", "localhost"], ca=ca)
                            registry.process.send_signal(19)  # SIGSTOP: the registry hangs
                            events.append(f"{at}s TLS pair restored; registry frozen")
                        elif kind == 0:
                            registry.process.send_signal(18)  # SIGCONT
                            events.append(f"{at}s registry back")

                disturber = threading.Thread(target=disturb, daemon=True)
                disturber.start()
                result = run_wrk(f"{url}/validate", 50, duration, tmp / "paced.lua", [str(pause_ms), *bodies])
                stop_events.set()
                disturber.join(timeout=30)
                registry.process.send_signal(18)
                rss_end = {pid: rss_mb(pid) for pid in pids if Path(f"/proc/{pid}").exists()}
                metrics = httpx.get(f"{url}/metrics", verify=context, timeout=5).text
            finally:
                stop(server)
    print(f"soak: {options.minutes:g} min, 50 connections paced at ~{options.rate}/s, {options.workers} workers\n")
    print(f"requests: {result.requests:,} ({result.requests_per_second:,.0f}/s); failed: {result.errors}")
    print(f"latency p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms")
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
    return 0 if result.errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
