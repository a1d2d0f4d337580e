"""Decisions over every pod-bearing kind and every place an image can hide."""

from __future__ import annotations

import copy
import datetime as dt
import textwrap
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagegate.core import records
from imagegate.core.decide import BaseImageVerdict, Rule, decide
from imagegate.core.policy import Mode, Policy, load_policy
from imagegate.core.questions import BaseQuestion
from imagegate.core.reference import parse_docker_ref
from imagegate.core.workloads import POD_TEMPLATE_PATHS
from tests.conftest import POLICY_HEADER

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
TRUSTED = "docker-registry.svc.toolforge.org/toolforge-python311:latest"

POLICY = load_policy(
    textwrap.dedent(
        """
        apiVersion: imagegate.toolforge.org/v1
        kind: ImagePolicy
        trusted:
          - docker-registry.svc.toolforge.org
          - tools-harbor.wmcloud.org/toolforge
        blocked:
          - k8s.gcr.io
        byoc:
          default: deny
          grants:
            - namespace: tool-granted
              registries: [ghcr.io/granted]
              expires: 2026-12-31
              ticket: T100
            - namespace: tool-anything
            - namespace: tool-expired
              expires: 2026-10-01
              ticket: T99
            - namespace: tool-warned
              registries: [quay.io/w]
              mode: warn
            - namespace: tool-audited
              registries: [quay.io/a]
              mode: audit
            - namespace: tool-based
              requireBaseImage: true
        namespaces:
          exclude: [kube-system]
        """
    ),
    "test-policy.yaml",
)


def pod_spec(**lists: list[dict[str, Any]]) -> dict[str, Any]:
    return {key: value for key, value in lists.items()}


def wrap(kind: str, spec: dict[str, Any], name: str = "thing") -> dict[str, Any]:
    """An object of ``kind`` carrying ``spec`` as its pod spec."""
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}}
    node = obj
    path = POD_TEMPLATE_PATHS[kind]
    for token in path[:-1]:
        node = node.setdefault(token, {})
    node[path[-1]] = spec
    return obj


def containers(*images: str, field: str = "containers") -> dict[str, Any]:
    return {field: [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]}


def run(obj: dict[str, Any], namespace: str = "tool-x", policy: Policy = POLICY, **kwargs: Any) -> Any:
    return decide(policy, obj, namespace=namespace, now=NOW, **kwargs)


ALL_KINDS = sorted(POD_TEMPLATE_PATHS)
ALL_LISTS = ["containers", "initContainers", "ephemeralContainers"]


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("field", ALL_LISTS)
def test_every_kind_and_container_list_is_checked(kind: str, field: str) -> None:
    spec = containers(TRUSTED, "nginx", field=field)
    decision = run(wrap(kind, spec))
    assert not decision.allowed
    (violation,) = decision.violations
    assert violation.rule == Rule.UNTRUSTED_REGISTRY
    assert violation.subject.name == "c1" and violation.subject.image == "nginx"
    assert "docker.io/library/nginx:latest" in violation.message
    assert decision.message().startswith(f"imagegate denied {kind} tool-x/thing: 1 violation: ")
    allowed = run(wrap(kind, containers(TRUSTED, field=field)))
    assert allowed.allowed and allowed.verdicts[0].allowed_by == "trusted docker-registry.svc.toolforge.org"


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_image_volumes_are_checked(kind: str) -> None:
    spec = containers(TRUSTED)
    spec["volumes"] = [
        {"name": "data", "emptyDir": {}},
        {"name": "model", "image": {"reference": "ghcr.io/evil/model:1", "pullPolicy": "Always"}},
    ]
    decision = run(wrap(kind, spec))
    (violation,) = decision.violations
    assert violation.subject.kind == "imageVolume" and violation.subject.name == "model"
    assert violation.subject.pointer.endswith("/volumes/1/image/reference")
    assert 'volume "model"' in violation.message


def test_one_message_lists_every_violation() -> None:
    spec = containers("nginx", "ghcr.io/x/y:1")
    spec.update(containers("busybox", field="initContainers"))
    decision = run(wrap("Pod", spec))
    assert len(decision.violations) == 3
    message = decision.message()
    assert "3 violations" in message
    for text in ('container "c0"', 'container "c1"', 'initContainer "c0"'):
        assert text in message


