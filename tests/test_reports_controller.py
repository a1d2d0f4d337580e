"""``imagegate reports`` against a real kube-apiserver (tests/kube_cluster.py), never a mock.

The report CRDs come from ../shared/crds (their projects' own, installed as a cluster would);
namespaces, Deployments and Pods are made with lightkube/kubectl; the controller runs as the
command a Deployment would run (a process, stopped by its PID), with short periods and
leases. What is shown: reports created, changed and removed as objects, grants and the policy
change; an unchanged period writes nothing (resourceVersions compared); a bad policy on disk
keeps the last good one; grant Events once per day, across restarts; a second replica takes
over when the leader is killed; a missing CRD is one line and exit 2.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import GRANTS_HEADER, POLICY_HEADER
from tests.kube_cluster import KubeCluster, wait_for
from tests.loopback import free_port
from tests.processes import start

CRDS = Path(__file__).resolve().parents[1].parent / "shared" / "crds"
OPENREPORTS = CRDS / "openreports.io" / "openreports.io_reports.yaml"
WGPOLICY = CRDS / "wgpolicyk8s.io-v1alpha2" / "wgpolicyk8s.io_policyreports.yaml"
TRUSTED = "registry.example.org/app:1"
UNTRUSTED = "docker.io/library/nginx:1"
BYOC = "ghcr.io/example/app:2"
TODAY = dt.datetime.now(dt.UTC).date()


def _policy(tmp: Path, grants: str, trusted: str = "[registry.example.org]") -> Path:
    (tmp / "grants.yaml").write_text(GRANTS_HEADER + grants)
    policy = tmp / "policy.yaml"
    policy.write_text(
        POLICY_HEADER
        + textwrap.dedent(
            f"""
            trusted: {trusted}
            namespaces: {{include: ["tool-*"]}}
            byoc:
              grantsFile: grants.yaml
              warnBeforeExpiryDays: 14
            """
        )
    )
    return policy


def _grant(namespace: str, expires: dt.date, ticket: str = "T1") -> str:
    return (
        f"grants:\n  - namespace: {namespace}\n    registries: [ghcr.io/example]\n"
        f"    expires: {expires.isoformat()}\n    ticket: {ticket}\n"
    )


@pytest.fixture(scope="module")
def cluster(kube_cluster: KubeCluster) -> KubeCluster:
    kube_cluster.kubectl("apply", "--server-side", "-f", str(OPENREPORTS))
    kube_cluster.kubectl("wait", "--for=condition=Established", "crd/reports.openreports.io", "--timeout=30s")
    kube_cluster.namespace("imagegate")
    return kube_cluster


class Controller:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process, self.port, self.log = process, port, log

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        found = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                found[name] = float(value)
        return found

    def metric(self, name: str) -> float:
        with suppress(OSError):
            return self.metrics().get(name, -1.0)
        return -1.0

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def controller(
    cluster: KubeCluster,
    policy: Path,
    *args: str,
    identity: str = "a",
    lease: str = "imagegate-reports",
    kubeconfig: Path | None = None,
) -> Iterator[Controller]:
    port = free_port()
    log = policy.parent / f"controller-{identity}-{port}.log"
    env = {**os.environ, "KUBECONFIG": str(kubeconfig or cluster.kubeconfig)}
    command = [
        sys.executable, "-m", "imagegate", "reports", "-p", str(policy), "--period", "1", "--lease-duration", "2",
        "--lease-namespace", "imagegate", "--lease-name", lease, "--identity", identity,
        "--metrics-host", "127.0.0.1", "--metrics-port", str(port), *args,
    ]  # fmt: skip
    with log.open("wb") as out:
        process = start(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    running = Controller(process, port, log)
    try:
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _deployment(namespace: str, name: str, image: str, **extra: Any) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "app", "image": image}]}},
            **extra,
        },
    }


def _report(cluster: KubeCluster, namespace: str, plural: str = "reports.openreports.io") -> dict[str, Any] | None:
    done = cluster.kubectl("get", plural, "imagegate", "-n", namespace, "-o", "json", check=False)
    return json.loads(done.stdout) if done.returncode == 0 else None


def _results(report: dict[str, Any] | None) -> set[tuple[str, str, str, str]]:
    """(result, rule, owner kind/name, image) of each result."""
    found = set()
    for result in (report or {}).get("results", []):
        resource = (result.get("resources") or [{}])[0]
        found.add(
            (
                result["result"],
                result["rule"],
                f"{resource.get('kind')}/{resource.get('name')}",
                result.get("properties", {}).get("image", ""),
            )
        )
    return found


def _versions(cluster: KubeCluster, namespaces: list[str]) -> dict[str, str]:
    return {ns: str((_report(cluster, ns) or {}).get("metadata", {}).get("resourceVersion")) for ns in namespaces}


def _healthz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _events(cluster: KubeCluster, namespace: str, reason: str) -> list[dict[str, Any]]:
    done = cluster.kubectl("get", "events", "-n", namespace, "-o", "json")
    return [e for e in json.loads(done.stdout)["items"] if e.get("reason") == reason]


def test_a_missing_crd_is_one_line_and_exit_2(cluster: KubeCluster, tmp_path: Path) -> None:
    policy = _policy(tmp_path, "grants: []\n")
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    # The session's cluster is shared: another test (this module's wgpolicyk8s one, or the CI
    # formats' kubectl apply) may have installed the CRD already. Missing is this test's state.
    cluster.kubectl("delete", "crd", "policyreports.wgpolicyk8s.io", "--ignore-not-found", "--wait=true")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "imagegate", "reports", "-p", str(policy), "--format", "wgpolicyk8s"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:  # as it found it for the tests after it: installed
        cluster.kubectl("apply", "--server-side", "-f", str(WGPOLICY))
        cluster.kubectl("wait", "--for=condition=Established", "crd/policyreports.wgpolicyk8s.io", "--timeout=30s")
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: the PolicyReport CRD (policyreports.wgpolicyk8s.io")
    assert "Traceback" not in done.stderr


def test_reports_follow_objects_grants_and_the_policy(cluster: KubeCluster, tmp_path: Path) -> None:  # noqa: PLR0915 - one story, one cluster state
    for namespace in ("tool-r1", "tool-r2", "infra-r3"):
        cluster.namespace(namespace)
    ends = TODAY + dt.timedelta(days=3)
    policy = _policy(tmp_path, _grant("tool-r2", ends))
    cluster.apply(
        _deployment("tool-r1", "web", UNTRUSTED),
        _deployment("tool-r1", "ok", TRUSTED),
        _deployment("tool-r2", "byoc", BYOC),
        _deployment("infra-r3", "x", UNTRUSTED),  # not governed: no report
    )
    # a Pod imagegate cannot read an image from (the API server takes any string)
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "odd", "namespace": "tool-r1"},
            "spec": {"containers": [{"name": "app", "image": "Not/A::Reference"}]},
        }
    )
    with controller(cluster, policy) as running:
        first = wait_for(
            lambda: _report(cluster, "tool-r1") if len(_results(_report(cluster, "tool-r1"))) == 3 else None
        )
        assert _results(first) == {
            ("fail", "untrusted-registry", "Deployment/web", UNTRUSTED),
            ("fail", "invalid-reference", "Pod/odd", "Not/A::Reference"),
            ("pass", "images", "Deployment/ok", ""),
        }
        assert first["summary"] == {"pass": 1, "fail": 2, "warn": 0, "error": 0, "skip": 0}
        assert (
            first["source"] == "imagegate"
            and first["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "imagegate"
        )
        web = next(r for r in first["results"] if r["resources"][0]["name"] == "web")
        assert (
            web["severity"] == "high" and web["resources"][0]["uid"] and web["resources"][0]["apiVersion"] == "apps/v1"
        )
        assert web["properties"]["objects"] == "3"  # the Deployment, its ReplicaSet and Pod: one finding
        # the same decision as `imagegate audit` (offline) takes over the same cluster
        audited = subprocess.run(
            [sys.executable, "-m", "imagegate", "audit", "-p", str(policy), "-o", "json"],
            env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert audited.returncode == 1, audited.stderr
        said = {
            (f["owner"], f["rule"], f["message"], len(f["objects"]))
            for f in json.loads(audited.stdout)["findings"]
            if f["namespace"] == "tool-r1"
        }
        reported = {
            (
                f"{r['resources'][0]['kind']} tool-r1/{r['resources'][0]['name']}",
                r["rule"],
                r["message"],
                int(r["properties"]["objects"]),
            )
            for r in first["results"]
            if r["result"] != "pass"
        }
        assert said == reported
        second = wait_for(lambda: _report(cluster, "tool-r2"))
        assert _results(second) == {("pass", "images", "Deployment/byoc", "")}
        assert second["results"][0]["properties"] == {"grant": "T1", "expires": ends.isoformat(), "objects": "3"}
        assert _report(cluster, "infra-r3") is None

        # the grant's Event, in the tool's namespace, naming the date and the image
        (expiring,) = wait_for(lambda: _events(cluster, "tool-r2", "GrantExpiring"))
        assert expiring["type"] == "Warning" and ends.isoformat() in expiring["message"] and BYOC in expiring["message"]

        # a period with nothing changed writes nothing
        wait_for(lambda: running.metric("imagegate_reports_written_total") >= 2)
        before = _versions(cluster, ["tool-r1", "tool-r2"])
        written = running.metric("imagegate_reports_written_total")
        time.sleep(3.5)  # three periods
        assert _versions(cluster, ["tool-r1", "tool-r2"]) == before
        assert running.metric("imagegate_reports_written_total") == written
        assert running.metric("imagegate_reports_leader") == 1
        assert running.metric("imagegate_reports_last_success_timestamp_seconds") > time.time() - 5

        # an object goes: its result goes; the last one goes: the report goes
        cluster.kubectl("delete", "deployment", "web", "-n", "tool-r1")
        wait_for(
            lambda: (
                ("fail", "untrusted-registry", "Deployment/web", UNTRUSTED) not in _results(_report(cluster, "tool-r1"))
            )
        )
        cluster.kubectl("delete", "deployment", "byoc", "-n", "tool-r2", "--wait=true")
        wait_for(lambda: _report(cluster, "tool-r2") is None, timeout=60)

        # the grant ends (the grants file changes): tool-r2's new object fails, naming the end
        cluster.apply(_deployment("tool-r2", "byoc2", BYOC))
        wait_for(lambda: _results(_report(cluster, "tool-r2")) == {("pass", "images", "Deployment/byoc2", "")})
        ended = TODAY - dt.timedelta(days=2)
        (tmp_path / "grants.yaml").write_text(GRANTS_HEADER + _grant("tool-r2", ended))
        failed = wait_for(lambda: r if (r := _report(cluster, "tool-r2")) and r["summary"]["fail"] else None)
        assert f"expired on {ended.isoformat()}" in failed["results"][0]["message"]
        (gone,) = wait_for(lambda: _events(cluster, "tool-r2", "GrantExpired"))
        assert ended.isoformat() in gone["message"] and BYOC in gone["message"]

        # a policy that does not validate: refused, said, counted; the last good one stays
        settled = _versions(cluster, ["tool-r1", "tool-r2"])
        policy.write_text(POLICY_HEADER + "mode: sometimes\n")
        wait_for(lambda: running.metric("imagegate_reports_policy_valid") == 0)
        assert running.metric("imagegate_reports_policy_reload_failures_total") >= 1
        time.sleep(2)
        assert _versions(cluster, ["tool-r1", "tool-r2"]) == settled
        assert running.process.poll() is None
        assert "policy reload refused" in running.logs()
        # a valid policy again, trusting ghcr.io: tool-r2 passes
        _policy(tmp_path, _grant("tool-r2", ended), trusted="[registry.example.org, ghcr.io/example]")
        wait_for(lambda: _results(_report(cluster, "tool-r2")) == {("pass", "images", "Deployment/byoc2", "")})
        assert running.metric("imagegate_reports_policy_valid") == 1

    # a restart, the same day: no second Event (the Lease remembers); the report is not rewritten
    versions = _versions(cluster, ["tool-r1", "tool-r2"])
    with controller(cluster, policy) as again:
        wait_for(lambda: again.metric("imagegate_reports_leader") == 1)
        wait_for(lambda: again.metric("imagegate_reports_unchanged_total") >= 2)
        assert again.metric("imagegate_reports_written_total") == 0
        assert _versions(cluster, ["tool-r1", "tool-r2"]) == versions
    assert len(_events(cluster, "tool-r2", "GrantExpiring")) == 1
    assert len(_events(cluster, "tool-r2", "GrantExpired")) == 1


def test_events_once_a_day_even_without_the_leases_memory(cluster: KubeCluster, tmp_path: Path) -> None:
    cluster.namespace("tool-e1")
    policy = _policy(tmp_path, _grant("tool-e1", TODAY + dt.timedelta(days=1)))
    cluster.apply(_deployment("tool-e1", "byoc", BYOC))
    with controller(cluster, policy, lease="events-lease") as running:
        wait_for(lambda: _events(cluster, "tool-e1", "GrantExpiring"))
        wait_for(lambda: running.metric('imagegate_reports_events_total{reason="GrantExpiring"}') == 1)
    # the record in the Lease is lost: the Event's name, fixed for the day, still refuses a second (409)
    cluster.kubectl("annotate", "lease", "events-lease", "-n", "imagegate", "imagegate.toolforge.org/grant-events-")
    with controller(cluster, policy, lease="events-lease") as again:
        wait_for(lambda: again.metric("imagegate_reports_leader") == 1)
        time.sleep(2.5)  # two periods
        assert again.process.poll() is None
        assert again.metric('imagegate_reports_events_total{reason="GrantExpiring"}') == 0
    assert len(_events(cluster, "tool-e1", "GrantExpiring")) == 1


def test_only_the_leader_writes_and_another_takes_over(cluster: KubeCluster, tmp_path: Path) -> None:
    cluster.namespace("tool-l1")
    policy = _policy(tmp_path, "grants: []\n")
    cluster.apply(_deployment("tool-l1", "web", UNTRUSTED))
    with controller(cluster, policy, identity="first", lease="lead") as first:
        wait_for(lambda: first.metric("imagegate_reports_leader") == 1)
        wait_for(lambda: _report(cluster, "tool-l1"))
        with controller(cluster, policy, identity="second", lease="lead") as second:
            wait_for(lambda: second.metric("imagegate_reports_leader") == 0)
            wait_for(lambda: _healthz(second.port) == 200)  # a replica that is not leader is healthy too
            cluster.apply(_deployment("tool-l1", "more", UNTRUSTED))
            wait_for(lambda: len(_results(_report(cluster, "tool-l1"))) == 2)
            time.sleep(1.5)
            assert second.metric("imagegate_reports_written_total") == 0  # it watched, it did not write
            assert second.metric("imagegate_reports_leader") == 0
            lease = json.loads(cluster.kubectl("get", "lease", "lead", "-n", "imagegate", "-o", "json").stdout)
            assert lease["spec"]["holderIdentity"] == "first"
            first.process.kill()  # no clean hand-over: the Lease must run out
            killed = time.monotonic()
            first.process.wait()
            wait_for(lambda: second.metric("imagegate_reports_leader") == 1, timeout=10, every=0.05)
            took = time.monotonic() - killed
            # the lease is 2 s; the second replica checks every 0.4 s and must see it unchanged for 2 s
            assert took <= 2 + 2 * 0.4 + 0.5, took
            cluster.kubectl("delete", "deployment", "more", "-n", "tool-l1")
            wait_for(lambda: len(_results(_report(cluster, "tool-l1"))) == 1)
            assert second.metric("imagegate_reports_written_total") >= 1


def test_bounded_reports_and_the_wgpolicyk8s_format(cluster: KubeCluster, tmp_path: Path) -> None:
    cluster.kubectl("apply", "--server-side", "-f", str(WGPOLICY))
    cluster.kubectl("wait", "--for=condition=Established", "crd/policyreports.wgpolicyk8s.io", "--timeout=30s")
    cluster.namespace("tool-w1")
    policy = _policy(tmp_path, "grants: []\n")
    cluster.apply(*(_deployment("tool-w1", f"d{i}", f"docker.io/library/app{i}:1") for i in range(6)))
    with controller(cluster, policy, "--format", "wgpolicyk8s", "--max-results", "4", lease="wg") as running:
        report = wait_for(
            lambda: (
                r
                if (r := _report(cluster, "tool-w1", "policyreports.v1alpha2.wgpolicyk8s.io"))
                and r["summary"]["fail"] == 6
                else None
            )
        )
        assert report["apiVersion"] == "wgpolicyk8s.io/v1alpha2" and report["kind"] == "PolicyReport"
        assert len(report["results"]) == 5
        more = report["results"][-1]
        assert (
            more["rule"] == "more-results" and more["result"] == "fail" and more["message"].startswith("2 more results")
        )
        assert running.process.poll() is None


def _rbac(cluster: KubeCluster, name: str, report_verbs: list[str]) -> Path:
    """A ServiceAccount with the RBAC docs/reports.md lists (``report_verbs`` on reports), and a kubeconfig for it."""
    rules = [
        {"apiGroups": [""], "resources": ["pods", "podtemplates", "replicationcontrollers", "namespaces"], "verbs": ["list", "watch"]},
        {"apiGroups": ["apps"], "resources": ["deployments", "replicasets", "statefulsets", "daemonsets"], "verbs": ["list", "watch"]},
        {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": ["list", "watch"]},
        {"apiGroups": ["openreports.io"], "resources": ["reports"], "verbs": report_verbs},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ]  # fmt: skip
    subject = [{"kind": "ServiceAccount", "name": name, "namespace": "imagegate"}]
    cluster.apply(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": "imagegate"}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": subject,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": name, "namespace": "imagegate"},
            "rules": [
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": "imagegate"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": subject,
        },
    )
    token = cluster.kubectl("create", "token", name, "-n", "imagegate").stdout.strip()
    admin = cluster.kubeconfig.read_text()
    start = admin.index("user: {token: ") + len("user: {token: ")
    config = cluster.directory / f"{name}.kubeconfig"
    config.write_text(admin[:start] + token + admin[admin.index("}", start) :])
    return config


def test_with_the_documented_rbac_it_works_and_a_refused_write_is_counted_not_fatal(
    cluster: KubeCluster, tmp_path: Path
) -> None:
    cluster.namespace("tool-x1")
    cluster.apply(_deployment("tool-x1", "web", UNTRUSTED))
    policy = _policy(tmp_path, _grant("tool-x1", TODAY))
    least = _rbac(cluster, "reports-least", ["list", "get", "create", "patch", "delete"])
    with controller(cluster, policy, lease="rbac", kubeconfig=least) as running:
        wait_for(lambda: _report(cluster, "tool-x1"))
        wait_for(lambda: _events(cluster, "tool-x1", "GrantExpiring"))
        assert running.metric('imagegate_reports_write_failures_total{code="403"}') in (-1.0, 0.0)
    cluster.kubectl("delete", "report.openreports.io", "imagegate", "-n", "tool-x1")
    refused = _rbac(cluster, "reports-refused", ["list", "get"])
    with controller(cluster, policy, lease="rbac-refused", kubeconfig=refused) as running:
        wait_for(lambda: running.metric('imagegate_reports_write_failures_total{code="403"}') >= 2)
        assert running.process.poll() is None  # said, counted, tried again; never a crash
        assert running.metric("imagegate_reports_last_success_timestamp_seconds") == 0
        assert '"report not written"' in running.logs() and "forbidden" in running.logs()
    assert _report(cluster, "tool-x1") is None


def _etcd(cluster: KubeCluster, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """etcd's v3 JSON gateway (no etcdctl on the machine)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{cluster.port + 10000}/v3/{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return dict(json.loads(answer.read()))


