"""/mutate never fills in a value the API server refuses beside what the pod has (issue 22, item 4).

Through a real kube-apiserver v1.32 (``tests/kube_cluster.py``) with imagegate's webhooks
registered as deploy/ ships them: a pod the API server's own validation would refuse only
because of a patched-in value (``allowPrivilegeEscalation: false`` beside ``privileged: true``
or ``CAP_SYS_ADMIN``, a Windows pod's Linux fields, a seccomp profile beside an annotation
naming another) reaches /validate as written and is denied with imagegate's message, never
with the API server's "is invalid" and its Go struct dump. The pure part of the same rules
is checked against mutate_pod for every container list.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

from imagegate.core.podprofile import MAX_ID, Identity, PodProfile, ToolProfile, mutate_pod
from imagegate.core.podsecurity import Level
from imagegate.core.records import Mode
from imagegate.core.webhooks import webhook_configurations
from imagegate.shell.builtin_policy import default_policy
from tests.kube_cluster import KubeCluster, start_cluster
from tests.webhook_process import WebhookProcess, run_webhook

NAMESPACE = "tool-foo"
IDENTITIES = (
    "apiVersion: imagegate.toolforge.org/v1\nkind: ToolIdentities\nidentities:\n  tool-foo: {uid: 52503, gid: 52503}\n"
)
IMAGE = "docker-registry.svc.toolforge.org/toolforge-python311-sssd-base:latest"


def _pod(name: str, container: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if "annotations" in spec:
        metadata["annotations"] = spec.pop("annotations")
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {"containers": [{"name": "main", "image": IMAGE, **(container or {})}], **spec},
    }


@pytest.fixture(scope="module")
def cluster_with_webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KubeCluster, WebhookProcess]]:
    workdir = tmp_path_factory.mktemp("refusals")
    identities = workdir / "identities.yaml"
    identities.write_text(IDENTITIES)
    gates = "SupplementalGroupsPolicy=true"  # the built-in policy denies a pod whose API server drops the field
    with (
        start_cluster(workdir / "cluster", controllers=False, extra_gates=gates) as cluster,
        run_webhook(workdir, "--identities", str(identities)) as webhook,
    ):
        ca = base64.b64encode(webhook.tls.ca_cert.read_bytes()).decode()
        configurations = webhook_configurations(default_policy())
        for configuration in configurations:
            configuration["metadata"].pop("annotations", None)
            for hook in configuration["webhooks"]:
                path = hook["clientConfig"]["service"]["path"]
                hook["clientConfig"] = {"url": f"{webhook.url}{path}", "caBundle": ca}
        cluster.namespace(NAMESPACE)
        cluster.apply(*configurations)
        try:
            yield cluster, webhook
        finally:
            # Fail-closed webhooks outlive the process in etcd: remove them first (the README's order).
            for configuration in configurations:
                cluster.kubectl("delete", configuration["kind"], configuration["metadata"]["name"], check=False)


def _create(cluster: KubeCluster, pod: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    done = cluster.create(pod, "--dry-run=server", "-n", NAMESPACE)
    return (json.loads(done.stdout) if done.returncode == 0 else None), done.stderr


DENIED_BY_IMAGEGATE = {
    "privileged": (_pod("privileged", {"securityContext": {"privileged": True}}), "tool pods are never privileged"),
    "cap-sys-admin": (
        _pod("sysadmin", {"securityContext": {"capabilities": {"add": ["CAP_SYS_ADMIN"]}}}),
        "tool pods add no capabilities",
    ),
    "privileged-init": (
        _pod("init", initContainers=[{"name": "setup", "image": IMAGE, "securityContext": {"privileged": True}}]),
        "tool pods are never privileged",
    ),
    "windows": (_pod("windows", os={"name": "windows"}), "windows"),
    "seccomp-annotation": (
        _pod("annotated", annotations={"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}),
        "seccompProfile",
    ),
}


@pytest.mark.parametrize("case", DENIED_BY_IMAGEGATE)
def test_refused_combinations_reach_validate(
    cluster_with_webhook: tuple[KubeCluster, WebhookProcess], case: str
) -> None:
    cluster, _ = cluster_with_webhook
    pod, why = DENIED_BY_IMAGEGATE[case]
    stored, error = _create(cluster, pod)
    assert stored is None
    assert 'admission webhook "validate.imagegate.toolforge.org" denied the request' in error, error
    assert why in error
    assert "is invalid" not in error and "Invalid value" not in error, error


def test_fillable_pods_are_filled(cluster_with_webhook: tuple[KubeCluster, WebhookProcess]) -> None:
    cluster, _ = cluster_with_webhook
    for pod in (
        _pod("plain"),
        _pod("runtime-default", annotations={"seccomp.security.alpha.kubernetes.io/pod": "runtime/default"}),
        _pod("sys-admin-name", {"securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}),
    ):
        stored, error = _create(cluster, pod)
        name = pod["metadata"]["name"]
        if name == "sys-admin-name":  # not the API server's CAP_SYS_ADMIN: filled in, then denied for adding it
            assert stored is None and "tool pods add no capabilities" in error, error
            continue
        assert stored is not None, error
        context = stored["spec"]["securityContext"]
        assert context["runAsUser"] == 52503 and context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert stored["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] is False


def test_kubectl_debug_sysadmin_is_denied_by_imagegate(
    cluster_with_webhook: tuple[KubeCluster, WebhookProcess],
) -> None:
    cluster, _ = cluster_with_webhook
    done = cluster.create(_pod("debugged"), "-n", NAMESPACE)
    assert done.returncode == 0, done.stderr
    try:
        debug = cluster.kubectl(
            "debug", "-n", NAMESPACE, "pod/debugged", f"--image={IMAGE}", "--profile=sysadmin", check=False
        )
        assert debug.returncode != 0
        # kubectl debug is an UPDATE (pods/ephemeralcontainers): the UPDATE webhook answers
        assert 'admission webhook "validate-update.imagegate.toolforge.org" denied the request' in debug.stderr, (
            debug.stderr
        )
        assert "Invalid value" not in debug.stderr
        restricted = cluster.kubectl(
            "debug", "-n", NAMESPACE, "pod/debugged", f"--image={IMAGE}", "--profile=restricted", check=False
        )
        assert restricted.returncode == 0, restricted.stderr
    finally:
        cluster.kubectl("delete", "pod", "debugged", "-n", NAMESPACE, "--wait=false", check=False)


# --- the same rules, pure: every container list, the pod level, the ephemeral path ----------

_TOOL = PodProfile(Level.RESTRICTED, (1, 37), Mode.ENFORCE, True, ToolProfile())
_ID = Identity(52503, 52503)


def _paths(spec: dict[str, Any], **kwargs: Any) -> set[str]:
    before = copy.deepcopy(spec)
    patcher = mutate_pod(spec, "/spec", _TOOL, _ID, **kwargs)
    assert spec == before  # copy-on-write: the request is never changed
    paths = set()
    for op in patcher.patches:
        value = op["value"]
        stack = [(op["path"], value)]
        while stack:
            path, node = stack.pop()
            if isinstance(node, dict):
                stack.extend((f"{path}/{key}", item) for key, item in node.items())
            else:
                paths.add(path)
    return paths


@pytest.mark.parametrize("list_field", ["containers", "initContainers"])
def test_escalation_left_alone_where_refused(list_field: str) -> None:
    for context in ({"privileged": True}, {"capabilities": {"add": ["NET_ADMIN", "CAP_SYS_ADMIN"]}}):
        spec = {list_field: [{"name": "a", "securityContext": context}, {"name": "b"}]}
        if list_field != "containers":
            spec["containers"] = [{"name": "c", "securityContext": {"allowPrivilegeEscalation": False}}]
        paths = _paths(spec)
        assert f"/spec/{list_field}/0/securityContext/allowPrivilegeEscalation" not in paths
        assert f"/spec/{list_field}/0/securityContext/capabilities/drop" in paths or "capabilities" in context
        assert f"/spec/{list_field}/1/securityContext/allowPrivilegeEscalation" in paths


def test_windows_pod_gets_only_run_as_non_root() -> None:
    spec = {"os": {"name": "windows"}, "containers": [{"name": "a"}]}
    assert _paths(spec) == {"/spec/securityContext/runAsNonRoot"}
    ephemeral = {**spec, "ephemeralContainers": [{"name": "debugger"}]}
    assert _paths(ephemeral, only=[("ephemeralContainers", 0)]) == {
        "/spec/ephemeralContainers/0/securityContext/runAsNonRoot"
    }


def test_seccomp_left_alone_beside_an_annotation_or_a_localhost_profile() -> None:
    key = "seccomp.security.alpha.kubernetes.io/pod"
    seccomp = "/spec/securityContext/seccompProfile"
    assert f"{seccomp}/type" in _paths({"containers": [{"name": "a"}]}, annotations={key: "runtime/default"})
    assert f"{seccomp}/type" in _paths({"containers": [{"name": "a"}]}, annotations={key: "docker/default"})
    assert not any(
        p.startswith(seccomp) for p in _paths({"containers": [{"name": "a"}]}, annotations={key: "unconfined"})
    )
    local = {"securityContext": {"seccompProfile": {"localhostProfile": "x.json"}}, "containers": [{"name": "a"}]}
    assert not any(p.startswith(seccomp) for p in _paths(local))
    ephemeral = {"containers": [{"name": "a"}], "ephemeralContainers": [{"name": "dbg"}]}
    notes = {"container.seccomp.security.alpha.kubernetes.io/dbg": "localhost/x.json"}
    paths = _paths(ephemeral, only=[("ephemeralContainers", 0)], annotations=notes)
    assert not any("seccompProfile" in p for p in paths)


def test_identities_beyond_the_api_servers_range_are_never_filled_in() -> None:
    tool = ToolProfile(uid_label="uid")
    assert tool.identity("tool-a", {"uid": str(MAX_ID)}) == Identity(MAX_ID, MAX_ID)
    assert tool.identity("tool-a", {"uid": str(MAX_ID + 1)}) is None
