"""``imagegate audit --compare``: the four options of the decision request, in numbers."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from imagegate.core.compare import Option, Subject, compare, preset_options
from imagegate.core.decide import decide
from imagegate.core.policy import load_grants, load_identities
from imagegate.core.records import Decision
from imagegate.core.reference import parse_normalized
from imagegate.shell.builtin_policy import default_policy
from tests.conftest import POLICY_HEADER, REPO_ROOT, run_imagegate

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
BOX_ENDS = dt.date(2026, 9, 30)
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "toolforge"


def _dump_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("toolforge_dump", REPO_ROOT / "bench" / "toolforge_dump.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    files: dict[str, Path] = _dump_module().write(tmp_path_factory.mktemp("toolforge"), 120)
    return files


def subjects_of(dump: Path) -> list[Subject]:
    items = json.loads(dump.read_text())["items"]
    labels = {o["metadata"]["name"]: o["metadata"].get("labels", {}) for o in items if o["kind"] == "Namespace"}
    return [
        Subject(o["metadata"]["namespace"], o, labels.get(o["metadata"]["namespace"]))
        for o in items
        if o["kind"] != "Namespace"
    ]


def base_policy(files: dict[str, Path]) -> Any:
    policy = default_policy().with_grants(load_grants(files["grants"].read_text()))
    return policy.with_identities(load_identities(files["identities"].read_text()))


def all_presets(policy: Any, subjects: list[Subject], selected: tuple[str, ...] = ()) -> list[Option]:
    namespaces = {s.namespace for s in subjects}
    return [
        option
        for name in ("closed", "byoc", "time-boxed", "selected")
        for option in preset_options(name, policy, NOW, namespaces, box_ends=BOX_ENDS, selected=selected)
    ]


def test_sharing_pod_security_between_options_changes_no_decision(generated: dict[str, Path]) -> None:
    """The comparison reuses one option's pod-security findings for the others: same numbers as judging each fully."""
    subjects = subjects_of(generated["dump"])
    options = all_presets(base_policy(generated), subjects)
    table = compare(options, subjects)
    for column, option in enumerate(options):
        decisions = [
            decide(option.policy, s.obj, namespace=s.namespace, now=option.now, namespace_labels=s.labels)
            for s in subjects
        ]
        assert table.denied[column] == sum(1 for d in decisions if d.governed and not d.allowed), option.label
        rules: dict[str, int] = {}
        for d in decisions:
            if d.governed and not d.allowed:
                for f in d.violations:
                    rules[f.rule] = rules.get(f.rule, 0) + 1
        assert {r: c[column] for r, c in table.rules.items() if c[column]} == rules, option.label


def test_what_each_preset_denies(generated: dict[str, Path]) -> None:
    subjects = subjects_of(generated["dump"])
    policy = base_policy(generated)
    options = all_presets(policy, subjects, selected=("tool-tool00001",))
    table = compare(options, subjects)
    closed, byoc, boxed, after, selected = range(5)
    assert table.labels[boxed] == "time-boxed (until 2026-09-30)" and table.labels[after].startswith(
        "time-boxed (after"
    )
    untrusted = table.rules["untrusted-registry"]
    assert untrusted[closed] > 0
    assert untrusted[byoc] == untrusted[boxed] == 0  # every image admitted, for everyone, for now
    assert untrusted[closed] >= untrusted[after] >= untrusted[selected]  # the grants file's tools stay open
    # pod security does not depend on the BYOC choice: the same denials under every option
    pod_rules = [r for r in table.rules if r.startswith(("tool-profile:", "pod-security:"))]
    assert pod_rules
    for rule in pod_rules:
        assert len(set(table.rules[rule])) == 1, rule
    assert table.tools_denied()[byoc] < table.tools_denied()[closed]


def test_a_tool_running_another_tools_image_is_named_per_option() -> None:
    policy = default_policy().with_identities(load_identities((FIXTURES / "identities.yaml").read_text()))
    subjects = [
        Subject(o["metadata"]["namespace"], o)
        for path in (
            (FIXTURES / "denied" / "other-tools-harbor-image.yaml"),
            (FIXTURES / "admitted" / "webservice.yaml"),
        )
        for o in yaml.safe_load_all(path.read_text())
        if o
    ]
    table = compare(all_presets(policy, subjects), subjects)
    assert list(table.namespaces) == ["tool-foo"]
    # time-boxed: the grant admits it, and the built-in policy's toolforge-integration content rule
    # covers granted images: offline (compare reads no registry) its content is not verified
    assert table.namespaces["tool-foo"] == [1, 0, 1, 1, 1]
    assert table.namespace_rules["tool-foo"][0] == ["untrusted-registry"]
    assert table.namespace_rules["tool-foo"][2] == ["content-unverified"]
    # what the choice changes, and what each option lets in (against closed, the first column)
    assert table.reference == 0 and table.tools == 2  # tool-foo and the webservice's tool
    assert [i.objects for i in table.lets_in] == [0, 1, 0, 0, 0]
    byoc = table.lets_in[1]
    assert byoc.tools == ("tool-foo",)
    assert byoc.images == ("tools-harbor.wmcloud.org/tool-bar/tool-bar:latest",)
    assert byoc.registries == ("tools-harbor.wmcloud.org",)
    assert table.rules_differing() == {"content-unverified": [0, 0, 1, 0, 0], "untrusted-registry": [1, 0, 0, 1, 1]}
    assert table.rules_same() == {} and table.namespaces_same() == {}
    # ... denied there only for want of a registry answer: counted apart, and what the time box
    # would let in once the image proves itself (the reference, closed, denies it for its registry)
    assert table.unread == [0, 0, 1, 0, 0]
    assert [i.if_proved for i in table.lets_in] == [0, 0, 1, 0, 0]
    assert table.lets_in[2].if_proved_tools == ("tool-foo",)
    assert table.box_ends == BOX_ENDS
    assert all(table.descriptions) and "2026-09-30" in table.descriptions[2]


