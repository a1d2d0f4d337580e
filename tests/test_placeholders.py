"""``{namespace}`` and ``{tool}`` in trusted entries and grants: each namespace its own images."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagegate.core.decide import decide
from imagegate.core.patterns import PatternError, parse_pattern, parse_template
from imagegate.core.placeholders import GLOB_CHARACTERS, PLACEHOLDERS, fill_placeholders, template_problem
from imagegate.core.podprofile import HostPathRule
from imagegate.core.policy import PolicyError, dump_grants, load_grants, load_policy
from imagegate.core.reference import parse_docker_ref
from tests.conftest import GRANTS_HEADER, POLICY_HEADER, admission_review, run_imagegate
from tests.webhook_process import run_webhook

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


# --- a placeholder beside a glob (issue 27): refused wherever placeholders are taken -----------

GLOB_BESIDE = [
    "tools-harbor.wmcloud.org/{namespace}*",  # tool-a: tool-ab, tool-a-b
    "tools-harbor.wmcloud.org/{namespace}-*",
    "ghcr.io/{tool}?",
    "ghcr.io/{tool}[a-z]",
    "ghcr.io/*{tool}",
    "ghcr.io/org/x{tool}*/app",
]


@pytest.mark.parametrize("entry", GLOB_BESIDE)
def test_a_placeholder_beside_a_glob_is_refused_in_trusted(entry: str) -> None:
    with pytest.raises(PolicyError, match="beside the glob character") as raised:
        load_policy(f"{POLICY_HEADER}trusted:\n  - {entry!r}\n", "policy.yaml")
    assert raised.value.path == "trusted[0]" and entry in str(raised.value)
    with pytest.raises(PatternError, match="beside the glob character"):
        parse_template(entry)


@pytest.mark.parametrize("entry", GLOB_BESIDE)
def test_a_placeholder_beside_a_glob_is_refused_in_grants(entry: str) -> None:
    text = f"{GRANTS_HEADER}grants:\n  - namespace: tool-a\n    registries: [{entry!r}]\n"
    with pytest.raises(PolicyError, match="beside the glob character") as raised:
        load_grants(text, "grants.yaml")
    assert raised.value.path == "grants[0].registries[0]"
    inline = f"{POLICY_HEADER}byoc:\n  grants:\n    - namespace: tool-a\n      registries: [{entry!r}]\n"
    with pytest.raises(PolicyError, match="beside the glob character"):
        load_policy(inline)


@pytest.mark.parametrize("key", ["keys/{tool}*.pub", "keys/{namespace}?.pub", "keys/[{tool}].pub", "keys/{owner}.pub"])
def test_signed_by_takes_the_same_placeholders(key: str) -> None:
    text = f"{GRANTS_HEADER}grants:\n  - namespace: tool-a\n    signedBy: {key!r}\n"
    with pytest.raises(PolicyError) as raised:
        load_grants(text, "grants.yaml")
    assert raised.value.path == "grants[0].signedBy"
    assert "beside the glob character" in str(raised.value) or "the placeholders are" in str(raised.value)


def test_a_glob_elsewhere_in_the_entry_stays_allowed() -> None:
    """Only the segment holding the placeholder matters: the namespace's own subtree may be globbed."""
    policy = load_policy(f"{POLICY_HEADER}trusted:\n  - 'ghcr.io/{{tool}}/app-*'\n  - '*.example.org/{{tool}}'\n")
    assert decide(policy, pod("ghcr.io/a/app-web:1"), namespace="tool-a", now=NOW).allowed
    assert decide(policy, pod("cr.example.org/a/x:1"), namespace="tool-a", now=NOW).allowed
    assert not decide(policy, pod("ghcr.io/ab/app-web:1"), namespace="tool-a", now=NOW).allowed


@given(
    st.text(alphabet="ab-*?[]", max_size=3),
    st.sampled_from(PLACEHOLDERS),
    st.text(alphabet="ab-*?[]!", max_size=3),
    st.from_regex(r"tool-[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?", fullmatch=True),
    st.from_regex(r"[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?", fullmatch=True),
)
def test_a_filled_in_segment_matches_the_namespaces_own_name_and_nothing_else(
    before: str, placeholder: str, after: str, namespace: str, other: str
) -> None:
    """Whatever sits beside a placeholder: the entry is refused at load, or its filled-in segment is
    one literal name (no other namespace's name, no other string, matches it)."""
    entry = f"ghcr.io/{before}{placeholder}{after}/app"
    globbed = bool(GLOB_CHARACTERS & set(before + after))
    assert (template_problem(entry) is not None) is globbed
    if globbed:
        assert fill_placeholders(entry, namespace) is None  # and no caller that forgot the check widens it
        with pytest.raises(PolicyError):
            load_policy(f"{POLICY_HEADER}trusted: [{entry!r}]\n")
        return
    try:
        policy = load_policy(f"{POLICY_HEADER}trusted: [{entry!r}]\n")
    except PolicyError as exc:
        assert "beside the glob" not in str(exc)  # refused for another reason (an invalid segment)
        return
    (pattern,) = policy.trusted.resolved(namespace).patterns
    own = fill_placeholders(entry, namespace)
    assert own is not None and not pattern.has_glob
    segment = own.split("/")[1]
    assert pattern.matches(parse_docker_ref(f"ghcr.io/{segment}/app:1"))
    name = other if other != segment else other + "x"
    assert not pattern.matches(parse_docker_ref(f"ghcr.io/{name}/app:1"))


def test_check_and_the_webhook_refuse_a_grant_with_a_glob_beside_a_placeholder(tmp_path: Path) -> None:
    """As a tool might ask for it: a grant for tool-a reading ghcr.io/{tool}?, to run tool-ab's images."""
    (tmp_path / "policy.yaml").write_text(f"{POLICY_HEADER}trusted: [docker-registry.svc.toolforge.org]\n")
    (tmp_path / "grants.yaml").write_text(
        f"{GRANTS_HEADER}grants:\n  - namespace: tool-a\n    registries: ['ghcr.io/{{tool}}?']\n"
    )
    (tmp_path / "pod.yaml").write_text(
        json.dumps({**pod("ghcr.io/ab/x:1"), "metadata": {"name": "p", "namespace": "tool-a"}})
    )
    args = ("-p", str(tmp_path / "policy.yaml"), "--grants", str(tmp_path / "grants.yaml"))
    checked = run_imagegate("check", str(tmp_path / "pod.yaml"), *args)
    assert checked.returncode == 2, checked.stdout + checked.stderr
    assert "grants[0].registries[0]" in checked.stderr and "ghcr.io/{tool}?" in checked.stderr
    with run_webhook(
        tmp_path, policy=tmp_path / "policy.yaml", grants=tmp_path / "grants.yaml", expect_ready=503
    ) as webhook:
        client = webhook.client()
        answer = client.post("/validate", json=admission_review(pod("ghcr.io/ab/x:1"), "tool-a")).json()["response"]
        assert not answer["allowed"]
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "beside the glob character" in ready.text
