"""Reading a pod spec as the Pod Security checks and the tool profile both do: tolerant of wrong types.

A field of the wrong type reads as empty (the API server refuses such a pod before a webhook
sees it; an offline manifest can hold one), every container list is walked as one, and a spec
that several checks read remembers its containers (:func:`pod_view`). core/podsecurity.py's
checks and core/podprofile.py's tool profile and mutation read pods through these.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imagegate.core.workloads import CONTAINER_LISTS

__all__ = ["added_capabilities", "as_list", "as_map", "containers", "is_windows", "pod_view", "volume_type"]


def as_map(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one (typed dict, not Mapping: compiled,
    a dict's ``get`` is a direct call, a Mapping's a method looked up by name each time)."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """``value`` if it is a JSON array, else an empty one."""
    return value if isinstance(value, list) else []


class _PodSpec(dict[str, Any]):
    """A pod spec that remembers its container list: every check walks it, once is enough."""

    __slots__ = ("containers",)

    def __init__(self, spec: Mapping[str, Any]) -> None:
        super().__init__(spec)
        self.containers = _containers(spec)


def pod_view(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    """``spec`` with its container list computed once (pass it to several checks)."""
    return spec if isinstance(spec, _PodSpec) else _PodSpec(spec)


# (list field, index, container) for every container of a pod spec.
Containers = tuple[tuple[str, int, dict[str, Any]], ...]


def _containers(spec: Mapping[str, Any]) -> Containers:
    # a tuple built in one loop, not a generator: compiled, each step of a generator is a call
    found: list[tuple[str, int, dict[str, Any]]] = []
    for field in CONTAINER_LISTS:
        for index, container in enumerate(as_list(spec.get(field))):
            if isinstance(container, dict):
                found.append((field, index, container))
    return tuple(found)


def containers(spec: Mapping[str, Any]) -> Containers:
    """Every container of every list, as (list field, index, container)."""
    if isinstance(spec, _PodSpec):
        return spec.containers
    return _containers(spec)


def is_windows(spec: Mapping[str, Any]) -> bool:
    os = spec.get("os")  # usually absent: no empty dict made to read it
    return isinstance(os, dict) and os.get("name") == "windows"


def added_capabilities(capabilities: Mapping[str, Any]) -> list[str]:
    """``capabilities.add`` as names; a value that is not a list (which the API server would
    refuse, but an offline manifest can hold) counts as adding itself, never as adding nothing."""
    added = capabilities.get("add")
    if added is None:
        return []
    return [str(cap) for cap in added] if isinstance(added, list) else [repr(added)]


def volume_type(volume: Mapping[str, Any]) -> str | None:
    """The source a volume uses (its one key besides ``name``), or ``None`` for none."""
    kinds = [key for key, value in volume.items() if key != "name" and value is not None]
    return kinds[0] if kinds else None