def test_the_summaries_agree_with_each_decision(generated: dict[str, Path]) -> None:
    """What each option lets in, the rows that differ and the total, against decide() per object."""
    subjects = subjects_of(generated["dump"])
    options = all_presets(base_policy(generated), subjects, selected=("tool-tool00017",))
    table = compare(options, subjects)
    assert table.tools == len({s.namespace for s in subjects}) == 120

    def denials(option: Option) -> list[Any]:
        found = []
        for s in subjects:
            d = decide(option.policy, s.obj, namespace=s.namespace, now=option.now, namespace_labels=s.labels)
            found.append(d if d.governed and not d.allowed else None)
        return found

    closed = denials(options[0])
    for column, option in enumerate(options):
        now = denials(option)
        newly = [i for i, (before, after) in enumerate(zip(closed, now, strict=True)) if before and not after]
        lets_in = table.lets_in[column]
        assert lets_in.objects == len(newly), option.label
        assert set(lets_in.tools) == {subjects[i].namespace for i in newly}, option.label
        images = {f.subject.image for i in newly for f in closed[i].violations if hasattr(f.subject, "image")}
        assert set(lets_in.images) == images, option.label
        assert set(lets_in.registries) == {parse_normalized(i).registry_host for i in images}, option.label
    assert table.lets_in[1].objects > 0 and table.lets_in[1].registries  # BYOC lets registries in
    # a grant admits the registry, but the built-in policy's content rule covers granted images and
    # compare reads no registry: offline the selected tool's images stay denied (content-unverified)
    assert table.lets_in[4].objects == 0 and table.namespace_rules["tool-tool00017"][4] == ["content-unverified"]
    # ... which the table counts apart: what it would let in once those images prove themselves
    assert "tool-tool00017" in table.lets_in[4].if_proved_tools

    def unread(decision: Decision | None) -> bool:  # denied only by findings an answer would settle
        unanswered = {q.unanswered for q in decision.questions} if decision else set()
        return decision is not None and all(f.rule in unanswered for f in decision.violations)

    for column, option in enumerate(options):
        now = denials(option)
        assert table.unread[column] == sum(map(unread, now)), option.label
        waiting = [i for i, (b, a) in enumerate(zip(closed, now, strict=True)) if b and not unread(b) and unread(a)]
        assert table.lets_in[column].if_proved == len(waiting), option.label
        assert set(table.lets_in[column].if_proved_tools) == {subjects[i].namespace for i in waiting}, option.label
    # every rule and tool row is either one the choice changes or one that is the same everywhere
    assert table.rules_differing().keys() | table.rules_same().keys() == table.rules.keys()
    assert not table.rules_differing().keys() & table.rules_same().keys()
    assert "untrusted-registry" in table.rules_differing()
    assert all(r.startswith("tool-profile:") for r in table.rules_same()) and table.rules_same()
    assert table.namespaces_differing().keys() | table.namespaces_same().keys() == table.namespaces.keys()


def cli_args(files: dict[str, Path], *extra: str) -> list[str]:
    return [
        "audit", "--from", str(files["dump"]), "--identities", str(files["identities"]),
        "--grants", str(files["grants"]), "--now", NOW.isoformat(), *extra,
    ]  # fmt: skip


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []
        self._in = False

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self._in = tag in ("td", "th")
        if self._in:
            self.cells.append("")

    def handle_data(self, data: str) -> None:
        if self._in:
            self.cells[-1] += data


def test_the_command_table_json_and_html(generated: dict[str, Path], tmp_path: Path) -> None:
    table = run_imagegate(
        *cli_args(generated, "--compare", "closed", "byoc", "time-boxed", "selected", "--box-ends", "2026-09-30")
    )
    assert table.returncode == 1, table.stderr  # some option denies something
    for label in ("closed", "BYOC for everyone", "time-boxed (until 2026-09-30)", "selected tools"):
        assert label in table.stdout
    assert "rule untrusted-registry" in table.stdout and "objects denied" in table.stdout
    page = tmp_path / "compare.html"
    as_json = run_imagegate(*cli_args(generated, "--compare", "closed", "byoc", "-o", "json", "--html", str(page)))
    payload = json.loads(as_json.stdout)
    assert payload["options"] == ["closed", "BYOC for everyone"]
    assert payload["deniedObjects"][0] > payload["deniedObjects"][1]
    cells = _Cells()
    cells.feed(page.read_text())
    assert "<script" not in page.read_text()
    first_tool = next(iter(payload["namespaces"]))
    assert first_tool in cells.cells
    assert f"{payload['deniedObjects'][0]:,}" in cells.cells


