"""``imagegate webhooks --mutating-policy``: the API server fills in what /mutate fills in (issue 22 item 2).

Through a real kube-apiserver v1.32 with the MutatingAdmissionPolicy gate on: the emitted
policies are accepted, and for each pod shape (as users write them, as the jobs framework
writes them, privileged or CAP_SYS_ADMIN containers, init containers, a Windows pod, a seccomp
annotation, a Deployment's template) the object the API server stores has exactly the
security contexts ``mutate_pod`` makes of it; no webhook is called.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imagegate.core.native_policy import NativePolicyError, mutating_policies
from imagegate.core.podprofile import Identity, mutate_pod
from imagegate.core.policy import load_policy
from imagegate.shell.builtin_policy import default_policy
from tests.conftest import cli_env, run_imagegate
from tests.kube_cluster import KubeCluster, start_cluster

POLICY = """\
apiVersion: imagegate.toolforge.org/v1
kind: ImagePolicy
trusted: [docker-registry.svc.toolforge.org]
namespaces: {include: ["tool-*"]}
podSecurity:
  level: restricted
  toolProfile:
    namespaces: ["tool-*"]
    uidLabel: toolforge.org/uid
"""
IMAGE = "docker-registry.svc.toolforge.org/toolforge-python311-sssd-base:latest"
FULL = {
    "runAsUser": 52503,
    "runAsGroup": 52503,
    "fsGroup": 52503,
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
    "supplementalGroupsPolicy": "Strict",
}
HARDENED = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def _spec(containers: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"containers": [{"name": f"c{i}", "image": IMAGE, **c} for i, c in enumerate(containers)], **extra}


SHAPES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "as-users-write-them": (_spec([{}]), {}),
    "jobs-framework": (_spec([{"securityContext": HARDENED}], securityContext=FULL), {}),
    "privileged-and-sys-admin": (
        _spec(
            [
                {"securityContext": {"privileged": True}},
                {"securityContext": {"capabilities": {"add": ["CAP_SYS_ADMIN"]}}},
            ]
        ),
        {},
    ),
    "partial": (
        _spec(
            [
                {"securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"]}}},
                {"securityContext": {"runAsUser": 7}},
            ]
        ),
        {},
    ),
    "init-containers": (
        {**_spec([{}]), "initContainers": [{"name": "setup", "image": IMAGE}, {"name": "s2", "image": IMAGE}]},
        {},
    ),
    "windows": (_spec([{}], os={"name": "windows"}), {}),
    "seccomp-annotation": (_spec([{}]), {"seccomp.security.alpha.kubernetes.io/pod": "localhost/x.json"}),
}


def _contexts(spec: dict[str, Any]) -> dict[str, Any]:
    """The security contexts /mutate and the policies set: the pod's and each container's."""
    out = {"pod": spec.get("securityContext") or {}}
    for list_field in ("initContainers", "containers"):
        for container in spec.get(list_field) or []:
            out[f"{list_field}/{container['name']}"] = container.get("securityContext") or {}
    return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    workdir = tmp_path_factory.mktemp("native")
    with start_cluster(workdir / "cluster", controllers=False, extra_gates="SupplementalGroupsPolicy=true") as running:
        running.namespace("tool-foo", {"toolforge.org/uid": "52503"})
        running.apply(*mutating_policies(load_policy(POLICY)))
        # The API server loads new policies from its informers: wait until they act.
        probe = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe"}, "spec": _spec([{}])}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = running.create(probe, "--dry-run=server", "-n", "tool-foo")
            if done.returncode == 0 and (json.loads(done.stdout)["spec"].get("securityContext") or {}).get("runAsUser"):
                break
            time.sleep(0.5)
        yield running


@pytest.mark.parametrize("shape", SHAPES)
def test_the_api_server_fills_in_what_mutate_does(cluster: KubeCluster, shape: str) -> None:
    spec, annotations = SHAPES[shape]
    profile = load_policy(POLICY).pod_security.profile_for("tool-foo")  # type: ignore[union-attr]
    assert profile is not None
    expected = mutate_pod(spec, "/spec", profile, Identity(52503, 52503), annotations=annotations).spec
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": shape, "annotations": annotations}, "spec": spec}
    done = cluster.create(pod, "--dry-run=server", "-n", "tool-foo")
    assert done.returncode == 0, done.stderr
    assert _contexts(json.loads(done.stdout)["spec"]) == _contexts(expected)


def test_a_deployments_template_is_filled_in_too(cluster: KubeCluster) -> None:
    spec = _spec([{}, {"securityContext": {"privileged": True}}])
    profile = load_policy(POLICY).pod_security.profile_for("tool-foo")  # type: ignore[union-attr]
    assert profile is not None
    expected = mutate_pod(spec, "/spec/template/spec", profile, Identity(52503, 52503)).spec
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": spec},
        },
    }
    done = cluster.create(deployment, "--dry-run=server", "-n", "tool-foo")
    assert done.returncode == 0, done.stderr
    assert _contexts(json.loads(done.stdout)["spec"]["template"]["spec"]) == _contexts(expected)


def test_policies_it_cannot_express_are_refused(tmp_path: Path) -> None:
    with pytest.raises(NativePolicyError, match="uidLabel"):
        mutating_policies(default_policy())  # identities from a file
    policy_file = tmp_path / "p.yaml"
    policy_file.write_text(POLICY.replace("trusted:", "pinning: {enabled: true}\ntrusted:"))
    done = run_imagegate("webhooks", "--mutating-policy", "-p", str(policy_file), env=cli_env())
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "pinning" in done.stderr, done.stderr
