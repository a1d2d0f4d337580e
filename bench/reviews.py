"""Realistic AdmissionReview bodies for the benchmarks (shaped as kube-apiserver sends them)."""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

TOOLFORGE = "docker-registry.svc.toolforge.org"
NAMESPACE = "tool-bench"  # the tool whose pods the mix holds


def _container(name: str, image: str) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "command": ["/bin/sh", "-c", "exec webservice-runner --port 8000"],
        "env": [{"name": f"VAR_{i}", "value": "x" * 20} for i in range(8)],
        "ports": [{"containerPort": 8000, "protocol": "TCP"}],
        "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}, "requests": {"cpu": "125m", "memory": "256Mi"}},
        "volumeMounts": [{"name": "home", "mountPath": "/data/project/bench"}],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "Always",
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }


def _pod_spec(images: list[str]) -> dict[str, Any]:
    return {
        "volumes": [{"name": "home", "hostPath": {"path": "/data/project/bench", "type": "Directory"}}],
        "containers": [_container(f"c{i}", image) for i, image in enumerate(images)],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "serviceAccountName": "default",
        # as the mutating webhook leaves a tool pod: the validating webhook sees this
        "securityContext": {
            "runAsUser": 52503,
            "runAsGroup": 52503,
            "fsGroup": 52503,
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
            "supplementalGroupsPolicy": "Strict",
        },
        "schedulerName": "default-scheduler",
        "enableServiceLinks": True,
    }


def _review(kind: str, group: str, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": resource},
            "requestKind": {"group": group, "version": "v1", "kind": kind},
            "requestResource": {"group": group, "version": "v1", "resource": resource},
            "name": obj["metadata"]["name"],
            "namespace": NAMESPACE,
            "operation": "CREATE",
            "userInfo": {"username": NAMESPACE, "groups": ["toolforge", "system:authenticated"]},
            "object": obj,
            "oldObject": None,
            "dryRun": False,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        },
    }


def small_pod() -> dict[str, Any]:
    obj = {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": "web-1", "namespace": NAMESPACE, "labels": {"app": "web"}},
        "spec": _pod_spec([f"{TOOLFORGE}/toolforge-python311-sssd-web:latest"]),
    }
    return _review("Pod", "", "pods", obj)


def ten_container_pod() -> dict[str, Any]:
    images = [f"{TOOLFORGE}/toolforge-python311-sssd-base:latest"] * 8
    images += ["ghcr.io/bench/sidecar:1.2", "quay.io/bench/proxy@sha256:" + "a" * 64]
    obj = {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": "big-1", "namespace": NAMESPACE},
        "spec": _pod_spec(images),
    }
    return _review("Pod", "", "pods", obj)


def deployment() -> dict[str, Any]:
    template = copy.deepcopy(small_pod()["request"]["object"])
    template["metadata"] = {"labels": {"app": "web"}}
    obj = {
        "kind": "Deployment",
        "apiVersion": "apps/v1",
        "metadata": {"name": "web", "namespace": NAMESPACE},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": template},
    }
    return _review("Deployment", "apps", "deployments", obj)


MIX = {"small-pod": small_pod, "ten-container-pod": ten_container_pod, "deployment": deployment}

BENCH_POLICY = f"""\
apiVersion: imagegate.toolforge.org/v1
kind: ImagePolicy
trusted: [{TOOLFORGE}]
byoc:
  default: deny
  grants:
    - namespace: {NAMESPACE}
      registries: [ghcr.io/bench, quay.io/bench]
podSecurity:
  level: restricted
  toolProfile:
    identities: {{{NAMESPACE}: {{uid: 52503}}}}
    hostPaths: [{{path: "/data/project/{{tool}}"}}]
"""


def _as_written(review: dict[str, Any]) -> dict[str, Any]:
    """The review before the mutating webhook: no security context, as users write pods."""
    obj = review["request"]["object"]
    spec = obj["spec"]["template"]["spec"] if "template" in obj["spec"] else obj["spec"]
    spec.pop("securityContext", None)
    for container in spec["containers"]:
        container.pop("securityContext", None)
    return review


def bodies(*, mutated: bool = True) -> dict[str, bytes]:
    """The mix as JSON: as the validating webhook sees it (``mutated``), or as users write it."""
    return {name: json.dumps(make() if mutated else _as_written(make())).encode() for name, make in MIX.items()}
