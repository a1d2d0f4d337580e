"""Policy documents: what they express, and errors that name the line and the key."""

from __future__ import annotations

import datetime as dt
import textwrap
from collections.abc import Callable

import pytest

from imagegate.core.policy import Mode, PolicyError, dump_grants, load_grants, load_identities, load_policy
from imagegate.shell.builtin_policy import default_policy
from tests.conftest import GRANTS_HEADER, IDENTITIES_HEADER, POLICY_HEADER


def policy_text(body: str) -> str:
    return textwrap.dedent(body).lstrip()


def test_full_policy_loads() -> None:
    policy = load_policy(
        policy_text(
            """
            apiVersion: imagegate.toolforge.org/v1
            kind: ImagePolicy
            mode: warn
            trusted:
              - docker-registry.svc.toolforge.org
              - tools-harbor.wmcloud.org/toolforge
            blocked: [k8s.gcr.io]
            byoc:
              default: deny
              requireBaseImage: false
              grants:
                - namespace: tool-a
                  registries: [ghcr.io/a]
                  expires: 2026-12-31
                  reason: upstream image of a tool
                  requestedBy: alice
                  ticket: T123
                  requireBaseImage: true
                  mode: audit
            namespaces:
              include: ["tool-*"]
              exclude: [tool-admin]
              selector:
                matchLabels: {toolforge: tool}
                matchExpressions:
                  - {key: tier, operator: NotIn, values: [infra]}
            """
        ),
        "policy.yaml",
    )
    assert policy.mode is Mode.WARN
    assert [str(p) for p in policy.trusted] == [
        "docker-registry.svc.toolforge.org",
        "tools-harbor.wmcloud.org/toolforge",
    ]
    (grant,) = policy.grants_for("tool-a")
    assert grant.expires == dt.date(2026, 12, 31)
    assert grant.mode is Mode.AUDIT and grant.require_base_image and grant.ticket == "T123"
    assert grant.source == "policy.yaml:12"
    assert policy.namespaces.governs("tool-b", {"toolforge": "tool"})
    assert not policy.namespaces.governs("tool-b", {"toolforge": "tool", "tier": "infra"})
    assert not policy.namespaces.governs("tool-admin", {"toolforge": "tool"})
    assert not policy.namespaces.governs("default", {"toolforge": "tool"})
    # labels unknown (no namespace informer): governed, fail closed
    assert policy.namespaces.governs("tool-b", None)


def test_json_policy_is_yaml_too() -> None:
    policy = load_policy(
        '{"apiVersion": "imagegate.toolforge.org/v1", "kind": "ImagePolicy",'
        ' "trusted": ["registry.example.org"], "byoc": {"default": "allow"}}'
    )
    assert policy.byoc_default == "allow"


def test_grant_expiry_is_the_whole_day_utc() -> None:
    (grant,) = load_grants(GRANTS_HEADER + "grants:\n  - namespace: tool-a\n    expires: 2026-12-31\n")
    assert not grant.expired(dt.datetime(2026, 12, 31, 23, 59, tzinfo=dt.UTC))
    assert grant.expired(dt.datetime(2027, 1, 1, 0, 0, tzinfo=dt.UTC))
    assert grant.days_left(dt.datetime(2026, 12, 1, tzinfo=dt.UTC)) == 30


