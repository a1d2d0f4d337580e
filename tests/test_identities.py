"""``imagegate identities``: the tools' uid/gid from a real slapd, from NSS, from Namespace labels."""

from __future__ import annotations

import json
import pwd
from collections.abc import Iterator
from pathlib import Path

import ldap3
import pytest
import yaml

from imagegate.core.identities import (
    Account,
    NamePattern,
    NamePatternError,
    build_identities,
    missing_identities,
    refuse_replacement,
)
from imagegate.core.podprofile import Identity
from imagegate.core.policy import load_identities
from tests.conftest import REPO_ROOT, run_imagegate
from tests.slapd_process import ADMIN_DN, ADMIN_PASSWORD, PAGE_LIMIT, TOOLS_BASE, Slapd, run_slapd, tool_name, tool_uid

TOOLS = 3000


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    with run_slapd(tmp_path_factory.mktemp("slapd"), TOOLS) as server:
        yield server


def ldap_args(server: Slapd, *extra: str) -> list[str]:
    return ["identities", "ldap", "--url", server.url, "--base-dn", TOOLS_BASE, *extra]


def test_a_plain_search_is_capped_so_paging_is_what_reads_them_all(slapd: Slapd) -> None:
    connection = ldap3.Connection(ldap3.Server(slapd.url, get_info=ldap3.NONE), auto_bind=True, raise_exceptions=True)
    connection.search(TOOLS_BASE, "(objectClass=posixAccount)", attributes=["cn"])
    assert connection.result["description"] == "sizeLimitExceeded"
    assert len(connection.entries) == PAGE_LIMIT
    connection.unbind()
    assert TOOLS > PAGE_LIMIT


def test_ldap_identities_for_thousands_of_tools(slapd: Slapd, tmp_path: Path) -> None:
    out = tmp_path / "identities.yaml"
    result = run_imagegate(*ldap_args(slapd, "--out", str(out), "--page-size", "400"))
    assert result.returncode == 0, result.stderr
    identities = load_identities(out.read_text(), str(out))
    assert len(identities) == TOOLS + 1  # every tool account, plus tools.multi
    assert identities[f"tool-{tool_name(0)}"] == Identity(tool_uid(0), tool_uid(0))
    assert identities[f"tool-{tool_name(TOOLS - 1)}"] == Identity(tool_uid(TOOLS - 1), tool_uid(TOOLS - 1))
    assert identities["tool-multi"] == Identity(49999, 49998)  # its cn that is a tool account's; gidNumber read
    assert "tool-alice" not in identities and "alice" not in identities  # a person is not a tool
    assert "tool-rooty" not in identities
    assert f"skipped tools.rooty (uid=tools.rooty,{TOOLS_BASE}): uid 0 / gid 0" in result.stderr
    assert f"wrote {TOOLS + 1} identities" in result.stderr
    # two entries for tools.twice: each named by its DN, neither used; a name no tool can have is reported
    assert "tool-twice" not in identities
    assert f"skipped tools.twice (uid=tools.twice,{TOOLS_BASE}): uid 49990" in result.stderr
    assert f"skipped tools.twice (cn=tools.twice,{TOOLS_BASE}): uid 49991" in result.stderr
    assert "'tools.Bad_Name' is not a tool account name" in result.stderr


def test_a_source_that_finds_nothing_or_much_less_writes_nothing(slapd: Slapd, tmp_path: Path) -> None:
    out = tmp_path / "identities.yaml"
    nothing = run_imagegate(*ldap_args(slapd, "--filter", "(cn=tools.no-such-tool)", "--out", str(out)))
    assert nothing.returncode == 2 and not out.exists()
    assert "nothing written: no identities were found" in nothing.stderr
    assert run_imagegate(*ldap_args(slapd, "--out", str(out))).returncode == 0
    before = out.read_text()
    few = run_imagegate(*ldap_args(slapd, "--filter", "(cn=tools.t0000*)", "--out", str(out)))
    assert few.returncode == 2 and out.read_text() == before
    assert f"{TOOLS + 1 - 10} of the target's {TOOLS + 1} identities would be dropped" in few.stderr
    assert "--allow-shrink" in few.stderr
    assert (
        run_imagegate(*ldap_args(slapd, "--filter", "(cn=tools.*)", "--out", str(out), "--max-drop", "5")).returncode
        == 0
    )
    forced = run_imagegate(*ldap_args(slapd, "--filter", "(cn=tools.t0000*)", "--out", str(out), "--allow-shrink"))
    assert forced.returncode == 0 and "warning:" in forced.stderr
    assert len(load_identities(out.read_text())) == 10
    # -o - is standard output, never a file named "-"
    dash = run_imagegate(*ldap_args(slapd, "--filter", "(cn=tools.t0000*)", "-o", "-"))
    assert dash.returncode == 0 and len(load_identities(dash.stdout)) == 10


