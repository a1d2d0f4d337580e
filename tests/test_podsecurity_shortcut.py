"""The shortcut for plainly compliant pods never disagrees with the named checks.

``plainly_passes`` may only say "passes" when every check of the level passes; on anything
else it must give up. Held to that on every upstream PSA fixture and on generated pods that
start compliant and get one field changed (the boundary where a shortcut would go wrong).
The copy-on-write mutation is held to a real JSON Patch implementation the same way.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagegate.core.podprofile import Identity, PodProfile, ToolProfile, mutate_pod
from imagegate.core.podsecurity import Level, parse_version
from imagegate.core.podsecurity_shortcut import evaluate, plainly_passes
from imagegate.core.records import Mode
from tests.conftest import CONFORMANCE, load_conformance

LEVELS = (Level.BASELINE, Level.RESTRICTED)
VERSIONS = [parse_version(v) for v in ("v1.25", "v1.30", "v1.31", "v1.33", "v1.35", "latest")]
SKIPS: tuple[frozenset[str], ...] = (
    frozenset(),
    frozenset({"hostPathVolumes", "restrictedVolumes"}),
    frozenset({"restrictedVolumes"}),
)
INDEX = load_conformance("pod-security/index.json")


def assert_agrees(metadata: dict[str, Any], spec: Any) -> None:
    for level in LEVELS:
        for version in VERSIONS:
            for skip in SKIPS:
                failed = evaluate(level, version, metadata, spec, skip=skip, shortcut=False)
                if plainly_passes(level, version, metadata, spec, skip):
                    assert failed == [], (level, version, skip, [f.message for f in failed])
                assert evaluate(level, version, metadata, spec, skip=skip) == failed


@pytest.mark.parametrize("fixture", INDEX["fixtures"], ids=lambda f: f["file"])
def test_shortcut_agrees_on_upstream_fixtures(fixture: dict[str, Any]) -> None:
    pod = yaml.safe_load((CONFORMANCE / "pod-security" / fixture["file"]).read_text())
    assert_agrees(pod.get("metadata") or {}, pod["spec"])


def test_shortcut_takes_the_pods_a_platform_admits() -> None:
    """It is not dead code: compliant tool pods take it."""
    tool_skip = frozenset({"hostPathVolumes", "restrictedVolumes"})
    latest = parse_version("latest")
    for containers in (1, 10):
        spec = compliant_spec(containers)
        assert plainly_passes(Level.RESTRICTED, latest, {"name": "web"}, spec, frozenset())
        spec["volumes"].append({"name": "home", "hostPath": {"path": "/data/project/x", "type": "Directory"}})
        assert plainly_passes(Level.RESTRICTED, latest, {}, spec, tool_skip)
        # with the volume checks on, the hostPath volume means "run the checks" (and they fail)
        assert not plainly_passes(Level.RESTRICTED, latest, {}, spec, frozenset())
        assert [f.check for f in evaluate(Level.RESTRICTED, latest, {}, spec, shortcut=False)] == [
            "hostPathVolumes",
            "restrictedVolumes",
        ]


# deep-copied: the edits below write into dicts they draw, and must not write into these
ANY_VALUE = st.sampled_from(
    [None, True, False, 0, 1, 52503, "", "x", "ALL", [], {}, ["ALL"], ["NET_RAW"], {"a": 1}]
).map(copy.deepcopy)
SECCOMP = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["RuntimeDefault", "Localhost", "Unconfined", "", None, 3])}),
    ANY_VALUE,
)
CAPABILITIES = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "drop": st.sampled_from([["ALL"], [], ["NET_RAW"], ["ALL", "NET_RAW"], "ALL", None]),
            "add": st.sampled_from([[], ["NET_BIND_SERVICE"], ["SYS_ADMIN"], ["CHOWN"], None, "x"]),
        },
    ),
    ANY_VALUE,
)
PROBE = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "httpGet": st.fixed_dictionaries(
                {"port": st.just(80)}, optional={"host": st.sampled_from(["", "a.b", None])}
            ),
            "tcpSocket": st.fixed_dictionaries({"port": st.just(80)}, optional={"host": st.sampled_from(["", "a.b"])}),
            "exec": st.just({"command": ["true"]}),
        },
    ),
    ANY_VALUE,
)
CONTEXT_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "allowPrivilegeEscalation": st.sampled_from([True, False, None, "false"]),
    "privileged": st.sampled_from([True, False, None]),
    "capabilities": CAPABILITIES,
    "runAsNonRoot": st.sampled_from([True, False, None, "true"]),
    "runAsUser": st.sampled_from([0, 1000, None, False, "0", 0.0]),
    "runAsGroup": st.sampled_from([0, 1000, None]),
    "seccompProfile": SECCOMP,
    "procMount": st.sampled_from(["Default", "Unmasked", "", None]),
    "seLinuxOptions": st.fixed_dictionaries(
        {}, optional={"type": st.sampled_from(["", "container_t", "spc_t"]), "user": st.sampled_from(["", "u"])}
    ),
    "windowsOptions": st.fixed_dictionaries({}, optional={"hostProcess": st.sampled_from([True, False])}),
    "appArmorProfile": st.fixed_dictionaries(
        {}, optional={"type": st.sampled_from(["RuntimeDefault", "Unconfined", "Localhost"])}
    ),
    "readOnlyRootFilesystem": st.booleans(),
}
POD_CONTEXT_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    **{k: v for k, v in CONTEXT_FIELDS.items() if k not in ("allowPrivilegeEscalation", "privileged", "capabilities")},
    "fsGroup": st.sampled_from([0, 1000, None]),
    "supplementalGroups": st.sampled_from([[], [0], [1000], None]),
    "sysctls": st.sampled_from(
        [[], [{"name": "kernel.shm_rmid_forced", "value": "0"}], [{"name": "kernel.msgmax", "value": "1"}], None]
    ),
}
CONTAINER_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "ports": st.one_of(
        st.lists(
            st.fixed_dictionaries(
                {"containerPort": st.just(80)}, optional={"hostPort": st.sampled_from([0, 80, None])}
            ),
            max_size=2,
        ),
        ANY_VALUE,
    ),
    "livenessProbe": PROBE,
    "readinessProbe": PROBE,
    "startupProbe": PROBE,
    "lifecycle": st.one_of(st.fixed_dictionaries({}, optional={"postStart": PROBE, "preStop": PROBE}), ANY_VALUE),
    "securityContext": ANY_VALUE,
}
VOLUME_SOURCES = ["emptyDir", "hostPath", "configMap", "secret", "nfs", "image", "projected", "gcePersistentDisk"]
SPEC_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "hostNetwork": st.sampled_from([True, False, None, "true"]),
    "hostPID": st.sampled_from([True, False]),
    "hostIPC": st.sampled_from([True, False]),
    "hostUsers": st.sampled_from([True, False]),
    "os": st.fixed_dictionaries({"name": st.sampled_from(["linux", "windows"])}),
    "volumes": st.one_of(
        st.lists(
            st.fixed_dictionaries(
                {"name": st.sampled_from(["v1", "v2"])},
                optional={source: st.sampled_from([{}, None]) for source in VOLUME_SOURCES},
            ),
            max_size=3,
        ),
        ANY_VALUE,
    ),
    "securityContext": ANY_VALUE,
    "containers": ANY_VALUE,
    "initContainers": st.lists(st.just({"name": "init", "image": "x"}), max_size=1),
    "ephemeralContainers": st.lists(st.just({"name": "debug", "image": "x"}), max_size=1),
}
METADATA = st.fixed_dictionaries(
    {},
    optional={
        "annotations": st.one_of(
            st.dictionaries(
                st.sampled_from(["team", "container.apparmor.security.beta.kubernetes.io/app"]),
                st.sampled_from(["runtime/default", "unconfined", "localhost/p", ""]),
                max_size=2,
            ),
            ANY_VALUE,
        )
    },
)


def compliant_spec(containers: int) -> dict[str, Any]:
    """A tool pod as the mutating webhook leaves it."""
    return {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 52503,
            "runAsGroup": 52503,
            "fsGroup": 52503,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumes": [{"name": "home", "emptyDir": {}}],
        "containers": [
            {
                "name": f"c{i}",
                "image": "x",
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                "ports": [{"containerPort": 8000}],
            }
            for i in range(containers)
        ],
    }


@st.composite
def edited_pods(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """A compliant pod with one to three fields changed, anywhere a check looks."""
    spec = compliant_spec(draw(st.integers(1, 3)))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(["pod", "podContext", "container", "containerContext"]))
        if where == "pod":
            field = draw(st.sampled_from(sorted(SPEC_FIELDS)))
            spec[field] = draw(SPEC_FIELDS[field])
        elif where == "podContext" and isinstance(spec.get("securityContext"), dict):
            field = draw(st.sampled_from(sorted(POD_CONTEXT_FIELDS)))
            spec["securityContext"][field] = draw(POD_CONTEXT_FIELDS[field])
        elif isinstance(spec.get("containers"), list) and any(isinstance(c, dict) for c in spec["containers"]):
            container = draw(st.sampled_from([c for c in spec["containers"] if isinstance(c, dict)]))
            if where == "container":
                field = draw(st.sampled_from(sorted(CONTAINER_FIELDS)))
                container[field] = draw(CONTAINER_FIELDS[field])
            elif isinstance(container.get("securityContext"), dict):
                field = draw(st.sampled_from(sorted(CONTEXT_FIELDS)))
                container["securityContext"][field] = draw(CONTEXT_FIELDS[field])
    # through JSON, as the API server sends it: no part of the pod is shared with another
    return json.loads(json.dumps(draw(METADATA))), json.loads(json.dumps(spec))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edited_pods())
def test_shortcut_agrees_on_edited_pods(pod: tuple[dict[str, Any], dict[str, Any]]) -> None:
    metadata, spec = pod
    assert_agrees(metadata, spec)


TOOL = ToolProfile(identities={"tool-x": Identity(52503, 52503)})
PROFILE = PodProfile(Level.RESTRICTED, parse_version("latest"), Mode.ENFORCE, True, TOOL)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edited_pods())
def test_mutation_copies_only_what_it_changes(pod: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """The original spec is never touched, and the patch turns it into the spec that was judged."""
    _metadata, spec = pod
    for drop in ("securityContext", "containers"):  # also the kubectl-run shape: nothing set
        if drop in spec and isinstance(spec.get(drop), dict):
            spec[drop].pop("runAsUser", None)
    original = copy.deepcopy(spec)
    patcher = mutate_pod(spec, "/spec", PROFILE, TOOL.identities["tool-x"])
    assert spec == original
    patched = jsonpatch.apply_patch({"spec": original}, patcher.patches)
    assert patched["spec"] == patcher.spec