@pytest.mark.parametrize(
    ("text", "line", "key", "message"),
    [
        ("trusted:\n  - nginx\n", 2, "trusted[0]", "does not start with a registry"),
        ("trusted: [registry.org]\nbyoc:\n  defualt: deny\n", 3, "byoc.defualt", "unknown key 'defualt'"),
        ("byoc:\n  default: maybe\n", 2, "byoc.default", "Invalid enum value 'maybe'"),
        ("mode: strict\n", 1, "mode", "Invalid enum value 'strict'"),
        (
            "byoc:\n  grants:\n    - namespace: tool-a\n      expires: next week\n",
            4,
            "byoc.grants[0].expires",
            "write a date",
        ),
        (
            "byoc:\n  grants:\n    - namespace: tool-a\n      expires: 2026-12-31T10:00:00Z\n",
            4,
            "byoc.grants[0].expires",
            "write a date",
        ),
        ("byoc:\n  grants:\n    - namespace: Tool_A\n", 3, "byoc.grants[0].namespace", "not a namespace"),
        ("byoc:\n  grants:\n    - registries: [ghcr.io]\n", 3, "byoc.grants[0]", "missing required field"),
        (
            "byoc:\n  grants:\n    - namespace: tool-a\n      registries: []\n",
            4,
            "byoc.grants[0].registries",
            "allows nothing",
        ),
        ("trusted: [a.org]\ntrusted: [b.org]\n", 2, "trusted", "duplicate key"),
        ("trusted: registry.org\n", 1, "trusted", "Expected `array`"),
        ("apiVersion: imagegate.toolforge.org/v2\n", 1, "apiVersion", "unsupported apiVersion"),
        (
            "namespaces:\n  selector:\n    matchExpressions:\n      - {key: a, operator: In}\n",
            4,
            "namespaces.selector.matchExpressions[0]",
            "needs values",
        ),
        ("namespaces:\n  include: ['Tool A']\n", 2, "namespaces.include[0]", "not a namespace name"),
    ],
)
def test_errors_name_line_and_key(text: str, line: int, key: str, message: str) -> None:
    # the header goes last, so the lines of the cases stay as written
    header = "".join(entry + "\n" for entry in POLICY_HEADER.splitlines() if entry.split(":")[0] + ":" not in text)
    with pytest.raises(PolicyError) as caught:
        load_policy(text + header, "policy.yaml")
    error = caught.value
    assert (error.line, error.path) == (line, key), str(error)
    assert message in error.message
    assert str(error).startswith(f"policy.yaml:{line}: {key}: ")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("trusted: [a.org\n", "invalid YAML"),
        ("- just\n- a list\n", "expected a mapping"),
        ("a: 1\n---\nb: 2\n", "expected one YAML document"),
        ("key: !!python/object:os.system {}\n", "unsupported YAML tag"),
        ("key: !!python/name:os.system\n", "unsupported YAML tag"),
        ("&a [*a]\n", "nested deeper"),
        (
            "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(
                f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
                for p, c in zip("abcdefg", "bcdefgh", strict=False)
            ),
            "alias expansion",
        ),
    ],
)
def test_malformed_documents(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        load_policy(text, "policy.yaml")


def test_grants_document_and_round_trip() -> None:
    text = policy_text(
        """
        apiVersion: imagegate.toolforge.org/v1
        kind: ImageGrants
        grants:
          - namespace: tool-a
            registries: [ghcr.io/a, quay.io/a/*]
            expires: 2027-01-31
            reason: needs an upstream image
            ticket: T1
          - namespace: tool-b
        """
    )
    grants = load_grants(text, "grants.yaml")
    assert [g.namespace for g in grants] == ["tool-a", "tool-b"]
    assert grants[1].registries is None  # any registry
    dumped = dump_grants(grants)
    assert dumped["grants"][0] == {
        "namespace": "tool-a",
        "registries": ["ghcr.io/a", "quay.io/a/*"],
        "expires": "2027-01-31",
        "reason": "needs an upstream image",
        "ticket": "T1",
    }


LOADERS: dict[str, Callable[[str, str], object]] = {
    "ImagePolicy": load_policy,
    "ImageGrants": load_grants,
    "ToolIdentities": load_identities,
}
HEADERS = {"ImagePolicy": POLICY_HEADER, "ImageGrants": GRANTS_HEADER, "ToolIdentities": IDENTITIES_HEADER}


@pytest.mark.parametrize("kind", LOADERS)
@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("", 1, "the document is empty (or only comments)"),
        ("\n\n", 1, "the document is empty"),
        ("# grants are added by `imagegate grants add`\n", 1, "the document is empty"),
        ("---\n", 1, "the document is empty"),
        ("--- # nothing\n...\n", 1, "the document is empty"),
        ("null\n", 1, "the document is empty"),
        ("~\n", 1, "the document is empty"),
        ("{}\n", 1, "missing apiVersion"),
        ("kind: {kind}\n", 1, "missing apiVersion"),
        ("apiVersion: imagegate.toolforge.org/v1\n", 1, "missing kind"),
        ("apiVersion: imagegate.toolforge.org/v1\nkind: ConfigMap\n", 2, "expected kind {kind}, got 'ConfigMap'"),
        ("apiVersion: imagegate.toolforge.org/v1\nkind: null\n", 2, "expected kind {kind}, got None"),
        ("apiVersion: v1\nkind: {kind}\n", 1, "unsupported apiVersion 'v1'"),
        ("apiVersion: [imagegate.toolforge.org/v1]\nkind: {kind}\n", 1, "unsupported apiVersion"),
        ("- apiVersion: imagegate.toolforge.org/v1\n", 1, "expected a mapping"),
    ],
)
def test_every_document_says_what_it_is(kind: str, text: str, line: int, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        LOADERS[kind](text.replace("{kind}", kind), "doc.yaml")
    assert caught.value.line == line, str(caught.value)
    assert message.replace("{kind}", kind) in str(caught.value)
    if "empty" in message or "missing" in message:  # the error says what to write
        assert f"apiVersion: imagegate.toolforge.org/v1 and kind: {kind}" in str(caught.value)


@pytest.mark.parametrize("kind", LOADERS)
def test_a_document_of_another_kind_is_refused(kind: str) -> None:
    for other, header in HEADERS.items():
        if other != kind:
            with pytest.raises(PolicyError, match=f"expected kind {kind}, got '{other}'"):
                LOADERS[kind](header, "doc.yaml")
        else:
            LOADERS[kind](header, "doc.yaml")  # the header alone is a valid (empty) document


def test_a_new_grants_file_starts_only_when_asked() -> None:
    """`grants add --create` on a file or key not there yet; an empty text is otherwise refused, as `list` refuses it."""
    from imagegate.shell.cluster.grants_file import GrantEditError, edit_grants_text  # noqa: PLC0415

    def add(current: list[dict[str, object]]) -> list[dict[str, object]]:
        return [*current, {"namespace": "tool-a"}]

    for empty in ("", "# new\n"):
        assert [g.namespace for g in load_grants(edit_grants_text(empty, "grants.yaml", add, create=True))] == [
            "tool-a"
        ]
        with pytest.raises(GrantEditError, match=r"empty .*--create"):
            edit_grants_text(empty, "grants.yaml", add)
    with pytest.raises(PolicyError, match="missing apiVersion"):
        edit_grants_text("grants: []\n", "grants.yaml", add, create=True)


def test_default_policy_is_closed() -> None:
    policy = default_policy()
    assert policy.byoc_default == "deny" and not policy.grants
    assert policy.mode is Mode.ENFORCE
    assert not policy.namespaces.governs("kube-system", None)
