"""Grants as a lifecycle (issue 23 items 5, 8, 10; issue 27 item 9): renewals that keep every
field, revocations on record, required fields, checks against the namespaces that exist, and
the numbers and names the grant commands take.

Every case runs the real ``imagegate`` command (a subprocess) and asserts its message and
exit code: 0 done, 1 something found wrong, 2 bad input (one ``error:`` line).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from imagegate.core.names import is_dns_label
from imagegate.core.policy import PolicyError, load_grants, load_identities, load_policy
from imagegate.shell.policy_source import PolicySource
from tests.conftest import GRANTS_HEADER, POLICY_HEADER, REPO_ROOT, admission_review, cli_env, run_imagegate
from tests.webhook_process import run_webhook

if TYPE_CHECKING:
    from tests.kube_cluster import KubeCluster

DUMP = REPO_ROOT / "tests" / "fixtures" / "cluster-dump.json"


def one_error(result: object, *fragments: str) -> str:
    """Exit 2 and exactly one ``error:`` line naming every fragment; no traceback."""
    stderr: str = result.stderr  # type: ignore[attr-defined]
    assert result.returncode == 2, (result.returncode, stderr)  # type: ignore[attr-defined]
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    for fragment in fragments:
        assert fragment in lines[0], stderr
    return lines[0]


# --- names and numbers (issue 23 item 8) ---------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["check", "-n", "Bad NS", "examples"], ["--namespace", "'Bad NS' is not a namespace name"]),
        (["audit", "--compare", "--from", str(DUMP), "--select", "Bad_NS", "selected"], ["--select", "'Bad_NS'"]),
        (["grants", "add", "Bad_NS", "-g", "grants.yaml"], ["'Bad_NS' is not a namespace name"]),
        (["grants", "revoke", "-x", "-g", "grants.yaml"], ["-x"]),
        (["grants", "add", "x" * 64, "-g", "grants.yaml"], ["is not a namespace name", "1 to 63"]),
        (["grants", "expiring", "--days", "-5", "-g", "grants.yaml"], ["--days", "greater than or equal to 0"]),
        (["audit", "--from", str(DUMP), "--expiring-days", "-3"], ["--expiring-days", "greater than or equal"]),
        (
            ["audit", "--compare", "--from", str(DUMP), "--box-ends", "2020-01-01", "time-boxed"],
            ["--box-ends 2020-01-01 is in the past"],
        ),
    ],
)
def test_names_and_numbers_are_checked(args: list[str], fragments: list[str]) -> None:
    one_error(run_imagegate(*args), *fragments)


def test_one_namespace_rule_for_every_document() -> None:
    """A 75-character namespace was an identity (load_identities) but never a grant."""
    long = "tool-" + "x" * 70
    assert not is_dns_label(long) and is_dns_label("x" * 63) and not is_dns_label("x" * 64)
    text = f"apiVersion: imagegate.toolforge.org/v1\nkind: ToolIdentities\nidentities:\n  {long}: {{uid: 5}}\n"
    with pytest.raises(PolicyError, match="is not a namespace name"):
        load_identities(text, "identities.yaml")


# --- renewals keep every key (issue 27 item 9, issue 23 item 10) ----------------------------

FULL_GRANT = (
    "  - namespace: tool-x\n"
    "    registries: [ghcr.io/x]\n"
    "    expires: 2026-12-31\n"
    "    reason: upstream image\n"
    "    requestedBy: alice\n"
    "    ticket: T1\n"
    "    requireBaseImage: true\n"
    "    mode: warn\n"
    "    signedBy: keys/x.pub\n"
)
KEPT = {
    "namespace": "tool-x",
    "registries": ["ghcr.io/x"],
    "reason": "upstream image",
    "requestedBy": "alice",
    "requireBaseImage": True,
    "mode": "warn",
    "signedBy": "keys/x.pub",
}


def grants_file(tmp_path: Path, body: str = FULL_GRANT) -> Path:
    path = tmp_path / "grants.yaml"
    path.write_text(GRANTS_HEADER + "grants:\n" + body)
    return path


def document(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def test_renew_keeps_every_key_and_records_it(tmp_path: Path) -> None:
    path = grants_file(tmp_path)
    renewed = run_imagegate(
        "grants", "renew", "tool-x", "-g", str(path), "--expires", "2027-06-30", "--ticket", "T2", "--by", "bob",
        "--now", "2026-12-01T10:00:00Z",
    )  # fmt: skip
    assert renewed.returncode == 0, renewed.stderr
    assert "renewed: tool-x until 2027-06-30" in renewed.stderr
    written = document(path)
    assert written["grants"] == [{**KEPT, "expires": "2027-06-30", "ticket": "T2"}]
    (event,) = written["history"]
    assert event["action"] == "renewed" and event["by"] == "bob" and event["at"] == "2026-12-01T10:00:00Z"
    assert event["reason"] == "expires 2026-12-31 -> 2027-06-30 (T2)"
    assert event["grant"] == {**KEPT, "expires": "2026-12-31", "ticket": "T1"}  # as it was
    (grant,) = load_grants(path.read_text(), str(path))  # what the webhook reads: still limited, still checked
    assert grant.registries is not None and grant.require_base_image and grant.signed_by == "keys/x.pub"


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["tool-y", "--expires", "2027-01-01"], ["tool-y has no grant"]),
        (["tool-x", "--expires", "2026-12-31"], ["already ends on 2026-12-31"]),
        (["tool-x", "--expires", "2026-11-30"], ["--expires 2026-11-30 is in the past"]),
        (["tool-x", "--expires", "someday"], ["--expires: 'someday' is not a date"]),
        (["tool-x"], ["Missing option '--expires'"]),
        (["tool-x", "--expires", "2027-01-01", "--by", " "], ["--by: say who"]),
    ],
)
def test_renew_refuses(tmp_path: Path, args: list[str], fragments: list[str]) -> None:
    path = grants_file(tmp_path)
    before = path.read_text()
    by = [] if "--by" in args else ["--by", "bob"]
    one_error(run_imagegate("grants", "renew", *args, "-g", str(path), *by, "--now", "2026-12-01"), *fragments)
    assert path.read_text() == before


def test_replace_names_and_requires_the_keys_it_drops(tmp_path: Path) -> None:
    path = grants_file(tmp_path)
    before = path.read_text()
    replace = ["grants", "add", "tool-x", "-g", str(path), "--expires", "2027-06-30", "--replace", "--by", "bob"]
    widened = run_imagegate(*replace, "--now", "2026-12-01")
    line = one_error(widened, "leaves out what its grant has", "registries ghcr.io/x (without it: any registry)")
    for key in ("requireBaseImage", "signedBy keys/x.pub", "reason 'upstream image'", "ticket 'T1'", "mode 'warn'"):
        assert key in line
    assert "--drop registries" in line and "grants renew" in line
    assert path.read_text() == before  # nothing written
    partly = run_imagegate(*replace, "--drop", "registries", "--now", "2026-12-01")
    assert "registries ghcr.io/x" not in one_error(partly, "signedBy")
    wrong = run_imagegate(*replace, "--drop", "colour", "--now", "2026-12-01")
    one_error(wrong, "--drop colour: not a key of a grant")
    keys = ("registries", "reason", "requestedBy", "ticket", "requireBaseImage", "mode", "signedBy")
    confirmed = run_imagegate(*replace, *(a for k in keys for a in ("--drop", k)), "--now", "2026-12-01")
    assert confirmed.returncode == 0, confirmed.stderr
    written = document(path)
    assert written["grants"] == [{"namespace": "tool-x", "expires": "2027-06-30"}]
    (event,) = written["history"]
    assert event["action"] == "replaced" and event["grant"]["signedBy"] == "keys/x.pub"
    assert "dropped registries" in event["reason"]
    # a replacement that names every key again needs no confirmation
    again = run_imagegate(
        "grants", "add", "tool-x", "-g", str(path), "--expires", "2027-07-31", "--replace", "--by", "bob",
        "--reason", "still needed", "--now", "2026-12-01",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr


def test_list_and_expiring_show_every_key(tmp_path: Path) -> None:
    path = grants_file(tmp_path)
    listed = run_imagegate("grants", "list", "-g", str(path), "--now", "2026-12-20", columns=250)
    assert listed.returncode == 0, listed.stderr
    header = listed.stdout.splitlines()[2]
    for column in ("registries", "base image", "signed by", "mode", "requested by", "ticket", "reason"):
        assert column in header, listed.stdout
    row = next(line for line in listed.stdout.splitlines() if "tool-x" in line)
    for value in ("ghcr.io/x", "required", "keys/x.pub", "warn", "alice", "T1", "upstream image"):
        assert value in row, listed.stdout
    # at 80 columns the table would cut every value into pieces: one line per grant, each key named
    narrow = run_imagegate("grants", "list", "-g", str(path), "--now", "2026-12-20", columns=80)
    (line,) = [line for line in narrow.stdout.splitlines() if "tool-x" in line]
    assert line.startswith("tool-x  expiring  expires: 2026-12-31  days left: 11  registries: ghcr.io/x  ")
    assert "signed by: keys/x.pub  mode: warn  requested by: alice  ticket: T1  reason: upstream image" in line
    expiring = run_imagegate("grants", "expiring", "-g", str(path), "--now", "2026-12-20", "-o", "json")
    assert expiring.returncode == 1
    (shown,) = json.loads(expiring.stdout)
    assert shown["requestedBy"] == "alice" and shown["requireBaseImage"] is True
    assert shown["signedBy"] == "keys/x.pub" and shown["mode"] == "warn"
    one_day = run_imagegate("grants", "expiring", "-g", str(path), "--now", "2026-12-01", "--days", "1")
    assert one_day.returncode == 0 and "within 1 day\n" in one_day.stdout


# --- revoke keeps a record ------------------------------------------------------------------


def test_revoke_keeps_who_when_why_and_the_grant(tmp_path: Path) -> None:
    path = grants_file(tmp_path, FULL_GRANT + "  - namespace: tool-y\n")
    revoked = run_imagegate(
        "grants", "revoke", "tool-x", "-g", str(path), "--reason", "abuse, T9", "--by", "carol",
        "--now", "2026-12-02T08:30:00+01:00",
    )  # fmt: skip
    assert revoked.returncode == 0, revoked.stderr
    written = document(path)
    assert [g["namespace"] for g in written["grants"]] == ["tool-y"]
    (event,) = written["history"]
    assert event == {
        "action": "revoked",
        "namespace": "tool-x",
        "at": "2026-12-02T07:30:00Z",
        "by": "carol",
        "reason": "abuse, T9",
        "grant": {**KEPT, "expires": "2026-12-31", "ticket": "T1"},
    }
    # the record survives later edits, and the webhook's loader reads the file with it
    assert (
        run_imagegate("grants", "revoke", "tool-y", "-g", str(path), "--reason", "done", "--by", "carol").returncode
        == 0
    )
    assert [e["namespace"] for e in document(path)["history"]] == ["tool-x", "tool-y"]
    assert load_grants(path.read_text(), str(path)) == ()
    one_error(
        run_imagegate("grants", "revoke", "tool-y", "-g", str(path), "--by", "carol"), "Missing option '--reason'"
    )
    one_error(
        run_imagegate("grants", "revoke", "tool-y", "-g", str(path), "--reason", " ", "--by", "carol"),
        "--reason: say why",
    )


@pytest.mark.parametrize(
    ("entry", "fragments"),
    [
        ("{action: revoked, namespace: tool-x, at: '2026-12-01T00:00:00Z', by: a}", ["history[0]", "grant"]),
        (
            "{action: deleted, namespace: tool-x, at: '2026-12-01T00:00:00Z', by: a, grant: {namespace: tool-x}}",
            ["history[0].action", "revoked, renewed, replaced"],
        ),
        (
            "{action: revoked, namespace: tool-x, at: '2026-12-01T00:00:00', by: a, grant: {namespace: tool-x}}",
            ["history[0].at", "timezone"],
        ),
        (
            "{action: revoked, namespace: tool-x, at: '2026-12-01T00:00:00Z', by: '', grant: {namespace: tool-x}}",
            ["history[0].by", "say who"],
        ),
        (
            "{action: revoked, namespace: tool-x, at: '2026-12-01T00:00:00Z', by: a, grant: {namespace: tool-y}}",
            ["history[0].grant.namespace", "another namespace"],
        ),
    ],
)
def test_the_history_is_validated_with_the_grants(tmp_path: Path, entry: str, fragments: list[str]) -> None:
    path = tmp_path / "grants.yaml"
    path.write_text(GRANTS_HEADER + "grants: []\nhistory:\n  - " + entry + "\n")
    result = run_imagegate("grants", "list", "-g", str(path))
    for fragment in (f"{path}:5", *fragments):
        assert fragment in one_error(result)


# --- one grant per namespace (issue 23 item 5) ----------------------------------------------


def test_two_grants_for_one_namespace_are_a_load_error_naming_both(tmp_path: Path) -> None:
    path = grants_file(tmp_path, "  - namespace: tool-a\n  - namespace: tool-b\n  - namespace: tool-a\n")
    for command in (["grants", "list", "-g", str(path)], ["check", "-g", str(path), "examples"]):
        line = one_error(run_imagegate(*command))
        assert f"{path}:6: grants[2].namespace: tool-a has a grant already, at {path}:4" in line
    validate = run_imagegate("policy", "validate", "-p", "-", "-g", str(path), stdin=POLICY_HEADER)
    one_error(validate, "tool-a has a grant already")
    # between the policy's own grants and its grants file too
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY_HEADER + "byoc:\n  grants:\n    - namespace: tool-b\n  grantsFile: other.yaml\n")
    (tmp_path / "other.yaml").write_text(GRANTS_HEADER + "grants:\n  - namespace: tool-b\n")
    one_error(run_imagegate("policy", "validate", "-p", str(policy)), "other.yaml:4", f"at {policy}:5")


def test_the_webhook_keeps_its_last_good_grants_when_a_second_grant_appears(tmp_path: Path) -> None:
    """The reload the server runs (PolicySource): refused, the grants in force stay, the error says why."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY_HEADER + "byoc: {grantsFile: grants.yaml}\n")
    path = grants_file(tmp_path, "  - {namespace: tool-a, registries: [ghcr.io/a]}\n")
    source = PolicySource(policy)
    assert source.current is not None and [g.namespace for g in source.current.grants] == ["tool-a"]
    path.write_text(path.read_text() + "  - {namespace: tool-a}\n")  # the second would admit any registry
    result = source.reload()
    assert not result.changed and result.error is not None and "tool-a has a grant already" in result.error
    assert source.last_error == result.error
    (kept,) = source.current.grants
    assert kept.registries is not None  # still the limited grant


