"""``imagegate grants``: the grant lifecycle (add, renew, revoke, list, expiring, check) on a
grants file or the cluster's ConfigMap.

A change is held to the policy (``-p``, else the built-in one) as the webhook will hold it: a
namespace it governs, the keys ``byoc.requiredGrantFields`` requires, one grant per namespace.
A renewal or a replacement keeps, or names, every key of the grant; a revocation, a renewal
and a replacement leave an entry in the file's ``history`` (who, when, why, the grant as it was).
"""

from __future__ import annotations

import datetime as dt
import getpass
import sys
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.console import Console
from rich.markup import escape

from imagegate.core.policy import (
    Grant,
    GrantAction,
    GrantDoc,
    GrantEvent,
    Mode,
    Policy,
    PolicyError,
    grant_entry,
    load_grants_file,
)
from imagegate.core.report import GrantState, GrantStatus, grant_states
from imagegate.core.workloads import object_metadata
from imagegate.shell.cli.common import (
    ExpiringDaysOption,
    GrantsOption,
    Layout,
    OutputFormat,
    app,
    choose_layout,
    day_not_past,
    fail,
    load_policy_alone,
    namespace_name,
    parse_now,
    plural,
    read_inputs,
    write_json,
)
from imagegate.shell.cli.json_docs import GrantCheckJson, GrantJson, GrantProblem
from imagegate.shell.cluster.grants_file import (
    Edited,
    GrantChange,
    GrantEditError,
    edit_grants_file,
    edit_grants_text,
    grants_configmap_yaml,
)
from imagegate.shell.exits import EXIT_DENIED
from imagegate.shell.policy_files import named_file, read_document, relative_to_policy

grants_app = typer.Typer(
    help="The BYOC grant lifecycle: add, renew, revoke, list, the ones about to expire, check.", no_args_is_help=True
)
app.add_typer(grants_app, name="grants")

# A grant's keys as its document writes them (GrantDoc, the one source), besides its namespace.
GRANT_KEYS = tuple(f.encode_name for f in msgspec.structs.fields(GrantDoc) if f.encode_name != "namespace")


_GRANT_COLUMNS = (
    "namespace",
    "state",
    "expires",
    "days left",
    "registries",
    "base image",
    "signed by",
    "mode",
    "requested by",
    "ticket",
    "reason",
)


def _grant_cells(state: GrantState) -> tuple[str, ...]:
    grant = state.grant
    return (
        grant.namespace,
        state.state,
        grant.expires.isoformat() if grant.expires else "never",
        "" if state.days_left is None else str(state.days_left),
        ", ".join(map(str, grant.registries)) if grant.registries is not None else "any",
        "required" if grant.require_base_image else "-",
        grant.signed_by or "-",
        grant.mode.value if grant.mode is not None else "policy's",
        grant.requested_by,
        grant.ticket,
        grant.reason,
    )


def render_grants(states: list[GrantState], console: Console, title: str = "BYOC grants") -> None:
    """Every key of every grant: what it admits (registries), what it checks (base image,
    signature, mode), and who asked, why and under which ticket. A table when it fits the
    terminal, else one line per grant, each key named (never a value cut into pieces)."""
    rows = [_grant_cells(state) for state in states]
    colour: dict[str, str] = {
        GrantStatus.EXPIRED: "bold red",
        GrantStatus.EXPIRING: "yellow",
        GrantStatus.ACTIVE: "green",
    }
    if choose_layout(Layout.auto, False, [_GRANT_COLUMNS, *rows], reserved=3 * len(_GRANT_COLUMNS) + 1) is Layout.lines:
        console.print(f"{title}:", soft_wrap=True)
        for row in rows:
            named = "  ".join(
                f"{column}: {value}" for column, value in zip(_GRANT_COLUMNS[2:], row[2:], strict=True) if value
            )
            console.print(
                f"{escape(row[0])}  [{colour[row[1]]}]{row[1]}[/]  {escape(named)}", soft_wrap=True, highlight=False
            )
        return
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=title, header_style="bold")
    for column in _GRANT_COLUMNS:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(escape(row[0]), f"[{colour[row[1]]}]{row[1]}[/]", *(escape(cell) for cell in row[2:]))
    console.print(table)


