"""Talking to a cluster, through lightkube (kubeconfig or in-cluster service account).

Reads what runs (every pod-bearing kind) for ``audit``, Namespace labels for selectors and
tool identities, and edits the grants ConfigMap for ``grants --apply`` with compare-and-swap
on ``resourceVersion``: a concurrent edit makes the API server refuse ours (409), and we
re-read and re-apply the change instead of overwriting theirs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx2
from lightkube import ApiError, Client
from lightkube.core.resource_registry import resource_registry
from lightkube.resources.core_v1 import ConfigMap, Namespace

from imagegate.core.workloads import WORKLOAD_KINDS
from imagegate.shell.manifests import Location, SourcedObject

__all__ = ["ClusterError", "edit_configmap", "lightkube_resource", "list_workloads", "namespace_labels"]


def lightkube_resource(kind: str, api_version: str) -> Any:
    """lightkube's class for a workload kind (core/workloads.py lists them)."""
    return resource_registry.load(api_version, kind)


class ClusterError(Exception):
    pass


def _why(exc: httpx2.HTTPError) -> str:
    """What the API server said, or that it did not answer (lightkube 1.0 raises httpx2's errors:
    an ApiError for a Status, a ConnectError or timeout when there was no answer at all)."""
    if isinstance(exc, ApiError):
        return str(exc.status.message)
    return f"no answer from the API server ({exc or type(exc).__name__})"


def connect() -> Client:
    """A client from the kubeconfig (KUBECONFIG, ~/.kube/config) or the in-cluster account."""
    try:
        return Client()
    except Exception as exc:  # lightkube raises several kinds for a missing configuration
        raise ClusterError(f"no cluster to talk to: {exc}") from None


def list_workloads(client: Client, progress: Callable[[str], None] | None = None) -> list[SourcedObject]:
    """Every object of every pod-bearing kind in every namespace."""
    found: list[SourcedObject] = []
    for workload in WORKLOAD_KINDS:
        kind, api_version = workload.kind, workload.api_version
        resource = lightkube_resource(kind, api_version)
        if progress is not None:
            progress(kind)
        try:
            for item in client.list(resource, namespace="*"):
                data = item.to_dict()
                data["kind"], data["apiVersion"] = kind, api_version
                metadata = data.get("metadata", {})
                found.append(
                    SourcedObject(data, Location.listed(kind, metadata.get("namespace"), metadata.get("name")))
                )
        except httpx2.HTTPError as exc:
            raise ClusterError(f"cannot list {kind}: {_why(exc)}") from None
    return found


def namespace_labels(client: Client) -> dict[str, Mapping[str, str]]:
    try:
        return {
            str(ns.metadata.name): dict(ns.metadata.labels or {})
            for ns in client.list(Namespace)
            if ns.metadata is not None and ns.metadata.name
        }
    except httpx2.HTTPError as exc:
        raise ClusterError(f"cannot list namespaces: {_why(exc)}") from None


def edit_configmap(
    client: Client, namespace: str, name: str, key: str, change: Callable[[str], str], attempts: int = 5
) -> str:
    """Apply ``change`` to ``data[key]`` of a ConfigMap with compare-and-swap; return the new text."""
    for _attempt in range(attempts):
        try:
            current = client.get(ConfigMap, name=name, namespace=namespace)
        except httpx2.HTTPError as exc:
            raise ClusterError(f"cannot read ConfigMap {namespace}/{name}: {_why(exc)}") from None
        new_text = change((current.data or {}).get(key, ""))
        current.data = {**(current.data or {}), key: new_text}
        try:
            client.replace(current)  # carries metadata.resourceVersion: the API server checks it
            return new_text
        except httpx2.HTTPError as exc:
            if isinstance(exc, ApiError) and exc.status.code == 409:
                continue  # someone else edited it first: re-read, re-apply our change
            raise ClusterError(f"cannot update ConfigMap {namespace}/{name}: {_why(exc)}") from None
    raise ClusterError(f"ConfigMap {namespace}/{name} kept changing under us; nothing was written")
