"""``imagegate reports`` at platform scale, through a real kube-apiserver (issue 26 item 7).

``python bench/reports_bench.py [--tools 3000] [--period 20]`` starts ../shared/kube's
kube-apiserver v1.32 (etcd, no controller manager: the objects are made here, each Pod owned by
its ReplicaSet and that by its Deployment, as the controllers would make them), installs the
openreports.io CRD from ../shared/crds, and creates ``--tools`` namespaces ``tool-N`` with a
ServiceAccount, a Deployment, its ReplicaSet and two Pods each (4 objects a tool: 12,000 for
3,000 tools); one tool in ten runs an untrusted image. Then it starts ``imagegate reports`` and
reports:

* the first pass: seconds from start until every tool's report is written, and the controller's
  own ``imagegate_reports_pass_seconds``;
* its peak RSS (VmHWM from /proc);
* a quiet period: after two more ``--period`` s, how many reports' resourceVersions changed and
  how many writes the controller counted (both should be 0).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

CRD = REPO.parent / "shared" / "crds" / "openreports.io" / "openreports.io_reports.yaml"
POLICY = textwrap.dedent(
    """\
    apiVersion: imagegate.toolforge.org/v1
    kind: ImagePolicy
    trusted: [docker-registry.svc.toolforge.org, "tools-harbor.wmcloud.org/{namespace}"]
    namespaces: {include: ["tool-*"]}
    """
)


def _pod_spec(image: str) -> dict[str, Any]:
    return {"containers": [{"name": "app", "image": image}], "automountServiceAccountToken": False}


async def _create(kubeconfig: Path, tools: int) -> float:
    from lightkube import AsyncClient  # noqa: PLC0415
    from lightkube.config.kubeconfig import KubeConfig  # noqa: PLC0415
    from lightkube.generic_resource import (  # noqa: PLC0415
        GenericGlobalResource,
        GenericNamespacedResource,
        create_api_info,
    )

    def raw(group: str, version: str, kind: str, plural: str, namespaced: bool = True) -> Any:
        base: Any = GenericNamespacedResource if namespaced else GenericGlobalResource
        return type(kind, (base,), {"_api_info": create_api_info(group, version, kind, plural)})

    namespace_r = raw("", "v1", "Namespace", "namespaces", namespaced=False)
    account_r = raw("", "v1", "ServiceAccount", "serviceaccounts")
    deployment_r = raw("apps", "v1", "Deployment", "deployments")
    replicaset_r = raw("apps", "v1", "ReplicaSet", "replicasets")
    pod_r = raw("", "v1", "Pod", "pods")
    client = AsyncClient(config=KubeConfig.from_file(kubeconfig), field_manager="bench")
    started = time.monotonic()
    gate = asyncio.Semaphore(24)

    async def tool(index: int) -> None:
        ns = f"tool-{index}"
        image = (
            f"docker.io/library/tool{index}:1"
            if index % 10 == 0
            else "docker-registry.svc.toolforge.org/toolforge-python311-sssd-base:latest"
        )
        labels = {"app": "web"}
        async with gate:
            await client.create(namespace_r({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
            await client.create(
                account_r(
                    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}}
                )
            )
            deployment = await client.create(
                deployment_r(
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "metadata": {"name": "web", "namespace": ns},
                        "spec": {
                            "selector": {"matchLabels": labels},
                            "template": {"metadata": {"labels": labels}, "spec": _pod_spec(image)},
                        },
                    }
                )
            )
            owner = {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": "web",
                "uid": deployment["metadata"]["uid"],
                "controller": True,
            }
            replicaset = await client.create(
                replicaset_r(
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "metadata": {"name": "web-1", "namespace": ns, "ownerReferences": [owner]},
                        "spec": {
                            "selector": {"matchLabels": labels},
                            "template": {"metadata": {"labels": labels}, "spec": _pod_spec(image)},
                        },
                    }
                )
            )
            rs_owner = {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "web-1",
                "uid": replicaset["metadata"]["uid"],
                "controller": True,
            }
            for n in range(2):
                await client.create(
                    pod_r(
                        {
                            "apiVersion": "v1",
                            "kind": "Pod",
                            "metadata": {
                                "name": f"web-1-{n}",
                                "namespace": ns,
                                "labels": labels,
                                "ownerReferences": [rs_owner],
                            },
                            "spec": _pod_spec(image),
                        }
                    )
                )

    await asyncio.gather(*(tool(i) for i in range(tools)))
    await client.close()
    return time.monotonic() - started


def _metrics(port: int) -> dict[str, float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return {}
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _versions(kubeconfig: Path) -> dict[str, str]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    out = subprocess.run(
        ["kubectl", "get", "reports.openreports.io", "-A", "-o",
         "jsonpath={range .items[*]}{.metadata.namespace} {.metadata.resourceVersion}{\"\\n\"}{end}"],
        env=env, capture_output=True, text=True, timeout=300, check=True,
    ).stdout  # fmt: skip
    return dict(line.split(" ", 1) for line in out.splitlines() if line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tools", type=int, default=3000)
    parser.add_argument("--period", type=float, default=20.0)
    args = parser.parse_args()
    from tests.kube_cluster import start_cluster  # noqa: PLC0415 (needs the repository on sys.path)
    from tests.processes import start  # noqa: PLC0415 (the controller ends with this script)

    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        with start_cluster(work / "cluster", controllers=False) as cluster:
            cluster.kubectl("apply", "--server-side", "-f", str(CRD))
            cluster.namespace("imagegate")
            made = asyncio.run(_create(cluster.kubeconfig, args.tools))
            print(f"created {args.tools} namespaces and {args.tools * 4} objects in {made:.1f} s", flush=True)
            (work / "policy.yaml").write_text(POLICY)
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "PYTHONPATH": str(REPO / "src")}
            command = [
                sys.executable, "-m", "imagegate", "reports", "-p", str(work / "policy.yaml"),
                "--period", str(args.period), "--lease-duration", "10", "--lease-namespace", "imagegate",
                "--metrics-host", "127.0.0.1", "--metrics-port", str(port), "--no-events",
            ]  # fmt: skip
            started = time.monotonic()
            log = (work / "controller.log").open("wb")
            process = start(command, env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                while _metrics(port).get("imagegate_reports_written_total", 0) < args.tools:
                    if process.poll() is not None or time.monotonic() - started > 600:
                        raise SystemExit(
                            f"controller stopped or too slow:\n{(work / 'controller.log').read_text()[-3000:]}"
                        )
                    time.sleep(0.25)
                first = time.monotonic() - started
                metrics = _metrics(port)
                print(f"first pass: every report written {first:.1f} s after start "
                      f"(the pass itself: {metrics.get('imagegate_reports_pass_seconds', 0):.1f} s)")  # fmt: skip
                before = _versions(cluster.kubeconfig)
                written = metrics.get("imagegate_reports_written_total", 0)
                time.sleep(2 * args.period + 2)
                after = _versions(cluster.kubeconfig)
                changed = sum(1 for ns, version in after.items() if before.get(ns) != version)
                metrics = _metrics(port)
                print(f"reports: {len(after)}; after two quiet periods: {changed} resourceVersions changed, "
                      f"{metrics.get('imagegate_reports_written_total', 0) - written:.0f} writes, "
                      f"{metrics.get('imagegate_reports_unchanged_total', 0):.0f} judged unchanged")  # fmt: skip
                print(f"controller peak RSS: {_peak_rss_mb(process.pid):.0f} MB")
            finally:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


if __name__ == "__main__":
    main()
