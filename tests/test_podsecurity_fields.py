"""Every Pod Security check reads only the fields it declares, and the shortcut cannot skip one.

Issue 13: ``plainly_passes`` was a second implementation of the checks; a check reading a field
the shortcut did not know was silently skipped for "plain" pods. Now each check declares the
fields it reads (``Check.reads``, as pod-security-admission's checks list theirs) and the
shortcut runs only for checks whose every declared field it judges for that very check.

A check is a list of versioned entries, each with its own function and declared fields. Here
every entry runs on pods that record each field read (upstream's fixtures of every version,
and generated pods): a read outside the declaration fails. Then checks this test adds itself,
reading a new field, failing on an absent one, judging a known field anew, replacing a known
check under its id, or giving a known check a new version, are each found on pods the
shortcut would pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from imagegate.core.podprofile import REPLACED_BY_TOOL_PROFILE
from imagegate.core.podsecurity import CHECKS, Check, Level, VersionedCheck, checks_for, parse_version
from imagegate.core.podsecurity_shortcut import evaluate, plainly_passes, shortcut_plan
from imagegate.core.records import CheckResult
from tests.test_podsecurity_conformance import FIXTURES, PINNABLE
from tests.test_podsecurity_shortcut import compliant_spec, edited_pods

Path = tuple[str, ...]
LATEST = parse_version("latest")
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


class RecordingDict(dict[str, Any]):
    """A JSON object that logs the path of every key looked up, and ``*`` when all are listed."""

    def __init__(self, data: dict[str, Any], path: Path, log: set[Path]) -> None:
        super().__init__((key, recording(value, (*path, key), log)) for key, value in data.items())
        self.path = path
        self.log = log

    def _read(self, key: str) -> None:
        self.log.add((*self.path, key))

    def get(self, key: str, default: Any = None) -> Any:
        self._read(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self._read(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self._read(str(key))
        return super().__contains__(key)

    def _all(self) -> None:
        self.log.add((*self.path, "*"))

    def keys(self) -> Any:
        self._all()
        return super().keys()

    def items(self) -> Any:
        self._all()
        return super().items()

    def values(self) -> Any:
        self._all()
        return super().values()

    def __iter__(self) -> Iterator[str]:
        self._all()
        return super().__iter__()

    def __len__(self) -> int:
        self._all()
        return super().__len__()


class RecordingList(list[Any]):
    """A JSON array that logs ``[]`` (its items) when they are looked at."""

    def __init__(self, data: list[Any], path: Path, log: set[Path]) -> None:
        super().__init__(recording(item, (*path, "[]"), log) for item in data)
        self.path = path
        self.log = log

    def _read(self) -> None:
        self.log.add((*self.path, "[]"))

    def __iter__(self) -> Iterator[Any]:
        self._read()
        return super().__iter__()

    def __getitem__(self, index: Any) -> Any:
        self._read()
        return super().__getitem__(index)

    def __contains__(self, item: object) -> bool:
        self._read()
        return super().__contains__(item)

    def __len__(self) -> int:
        self._read()
        return super().__len__()


def recording(value: Any, path: Path, log: set[Path]) -> Any:
    if isinstance(value, dict):
        return RecordingDict(value, path, log)
    if isinstance(value, list):
        return RecordingList(value, path, log)
    return value


def declared_path(text: str) -> Path:
    """``spec.containers[*].ports[*].hostPort`` -> ("spec", "containers", "[]", "ports", "[]", "hostPort")."""
    segments: list[str] = []
    for part in text.split("."):
        if part.endswith("[*]"):
            segments += [part[:-3], "[]"]
        else:
            segments.append(part)
    return tuple(segments)


def normalized(path: Path) -> Path:
    """Every container list is ``spec.containers`` in the declarations."""
    if len(path) >= 2 and path[0] == "spec" and path[1] in CONTAINER_LISTS:
        return ("spec", "containers", *path[2:])
    return path


def covered(read: Path, declared: Path) -> bool:
    """A declared path covers everything below it and every step on the way to it."""
    shorter = min(len(read), len(declared))
    return read[:shorter] == declared[:shorter]


def undeclared_reads(entry: VersionedCheck, metadata: Any, spec: Any) -> set[Path]:
    log: set[Path] = set()
    entry.run(recording(metadata, ("metadata",), log), recording(spec, ("spec",), log))
    declared = [declared_path(text) for text in entry.reads]
    return {read for read in map(normalized, log) if not any(covered(read, d) for d in declared)}


def fixture_pods() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Every distinct pod of upstream's fixtures, over all versions and levels."""
    pods: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for fixture in FIXTURES:
        pod = fixture.pod()
        pods.setdefault(fixture.text(), (pod.get("metadata") or {}, pod["spec"]))
    return list(pods.values())


