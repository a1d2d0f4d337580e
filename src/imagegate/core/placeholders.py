"""``{namespace}`` and ``{tool}`` in policy entries: what they stand for in one namespace.

One definition for every place that takes them (hostPath rules, ``trusted``, a grant's
``registries``), so a placeholder means the same thing everywhere:

* ``{namespace}`` is the namespace's name;
* ``{tool}`` is the tool's name, which only a tool namespace (``tool-<name>``) has.

A value is only ever filled in when the namespace's name is a valid DNS label: it then has
no ``/``, no glob character and no ``..``, so a filled-in entry can never reach across a
path segment or match more than the namespace's own name.
"""

from __future__ import annotations

from imagegate.core.names import is_dns_label

__all__ = ["PLACEHOLDERS", "TOOL_NAMESPACE_PREFIX", "fill_placeholders", "has_placeholder"]

TOOL_NAMESPACE_PREFIX = "tool-"
PLACEHOLDERS = ("{namespace}", "{tool}")


def has_placeholder(text: str) -> bool:
    return "{" in text or "}" in text


def fill_placeholders(text: str, namespace: str) -> str | None:
    """``text`` with its placeholders filled in for ``namespace``, or ``None`` when it has no value there.

    ``None`` when the namespace's name is not a DNS label, or ``text`` asks for ``{tool}``
    outside a tool namespace: the entry then covers nothing in that namespace.
    """
    if not has_placeholder(text):
        return text
    if not is_dns_label(namespace):
        return None
    filled = text.replace("{namespace}", namespace)
    if "{tool}" in filled:
        tool = namespace.removeprefix(TOOL_NAMESPACE_PREFIX)
        if tool == namespace or not tool:
            return None
        filled = filled.replace("{tool}", tool)
    return None if has_placeholder(filled) else filled
