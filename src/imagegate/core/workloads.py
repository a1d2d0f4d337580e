"""Where images hide in Kubernetes objects.

Every pod-bearing kind is reduced to its pod spec(s), and every pod spec to its image
uses: containers, initContainers, ephemeralContainers and ``image`` volume sources.
Each use carries a JSON pointer so a mutation can patch exactly that field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from imagegate.core.records import ImageUse

__all__ = [
    "CONTAINER_FIELDS",
    "CONTAINER_LISTS",
    "DEFAULT_MAX_CONTAINERS",
    "DEFAULT_MAX_VOLUMES",
    "LIMIT_BOUNDS",
    "POD_TEMPLATE_PATHS",
    "WORKLOAD_KINDS",
    "ImageUse",
    "ObjectLimits",
    "ObjectShapeError",
    "PodSpecs",
    "WorkloadKind",
    "image_uses",
    "json_pointer",
    "object_metadata",
    "object_namespace",
    "over_limits",
    "pod_specs",
    "spec_counts",
    "specs_image_uses",
]


@dataclass(frozen=True, slots=True)
class WorkloadKind:
    """A kind that carries a pod spec, as the API server names it."""

    kind: str
    group: str  # "" for the core group
    version: str
    resource: str  # the plural, as webhook rules and AdmissionReviews name it
    pod_path: tuple[str, ...]  # where its pod spec lives (JSON pointer tokens)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


_TEMPLATE = ("spec", "template", "spec")

# Every pod-bearing kind, the one list: the admission review's resources, the webhook rules
# (core/webhooks.py, so deploy/ and the chart), what `audit` lists in a cluster.
WORKLOAD_KINDS: tuple[WorkloadKind, ...] = (
    WorkloadKind("Pod", "", "v1", "pods", ("spec",)),
    WorkloadKind("PodTemplate", "", "v1", "podtemplates", ("template", "spec")),
    WorkloadKind("Deployment", "apps", "v1", "deployments", _TEMPLATE),
    WorkloadKind("ReplicaSet", "apps", "v1", "replicasets", _TEMPLATE),
    WorkloadKind("StatefulSet", "apps", "v1", "statefulsets", _TEMPLATE),
    WorkloadKind("DaemonSet", "apps", "v1", "daemonsets", _TEMPLATE),
    WorkloadKind("ReplicationController", "", "v1", "replicationcontrollers", _TEMPLATE),
    WorkloadKind("Job", "batch", "v1", "jobs", _TEMPLATE),
    WorkloadKind("CronJob", "batch", "v1", "cronjobs", ("spec", "jobTemplate", "spec", "template", "spec")),
)

# kind -> where its pod spec lives. A kind not listed carries no pod.
POD_TEMPLATE_PATHS: Mapping[str, tuple[str, ...]] = {w.kind: w.pod_path for w in WORKLOAD_KINDS}

# Container lists, with the word used in messages (as kubectl and peers say it).
CONTAINER_FIELDS: tuple[tuple[str, str], ...] = (
    ("initContainers", "initContainer"),
    ("containers", "container"),
    ("ephemeralContainers", "ephemeralContainer"),
)
# The container lists' field names alone: every walk over a pod's containers uses these.
CONTAINER_LISTS: tuple[str, ...] = tuple(field for field, _word in CONTAINER_FIELDS)


# How many containers (the three lists together) and volumes one pod spec may have. Real pods
# have a handful (Toolforge's one or two; a Tekton build pod one per step, about a dozen);
# Kubernetes sets no limit, and every container costs tens of microseconds of decision (more
# with pod security), so 20,000 cost seconds: the limit keeps one object's decision within a
# few milliseconds (docs/deploy.md, "Big objects").
DEFAULT_MAX_CONTAINERS = 100
DEFAULT_MAX_VOLUMES = 200
# What a policy may set them to: at the upper bounds one decision still costs about 10 ms.
LIMIT_BOUNDS: Mapping[str, tuple[int, int]] = {"maxContainers": (1, 250), "maxVolumes": (1, 500)}


@dataclass(frozen=True, slots=True)
class ObjectLimits:
    """The policy's ``limits``: what one pod spec may hold before it is denied unjudged."""

    max_containers: int = DEFAULT_MAX_CONTAINERS
    max_volumes: int = DEFAULT_MAX_VOLUMES


def over_limits(limits: ObjectLimits, pointer: str, containers: int, volumes: int) -> str | None:
    """Why a pod spec with these counts is too large to judge (None: it is not). The one wording."""
    if containers > limits.max_containers:
        return (
            f"the pod spec at {pointer} has {containers:,} containers (containers, initContainers and "
            f"ephemeralContainers together); at most {limits.max_containers:,} are allowed (policy limits.maxContainers)"
        )
    if volumes > limits.max_volumes:
        return (
            f"the pod spec at {pointer} has {volumes:,} volumes; at most {limits.max_volumes:,} are allowed "
            "(policy limits.maxVolumes)"
        )
    return None


