"""The admission warnings a tenant reads: each one whole within the API server's limits.

The API server turns each warning of an AdmissionReview into a ``Warning`` header
(k8s.io/apiserver, endpoints/filters/warning.go). Its rule, counted in runes (code points):
once the warnings of one response pass 4,096 runes in total, every warning of that response,
imagegate's and everyone else's (Pod Security admission, deprecations, other webhooks), is cut
to 256 runes, and the ones after are dropped; a warning that is not printable text is dropped
whole. kubectl prints what is left. So each warning here is at most 256 runes with the
essential first (what is wrong, where, what to do), shortened by eliding the middle of long
references rather than losing its end; control characters become spaces; and imagegate's
warnings together keep to half the total, leaving the rest to the others, the last one saying
how many more there were. Every tenant-facing warning is built by :func:`tenant_warnings`.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["BUDGET_RUNES", "ITEM_RUNES", "fit", "tenant_warnings"]

ITEM_RUNES = 256  # truncateItemRunes
TOTAL_RUNES = 4096  # truncateAtTotalRunes
BUDGET_RUNES = TOTAL_RUNES // 2  # imagegate's share of one response
PREFIX = "imagegate: "
_ELLIPSIS = "…"
_LONG_WORD = 40  # a reference, digest or path: its middle goes first


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else " " for ch in text)


def _elide(word: str, keep: int) -> str:
    """``word`` in ``keep`` runes: its start and its end (a reference's tag or digest prefix)."""
    if len(word) <= keep:
        return word
    tail = max(keep // 3, 4)
    return word[: keep - tail - 1] + _ELLIPSIS + word[-tail:]


def fit(text: str, limit: int = ITEM_RUNES) -> str:
    """``text`` in at most ``limit`` runes, printable: long words elided in the middle first
    (longest first, down to 32 runes each), then, if still too long, cut at a word's end."""
    text = " ".join(_printable(text).split())
    if len(text) <= limit:
        return text
    words = text.split(" ")
    while len(" ".join(words)) > limit:
        longest = max(range(len(words)), key=lambda i: len(words[i]))
        if len(words[longest]) <= _LONG_WORD - 8:
            break
        excess = len(" ".join(words)) - limit
        words[longest] = _elide(words[longest], max(len(words[longest]) - excess, _LONG_WORD - 8))
    text = " ".join(words)
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut) + _ELLIPSIS


def tenant_warnings(texts: Iterable[str], budget: int = BUDGET_RUNES) -> list[str]:
    """Each of ``texts`` (most important first) as a warning, "imagegate: " before it, fitted;
    duplicates once; within ``budget`` runes, the last saying how many more did not fit."""
    fitted = list(dict.fromkeys(fit(_prefixed(text)) for text in texts if text.strip()))
    out: list[str] = []
    used = 0
    for index, warning in enumerate(fitted):
        rest = len(fitted) - index - 1
        reserve = 0 if rest == 0 else len(_more(rest))
        if used + len(warning) + reserve > budget:
            out.append(_more(len(fitted) - index))
            break
        out.append(warning)
        used += len(warning)
    return out


def _prefixed(text: str) -> str:
    return text if text.startswith(PREFIX) else PREFIX + text


def _more(count: int) -> str:
    noun = "warning" if count == 1 else "warnings"
    return f"{PREFIX}{count} more {noun} not shown (imagegate check on the manifest lists them all)"