def test_nss_and_labels_that_find_nothing_write_nothing(tmp_path: Path) -> None:
    dump = namespaces_dump(tmp_path, {"tool-a": {}, "tool-b": {}})
    nss = run_imagegate("identities", "nss", "--namespaces", str(dump))
    labels = run_imagegate("identities", "namespaces", "--uid-key", "absent", "--namespaces", str(dump))
    for result in (nss, labels):
        assert result.returncode == 2 and result.stdout == "", result.stderr
        assert "no identities were found" in result.stderr
    no_tools = namespaces_dump(tmp_path, {"default": {}, "kube-system": {}})
    check = run_imagegate(
        "identities", "nss", "nobody", "--account-pattern", "{tool}", "--namespaces", str(no_tools), "--check"
    )
    assert check.returncode == 2 and "found no tool namespaces" in check.stderr


def test_the_generated_file_admits_that_tools_pod(slapd: Slapd, tmp_path: Path) -> None:
    out = tmp_path / "identities.yaml"
    assert run_imagegate(*ldap_args(slapd, "--out", str(out))).returncode == 0
    namespace, uid = f"tool-{tool_name(7)}", tool_uid(7)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "job", "namespace": namespace},
        "spec": {
            "securityContext": {"runAsUser": uid, "runAsGroup": uid, "fsGroup": uid},
            "containers": [{"name": "job", "image": f"tools-harbor.wmcloud.org/{namespace}/{namespace}:latest"}],
        },
    }
    (tmp_path / "pod.json").write_text(json.dumps(pod))
    result = run_imagegate("check", str(tmp_path / "pod.json"), "--identities", str(out))
    assert result.returncode == 0, result.stdout
    pod["spec"]["securityContext"] = {"runAsUser": tool_uid(8)}  # type: ignore[index]
    (tmp_path / "pod.json").write_text(json.dumps(pod))
    assert run_imagegate("check", str(tmp_path / "pod.json"), "--identities", str(out)).returncode == 1


def test_bind_with_a_password_file_and_print_the_configmap(slapd: Slapd, tmp_path: Path) -> None:
    (tmp_path / "password").write_text(ADMIN_PASSWORD + "\n")
    result = run_imagegate(
        *ldap_args(
            slapd,
            "--bind-dn",
            ADMIN_DN,
            "--password-file",
            str(tmp_path / "password"),
            "--filter",
            "(&(objectClass=posixAccount)(cn=tools.t0000*))",
            "--print-configmap",
            "imagegate/imagegate-identities",
        )
    )
    assert result.returncode == 0, result.stderr
    configmap = yaml.safe_load(result.stdout)
    assert configmap["kind"] == "ConfigMap" and configmap["metadata"]["name"] == "imagegate-identities"
    identities = load_identities(configmap["data"]["identities.yaml"])
    assert len(identities) == 10  # t00000 .. t00009


def test_a_wrong_password_or_a_directory_that_is_down_is_a_clear_error(slapd: Slapd, tmp_path: Path) -> None:
    (tmp_path / "password").write_text("wrong")
    refused = run_imagegate(*ldap_args(slapd, "--bind-dn", ADMIN_DN, "--password-file", str(tmp_path / "password")))
    assert refused.returncode == 2 and "invalidCredentials: the bind DN or its password is wrong" in refused.stderr
    down = run_imagegate("identities", "ldap", "--url", "ldap://127.0.0.1:1", "--base-dn", TOOLS_BASE, "--timeout", "2")
    assert down.returncode == 2 and "cannot connect to ldap://127.0.0.1:1" in down.stderr
    bad_filter = run_imagegate(*ldap_args(slapd, "--filter", "(((cn="))
    assert bad_filter.returncode == 2 and "invalid filter" in bad_filter.stderr
    bad_pattern = run_imagegate(*ldap_args(slapd, "--account-pattern", "tools.x"))
    assert bad_pattern.returncode == 2 and "exactly one {tool}" in bad_pattern.stderr
    tls_to_plain = run_imagegate(
        "identities",
        "ldap",
        "--url",
        slapd.url.replace("ldap://", "ldaps://"),
        "--base-dn",
        TOOLS_BASE,
        "--timeout",
        "2",
    )
    assert tls_to_plain.returncode == 2 and "is the port plain LDAP? then use ldap://" in tls_to_plain.stderr
    http = run_imagegate("identities", "ldap", "--url", f"http://127.0.0.1:{slapd.port}", "--base-dn", TOOLS_BASE)
    assert http.returncode == 2 and "--url takes ldap://HOST[:PORT] or ldaps://HOST[:PORT]" in http.stderr
    no_base = run_imagegate("identities", "ldap", "--url", slapd.url, "--base-dn", "ou=nosuch,dc=wikimedia,dc=org")
    assert no_base.returncode == 2 and "noSuchObject: no such entry" in no_base.stderr
    for result in (refused, down, bad_filter, bad_pattern, tls_to_plain, http, no_base):
        assert "Traceback" not in result.stderr
        assert " - None - " not in result.stderr and "('" not in result.stderr  # ldap3's reprs stay inside
        assert len(result.stderr.strip().splitlines()) == 1


