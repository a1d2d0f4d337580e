"""Offline checks read manifests as kubectl does, so they judge what kubectl would create.

kubectl reads YAML with sigs.k8s.io/yaml: go-yaml v2's resolver (YAML 1.1 scalars, its
resolve.go table), then JSON. PyYAML's YAML 1.1 differs (``y`` is text to it, ``0o0`` is
text, ``1:20`` is 80), and a pod that kubectl creates with ``hostPID: true`` or
``runAsUser: 0`` passed ``check``. A list as the API returns it (``PodList``, items without a
kind) was read as nothing.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagegate.core.decide import decide
from imagegate.core.policy import PolicyError, load_grants, load_policy
from imagegate.core.records import Webhook
from imagegate.core.yamldoc import DocumentError, kubectl_scalar, load_yaml_documents
from tests.conftest import GRANTS_HEADER, POLICY_HEADER, run_imagegate

TRUSTED = "docker-registry.svc.toolforge.org/toolforge-python311-sssd-web:latest"
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
# Every namespace held to Pod Security restricted (with mutation, as `check` assumes it).
POLICY_TEXT = POLICY_HEADER + "trusted: [docker-registry.svc.toolforge.org]\npodSecurity: {level: restricted}\n"
POLICY = load_policy(POLICY_TEXT, "policy.yaml")

# go-yaml v2 (resolve.go) into interface{}, then encoding/json, as the API server receives it.
KUBECTL_READS = [
    *[(word, True) for word in ("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON")],
    *[(word, False) for word in ("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF")],
    *[(word, None) for word in ("", "~", "null", "Null", "NULL")],
    ("yEs", "yEs"),
    ("nO", "nO"),
    ("0", 0),
    ("00", 0),
    ("0o0", 0),
    ("0O0", 0),
    ("0x0", 0),
    ("0X0", 0),
    ("0b0", 0),
    ("0B0", 0),
    ("-0", 0),
    ("+0", 0),
    ("0_0", 0),
    ("0e0", 0),
    ("0.0", 0),
    ("-0.0", 0),
    ("0.", 0),
    (".0", 0),
    ("0777", 511),
    ("0o777", 511),
    ("0x1F", 31),
    ("-0x1f", -31),
    ("0b101", 5),
    ("1_000", 1000),
    ("1__0", 10),
    ("1e3", 1000),
    ("1.5", 1.5),
    (".5", 0.5),
    ("-.5", -0.5),
    ("+.5", 0.5),
    ("08", 8),  # not octal, so strconv.ParseInt fails; go-yaml's float pattern takes it
    ("09.5", 9.5),
    ("9223372036854775807", 2**63 - 1),
    ("18446744073709551615", 2**64 - 1),  # ParseUint
    ("1e400", "1e400"),  # ParseFloat overflows: the text stays text
    ("1e21", 1e21),  # encoding/json writes it as 1e+21: a float, not an integer
    ("1:20", "1:20"),  # no base-60 numbers in go-yaml v2
    ("190:20:30", "190:20:30"),
    ("2026-12-31", "2026-12-31"),  # timestamps stay text when read into interface{}
    ("2026-12-31T10:00:00Z", "2026-12-31T10:00:00Z"),
    ("0x", "0x"),
    ("0b2", "0b2"),
    ("0o8", "0o8"),
    ("_1", "_1"),
    ("1_", 1),
    ("=", "="),
    ("1.2.3", "1.2.3"),
    ("+", "+"),
    (".", "."),
    ("..5", "..5"),
]


@pytest.mark.parametrize(("text", "value"), KUBECTL_READS, ids=repr)
def test_plain_scalars_mean_what_they_mean_to_kubectl(text: str, value: Any) -> None:
    read = kubectl_scalar(text) if text else None
    assert read == value and type(read) is type(value), (text, read)
    (doc,) = load_yaml_documents(f"value: {text}\nquoted: '{text}'\n", "x.yaml")
    assert doc.data["value"] == value and type(doc.data["value"]) is type(value)
    assert doc.data["quoted"] == text  # quoted scalars are always text


@pytest.mark.parametrize("text", [".nan", ".NaN", ".NAN", ".inf", ".Inf", "-.inf", "+.INF"])
def test_numbers_json_cannot_carry_are_refused(text: str) -> None:
    with pytest.raises(DocumentError, match=r"x\.yaml:2: .* float JSON cannot carry"):
        load_yaml_documents(f"a: 1\nb: {text}\n", "x.yaml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: !!int 5\n", "unsupported YAML tag 'tag:yaml.org,2002:int'"),
        ("a: !!binary aGk=\n", "unsupported YAML tag"),
        ("? [a]\n: 1\n", "a key must be a plain value"),
        ("~: 1\n", "a null key has no JSON form"),
        ("1.5: a\n", "a fractional number key has no JSON form"),
        ("1: a\n'1': b\n", "duplicate key"),
        ("true: a\n'true': b\n", "duplicate key"),
    ],
)
def test_what_kubectl_would_read_differently_or_refuse_is_an_error(text: str, message: str) -> None:
    with pytest.raises(DocumentError, match=message):
        load_yaml_documents(text, "x.yaml")


def test_keys_become_json_keys_and_merges_still_work() -> None:
    (doc,) = load_yaml_documents("yes: 1\n8: 2\nbase: &b {x: 1}\nmerged:\n  <<: *b\n  why: on\n", "x.yaml")
    assert doc.data == {"true": 1, "8": 2, "base": {"x": 1}, "merged": {"x": 1, "why": True}}


# --- properties ------------------------------------------------------------------------


@st.composite
def integer_spellings(draw: st.DrawFn) -> tuple[str, int]:
    """An int64 as a YAML author may spell it, and its value."""
    value = draw(st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1))
    base = draw(st.sampled_from(["dec", "hex", "oct", "octo", "bin"]))
    magnitude = abs(value)
    digits = {
        "dec": str(magnitude),
        "hex": draw(st.sampled_from(["0x", "0X"])) + format(magnitude, draw(st.sampled_from(["x", "X"]))),
        "oct": "0" + format(magnitude, "o"),
        "octo": draw(st.sampled_from(["0o", "0O"])) + format(magnitude, "o"),
        "bin": draw(st.sampled_from(["0b", "0B"])) + format(magnitude, "b"),
    }[base]
    if draw(st.booleans()) and len(digits) > 2:  # go-yaml removes every underscore
        cut = draw(st.integers(min_value=1, max_value=len(digits) - 1))
        digits = digits[:cut] + "_" + digits[cut:]
    sign = "-" if value < 0 else draw(st.sampled_from(["", "+"]))
    return sign + digits, value


@given(integer_spellings())
def test_every_spelling_of_an_integer_is_that_integer(spelled: tuple[str, int]) -> None:
    text, value = spelled
    (doc,) = load_yaml_documents(f"runAsUser: {text}\n", "x.yaml")
    assert doc.data["runAsUser"] == value and isinstance(doc.data["runAsUser"], int), text


ROOT_SPELLINGS = ["0", "00", "0o0", "0x0", "0b0", "-0", "+0", "0_0", "0e0", "0.0", "-0.0", "000", "0x_0"]


@given(st.sampled_from(ROOT_SPELLINGS), st.sampled_from(["pod", "container"]))
def test_every_spelling_of_root_is_root(spelling: str, where: str) -> None:
    """Whatever kubectl sends as runAsUser 0 is denied by the same check the webhook runs."""
    context = f"runAsUser: {spelling}"
    pod_context = f"\n  securityContext: {{{context}}}" if where == "pod" else ""
    container_context = f"\n    securityContext: {{{context}}}" if where == "container" else ""
    text = (
        f"apiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: default}}\nspec:{pod_context}\n"
        f"  containers:\n  - name: app\n    image: {TRUSTED}{container_context}\n"
    )
    (doc,) = load_yaml_documents(text, "pod.yaml")
    decision = decide(POLICY, doc.data, namespace="default", now=NOW, webhook=Webhook.CHECK)
    assert not decision.allowed and "runAsUser" in decision.message(), spelling


# --- the cases, end to end through `imagegate check` ---------------------------------


def _pod(extra_spec: str = "", container_extra: str = "") -> str:
    return (
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: default\nspec:\n"
        f"{extra_spec}  containers:\n  - name: app\n    image: {TRUSTED}\n{container_extra}"
    )


@pytest.mark.parametrize(
    ("spec", "container", "rule"),
    [
        ("  hostPID: yes\n", "", "hostPID"),
        ("  hostNetwork: on\n", "", "hostNetwork"),
        ("  hostIPC: Y\n", "", "hostIPC"),
        ("  securityContext:\n    runAsUser: 0o0\n", "", "runAsUser"),
        ("  securityContext:\n    runAsUser: 00\n", "", "runAsUser"),
        ("  securityContext:\n    runAsUser: 0x0\n", "", "runAsUser"),
        ("", "    securityContext:\n      runAsUser: 0e0\n", "runAsUser"),
        ("", "    securityContext:\n      privileged: y\n", "privileged"),
        ("", "    securityContext:\n      allowPrivilegeEscalation: on\n", "allowPrivilegeEscalation"),
    ],
)
def test_check_denies_what_kubectl_would_create(tmp_path: Path, spec: str, container: str, rule: str) -> None:
    (tmp_path / "policy.yaml").write_text(POLICY_TEXT)
    (tmp_path / "pod.yaml").write_text(_pod(spec, container))
    result = run_imagegate("check", str(tmp_path / "pod.yaml"), "-p", str(tmp_path / "policy.yaml"), "-o", "json")
    assert result.returncode == 1, result.stdout + result.stderr
    assert rule in result.stdout
    # the same pod with the safe value, spelled the YAML 1.1 way, is admitted
    safe = spec.replace("yes", "no").replace(": on", ": off").replace(": Y", ": N")
    safe_container = container.replace(": y", ": n").replace(": on", ": off")
    for zero in ("0o0", "00", "0x0", "0e0"):
        safe, safe_container = safe.replace(zero, "0x3e8"), safe_container.replace(zero, "1_000")
    (tmp_path / "pod.yaml").write_text(_pod(safe, safe_container))
    admitted = run_imagegate("check", str(tmp_path / "pod.yaml"), "-p", str(tmp_path / "policy.yaml"), "-o", "json")
    assert admitted.returncode == 0, admitted.stdout + admitted.stderr


def _api_list(kind: str, items: list[Any], api_version: str = "v1") -> str:
    """A list exactly as the API server returns it: no kind or apiVersion on the items."""
    return json.dumps({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": "1"}, "items": items})


UNTRUSTED_POD = {
    "metadata": {"name": "nginx", "namespace": "tool-a"},
    "spec": {"containers": [{"name": "nginx", "image": "docker.io/library/nginx:1.25"}]},
}
UNTRUSTED_DEPLOYMENT = {
    "metadata": {"name": "web", "namespace": "tool-a"},
    "spec": {"template": {"spec": UNTRUSTED_POD["spec"]}},
}


@pytest.mark.parametrize(
    ("kind", "api_version", "item"),
    [("PodList", "v1", UNTRUSTED_POD), ("DeploymentList", "apps/v1", UNTRUSTED_DEPLOYMENT)],
)
def test_items_of_a_typed_list_take_the_lists_kind(tmp_path: Path, kind: str, api_version: str, item: Any) -> None:
    (tmp_path / "list.json").write_text(_api_list(kind, [item], api_version))
    checked = run_imagegate("check", str(tmp_path / "list.json"), "-o", "json")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "docker.io/library/nginx:1.25" in checked.stdout
    audited = run_imagegate("audit", "--from", str(tmp_path / "list.json"), "-o", "json")
    assert audited.returncode == 1, audited.stdout + audited.stderr
    assert "docker.io/library/nginx:1.25" in audited.stdout


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (_api_list("List", [UNTRUSTED_POD]), "items[0].kind: missing: each item of a List names its kind"),
        (
            _api_list("PodList", [{**UNTRUSTED_DEPLOYMENT, "kind": "Deployment"}]),
            "items[0].kind: 'Deployment' in a PodList, which holds Pods",
        ),
        (_api_list("PodList", ["nginx"]), "items[0]: expected a Kubernetes object"),
        ('{"kind": "PodList", "items": {"a": 1}}', "items: expected a list of objects"),
    ],
)
def test_list_items_of_unknown_kind_are_refused(tmp_path: Path, document: str, message: str) -> None:
    (tmp_path / "list.json").write_text(document)
    for command in (["check"], ["audit", "--from"]):
        result = run_imagegate(*command, str(tmp_path / "list.json"))
        assert result.returncode == 2, result.stdout + result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr


def test_a_list_in_a_list_is_flattened(tmp_path: Path) -> None:
    inner = json.loads(_api_list("PodList", [UNTRUSTED_POD]))
    (tmp_path / "list.json").write_text(json.dumps({"kind": "List", "apiVersion": "v1", "items": [inner]}))
    result = run_imagegate("check", str(tmp_path / "list.json"), "-o", "json")
    assert result.returncode == 1 and "docker.io/library/nginx:1.25" in result.stdout


def test_json_numbers_are_read_as_kubectl_sends_them(tmp_path: Path) -> None:
    """kubectl re-encodes JSON with encoding/json: 0.0 reaches the API server as 0."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"securityContext": {"runAsUser": 0.0}, "containers": [{"name": "a", "image": TRUSTED}]},
    }
    (tmp_path / "pod.json").write_text(json.dumps(pod))
    (tmp_path / "policy.yaml").write_text(POLICY_TEXT)
    result = run_imagegate("check", str(tmp_path / "pod.json"), "-p", str(tmp_path / "policy.yaml"), "-o", "json")
    assert result.returncode == 1 and "runAsUser" in result.stdout, result.stdout + result.stderr


# --- policy files get the same reading -------------------------------------------------------


def test_policy_files_are_read_the_same_way() -> None:
    policy = load_policy(
        POLICY_HEADER + "byoc: {default: allow, requireBaseImage: y}\nregistry: {timeoutSeconds: 1_0}\n"
    )
    assert policy.byoc_require_base_image is True and policy.registry.timeout == 10
    (grant,) = load_grants(
        GRANTS_HEADER + "grants:\n  - {namespace: tool-a, expires: 2026-12-31, requireBaseImage: on}\n"
    )
    assert grant.expires == dt.date(2026, 12, 31) and grant.require_base_image
    with pytest.raises(PolicyError, match=r"p\.yaml:3: .* float JSON cannot carry"):
        load_policy(POLICY_HEADER + "registry: {timeoutSeconds: .inf}\n", "p.yaml")
    with pytest.raises(PolicyError, match=r"tags\.disallow"):
        load_policy(POLICY_HEADER + "tags: {disallow: [latest, no]}\n", "p.yaml")  # `no` is false, not a tag
