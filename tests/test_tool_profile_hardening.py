"""The tool profile holds at every Pod Security level: attacks from inside a tool namespace.

Issue 13: with a tool namespace overridden to ``baseline``, a pod could keep privilege
escalation and the default capabilities (a setuid binary in a custom image becomes root and
can switch to any tool's uid); under ``privileged``, ``privileged: true`` passed; the image's
/etc/group could add another tool's gid (``supplementalGroupsPolicy``); any CSI driver could be
mounted inline. Each attack is tried at every level, in every container list and every
pod-bearing kind, and the v1.32 API server captures show what a cluster that drops
``supplementalGroupsPolicy`` gets in each mode of ``whenDropped``.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import textwrap
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagegate.core.admission import decode_review, review
from imagegate.core.decide import Decision, decide
from imagegate.core.policy import Mode, Policy, PolicyError, load_policy
from imagegate.core.records import Webhook
from imagegate.core.workloads import POD_TEMPLATE_PATHS, pod_specs
from tests.conftest import POLICY_HEADER, REPO_ROOT, admission_review, run_imagegate
from tests.test_decide import wrap
from tests.webhook_process import run_webhook

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
IMAGE = "docker-registry.svc.toolforge.org/toolforge-python311:latest"
UID = 52503
LEVELS = ("privileged", "baseline", "restricted")
LISTS = ("containers", "initContainers", "ephemeralContainers")
KINDS = sorted(POD_TEMPLATE_PATHS)


def policy_at(level: str, *, when_dropped: str = "deny", csi: str = "[]", mutate: bool = True) -> Policy:
    """A tool namespace whose Pod Security level is overridden to ``level``."""
    return load_policy(
        POLICY_HEADER
        + textwrap.dedent(
            f"""
            trusted: [docker-registry.svc.toolforge.org]
            podSecurity:
              level: restricted
              mutate: {str(mutate).lower()}
              overrides:
                - {{namespaces: [tool-example], level: {level}}}
              toolProfile:
                identities: {{tool-example: {{uid: {UID}}}}}
                csiDrivers: {csi}
                supplementalGroupsPolicy: {{whenDropped: {when_dropped}}}
            """
        )
    )


def compliant_spec(field: str = "containers", context: dict[str, Any] | None = None) -> dict[str, Any]:
    """A tool pod as /mutate leaves it, with one container in ``field`` carrying ``context``."""
    safe = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    spec: dict[str, Any] = {
        "securityContext": {
            "runAsUser": UID,
            "runAsGroup": UID,
            "fsGroup": UID,
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
            "supplementalGroupsPolicy": "Strict",
        },
        "containers": [{"name": "main", "image": IMAGE, "securityContext": copy.deepcopy(safe)}],
    }
    attacker = {"name": "x", "image": IMAGE, "securityContext": safe if context is None else context}
    spec.setdefault(field, []).append(attacker)
    return spec


def judged(policy: Policy, obj: dict[str, Any], **kw: Any) -> Decision:
    """As the validating webhook judges it: the object as sent, no imagined mutation."""
    return decide(policy, obj, namespace="tool-example", now=NOW, webhook=Webhook.VALIDATE, **kw)


def rules(decision: Decision) -> set[str]:
    return {f.rule for f in decision.violations}


def test_the_compliant_pod_passes_at_every_level() -> None:
    for level in LEVELS:
        for field in LISTS:
            decision = judged(policy_at(level), wrap("Pod", compliant_spec(field)))
            assert decision.allowed, (level, field, decision.message())


ATTACKS = [
    # (securityContext of one container, the rule that must stop it)
    ({"allowPrivilegeEscalation": True, "capabilities": {"drop": ["ALL"]}}, "tool-profile:allowPrivilegeEscalation"),
    ({"capabilities": {"drop": ["ALL"]}}, "tool-profile:allowPrivilegeEscalation"),  # unset: the runtime allows it
    ({"allowPrivilegeEscalation": False}, "tool-profile:capabilities"),  # the runtime's default capabilities
    ({"allowPrivilegeEscalation": False, "capabilities": {"drop": ["NET_RAW"]}}, "tool-profile:capabilities"),
    ({"allowPrivilegeEscalation": False, "capabilities": {"drop": "ALL"}}, "tool-profile:capabilities"),
    ({"allowPrivilegeEscalation": False, "capabilities": {"drop": ["all"]}}, "tool-profile:capabilities"),
    (
        {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"], "add": ["SETUID"]}},
        "tool-profile:capabilities",
    ),
    (
        {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}},
        "tool-profile:capabilities",
    ),
    (
        {"privileged": True, "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        "tool-profile:privileged",
    ),
    ({"privileged": True}, "tool-profile:privileged"),
    # A capability list of the wrong type (an offline manifest; the API server refuses it) adds itself.
    (
        {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"], "add": "SYS_ADMIN"}},
        "tool-profile:capabilities",
    ),
    (
        {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"], "add": {"x": 1}}},
        "tool-profile:capabilities",
    ),
    ("not a mapping", "tool-profile:allowPrivilegeEscalation"),
]


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("field", LISTS)
@pytest.mark.parametrize(("context", "rule"), ATTACKS)
def test_privilege_attacks_fail_at_every_level_and_in_every_list(
    level: str, field: str, context: Any, rule: str
) -> None:
    decision = judged(policy_at(level), wrap("Pod", compliant_spec(field, context)))
    assert not decision.allowed
    assert rule in rules(decision), decision.message()
    assert 'container "x"' in decision.message()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("level", ["privileged", "baseline"])
def test_privilege_attacks_fail_in_every_kind(kind: str, level: str) -> None:
    spec = compliant_spec("initContainers", {"allowPrivilegeEscalation": True, "privileged": True})
    decision = judged(policy_at(level), wrap(kind, spec))
    assert {"tool-profile:allowPrivilegeEscalation", "tool-profile:privileged", "tool-profile:capabilities"} <= rules(
        decision
    )


def test_a_windows_pod_does_not_escape_the_profile() -> None:
    """PSS restricted exempts os.name=windows from these checks; the tool profile does not."""
    spec = compliant_spec("containers", {})
    spec["os"] = {"name": "windows"}
    decision = judged(policy_at("restricted"), wrap("Pod", spec))
    assert {"tool-profile:allowPrivilegeEscalation", "tool-profile:capabilities"} <= rules(decision)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("kind", KINDS)
def test_mutation_fills_the_safe_values_at_every_level(level: str, kind: str) -> None:
    spec: dict[str, Any] = {field: [{"name": field, "image": IMAGE}] for field in LISTS}
    obj = wrap(kind, spec)
    decision = decide(policy_at(level), obj, namespace="tool-example", now=NOW)
    assert decision.allowed, decision.message()
    patched = jsonpatch.apply_patch(obj, list(decision.patches))
    ((_pointer, patched_spec),) = pod_specs(patched)
    assert patched_spec["securityContext"]["supplementalGroupsPolicy"] == "Strict"
    for field in LISTS:
        context = patched_spec[field][0]["securityContext"]
        assert context == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    assert judged(policy_at(level), patched).allowed  # what the validating webhook then sees


def test_mutation_never_overwrites_a_forbidden_value() -> None:
    spec = compliant_spec("containers", {"allowPrivilegeEscalation": True, "capabilities": {"drop": ["NET_RAW"]}})
    spec["securityContext"]["supplementalGroupsPolicy"] = "Merge"
    decision = decide(policy_at("baseline"), wrap("Pod", spec), namespace="tool-example", now=NOW)
    assert decision.patches == ()
    assert {
        "tool-profile:allowPrivilegeEscalation",
        "tool-profile:capabilities",
        "tool-profile:supplementalGroupsPolicy",
    } <= rules(decision)


# --- seccomp: RuntimeDefault, set, at every level (issue 27 item 5) ------------------------------


def without_seccomp(field: str = "containers") -> dict[str, Any]:
    """A tool pod with no seccompProfile anywhere: what a tool sends where nothing mutates."""
    spec = compliant_spec(field)
    del spec["securityContext"]["seccompProfile"]
    return spec


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("field", LISTS)
def test_unset_seccomp_is_denied_where_nothing_fills_it_in(level: str, field: str) -> None:
    """baseline and privileged allow an unset seccompProfile (the container runs Unconfined); the tool
    profile does not. With mutate: false, or only the validating webhook installed, /validate and
    check see it unset."""
    obj = wrap("Pod", without_seccomp(field))
    for policy in (policy_at(level, mutate=False), policy_at(level)):  # /validate judges what it is sent
        decision = judged(policy, obj)
        assert not decision.allowed and rules(decision) == {"tool-profile:seccompProfile"}, decision.message()
        (finding,) = decision.findings
        assert 'must set securityContext.seccompProfile.type="RuntimeDefault"' in finding.message
        assert '"main"' in finding.message and '"x"' in finding.message  # each container it leaves unset
    # check and audit with mutate: false imagine no mutation either
    checked = decide(policy_at(level, mutate=False), obj, namespace="tool-example", now=NOW)
    assert not checked.allowed and checked.patches == ()


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("kind", KINDS)
def test_where_mutate_fills_seccomp_in_validate_sees_it_set(level: str, kind: str) -> None:
    obj = wrap(kind, without_seccomp("initContainers"))
    decision = decide(policy_at(level), obj, namespace="tool-example", now=NOW)
    assert decision.allowed, decision.message()
    patched = jsonpatch.apply_patch(obj, list(decision.patches))
    ((_pointer, spec),) = pod_specs(patched)
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert judged(policy_at(level), patched).allowed


@pytest.mark.parametrize(
    ("pod_profile", "container_profiles", "allowed"),
    [
        (None, [{"type": "RuntimeDefault"}, {"type": "RuntimeDefault"}], True),  # each container its own
        (None, [{"type": "RuntimeDefault"}, None], False),  # one left to a pod that sets nothing
        (None, [{"type": "RuntimeDefault"}, {}], False),  # a profile without a type is no profile
        ({}, [None, None], False),
        ({"type": "RuntimeDefault"}, [None, {"type": "RuntimeDefault"}], True),
        ({"type": "RuntimeDefault"}, [None, {"type": "Localhost", "localhostProfile": "p.json"}], False),
        ({"type": "Unconfined"}, [{"type": "RuntimeDefault"}, {"type": "RuntimeDefault"}], False),
        ("RuntimeDefault", [None, None], False),  # not a mapping: unset, as the API server would refuse it
    ],
)
@pytest.mark.parametrize("level", ["privileged", "baseline"])
def test_the_seccomp_each_container_runs_with_must_be_runtime_default(
    pod_profile: Any, container_profiles: list[Any], allowed: bool, level: str
) -> None:
    spec = without_seccomp()
    if pod_profile is not None:
        spec["securityContext"]["seccompProfile"] = pod_profile
    for container, profile in zip(spec["containers"], container_profiles, strict=True):
        if profile is not None:
            container["securityContext"]["seccompProfile"] = profile
    decision = judged(policy_at(level, mutate=False), wrap("Pod", spec))
    assert decision.allowed is allowed, decision.message()
    assert allowed or rules(decision) == {"tool-profile:seccompProfile"}


def test_the_webhook_and_check_deny_unset_seccomp_under_an_override(tmp_path: Path) -> None:
    """As a tool sends it: a pod with no seccompProfile, in a namespace overridden to baseline or
    privileged, through the real webhook; mutate: false (and mutate: true, /mutate's patch applied)."""
    policies = {}
    for mutate in (False, True):
        text = POLICY_HEADER + textwrap.dedent(
            f"""
            trusted: [docker-registry.svc.toolforge.org]
            podSecurity:
              mutate: {str(mutate).lower()}
              overrides:
                - {{namespaces: [tool-base], level: baseline}}
                - {{namespaces: [tool-priv], level: privileged}}
              toolProfile:
                identities: {{tool-base: {{uid: {UID}}}, tool-priv: {{uid: {UID}}}}}
            """
        )
        policies[mutate] = tmp_path / f"policy-{mutate}.yaml"
        policies[mutate].write_text(text)
    pod = wrap("Pod", without_seccomp())
    pod["metadata"] = {"name": "p"}
    for mutate, policy in policies.items():
        with run_webhook(tmp_path / str(mutate), policy=policy) as webhook:
            client = webhook.client()
            for namespace in ("tool-base", "tool-priv"):
                sent = pod
                if mutate:  # as the API server does: /mutate's patch, then /validate
                    answer = client.post("/mutate", json=admission_review(pod, namespace)).json()["response"]
                    sent = jsonpatch.apply_patch(pod, json.loads(base64.b64decode(answer["patch"])))
                answer = client.post("/validate", json=admission_review(sent, namespace)).json()["response"]
                assert answer["allowed"] is mutate, (namespace, answer)
                if not mutate:
                    assert "tool-profile:seccompProfile " in answer["auditAnnotations"]["findings"], answer
        manifest = tmp_path / "pod.json"
        manifest.write_text(json.dumps({**pod, "metadata": {"name": "p", "namespace": "tool-base"}}))
        checked = run_imagegate("check", str(manifest), "-p", str(policy), "-o", "json")
        assert checked.returncode == (0 if mutate else 1), checked.stdout + checked.stderr
        rules_found = {v["rule"] for o in json.loads(checked.stdout)["objects"] for v in o["violations"]}
        assert rules_found == (set() if mutate else {"tool-profile:seccompProfile"})


CONTEXT_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "privileged": st.sampled_from([True, False, None, "true", 1]),
    "allowPrivilegeEscalation": st.sampled_from([True, False, None, "false", 0]),
    "capabilities": st.one_of(
        st.none(),
        st.fixed_dictionaries(
            {},
            optional={
                "drop": st.sampled_from([["ALL"], [], ["all"], ["NET_RAW"], "ALL", None, ["ALL", "NET_RAW"]]),
                "add": st.sampled_from([[], None, ["NET_BIND_SERVICE"], ["SYS_ADMIN"], ["SETUID"], "x"]),
            },
        ),
        st.sampled_from(["ALL", [], 1]),
    ),
    "seccompProfile": st.sampled_from(
        [None, {"type": "RuntimeDefault"}, {"type": "Unconfined"}, {"type": "Localhost", "localhostProfile": "p"}, {}]
    ),
}


