"""What every ``imagegate`` command shares: the app, its options, loading and judging.

The command modules (cli_check, cli_ops, cli_identities, ...) import this one and register
their commands on :data:`app`; ``cli`` imports them all. Nothing here imports a command
module, so the CLI's modules form no import cycle (tests/test_import_graph.py). The exit
codes are in ``exits``, which the serving process shares without loading typer or rich.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
import typer
from rich.console import Console
from rich.markup import escape

from imagegate.core.decide import Decision, decide
from imagegate.core.names import namespace_name_error
from imagegate.core.policy import Policy, PolicyError, RegistryConfig, load_policy
from imagegate.core.records import NO_ANSWERS, Answers, Webhook
from imagegate.core.workloads import (
    POD_TEMPLATE_PATHS,
    ObjectShapeError,
    image_uses,
    object_metadata,
    object_namespace,
)
from imagegate.core.yamldoc import DocumentError
from imagegate.shell.builtin_policy import default_policy
from imagegate.shell.exits import EXIT_BAD_INPUT
from imagegate.shell.manifests import Location, SourcedObject, read_manifests
from imagegate.shell.policy_files import MAX_POLICY_BYTES, load_policy_files, read_document

if TYPE_CHECKING:  # the registry's modules (and the event loop) are loaded by the commands that ask one
    from imagegate.shell.registry.gate import RegistryGate

app = typer.Typer(
    name="imagegate",
    help="Admission control for container images on multi-tenant Kubernetes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # click's plain help: rich's option table cuts long option names short at 80 columns
    # ("--print-configm…"); click's wraps the help text beside them instead.
    rich_markup_mode=None,
)

PolicyOption = Annotated[
    Path | None,
    typer.Option(
        "--policy", "-p", help="Policy file (YAML; - for stdin). Default: the built-in policy.", dir_okay=False
    ),
]
GrantsOption = Annotated[
    Path | None,
    typer.Option("--grants", "-g", help="Grants file; overrides the policy's byoc.grantsFile.", dir_okay=False),
]

IdentitiesOption = Annotated[
    Path | None,
    typer.Option(
        "--identities",
        help="Tool identities file (kind: ToolIdentities, from `imagegate identities`); "
        "overrides the policy's toolProfile.identitiesFile.",
        dir_okay=False,
    ),
]


def namespace_name(value: Any) -> Any:
    """A typer callback: each namespace an option or argument names is a namespace name (core.names)."""
    for name in [value] if isinstance(value, str) else value or ():
        problem = namespace_name_error(name)
        if problem is not None:
            raise typer.BadParameter(problem)
    return value


ExpiringDaysOption = Annotated[
    int, typer.Option("--expiring-days", min=0, help="Grants ending within this many days are 'expiring'.")
]


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


def fail(message: str) -> typer.Exit:
    """Bad input: one ``error:`` line on stderr; raise what this returns to exit 2."""
    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(EXIT_BAD_INPUT)


def write_json(document: Any) -> None:
    """``--output json``: a document (msgspec Structs, see cli_json) on stdout, indented."""
    sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(document)) + b"\n")


STDIN = Path("-")


def _read_stdin(source: str) -> str:
    raw = sys.stdin.buffer.read(MAX_POLICY_BYTES + 1)
    if len(raw) > MAX_POLICY_BYTES:
        raise fail(f"{source}: larger than {MAX_POLICY_BYTES} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fail(f"{source}: not UTF-8 text (byte {exc.start})") from None


def invalid_policy(exc: PolicyError) -> typer.Exit:
    """The one error line (exit 2) for a policy, grants or identities file that does not load."""
    return fail(f"invalid {exc.document or 'policy'}: {exc}")


def load(policy_path: Path | None, grants_path: Path | None, identities_path: Path | None = None) -> Policy:
    """The policy (``-p -``: from standard input) and its grants; exit 2 when invalid."""
    text = _read_stdin("<stdin>") if policy_path == STDIN else None
    try:
        policy = load_policy_files(policy_path, grants_path, identities_path=identities_path, policy_text=text)[0]
    except PolicyError as exc:
        raise invalid_policy(exc) from None
    missing = policy.identities_missing()
    if missing is not None:
        Console(stderr=True, soft_wrap=True).print(f"[yellow]warning:[/] {escape(missing)}")
    return policy


def registry_gate(policy_path: Path | None, *, remember_failures: bool = False) -> RegistryGate:
    """The registries' client for a command that asks them (the client and its verifiers load here,
    not on every command): files the policy names are read beside ``policy_path``."""
    from imagegate.shell.registry.gate import RegistryGate  # noqa: PLC0415

    return RegistryGate(policy_path.parent if policy_path else None, remember_failures=remember_failures)


def registry_options(config: RegistryConfig, platform: Sequence[str] | None, ca_file: Path | None) -> RegistryConfig:
    """The policy's registry settings with the ``--platform`` and ``--ca-file`` options a command was
    given (the commands that read one image: ``inspect``, ``contents``); exit 2 on a bad platform."""
    from imagegate.core.platforms import PlatformError, parse_platform  # noqa: PLC0415

    if platform:
        try:
            config = replace(config, platforms=tuple(parse_platform(p) for p in platform))
        except PlatformError as exc:
            raise fail(f"--platform {exc}") from None
    if ca_file is not None:
        config = replace(config, ca_file=str(ca_file.absolute()))
    return config


def load_policy_alone(policy_path: Path | None) -> Policy:
    """The policy (built-in when ``None``, ``-``: standard input) without the files it names: for
    the commands that edit or check those files themselves (``grants``)."""
    try:
        if policy_path is None:
            return default_policy()
        if policy_path == STDIN:
            return load_policy(_read_stdin("<stdin>"), "<stdin>")
        return load_policy(read_document(policy_path), str(policy_path))
    except PolicyError as exc:
        raise fail(f"invalid policy: {exc}") from None


def parse_now(text: str | None) -> dt.datetime:
    if text is None:
        return dt.datetime.now(dt.UTC)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise fail(f"--now: {text!r} is not an ISO date or date-time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def day_not_past(option: str, text: str, now: dt.datetime, consequence: str) -> dt.date:
    """A date option (YYYY-MM-DD) that must not be before today, UTC; ``consequence`` says what
    a past one would mean. Exit 2 otherwise."""
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise fail(f"{option}: {text!r} is not a date (YYYY-MM-DD)") from None
    today = now.astimezone(dt.UTC).date()
    if day < today:
        raise fail(f"{option} {text} is in the past (today is {today.isoformat()}, UTC): {consequence}")
    return day


@dataclass
class CheckedObject:
    location: Location
    decision: Decision
    obj: Mapping[str, Any]  # as read: reports name its top owner from it
    exempt_images: int = 0  # images of an object the policy does not govern (not judged)

    @property
    def where(self) -> str:
        """Where it was read, as reports print it."""
        return str(self.location)


@contextmanager
def progress_on_terminal(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr when it is a terminal; nothing at all when it is not."""
    console = Console(stderr=True)
    if not console.is_terminal:

        def ignore(_done: int) -> None:
            return None

        yield ignore
        return
    from rich.progress import Progress  # noqa: PLC0415 (only on a terminal)

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(description, total=total)

        def advance(done: int) -> None:
            progress.advance(task, done)

        yield advance


