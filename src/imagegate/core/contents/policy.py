"""The ``content:`` policy section: rules on what an image holds, and their judgement. Pure.

A rule covers images by pattern (``images``, as ``signatures`` rules do) and, with ``grants:
true``, every image a grant admits (BYOC: the platform's trusted images are built integrated).
Each rule has a ``mode`` and an ``onError`` (what a read that fails or does not finish gets)
and any of four checks, all of which must pass:

* ``requirePackages``: each package installed (dpkg unless ``ecosystem`` says otherwise), at an
  optional Debian version constraint (``>= 2.8``: dpkg's relations, compared by python-debian);
  a dpkg package's regular files in place too (:func:`imagegate.core.contents.dpkg.missing_files`:
  a later layer that deleted them without telling dpkg fails the rule);
* ``requireFiles``: each file present, and for each of its ``lines`` (regular expressions) a
  line that matches: ``/etc/nsswitch.conf`` and ``^passwd:.*\\bsss\\b``;
* ``forbidPackages``: none of these installed;
* ``licenses``: every package's licence allowed: by class (``osi``, ``fsf-libre``: the SPDX
  licence list's flags) or SPDX id, none in ``deny``; ``unknown`` and Debian's ``nonFree``
  (the non-free, non-free-firmware and contrib areas) say what those get.

:func:`judge` is (rule, inventory, files) -> :class:`ContentVerdict`, each failure said with
what was found: "libnss-sss is not installed (dpkg lists 87 packages)", "/etc/nsswitch.conf:
passwd: files (no line matches ^passwd:.*\\bsss\\b)", "3 packages under licences that are not
OSI-approved or FSF-libre: unrar (non-free), ...".

A grant's ``proof`` (:class:`Proof`) says how an image it admits shows it is integrated: by its
layers (built on a trusted base image), by its content (the content rules for granted images),
either, or both; :func:`proof_holds` is that choice over the two answers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import msgspec

from imagegate.core.contents.files import CONTAINER_PATH_FORM, FileSelection, ImageFiles, container_path_error
from imagegate.core.contents.packages import Area, Ecosystem, Inventory, LicenceClass, Package, Tri
from imagegate.core.patterns import PatternError, PatternSet, RepositoryPattern, parse_pattern
from imagegate.core.records import DenyOrAllow, Mode
from imagegate.core.reference import Reference
from imagegate.core.yamldoc import LocatedDocument

__all__ = [
    "BEING_READ",
    "ContentAnswer",
    "ContentConfig",
    "ContentDoc",
    "ContentOutcome",
    "ContentRule",
    "ContentVerdict",
    "DebianMain",
    "FileRequirement",
    "LicenceRule",
    "PackageRequirement",
    "Proof",
    "judge",
    "load_content",
    "outcomes",
    "proof_holds",
]


class Proof(StrEnum):
    """How an image a grant admits proves it is integrated with the platform."""

    LAYERS = "layers"  # built on a trusted base image (baseImages, as requireBaseImage)
    CONTENT = "content"  # the content rules for granted images pass
    EITHER = "either"
    BOTH = "both"


def proof_holds(proof: Proof, layers: bool, content: bool) -> bool:
    """Whether the answers of the layer check and the content rules satisfy ``proof``."""
    return {
        Proof.LAYERS: layers,
        Proof.CONTENT: content,
        Proof.EITHER: layers or content,
        Proof.BOTH: layers and content,
    }[proof]


# --- the section as written ---------------------------------------------------------------


class _Doc(msgspec.Struct, rename="camel", forbid_unknown_fields=True, omit_defaults=True):
    pass


class PackageDoc(_Doc):
    name: str
    version: str | None = None  # a dpkg relation and a version: ">= 2.8.2", "<< 3"
    ecosystem: Ecosystem = Ecosystem.DEB


class FileDoc(_Doc):
    path: str
    lines: list[str] = []


class DebianMain(StrEnum):
    """What a Debian package from the main archive area gets in a ``licenses`` rule."""

    JUDGE = "judge"  # its copyright file's licences, as any package's
    ALLOW = "allow"  # allowed: Debian admits to main only what meets its Free Software Guidelines


class LicencesDoc(_Doc):
    allow: list[str] = msgspec.field(default_factory=lambda: [LicenceClass.OSI.value, LicenceClass.FSF_LIBRE.value])
    deny: list[str] = []
    unknown: DenyOrAllow = DenyOrAllow.DENY
    non_free: DenyOrAllow = DenyOrAllow.DENY  # Debian's non-free, non-free-firmware and contrib areas
    debian_main: DebianMain = DebianMain.JUDGE
    ecosystems: list[Ecosystem] | None = None  # default: every one


class ContentRuleDoc(_Doc):
    name: str | None = None
    images: list[str] = []
    grants: bool = False
    mode: Mode | None = None
    on_error: DenyOrAllow | None = None
    require_packages: list[PackageDoc] = []
    require_files: list[FileDoc] = []
    forbid_packages: list[PackageDoc] = []
    licenses: LicencesDoc | None = None


class ContentDoc(_Doc):
    mode: Mode | None = None  # default: the policy's
    on_error: DenyOrAllow = DenyOrAllow.DENY
    rules: list[ContentRuleDoc] = []


# --- the compiled section ------------------------------------------------------------------

_RELATIONS = ("<<", "<=", "=", ">=", ">>")
_RELATION_RE = re.compile(r"\s*(<<|<=|=|>=|>>)\s*(\S+)\s*")
_COMPARE = {
    "<<": lambda c: c < 0,
    "<=": lambda c: c <= 0,
    "=": lambda c: c == 0,
    ">=": lambda c: c >= 0,
    ">>": lambda c: c > 0,
}
# dpkg's words for each ecosystem's database, in denials: "dpkg lists 87 packages"
DATABASES: Mapping[Ecosystem, str] = {
    Ecosystem.DEB: "dpkg",
    Ecosystem.APK: "apk",
    Ecosystem.PYPI: "Python's metadata",
    Ecosystem.NPM: "node_modules",
}


@dataclass(frozen=True, slots=True)
class PackageRequirement:
    name: str
    ecosystem: Ecosystem = Ecosystem.DEB
    relation: str | None = None  # one of _RELATIONS
    version: str | None = None

    def __str__(self) -> str:
        return self.name if self.relation is None else f"{self.name} ({self.relation} {self.version})"

    def satisfied_by(self, package: Package) -> bool:
        if self.relation is None or self.version is None:
            return True
        from debian.debian_support import version_compare  # noqa: PLC0415 (only when judging: the policy loads fast)

        try:
            comparison = version_compare(package.version, self.version)
        except ValueError:
            return False  # a version dpkg would not read satisfies no constraint
        return bool(_COMPARE[self.relation](comparison))


@dataclass(frozen=True, slots=True)
class FileRequirement:
    path: str
    lines: tuple[re.Pattern[str], ...] = ()


@dataclass(frozen=True, slots=True)
class LicenceRule:
    classes: frozenset[LicenceClass] = frozenset({LicenceClass.OSI, LicenceClass.FSF_LIBRE})
    ids: frozenset[str] = frozenset()  # SPDX ids (or LicenseRef- names) allowed whatever their class
    deny: frozenset[str] = frozenset()
    unknown: DenyOrAllow = DenyOrAllow.DENY
    non_free: DenyOrAllow = DenyOrAllow.DENY
    ecosystems: frozenset[Ecosystem] = frozenset(Ecosystem)
    debian_main: DebianMain = DebianMain.JUDGE

    def allowed(self) -> str:
        """What the rule allows, in words: "OSI-approved or FSF-libre"."""
        words = {LicenceClass.OSI: "OSI-approved", LicenceClass.FSF_LIBRE: "FSF-libre"}
        named = [words[c] for c in LicenceClass if c in self.classes] + sorted(self.ids)
        return " or ".join(named) if named else "allowed by the rule"


@dataclass(frozen=True, slots=True)
class ContentRule:
    name: str  # as written, or "content.rules[0]": for messages
    images: PatternSet
    grants: bool = False
    mode: Mode = Mode.ENFORCE
    on_error: DenyOrAllow = DenyOrAllow.DENY
    require_packages: tuple[PackageRequirement, ...] = ()
    require_files: tuple[FileRequirement, ...] = ()
    forbid_packages: tuple[PackageRequirement, ...] = ()
    licences: LicenceRule | None = None

    def summary(self) -> str:
        """What the rule asks, in a line (``policy validate``)."""
        covers = [*(["images a grant admits"] if self.grants else []), *(str(p) for p in self.images)]
        checks = [
            *(f"requires {r}" for r in self.require_packages),
            *(
                f"{f.path}" + (f" ({len(f.lines)} line{'s' if len(f.lines) != 1 else ''})" if f.lines else "")
                for f in self.require_files
            ),
            *(f"forbids {r}" for r in self.forbid_packages),
            *([f"licences {self.licences.allowed()}"] if self.licences is not None else []),
        ]
        return f"{', '.join(covers)}: {'; '.join(checks)} ({self.mode.value}, onError {self.on_error.value})"

    @property
    def files(self) -> FileSelection:
        """The files the reader must keep to judge this rule."""
        from imagegate.core.contents.dpkg import files_for  # noqa: PLC0415 (the parsers: only when reading)
        from imagegate.core.contents.inventory import INVENTORY_FILES  # noqa: PLC0415 (the parsers: only when reading)

        named = FileSelection(frozenset(f.path for f in self.require_files))
        for requirement in self.require_packages:
            if requirement.ecosystem is Ecosystem.DEB:  # its files proved in place: its md5sums and list
                named |= files_for(requirement.name)
        if self.require_packages or self.forbid_packages or self.licences is not None:
            return named | INVENTORY_FILES
        return named


@dataclass(frozen=True, slots=True)
class ContentConfig:
    rules: tuple[ContentRule, ...] = ()

    def rules_for(self, ref: Reference, granted: bool = False) -> tuple[ContentRule, ...]:
        """The rules an image needs: those whose images match it, and (``granted``: a grant admitted
        it) those for every granted image."""
        return tuple(
            rule for rule in self.rules if (granted and rule.grants) or rule.images.first_match(ref) is not None
        )

    @property
    def grant_rules(self) -> tuple[ContentRule, ...]:
        return tuple(rule for rule in self.rules if rule.grants)

    def files(self, rules: Sequence[ContentRule]) -> FileSelection:
        selection = FileSelection()
        for rule in rules:
            selection |= rule.files
        return selection


class ContentVerdict(msgspec.Struct, frozen=True):
    """Whether an image's content satisfies one ``content`` rule, and what was found when not."""

    rule: str
    ok: bool
    failures: tuple[str, ...] = ()
    mode: Mode = Mode.ENFORCE
    digest: str | None = None  # the image digest whose files were judged

    @property
    def detail(self) -> str:
        return f"{self.rule}: " + ("; ".join(self.failures) if self.failures else "satisfied")