@st.composite
def tool_pods(draw: st.DrawFn) -> tuple[str, str, dict[str, Any]]:
    level = draw(st.sampled_from(LEVELS))
    kind = draw(st.sampled_from(KINDS))
    spec = compliant_spec()
    pod_seccomp = draw(st.sampled_from([{"type": "RuntimeDefault"}, None, {"type": "Unconfined"}, {}]))
    if pod_seccomp is None:
        del spec["securityContext"]["seccompProfile"]
    else:
        spec["securityContext"]["seccompProfile"] = pod_seccomp
    for field in LISTS:
        for index in range(draw(st.integers(0, 2))):
            context = draw(st.fixed_dictionaries({}, optional=CONTEXT_VALUES))
            container: dict[str, Any] = {"name": f"{field}-{index}", "image": IMAGE}
            if draw(st.booleans()):
                container["securityContext"] = context
            spec.setdefault(field, []).append(container)
    return level, kind, json.loads(json.dumps(spec))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tool_pods(), st.booleans())
def test_whatever_is_admitted_runs_unprivileged(pod: tuple[str, str, dict[str, Any]], mutate: bool) -> None:
    """Property: an admitted tool pod (as the node will run it, after /mutate) has no container that
    is privileged, may escalate, keeps a capability or adds one, or runs with another seccomp profile
    than RuntimeDefault (its own, or the pod's when it sets none), at every level and in every kind."""
    level, kind, spec = pod
    policy = policy_at(level, mutate=mutate)
    obj = wrap(kind, spec)
    decision = decide(policy, obj, namespace="tool-example", now=NOW)
    if not decision.allowed:
        return
    patched = jsonpatch.apply_patch(obj, list(decision.patches))
    assert judged(policy, patched).allowed  # the validating webhook agrees with what /mutate foresaw
    ((_pointer, runs),) = pod_specs(patched)
    for field in LISTS:
        for container in runs.get(field) or []:
            context = container["securityContext"]
            assert context.get("privileged") is None or context["privileged"] is False, context
            assert context["allowPrivilegeEscalation"] is False, context
            assert "ALL" in context["capabilities"]["drop"] and not context["capabilities"].get("add"), context
            runs_with = context.get("seccompProfile") or runs["securityContext"].get("seccompProfile") or {}
            assert runs_with.get("type") == "RuntimeDefault", (runs["securityContext"], context)