ConfigMapOption = Annotated[
    str | None, typer.Option("--configmap", help="NAMESPACE/NAME of the grants ConfigMap (with --apply).")
]
ApplyOption = Annotated[bool, typer.Option("--apply", help="Edit the ConfigMap in the cluster (compare-and-swap).")]
PrintOption = Annotated[
    str | None,
    typer.Option(
        "--print-configmap", help="Also print the result as the ConfigMap NAMESPACE/NAME (for review or kubectl apply)."
    ),
]
CreateOption = Annotated[
    bool,
    typer.Option(
        "--create", help="Start a new grants document where there is none (no file, or an empty file or key)."
    ),
]
ByOption = Annotated[str | None, typer.Option("--by", help="Who does this, for the history (default: the login name).")]
NowOption = Annotated[str | None, typer.Option(help="As of this ISO date/time (default: now).")]
GrantPolicyOption = Annotated[
    Path | None,
    typer.Option(
        "--policy",
        "-p",
        help="The policy the grants serve (default: the built-in): the namespaces it governs, the keys it "
        "requires on every grant, its directory for --signed-by keys, its byoc.grantsFile.",
        dir_okay=False,
    ),
]


def _split_configmap(text: str) -> tuple[str, str]:
    namespace, slash, name = text.partition("/")
    if not slash or not namespace or not name:
        raise fail(f"--configmap/--print-configmap takes NAMESPACE/NAME, got {text!r}")
    return namespace, name


def _edit(
    change: GrantChange,
    *,
    grants_file: Path | None,
    configmap: str | None,
    apply: bool,
    print_configmap: str | None,
    policy: Policy,
    create: bool,
) -> str:
    try:
        if apply:
            if configmap is None:
                raise fail("--apply needs --configmap NAMESPACE/NAME")
            from imagegate.shell.cluster.client import ClusterError, connect, edit_configmap  # noqa: PLC0415

            namespace, name = _split_configmap(configmap)
            try:
                text = edit_configmap(
                    connect(),
                    namespace,
                    name,
                    "grants.yaml",
                    lambda old: edit_grants_text(old, configmap, change, policy=policy, create=create),
                )
            except ClusterError as exc:
                raise fail(str(exc)) from None
        elif grants_file is not None:
            text = edit_grants_file(grants_file, change, policy=policy, create=create)
        else:
            raise fail("name the grants: --grants FILE, a policy with byoc.grantsFile, or --apply --configmap NS/NAME")
    except (GrantEditError, PolicyError) as exc:
        raise fail(str(exc)) from None
    if print_configmap is not None:
        namespace, name = _split_configmap(print_configmap)
        sys.stdout.write(grants_configmap_yaml(text, name, namespace))
    return text


def _who(by: str | None) -> str:
    """Who is doing this, for the history: ``--by``, else the login name."""
    if by is not None:
        if not by.strip():
            raise fail("--by: say who (a name or an account)")
        return by
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container's uid without a passwd entry)
        raise fail("cannot tell who you are (no login name): say it with --by NAME") from None


def _last_day(expires: str, now: dt.datetime) -> dt.date:
    return day_not_past("--expires", expires, now, "the grant would never apply; nothing was written")


def _check_governed(policy: Policy, namespace: str) -> None:
    if not policy.namespaces.governs(namespace, None):
        raise fail(
            f"{namespace} is not governed by the policy ({policy.source}: namespaces include "
            f"{list(policy.namespaces.include)}, exclude {list(policy.namespaces.exclude)}): "
            "a grant there would change nothing; nothing was written"
        )