@pytest.mark.parametrize(
    "image",
    [
        "busybox",  # Docker Hub official image hidden in an init container
        "docker.io/library/busybox",
        "index.docker.io/busybox",
        "docker-registry.svc.toolforge.org.evil.com/x",  # prefix attack on the registry
        "docker-registry.svc.toolforge.org:5000/x",  # another port is another registry
        "tools-harbor.wmcloud.org/toolforge-evil/x",  # prefix attack on the path
        "tools-harbor.wmcloud.org/other/toolforge/x",
        "evil.com/docker-registry.svc.toolforge.org/x",
        "evil.com/tools-harbor.wmcloud.org/toolforge",
    ],
)
def test_bypasses_peers_suffered_are_denied(image: str) -> None:
    spec = containers(TRUSTED)
    spec.update(containers(image, field="initContainers"))
    decision = run(wrap("Pod", spec))
    assert [v.subject.image for v in decision.violations] == [image]


@pytest.mark.parametrize(
    "image",
    [
        "Docker-Registry.SVC.toolforge.org/x:1",  # registry names are case-insensitive
        "docker-registry.svc.toolforge.org/x@sha256:" + "a" * 64,
        "docker-registry.svc.toolforge.org/x:1@sha256:" + "a" * 64,
        "tools-harbor.wmcloud.org/toolforge/deep/path/x:1",
    ],
)
def test_trusted_spellings_are_allowed(image: str) -> None:
    assert run(wrap("Pod", containers(image))).allowed


@pytest.mark.parametrize(
    ("image", "complaint"),
    [
        ("", "is empty"),
        ("Docker-Registry.svc.toolforge.org/UPPER/x", "must be lowercase"),
        ("docker-registry.svc.toolforge.org/x@sha256:abc", "invalid reference format"),
        ("docker-registry.svc.toolforge.org/x@sha256:" + "A" * 64, "invalid checksum digest format"),
        ("docker-registry.svc.toolforge.org/x@md5:" + "a" * 32, "unsupported digest algorithm"),
        ("docker-registry.svc.toolforge.org/x:bad tag", "invalid reference format"),
        ("docker-registry.svc.toolforge.org/x\n", "invalid reference format"),
        ("a" * 5000, "longer than"),
        ("0" * 64, "64-byte hexadecimal"),
    ],
)
def test_invalid_references_are_denied_with_the_reason(image: str, complaint: str) -> None:
    decision = run(wrap("Pod", containers(image)))
    (violation,) = decision.violations
    assert violation.rule == Rule.INVALID_REFERENCE
    assert complaint in violation.message


def test_blocked_beats_trusted_and_grants() -> None:
    policy = load_policy(POLICY_HEADER + "trusted: [k8s.gcr.io]\nblocked: [k8s.gcr.io/bad]\nbyoc: {default: allow}\n")
    decision = run(wrap("Pod", containers("k8s.gcr.io/bad/x", "k8s.gcr.io/good/x")), policy=policy)
    assert [(v.rule, v.subject.image) for v in decision.violations] == [(Rule.BLOCKED_REGISTRY, "k8s.gcr.io/bad/x")]
    granted = run(wrap("Pod", containers("k8s.gcr.io/pause:3")), namespace="tool-anything")
    assert granted.violations[0].rule == Rule.BLOCKED_REGISTRY


def test_grant_limited_to_registries() -> None:
    ok = run(wrap("Pod", containers("ghcr.io/granted/app:1", TRUSTED)), namespace="tool-granted")
    assert ok.allowed
    assert "grant for tool-granted" in ok.verdicts[0].allowed_by
    outside = run(wrap("Pod", containers("ghcr.io/grantedevil/app:1")), namespace="tool-granted")
    (violation,) = outside.violations
    assert violation.rule == Rule.OUTSIDE_GRANT
    assert "ghcr.io/granted" in violation.message


def test_grant_without_registries_allows_any_registry() -> None:
    assert run(wrap("Pod", containers("nginx", "quay.io/x/y:2")), namespace="tool-anything").allowed


def test_grants_apply_only_to_their_namespace() -> None:
    decision = run(wrap("Pod", containers("ghcr.io/granted/app:1")), namespace="tool-other")
    assert decision.violations[0].rule == Rule.UNTRUSTED_REGISTRY
    assert "namespace tool-other has no BYOC grant" in decision.message()