# --- supplementalGroupsPolicy -------------------------------------------------------------


@pytest.mark.parametrize("value", ["Merge", "strict", "", 1])
@pytest.mark.parametrize("when_dropped", ["deny", "warn", "audit"])
def test_a_policy_other_than_strict_is_denied(value: Any, when_dropped: str) -> None:
    """Set to anything but Strict: the cluster keeps the field, so whenDropped has no say."""
    spec = compliant_spec()
    spec["securityContext"]["supplementalGroupsPolicy"] = value
    for level in LEVELS:
        decision = judged(policy_at(level, when_dropped=when_dropped), wrap("Pod", spec))
        assert "tool-profile:supplementalGroupsPolicy" in rules(decision), decision.findings
        assert 'only "Strict" is allowed' in decision.message()


@pytest.mark.parametrize(("when_dropped", "mode"), [("deny", Mode.ENFORCE), ("warn", Mode.WARN), ("audit", Mode.AUDIT)])
@pytest.mark.parametrize("kind", KINDS)
def test_an_absent_policy_gets_what_when_dropped_says(when_dropped: str, mode: Mode, kind: str) -> None:
    spec = compliant_spec()
    del spec["securityContext"]["supplementalGroupsPolicy"]
    decision = judged(policy_at("baseline", when_dropped=when_dropped), wrap(kind, spec))
    found = [f for f in decision.findings if f.rule == "tool-profile:supplementalGroupsPolicy"]
    assert [f.mode for f in found] == [mode]
    assert decision.allowed is (mode is not Mode.ENFORCE)
    assert "v1.33" in found[0].message