def _check_signing_key(signed_by: str, namespace: str, policy_path: Path | None) -> None:
    """The key a grant names must be one the webhook can use: there, and a public key cosign signs with."""
    from imagegate.core.placeholders import fill_placeholders  # noqa: PLC0415
    from imagegate.shell.registry.signing import SigningError, load_public_key  # noqa: PLC0415

    filled = fill_placeholders(signed_by, namespace)
    if filled is None:
        return  # the grant's own validation says why ({tool} outside a tool namespace)
    path = relative_to_policy(filled, policy_path.parent if policy_path else None)
    assert path is not None
    try:
        load_public_key(path.read_bytes(), str(path))
    except OSError as exc:
        raise fail(
            f"--signed-by: cannot read the public key {path}: {exc.strerror or exc} (relative names are read "
            "from the policy's directory, as the webhook reads them; --unchecked-key when the key is only "
            "where the webhook runs); nothing was written"
        ) from None
    except SigningError as exc:
        raise fail(f"--signed-by: {exc}; nothing was written") from None


def _find(current: list[dict[str, Any]], namespace: str) -> dict[str, Any]:
    for entry in current:
        if entry["namespace"] == namespace:
            return entry
    raise GrantEditError(f"{namespace} has no grant")


def _shown(key: str, value: Any) -> str:
    if key == "registries":
        return f"registries {', '.join(value)} (without it: any registry)"
    if key == "requireBaseImage":
        return "requireBaseImage (without it: any base)"
    if key == "signedBy":
        return f"signedBy {value} (without it: unsigned images)"
    if key == "expires":
        return f"expires {value} (without it: never ends)"
    return f"{key} {value!r}"


@grants_app.command("add")
def grants_add(
    namespace: Annotated[str, typer.Argument(help="The tool's namespace, e.g. tool-example.", callback=namespace_name)],
    grants: GrantsOption = None,
    policy: GrantPolicyOption = None,
    registry: Annotated[
        list[str] | None, typer.Option("--registry", "-r", help="Limit to these registries/repositories.")
    ] = None,
    expires: Annotated[str | None, typer.Option(help="Last day of the grant (YYYY-MM-DD, UTC).")] = None,
    reason: Annotated[str, typer.Option(help="Why the tool needs its own images.")] = "",
    requested_by: Annotated[str, typer.Option(help="Who asked.")] = "",
    ticket: Annotated[str, typer.Option(help="The ticket that approved it.")] = "",
    require_base_image: Annotated[bool, typer.Option(help="Images must be built on a trusted base.")] = False,
    mode: Annotated[Mode | None, typer.Option(help="enforce, warn or audit for this namespace.")] = None,
    signed_by: Annotated[
        str | None,
        typer.Option(
            help="A PEM public key file (e.g. keys/{tool}.pub, relative to the policy's directory): the images "
            "this grant admits must be signed by it."
        ),
    ] = None,
    unchecked_key: Annotated[
        bool,
        typer.Option(
            "--unchecked-key", help="Do not read the --signed-by key here (it is only where the webhook runs)."
        ),
    ] = False,
    replace: Annotated[bool, typer.Option(help="Replace the namespace's existing grant (see --drop).")] = False,
    drop: Annotated[
        list[str] | None,
        typer.Option(
            "--drop",
            help="With --replace: a key of the existing grant the new one leaves out, named to confirm it is "
            "dropped (each one; `grants renew` keeps them all).",
        ),
    ] = None,
    by: ByOption = None,
    create: CreateOption = False,
    configmap: ConfigMapOption = None,
    apply: ApplyOption = False,
    print_configmap: PrintOption = None,
    now: Annotated[str | None, typer.Option(help="As of this ISO date/time (--expires must not be before it).")] = None,
) -> None:
    """Grant NAMESPACE the use of images beyond the trusted registries."""
    loaded = load_policy_alone(policy)
    moment = parse_now(now)
    if expires is not None:
        _last_day(expires, moment)
    _check_governed(loaded, namespace)
    unknown = sorted(set(drop or ()) - set(GRANT_KEYS))
    if unknown:
        raise fail(f"--drop {unknown[0]}: not a key of a grant ({', '.join(GRANT_KEYS)})")
    if drop and not replace:
        raise fail("--drop goes with --replace")
    if signed_by is not None and not unchecked_key:
        _check_signing_key(signed_by, namespace, policy)
    entry = grant_entry(
        namespace,
        registries=list(registry) if registry else None,
        expires=expires or None,
        reason=reason or "",
        requested_by=requested_by or "",
        ticket=ticket or "",
        require_base_image=bool(require_base_image),
        mode=None if mode is None else mode.value,
        signed_by=signed_by,
    )
    who = _who(by) if replace else ""

    def change(current: list[dict[str, Any]]) -> Edited:
        existing = [g for g in current if g["namespace"] == namespace]
        if existing and not replace:
            raise GrantEditError(
                f"{namespace} already has a grant; `grants renew` changes its expiry and keeps the rest, "
                "--replace writes a new one"
            )
        rest = [g for g in current if g["namespace"] != namespace]
        if not existing:
            return Edited([*rest, entry])
        old = existing[0]
        dropped = [key for key in old if key != "namespace" and key not in entry]
        unconfirmed = [key for key in dropped if key not in (drop or ())]
        if unconfirmed:
            raise GrantEditError(
                f"the new grant for {namespace} leaves out what its grant has: "
                + "; ".join(_shown(key, old[key]) for key in unconfirmed)
                + ". Name them again, confirm with "
                + " ".join(f"--drop {key}" for key in unconfirmed)
                + ", or use `grants renew` to change only the expiry; nothing was written"
            )
        not_there = [key for key in drop or () if key not in dropped]
        if not_there:
            raise GrantEditError(f"--drop {not_there[0]}: the grant for {namespace} has no {not_there[0]} to drop")
        note = f"replaced by `grants add --replace`{'; dropped ' + ', '.join(dropped) if dropped else ''}"
        return Edited([*rest, entry], [GrantEvent(GrantAction.REPLACED, namespace, moment, who, note, old)])

    _edit(
        change,
        grants_file=named_file(grants, loaded.grants_file, policy),
        configmap=configmap,
        apply=apply,
        print_configmap=print_configmap,
        policy=loaded,
        create=create,
    )
    Console(stderr=True).print(f"{'replaced' if replace else 'granted'}: {escape(namespace)}")