def read_inputs(paths: list[str], what: str, unreadable: list[DocumentError] | None = None) -> list[SourcedObject]:
    """Objects from files, directories or stdin; a target with none is said on stderr.

    With ``unreadable``, each file that cannot be read gets its own ``error:`` line, is added
    there, and the other files are still read (the caller exits 2 at the end); without it,
    the first such file is the command's error.
    """
    empty: list[str] = []
    console = Console(stderr=True, soft_wrap=True)
    try:
        objects = read_manifests(paths, empty, unreadable)
    except DocumentError as exc:
        raise fail(f"invalid {what}: {exc}") from None
    for error in unreadable or ():
        console.print(f"[bold red]error:[/] invalid {what}: {escape(str(error))}")
    for note in empty:
        console.print(f"[yellow]note:[/] {escape(note)}")
    return objects


def plural(count: int, word: str) -> str:
    """``1 object``, ``2 objects``: English for a count (never "1 objects")."""
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def pod_bearing(objects: list[SourcedObject]) -> list[SourcedObject]:
    """The objects that carry pods (what is judged); the others (Namespaces, imagegate's own
    documents, ConfigMaps) are counted in one note on stderr, never as "exempt" objects."""
    kept = [item for item in objects if item.obj.get("kind") in POD_TEMPLATE_PATHS]
    if len(kept) < len(objects):
        kinds = Counter(str(item.obj.get("kind")) for item in objects if item.obj.get("kind") not in POD_TEMPLATE_PATHS)
        listed = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
        Console(stderr=True, soft_wrap=True).print(
            f"[yellow]note:[/] not judged, as they carry no pod: {escape(listed)}"
        )
    return kept


def namespace_labels_in(objects: list[SourcedObject]) -> dict[str, Mapping[str, str]]:
    """Labels of Namespace objects in the input, for policies with a namespace selector."""
    labels: dict[str, Mapping[str, str]] = {}
    for item in objects:
        metadata = object_metadata(item.obj)
        if item.obj.get("kind") == "Namespace":
            found = metadata.get("labels") or {}
            name = str(metadata.get("name", ""))
            labels[name] = {str(k): str(v) for k, v in found.items()} if isinstance(found, Mapping) else {}
    return labels