class ContentAnswer(msgspec.Struct, frozen=True):
    """What the registry shell found of an image's content for the rules asked: a verdict per rule
    (in the rules' order), or why there is none yet (``pending``: still being read, in the
    background) or at all (``problem``). Each rule's ``onError`` says what the last two get."""

    verdicts: tuple[ContentVerdict, ...] = ()
    digest: str | None = None  # the image (index) digest whose files were judged: the one to pin
    pending: bool = False
    problem: str = ""
    # the problem's class, named in the denial: a content error's (ContentErrorKind: "unsafe-path",
    # "bomb"...) or else the registry error's ("unreachable", "not-found"...), as logs and metrics say it
    kind: str = ""


BEING_READ = "its content is being read, retry shortly"


@dataclass(frozen=True, slots=True)
class ContentOutcome:
    """One rule's outcome for one image: passed, or failed with what was found; ``unverified``
    when it passed by its ``onError: allow`` (the tenant is told so, never silently)."""

    rule: ContentRule
    ok: bool
    detail: str
    unverified: bool = False
    judged: bool = False  # from the rule's verdict on the files (not from its onError)


def outcomes(rules: Sequence[ContentRule], answer: ContentAnswer | None) -> list[ContentOutcome]:
    """Each rule's outcome from the shell's ``answer`` (None: no registry lookup in this evaluation)."""
    found: list[ContentOutcome] = []
    for index, rule in enumerate(rules):
        if answer is not None and not answer.pending and not answer.problem and index < len(answer.verdicts):
            verdict = answer.verdicts[index]
            found.append(ContentOutcome(rule, verdict.ok, verdict.detail, judged=True))
            continue
        if answer is None:
            why = "its content was not read (no registry lookup in this evaluation)"
        else:
            kind = f" ({answer.kind})" if answer.kind else ""
            why = BEING_READ if answer.pending else f"its content could not be read{kind}: {answer.problem}"
        allowed = rule.on_error is DenyOrAllow.ALLOW
        found.append(ContentOutcome(rule, allowed, f"{rule.name}: {why}", unverified=allowed))
    return found