# --- a policy that requires expires, reason and ticket ---------------------------------------

STRICT = POLICY_HEADER + "byoc:\n  requiredGrantFields: [expires, reason, ticket]\n  grantsFile: grants.yaml\n"


def test_required_grant_fields_hold_at_load_everywhere(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(STRICT)
    path = grants_file(tmp_path, "  - {namespace: tool-a, expires: 2027-01-31, reason: r, ticket: T1}\n")
    source = PolicySource(policy)
    assert source.current is not None and len(source.current.grants) == 1
    path.write_text(path.read_text() + "  - {namespace: tool-b, reason: forever}\n")
    result = source.reload()
    assert result.error is not None and "grants[1].expires: missing" in result.error
    assert "also missing: ticket" in result.error
    assert source.current is not None and [g.namespace for g in source.current.grants] == ["tool-a"]
    for command in (["policy", "validate", "-p", str(policy)], ["check", "-p", str(policy), "examples"]):
        one_error(run_imagegate(*command), f"{path}:5: grants[1].expires", "requiredGrantFields")
    one_error(run_imagegate("grants", "list", "-p", str(policy)), "grants[1].expires")
    # inline grants too
    inline = POLICY_HEADER + "byoc:\n  requiredGrantFields: [ticket]\n  grants:\n    - namespace: tool-c\n"
    with pytest.raises(PolicyError, match=r"byoc.grants\[0\].ticket: missing"):
        load_policy(inline, "inline.yaml")
    unknown = POLICY_HEADER + "byoc:\n  requiredGrantFields: [colour]\n"
    with pytest.raises(PolicyError, match="requiredGrantFields"):
        load_policy(unknown, "unknown.yaml")


def test_grants_add_is_held_to_the_policy(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(STRICT)
    path = grants_file(tmp_path, "  - {namespace: tool-a, expires: 2027-01-31, reason: r, ticket: T1}\n")
    before = path.read_text()
    add = ["grants", "add", "tool-b", "-p", str(policy), "--now", "2026-12-01"]
    bare = run_imagegate(*add, "--reason", "needs it")
    one_error(bare, "the new grant for tool-b: expires: missing", "also missing: ticket")
    assert path.read_text() == before  # the policy's grantsFile was the target, untouched
    full = run_imagegate(*add, "--reason", "needs it", "--ticket", "T2", "--expires", "2027-02-28")
    assert full.returncode == 0, full.stderr
    assert [g.namespace for g in load_grants(path.read_text(), str(path))] == ["tool-a", "tool-b"]
    # a renewal keeps the required keys, so it passes
    renewed = run_imagegate("grants", "renew", "tool-a", "-p", str(policy), "--expires", "2027-03-31", "--by", "x",
                            "--now", "2026-12-01")  # fmt: skip
    assert renewed.returncode == 0, renewed.stderr


# --- grants add: where and for whom ---------------------------------------------------------


def test_grants_add_refuses_what_would_do_nothing_or_go_astray(tmp_path: Path) -> None:
    missing = tmp_path / "typo.yaml"
    one_error(run_imagegate("grants", "add", "tool-a", "-g", str(missing)), "file not found", "--create")
    assert not missing.exists()
    created = run_imagegate("grants", "add", "tool-a", "-g", str(missing), "--create")
    assert created.returncode == 0, created.stderr
    assert [g.namespace for g in load_grants(missing.read_text(), str(missing))] == ["tool-a"]
    nowhere = tmp_path / "no-such-dir" / "grants.yaml"
    one_error(run_imagegate("grants", "add", "tool-a", "-g", str(nowhere), "--create"), "no-such-dir", "does not exist")
    empty = tmp_path / "empty.yaml"
    empty.write_text("# emptied by mistake\n")
    listed = one_error(run_imagegate("grants", "list", "-g", str(empty)), "the document is empty")
    added = one_error(run_imagegate("grants", "add", "tool-a", "-g", str(empty)), "the document is empty", "--create")
    assert listed.split("empty")[0].removeprefix("error: invalid grants: ") in added
    assert empty.read_text() == "# emptied by mistake\n"
    # the built-in policy governs tool-* only: a grant for kube-system would change nothing
    ungoverned = run_imagegate("grants", "add", "kube-system", "-g", str(missing))
    one_error(ungoverned, "kube-system is not governed by the policy", "would change nothing")


# --- grants check --------------------------------------------------------------------------


def namespaces_dump(tmp_path: Path, *names: str) -> Path:
    dump = tmp_path / "namespaces.json"
    items = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in names]
    dump.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    return dump


def test_grants_check_against_the_namespaces_that_exist(tmp_path: Path) -> None:
    path = grants_file(
        tmp_path,
        "  - {namespace: tool-a, expires: 2027-01-31}\n"
        "  - {namespace: tool-gone}\n"
        "  - {namespace: tool-old, expires: 2026-11-30}\n",
    )
    dump = namespaces_dump(tmp_path, "tool-a", "tool-old", "kube-system")
    found = run_imagegate("grants", "check", "-g", str(path), "--from", str(dump), "--now", "2026-12-01", "-o", "json")
    assert found.returncode == 1, found.stderr
    problems = {(p["namespace"], p["problem"]) for p in json.loads(found.stdout)}
    assert problems == {("tool-gone", "no-namespace"), ("tool-old", "expired")}
    table = run_imagegate("grants", "check", "-g", str(path), "--from", str(dump), "--now", "2026-12-01")
    assert table.returncode == 1 and "namespace tool-gone does not exist" in table.stdout
    assert "ended on 2026-11-30" in table.stdout
    good = grants_file(tmp_path, "  - {namespace: tool-a, expires: 2027-01-31}\n")
    clean = run_imagegate("grants", "check", "-g", str(good), "--from", str(dump), "--now", "2026-12-01")
    assert clean.returncode == 0, clean.stdout
    assert "1 grant: each for a namespace that exists and the policy governs, none expired" in clean.stdout
    # a policy that governs less: the grant for a namespace it leaves out does nothing
    narrow = tmp_path / "narrow.yaml"
    narrow.write_text(POLICY_HEADER + "namespaces: {include: ['tool-*'], exclude: [tool-a]}\n")
    ungoverned = run_imagegate("grants", "check", "-g", str(good), "-p", str(narrow), "--from", str(dump))
    assert ungoverned.returncode == 1 and "does not govern tool-a" in ungoverned.stdout
    # a dump that cannot say which namespaces exist is bad input, not a clean bill
    pods = tmp_path / "pods.json"
    pods.write_text(
        json.dumps({"apiVersion": "v1", "kind": "List", "items": [{"kind": "Pod", "metadata": {"name": "p"}}]})
    )
    one_error(run_imagegate("grants", "check", "-g", str(good), "--from", str(pods)), "no Namespace objects")


# --- the same on the cluster's ConfigMap, through the real API server ------------------------


def test_the_lifecycle_on_a_configmap_in_a_real_api_server(kube_cluster: KubeCluster, tmp_path: Path) -> None:
    """--apply edits the ConfigMap (compare-and-swap), the history lives in it; check reads the live namespaces."""
    from lightkube.resources.core_v1 import ConfigMap  # noqa: PLC0415

    cluster = kube_cluster
    for namespace in ("imagegate", "tool-x", "tool-y"):
        cluster.namespace(namespace)
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "imagegate-grants", "namespace": "imagegate"},
            "data": {"grants.yaml": GRANTS_HEADER + "grants:\n" + FULL_GRANT},
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "no-key", "namespace": "imagegate"}},
    )
    env = cli_env(KUBECONFIG=str(cluster.kubeconfig), HOME=str(tmp_path))

    def imagegate(*args: str) -> subprocess.CompletedProcess[str]:
        return run_imagegate(*args, env=env)

    def stored(name: str = "imagegate-grants") -> tuple[dict[str, Any], str]:
        found = cluster.client.get(ConfigMap, name=name, namespace="imagegate")
        assert found.metadata is not None and found.metadata.resourceVersion is not None
        return yaml.safe_load((found.data or {}).get("grants.yaml", "") or "{}"), found.metadata.resourceVersion

    on_cluster = ["--apply", "--configmap", "imagegate/imagegate-grants", "--by", "bob", "--now", "2026-12-01"]
    renewed = imagegate("grants", "renew", "tool-x", "--expires", "2027-06-30", *on_cluster)
    assert renewed.returncode == 0, renewed.stderr
    document, version = stored()
    assert document["grants"] == [{**KEPT, "expires": "2027-06-30", "ticket": "T1"}]
    assert [e["action"] for e in document["history"]] == ["renewed"]
    widened = imagegate("grants", "add", "tool-x", "--replace", "--expires", "2027-07-31", *on_cluster)
    one_error(widened, "leaves out what its grant has", "registries ghcr.io/x")
    assert stored()[1] == version  # refused before any write
    added = imagegate("grants", "add", "tool-gone", "--expires", "2027-01-31", *on_cluster)
    assert added.returncode == 0, added.stderr
    checked = imagegate(
        "grants", "check", "--configmap", "imagegate/imagegate-grants", "--now", "2026-12-01", "-o", "json"
    )
    assert checked.returncode == 1, checked.stderr
    assert [(p["namespace"], p["problem"]) for p in json.loads(checked.stdout)] == [("tool-gone", "no-namespace")]
    revoked = imagegate("grants", "revoke", "tool-gone", "--reason", "no such tool", *on_cluster)
    assert revoked.returncode == 0, revoked.stderr
    document, _ = stored()
    assert [g["namespace"] for g in document["grants"]] == ["tool-x"]
    assert [(e["action"], e["namespace"], e["by"]) for e in document["history"]] == [
        ("renewed", "tool-x", "bob"),
        ("revoked", "tool-gone", "bob"),
    ]
    clean = imagegate("grants", "check", "--configmap", "imagegate/imagegate-grants", "--now", "2026-12-01")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    # a ConfigMap without the key: refused as `list` refuses it, unless --create
    no_key = ["--apply", "--configmap", "imagegate/no-key", "--by", "bob"]
    one_error(imagegate("grants", "add", "tool-y", *no_key), "the document is empty", "--create")
    assert stored("no-key")[0] == {}
    created = imagegate("grants", "add", "tool-y", *no_key, "--create")
    assert created.returncode == 0, created.stderr
    assert [g["namespace"] for g in stored("no-key")[0]["grants"]] == ["tool-y"]


