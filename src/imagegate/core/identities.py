"""Tool identities from the platform's accounts: names mapped to namespaces, the document built.

Pure: the shell reads the accounts (LDAP, NSS, Namespace labels); here account names become
namespaces (``tools.foo`` -> ``tool-foo`` with the patterns ``tools.{tool}`` and
``tool-{tool}``), bad entries are set aside with the reason, and the ToolIdentities document
is written so that :func:`imagegate.core.policy.load_identities` reads it back unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from imagegate.core.names import namespace_name_error
from imagegate.core.placeholders import template_problem
from imagegate.core.podprofile import MAX_ID, Identity, valid_tool_id
from imagegate.core.policy import SUPPORTED_API_VERSIONS

__all__ = [
    "Account",
    "IdentityTable",
    "NamePattern",
    "NamePatternError",
    "build_identities",
    "identities_yaml",
    "missing_identities",
    "refuse_replacement",
]

_TOOL_NAME = r"(?P<tool>[a-z0-9]([-a-z0-9]*[a-z0-9])?)"


class NamePatternError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class NamePattern:
    """A name with one ``{tool}`` in it: ``tools.{tool}`` (an account), ``tool-{tool}`` (a namespace)."""

    text: str
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        problem = template_problem(self.text)  # the same placeholders as the policy's, globs refused beside them
        if problem is not None:
            raise NamePatternError(problem)
        if self.text.count("{tool}") != 1 or "{namespace}" in self.text:
            raise NamePatternError(f"{self.text!r}: write the name with exactly one {{tool}}, e.g. tools.{{tool}}")
        before, after = self.text.split("{tool}")
        object.__setattr__(self, "_regex", re.compile(re.escape(before) + _TOOL_NAME + re.escape(after)))

    def tool(self, name: str) -> str | None:
        """The tool's name in ``name``, or ``None`` when ``name`` is not of this pattern."""
        found = self._regex.fullmatch(name)
        return found.group("tool") if found else None

    def resembles(self, name: str) -> bool:
        """``name`` has the pattern's fixed parts around something: meant as a tool's, valid or not."""
        before, after = self.text.split("{tool}")
        return len(name) > len(before) + len(after) and name.startswith(before) and name.endswith(after)

    def name(self, tool: str) -> str:
        return self.text.replace("{tool}", tool)


@dataclass(frozen=True, slots=True)
class Account:
    """One account as the source has it."""

    name: str
    uid: int | None
    gid: int | None = None
    # where the source has it (an LDAP entry's DN), to name each of two accounts for one tool
    origin: str = ""

    def label(self) -> str:
        return f"{self.name} ({self.origin})" if self.origin and self.origin != self.name else self.name


@dataclass
class IdentityTable:
    identities: dict[str, Identity] = field(default_factory=dict)
    # (account name, why it was left out)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def build_identities(accounts: Iterable[Account], account: NamePattern, namespace: NamePattern) -> IdentityTable:
    """Namespace -> identity for every account whose name is a tool's; the others with the reason."""
    table = IdentityTable()
    first: dict[str, Account] = {}  # the account each identity came from
    conflicted: set[str] = set()  # namespaces with two accounts that disagree: neither is kept
    for entry in accounts:
        tool = account.tool(entry.name)
        if tool is None:
            if account.resembles(entry.name):  # meant as a tool's account, but no tool can be named so
                table.skipped.append((entry.label(), f"{entry.name!r} is not a tool account name ({account.text})"))
            continue  # otherwise not a tool account (a person, a service): not ours to map
        target = namespace.name(tool)
        gid = entry.gid if entry.gid is not None else entry.uid
        if (problem := namespace_name_error(target)) is not None:
            table.skipped.append((entry.label(), problem))
        elif entry.uid is None or gid is None or not (valid_tool_id(entry.uid) and valid_tool_id(gid)):
            reason = f"uid {entry.uid} / gid {gid}: a tool runs as a non-root uid and gid (1 to {MAX_ID})"
            table.skipped.append((entry.label(), reason))
        elif target in conflicted:
            table.skipped.append((entry.label(), f"another account for {target}; neither is used"))
        elif target in table.identities and table.identities[target] != Identity(entry.uid, gid):
            # Which one is the tool's? Guessing would run one tool's pods as another's uid.
            known, earlier = table.identities.pop(target), first[target]
            conflicted.add(target)
            table.skipped.append(
                (
                    earlier.label(),
                    f"uid {known.uid} / gid {known.gid}, but {entry.label()} is another account for {target}; neither is used",
                )
            )
            table.skipped.append(
                (
                    entry.label(),
                    f"uid {entry.uid} / gid {gid}, but {earlier.label()} is another account for {target}; neither is used",
                )
            )
        else:
            table.identities[target] = Identity(entry.uid, gid)
            first.setdefault(target, entry)
    return table


def identities_yaml(identities: Mapping[str, Identity], origin: str) -> str:
    """The ToolIdentities document, one line per tool, sorted (small diffs between runs)."""
    lines = [
        f"# Tool identities from {origin}; made by `imagegate identities`, do not edit by hand",
        f"apiVersion: {SUPPORTED_API_VERSIONS[0]}",
        "kind: ToolIdentities",
    ]
    if not identities:
        lines.append("identities: {}")
    else:
        lines.append("identities:")
        lines.extend(f"  {ns}: {{uid: {i.uid}, gid: {i.gid}}}" for ns, i in sorted(identities.items()))
    return "\n".join(lines) + "\n"


def missing_identities(
    namespaces: Iterable[str], identities: Mapping[str, Identity], namespace: NamePattern
) -> list[str]:
    """Tool namespaces (names of the ``namespace`` pattern) that have no identity: their pods are denied."""
    return sorted(ns for ns in set(namespaces) if namespace.tool(ns) is not None and ns not in identities)


def refuse_replacement(
    old: Mapping[str, Identity] | None, new: Mapping[str, Identity], max_drop_share: float
) -> str | None:
    """Why ``new`` must not replace ``old`` (``None`` when it may): the guard against a source gone wrong.

    A filter that matches nothing, a label key misspelt or an NSS that resolves no tool all
    yield a table with few or no identities; written out, it denies every tool pod. So an
    empty table is refused, and so is one that drops more than ``max_drop_share`` (0..1) of
    the identities already in the target (``old``; ``None`` when the target has none yet).
    """
    if not new:
        before = f"; the target has {len(old)}" if old else ""
        return f"no identities were found{before}: written out, every tool pod would be denied"
    if not old:
        return None
    dropped = sorted(set(old) - set(new))
    if len(dropped) > max_drop_share * len(old):
        shown = ", ".join(dropped[:5]) + (f" and {len(dropped) - 5} more" if len(dropped) > 5 else "")
        return (
            f"{len(dropped)} of the target's {len(old)} identities would be dropped "
            f"({len(dropped) / len(old):.0%}, more than the {max_drop_share:.0%} allowed): {shown}"
        )
    return None
