"""The records the core makes for every admission: plain data, no logic beyond wording.

msgspec Structs, not dataclasses: one is made for every image of every admission, and
Structs are 8x cheaper to build. They live apart from the modules that make them because
those modules are compiled with mypyc for production images (``setup.py``), and mypyc drops
the keywords of a class statement (``frozen=True`` would silently be lost).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import msgspec

__all__ = ["BaseImageVerdict", "CheckResult", "Decision", "Finding", "ImageUse", "ImageVerdict", "Mode"]


class Mode(StrEnum):
    """What a violation does: deny it, allow it with a warning, or only record it."""

    ENFORCE = "enforce"
    WARN = "warn"
    AUDIT = "audit"


class CheckResult(msgspec.Struct, frozen=True):
    """A failed check: PSA's forbidden reason and detail."""

    check: str
    reason: str
    detail: str

    @property
    def message(self) -> str:
        return f"{self.reason} ({self.detail})" if self.detail else self.reason


class ImageUse(msgspec.Struct, frozen=True):
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


class BaseImageVerdict(msgspec.Struct, frozen=True):
    """What the registry shell found out about an image's base (see the registry module)."""

    ok: bool
    detail: str
    digest: str | None = None  # the image (index) digest judged: pinning pins exactly this one


class Finding(msgspec.Struct, frozen=True):
    """One broken rule for one image use."""

    use: ImageUse
    rule: str
    reason: str
    mode: Mode

    @property
    def message(self) -> str:
        """The whole sentence: which container, which image, what is wrong."""
        if self.use.kind in ("object", "pod"):
            return self.reason
        return f"{self.use.label} image {self.use.image!r} {self.reason}"


class ImageVerdict(msgspec.Struct, frozen=True):
    """How one image use was judged: ``allowed_by`` or a ``finding`` (or skipped as unchanged)."""

    use: ImageUse
    reference: str | None
    allowed_by: str | None = None
    finding: Finding | None = None


class Decision(msgspec.Struct, frozen=True):
    """The answer for one object."""

    kind: str
    name: str
    namespace: str
    governed: bool
    verdicts: tuple[ImageVerdict, ...] = ()
    findings: tuple[Finding, ...] = ()
    patches: tuple[Mapping[str, Any], ...] = ()
    base_checks_needed: tuple[str, ...] = ()
    pins_needed: tuple[str, ...] = ()
    notices: tuple[str, ...] = ()  # said to the user whatever the decision (a grant about to end)

    def _in_mode(self, mode: Mode) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.mode is mode) if self.findings else ()

    @property
    def violations(self) -> tuple[Finding, ...]:
        return self._in_mode(Mode.ENFORCE)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return self._in_mode(Mode.WARN)

    @property
    def audits(self) -> tuple[Finding, ...]:
        return self._in_mode(Mode.AUDIT)

    @property
    def allowed(self) -> bool:
        return not self.findings or not any(f.mode is Mode.ENFORCE for f in self.findings)

    @property
    def subject(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name or '(unnamed)'}"

    def message(self) -> str:
        """One message listing every violation, as the API server shows it to the user."""
        if self.allowed:
            return ""
        count = len(self.violations)
        noun = "violation" if count == 1 else "violations"
        listed = "; ".join(f.message for f in self.violations)
        return f"imagegate denied {self.subject}: {count} {noun}: {listed}"