def test_expired_grant_behaves_as_none_and_says_when() -> None:
    decision = run(wrap("Pod", containers("nginx")), namespace="tool-expired")
    (violation,) = decision.violations
    assert violation.rule == Rule.UNTRUSTED_REGISTRY
    assert "the BYOC grant for namespace tool-expired expired on 2026-10-01" in violation.message
    assert "ticket T99" in violation.message
    # the same grant the day before it expired
    before = decide(
        POLICY,
        wrap("Pod", containers("nginx")),
        namespace="tool-expired",
        now=dt.datetime(2026, 10, 1, 23, 0, tzinfo=dt.UTC),
    )
    assert before.allowed


MODES_POLICY = load_policy(
    textwrap.dedent(
        """
        apiVersion: imagegate.toolforge.org/v1
        kind: ImagePolicy
        trusted: [registry.org]
        blocked: [k8s.gcr.io, quay.io/w/banned]
        tags: {disallow: [latest]}
        byoc:
          grants:
            - {namespace: tool-warned, registries: [quay.io/w, k8s.gcr.io], mode: warn}
            - {namespace: tool-audited, registries: [quay.io/a], mode: audit}
            - {namespace: tool-open, mode: warn}
        podSecurity: {level: restricted}
        """
    )
)


def test_a_grants_mode_applies_to_the_images_it_admits() -> None:
    """What the grant lets in: its findings (here a disallowed tag) take the grant's mode."""
    warned = run(wrap("Pod", containers("quay.io/w/app:latest")), namespace="tool-warned", policy=MODES_POLICY)
    assert warned.allowed and [(f.rule, f.mode) for f in warned.warnings] == [(Rule.DISALLOWED_TAG, Mode.WARN)]
    audited = run(wrap("Pod", containers("quay.io/a/app:latest")), namespace="tool-audited", policy=MODES_POLICY)
    assert audited.allowed and not audited.warnings and [f.mode for f in audited.audits] == [Mode.AUDIT]
    # the policy's own mode covers everything else
    policy = load_policy(POLICY_HEADER + "mode: warn\ntrusted: [registry.org]\n")
    assert run(wrap("Pod", containers("nginx")), policy=policy).warnings


@pytest.mark.parametrize(
    ("namespace", "image", "rule"),
    [
        # Deliberate change (issue 13): these were warnings while a mode: warn grant was active.
        # The apiserver-v1.32 capture pod-create-warn.json (quay.io/someone/app:1 in tool-warn, a
        # warn grant for 127.0.0.1:5000/byoc) was allowed with a warning then; it is denied now.
        ("tool-warned", "ghcr.io/elsewhere/app:1", Rule.OUTSIDE_GRANT),
        ("tool-audited", "quay.io/w/app:1", Rule.OUTSIDE_GRANT),
        ("tool-warned", "registry.org/app:latest", Rule.DISALLOWED_TAG),  # trusted: not the grant's
        ("tool-warned", "k8s.gcr.io/pause:3.9", Rule.BLOCKED_REGISTRY),  # blocked, though the grant names it
        ("tool-warned", "quay.io/w/banned/x:1", Rule.BLOCKED_REGISTRY),  # blocked inside the granted registry
        ("tool-open", "k8s.gcr.io/pause:3.9", Rule.BLOCKED_REGISTRY),  # a grant for any registry
    ],
)
def test_a_grants_mode_does_not_reach_what_it_does_not_admit(namespace: str, image: str, rule: str) -> None:
    decision = run(wrap("Pod", containers(image)), namespace=namespace, policy=MODES_POLICY)
    assert not decision.allowed
    assert [f.rule for f in decision.violations] == [rule]


def test_a_grants_mode_does_not_reach_pod_security() -> None:
    pod = wrap(
        "Pod", {"containers": [{"name": "c", "image": "quay.io/w/app:1", "securityContext": {"privileged": True}}]}
    )
    decision = run(pod, namespace="tool-warned", policy=MODES_POLICY)
    assert not decision.allowed and "pod-security:privileged" in {f.rule for f in decision.violations}


@pytest.mark.parametrize("policy_mode", ["enforce", "warn", "audit"])
@pytest.mark.parametrize("grant_mode", ["enforce", "warn", "audit", None])
def test_blocked_means_blocked_in_every_mode(policy_mode: str, grant_mode: str | None) -> None:
    grant = "{namespace: tool-x" + (f", mode: {grant_mode}" if grant_mode else "") + "}"
    policy = load_policy(
        f"{POLICY_HEADER}mode: {policy_mode}\nblocked: [docker.io]\nbyoc: {{default: allow, grants: [{grant}]}}\n"
    )
    for image in ("nginx", "docker.io/library/nginx:1", "index.docker.io/x/y"):
        decision = run(wrap("Pod", containers(image)), policy=policy)
        assert not decision.allowed, (image, decision.findings)
        assert [(f.rule, f.mode) for f in decision.violations] == [(Rule.BLOCKED_REGISTRY, Mode.ENFORCE)]


