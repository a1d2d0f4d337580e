"""The ``content:`` policy section (issue 25 item 3): its rules validated with lines, judged over
real files.

The images are real Debian bookworm root filesystems made by mmdebstrap (tests/debian_rootfs.py):
minbase with libnss-sss (what Toolforge's base adds: its nsswitch.conf names sss) and unrar (from
non-free), and minbase alone (no libnss-sss, nsswitch.conf as Debian ships it: files only). An
image on the first whose later layer removed libnss-sss or rewrote nsswitch.conf is the first
with dpkg's status as ``apt-get purge`` leaves it, or the second's nsswitch.conf.
"""

from __future__ import annotations

import msgspec
import pytest

from imagegate.core.contents import dpkg
from imagegate.core.contents.files import ImageFiles
from imagegate.core.contents.inventory import INVENTORY_FILES, read_inventory
from imagegate.core.contents.policy import ContentRule, Proof, judge, proof_holds
from imagegate.core.policy import PolicyError, load_policy
from imagegate.core.records import DenyOrAllow, Mode
from imagegate.core.reference import parse_docker_ref
from imagegate.shell.builtin_policy import default_policy
from tests.debian_rootfs import kept_files, rootfs

HEADER = "apiVersion: imagegate.toolforge.org/v1\nkind: ImagePolicy\n"
INTEGRATION = r"""
content:
  rules:
    - name: toolforge-integration
      grants: true
      requirePackages: [{name: libnss-sss}]
      requireFiles:
        - path: /etc/nsswitch.conf
          lines: ['^passwd:.*\bsss\b', '^group:.*\bsss\b']
"""


def _rule(yaml: str, index: int = 0) -> ContentRule:
    return load_policy(HEADER + yaml).content.rules[index]


@pytest.fixture(scope="module")
def with_sss() -> ImageFiles:
    return kept_files(
        rootfs(include=("libnss-sss", "unrar"), components=("main", "contrib", "non-free")),
        INVENTORY_FILES | dpkg.files_for("libnss-sss"),
        ["/etc/nsswitch.conf"],
    )


@pytest.fixture(scope="module")
def minbase() -> ImageFiles:
    return kept_files(rootfs(), INVENTORY_FILES | dpkg.files_for("libnss-sss"), ["/etc/nsswitch.conf"])


def _verdict(rule: ContentRule, files: ImageFiles) -> tuple[bool, tuple[str, ...]]:
    found = judge(rule, read_inventory(files), files, "sha256:" + "1" * 64)
    assert found.digest == "sha256:" + "1" * 64 and found.mode is rule.mode
    return found.ok, found.failures


def test_the_integration_rule_on_real_images(with_sss: ImageFiles, minbase: ImageFiles) -> None:
    rule = _rule(INTEGRATION)
    assert _verdict(rule, with_sss) == (True, ())
    packages = len(read_inventory(minbase).packages)
    ok, failures = _verdict(rule, minbase)
    assert not ok
    assert failures == (
        f"libnss-sss is not installed (dpkg lists {packages} packages)",
        r"/etc/nsswitch.conf: passwd: files (no line matches ^passwd:.*\bsss\b)",
        r"/etc/nsswitch.conf: group: files (no line matches ^group:.*\bsss\b)",
    )


def test_a_later_layer_that_removes_libnss_sss_or_rewrites_nsswitch(with_sss: ImageFiles, minbase: ImageFiles) -> None:
    rule = _rule(INTEGRATION)
    status = with_sss.files[dpkg.STATUS].decode()
    purged = "\n\n".join(p for p in status.split("\n\n") if not p.startswith("Package: libnss-sss\n"))
    removed = msgspec.structs.replace(with_sss, files={**with_sss.files, dpkg.STATUS: purged.encode()})
    ok, failures = _verdict(rule, removed)
    assert not ok and failures[0].startswith("libnss-sss is not installed (dpkg lists ")
    rewritten = msgspec.structs.replace(
        with_sss, files={**with_sss.files, "/etc/nsswitch.conf": minbase.files["/etc/nsswitch.conf"]}
    )
    ok, failures = _verdict(rule, rewritten)
    assert not ok and [f.split(" (")[0] for f in failures] == [
        "/etc/nsswitch.conf: passwd: files",
        "/etc/nsswitch.conf: group: files",
    ]
    gone = msgspec.structs.replace(
        with_sss, files={p: d for p, d in with_sss.files.items() if p != "/etc/nsswitch.conf"}
    )
    assert _verdict(rule, gone) == (False, ("/etc/nsswitch.conf is not in the image",))