def test_policy_settings_are_validated() -> None:
    for text, where in [
        ("podSecurity: {toolProfile: {supplementalGroupsPolicy: {whenDropped: allow}}}", "whenDropped"),
        ("podSecurity: {toolProfile: {supplementalGroupsPolicy: {whenMissing: warn}}}", "whenMissing"),
        ("podSecurity: {toolProfile: {csiDrivers: ['nfs csi']}}", "podSecurity.toolProfile.csiDrivers[0]"),
        ("podSecurity: {toolProfile: {csiDrivers: ['-nfs']}}", "podSecurity.toolProfile.csiDrivers[0]"),
        ("podSecurity: {toolProfile: {csiDrivers: ['" + "a" * 64 + "']}}", "podSecurity.toolProfile.csiDrivers[0]"),
    ]:
        with pytest.raises(PolicyError) as caught:
            load_policy(POLICY_HEADER + text, "p.yaml")
        assert where in (caught.value.path or ""), str(caught.value)


# The captures of a real kube-apiserver v1.32 (gate SupplementalGroupsPolicy off by default, so it
# drops the field /mutate sets before /validate sees the object): ../shared/fixtures/apiserver-v1.32.
CAPTURES = REPO_ROOT.parent / "shared" / "fixtures" / "apiserver-v1.32"
CAPTURE_POLICY = """
trusted:
  - docker-registry.svc.toolforge.org
  - docker-registry.tools.wmflabs.org
  - tools-harbor.wmcloud.org/toolforge
  - "tools-harbor.wmcloud.org/tool-*"
  - 127.0.0.1:5000/toolforge
namespaces: {include: ["tool-*"]}
byoc: {grants: [{namespace: tool-warn, registries: [127.0.0.1:5000/byoc], mode: warn}]}
pinning: {enabled: true, namespaces: [tool-pin]}
podSecurity:
  level: restricted
  toolProfile:
    identities: {tool-demo: {uid: 50001}, tool-warn: {uid: 50002}, tool-pin: {uid: 50004}}
    hostPaths: [{path: "/data/project/{tool}"}, {path: /public/dumps, readOnly: true}]
    supplementalGroupsPolicy: {whenDropped: WHEN}
"""