# --- judging -------------------------------------------------------------------------------------


def _listed(inventory: Inventory, ecosystem: Ecosystem) -> str:
    """What the ecosystem's database says, for a denial: "dpkg lists 87 packages"."""
    count = len(inventory.of(ecosystem))
    database = DATABASES[ecosystem]
    if count:
        return f"{database} lists {count} package{'s' if count != 1 else ''}"
    unread = [str(n) for n in inventory.notes if n.problem.startswith("unreadable")]
    return f"{database} lists no packages" + (f"; {unread[0]}" if unread else "")


def _required(requirement: PackageRequirement, inventory: Inventory, files: ImageFiles) -> str | None:
    found = inventory.named(requirement.name, requirement.ecosystem)
    if not found:
        return f"{requirement.name} is not installed ({_listed(inventory, requirement.ecosystem)})"
    satisfying = [p for p in found if requirement.satisfied_by(p)]
    if not satisfying:
        versions = ", ".join(dict.fromkeys(p.version for p in found))
        return (
            f"{requirement.name} {versions} is installed; the rule needs {requirement.relation} {requirement.version}"
        )
    if requirement.ecosystem is not Ecosystem.DEB:
        return None
    from imagegate.core.contents.dpkg import missing_files  # noqa: PLC0415 (the parsers: only when judging)

    missing: list[str] = []
    for package in satisfying:  # one with its files in place is enough (Multi-Arch: one per architecture)
        gone = missing_files(package, files)
        if not gone:  # every file there, or nothing to check them by (distroless status.d)
            return None
        missing = missing or gone
    shown = ", ".join(missing[:5]) + (f", and {len(missing) - 5} more" if len(missing) > 5 else "")
    count = f"{len(missing)} of its files {'is' if len(missing) == 1 else 'are'}"
    return f"{requirement.name} is installed but {count} missing: {shown}"