SSS_LIBRARY = "/lib/x86_64-linux-gnu/libnss_sss.so.2"  # as dpkg lists it (usrmerge keeps it in /usr/lib)
MD5SUMS = "/var/lib/dpkg/info/libnss-sss:amd64.md5sums"
LIST = "/var/lib/dpkg/info/libnss-sss:amd64.list"


def test_a_required_package_whose_files_a_later_layer_deleted_is_denied(with_sss: ImageFiles) -> None:
    """dpkg's database still lists libnss-sss; its library (and its copyright file) are gone:
    the reader says so in ``absent``, and the rule names the files missing, as dpkg lists them."""
    rule = _rule(INTEGRATION)
    assert with_sss.listed >= {MD5SUMS, LIST, dpkg.DIVERSIONS}
    assert not ({SSS_LIBRARY} & with_sss.absent)
    deleted = msgspec.structs.replace(with_sss, absent=with_sss.absent | {SSS_LIBRARY})
    assert _verdict(rule, deleted) == (
        False,
        (f"libnss-sss is installed but 1 of its files is missing: {SSS_LIBRARY}",),
    )
    both = msgspec.structs.replace(
        with_sss, absent=with_sss.absent | {SSS_LIBRARY, "/usr/share/doc/libnss-sss/copyright"}
    )
    assert _verdict(rule, both)[1] == (
        f"libnss-sss is installed but 2 of its files are missing: {SSS_LIBRARY}, /usr/share/doc/libnss-sss/copyright",
    )
    # a directory of its .list, or a path of no listing, is not one of its regular files
    assert _verdict(rule, msgspec.structs.replace(with_sss, absent=frozenset({"/usr/share/doc/libnss-sss"})))[0]


def test_without_md5sums_the_list_s_files_outside_etc_are_checked(with_sss: ImageFiles) -> None:
    rule = _rule(INTEGRATION)
    files = {p: d for p, d in with_sss.files.items() if p != MD5SUMS}
    listed = with_sss.listed - {MD5SUMS}
    assert _verdict(rule, msgspec.structs.replace(with_sss, files=files, listed=listed)) == (True, ())
    gone = msgspec.structs.replace(
        with_sss, files=files, listed=listed, absent=frozenset({SSS_LIBRARY, "/usr/share/doc/libnss-sss"})
    )
    # the directory is no regular file of it: only the library is said
    assert _verdict(rule, gone)[1] == (f"libnss-sss is installed but 1 of its files is missing: {SSS_LIBRARY}",)
    # dpkg's file list gone too (deleted with the library): that is what is said
    bare = {p: d for p, d in files.items() if p != LIST}
    said = _verdict(rule, msgspec.structs.replace(with_sss, files=bare, listed=listed - {LIST}))[1]
    assert said == (f"libnss-sss is installed but 1 of its files is missing: {LIST}",)


def test_a_file_another_package_diverted_is_looked_for_where_dpkg_moved_it(with_sss: ImageFiles) -> None:
    rule = _rule(INTEGRATION)
    moved = SSS_LIBRARY + ".distrib"
    diversions = with_sss.files[dpkg.DIVERSIONS] + f"{SSS_LIBRARY}\n{moved}\nsome-wrapper\n".encode()
    diverted = {**with_sss.files, dpkg.DIVERSIONS: diversions}
    # the library's own path now holds the wrapper's file: where dpkg put libnss-sss's is what counts
    here = msgspec.structs.replace(with_sss, files=diverted, absent=with_sss.absent | {SSS_LIBRARY})
    assert _verdict(rule, here)[0]
    there = msgspec.structs.replace(with_sss, files=diverted, absent=with_sss.absent | {moved})
    assert _verdict(rule, there)[1] == (f"libnss-sss is installed but 1 of its files is missing: {SSS_LIBRARY}",)
    # a diversion by libnss-sss itself moves another package's file, not its own
    own = {**with_sss.files, dpkg.DIVERSIONS: f"{SSS_LIBRARY}\n{moved}\nlibnss-sss\n".encode()}
    assert not _verdict(rule, msgspec.structs.replace(with_sss, files=own, absent=frozenset({SSS_LIBRARY})))[0]