FIXTURE_PODS = fixture_pods()
ENTRIES = [(check.id, entry) for check in CHECKS for entry in check.versions]


def entry_id(item: tuple[str, VersionedCheck]) -> str:
    check_id, entry = item
    return f"{check_id}-v{entry.since[0]}.{entry.since[1]}"


@pytest.mark.parametrize("item", ENTRIES, ids=entry_id)
def test_each_entry_reads_only_what_it_declares_on_the_upstream_fixtures(item: tuple[str, VersionedCheck]) -> None:
    check_id, entry = item
    for metadata, spec in FIXTURE_PODS:
        assert undeclared_reads(entry, metadata, spec) == set(), (check_id, entry.since, spec)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edited_pods())
def test_each_entry_reads_only_what_it_declares_on_edited_pods(pod: tuple[dict[str, Any], dict[str, Any]]) -> None:
    metadata, spec = pod
    for check_id, entry in ENTRIES:
        assert undeclared_reads(entry, metadata, spec) == set(), (check_id, entry.since)


def test_the_recording_sees_the_reads() -> None:
    """Not a test that cannot fail: a check that under-declares is caught."""
    ((_, real),) = checks_for(Level.RESTRICTED, LATEST, frozenset(c.id for c in CHECKS) - {"runAsUser"})
    hidden = VersionedCheck(real.since, real.run, ("spec.securityContext.runAsUser",))
    spec = compliant_spec(2)
    found = undeclared_reads(hidden, {}, spec)
    assert ("spec", "containers", "[]", "securityContext", "runAsUser") in found
    assert undeclared_reads(real, {}, spec) == set()


def test_the_shortcut_is_on_for_every_level_the_policy_can_ask_for() -> None:
    """Keeping it fast: the real checks are all judged, at every version, with and without the tool profile."""
    for level in (Level.BASELINE, Level.RESTRICTED):
        for version in map(parse_version, PINNABLE):
            for skip in (frozenset(), frozenset({"hostPathVolumes", "restrictedVolumes"}), REPLACED_BY_TOOL_PROFILE):
                assert shortcut_plan(checks_for(level, version, skip)) is not None, (level, version, skip)
    assert plainly_passes(Level.RESTRICTED, LATEST, {}, compliant_spec(3), frozenset())


# --- checks the test adds -----------------------------------------------------------------


def check_share_process_namespace(_meta: Any, spec: Any) -> CheckResult | None:
    """A new field: the containers of a pod would see each other's processes."""
    if spec.get("shareProcessNamespace") is True:
        return CheckResult("shareProcessNamespace", "shareProcessNamespace", "pod sets shareProcessNamespace=true")
    return None


def check_read_only_root(_meta: Any, spec: Any) -> CheckResult | None:
    """Fails when a field is absent: every container must set readOnlyRootFilesystem=true."""
    bad = []
    for field in CONTAINER_LISTS:
        for container in spec.get(field) if isinstance(spec.get(field), list) else ():
            context = container.get("securityContext")
            if not isinstance(context, dict) or context.get("readOnlyRootFilesystem") is not True:
                bad.append(str(container.get("name", "")))
    return CheckResult("readOnlyRootFilesystem", "readOnlyRootFilesystem", ", ".join(bad)) if bad else None


def check_low_uid(_meta: Any, spec: Any) -> CheckResult | None:
    """A known field judged anew: no uid below 60000 (the plain pod has 52503)."""
    context = spec.get("securityContext")
    uid = context.get("runAsUser") if isinstance(context, dict) else None
    return CheckResult("lowUid", "runAsUser", f"runAsUser={uid}") if isinstance(uid, int) and uid < 60000 else None