def _forbidden(requirement: PackageRequirement, inventory: Inventory) -> str | None:
    found = [p for p in inventory.named(requirement.name, requirement.ecosystem) if requirement.satisfied_by(p)]
    if not found:
        return None
    versions = ", ".join(dict.fromkeys(p.version for p in found))
    return f"{requirement.name} is installed ({versions}), and the rule forbids {requirement}"


def _literal_prefix(pattern: re.Pattern[str]) -> str:
    """The literal a ``^word:`` expression starts with: which line of the file to show when none matches."""
    found = re.match(r"\^((?:[A-Za-z0-9_:/-]|\\[^A-Za-z0-9])+)", pattern.pattern)
    return "" if found is None else re.sub(r"\\(.)", r"\1", found.group(1))


def _file(requirement: FileRequirement, files: ImageFiles) -> list[str]:
    data = files.files.get(requirement.path)
    if data is None:
        return [f"{requirement.path} is not in the image"]
    text = data.decode("utf-8", errors="replace")
    lines = text.splitlines()
    failures = []
    for pattern in requirement.lines:
        if any(pattern.search(line) for line in lines):
            continue
        prefix = _literal_prefix(pattern)
        near = [" ".join(line.split()) for line in lines if prefix and line.startswith(prefix)]
        said = f"{'; '.join(near[:2])} " if near else (f"no {prefix} line " if prefix else "")
        failures.append(f"{requirement.path}: {said}(no line matches {pattern.pattern})")
    return failures