def test_byoc_default_allow_opens_the_gate_but_not_blocked() -> None:
    policy = load_policy(
        POLICY_HEADER + "trusted: [registry.org]\nblocked: [docker.io/library/bad]\nbyoc: {default: allow}\n"
    )
    decision = run(wrap("Pod", containers("nginx", "bad")), policy=policy)
    assert [v.subject.image for v in decision.violations] == ["bad"]
    assert decision.verdicts[0].allowed_by == "byoc default allow"


def test_namespace_scope() -> None:
    decision = run(wrap("Pod", containers("nginx")), namespace="kube-system")
    assert decision.allowed and not decision.governed and not decision.verdicts
    policy = load_policy(
        POLICY_HEADER + "trusted: [registry.org]\nnamespaces:\n  include: ['tool-*']\n"
        "  selector: {matchLabels: {toolforge.org/tool: 'true'}}\n"
    )
    obj = wrap("Pod", containers("nginx"))
    assert not run(obj, namespace="default", policy=policy).governed
    assert not run(obj, namespace="tool-a", policy=policy, namespace_labels={}).governed
    assert not run(obj, namespace="tool-a", policy=policy, namespace_labels={"toolforge.org/tool": "true"}).allowed
    # labels unknown: governed (fail closed)
    assert not run(obj, namespace="tool-a", policy=policy).allowed


def test_ephemeral_container_added_by_update_is_checked() -> None:
    """kubectl debug: UPDATE of pods/ephemeralcontainers adds one container to a running pod."""
    old = wrap("Pod", containers(TRUSTED))
    new = copy.deepcopy(old)
    new["spec"]["ephemeralContainers"] = [{"name": "debugger", "image": "busybox:1.35", "targetContainerName": "c0"}]
    decision = run(new, old_object=old)
    (violation,) = decision.violations
    assert violation.subject.kind == "ephemeralContainer" and violation.subject.name == "debugger"
    trusted_debug = copy.deepcopy(old)
    trusted_debug["spec"]["ephemeralContainers"] = [{"name": "debugger", "image": TRUSTED}]
    assert run(trusted_debug, old_object=old).allowed


def test_update_judges_only_new_or_changed_images() -> None:
    old = wrap("Deployment", containers("nginx"))
    same = copy.deepcopy(old)
    same["spec"]["replicas"] = 3
    decision = run(same, old_object=old)
    assert decision.allowed
    assert decision.verdicts[0].allowed_by == "unchanged by this update"
    changed = copy.deepcopy(old)
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.27"
    assert not run(changed, old_object=old).allowed
    # moving an image into another list is a change too
    moved = wrap("Deployment", containers("nginx", field="initContainers"))
    assert not run(moved, old_object=old).allowed


@pytest.mark.parametrize(
    ("obj", "where"),
    [
        ({"kind": "Pod", "spec": {"containers": "nginx"}}, "/spec/containers"),
        ({"kind": "Pod", "spec": {"containers": [5]}}, "/spec/containers/0"),
        ({"kind": "Pod", "spec": {"containers": [{"name": "a", "image": 5}]}}, "/spec/containers/0/image"),
        ({"kind": "Pod", "spec": []}, "/spec"),
        ({"kind": "Deployment", "spec": {"template": "x"}}, "/spec/template"),
        (
            {"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": 1}}}}},
            "/spec/jobTemplate",
        ),
        ({"kind": "Pod", "spec": {"volumes": [{"name": "v", "image": "nginx"}]}}, "/spec/volumes/0/image"),
    ],
)
def test_malformed_objects_are_denied_not_crashed(obj: dict[str, Any], where: str) -> None:
    decision = run(obj)
    (violation,) = decision.violations
    assert violation.rule == Rule.MALFORMED_OBJECT
    assert where in violation.message


def test_kinds_without_pods_are_allowed() -> None:
    assert run({"kind": "ConfigMap", "data": {"image": "nginx"}}).allowed