def capture_names() -> list[str]:
    found = sorted(path.name for path in (CAPTURES / "validating").glob("*.json"))
    if not found:
        pytest.fail(f"API server captures missing: {CAPTURES}")
    return found


def answer(when_dropped: str, role: str, name: str) -> dict[str, Any]:
    policy = load_policy(POLICY_HEADER + CAPTURE_POLICY.replace("WHEN", when_dropped))
    request = decode_review((CAPTURES / role / name).read_bytes())
    outcome = review(policy, request, now=NOW, webhook=Webhook.MUTATE if role == "mutating" else Webhook.VALIDATE)
    response: dict[str, Any] = json.loads(outcome.body)["response"]
    return response


def without_groups_policy(response: dict[str, Any]) -> tuple[bool, list[str]]:
    """The answer with the supplementalGroupsPolicy finding taken out: what the other rules say."""
    message = response.get("status", {}).get("message", "")
    parts = [p for p in message.split("; ") if "supplementalGroupsPolicy" not in p]
    return response["allowed"], parts


@pytest.mark.parametrize("name", capture_names())
def test_a_v132_cluster_gets_the_mode_the_operator_picked(name: str) -> None:
    """whenDropped: warn lets that cluster's pods through with a warning, audit silently, and deny
    refuses every pod spec it judges; for everything else the three agree."""
    warned, audited, denied = (answer(mode, "validating", name) for mode in ("warn", "audit", "deny"))
    groups_warnings = [w for w in warned.get("warnings", []) if "supplementalGroupsPolicy" in w]
    if not groups_warnings:  # nothing judged (an UPDATE that leaves the pod spec alone)
        assert warned["allowed"] == audited["allowed"] == denied["allowed"]
        return
    assert "v1.33" in groups_warnings[0]
    assert not [w for w in audited.get("warnings", []) if "supplementalGroupsPolicy" in w]
    assert "supplementalGroupsPolicy" in audited["auditAnnotations"]["findings"]
    assert warned["allowed"] == audited["allowed"]
    assert denied["allowed"] is False and "supplementalGroupsPolicy" in denied["status"]["message"]
    if warned["allowed"]:
        assert "untrusted" not in name  # the image rules still decide the rest