def check_objects(
    policy: Policy,
    objects: list[SourcedObject],
    default_namespace: str,
    now: dt.datetime,
    gate: RegistryGate | None = None,
    namespace_labels: Mapping[str, Mapping[str, str]] | None = None,
) -> list[CheckedObject]:
    """Judge every object the way the webhook would on CREATE (with the registry when ``gate``).

    Namespace labels come from Namespace objects among ``objects`` and from ``namespace_labels``
    (a live cluster's), for selectors and tool identities by label.
    """
    known_labels = {**(namespace_labels or {}), **namespace_labels_in(objects)}
    objects = pod_bearing(objects)

    def evaluate_for(item: SourcedObject) -> Callable[[Answers], Decision]:
        namespace = object_namespace(item.obj, default_namespace)

        def evaluate(answers: Answers) -> Decision:
            return decide(
                policy,
                item.obj,
                namespace=namespace,
                now=now,
                namespace_labels=known_labels.get(namespace),
                answers=answers,
            )

        return evaluate

    def checked(item: SourcedObject, decision: Decision) -> CheckedObject:
        return CheckedObject(item.location, decision, item.obj, 0 if decision.governed else _image_count(item.obj))

    with progress_on_terminal(f"judging {len(objects):,} objects", len(objects)) as advance:
        if gate is None:  # offline: no event loop, nothing of the registry's loaded
            results = []
            for item in objects:
                advance(1)
                results.append(checked(item, evaluate_for(item)(NO_ANSWERS)))
            return results
        return _judged_with_registry(gate, policy, objects, evaluate_for, checked, advance)


def _judged_with_registry(
    gate: RegistryGate,
    policy: Policy,
    objects: list[SourcedObject],
    evaluate_for: Callable[[SourcedObject], Callable[[Answers], Decision]],
    checked: Callable[[SourcedObject, Decision], CheckedObject],
    advance: Callable[[int], None],
) -> list[CheckedObject]:
    """Each object judged with the registry's answers (``check --registry``, ``audit --registry``)."""
    import asyncio  # noqa: PLC0415

    from imagegate.shell.registry.answerers import settle  # noqa: PLC0415

    async def judge_all() -> list[CheckedObject]:
        results = []
        try:
            for item in objects:
                advance(1)
                decision = await settle(gate, policy, evaluate_for(item), lambda d: d, webhook=Webhook.CHECK)
                results.append(checked(item, decision))
        finally:
            await gate.aclose()
        return results

    return asyncio.run(judge_all())


def _image_count(obj: Mapping[str, Any]) -> int:
    try:
        return len(image_uses(obj))
    except ObjectShapeError:
        return 0


@dataclass
class UnreadImages:
    """Images a command could not read from their registries, grouped so each cause is said once.

    A dump of 3,000 tools behind one registry that is down is one line ("registry X: unreachable:
    766 images not read"), not 766; the command then exits 2: it did only part of what was asked.
    """

    causes: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    examples: dict[tuple[str, str], str] = field(default_factory=dict)

    def add(self, reference: str, kind: str, message: str) -> None:
        host = reference.split("/", 1)[0] if "/" in reference else "docker.io"
        key = (host, kind)
        self.causes.setdefault(key, []).append(reference)
        self.examples.setdefault(key, message)

    def __bool__(self) -> bool:
        return bool(self.causes)

    def __len__(self) -> int:
        return sum(len(references) for references in self.causes.values())

    def lines(self) -> list[str]:
        return [
            f"{host}: {plural(len(references), 'image')} not read ({kind}), e.g. {self.examples[(host, kind)]}"
            for (host, kind), references in sorted(self.causes.items())
        ]

    def say(self) -> None:
        """One ``error:`` line per registry and cause, on stderr (never in the table or JSON on stdout)."""
        console = Console(stderr=True, soft_wrap=True)
        for line in self.lines():
            console.print(f"[bold red]error:[/] {escape(line)}")


class Layout(StrEnum):
    """How ``check`` and ``audit`` show their findings on a terminal (``-o table``)."""

    auto = "auto"  # the table when it fits, else lines
    table = "table"
    lines = "lines"  # one line per finding: never wraps an image name, fast at any size
    summary = "summary"  # only the totals


LayoutOption = Annotated[
    Layout,
    typer.Option(
        "--layout",
        help="auto (a table when it fits the terminal, else one line per finding), table, lines, or summary (totals only).",
    ),
]
SummaryOption = Annotated[bool, typer.Option("--summary", help="Only the totals (as --layout summary).")]

# Past this many rows a table costs more time to lay out than it saves in reading.
TABLE_MAX_ROWS = 400


def choose_layout(layout: Layout, summary: bool, names: Iterable[Sequence[str]], reserved: int) -> Layout:
    """``auto`` made concrete: a table only when it has few enough rows to lay out quickly and
    its name columns (``names``: objects, containers, images, owners of each row), each as wide
    as its widest cell, leave ``reserved`` columns for the rest (borders, the sentence, which
    may wrap) on the terminal: otherwise a name would be folded mid-word."""
    if summary:
        return Layout.summary
    if layout is not Layout.auto:
        return layout
    widest: list[int] = []
    for count, row in enumerate(names):
        if count >= TABLE_MAX_ROWS:
            return Layout.lines
        widest = [max(pair) for pair in zip(widest or [0] * len(row), (len(cell) for cell in row), strict=True)]
    return Layout.table if sum(widest) + reserved <= Console().width else Layout.lines


def write_lines(lines: Iterable[str]) -> None:
    """Plain lines on stdout, as they are: no markup, no wrapping (and fast for 10,000 of them)."""
    out = sys.stdout
    for line in lines:
        out.write(line + "\n")