def one_version(check_id: str, level: Level, since: tuple[int, int], run: Any, reads: tuple[str, ...]) -> Check:
    return Check(check_id, level, (VersionedCheck(since, run, reads),))


C = "spec.containers[*]"
ADDED = [
    one_version(
        "shareProcessNamespace", Level.BASELINE, (1, 0), check_share_process_namespace, ("spec.shareProcessNamespace",)
    ),
    one_version(
        "readOnlyRootFilesystem",
        Level.RESTRICTED,
        (1, 0),
        check_read_only_root,
        (f"{C}.name", f"{C}.securityContext.readOnlyRootFilesystem"),
    ),
    one_version("lowUid", Level.RESTRICTED, (1, 0), check_low_uid, ("spec.securityContext.runAsUser",)),
    # an existing id, a stricter function: the shortcut knows functions, not names
    one_version("runAsUser", Level.RESTRICTED, (1, 23), check_low_uid, ("spec.securityContext.runAsUser",)),
]


@pytest.mark.parametrize("added", ADDED, ids=lambda c: f"{c.id}-{c.versions[0].run.__name__}")
def test_a_check_the_shortcut_does_not_know_is_never_skipped(added: Check) -> None:
    spec = compliant_spec(2)
    spec["shareProcessNamespace"] = True
    # the pod is plain for the real checks: the shortcut takes it, and rightly
    assert plainly_passes(Level.RESTRICTED, LATEST, {}, spec, frozenset())
    assert evaluate(Level.RESTRICTED, LATEST, {}, spec) == []
    # the added check declares what it reads, and reads nothing else
    (entry,) = added.versions
    assert undeclared_reads(entry, {}, spec) == set()
    catalog = (*[c for c in CHECKS if c.id != added.id], added)
    for level in (Level.BASELINE, Level.RESTRICTED) if added.level is Level.BASELINE else (Level.RESTRICTED,):
        assert shortcut_plan(checks_for(level, LATEST, frozenset(), catalog)) is None
        found = evaluate(level, LATEST, {}, spec, catalog=catalog)
        assert entry.run({}, spec) in found, (level, found)
        assert found == evaluate(level, LATEST, {}, spec, catalog=catalog, shortcut=False)
    # and the real checks keep their shortcut
    assert shortcut_plan(checks_for(Level.RESTRICTED, LATEST)) is not None


def test_a_known_check_reading_one_more_field_turns_the_shortcut_off() -> None:
    """A check body that grows a read must declare it (above); then the shortcut no longer judges it."""
    (privileged,) = (c for c in CHECKS if c.id == "privileged")
    grown_entries = tuple(VersionedCheck(e.since, e.run, (*e.reads, "spec.x")) for e in privileged.versions)
    grown = Check(privileged.id, privileged.level, grown_entries)
    catalog = tuple(grown if c is privileged else c for c in CHECKS)
    assert shortcut_plan(checks_for(Level.BASELINE, LATEST, frozenset(), catalog)) is None
    assert shortcut_plan(checks_for(Level.BASELINE, LATEST, frozenset({"privileged"}), catalog)) is not None


def test_a_new_version_of_a_known_check_turns_the_shortcut_off_from_that_version() -> None:
    """A check that changes at a version gets a new entry; the shortcut must know its function too."""
    (run_as_user,) = (c for c in CHECKS if c.id == "runAsUser")
    newer = VersionedCheck((1, 36), check_low_uid, ("spec.securityContext.runAsUser",))
    catalog = tuple(Check(c.id, c.level, (*c.versions, newer)) if c is run_as_user else c for c in CHECKS)
    spec = compliant_spec(2)
    v1_35, v1_36 = parse_version("v1.35"), parse_version("v1.36")
    assert shortcut_plan(checks_for(Level.RESTRICTED, v1_35, frozenset(), catalog)) is not None
    assert evaluate(Level.RESTRICTED, v1_35, {}, spec, catalog=catalog) == []
    assert shortcut_plan(checks_for(Level.RESTRICTED, v1_36, frozenset(), catalog)) is None
    assert [f.check for f in evaluate(Level.RESTRICTED, v1_36, {}, spec, catalog=catalog)] == ["lowUid"]
