"""What imagegate adds to a pod create, measured through a real kube-apiserver (issue 22 item 2).

``python bench/apiserver_bench.py [--rounds 12] [--pods 15]`` starts ../shared/kube's
kube-apiserver v1.32 (etcd, no controller manager; the MutatingAdmissionPolicy and
SupplementalGroupsPolicy gates on) and ``imagegate serve`` (1 worker, the built-in policy with
an identity for the bench namespaces), and creates pods one at a time (concurrency 1, one
keep-alive HTTPS connection, real creates stored in etcd) in one namespace per scenario:

* ``none``: no admission policy or webhook selects it (the baseline);
* ``vap``: ``bench/restricted_vap.yaml``, a ValidatingAdmissionPolicy doing the registry
  allowlist and the restricted checks in CEL;
* ``webhooks``: imagegate as deploy/ ships it (``imagegate webhooks``): the mutating and the
  validating webhook, their CREATE entries without matchConditions;
* ``native``: ``imagegate webhooks --mutating-policy``: MutatingAdmissionPolicies fill in the
  defaults in the API server, and only the validating webhook is called.

Each pod shape: ``full`` (the full security context, as Toolforge's jobs framework writes it:
nothing to fill in) and ``bare`` (as users write them: everything filled in). Every round
runs each scenario and shape once, in a shuffled order, ``--pods`` creates each; the added
latency of a scenario is the median over rounds of (its p50 - the ``none`` p50 of the same
round and shape). CPU per pod: the API server's and imagegate's CPU time (user + system, from
/proc) over each batch, divided by its pods, the difference to ``none`` taken the same way.
The patch cost is ``webhooks bare`` minus ``webhooks full``.
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from imagegate.core.native_policy import mutating_policies  # noqa: E402
from imagegate.core.policy import load_policy  # noqa: E402
from imagegate.core.webhooks import webhook_configurations  # noqa: E402

SCENARIOS = ("none", "vap", "webhooks", "native")
SHAPES = ("full", "bare")
# The VAP mutates nothing: a bare pod is denied there, so it is measured on full pods only, and
# the target for bare pods is the VAP's figure plus the measured patch cost.
CELLS = tuple((s, h) for s in SCENARIOS for h in SHAPES if (s, h) != ("vap", "bare"))
IMAGE = "docker-registry.svc.toolforge.org/toolforge-python311-sssd-base:latest"
UID = 52503
POLICY = (REPO / "src" / "imagegate" / "policies" / "toolforge.yaml").read_text()
FULL_POD = {
    "runAsUser": UID,
    "runAsGroup": UID,
    "fsGroup": UID,
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
    "supplementalGroupsPolicy": "Strict",
}
FULL_CONTAINER = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def _namespace(scenario: str) -> str:
    return f"tool-bench-{scenario}"


def _pod(shape: str) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "job", "image": IMAGE, "command": ["/bin/sh", "-c", "date"]}
    spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if shape == "full":
        container["securityContext"] = FULL_CONTAINER
        spec["securityContext"] = FULL_POD
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": f"{shape}-"}, "spec": spec}


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_tree(pid: int) -> float:
    """CPU of ``pid`` and its children (imagegate's workers)."""
    total = _cpu(pid)
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        total += _cpu_tree(int(child))
    return total


def _selected(configuration: dict[str, Any], scenarios: list[str], url: str, ca: str) -> dict[str, Any]:
    configuration["metadata"].pop("annotations", None)
    for hook in configuration["webhooks"]:
        path = hook["clientConfig"]["service"]["path"]
        hook["clientConfig"] = {"url": f"{url}{path}", "caBundle": ca}
        hook["namespaceSelector"]["matchExpressions"].append({"key": "bench", "operator": "In", "values": scenarios})
    return configuration


def _native_documents(indices: int | None) -> list[dict[str, Any]]:
    """The MutatingAdmissionPolicies for the built-in policy, with the uid from a Namespace label."""
    native_policy = load_policy(
        POLICY.replace(
            '    namespaces: ["tool-*"]\n', '    namespaces: ["tool-*"]\n    uidLabel: toolforge.org/uid\n', 1
        )
    )
    documents = mutating_policies(native_policy, selector={"matchLabels": {"bench": "native"}}, max_containers=indices)
    return documents


def _report(
    p50: dict[tuple[str, str], list[float]],
    cpu_api: dict[tuple[str, str], list[float]],
    cpu_gate: dict[tuple[str, str], list[float]],
    rounds: int,
    pods: int,
) -> None:
    """The table of the README: per cell, medians over rounds and same-round differences to ``none``."""

    def added(values: dict[tuple[str, str], list[float]], scenario: str, shape: str) -> float:
        base = values[("none", shape)]
        return statistics.median(v - b for v, b in zip(values[(scenario, shape)], base, strict=True))

    print(f"\n{rounds} rounds x {pods} pods per cell, concurrency 1; ms")
    print("| pods | scenario | p50 | added p50 | API-server CPU/pod | added | imagegate CPU/pod |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for shape in SHAPES:
        for scenario in SCENARIOS:
            key = (scenario, shape)
            if key not in p50:
                continue
            print(
                f"| {shape} | {scenario} | {statistics.median(p50[key]):.2f} | "
                f"{added(p50, scenario, shape):+.2f} | {statistics.median(cpu_api[key]):.2f} | "
                f"{added(cpu_api, scenario, shape):+.2f} | {statistics.median(cpu_gate[key]):.2f} |"
            )
    patch = statistics.median(b - f for b, f in zip(p50[("webhooks", "bare")], p50[("webhooks", "full")], strict=True))
    print(f"\npatch cost (webhooks bare - full, same rounds): {patch:+.2f} ms p50")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--pods", type=int, default=15, help="creates per scenario and shape in each round")
    parser.add_argument(
        "--map-indices",
        type=int,
        default=None,
        help="container indices the policies walk (default: the policy's limit)",
    )
    args = parser.parse_args()
    from tests.kube_cluster import start_cluster  # noqa: PLC0415 (needs the repository on sys.path)
    from tests.webhook_process import run_webhook  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="apiserver-bench-") as tmp:
        work = Path(tmp)
        identities = work / "identities.yaml"
        identities.write_text(
            "apiVersion: imagegate.toolforge.org/v1\nkind: ToolIdentities\nidentities:\n"
            + "".join(f"  {_namespace(s)}: {{uid: {UID}, gid: {UID}}}\n" for s in SCENARIOS)
        )
        with (
            start_cluster(work / "cluster", controllers=False, extra_gates="SupplementalGroupsPolicy=true") as cluster,
            run_webhook(work, "--identities", str(identities), "--workers", "1", "--log-level", "warning") as webhook,
        ):
            ca = base64.b64encode(webhook.tls.ca_cert.read_bytes()).decode()
            for scenario in SCENARIOS:
                cluster.namespace(_namespace(scenario), {"bench": scenario, "toolforge.org/uid": str(UID)})
            mutating, validating = webhook_configurations(load_policy(POLICY))
            cluster.apply(
                _selected(mutating, ["webhooks"], webhook.url, ca),
                _selected(validating, ["webhooks", "native"], webhook.url, ca),
                *_native_documents(args.map_indices),
            )
            cluster.kubectl("apply", "-f", str(REPO / "bench" / "restricted_vap.yaml"))
            token = (cluster.directory / "pki" / "token").read_text().strip()
            context = ssl.create_default_context(cafile=str(cluster.directory / "pki" / "ca.crt"))
            apiserver = cluster.pids["kube-apiserver"]
            client = httpx.Client(
                base_url=f"https://127.0.0.1:{cluster.port}",
                verify=context,
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )

            def create(scenario: str, shape: str) -> float:
                started = time.perf_counter()
                answer = client.post(f"/api/v1/namespaces/{_namespace(scenario)}/pods", json=_pod(shape))
                elapsed = time.perf_counter() - started
                if answer.status_code != 201:
                    raise SystemExit(f"{scenario}/{shape}: HTTP {answer.status_code}: {answer.text[:400]}")
                return elapsed

            # Until every scenario acts as configured (policies load from informers), then warm up.
            deadline = time.monotonic() + 60
            while True:
                try:
                    for scenario, shape in CELLS:
                        create(scenario, shape)
                    stored = client.get(f"/api/v1/namespaces/{_namespace('native')}/pods").json()["items"]
                    if any(
                        (p["spec"].get("securityContext") or {}).get("runAsUser")
                        for p in stored
                        if "bare" in p["metadata"]["name"]
                    ):
                        break
                except SystemExit:
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.5)
            for _ in range(3):
                for scenario, shape in CELLS:
                    create(scenario, shape)

            p50: dict[tuple[str, str], list[float]] = {}
            cpu_api: dict[tuple[str, str], list[float]] = {}
            cpu_gate: dict[tuple[str, str], list[float]] = {}
            cells = list(CELLS)
            for round_index in range(args.rounds):
                random.shuffle(cells)
                for scenario, shape in cells:
                    api_before, gate_before = _cpu(apiserver), _cpu_tree(webhook.process.pid)
                    times = [create(scenario, shape) for _ in range(args.pods)]
                    api_after, gate_after = _cpu(apiserver), _cpu_tree(webhook.process.pid)
                    key = (scenario, shape)
                    p50.setdefault(key, []).append(statistics.median(times) * 1000)
                    cpu_api.setdefault(key, []).append((api_after - api_before) / args.pods * 1000)
                    cpu_gate.setdefault(key, []).append((gate_after - gate_before) / args.pods * 1000)
                for scenario in SCENARIOS:
                    client.delete(f"/api/v1/namespaces/{_namespace(scenario)}/pods")
                print(f"round {round_index + 1}/{args.rounds} done", file=sys.stderr)

            _report(p50, cpu_api, cpu_gate, args.rounds, args.pods)
            client.close()
            for configuration in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
                cluster.kubectl("delete", configuration, "imagegate", check=False)


if __name__ == "__main__":
    main()
