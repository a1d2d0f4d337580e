"""A real kube-apiserver (v1.32, ../shared/kube/cluster.sh) for tests and benchmarks, and imagegate registered with it.

``start_cluster(workdir)`` starts etcd, the API server and (unless ``controllers=False``) the
controller manager on free loopback ports, in a fresh directory (about 10 s on 2 cores), and
stops them by their PIDs on exit, or, if this process is killed first, by a watchdog
(tests/processes.py). The ``kube_cluster`` fixture (tests/conftest.py) starts one
per test session, only when a test asks for it. :func:`register` puts the shipped webhook
configurations (tests/shipped.py: deploy/ built, the chart rendered by Helm's engine) in front
of an ``imagegate serve`` process on loopback (tests/webhook_process.py), changed only in
``clientConfig``: its URL and ``caBundle``; :func:`decisions` reads which requests reached it.
No scheduler and no kubelet: pods stay Pending and no image is pulled. The API server runs as a real cluster's does where it matters to imagegate:
``--allow-privileged=true`` (kubeadm's default: without it the API server itself refuses every
privileged container, and a test of how imagegate treats one would prove nothing), and the
``MutatingAdmissionPolicy`` feature gate with its ``v1alpha1`` API on, for the native mutating
path (alpha in 1.32).
"""

from __future__ import annotations

import copy
import fcntl
import json
import lzma
import os
import random
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from lightkube import ApiError, Client
from lightkube.config.kubeconfig import KubeConfig
from lightkube.resources.admissionregistration_v1 import (
    MutatingWebhookConfiguration,
    ValidatingWebhookConfiguration,
)

from tests.debian_rootfs import cache_dir
from tests.processes import ending_with_this_process, stopped_with_this_process
from tests.shipped import WEBHOOK_KINDS
from tests.webhook_process import WebhookProcess

FEATURE_GATES = "ImageVolume=true,MutatingAdmissionPolicy=true"
APISERVER_ARGS = "--allow-privileged=true --runtime-config=admissionregistration.k8s.io/v1alpha1=true"
_T = TypeVar("_T")


def _cluster_sh() -> Path:
    """``../shared/kube/cluster.sh``, beside the checkout (a worktree's ../shared too)."""
    script = Path(__file__).resolve().parents[1].parent / "shared" / "kube" / "cluster.sh"
    if not script.is_file():
        raise FileNotFoundError(f"{script} not found (see ../shared/kube/README.md)")
    return script


BINARIES = ("kube-apiserver", "kube-controller-manager")