class ObjectShapeError(ValueError):
    """An object whose structure is not what the Kubernetes API allows."""

    def __init__(self, pointer: str, message: str) -> None:
        self.pointer = pointer
        super().__init__(f"{pointer or '/'}: {message}")


def object_metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """``obj``'s metadata, or an empty mapping when it has none or it is not an object."""
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def object_namespace(obj: Mapping[str, Any], default: str) -> str:
    """``obj``'s ``metadata.namespace`` when it is a string, else ``default`` (as kubectl does)."""
    namespace = object_metadata(obj).get("namespace")
    return namespace if isinstance(namespace, str) else default


def json_pointer(tokens: Sequence[str | int]) -> str:
    """The JSON pointer (RFC 6901) of a path: ``~`` and ``/`` in a name escaped, indexes as numbers."""
    return "".join("/" + (str(t) if isinstance(t, int) else t.replace("~", "~0").replace("/", "~1")) for t in tokens)


# kind -> (its pod spec's path, that path's pointer): dict-typed, read on every decision
_SPEC_PATHS: dict[str, tuple[tuple[str, ...], str]] = {
    kind: (path, json_pointer(path)) for kind, path in POD_TEMPLATE_PATHS.items()
}


# What pod_specs returns: (JSON pointer, pod spec) pairs, found once per object and passed on
# (dict-typed: compiled, a dict's ``get`` is a direct call, a Mapping's a method looked up by name).
PodSpecs = tuple[tuple[str, dict[str, Any]], ...]


def pod_specs(obj: Mapping[str, Any]) -> PodSpecs:
    """The pod spec(s) an object carries, with their JSON pointers.

    A pod-bearing object whose template or spec is missing has none (the API server would
    refuse it before us); a template of the wrong type is an error. A tuple, not a generator:
    a decision walks the object once and hands the result to each reader.
    """
    kind = obj.get("kind", "")
    found = _SPEC_PATHS.get(kind) if isinstance(kind, str) else None
    if found is None:
        return ()
    path, pointer = found
    node: Any = obj
    for depth, token in enumerate(path):
        if node is None:
            return ()
        if not isinstance(node, dict):
            raise ObjectShapeError(json_pointer(path[:depth]), f"expected an object, got {type(node).__name__}")
        parent: dict[str, Any] = node  # dict-typed: compiled, a direct get
        node = parent.get(token)
    if node is None:
        return ()
    if not isinstance(node, dict):
        raise ObjectShapeError(json_pointer(path), f"expected a pod spec object, got {type(node).__name__}")
    return ((pointer, node),)


def spec_counts(spec: dict[str, Any]) -> tuple[int, int]:
    """Containers (the three lists together) and volumes of a pod spec; a list of the wrong type counts 0
    (:func:`image_uses` reports it)."""
    containers = 0
    for field in CONTAINER_LISTS:
        items = spec.get(field)
        if isinstance(items, list):
            containers += len(items)
    volumes = spec.get("volumes")
    return containers, len(volumes) if isinstance(volumes, list) else 0


def _named_list(spec: dict[str, Any], field: str, base: str) -> list[Any]:
    items = spec.get(field)
    if items is None:
        return []
    if not isinstance(items, list):
        raise ObjectShapeError(f"{base}/{field}", f"expected a list, got {type(items).__name__}")
    return items


def _text(value: Any, pointer: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ObjectShapeError(pointer, f"expected a string, got {type(value).__name__}")
    return value


def image_uses(obj: Mapping[str, Any]) -> list[ImageUse]:
    """Every image an object names, in every container list and image volume."""
    return specs_image_uses(pod_specs(obj))


def specs_image_uses(specs: PodSpecs) -> list[ImageUse]:
    """Every image the pod specs ``pod_specs`` found name (a decision has them already)."""
    uses: list[ImageUse] = []
    for base, spec in specs:
        for field, word in CONTAINER_FIELDS:
            for index, container in enumerate(_named_list(spec, field, base)):
                if not isinstance(container, dict):
                    raise ObjectShapeError(f"{base}/{field}/{index}", "expected an object")
                name, image = container.get("name"), container.get("image")
                if name.__class__ is not str or image.__class__ is not str:  # the common case, checked fast
                    pointer = f"{base}/{field}/{index}"
                    name = _text(name, f"{pointer}/name")
                    image = _text(image, f"{pointer}/image")
                uses.append(ImageUse(word, name or f"#{index}", image, f"{base}/{field}/{index}/image"))
        for index, volume in enumerate(_named_list(spec, "volumes", base)):
            if not isinstance(volume, dict):
                raise ObjectShapeError(f"{base}/volumes/{index}", "expected an object")
            source = volume.get("image")
            if source is None:
                continue
            pointer = f"{base}/volumes/{index}"
            if not isinstance(source, dict):
                raise ObjectShapeError(f"{pointer}/image", "expected an object")
            name = _text(volume.get("name"), f"{pointer}/name") or f"#{index}"
            image = _text(source.get("reference"), f"{pointer}/image/reference")
            uses.append(ImageUse("imageVolume", name, image, f"{pointer}/image/reference"))
    return uses
