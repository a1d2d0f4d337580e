"""``{namespace}`` and ``{tool}`` in trusted entries and grants: each namespace its own images."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagegate.core.decide import decide
from imagegate.core.patterns import PatternError, parse_pattern, parse_template
from imagegate.core.placeholders import fill_placeholders
from imagegate.core.podprofile import HostPathRule
from imagegate.core.policy import PolicyError, dump_grants, load_grants, load_policy
from imagegate.core.reference import parse_docker_ref
from tests.conftest import GRANTS_HEADER, POLICY_HEADER

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
POLICY = (
    POLICY_HEADER
    + """
trusted:
  - docker-registry.svc.toolforge.org
  - tools-harbor.wmcloud.org/{namespace}
  - registry.example.org/builds/tool-{tool}
"""
)


def pod(image: str) -> dict[str, Any]:
    return {"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": image}]}}


def allowed(policy_text: str, namespace: str, image: str) -> bool:
    return decide(load_policy(policy_text), pod(image), namespace=namespace, now=NOW).allowed


@pytest.mark.parametrize(
    ("namespace", "image", "expected"),
    [
        ("tool-foo", "tools-harbor.wmcloud.org/tool-foo/tool-foo:latest", True),
        ("tool-foo", "tools-harbor.wmcloud.org/tool-foo/sub/app:1", True),
        ("tool-foo", "tools-harbor.wmcloud.org/tool-bar/tool-bar:latest", False),
        ("tool-bar", "tools-harbor.wmcloud.org/tool-bar/tool-bar:latest", True),
        # whole segments: a project that only starts with the namespace's name is another project
        ("tool-foo", "tools-harbor.wmcloud.org/tool-foo-evil/x:1", False),
        ("tool-foo", "tools-harbor.wmcloud.org/tool-fo/x:1", False),
        ("tool-foo", "tools-harbor.wmcloud.org.evil.com/tool-foo/x:1", False),
        # the placeholder stands in the first path segment only, never lower down
        ("tool-foo", "tools-harbor.wmcloud.org/other/tool-foo/x:1", False),
        # {tool}: the tool's name, only in a tool namespace
        ("tool-foo", "registry.example.org/builds/tool-foo/app:1", True),
        ("tool-foo", "registry.example.org/builds/tool-bar/app:1", False),
        ("foo", "registry.example.org/builds/tool-foo/app:1", False),
        # namespace names no image segment can be confused with
        ("default", "tools-harbor.wmcloud.org/default/x:1", True),
    ],
)
def test_a_namespace_runs_its_own_images(namespace: str, image: str, expected: bool) -> None:
    assert allowed(POLICY, namespace, image) is expected


@pytest.mark.parametrize(
    "namespace",
    ["tool-foo/x", "tool-*", "tool-?", "tool-[a-z]", "TOOL-FOO", "tool-foo.", "..", "", "x" * 64, "tool-foo\n"],
)
def test_a_name_that_is_not_a_namespace_fills_nothing(namespace: str) -> None:
    """The API server only sends DNS labels; anything else must not widen an entry."""
    assert fill_placeholders("tools-harbor.wmcloud.org/{namespace}", namespace) is None
    policy = load_policy(POLICY)
    assert not policy.trusted.resolved(namespace).patterns
    # so the images a glob-like or slash-carrying name would reach stay untrusted
    for image in ("tools-harbor.wmcloud.org/tool-foo/x:1", "tools-harbor.wmcloud.org/tool-a/x:1"):
        decision = decide(policy, pod(image), namespace=namespace, now=NOW)
        assert not decision.allowed


@given(st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True), st.text(max_size=30))
def test_the_filled_in_entry_covers_exactly_the_namespace_segment(namespace: str, other: str) -> None:
    template = parse_template("tools-harbor.wmcloud.org/{namespace}")
    pattern = template.resolve(namespace)
    assert pattern is not None and pattern.segments == ("tools-harbor.wmcloud.org", namespace)
    assert not pattern.has_glob
    assert pattern.matches(parse_docker_ref(f"tools-harbor.wmcloud.org/{namespace}/x"))
    segment = other.lower()
    if segment != namespace:
        try:
            ref = parse_docker_ref(f"tools-harbor.wmcloud.org/{segment}/x")
        except Exception:
            return
        assert not pattern.matches(ref)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{namespace}.example.org/x", "a placeholder goes in the path"),
        ("tools-harbor.wmcloud.org/{project}", "the placeholders are {namespace} and {tool}"),
        ("tools-harbor.wmcloud.org/{namespace", "the placeholders are"),
        ("tools-harbor.wmcloud.org/{namespace}/UPPER", "path segment"),
    ],
)
def test_bad_templates_are_refused_when_the_policy_loads(entry: str, message: str) -> None:
    with pytest.raises(PolicyError, match="trusted\\[0\\]") as raised:
        load_policy(f"{POLICY_HEADER}trusted:\n  - {entry!r}\n")
    assert message in str(raised.value)


@pytest.mark.parametrize("key", ["blocked", "tags: {exempt", "baseImages: {requireFor"])
def test_placeholders_are_only_for_trusted_and_grants(key: str) -> None:
    entry = "'tools-harbor.wmcloud.org/{namespace}'"
    text = POLICY_HEADER + (f"{key}: [{entry}]}}\n" if "{" in key else f"{key}: [{entry}]\n")
    with pytest.raises(PolicyError, match="only allowed in 'trusted' and in a grant's 'registries'"):
        load_policy(text)
    with pytest.raises(PatternError):
        parse_pattern("tools-harbor.wmcloud.org/{namespace}")


GRANTS = (
    GRANTS_HEADER
    + """
grants:
  - namespace: tool-foo
    registries: ["ghcr.io/{tool}", "quay.io/{namespace}/app"]
"""
)


def test_grant_registries_name_the_granted_namespace() -> None:
    grants = load_grants(GRANTS)
    policy = load_policy(POLICY_HEADER + "trusted: [docker-registry.svc.toolforge.org]\n").with_grants(grants)
    assert decide(policy, pod("ghcr.io/foo/bot:1"), namespace="tool-foo", now=NOW).allowed
    assert decide(policy, pod("quay.io/tool-foo/app:1"), namespace="tool-foo", now=NOW).allowed
    outside = decide(policy, pod("ghcr.io/bar/bot:1"), namespace="tool-foo", now=NOW)
    assert not outside.allowed and outside.findings[0].rule == "outside-grant"
    # written back as the operator wrote it (grants add/revoke rewrite the file)
    assert dump_grants(grants)["grants"][0]["registries"] == ["ghcr.io/{tool}", "quay.io/{namespace}/app"]


def test_tool_placeholder_in_a_grant_for_a_namespace_that_is_no_tool_is_refused() -> None:
    with pytest.raises(PolicyError, match="not a tool namespace"):
        load_grants(GRANTS_HEADER + "grants:\n  - namespace: infra\n    registries: ['ghcr.io/{tool}']\n")


def test_host_path_tool_placeholder_allows_nothing_outside_tool_namespaces() -> None:
    rule = HostPathRule("/data/project/{tool}")
    assert rule.resolve("tool-foo") == "/data/project/foo"
    assert rule.resolve("foo") is None
    assert HostPathRule("/srv/{namespace}").resolve("a/b") is None