def namespaces_dump(tmp_path: Path, names: dict[str, dict[str, dict[str, str]]]) -> Path:
    items = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n, **meta}} for n, meta in names.items()]
    path = tmp_path / "namespaces.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    return path


def test_check_lists_tool_namespaces_without_an_identity(slapd: Slapd, tmp_path: Path) -> None:
    dump = namespaces_dump(
        tmp_path, {f"tool-{tool_name(1)}": {}, "tool-newcomer": {}, "default": {}, "kube-system": {}}
    )
    result = run_imagegate(*ldap_args(slapd, "--check", "--namespaces", str(dump)))
    assert result.returncode == 1
    assert result.stdout.strip().splitlines() == ["no identity: tool-newcomer"]
    assert "2 tool namespaces, 1 without an identity" in result.stderr


def test_nss_asks_getpwnam_for_each_tool(tmp_path: Path) -> None:
    """The system's own accounts stand in for sssd's: with --account-pattern {tool}, tool-nobody is 'nobody'."""
    nobody = pwd.getpwnam("nobody")
    dump = namespaces_dump(tmp_path, {"tool-nobody": {}, "tool-no-such-account-here": {}, "default": {}})
    result = run_imagegate("identities", "nss", "--account-pattern", "{tool}", "--namespaces", str(dump), "--check")
    assert result.returncode == 1
    assert "no identity: tool-no-such-account-here" in result.stdout
    named = run_imagegate("identities", "nss", "nobody", "root", "--account-pattern", "{tool}")
    assert named.returncode == 0, named.stderr
    assert load_identities(named.stdout) == {"tool-nobody": Identity(nobody.pw_uid, nobody.pw_gid)}
    assert "skipped root: uid 0 / gid 0" in named.stderr  # never a root identity


def test_identities_from_namespace_labels_and_annotations(tmp_path: Path) -> None:
    dump = namespaces_dump(
        tmp_path,
        {
            "tool-a": {"labels": {"toolforge.org/uid": "51000"}, "annotations": {"toolforge.org/uid": "52000"}},
            "tool-b": {"labels": {"toolforge.org/uid": "51001", "toolforge.org/gid": "61001"}},
            "tool-c": {"labels": {"toolforge.org/uid": "not-a-number"}},
            "tool-d": {},
        },
    )
    labels = run_imagegate(
        "identities", "namespaces", "--uid-key", "toolforge.org/uid", "--gid-key", "toolforge.org/gid",
        "--namespaces", str(dump), "--check",
    )  # fmt: skip
    assert labels.returncode == 1  # tool-c and tool-d have none
    assert set(labels.stdout.split()) >= {"tool-c", "tool-d"}
    assert "skipped tool-c" in labels.stderr
    annotated = run_imagegate(
        "identities", "namespaces", "--uid-key", "toolforge.org/uid", "--annotations", "--namespaces", str(dump)
    )
    assert annotated.returncode == 0
    assert load_identities(annotated.stdout) == {"tool-a": Identity(52000, 52000)}