def _chromium_dom(page: Path, tmp_path: Path) -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is not installed (scripts/test.sh installs Debian's chromium)")
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ]  # fmt: skip
    return subprocess.run(
        [chromium, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=True
    ).stdout


def _section(dom: str, name: str) -> str:
    found = re.search(rf'<section id="{name}">(.*?)</section>', dom, re.S)
    assert found, f"no section {name}"
    return found.group(1)


def test_the_decision_page_in_chromium(generated: dict[str, Path], tmp_path: Path) -> None:
    """The page as a browser renders it: the options, what differs first, what each lets in, the rest folded."""
    page = tmp_path / "compare.html"
    presets = ("closed", "byoc", "time-boxed", "selected", "--select", "tool-tool00017", "--box-ends", "2026-09-30")
    result = run_imagegate(*cli_args(generated, "--compare", *presets, "-o", "json", "--html", str(page)))
    assert result.returncode == 1, result.stderr
    payload = json.loads(result.stdout)
    assert payload["tools"] == 120 and payload["boxEnds"] == "2026-09-30" and payload["reference"] == "closed"
    dom = _chromium_dom(page, tmp_path)
    assert "<script" not in dom
    assert "120 tools in total" in dom and "the time box ends 2026-09-30" in dom
    options = _section(dom, "options")
    assert options.count("<dt>") == 5 and options.count("<dd>") == 5
    for sentence in payload["descriptions"]:
        assert sentence.replace("'", "&#x27;") in options or sentence in options
    # what the choice changes comes first, and holds only the rows that differ
    assert dom.index('id="changes"') < dom.index('id="lets-in"') < dom.index('id="same"')
    changes = _section(dom, "changes")
    assert "rule untrusted-registry" in changes and "tool-profile:" not in changes.split("<h3>")[0]
    differing_tools = [ns for ns, row in payload["namespaces"].items() if len(set(row["denied"])) > 1]
    assert f"Tools the choice changes ({len(differing_tools)})" in changes
    assert all(f"<td>{ns}</td>" in changes for ns in differing_tools)
    lets_in = _section(dom, "lets-in")
    objects = [int(n) for n in re.findall(r'data-objects="(\d+)"', lets_in)]
    assert objects == [i["objects"] for i in payload["letsIn"]] and objects[1] > 0
    registries = [int(n) for n in re.findall(r'data-registries="(\d+)"', lets_in)]
    assert registries == [len(i["registries"]) for i in payload["letsIn"]] and registries[1] > 0
    assert all(registry in lets_in for registry in payload["letsIn"][1]["registries"])
    tools = [int(n) for n in re.findall(r'data-tools="(\d+)"', lets_in)]
    assert tools == [len(i["tools"]) for i in payload["letsIn"]] and tools[1] > 0
    same = _section(dom, "same")
    same_rules = [r for r, counts in payload["rules"].items() if len(set(counts)) == 1]
    same_tools = [ns for ns, row in payload["namespaces"].items() if len(set(row["denied"])) == 1]
    assert same_rules and same_tools
    assert "<details>" in same and "<details open" not in same  # folded until asked
    rows = len(same_rules) + len(same_tools)
    assert f"{rows} rows the same under every option ({len(same_rules)} rules, {len(same_tools)} tools)" in same


def test_policy_files_compare_with_presets(generated: dict[str, Path], tmp_path: Path) -> None:
    proposal = tmp_path / "proposal.yaml"
    proposal.write_text(
        POLICY_HEADER
        + "trusted: [docker-registry.svc.toolforge.org, docker-registry.tools.wmflabs.org, ghcr.io/example]\n"
        + "namespaces: {include: ['tool-*']}\n"
    )
    result = run_imagegate(*cli_args(generated, "--compare", str(proposal), "closed", "-o", "json"))
    payload = json.loads(result.stdout)
    assert payload["options"] == ["proposal.yaml", "closed"]
    # no pod security in the proposal: only image rules deny there
    assert all(not rule.startswith("tool-profile:") or counts[0] == 0 for rule, counts in payload["rules"].items())


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--compare", "opened"), "neither a policy file nor a preset"),
        (("--compare",), "--compare needs policies"),
        (("closed",), "given with --compare"),
        (("--compare", "time-boxed", "--box-ends", "soon"), "--box-ends"),
    ],
)
def test_bad_comparisons_are_clear_errors(generated: dict[str, Path], extra: tuple[str, ...], message: str) -> None:
    result = run_imagegate(*cli_args(generated, *extra))
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