def test_an_expired_watch_is_listed_again(tmp_path: Path) -> None:
    """Watches served by etcd itself (no watch cache) and closed by the API server every second or
    two: when etcd has compacted past a watch's resourceVersion, the API server answers 410 and
    the controller lists that kind again, then watches on."""
    from tests.kube_cluster import start_cluster  # noqa: PLC0415

    with start_cluster(
        tmp_path / "kube", controllers=False, extra_args="--watch-cache=false --min-request-timeout=1"
    ) as own:
        own.kubectl("apply", "--server-side", "-f", str(OPENREPORTS))
        own.kubectl("wait", "--for=condition=Established", "crd/reports.openreports.io", "--timeout=30s")
        own.namespace("imagegate")
        own.namespace("tool-z1")
        policy = _policy(tmp_path, "grants: []\n")
        with controller(own, policy, lease="relist") as running:
            wait_for(lambda: running.metric("imagegate_reports_leader") == 1)
            for index in range(3):  # the revision moves on; the Deployments' watch sees nothing of it
                own.kubectl("create", "configmap", f"c{index}", "-n", "tool-z1")
            revision = int(_etcd(own, "kv/range", {"key": "AA=="})["header"]["revision"])
            _etcd(own, "kv/compaction", {"revision": revision, "physical": True})
            wait_for(lambda: running.metric('imagegate_reports_relists_total{kind="Deployment"}') >= 1, timeout=20)
            assert "watch expired; listing again" in running.logs()
            own.apply(_deployment("tool-z1", "late", UNTRUSTED))
            report = wait_for(lambda: _report(own, "tool-z1"))
            assert ("fail", "untrusted-registry", "Deployment/late", UNTRUSTED) in _results(report)
            assert running.process.poll() is None


