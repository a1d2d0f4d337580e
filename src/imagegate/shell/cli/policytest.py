"""``imagegate test DIR``: policy regression suites, like ``kyverno test`` and ``gator verify``.

A suite (``imagegate-test.yaml``) names resources, a policy, grants and identities, and the
result expected per object and per object and rule; each is judged as ``check`` judges it
(check_objects) and compared. Exit 0 when every expectation holds, 1 when one does not, 2 on
bad input (a suite that cannot be read, or names an object or rule that is not there).
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import msgspec
import typer
import yaml
from rich.console import Console
from rich.markup import escape

from imagegate.core.decide import Decision
from imagegate.core.records import Mode
from imagegate.shell.cli.check import object_outcome
from imagegate.shell.cli.common import app, check_objects, fail, load, parse_now, read_inputs
from imagegate.shell.cli.json_docs import Result
from imagegate.shell.exits import EXIT_DENIED

SUITE_FILE = "imagegate-test.yaml"
SUITE_API_VERSION = "imagegate.toolforge.org/v1"
SUITE_KIND = "PolicyTest"


class RuleResult(StrEnum):
    """What one rule says of one object: the worst mode of its findings there, or pass."""

    ENFORCE = Mode.ENFORCE.value
    WARN = Mode.WARN.value
    AUDIT = Mode.AUDIT.value
    PASS = "pass"


class Expected(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    object: str  # Kind/namespace/name
    result: str  # without rule: a Result (denied, warn, audit, allowed, exempt); with it: a RuleResult
    rule: str | None = None


class Suite(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    api_version: str
    kind: str
    resources: list[str]
    results: list[Expected]
    name: str | None = None
    policy: str | None = None  # None: the built-in policy
    grants: str | None = None
    identities: str | None = None
    now: str | None = None  # ISO date or date-time (grant expiry); None: now


def _suites(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(path.rglob(SUITE_FILE))
    raise fail(f"{path}: no such file or directory")


def _read(path: Path) -> Suite:
    try:
        data = yaml.safe_load(path.read_text())
        if isinstance(data, dict) and isinstance(data.get("now"), dt.date):  # YAML reads 2026-12-07 as a date
            data["now"] = data["now"].isoformat()
        suite = msgspec.convert(data, Suite)
    except OSError as exc:
        raise fail(f"{path}: {exc.strerror or exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError, msgspec.ValidationError) as exc:
        raise fail(f"{path}: not a policy test suite: {exc}") from None
    if (suite.api_version, suite.kind) != (SUITE_API_VERSION, SUITE_KIND):
        raise fail(f"{path}: apiVersion {SUITE_API_VERSION} and kind {SUITE_KIND} expected")
    if not suite.resources or not suite.results:
        raise fail(f"{path}: a suite names resources and the results expected of them")
    return suite


def _rule_result(decision: Decision, rule: str) -> RuleResult:
    modes = {f.mode for f in decision.findings if f.rule == rule}
    return next((RuleResult(m.value) for m in Mode if m in modes), RuleResult.PASS)  # Mode lists the worst first


def _expectation(path: Path, expected: Expected, known_rules: set[str]) -> str:
    """The expected result, checked against its vocabulary (bad input otherwise)."""
    if expected.rule is None:
        choices = [r.value for r in Result]
    else:
        if expected.rule not in known_rules:
            raise fail(f"{path}: {expected.object}: no rule {expected.rule!r} (the rules: imagegate's, see docs)")
        choices = [r.value for r in RuleResult]
    if expected.result not in choices:
        raise fail(f"{path}: {expected.object}: result {expected.result!r} is not one of {', '.join(choices)}")
    return expected.result


def _run(path: Path, console: Console) -> tuple[int, int]:
    """Run one suite; (held, failed)."""
    from imagegate.shell.webhook.metrics import finding_rules  # noqa: PLC0415 (prometheus_client: only here)

    suite = _read(path)
    here = path.parent
    loaded = load(*(here / p if p else None for p in (suite.policy, suite.grants, suite.identities)))
    moment = parse_now(suite.now)
    checked = check_objects(
        loaded, read_inputs([str(here / r) for r in suite.resources], "resource"), "default", moment
    )
    decisions = {f"{c.decision.kind}/{c.decision.namespace}/{c.decision.name}": c.decision for c in checked}
    known_rules = {*finding_rules(), *(f.rule for d in decisions.values() for f in d.findings)}
    held = failed = 0
    title = suite.name or str(path)
    for expected in suite.results:
        want = _expectation(path, expected, known_rules)
        decision = decisions.get(expected.object)
        if decision is None:
            raise fail(f"{path}: {expected.object}: no such object in the resources (Kind/namespace/name)")
        got = object_outcome(decision).value if expected.rule is None else _rule_result(decision, expected.rule)
        what = expected.object + (f" {expected.rule}" if expected.rule else "")
        if got == want:
            held += 1
            console.print(f"[green]pass[/] {escape(title)}: {escape(what)}: {want}")
        else:
            failed += 1
            console.print(f"[bold red]FAIL[/] {escape(title)}: {escape(what)}: expected {want}, got {got}")
    return held, failed


@app.command("test")
def policy_test(
    paths: Annotated[list[Path], typer.Argument(help=f"Suites, or directories searched for {SUITE_FILE}.")],
) -> None:
    """Run policy regression suites: resources, policy, grants, identities and the expected results.

    Exit code: 0 when every expectation holds, 1 when one does not, 2 on bad input.
    """
    suites = [suite for path in paths for suite in _suites(path)]
    if not suites:
        raise fail(f"no {SUITE_FILE} under {', '.join(map(str, paths))}")
    console = Console(soft_wrap=True)
    held = failed = 0
    for suite in suites:
        ok, bad = _run(suite, console)
        held, failed = held + ok, failed + bad
    console.print(f"{len(suites)} suite{'' if len(suites) == 1 else 's'}: {held} held, {failed} failed")
    if failed:
        raise typer.Exit(EXIT_DENIED)