def _unpacked_binaries(workdir: Path) -> None:
    """Link the API server's and controller manager's binaries into ``workdir/bin``, unpacked once
    into the test cache (under a lock: workers share it) instead of once per cluster: cluster.sh
    unpacks what ``bin/`` lacks, about 3 s of CPU per start, and the suite starts several clusters."""
    source = _cluster_sh().parent / "bin"
    (workdir / "bin").mkdir(parents=True, exist_ok=True)
    for name in BINARIES:
        packed = source / f"{name}.xz"
        stat = packed.stat()
        unpacked = cache_dir() / f"{name}-{stat.st_size}-{stat.st_mtime_ns}"
        if not unpacked.exists():
            with open(cache_dir() / f"{unpacked.name}.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if not unpacked.exists():  # unpacked by another process while this one waited
                    partial = unpacked.with_suffix(".partial")
                    with lzma.open(packed) as data, partial.open("wb") as out:
                        while chunk := data.read(1 << 20):
                            out.write(chunk)
                    partial.chmod(0o755)
                    partial.rename(unpacked)
        link = workdir / "bin" / name
        if not link.exists():
            link.symlink_to(unpacked)


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_base_port() -> int:
    """A PORT whose PORT+10000, PORT+10001 and PORT+20000 are free too (cluster.sh's layout)."""
    for _ in range(200):
        port = random.randint(20000, 24999)
        if all(_free(p) for p in (port, port + 10000, port + 10001, port + 20000)):
            return port
    raise RuntimeError("no free port set for a cluster")


@dataclass(frozen=True)
class KubeCluster:
    directory: Path
    port: int

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    @cached_property
    def client(self) -> Client:
        """A lightkube client (admin), as ``imagegate audit`` would use."""
        return Client(config=KubeConfig.from_file(self.kubeconfig), field_manager="imagegate-tests")

    def log(self, component: str) -> str:
        """``kube-apiserver``, ``kube-controller-manager`` or ``etcd``'s log."""
        return (self.directory / "logs" / f"{component}.log").read_text(errors="replace")

    @property
    def pids(self) -> dict[str, int]:
        return {
            f.stem: int(f.read_text().strip()) for f in (self.directory / "run").glob("*.pid") if f.read_text().strip()
        }

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        done = subprocess.run(
            ["kubectl", *args], input=stdin, capture_output=True, text=True, env=env, timeout=120, check=False
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        return done

    def apply(self, *objects: Mapping[str, Any], server_side: bool = False) -> None:
        items = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
        self.kubectl("apply", *(["--server-side"] if server_side else []), "-f", "-", stdin=json.dumps(items))

    def create(self, obj: Mapping[str, Any], *flags: str) -> subprocess.CompletedProcess[str]:
        """``kubectl create -o json`` (flags such as ``--dry-run=server``), not checked: the caller reads why."""
        return self.kubectl("create", "-o", "json", *flags, "-f", "-", stdin=json.dumps(obj), check=False)

    def namespace(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        """A namespace with its ``default`` ServiceAccount (made here when no controller manager runs)."""
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": dict(labels or {})}})
        self.kubectl("create", "serviceaccount", "default", "-n", name, check=False)


@contextmanager
def start_cluster(
    workdir: Path, *, controllers: bool = True, extra_gates: str = "", extra_args: str = ""
) -> Iterator[KubeCluster]:
    """A fresh cluster in ``workdir``; always stopped on exit. ``extra_gates``: more feature gates ("A=true,B=false");
    ``extra_args``: more kube-apiserver flags."""
    script = _cluster_sh()
    port = _free_base_port()
    env = {
        **os.environ,
        "APISERVER_FEATURE_GATES": ",".join(g for g in (FEATURE_GATES, extra_gates) if g),
        "EXTRA_APISERVER_ARGS": " ".join(a for a in (APISERVER_ARGS, extra_args) if a),
        "START_KCM": "1" if controllers else "0",
    }
    cluster = KubeCluster(workdir, port)
    _unpacked_binaries(workdir)
    stop = ["bash", str(script), "stop", str(workdir)]
    # cluster.sh starts the servers in the background and exits: their parent is gone before the
    # tests begin, so no parent-death signal can stop them; a watchdog runs `stop` (by the PIDs
    # the script recorded) if this process is killed, and the script itself ends with it meanwhile
    with stopped_with_this_process(stop):
        try:
            started = subprocess.run(
                ["bash", str(script), "start", str(workdir), str(port)],
                env=env,
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
                preexec_fn=ending_with_this_process(),
            )
            if started.returncode != 0:
                raise AssertionError(f"cluster.sh start failed:\n{started.stderr}")
            yield cluster
        finally:
            subprocess.run(stop, capture_output=True, timeout=60, check=False)


def wait_for(probe: Callable[[], _T | None], timeout: float = 30, every: float = 0.2) -> _T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout}s: {probe}")
        time.sleep(every)


def with_url(configuration: Mapping[str, Any], webhook: WebhookProcess) -> dict[str, Any]:
    """A shipped webhook configuration pointed at ``webhook``: ``clientConfig`` becomes its URL and ``caBundle``.

    Everything else stays as shipped. cert-manager's annotation goes (nothing injects here).
    """
    changed = copy.deepcopy(dict(configuration))
    changed["metadata"].get("annotations", {}).pop("cert-manager.io/inject-ca-from", None)
    for hook in changed["webhooks"]:
        path = hook["clientConfig"]["service"]["path"]
        hook["clientConfig"] = {"url": f"{webhook.url}{path}", "caBundle": webhook.tls.ca_bundle()}
    return changed


def register(cluster: KubeCluster, configurations: Iterable[Mapping[str, Any]], webhook: WebhookProcess) -> list[str]:
    """Apply the shipped webhook configurations with ``webhook``'s URL; returns their names."""
    names = []
    for configuration in configurations:
        assert configuration["kind"] in WEBHOOK_KINDS, configuration["kind"]
        cluster.apply(with_url(configuration, webhook), server_side=True)
        names.append(str(configuration["metadata"]["name"]))
    return names


def unregister(cluster: KubeCluster, names: Iterable[str]) -> None:
    """Delete the configurations (do it before stopping the webhook for good: they fail closed)."""
    for name in names:
        for kind in (MutatingWebhookConfiguration, ValidatingWebhookConfiguration):
            with suppress(ApiError):
                cluster.client.delete(kind, name)


def decisions(webhook: WebhookProcess) -> list[dict[str, Any]]:
    """What imagegate received and answered: its decision log lines (JSON), oldest first."""
    found = []
    for line in webhook.logs().splitlines():
        if line.startswith("{"):
            with suppress(ValueError):
                record = json.loads(line)
                if record.get("event") == "decision":
                    found.append(record)
    return found