@grants_app.command("renew")
def grants_renew(
    namespace: Annotated[str, typer.Argument(help="The namespace whose grant goes on.", callback=namespace_name)],
    expires: Annotated[str, typer.Option(help="The grant's new last day (YYYY-MM-DD, UTC).")],
    grants: GrantsOption = None,
    policy: GrantPolicyOption = None,
    ticket: Annotated[str | None, typer.Option(help="The ticket that approved the renewal.")] = None,
    reason: Annotated[str | None, typer.Option(help="A new reason (default: the grant's).")] = None,
    by: ByOption = None,
    configmap: ConfigMapOption = None,
    apply: ApplyOption = False,
    print_configmap: PrintOption = None,
    now: NowOption = None,
) -> None:
    """Extend NAMESPACE's grant to a new last day, keeping every other key (registries, checks, who asked)."""
    loaded = load_policy_alone(policy)
    moment = parse_now(now)
    last_day = _last_day(expires, moment)
    who = _who(by)

    def change(current: list[dict[str, Any]]) -> Edited:
        old = _find(current, namespace)
        before = old.get("expires")
        if before == last_day.isoformat():
            raise GrantEditError(f"the grant for {namespace} already ends on {before}; nothing was written")
        new = {**old, "expires": last_day.isoformat()}
        if ticket is not None:
            new["ticket"] = ticket
        if reason is not None:
            new["reason"] = reason
        # the keys in their documented order, as every grant is written (GrantDoc's)
        new = msgspec.to_builtins(msgspec.convert(new, GrantDoc))
        note = f"expires {before or 'never'} -> {last_day.isoformat()}" + (f" ({ticket})" if ticket else "")
        events = [GrantEvent(GrantAction.RENEWED, namespace, moment, who, note, old)]
        return Edited([new if g is old else g for g in current], events)

    _edit(
        change,
        grants_file=named_file(grants, loaded.grants_file, policy),
        configmap=configmap,
        apply=apply,
        print_configmap=print_configmap,
        policy=loaded,
        create=False,
    )
    Console(stderr=True).print(f"renewed: {escape(namespace)} until {last_day.isoformat()}")