def test_a_report_refused_as_too_large_is_written_again_smaller(cluster: KubeCluster, tmp_path: Path) -> None:
    """The API server says 422 (here a ValidatingAdmissionPolicy holds reports in tool-big to 3
    results, as a size limit would): counted, written again with fewer results, never a crash."""
    cluster.namespace("tool-big")
    cluster.apply(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": "small-reports"},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": ["openreports.io"],
                            "apiVersions": ["*"],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": ["reports"],
                        }
                    ]
                },
                "validations": [
                    {"expression": "!has(object.results) || size(object.results) <= 3", "reason": "Invalid"}
                ],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": "small-reports"},
            "spec": {
                "policyName": "small-reports",
                "validationActions": ["Deny"],
                "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "tool-big"}}},
            },
        },
    )
    policy = _policy(tmp_path, "grants: []\n")
    cluster.apply(*(_deployment("tool-big", f"d{i}", f"docker.io/library/big{i}:1") for i in range(6)))
    try:
        with controller(cluster, policy, "--max-results", "16", lease="big") as running:
            report = wait_for(lambda: _report(cluster, "tool-big"), timeout=60)
            assert running.metric('imagegate_reports_write_failures_total{code="422"}') >= 1
            assert (
                report["summary"]["fail"] == 6 and len(report["results"]) == 3
            )  # 16 // 8 listed, one counting the rest
            assert report["results"][-1]["rule"] == "more-results"
            assert running.process.poll() is None
    finally:
        cluster.kubectl("delete", "validatingadmissionpolicybinding", "small-reports", check=False)
        cluster.kubectl("delete", "validatingadmissionpolicy", "small-reports", check=False)