def operation(name: str) -> str:
    return str(json.loads((CAPTURES / "validating" / name).read_text())["request"]["operation"])


# pod-create-warn.json names an image outside tool-warn's grant: denied since issue 13 (tests/test_decide.py)
TRUSTED_CREATES = [
    n for n in capture_names() if "untrusted" not in n and n != "pod-create-warn.json" and operation(n) == "CREATE"
]


@pytest.mark.parametrize("name", TRUSTED_CREATES)
def test_a_v132_cluster_admits_its_trusted_pods_with_warn(name: str) -> None:
    assert answer("warn", "validating", name)["allowed"] is True


@pytest.mark.parametrize("name", [n for n in TRUSTED_CREATES if "dryrun" not in n])
def test_mutate_sets_strict_and_the_rest_is_what_v132_kept(name: str) -> None:
    """/mutate adds supplementalGroupsPolicy: Strict; without it (the v1.32 API server drops it) the
    patched object's security contexts are exactly what that API server sent to /validate."""
    request = json.loads((CAPTURES / "mutating" / name).read_text())["request"]
    seen = json.loads((CAPTURES / "validating" / name).read_text())["request"]["object"]
    response = answer("deny", "mutating", name)
    patch = json.loads(base64.b64decode(response["patch"]))
    patched = jsonpatch.apply_patch(request["object"], patch)
    for (pointer, spec), (_same, kept) in zip(pod_specs(patched), pod_specs(seen), strict=True):
        assert spec["securityContext"].pop("supplementalGroupsPolicy") == "Strict", pointer
        assert spec["securityContext"] == kept["securityContext"]
        for field in LISTS:
            for mine, theirs in zip(spec.get(field) or [], kept.get(field) or [], strict=True):
                assert mine.get("securityContext") == theirs.get("securityContext")


# --- CSI inline volumes -------------------------------------------------------------------


def csi_pod(driver: Any, **extra: Any) -> dict[str, Any]:
    spec = compliant_spec()
    spec["volumes"] = [{"name": "share", "csi": {"driver": driver, **extra}}]
    return wrap("Pod", spec)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize(
    "driver", ["nfs.csi.k8s.io", "NFS.csi.k8s.io", "secrets-store.csi.k8s.io.evil", "", None, 7, ["nfs.csi.k8s.io"]]
)
def test_csi_inline_volumes_are_denied_by_default_naming_the_driver(level: str, driver: Any) -> None:
    decision = judged(policy_at(level), csi_pod(driver, volumeAttributes={"server": "nfs", "share": "/"}))
    assert "tool-profile:csi" in rules(decision)
    message = decision.message()
    assert f"uses the CSI driver {driver!r} inline" in message and "allowed: none" in message


def test_csi_allowlist_admits_exactly_its_drivers() -> None:
    policy = policy_at("restricted", csi="[secrets-store.csi.k8s.io]")
    assert judged(policy, csi_pod("secrets-store.csi.k8s.io")).allowed
    for other in ("nfs.csi.k8s.io", "Secrets-Store.csi.k8s.io", "secrets-store.csi.k8s.io "):
        decision = judged(policy, csi_pod(other))
        assert rules(decision) == {"tool-profile:csi"}, other
        assert "allowed: secrets-store.csi.k8s.io" in decision.message()


def test_a_csi_source_beside_another_is_still_judged() -> None:
    obj = csi_pod("nfs.csi.k8s.io")
    obj["spec"]["volumes"][0] = {"name": "share", "emptyDir": {}, "csi": {"driver": "nfs.csi.k8s.io"}}
    assert "tool-profile:csi" in rules(judged(policy_at("restricted"), obj))


def test_csi_outside_tool_namespaces_follows_the_level() -> None:
    policy = policy_at("restricted")
    decision = decide(policy, csi_pod("nfs.csi.k8s.io"), namespace="default", now=NOW)
    assert decision.allowed, decision.message()  # restricted PSS allows csi; the allowlist is the tool profile's