def test_the_fixture_namespaces_are_tool_namespaces() -> None:
    dump = REPO_ROOT / "tests" / "fixtures" / "toolforge" / "namespaces.yaml"
    identities = REPO_ROOT / "tests" / "fixtures" / "toolforge" / "identities.yaml"
    result = run_imagegate("identities", "namespaces", "--uid-key", "absent", "--namespaces", str(dump), "--check")
    assert result.returncode == 1 and set(result.stdout.split()) >= {"tool-foo", "tool-bar"}
    assert set(load_identities(identities.read_text())) == {"tool-foo", "tool-bar"}


# --- the pure part ----------------------------------------------------------------------------


def test_name_patterns() -> None:
    account = NamePattern("tools.{tool}")
    assert account.tool("tools.foo") == "foo" and account.tool("tools.foo.bar") is None
    assert account.tool("toolsxfoo") is None  # the dot is literal
    assert account.tool("tools.Foo") is None and account.tool("tools.-x") is None
    for bad in ("tools", "{tool}.{tool}", "tools.{namespace}{tool}", "tools.{project}"):
        with pytest.raises(NamePatternError):
            NamePattern(bad)
    # the placeholders mean what they mean in the policy: no glob beside one (issue 27)
    for bad in ("tools.{tool}*", "tool-{tool}?", "tool-[ab]{tool}"):
        with pytest.raises(NamePatternError, match="beside the glob"):
            NamePattern(bad)


def test_build_identities_sets_aside_what_cannot_be_a_tool() -> None:
    account, namespace = NamePattern("tools.{tool}"), NamePattern("tool-{tool}")
    table = build_identities(
        [
            Account("tools.a", 5000, None),
            Account("tools.a", 5001, 5001),  # a second account for the same tool: refused, not guessed
            Account("tools." + "x" * 60, 5002),  # tool-xxx... is longer than a namespace name may be
            Account("tools.b", None),
            Account("someone", 7000),
        ],
        account,
        namespace,
    )
    assert table.identities == {}  # neither of tool-a's two accounts is used
    assert [name for name, _ in table.skipped] == ["tools.a", "tools.a", "tools." + "x" * 60, "tools.b"]
    assert missing_identities(["tool-a", "tool-b", "default"], table.identities, namespace) == ["tool-a", "tool-b"]


def test_two_accounts_for_one_tool_are_both_named_and_neither_used() -> None:
    account, namespace = NamePattern("tools.{tool}"), NamePattern("tool-{tool}")
    table = build_identities(
        [
            Account("tools.a", 5000, 5000, "uid=tools.a,ou=people"),
            Account("tools.a", 5000, 5000, "cn=tools.a,ou=people"),  # agrees: harmless
            Account("tools.b", 6000, 6000, "uid=tools.b,ou=people"),
            Account("tools.b", 6001, 6001, "cn=tools.b,ou=people"),
            Account("tools.b", 6000, 6000, "cn=tools.b,ou=other"),  # a third, after the conflict: still neither
            Account("tools.Bad", 7000, 7000, "uid=tools.Bad,ou=people"),  # meant as a tool's: reported
            Account("alice", 1000, 1000, "uid=alice,ou=people"),  # a person: not ours, not reported
        ],
        account,
        namespace,
    )
    assert table.identities == {"tool-a": Identity(5000, 5000)}
    skipped = dict(table.skipped)
    assert "cn=tools.b,ou=people) is another account for tool-b" in skipped["tools.b (uid=tools.b,ou=people)"]
    assert "uid=tools.b,ou=people" in skipped["tools.b (cn=tools.b,ou=people)"]
    assert "neither is used" in skipped["tools.b (cn=tools.b,ou=other)"]
    assert "not a tool account name" in skipped["tools.Bad (uid=tools.Bad,ou=people)"]
    assert not any("alice" in name for name in skipped)


def test_an_empty_or_much_smaller_table_is_refused() -> None:
    old = {f"tool-{n}": Identity(5000 + n, 5000 + n) for n in range(100)}
    assert refuse_replacement(None, {}, 0.1) is not None  # nothing at all: never written silently
    reason = refuse_replacement(old, {}, 0.1)
    assert reason is not None and "the target has 100" in reason
    ninety = dict(list(old.items())[:90])
    assert refuse_replacement(old, ninety, 0.1) is None  # 10 of 100 dropped: within 10%
    eighty = dict(list(old.items())[:80])
    reason = refuse_replacement(old, eighty, 0.1)
    assert reason is not None and "20 of the target's 100 identities would be dropped" in reason
    assert "and 15 more" in reason
    assert refuse_replacement(old, eighty, 0.25) is None
    assert refuse_replacement(None, eighty, 0.0) is None  # a first run has nothing to compare with