def test_a_serving_webhook_keeps_its_grants_and_says_why_when_a_second_grant_appears(tmp_path: Path) -> None:
    """`imagegate serve`: a second grant for tool-a (any registry) is refused on reload; the limited one stays."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY_HEADER + "byoc: {grantsFile: grants.yaml}\nnamespaces: {include: ['tool-*']}\n")
    grants = grants_file(tmp_path, "  - {namespace: tool-a, registries: [ghcr.io/a]}\n")
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "ghcr.io/other/app:1"}]}}
    review = admission_review(pod, "tool-a")
    with run_webhook(tmp_path, policy=policy) as webhook:
        client = webhook.client()

        def allowed() -> bool:
            return bool(client.post("/validate", json=review).json()["response"]["allowed"])

        assert not allowed()  # ghcr.io/other is not the grant's registry
        grants.write_text(grants.read_text() + "  - {namespace: tool-a}\n")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and client.get("/readyz").json()["policyError"] is None:
            time.sleep(0.1)
        ready = client.get("/readyz").json()
        assert ready["ready"] is True, ready
        assert f"{grants}:5: grants[1].namespace: tool-a has a grant already, at {grants}:4" in ready["policyError"]
        assert not allowed()  # the grants in force are the last good ones
        assert "imagegate_policy_valid 0.0" in client.get("/metrics").text
        assert "has a grant already" in webhook.logs()
