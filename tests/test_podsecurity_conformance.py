"""Kubernetes pod-security-admission's own fixtures, for every version a policy may pin.

shared/conformance/pod-security/<level>/v1.NN/{pass,fail}/*.yaml: the folder is upstream's
expected result at that level and version. ``index.json`` adds, for v1.37, the text upstream
expects in the failure message.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagegate.core.podsecurity import CHECKS, LATEST_VERSION, OLDEST_VERSION, Level, checks_for, parse_version
from imagegate.core.podsecurity_shortcut import evaluate
from tests.conftest import CONFORMANCE, load_conformance

INDEX = load_conformance("pod-security/index.json")
PSA = CONFORMANCE / "pod-security"
# Every version parse_version accepts, oldest to newest: the versions a policy may pin.
PINNABLE = [f"v1.{minor}" for minor in range(OLDEST_VERSION[1], LATEST_VERSION[1] + 1)]
_CHECK_OF_FILE = {check.id.lower(): check.id for check in CHECKS}
_SUBSTRING = {f["file"]: f.get("expect_error_substring") for f in INDEX["fixtures"]}


@dataclass(frozen=True)
class Fixture:
    file: str  # relative to pod-security/, e.g. "restricted/v1.33/fail/restrictedvolumes3.yaml"
    level: str
    version: str
    expected: str  # pass or fail
    check: str  # the check id it is for; "base..." for the minimal valid pods

    def text(self) -> str:
        return (PSA / self.file).read_text()

    def pod(self) -> dict[str, Any]:
        """The pod, read once for every fixture of the same text (most repeat across versions)."""
        return _parsed(self.text())


@cache
def _parsed(text: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(text, Loader=yaml.CSafeLoader)
    return loaded


def _fixture(path: Path) -> Fixture:
    relative = path.relative_to(PSA)
    level, version, expected, _name = relative.parts
    stem = path.stem.rstrip("0123456789")
    check = stem if stem.startswith("base") else _CHECK_OF_FILE[stem]
    return Fixture(relative.as_posix(), level, version, expected, check)


def psa_fixtures() -> list[Fixture]:
    found: list[Fixture] = []
    for level in ("baseline", "restricted"):
        for version in PINNABLE:
            folder = PSA / level / version
            if not folder.is_dir():
                pytest.fail(f"conformance data missing: {folder}")
            found.extend(_fixture(path) for path in sorted(folder.glob("*/*.yaml")))
    return found


FIXTURES = psa_fixtures()


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda f: f.file)
def test_fixture(fixture: Fixture) -> None:
    pod = fixture.pod()
    failed = evaluate(Level(fixture.level), parse_version(fixture.version), pod.get("metadata") or {}, pod["spec"])
    if fixture.expected == "pass":
        assert failed == [], [f.message for f in failed]
        return
    # The fixture's own check must be among the failures, with the upstream message text.
    assert fixture.check in {f.check for f in failed} or fixture.check.startswith("base"), failed
    substring = _SUBSTRING.get(fixture.file)
    if substring is not None:
        messages = [f.message for f in failed]
        assert any(substring in m for m in messages), messages


def test_every_pinnable_version_has_fixtures_of_both_levels_and_results() -> None:
    """1,732 pods (README, Conformance): none skipped, no version missing."""
    assert len(FIXTURES) == 1732
    for level in ("baseline", "restricted"):
        for version in PINNABLE:
            results = {f.expected for f in FIXTURES if f.level == level and f.version == version}
            assert results == {"pass", "fail"}, (level, version)


def test_the_v1_37_index_describes_the_v1_37_folders() -> None:
    assert INDEX["count"] == len(INDEX["fixtures"]) == 148
    assert {f["file"] for f in INDEX["fixtures"]} == {f.file for f in FIXTURES if f.version == "v1.37"}


def test_every_upstream_check_is_implemented() -> None:
    upstream = {f.check for f in FIXTURES} - {"base", "base_linux", "base_windows"}
    assert upstream == {c.id for c in CHECKS}


def test_each_versioned_entry_is_in_force_from_its_version_to_the_next() -> None:
    for check in CHECKS:
        sinces = [entry.since for entry in check.versions]
        assert sinces == sorted(set(sinces)), check.id
        for entry in check.versions:
            assert check.at(entry.since) is entry
        assert check.at((1, sinces[0][1] - 1)) is None


def test_levels_include_lower_levels() -> None:
    baseline = {check_id for check_id, _ in checks_for(Level.BASELINE, LATEST_VERSION)}
    restricted = {check_id for check_id, _ in checks_for(Level.RESTRICTED, LATEST_VERSION)}
    assert baseline < restricted
    assert checks_for(Level.PRIVILEGED, LATEST_VERSION) == ()


def test_version_pins() -> None:
    sysctl_pod = {"securityContext": {"sysctls": [{"name": "net.ipv4.tcp_notsent_lowat", "value": "1"}]}}
    assert evaluate(Level.BASELINE, parse_version("v1.37"), {}, sysctl_pod) == []
    assert [f.check for f in evaluate(Level.BASELINE, parse_version("v1.36"), {}, sysctl_pod)] == ["sysctls"]
    probe_pod = {"containers": [{"name": "c", "livenessProbe": {"httpGet": {"host": "example.org", "port": 80}}}]}
    assert evaluate(Level.BASELINE, parse_version("v1.33"), {}, probe_pod) == []
    assert parse_version("latest") == LATEST_VERSION
    assert parse_version("v1.99") == LATEST_VERSION
    for bad in ("1.37", "v2.0", "v1.20", "v1.24", "newest"):
        with pytest.raises(ValueError):
            parse_version(bad)