@grants_app.command("revoke")
def grants_revoke(
    namespace: Annotated[str, typer.Argument(help="The namespace whose grant ends now.", callback=namespace_name)],
    reason: Annotated[str, typer.Option(help="Why it ends (kept in the file's history).")],
    grants: GrantsOption = None,
    policy: GrantPolicyOption = None,
    by: ByOption = None,
    configmap: ConfigMapOption = None,
    apply: ApplyOption = False,
    print_configmap: PrintOption = None,
    now: NowOption = None,
) -> None:
    """Remove NAMESPACE's grant, keeping a record of it (who, when, why, the grant) in the history."""
    if not reason.strip():
        raise fail("--reason: say why the grant ends (it is kept in the history)")
    loaded = load_policy_alone(policy)
    moment = parse_now(now)
    who = _who(by)

    def change(current: list[dict[str, Any]]) -> Edited:
        old = _find(current, namespace)
        kept = [g for g in current if g is not old]
        return Edited(kept, [GrantEvent(GrantAction.REVOKED, namespace, moment, who, reason, old)])

    _edit(
        change,
        grants_file=named_file(grants, loaded.grants_file, policy),
        configmap=configmap,
        apply=apply,
        print_configmap=print_configmap,
        policy=loaded,
        create=False,
    )
    Console(stderr=True).print(f"revoked: {escape(namespace)}")


def _read_grants(grants_file: Path | None, configmap: str | None, policy_path: Path | None) -> tuple[Grant, ...]:
    """The grants of a file or ConfigMap, held to the policy as the webhook holds them."""
    loaded = load_policy_alone(policy_path)
    if configmap is not None:
        from lightkube.resources.core_v1 import ConfigMap  # noqa: PLC0415

        from imagegate.shell.cluster.client import ClusterError, connect  # noqa: PLC0415

        namespace, name = _split_configmap(configmap)
        try:
            found = connect().get(ConfigMap, name=name, namespace=namespace)
        except (ClusterError, Exception) as exc:
            raise fail(f"cannot read ConfigMap {configmap}: {exc}") from None
        text, source = (found.data or {}).get("grants.yaml", ""), configmap
    else:
        target = named_file(grants_file, loaded.grants_file, policy_path)
        if target is None:
            raise fail("name the grants: --grants FILE, a policy with byoc.grantsFile, or --configmap NAMESPACE/NAME")
        try:
            text, source = read_document(target), str(target)
        except PolicyError as exc:
            raise fail(str(exc)) from None
    try:
        found_grants = load_grants_file(text, source).grants
        loaded.with_grants(found_grants)
    except PolicyError as exc:
        raise fail(f"invalid grants: {exc}") from None
    return found_grants


@grants_app.command("list")
def grants_list(
    grants: GrantsOption = None,
    configmap: ConfigMapOption = None,
    policy: GrantPolicyOption = None,
    expiring_days: ExpiringDaysOption = 14,
    output: Annotated[OutputFormat, typer.Option("--output", "-o")] = OutputFormat.table,
    now: NowOption = None,
) -> None:
    """Every grant, every key, with its state (active, expiring, expired)."""
    states = grant_states(_read_grants(grants, configmap, policy), parse_now(now), expiring_days)
    if output is OutputFormat.json:
        write_json([GrantJson.of(s) for s in states])
    else:
        render_grants(states, Console())


