"""Kubernetes pod-security-admission's own v1.37 fixtures (shared/conformance/pod-security)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from imagegate.core.podsecurity import CHECKS, LATEST_VERSION, checks_for, evaluate, parse_version
from tests.conftest import CONFORMANCE, load_conformance

INDEX = load_conformance("pod-security/index.json")


@pytest.mark.parametrize("fixture", INDEX["fixtures"], ids=lambda f: f["file"])
def test_fixture(fixture: dict[str, Any]) -> None:
    pod = yaml.safe_load((CONFORMANCE / "pod-security" / fixture["file"]).read_text())
    version = parse_version(fixture["version"])
    failed = evaluate(fixture["level"], version, pod.get("metadata") or {}, pod["spec"])
    if fixture["expected"] == "pass":
        assert failed == [], [f.message for f in failed]
        return
    # The fixture's own check must be among the failures, with the upstream message text.
    messages = [f.message for f in failed]
    assert any(fixture["expect_error_substring"] in m for m in messages), messages
    assert fixture["check"] in {f.check for f in failed} or fixture["check"].startswith("base")


def test_counts_reported_in_readme() -> None:
    assert INDEX["count"] == len(INDEX["fixtures"]) == 148


def test_every_upstream_check_is_implemented() -> None:
    upstream = {f["check"] for f in INDEX["fixtures"]} - {"base", "base_linux", "base_windows"}
    assert upstream == {c.id for c in CHECKS}


def test_levels_include_lower_levels() -> None:
    baseline = {c.id for c in checks_for("baseline", LATEST_VERSION)}
    restricted = {c.id for c in checks_for("restricted", LATEST_VERSION)}
    assert baseline < restricted
    assert checks_for("privileged", LATEST_VERSION) == ()


def test_version_pins() -> None:
    sysctl_pod = {"securityContext": {"sysctls": [{"name": "net.ipv4.tcp_notsent_lowat", "value": "1"}]}}
    assert evaluate("baseline", parse_version("v1.37"), {}, sysctl_pod) == []
    assert [f.check for f in evaluate("baseline", parse_version("v1.36"), {}, sysctl_pod)] == ["sysctls"]
    probe_pod = {"containers": [{"name": "c", "livenessProbe": {"httpGet": {"host": "example.org", "port": 80}}}]}
    assert evaluate("baseline", parse_version("v1.33"), {}, probe_pod) == []
    assert parse_version("latest") == LATEST_VERSION
    assert parse_version("v1.99") == LATEST_VERSION
    for bad in ("1.37", "v2.0", "v1.20", "newest"):
        with pytest.raises(ValueError):
            parse_version(bad)
