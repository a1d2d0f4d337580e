"""Where images hide in Kubernetes objects.

Every pod-bearing kind is reduced to its pod spec(s), and every pod spec to its image
uses: containers, initContainers, ephemeralContainers and ``image`` volume sources.
Each use carries a JSON pointer so a mutation can patch exactly that field.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "POD_TEMPLATE_PATHS",
    "ImageUse",
    "ObjectShapeError",
    "image_uses",
    "pod_specs",
]

# kind -> where its pod spec lives (JSON pointer tokens). A kind not listed carries no pod.
POD_TEMPLATE_PATHS: Mapping[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "PodTemplate": ("template", "spec"),
    "Deployment": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}

# Container lists, with the word used in messages (as kubectl and peers say it).
CONTAINER_FIELDS: tuple[tuple[str, str], ...] = (
    ("initContainers", "initContainer"),
    ("containers", "container"),
    ("ephemeralContainers", "ephemeralContainer"),
)


class ObjectShapeError(ValueError):
    """An object whose structure is not what the Kubernetes API allows."""

    def __init__(self, pointer: str, message: str) -> None:
        self.pointer = pointer
        super().__init__(f"{pointer or '/'}: {message}")


@dataclass(frozen=True, slots=True)
class ImageUse:
    """One image named by an object. ``pointer`` is the JSON pointer of the image string."""

    kind: str  # container | initContainer | ephemeralContainer | imageVolume
    name: str
    image: str
    pointer: str

    @property
    def label(self) -> str:
        """``initContainer "setup"``: how a message names the place."""
        if self.kind == "pod":
            return "pod security"
        word = "volume" if self.kind == "imageVolume" else self.kind
        return f'{word} "{self.name}"'


def _pointer(tokens: tuple[str, ...] | list[str]) -> str:
    return "".join("/" + t.replace("~", "~0").replace("/", "~1") for t in tokens)


def pod_specs(obj: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """The pod spec(s) an object carries, with their JSON pointers.

    A pod-bearing object whose template or spec is missing yields nothing (the API
    server would refuse it before us); a template of the wrong type is an error.
    """
    path = POD_TEMPLATE_PATHS.get(str(obj.get("kind", "")))
    if path is None:
        return
    node: Any = obj
    for depth, token in enumerate(path):
        if node is None:
            return
        if not isinstance(node, dict):
            raise ObjectShapeError(_pointer(path[:depth]), f"expected an object, got {type(node).__name__}")
        node = node.get(token)
    if node is None:
        return
    if not isinstance(node, dict):
        raise ObjectShapeError(_pointer(path), f"expected a pod spec object, got {type(node).__name__}")
    yield _pointer(path), node


def _named_list(spec: Mapping[str, Any], field: str, base: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    items = spec.get(field)
    if items is None:
        return
    if not isinstance(items, list):
        raise ObjectShapeError(f"{base}/{field}", f"expected a list, got {type(items).__name__}")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ObjectShapeError(f"{base}/{field}/{index}", "expected an object")
        yield index, item


def _text(value: Any, pointer: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ObjectShapeError(pointer, f"expected a string, got {type(value).__name__}")
    return value


def image_uses(obj: Mapping[str, Any]) -> list[ImageUse]:
    """Every image an object names, in every container list and image volume."""
    uses: list[ImageUse] = []
    for base, spec in pod_specs(obj):
        for field, word in CONTAINER_FIELDS:
            for index, container in _named_list(spec, field, base):
                pointer = f"{base}/{field}/{index}"
                name = _text(container.get("name"), f"{pointer}/name") or f"#{index}"
                image = _text(container.get("image"), f"{pointer}/image")
                uses.append(ImageUse(word, name, image, f"{pointer}/image"))
        for index, volume in _named_list(spec, "volumes", base):
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
