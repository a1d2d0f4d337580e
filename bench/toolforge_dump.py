"""A generated Toolforge: N tool namespaces with what the platform creates, as a `kubectl get -A -o json` dump.

Deterministic (a seeded generator). Per tool: its Namespace (maintain-kubeusers' labels), a
webservice Deployment and its Pod (volume-admission's home mount), a scheduled job's CronJob,
and for some tools a one-off Job. Images: mostly platform images, some the tool's own
build-service image, and a few that the closed gate refuses (another tool's Harbor project,
Docker Hub, ghcr.io); a few pods ask for another uid; a few tools have no identity yet. Also
writes the identities file and a grants file naming a handful of tools.

    python bench/toolforge_dump.py --tools 3000 --out /tmp/toolforge
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

PLATFORM_IMAGES = (
    "docker-registry.tools.wmflabs.org/toolforge-python311-sssd-web:latest",
    "docker-registry.tools.wmflabs.org/toolforge-php82-sssd-web:latest",
    "docker-registry.svc.toolforge.org/toolforge-python311-sssd-base:latest",
    "docker-registry.svc.toolforge.org/toolforge-node18-sssd-base:latest",
)
FOREIGN_IMAGES = ("docker.io/library/python:3.11-slim", "ghcr.io/example/bot:2.1", "quay.io/example/app:1")


def tool(index: int) -> str:
    return f"tool{index:05d}"


def uid(index: int) -> int:
    return 50000 + index


def _labels(name: str, component: str) -> dict[str, str]:
    return {
        "toolforge": "tool",
        "app.kubernetes.io/version": "2",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "toolforge-jobs-framework",
        "app.kubernetes.io/created-by": name,
        "toolforge.org/mount-storage": "all",
    }


def _pod_spec(name: str, image: str, run_as: int, *, home: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "securityContext": {
            "runAsUser": run_as,
            "runAsGroup": run_as,
            "fsGroup": run_as,
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "main",
                "image": image,
                "workingDir": f"/data/project/{name}",
                "env": [{"name": "HOME", "value": f"/data/project/{name}"}],
                "resources": {
                    "requests": {"cpu": "250m", "memory": "256Mi"},
                    "limits": {"cpu": "500m", "memory": "512Mi"},
                },
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                    "privileged": False,
                    "readOnlyRootFilesystem": False,
                },
            }
        ],
    }
    if home:
        spec["volumes"] = [{"name": "home", "hostPath": {"path": "/data/project", "type": "Directory"}}]
        spec["containers"][0]["volumeMounts"] = [{"name": "home", "mountPath": "/data/project"}]
    return spec


def objects_for(index: int, tools: int, rng: random.Random) -> list[dict[str, Any]]:
    name, namespace = tool(index), f"tool-{tool(index)}"
    draw = rng.random()
    if draw < 0.05:
        image = f"tools-harbor.wmcloud.org/tool-{tool((index + 1) % tools)}/app:latest"  # another tool's
    elif draw < 0.10:
        image = rng.choice(FOREIGN_IMAGES)
    elif draw < 0.30:
        image = f"tools-harbor.wmcloud.org/{namespace}/{namespace}:latest"  # its own build-service image
    else:
        image = rng.choice(PLATFORM_IMAGES)
    run_as = uid(index) if rng.random() > 0.02 else uid(index) + 1
    web = {"metadata": {"labels": _labels(name, "web")}, "spec": _pod_spec(name, image, run_as, home=False)}
    found: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {"name": namespace, "tenancy": "tool"}},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": _labels(name, "web")},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"name": name}}, "template": web},
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"{name}-7d9f8b6c5-x2x7q", "namespace": namespace, "labels": _labels(name, "web")},
            "spec": _pod_spec(name, image, run_as, home=True),
        },
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "update", "namespace": namespace, "labels": _labels(name, "cronjobs")},
            "spec": {
                "schedule": f"{index % 60} * * * *",
                "jobTemplate": {
                    "spec": {
                        "template": {
                            "metadata": {"labels": _labels(name, "cronjobs")},
                            "spec": {
                                **_pod_spec(name, rng.choice(PLATFORM_IMAGES), uid(index), home=False),
                                "restartPolicy": "Never",
                            },
                        }
                    }
                },
            },
        },
    ]
    if rng.random() < 0.2:
        found.append(
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": "migrate", "namespace": namespace, "labels": _labels(name, "jobs")},
                "spec": {
                    "template": {
                        "metadata": {"labels": _labels(name, "jobs")},
                        "spec": {**_pod_spec(name, image, run_as, home=False), "restartPolicy": "Never"},
                    }
                },
            }
        )
    return found


def write(out: Path, tools: int, seed: int = 15) -> dict[str, Path]:
    """The dump, identities and grants files for ``tools`` tools under ``out``."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    items = [obj for index in range(tools) for obj in objects_for(index, tools, rng)]
    dump = out / "dump.json"
    dump.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    identities = out / "identities.yaml"
    lines = ["apiVersion: imagegate.toolforge.org/v1", "kind: ToolIdentities", "identities:"]
    # about 1% of the tools are new: no identity yet
    lines += [f"  tool-{tool(i)}: {{uid: {uid(i)}}}" for i in range(tools) if i % 97 != 96]
    identities.write_text("\n".join(lines) + "\n")
    grants = out / "grants.yaml"
    granted = [f"  - {{namespace: tool-{tool(i)}, reason: selected tool}}" for i in range(0, tools, 50)]
    grants.write_text(
        "apiVersion: imagegate.toolforge.org/v1\nkind: ImageGrants\ngrants:\n" + "\n".join(granted or ["  []"]) + "\n"
    )
    return {"dump": dump, "identities": identities, "grants": grants}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tools", type=int, default=3000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    files = write(args.out, args.tools)
    print(" ".join(f"{k}={v}" for k, v in files.items()))


if __name__ == "__main__":
    main()
