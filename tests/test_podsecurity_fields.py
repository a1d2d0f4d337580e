"""Every Pod Security check reads only the fields it declares, and the shortcut cannot skip one.

Issue 13: ``plainly_passes`` was a second implementation of the checks; a check reading a field
the shortcut did not know was silently skipped for "plain" pods. Now each check declares the
fields it reads (``Check.reads``, as pod-security-admission's checks list theirs) and the
shortcut runs only for checks whose every declared field it judges for that very check.

Here every check runs on pods that record each field read (upstream's fixtures and generated
pods, at several versions): a read outside the declaration fails. Then checks this test adds
itself, reading a new field, failing on an absent one, judging a known field anew, or
replacing a known check under its id, are each found on pods the shortcut would pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from imagegate.core.podprofile import REPLACED_BY_TOOL_PROFILE
from imagegate.core.podsecurity import (
    CHECKS,
    Check,
    CheckResult,
    checks_for,
    evaluate,
    parse_version,
    plainly_passes,
    shortcut_plan,
)
from tests.conftest import CONFORMANCE
from tests.test_podsecurity_shortcut import INDEX, VERSIONS, compliant_spec, edited_pods

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


def undeclared_reads(check: Check, metadata: Any, spec: Any, version: tuple[int, int]) -> set[Path]:
    log: set[Path] = set()
    check.run(recording(metadata, ("metadata",), log), recording(spec, ("spec",), log), version)
    declared = [declared_path(text) for text in check.reads]
    return {read for read in map(normalized, log) if not any(covered(read, d) for d in declared)}


def fixture_pods() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    pods = []
    for fixture in INDEX["fixtures"]:
        pod = yaml.safe_load((CONFORMANCE / "pod-security" / fixture["file"]).read_text())
        pods.append((pod.get("metadata") or {}, pod["spec"]))
    return pods


FIXTURE_PODS = fixture_pods()


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.id)
def test_each_check_reads_only_what_it_declares_on_the_upstream_fixtures(check: Check) -> None:
    for metadata, spec in FIXTURE_PODS:
        for version in VERSIONS:
            assert undeclared_reads(check, metadata, spec, version) == set(), (check.id, version, spec)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edited_pods())
def test_each_check_reads_only_what_it_declares_on_edited_pods(pod: tuple[dict[str, Any], dict[str, Any]]) -> None:
    metadata, spec = pod
    for check in CHECKS:
        for version in VERSIONS:
            assert undeclared_reads(check, metadata, spec, version) == set(), check.id


def test_the_recording_sees_the_reads() -> None:
    """Not a test that cannot fail: a check that under-declares is caught."""
    hidden = Check("runAsUser", "restricted", (1, 23), CHECKS[15].run, ("spec.securityContext.runAsUser",))
    assert CHECKS[15].id == "runAsUser"
    spec = compliant_spec(2)
    found = undeclared_reads(hidden, {}, spec, LATEST)
    assert ("spec", "containers", "[]", "securityContext", "runAsUser") in found
    assert undeclared_reads(CHECKS[15], {}, spec, LATEST) == set()


def test_the_shortcut_is_on_for_every_level_the_policy_can_ask_for() -> None:
    """Keeping it fast: the real checks are all judged, with and without the tool profile."""
    for level in ("baseline", "restricted"):
        for version in VERSIONS:
            for skip in (frozenset(), frozenset({"hostPathVolumes", "restrictedVolumes"}), REPLACED_BY_TOOL_PROFILE):
                assert shortcut_plan(checks_for(level, version, skip), version) is not None, (level, version, skip)
    assert plainly_passes("restricted", LATEST, {}, compliant_spec(3), frozenset())


# --- checks the test adds -----------------------------------------------------------------


def check_share_process_namespace(_meta: Any, spec: Any, _v: Any) -> CheckResult | None:
    """A new field: the containers of a pod would see each other's processes."""
    if spec.get("shareProcessNamespace") is True:
        return CheckResult("shareProcessNamespace", "shareProcessNamespace", "pod sets shareProcessNamespace=true")
    return None


def check_read_only_root(_meta: Any, spec: Any, _v: Any) -> CheckResult | None:
    """Fails when a field is absent: every container must set readOnlyRootFilesystem=true."""
    bad = []
    for field in CONTAINER_LISTS:
        for container in spec.get(field) if isinstance(spec.get(field), list) else ():
            context = container.get("securityContext")
            if not isinstance(context, dict) or context.get("readOnlyRootFilesystem") is not True:
                bad.append(str(container.get("name", "")))
    return CheckResult("readOnlyRootFilesystem", "readOnlyRootFilesystem", ", ".join(bad)) if bad else None


def check_low_uid(_meta: Any, spec: Any, _v: Any) -> CheckResult | None:
    """A known field judged anew: no uid below 60000 (the plain pod has 52503)."""
    context = spec.get("securityContext")
    uid = context.get("runAsUser") if isinstance(context, dict) else None
    return CheckResult("lowUid", "runAsUser", f"runAsUser={uid}") if isinstance(uid, int) and uid < 60000 else None


C = "spec.containers[*]"
ADDED = [
    Check("shareProcessNamespace", "baseline", (1, 0), check_share_process_namespace, ("spec.shareProcessNamespace",)),
    Check(
        "readOnlyRootFilesystem",
        "restricted",
        (1, 0),
        check_read_only_root,
        (f"{C}.name", f"{C}.securityContext.readOnlyRootFilesystem"),
    ),
    Check("lowUid", "restricted", (1, 0), check_low_uid, ("spec.securityContext.runAsUser",)),
    # an existing id, a stricter function: the shortcut knows functions, not names
    Check("runAsUser", "restricted", (1, 23), check_low_uid, ("spec.securityContext.runAsUser",)),
]


@pytest.mark.parametrize("added", ADDED, ids=lambda c: f"{c.id}-{c.run.__name__}")
def test_a_check_the_shortcut_does_not_know_is_never_skipped(added: Check) -> None:
    spec = compliant_spec(2)
    spec["shareProcessNamespace"] = True
    # the pod is plain for the real checks: the shortcut takes it, and rightly
    assert plainly_passes("restricted", LATEST, {}, spec, frozenset())
    assert evaluate("restricted", LATEST, {}, spec) == []
    # the added check declares what it reads, and reads nothing else
    assert undeclared_reads(added, {}, spec, LATEST) == set()
    catalog = (*[c for c in CHECKS if c.id != added.id], added)
    for level in ("baseline", "restricted") if added.level == "baseline" else ("restricted",):
        assert shortcut_plan(checks_for(level, LATEST, frozenset(), catalog), LATEST) is None
        found = evaluate(level, LATEST, {}, spec, catalog=catalog)
        assert added.run({}, spec, LATEST) in found, (level, found)
        assert found == evaluate(level, LATEST, {}, spec, catalog=catalog, shortcut=False)
    # and the real checks keep their shortcut
    assert shortcut_plan(checks_for("restricted", LATEST), LATEST) is not None


def test_a_known_check_reading_one_more_field_turns_the_shortcut_off() -> None:
    """A check body that grows a read must declare it (above); then the shortcut no longer judges it."""
    (privileged,) = (c for c in CHECKS if c.id == "privileged")
    grown = Check(privileged.id, privileged.level, privileged.since, privileged.run, (*privileged.reads, "spec.x"))
    catalog = tuple(grown if c is privileged else c for c in CHECKS)
    assert shortcut_plan(checks_for("baseline", LATEST, frozenset(), catalog), LATEST) is None
    assert shortcut_plan(checks_for("baseline", LATEST, frozenset({"privileged"}), catalog), LATEST) is not None