def test_a_distroless_package_s_files_cannot_be_checked() -> None:
    """status.d has no file list: the package counts by its database entry alone (documented)."""
    rule = _rule("content:\n  rules:\n    - grants: true\n      requirePackages: [{name: base-files}]\n")
    paragraph = b"Package: base-files\nVersion: 12.4\nArchitecture: amd64\n"
    files = ImageFiles(
        {f"{dpkg.STATUS_D}/base-files": paragraph}, listed=frozenset(), absent=frozenset({"/etc/os-release"})
    )
    assert _verdict(rule, files) == (True, ())


def test_version_constraints_compare_as_debian_does(with_sss: ImageFiles) -> None:
    def verdict(constraint: str) -> tuple[bool, tuple[str, ...]]:
        return _verdict(
            _rule(
                f"content:\n  rules:\n    - grants: true\n      requirePackages: [{{name: libnss-sss, version: '{constraint}'}}]\n"
            ),
            with_sss,
        )

    assert verdict(">= 2.8")[0]
    assert verdict(">> 2.8.2")[0]  # 2.8.2-4+deb12u1 sorts after 2.8.2
    assert verdict("<< 2.8.2-4+deb12u2")[0]
    ok, failures = verdict(">= 2.9~rc1")
    assert (
        not ok
        and failures[0].startswith("libnss-sss 2.8.2-4+deb12u")
        and failures[0].endswith("is installed; the rule needs >= 2.9~rc1")
    )


def test_forbidden_packages(with_sss: ImageFiles) -> None:
    rule = _rule("content:\n  rules:\n    - grants: true\n      forbidPackages: [{name: unrar}, {name: telnet}]\n")
    ok, failures = _verdict(rule, with_sss)
    assert not ok and len(failures) == 1
    assert failures[0].startswith("unrar is installed (1:6.2.6") and failures[0].endswith("and the rule forbids unrar")


def test_licences_by_class_area_and_debian_main(with_sss: ImageFiles) -> None:
    trusting_main = _rule("content:\n  rules:\n    - grants: true\n      licenses: {debianMain: allow}\n")
    assert _verdict(trusting_main, with_sss) == (
        False,
        ("1 package under licences that are not OSI-approved or FSF-libre: unrar (non-free)",),
    )
    non_free_allowed = _rule(
        "content:\n  rules:\n    - grants: true\n      licenses: {debianMain: allow, nonFree: allow}\n"
    )
    assert _verdict(non_free_allowed, with_sss) == (True, ())
    # judged file by file: bash's copyright names Latex2e (its docs), which the SPDX list flags neither way
    judged = _rule("content:\n  rules:\n    - grants: true\n      licenses: {unknown: allow}\n")
    ok, (failure,) = _verdict(judged, with_sss)
    assert not ok and "packages under licences that are not OSI-approved or FSF-libre: " in failure
    assert failure.startswith("26 packages under licences that are not OSI-approved or FSF-libre: ")
    assert "bash (GFDL-1.3-no-invariants-only, Latex2e, BSD-4-Clause-UC), " in failure
    assert failure.endswith(", and 21 more")
    # by SPDX id, and a deny list that wins over an allowed class
    only = (
        "content:\n  rules:\n    - grants: true\n"
        "      licenses: {allow: [osi, GPL-1.0-or-later], deny: [gpl-2.0-only], unknown: allow, ecosystems: [deb]}\n"
    )
    ok, (failure,) = _verdict(_rule(only), with_sss)
    assert "licences that are not OSI-approved or GPL-1.0-or-later: apt (GPL-2.0-only denied), " in failure
    assert "base-files" not in failure and "adduser" not in failure  # unknown (allowed); GPL-2.0-or-later
    denied = _rule(
        "content:\n  rules:\n    - grants: true\n      licenses: {deny: [MIT], unknown: allow, debianMain: judge}\n"
    )
    inventory = ImageFiles({"/a/node_modules/x/package.json": b'{"name": "x", "version": "1", "license": "MIT"}'})
    assert _verdict(denied, inventory) == (
        False,
        ("1 package under licences that are not OSI-approved or FSF-libre: x (MIT denied)",),
    )


def test_unknown_licences_get_what_the_rule_says() -> None:
    files = ImageFiles({"/a/node_modules/x/package.json": b'{"name": "x", "version": "1", "license": "Custom"}'})
    strict = _rule("content:\n  rules:\n    - grants: true\n      licenses: {}\n")
    assert _verdict(strict, files) == (
        False,
        ("1 package under licences that are not OSI-approved or FSF-libre: x (unknown: LicenseRef-Custom)",),
    )
    lenient = _rule("content:\n  rules:\n    - grants: true\n      licenses: {unknown: allow}\n")
    assert _verdict(lenient, files) == (True, ())