def test_required_base_image_fails_closed_without_a_verdict() -> None:
    decision = run(wrap("Pod", containers("ghcr.io/x/app:1", TRUSTED)), namespace="tool-based")
    (violation,) = decision.violations
    assert violation.rule == Rule.BASE_IMAGE_UNVERIFIED
    asked = BaseQuestion(parse_docker_ref("ghcr.io/x/app:1"))
    assert decision.asked(BaseQuestion) == (asked,)
    verdicts = records.Answers({asked: BaseImageVerdict(True, "toolforge-bullseye (3 layers)")})
    assert run(wrap("Pod", containers("ghcr.io/x/app:1")), namespace="tool-based", answers=verdicts).allowed
    bad = records.Answers({asked: BaseImageVerdict(False, "layer 2 differs from toolforge-bullseye")})
    denied = run(wrap("Pod", containers("ghcr.io/x/app:1")), namespace="tool-based", answers=bad)
    assert denied.violations[0].rule == Rule.BASE_IMAGE_MISMATCH
    assert "layer 2 differs" in denied.message()


def test_the_records_a_decision_is_made_of_are_immutable() -> None:
    # They are shared (cached, counted, logged) after they are made. A compiled build
    # (scripts/test.sh runs this file on one) loses frozen=True if a Struct moves into a
    # module mypyc compiles, so this also guards setup.py's split.
    use = records.ImageUse("container", "app", "nginx", "/spec/containers/0/image")
    finding = records.Finding(use, "untrusted-registry", "is not trusted", records.Mode.ENFORCE)
    made = [
        use,
        finding,
        records.CheckResult("privileged", "privileged", "container app"),
        records.BaseImageVerdict(True, "ok"),
        records.ImageVerdict(use, "docker.io/library/nginx:latest"),
        records.Decision("Pod", "p", "ns", True, findings=(finding,)),
    ]
    for record in made:
        assert isinstance(record, msgspec.Struct) and record.__struct_config__.frozen, type(record)
        field = msgspec.structs.fields(record)[0].name
        with pytest.raises(AttributeError):
            setattr(record, field, None)
        hash(record)


BLOCKED_IMAGES = st.builds(
    lambda registry, path, suffix: f"{registry}/{path}{suffix}",
    st.sampled_from(["k8s.gcr.io", "K8S.gcr.io", "quay.io/w/banned"]),
    st.from_regex(r"[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,2}", fullmatch=True),
    st.sampled_from(["", ":1", ":latest", "@sha256:" + "b" * 64, ":1@sha256:" + "c" * 64]),
)
MODES = st.sampled_from([None, "enforce", "warn", "audit"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    image=BLOCKED_IMAGES,
    policy_mode=MODES,
    grant_mode=MODES,
    registries=st.sampled_from([None, ["k8s.gcr.io"], ["quay.io/w"], ["quay.io"], ["ghcr.io/x"]]),
    byoc_default=st.sampled_from(["deny", "allow"]),
    field=st.sampled_from(["containers", "initContainers", "ephemeralContainers"]),
    kind=st.sampled_from(ALL_KINDS),
)
def test_no_mode_or_grant_admits_a_blocked_image(
    image: str,
    policy_mode: str | None,
    grant_mode: str | None,
    registries: list[str] | None,
    byoc_default: str,
    field: str,
    kind: str,
) -> None:
    """Property: an image from a blocked entry is denied, whatever the modes and grants say."""
    grant: dict[str, Any] = {"namespace": "tool-x"}
    if grant_mode:
        grant["mode"] = grant_mode
    if registries:
        grant["registries"] = registries
    document: dict[str, Any] = {
        "apiVersion": "imagegate.toolforge.org/v1",
        "kind": "ImagePolicy",
        "trusted": ["k8s.gcr.io", "quay.io"],  # trusted too: blocked still wins
        "blocked": ["k8s.gcr.io", "quay.io/w/banned"],
        "byoc": {"default": byoc_default, "grants": [grant]},
    }
    if policy_mode:
        document["mode"] = policy_mode
    policy = load_policy(msgspec.json.encode(document).decode())
    spec = containers(TRUSTED, image, field=field)
    if field != "containers":
        spec["containers"] = [{"name": "main", "image": TRUSTED}]
    decision = run(wrap(kind, spec), policy=policy)
    assert not decision.allowed
    assert Rule.BLOCKED_REGISTRY in {f.rule for f in decision.violations}
