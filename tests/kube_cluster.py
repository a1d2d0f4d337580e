"""A real kube-apiserver (v1.32, ../shared/kube/cluster.sh) for tests and benchmarks.

``start_cluster(workdir)`` starts etcd, the API server and (unless ``controllers=False``) the
controller manager on free loopback ports, in a fresh directory, and stops them by their PIDs
on exit. The API server runs as a real cluster's does where it matters to imagegate:
``--allow-privileged=true`` (kubeadm's default: without it the API server itself refuses every
privileged container, and a test of how imagegate treats one would prove nothing), and the
``MutatingAdmissionPolicy`` feature gate with its ``v1alpha1`` API on, for the native mutating
path (alpha in 1.32).
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FEATURE_GATES = "ImageVolume=true,MutatingAdmissionPolicy=true"
APISERVER_ARGS = "--allow-privileged=true --runtime-config=admissionregistration.k8s.io/v1alpha1=true"


def _cluster_sh() -> Path:
    """``../shared/kube/cluster.sh``, beside the checkout (a worktree's ../shared too)."""
    script = Path(__file__).resolve().parents[1].parent / "shared" / "kube" / "cluster.sh"
    if not script.is_file():
        raise FileNotFoundError(f"{script} not found (see ../shared/kube/README.md)")
    return script


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
def start_cluster(workdir: Path, *, controllers: bool = True, extra_gates: str = "") -> Iterator[KubeCluster]:
    """A fresh cluster in ``workdir``; always stopped on exit. ``extra_gates``: more feature gates ("A=true,B=false")."""
    script = _cluster_sh()
    port = _free_base_port()
    env = {
        **os.environ,
        "APISERVER_FEATURE_GATES": ",".join(g for g in (FEATURE_GATES, extra_gates) if g),
        "EXTRA_APISERVER_ARGS": APISERVER_ARGS,
        "START_KCM": "1" if controllers else "0",
    }
    cluster = KubeCluster(workdir, port)
    try:
        started = subprocess.run(
            ["bash", str(script), "start", str(workdir), str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if started.returncode != 0:
            raise AssertionError(f"cluster.sh start failed:\n{started.stderr}")
        yield cluster
    finally:
        subprocess.run(["bash", str(script), "stop", str(workdir)], capture_output=True, timeout=60, check=False)