def test_rules_cover_images_by_pattern_and_grant() -> None:
    policy = load_policy(
        HEADER
        + INTEGRATION
        + "    - {images: [docker.io/library], forbidPackages: [{name: unrar}], mode: warn, onError: allow}\n"
    )
    integration, library = policy.content.rules
    nginx = parse_docker_ref("nginx:1.27")
    assert policy.content.rules_for(nginx) == (library,)
    assert policy.content.rules_for(nginx, granted=True) == (integration, library)
    assert policy.content.rules_for(parse_docker_ref("quay.io/x/y:1"), granted=True) == (integration,)
    assert library.name == "content.rules[1]" and library.mode is Mode.WARN and library.on_error is DenyOrAllow.ALLOW
    assert integration.mode is Mode.ENFORCE and integration.on_error is DenyOrAllow.DENY
    # what the reader keeps for a rule: its files, and the package databases when it asks about packages
    assert integration.files.wants("/etc/nsswitch.conf") and integration.files.wants(dpkg.STATUS)
    only_files = _rule("content:\n  rules:\n    - {grants: true, requireFiles: [{path: /etc/x}]}\n")
    assert only_files.files.wants("/etc/x") and not only_files.files.wants(dpkg.STATUS)


def test_proof_by_layers_content_either_or_both() -> None:
    assert [proof_holds(p, True, False) for p in Proof] == [True, False, True, False]
    assert [proof_holds(p, False, True) for p in Proof] == [False, True, True, False]
    assert all(proof_holds(p, True, True) for p in Proof)
    policy = load_policy(HEADER + INTEGRATION + "byoc:\n  grants:\n    - {namespace: tool-a, proof: either}\n")
    assert policy.grants[0].proof is Proof.EITHER


@pytest.mark.parametrize(
    ("yaml", "error"),
    [
        (
            "content:\n  rules:\n    - {forbidPackages: [{name: x}]}\n",
            "<policy>:5: content.rules[0]: name the images this rule covers (images: patterns, as in trusted; or grants: true)",
        ),
        ("content:\n  rules:\n    - {grants: true}\n", "<policy>:5: content.rules[0]: a rule needs a check"),
        (
            "content:\n  rules:\n    - grants: true\n      requireFiles: [{path: /etc/x, lines: ['(']}]\n",
            "<policy>:6: content.rules[0].requireFiles[0].lines[0]: not a regular expression",
        ),
        (
            "content:\n  rules:\n    - grants: true\n      requireFiles: [{path: etc/x}]\n",
            "<policy>:6: content.rules[0].requireFiles[0].path: write an absolute path",
        ),
        (
            "content:\n  rules:\n    - grants: true\n      requirePackages: [{name: x, version: '2.0'}]\n",
            "<policy>:6: content.rules[0].requirePackages[0].version: write a dpkg relation and a version",
        ),
        (
            "content:\n  rules:\n    - grants: true\n      requirePackages: [{name: x, ecosystem: pypi, version: '>= 2'}]\n",
            "<policy>:6: content.rules[0].requirePackages[0].version: a version constraint is compared as Debian",
        ),
        (
            "content:\n  rules:\n    - grants: true\n      licenses: {allow: [osi, MIT-ish]}\n",
            "<policy>:6: content.rules[0].licenses.allow[1]: 'MIT-ish' is neither a class (osi, fsf-libre) nor an SPDX",
        ),
        (
            "content:\n  rules:\n    - grants: true\n      licenses: {nonfree: allow}\n",
            "content.rules[0].licenses.nonfree: unknown key 'nonfree'",
        ),
        (
            "content:\n  rules:\n    - grants: true\n      licenses: {unknown: warn}\n",
            "content.rules[0].licenses.unknown: Invalid enum value 'warn'; write one of: deny, allow",
        ),
        (
            "content:\n  rules:\n    - {name: a, grants: true, licenses: {}}\n    - {name: a, grants: true, licenses: {}}\n",
            "<policy>:6: content.rules[1].name: 'a' names rules[0] already",
        ),
        (
            "byoc:\n  grants:\n    - {namespace: tool-a, proof: content, requireBaseImage: true}\n",
            "<policy>:5: byoc.grants[0].proof: requireBaseImage asks proof by layers, and proof says content",
        ),
        (
            "byoc:\n  grants:\n    - {namespace: tool-a, proof: maybe}\n",
            "byoc.grants[0].proof: Invalid enum value 'maybe'; write one of: layers, content, either, both",
        ),
    ],
)
def test_errors_name_the_key_and_its_line(yaml: str, error: str) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(HEADER + yaml)
    assert error in str(caught.value)