def _licence_problem(package: Package, rule: LicenceRule) -> str | None:
    """Why ``package``'s licence fails ``rule`` (its area, the licences that fail, "unknown"), or None."""
    if package.area in (Area.NON_FREE, Area.NON_FREE_FIRMWARE, Area.CONTRIB):
        return package.area.value if rule.non_free is DenyOrAllow.DENY else None
    if package.area is Area.MAIN and rule.debian_main is DebianMain.ALLOW:
        return None
    if package.licence is None:
        return "unknown" if rule.unknown is DenyOrAllow.DENY else None
    from imagegate.core.contents.licences import evaluate, licence_ids  # noqa: PLC0415 (the SPDX list: when judging)

    answer = evaluate(package.licence, lambda key: _leaf(key, rule))
    if answer is Tri.YES or (answer is Tri.UNKNOWN and rule.unknown is DenyOrAllow.ALLOW):
        return None
    leaves = {key: _leaf(key, rule) for key in licence_ids(package.licence)}
    refused = [f"{key} denied" if key in rule.deny else key for key, leaf in leaves.items() if leaf is Tri.NO]
    said = [", ".join(refused)] if refused else []
    unknown = [key for key, leaf in leaves.items() if leaf is Tri.UNKNOWN]
    if unknown and (answer is Tri.UNKNOWN or rule.unknown is DenyOrAllow.DENY):
        said.append(f"unknown: {', '.join(unknown)}")
    return "; ".join(said) or package.licence


def _leaf(key: str, rule: LicenceRule) -> Tri:
    """One licence under ``rule``: denied, allowed by id, or by one of the rule's classes."""
    if key in rule.deny:
        return Tri.NO
    if key in rule.ids:
        return Tri.YES
    if key.startswith("LicenseRef-"):
        return Tri.UNKNOWN  # whatever classes the rule allows: nothing is known of it
    from imagegate.core.contents.licences import licence_flag  # noqa: PLC0415 (the SPDX list: when judging)

    flags = {licence_flag(key, c) for c in rule.classes}
    return Tri.YES if Tri.YES in flags else (Tri.UNKNOWN if Tri.UNKNOWN in flags else Tri.NO)


def _licences(rule: LicenceRule, inventory: Inventory) -> str | None:
    refused = [
        (p, problem)
        for p in inventory.packages
        if p.ecosystem in rule.ecosystems and (problem := _licence_problem(p, rule)) is not None
    ]
    if not refused:
        return None
    shown = ", ".join(f"{p.name} ({problem})" for p, problem in refused[:5])
    more = f", and {len(refused) - 5} more" if len(refused) > 5 else ""
    count = f"{len(refused)} package{'s' if len(refused) != 1 else ''}"
    return f"{count} under licences that are not {rule.allowed()}: {shown}{more}"


def judge(rule: ContentRule, inventory: Inventory, files: ImageFiles, digest: str | None = None) -> ContentVerdict:
    """Whether the image's ``inventory`` and kept ``files`` satisfy ``rule``, and what fails."""
    failures: list[str] = []
    failures.extend(f for r in rule.require_packages if (f := _required(r, inventory, files)) is not None)
    for requirement in rule.require_files:
        failures.extend(_file(requirement, files))
    failures.extend(f for r in rule.forbid_packages if (f := _forbidden(r, inventory)) is not None)
    if rule.licences is not None and (found := _licences(rule.licences, inventory)) is not None:
        failures.append(found)
    return ContentVerdict(rule.name, not failures, tuple(failures), rule.mode, digest)


# --- loading -------------------------------------------------------------------------------------


def _images(doc: LocatedDocument, path: str, entries: Sequence[str]) -> PatternSet:
    found: list[RepositoryPattern] = []
    for index, entry in enumerate(entries):
        try:
            found.append(parse_pattern(entry))
        except PatternError as exc:
            raise doc.error(f"{path}[{index}]", str(exc)) from None
    return PatternSet(tuple(found))


def _package(doc: LocatedDocument, path: str, written: PackageDoc) -> PackageRequirement:
    if not written.name.strip() or written.name != written.name.strip():
        raise doc.error(f"{path}.name", "name a package as its database lists it (libnss-sss)")
    if written.version is None:
        return PackageRequirement(written.name, written.ecosystem)
    if written.ecosystem is not Ecosystem.DEB:
        raise doc.error(f"{path}.version", "a version constraint is compared as Debian compares versions: deb only")
    found = _RELATION_RE.fullmatch(written.version)
    if found is None:
        raise doc.error(f"{path}.version", f"write a dpkg relation and a version ({', '.join(_RELATIONS)}: '>= 2.8.2')")
    from debian.debian_support import Version  # noqa: PLC0415 (only for a version constraint: the policy loads fast)

    try:
        Version(found.group(2))
    except ValueError as exc:
        raise doc.error(f"{path}.version", f"not a Debian version: {exc}") from None
    return PackageRequirement(written.name, written.ecosystem, found.group(1), found.group(2))


