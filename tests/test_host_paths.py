"""hostPath rules: exactly their path unless they say ``match: below``, and the most specific decides.

A path below a directory a tenant can write is a path the tenant can make a symlink: containerd's
CRI and CRI-O resolve symlinks in a hostPath source on the node before the bind mount, so
``/data/project/<tool>/escape -> /`` mounts the node's root. And of two rules that cover one
path, the more specific one says what it may be (``/public`` read-write and below, but
``/public/dumps`` read-only).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import textwrap
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagegate.core.decide import Decision, decide
from imagegate.core.policy import Policy, PolicyError, load_policy
from tests.conftest import POLICY_HEADER, admission_review, run_imagegate
from tests.webhook_process import run_webhook

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
IMAGE = "docker-registry.svc.toolforge.org/toolforge-python311:latest"
UID = 52503


def policy_text(host_paths: str) -> str:
    return POLICY_HEADER + textwrap.dedent(
        f"""\
        trusted: [docker-registry.svc.toolforge.org]
        podSecurity:
          toolProfile:
            identities: {{tool-a: {{uid: {UID}}}}}
            hostPaths: {host_paths}
        """
    )


def pod(path: str, read_only: bool = False) -> dict[str, Any]:
    """A tool pod with one hostPath volume; everything else as /mutate leaves a plain pod."""
    mount: dict[str, Any] = {"name": "v", "mountPath": "/mnt/v"}
    if read_only:
        mount["readOnly"] = True
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {
            "containers": [{"name": "c", "image": IMAGE, "volumeMounts": [mount]}],
            "volumes": [{"name": "v", "hostPath": {"path": path}}],
        },
    }


def judge(policy: Policy, path: str, read_only: bool = False) -> Decision:
    return decide(policy, pod(path, read_only), namespace="tool-a", now=NOW)


def host_path_messages(decision: Decision) -> list[str]:
    return [f.message for f in decision.findings if f.rule == "tool-profile:hostPath"]


# --- exact unless it says below -----------------------------------------------------------------

EXACT = load_policy(policy_text("[{path: /data/project}, {path: /data/scratch}, {path: '/srv/{tool}'}]"))


@pytest.mark.parametrize(
    "path", ["/data/project", "/data/project/", "/data/project/.", "//data/project", "/data//project", "/srv/a"]
)
def test_a_rule_admits_its_own_path_however_spelled(path: str) -> None:
    decision = judge(EXACT, path)
    assert decision.allowed, decision.message()


@pytest.mark.parametrize(
    "path",
    [
        "/data/project/a",  # the tool's home: a directory the tool writes
        "/data/project/a/escape",  # ... where it can put a symlink to the node's /
        "/data/scratch/x",
        "/srv/a/x",  # a placeholder's path is exact too
        "/data/projects",
        "/data",
    ],
)
def test_a_path_below_an_exact_rule_is_refused(path: str) -> None:
    decision = judge(EXACT, path)
    assert not decision.allowed
    (message,) = host_path_messages(decision)
    assert f"path {path!r} is not allowed (allowed: /data/project, /data/scratch, /srv/a)" in message


def test_below_is_said_explicitly_and_named_in_denials() -> None:
    policy = load_policy(policy_text("[{path: /public/dumps, readOnly: true, match: below}]"))
    assert judge(policy, "/public/dumps/enwiki/latest", read_only=True).allowed
    assert judge(policy, "/public/dumps", read_only=True).allowed
    (message,) = host_path_messages(judge(policy, "/public/dumpsx", read_only=True))
    assert "(allowed: /public/dumps and below (read-only))" in message


@pytest.mark.parametrize(
    ("host_paths", "where", "message"),
    [
        ("[{path: /data, match: sideways}]", "hostPaths[0].match", "write one of: exact, below"),
        ("[{path: /data, subPaths: true}]", "hostPaths[0].subPaths", "unknown key 'subPaths'"),
        ("[{path: /data}, {path: /data/, readOnly: true}]", "hostPaths[1].path", "the path of hostPaths[0] again"),
        ("[{path: '/srv/{tool}'}, {path: '//srv/./{tool}'}]", "hostPaths[1].path", "the path of hostPaths[0] again"),
        ("[{path: /, match: below}]", "hostPaths[0].path", "the node's whole filesystem"),
        ("[{path: data}]", "hostPaths[0].path", "absolute path without '..'"),
        ("[{path: '/srv/{tool}*', match: below}]", "hostPaths[0].path", "beside the glob character(s) *"),
        ("[{path: '/srv/{project}'}]", "hostPaths[0].path", "the placeholders are {namespace} and {tool}"),
    ],
)
def test_bad_rules_are_refused_when_the_policy_loads(host_paths: str, where: str, message: str) -> None:
    with pytest.raises(PolicyError) as raised:
        load_policy(policy_text(host_paths), "policy.yaml")
    assert raised.value.path == f"podSecurity.toolProfile.{where}", str(raised.value)
    assert message in str(raised.value)


# --- overlapping rules: the most specific decides ------------------------------------------------


@pytest.mark.parametrize(
    "host_paths",
    [
        "[{path: /public, match: below}, {path: /public/dumps, readOnly: true, match: below}]",
        "[{path: /public/dumps, readOnly: true, match: below}, {path: /public, match: below}]",
        "[{path: /public, match: below}, {path: /public/dumps, readOnly: true}]",
    ],
)
def test_the_most_specific_rule_decides_whatever_the_order(host_paths: str) -> None:
    policy = load_policy(policy_text(host_paths))
    (message,) = host_path_messages(judge(policy, "/public/dumps"))  # read-write: the first rule would admit it
    assert 'must mount volume "v" (/public/dumps) with readOnly: true' in message
    assert judge(policy, "/public/dumps", read_only=True).allowed
    assert judge(policy, "/public/other").allowed  # the wider rule still decides what only it covers


def test_of_two_rules_that_meet_in_a_namespace_the_read_only_one_decides() -> None:
    # Two spellings that only a namespace makes one path: the stricter wins, in either order.
    for host_paths in (
        "[{path: '/srv/{tool}'}, {path: /srv/a, readOnly: true}]",
        "[{path: /srv/a, readOnly: true}, {path: '/srv/{tool}'}]",
    ):
        policy = load_policy(policy_text(host_paths))
        assert not judge(policy, "/srv/a").allowed
        assert judge(policy, "/srv/a", read_only=True).allowed


SEGMENTS = ("a", "b", "{tool}")  # {tool} is "a" in tool-a: two rules may meet there
rule_paths = st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=3).map(lambda s: "/" + "/".join(s))
volume_paths = st.lists(st.sampled_from(("a", "b", "c")), min_size=1, max_size=4).map(lambda s: "/" + "/".join(s))
rule_sets = st.dictionaries(rule_paths, st.tuples(st.booleans(), st.sampled_from(("exact", "below"))), max_size=6)


def model(rules: dict[str, tuple[bool, str]], path: str) -> bool | None:
    """None: refused; else whether the mount must be read-only. Walks up from the path itself:
    the first ancestor that has a rule covering the path decides; rules meeting there, read-only wins."""
    resolved = [(written.replace("{tool}", "a"), read_only, match) for written, (read_only, match) in rules.items()]
    segments = path.split("/")[1:]
    for end in range(len(segments), 0, -1):
        ancestor = "/" + "/".join(segments[:end])
        covering = [ro for p, ro, match in resolved if p == ancestor and (end == len(segments) or match == "below")]
        if covering:
            return any(covering)
    return None


def listed(rules: list[tuple[str, tuple[bool, str]]]) -> str:
    return json.dumps([{"path": path, "readOnly": ro, "match": match} for path, (ro, match) in rules])


@given(rule_sets, volume_paths, st.randoms(use_true_random=False))
def test_overlapping_rules_decide_as_the_most_specific_whatever_the_order(
    rules: dict[str, tuple[bool, str]], path: str, order: Any
) -> None:
    written = list(rules.items())
    shuffled = written[:]
    order.shuffle(shuffled)
    expected = model(rules, path)
    for arrangement in (written, shuffled):
        policy = load_policy(policy_text(listed(arrangement)))
        assert judge(policy, path, read_only=True).allowed is (expected is not None), (arrangement, path)
        assert judge(policy, path, read_only=False).allowed is (expected is False), (arrangement, path)


# --- as a tenant sends it: /validate and check ---------------------------------------------------

ATTACK_POLICY = policy_text(
    "[{path: /data/project}, {path: /public, match: below}, {path: /public/dumps, readOnly: true}]"
)


def test_the_webhook_and_check_refuse_sub_paths_and_the_wider_rules_say(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(ATTACK_POLICY)
    attacks = {
        "/data/project/a/escape": (False, "is not allowed"),  # the tool's symlink to the node's /
        "/public/dumps": (False, "with readOnly: true"),  # /public read-write must not decide
        "/data/project": (True, ""),
        "/public/tmp": (True, ""),
    }
    with run_webhook(tmp_path, policy=tmp_path / "policy.yaml") as webhook:
        client = webhook.client()
        for path, (allowed, said) in attacks.items():
            obj = pod(path)
            # as the API server does: /mutate's patch applied, then /validate judges the result
            mutated = client.post("/mutate", json=admission_review(obj, "tool-a")).json()["response"]
            assert mutated["allowed"]
            patched = jsonpatch.apply_patch(obj, json.loads(base64.b64decode(mutated["patch"])))
            answer = client.post("/validate", json=admission_review(patched, "tool-a")).json()["response"]
            assert answer["allowed"] is allowed, (path, answer)
            assert said in answer.get("status", {}).get("message", ""), (path, answer)
    for path, (allowed, said) in attacks.items():
        manifest = tmp_path / "pod.json"
        manifest.write_text(json.dumps({**pod(path), "metadata": {"name": "p", "namespace": "tool-a"}}))
        checked = run_imagegate("check", str(manifest), "-p", str(tmp_path / "policy.yaml"), "-o", "json")
        assert checked.returncode == (0 if allowed else 1), (path, checked.stdout, checked.stderr)
        (judged,) = json.loads(checked.stdout)["objects"]
        assert all(said in v["message"] for v in judged["violations"]), (path, judged)
