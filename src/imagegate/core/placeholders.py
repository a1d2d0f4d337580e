"""``{namespace}`` and ``{tool}`` in policy entries: what they stand for in one namespace.

One definition for every place that takes them (hostPath rules, ``trusted``, a grant's
``registries`` and ``signedBy``, ``imagegate identities``' name patterns), so a placeholder
means the same thing everywhere:

* ``{namespace}`` is the namespace's name;
* ``{tool}`` is the tool's name, which only a tool namespace (``tool-<name>``) has.

A value is only ever filled in when the namespace's name is a valid DNS label: it then has
no ``/``, no glob character and no ``..``. And the path segment that holds a placeholder may
hold no glob character either (:func:`template_problem`, checked when a policy loads and again
on every fill): ``{namespace}*`` in ``tool-a`` would match ``tool-ab`` and ``tool-a-b``, other
tools' names. So a filled-in entry can never reach across a path segment or match more than
the namespace's own name.
"""

from __future__ import annotations

from imagegate.core.names import is_dns_label

__all__ = [
    "GLOB_CHARACTERS",
    "PLACEHOLDERS",
    "TOOL_NAMESPACE_PREFIX",
    "fill_placeholders",
    "has_placeholder",
    "template_problem",
]

TOOL_NAMESPACE_PREFIX = "tool-"
PLACEHOLDERS = ("{namespace}", "{tool}")
# What makes a segment a glob in any entry that globs (fnmatch); refused beside a placeholder
# everywhere, globbing or not, so a placeholder means the same thing in every entry.
GLOB_CHARACTERS = frozenset("*?[]")


def has_placeholder(text: str) -> bool:
    return "{" in text or "}" in text


def template_problem(text: str) -> str | None:
    """Why ``text`` is no valid entry with placeholders, or ``None`` when it is (or has none).

    Only ``{namespace}`` and ``{tool}``; and no glob character in a ``/``-separated segment
    that holds one, since the filled-in segment must match the namespace's own name only.
    """
    if not has_placeholder(text):
        return None
    bare = text
    for placeholder in PLACEHOLDERS:
        bare = bare.replace(placeholder, "")
    if has_placeholder(bare):
        return f"{text!r}: the placeholders are {{namespace}} and {{tool}}"
    for segment in text.split("/"):
        globs = sorted(GLOB_CHARACTERS.intersection(segment))
        if globs and has_placeholder(segment):
            return (
                f"{text!r}: the segment {segment!r} holds a placeholder beside the glob character(s) "
                f"{' '.join(globs)}: filled in, it would also match other namespaces' names "
                "(tool-a's 'tool-a*' matches tool-ab and tool-a-b); write the segment without globs"
            )
    return None


def fill_placeholders(text: str, namespace: str) -> str | None:
    """``text`` with its placeholders filled in for ``namespace``, or ``None`` when it has no value there.

    ``None`` when the namespace's name is not a DNS label, or ``text`` asks for ``{tool}``
    outside a tool namespace: the entry then covers nothing in that namespace. ``None`` too for
    a ``text`` that :func:`template_problem` refuses (the loaders refuse it first; this keeps a
    caller that forgot from widening anything).
    """
    if not has_placeholder(text):
        return text
    if not is_dns_label(namespace) or template_problem(text) is not None:
        return None
    filled = text.replace("{namespace}", namespace)
    if "{tool}" in filled:
        tool = namespace.removeprefix(TOOL_NAMESPACE_PREFIX)
        if tool == namespace or not tool:
            return None
        filled = filled.replace("{tool}", tool)
    return None if has_placeholder(filled) else filled