def _file_requirement(doc: LocatedDocument, path: str, written: FileDoc) -> FileRequirement:
    if container_path_error(written.path) is not None:
        raise doc.error(f"{path}.path", f"write {CONTAINER_PATH_FORM}")
    patterns = []
    for index, line in enumerate(written.lines):
        try:
            patterns.append(re.compile(line))
        except re.error as exc:
            raise doc.error(f"{path}.lines[{index}]", f"not a regular expression: {exc}") from None
    return FileRequirement(written.path, tuple(patterns))


def _licence_rule(doc: LocatedDocument, path: str, written: LicencesDoc) -> LicenceRule:
    classes: set[LicenceClass] = set()
    ids: set[str] = set()
    for index, entry in enumerate(written.allow):
        if entry in {c.value for c in LicenceClass}:
            classes.add(LicenceClass(entry))
        else:
            ids.add(_licence_id(doc, f"{path}.allow[{index}]", entry))
    deny = {_licence_id(doc, f"{path}.deny[{index}]", entry) for index, entry in enumerate(written.deny)}
    if written.ecosystems is not None and not written.ecosystems:
        raise doc.error(f"{path}.ecosystems", "an empty list judges no package; leave it out for every ecosystem")
    ecosystems = frozenset(written.ecosystems) if written.ecosystems is not None else frozenset(Ecosystem)
    return LicenceRule(
        frozenset(classes),
        frozenset(ids),
        frozenset(deny),
        written.unknown,
        written.non_free,
        ecosystems,
        written.debian_main,
    )


def _licence_id(doc: LocatedDocument, path: str, entry: str) -> str:
    if entry.startswith("LicenseRef-") and len(entry) > len("LicenseRef-"):
        return entry
    from imagegate.core.contents.licences import spdx_id  # noqa: PLC0415 (the SPDX list: only for a licenses rule)

    found = spdx_id(entry)
    if found is None:
        classes = ", ".join(c.value for c in LicenceClass)
        raise doc.error(path, f"{entry!r} is neither a class ({classes}) nor an SPDX licence id (nor LicenseRef-...)")
    return found


def _rule(doc: LocatedDocument, path: str, written: ContentRuleDoc, mode: Mode, on_error: DenyOrAllow) -> ContentRule:
    if not written.images and not written.grants:
        raise doc.error(path, "name the images this rule covers (images: patterns, as in trusted; or grants: true)")
    checks = (written.require_packages, written.require_files, written.forbid_packages, written.licenses)
    if not any(check for check in checks if check is not None):
        raise doc.error(path, "a rule needs a check: requirePackages, requireFiles, forbidPackages or licenses")
    if written.name is not None and not written.name.strip():
        raise doc.error(f"{path}.name", "an empty name: leave it out, or name the rule for its denials")
    return ContentRule(
        written.name or path.removeprefix("$."),
        _images(doc, f"{path}.images", written.images),
        written.grants,
        written.mode if written.mode is not None else mode,
        written.on_error if written.on_error is not None else on_error,
        tuple(_package(doc, f"{path}.requirePackages[{i}]", p) for i, p in enumerate(written.require_packages)),
        tuple(_file_requirement(doc, f"{path}.requireFiles[{i}]", f) for i, f in enumerate(written.require_files)),
        tuple(_package(doc, f"{path}.forbidPackages[{i}]", p) for i, p in enumerate(written.forbid_packages)),
        _licence_rule(doc, f"{path}.licenses", written.licenses) if written.licenses is not None else None,
    )


def load_content(doc: LocatedDocument, written: ContentDoc, policy_mode: Mode) -> ContentConfig:
    """The ``content`` section, checked: each error names the key and its line."""
    mode = written.mode if written.mode is not None else policy_mode
    rules = tuple(
        _rule(doc, f"$.content.rules[{index}]", rule, mode, written.on_error)
        for index, rule in enumerate(written.rules)
    )
    names: dict[str, int] = {}
    for index, rule in enumerate(rules):
        if rule.name in names:
            raise doc.error(
                f"$.content.rules[{index}].name",
                f"{rule.name!r} names rules[{names[rule.name]}] already: one name each",
            )
        names[rule.name] = index
    return ContentConfig(rules)