def test_the_built_in_policy_has_the_integration_rule() -> None:
    (rule,) = default_policy().content.rules
    assert rule.name == "toolforge-integration" and rule.grants and not list(rule.images)
    assert [str(r) for r in rule.require_packages] == ["libnss-sss"]
    assert [(f.path, [p.pattern for p in f.lines]) for f in rule.require_files] == [
        ("/etc/nsswitch.conf", [r"^passwd:.*\bsss\b", r"^group:.*\bsss\b"])
    ]


def test_a_grants_proof_round_trips_and_is_checked() -> None:
    import datetime as dt  # noqa: PLC0415

    from imagegate.core.lint import policy_warnings  # noqa: PLC0415
    from imagegate.core.policy import dump_grants, grant_entry, load_grants  # noqa: PLC0415

    entry = grant_entry("tool-a", proof="both")
    assert entry == {"namespace": "tool-a", "proof": "both"}
    document = {"apiVersion": "imagegate.toolforge.org/v1", "kind": "ImageGrants", "grants": [entry]}
    assert dump_grants(load_grants(__import__("json").dumps(document))) == document
    policy = load_policy(HEADER + "byoc:\n  grants:\n    - {namespace: tool-a, proof: both}\n")
    assert [str(w) for w in policy_warnings(policy, dt.datetime(2026, 12, 7, tzinfo=dt.UTC))] == [
        f"grant tool-a ({policy.grants[0].source}): proof: both, but no content rule covers granted images "
        "(grants: true): nothing is proved by content",
        f"grant tool-a ({policy.grants[0].source}): proof: both, but baseImages.trusted names no base image: "
        "every image it admits is denied",
    ]


def test_outcomes_by_answer_and_on_error() -> None:
    from imagegate.core.contents.policy import BEING_READ, ContentAnswer, ContentVerdict, outcomes  # noqa: PLC0415

    policy = load_policy(
        HEADER + "content:\n  rules:\n"
        "    - {name: strict, grants: true, forbidPackages: [{name: x}]}\n"
        "    - {name: lenient, grants: true, forbidPackages: [{name: x}], onError: allow}\n"
    )
    rules = policy.content.rules
    offline = outcomes(rules, None)
    assert [(o.ok, o.unverified) for o in offline] == [(False, False), (True, True)]
    assert offline[0].detail == "strict: its content was not read (no registry lookup in this evaluation)"
    pending = outcomes(rules, ContentAnswer(pending=True))
    assert [o.detail for o in pending] == [f"strict: {BEING_READ}", f"lenient: {BEING_READ}"]
    assert [o.ok for o in pending] == [False, True]
    broken = outcomes(rules, ContentAnswer(problem="layer sha256:ab: digest mismatch"))
    assert broken[0].detail == "strict: its content could not be read: layer sha256:ab: digest mismatch"
    # the failure's class is named when the shell gives it (a content error's kind, a registry error's)
    named = outcomes(rules, ContentAnswer(problem="layer sha256:ab: the entry '/x' is absolute", kind="unsafe-path"))
    assert (
        named[0].detail
        == "strict: its content could not be read (unsafe-path): layer sha256:ab: the entry '/x' is absolute"
    )
    assert named[1].ok and named[1].unverified
    judged = outcomes(
        rules,
        ContentAnswer((ContentVerdict("strict", False, ("x is installed (1)",)), ContentVerdict("lenient", True)), "d"),
    )
    assert [(o.ok, o.detail, o.unverified) for o in judged] == [
        (False, "strict: x is installed (1)", False),
        (True, "lenient: satisfied", False),
    ]


def test_the_failure_ttl_is_validated() -> None:
    """registry.contents.failureTtlSeconds: how long a read failed on an image's bytes is kept."""
    assert load_policy(HEADER).registry.contents.failure_ttl_seconds == 60
    assert (
        load_policy(HEADER + "registry: {contents: {failureTtlSeconds: 0}}\n").registry.contents.failure_ttl_seconds
        == 0
    )
    for wrong in ("-1", "3601", "soon"):
        with pytest.raises(PolicyError, match="failureTtlSeconds"):
            load_policy(HEADER + f"registry: {{contents: {{failureTtlSeconds: {wrong}}}}}\n")