@grants_app.command("expiring")
def grants_expiring(
    grants: GrantsOption = None,
    configmap: ConfigMapOption = None,
    policy: GrantPolicyOption = None,
    days: Annotated[int, typer.Option(min=0, help="Within how many days.")] = 14,
    output: Annotated[OutputFormat, typer.Option("--output", "-o")] = OutputFormat.table,
    now: NowOption = None,
) -> None:
    """Grants that end within DAYS or have ended; exit 1 when there are any (for a cron alert)."""
    found = _read_grants(grants, configmap, policy)
    states = [s for s in grant_states(found, parse_now(now), days) if s.state is not GrantStatus.ACTIVE]
    if output is OutputFormat.json:
        write_json([GrantJson.of(s) for s in states])
    elif states:
        render_grants(states, Console())
    else:
        Console().print(f"no grant ends within {plural(days, 'day')}")
    if states:
        raise typer.Exit(EXIT_DENIED)


def _existing_namespaces(source: list[str] | None) -> set[str]:
    """The namespaces that exist: the Namespace objects of a dump, or the live cluster's."""
    if source:
        objects = read_inputs(source, "dump")
        names = {
            name
            for item in objects
            if item.obj.get("kind") == "Namespace" and isinstance(name := object_metadata(item.obj).get("name"), str)
        }
        if not names:
            raise fail(
                f"{', '.join(source)}: no Namespace objects, so no telling which namespaces exist "
                "(`kubectl get namespaces -o json` makes such a dump)"
            )
        return names
    from imagegate.shell.cluster.client import ClusterError, connect, namespace_labels  # noqa: PLC0415

    try:
        return set(namespace_labels(connect()))
    except ClusterError as exc:
        raise fail(str(exc)) from None


@grants_app.command("check")
def grants_check(
    grants: GrantsOption = None,
    configmap: ConfigMapOption = None,
    policy: GrantPolicyOption = None,
    source: Annotated[
        list[str] | None,
        typer.Option("--from", help="Namespaces from a dump (`kubectl get namespaces -o json`); default: the cluster."),
    ] = None,
    expiring_days: ExpiringDaysOption = 14,
    output: Annotated[OutputFormat, typer.Option("--output", "-o")] = OutputFormat.table,
    now: NowOption = None,
) -> None:
    """Check the grants against the namespaces that exist and the policy: grants for namespaces
    that do not exist, or that the policy does not govern, and expired ones. Exit 1 when any."""
    loaded = load_policy_alone(policy)
    found = _read_grants(grants, configmap, policy)
    existing = _existing_namespaces(source)
    moment = parse_now(now)
    problems: list[GrantCheckJson] = []
    for state in grant_states(found, moment, expiring_days):
        grant = state.grant
        if grant.namespace not in existing:
            problems.append(
                GrantCheckJson.of(state, GrantProblem.NO_NAMESPACE, f"namespace {grant.namespace} does not exist")
            )
        if not loaded.namespaces.governs(grant.namespace, None):
            problems.append(
                GrantCheckJson.of(
                    state,
                    GrantProblem.UNGOVERNED,
                    f"the policy does not govern {grant.namespace}: the grant does nothing",
                )
            )
        if state.state is GrantStatus.EXPIRED:
            assert grant.expires is not None
            problems.append(
                GrantCheckJson.of(
                    state, GrantProblem.EXPIRED, f"ended on {grant.expires.isoformat()}: revoke or renew it"
                )
            )
    if output is OutputFormat.json:
        write_json(problems)
    elif problems:
        from rich.table import Table  # noqa: PLC0415

        table = Table(title="grants to fix", header_style="bold")
        for column in ("namespace", "problem", "detail", "source"):
            table.add_column(column, overflow="fold")
        for problem in problems:
            table.add_row(escape(problem.namespace), problem.problem, escape(problem.detail), escape(problem.source))
        Console().print(table)
    else:
        Console().print(
            f"{plural(len(found), 'grant')}: each for a namespace that exists and the policy governs, none expired"
        )
    if problems:
        raise typer.Exit(EXIT_DENIED)
