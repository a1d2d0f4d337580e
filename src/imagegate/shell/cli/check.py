"""``check``, ``inspect``, ``webhooks``, ``policy``: what a policy says and does to manifests and images."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.markup import escape

from imagegate.core.decide import Decision
from imagegate.core.policy import Policy, PolicyError, load_policy
from imagegate.core.policyreport import ReportFormat
from imagegate.core.records import Mode, Outcome, Subject, outcome_of
from imagegate.core.report import GrantStatus
from imagegate.shell.builtin_policy import DEFAULT_POLICY_YAML, default_policy
from imagegate.shell.cli.ci_formats import CheckOutput, write_ci
from imagegate.shell.cli.common import (
    STDIN,
    CheckedObject,
    GrantsOption,
    IdentitiesOption,
    Layout,
    LayoutOption,
    OutputFormat,
    PolicyOption,
    SummaryOption,
    app,
    check_objects,
    choose_layout,
    fail,
    load,
    namespace_name,
    parse_now,
    plural,
    read_inputs,
    registry_gate,
    registry_options,
    write_json,
    write_lines,
)
from imagegate.shell.cli.json_docs import CheckJson, CountsJson, InspectJson, ObjectJson, Result
from imagegate.shell.exits import EXIT_BAD_INPUT, EXIT_DENIED
from imagegate.shell.logs import configure_logging

if TYPE_CHECKING:
    from imagegate.core.yamldoc import DocumentError

policy_app = typer.Typer(help="Validate or print policies.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")


_RESULT_STYLE = {
    Result.DENIED: "[bold red]denied[/]",
    Result.WARN: "[yellow]warn[/]",
    Result.AUDIT: "[blue]audit[/]",
    Result.ALLOWED: "[green]allowed[/]",
    Result.EXEMPT: "[dim]exempt[/]",
}


# How the table (and ``-o json``'s counts) words each outcome.
_WORD = {
    Outcome.DENIED: Result.DENIED,
    Outcome.WARNED: Result.WARN,
    Outcome.AUDITED: Result.AUDIT,
    Outcome.ALLOWED: Result.ALLOWED,
}


def _rows(decision: Decision) -> list[tuple[Result, str, str, str]]:
    """(result, where, image, why) for every image and every finding of one governed object."""
    rows = []
    judged = set()
    for verdict in decision.verdicts:
        use = verdict.use
        judged.add(use)
        # the image's own verdict and the tag rules' findings on the same use
        findings = [f for f in decision.findings if f.subject == use]
        if not findings:
            rows.append((Result.ALLOWED, use.label, use.image, verdict.allowed_by or ""))
        for finding in findings:
            rows.append((_WORD[finding.outcome], use.label, use.image, f"{finding.rule}: {finding.reason}"))
    for finding in decision.findings:  # pod security, tool profile, a malformed object
        if finding.subject not in judged:
            rows.append((_WORD[finding.outcome], finding.subject.label, "", f"{finding.rule}: {finding.reason}"))
    return rows


def object_outcome(decision: Decision) -> Result:
    return _WORD[decision.outcome] if decision.governed else Result.EXEMPT


def _lines(results: list[CheckedObject]) -> Iterator[str]:
    """One line per finding (and per allowed image): result, object (where it was read), container, image, why."""
    for checked in results:
        decision = checked.decision
        if not decision.governed:
            yield f"exempt  {decision.subject} ({checked.where})  namespace not governed by the policy"
            continue
        for result, where, image, why in _rows(decision):
            yield "  ".join(
                part for part in (result, f"{decision.subject} ({checked.where})", where, image, why) if part
            )


def _render_table(results: list[CheckedObject], console: Console) -> None:
    from rich.table import Table  # noqa: PLC0415

    table = Table(header_style="bold", expand=False)
    for column in ("result", "object", "container", "image", "why"):
        table.add_column(column, overflow="fold")
    for checked in results:
        decision = checked.decision
        outcome = object_outcome(decision)
        subject = f"{escape(decision.subject)}\n{escape(checked.where)}\n{_RESULT_STYLE[outcome]}"
        if not decision.governed:
            table.add_row(_RESULT_STYLE[Result.EXEMPT], subject, "", "", "namespace not governed by the policy")
            continue
        for index, (result, where, image, why) in enumerate(_rows(decision)):
            table.add_row(
                _RESULT_STYLE[result], subject if index == 0 else "", escape(where), escape(image), escape(why)
            )
        table.add_section()
    console.print(table)


def _counts(results: list[CheckedObject]) -> CountsJson:
    """Objects by their outcome; images by the worst finding on each (or exempt)."""
    objects = dict.fromkeys(Result, 0)
    images = dict.fromkeys(Result, 0)
    findings = dict.fromkeys(Mode, 0)
    for checked in results:
        decision = checked.decision
        objects[object_outcome(decision)] += 1
        images[Result.EXEMPT] += checked.exempt_images
        modes: dict[Subject, list[Mode]] = {}
        for finding in decision.findings:
            findings[finding.mode] += 1
            modes.setdefault(finding.subject, []).append(finding.mode)
        for verdict in decision.verdicts:
            images[_WORD[outcome_of(modes.get(verdict.use, ()))]] += 1
    return CountsJson(objects=objects, images=images, findings=findings)


def _summary(results: list[CheckedObject]) -> str:
    counts = _counts(results)
    objects, images, findings = counts.objects, counts.images, counts.findings
    return (
        f"{plural(len(results), 'object')}: {objects[Result.DENIED]:,} denied, {objects[Result.WARN]:,} with warnings, "
        f"{objects[Result.AUDIT]:,} audited, {objects[Result.ALLOWED]:,} allowed, {objects[Result.EXEMPT]:,} exempt; "
        f"{plural(sum(images.values()), 'image')}: {images[Result.DENIED]:,} denied, {images[Result.WARN]:,} with warnings, "
        f"{images[Result.AUDIT]:,} audited, {images[Result.ALLOWED]:,} allowed, {images[Result.EXEMPT]:,} exempt; "
        f"{plural(sum(findings.values()), 'finding')} ({findings[Mode.ENFORCE]:,} enforced, "
        f"{findings[Mode.WARN]:,} warnings, {findings[Mode.AUDIT]:,} audit)"
    )


@app.command()
def check(
    paths: Annotated[list[str], typer.Argument(help="Manifest files, directories, or - for stdin.")],
    policy: PolicyOption = None,
    grants: GrantsOption = None,
    identities: IdentitiesOption = None,
    namespace: Annotated[
        str,
        typer.Option("--namespace", "-n", help="Namespace for objects that name none.", callback=namespace_name),
    ] = "default",
    output: Annotated[
        CheckOutput, typer.Option("--output", "-o", help="table, json, or for CI compact, junit, sarif, policyreport.")
    ] = CheckOutput.table,
    now: Annotated[
        str | None, typer.Option(help="Evaluate as of this ISO date/time (grant expiry). Default: now.")
    ] = None,
    registry: Annotated[
        bool, typer.Option("--registry/--offline", help="Ask registries: base images and digests to pin.")
    ] = False,
    report_format: Annotated[
        ReportFormat,
        typer.Option("--report-format", help="With -o policyreport: the report kind (as reports --format)."),
    ] = ReportFormat.openreports,
    layout: LayoutOption = Layout.auto,
    summary: SummaryOption = False,
) -> None:
    """Evaluate manifests offline against a policy, as the webhook would on CREATE.

    Exit code: 0 when everything is allowed (warnings included), 1 when anything would
    be denied, 2 on bad input (unreadable manifest or invalid policy).
    """
    if policy == STDIN and "-" in paths:
        raise fail("only one of the policy and the manifests can come from standard input (-)")
    loaded = load(policy, grants, identities)
    moment = parse_now(now)
    unreadable: list[DocumentError] = []
    objects = read_inputs(paths, "manifest", unreadable)
    gate = registry_gate(policy) if registry else None
    if registry:
        configure_logging("warning", json=False)
    results = check_objects(loaded, objects, namespace, moment, gate)
    if output is CheckOutput.json:
        write_json(
            CheckJson(
                summary=_summary(results),
                counts=_counts(results),
                allowed=all(c.decision.allowed for c in results),
                objects=[ObjectJson.of(c.where, c.decision) for c in results],
            )
        )
    elif output is not CheckOutput.table:
        write_ci(output, results, loaded, moment, report_format)
        Console(stderr=True).print(_summary(results))  # the document alone on stdout
    else:
        console = Console()
        # the object column holds its subject and where it was read, one per line
        names = [
            (max(len(c.decision.subject), len(c.where)) * "x", where, image)
            for c in results
            for _result, where, image, _why in _rows(c.decision)
        ]
        chosen = choose_layout(layout, summary, names, reserved=40)
        if chosen is Layout.table:
            _render_table(results, console)
        elif chosen is Layout.lines:
            write_lines(_lines(results))
        console.print(_summary(results))
    if unreadable:  # the others were judged and shown; the command still did not do all it was asked
        Console(stderr=True).print(f"{plural(len(unreadable), 'file')} could not be read; the others were judged")
        raise typer.Exit(EXIT_BAD_INPUT)
    if not all(c.decision.allowed for c in results):
        raise typer.Exit(EXIT_DENIED)


def _unusable_files(loaded: Policy, relative_to: Path | None) -> list[str]:
    """The files the policy names that the webhook could not use: signature keys, trusted roots."""
    sections = [
        (section, config)
        for section, config in (("signatures", loaded.signatures), ("attestations", loaded.attestations.signers))
        if config.keys or config.trusted_root is not None
    ]
    if not sections:  # nothing to read: cryptography and sigstore (0.5 s of CPU) stay unloaded
        return []
    from imagegate.shell.registry.signing import load_keys  # noqa: PLC0415 (cryptography, sigstore)
    from imagegate.shell.registry.sigstore_adapter import trusted_root_file  # noqa: PLC0415

    problems: list[str] = []
    for section, config in sections:
        problems.extend(f"{section}: {why}" for why in load_keys(config, relative_to)[1].values())
        if config.trusted_root is not None:
            root = trusted_root_file(config, relative_to)
            if not root.is_file():
                problems.append(f"{section}.trustedRoot: {root} is not a file")
    return list(dict.fromkeys(problems))  # a key named by both sections: once


@policy_app.command("validate")
def policy_validate(
    policy: PolicyOption = None,
    grants: GrantsOption = None,
    identities: IdentitiesOption = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when there are warnings.")] = False,
) -> None:
    """Validate a policy (and its grants and identities files); print what it says.

    Exit 2 when it is invalid or names a file the webhook cannot use (a signature key, a
    trusted root); warnings (settings that load but cannot work as written) exit 0, or 1
    with --strict.
    """
    from imagegate.core.lint import policy_warnings  # noqa: PLC0415

    loaded = load(policy, grants, identities)
    now = dt.datetime.now(dt.UTC)
    err = Console(stderr=True, soft_wrap=True)
    unusable = _unusable_files(loaded, policy.parent if policy is not None and policy != STDIN else None)
    for problem in unusable:
        err.print(f"[bold red]error:[/] {escape(problem)}")
    if unusable:
        raise typer.Exit(EXIT_BAD_INPUT)
    warnings = policy_warnings(loaded, now)
    for warning in warnings:
        err.print(f"[yellow]warning:[/] {escape(str(warning))}")
    console = Console()
    console.print(f"[green]valid[/]: {escape(loaded.source)}")
    console.print(f"mode: {loaded.mode.value}; byoc default: {loaded.byoc_default}")
    console.print(f"trusted: {escape(', '.join(map(str, loaded.trusted)) or '(none)')}")
    if loaded.blocked:
        console.print(f"blocked: {escape(', '.join(map(str, loaded.blocked)))}")
    for grant in loaded.grants:
        state = GrantStatus.EXPIRED if grant.expired(now) else GrantStatus.ACTIVE
        registries = ", ".join(map(str, grant.registries)) if grant.registries is not None else "any registry"
        until = grant.expires.isoformat() if grant.expires else "no expiry"
        proof = f", proof by {grant.proof.value}" if grant.proof is not None else ""
        console.print(f"grant {escape(grant.namespace)}: {state}, {escape(registries)}, {until}{proof}")
    for rule in loaded.content.rules:
        console.print(f"content rule {escape(rule.name)}: {escape(rule.summary())}")
    if warnings and strict:
        raise typer.Exit(EXIT_DENIED)


@policy_app.command("default")
def policy_default() -> None:
    """Print the built-in policy, a starting point for your own."""
    sys.stdout.write(DEFAULT_POLICY_YAML)


WEBHOOKS_HEADER = """\
# Made by `imagegate webhooks -p POLICY` (scripts/sync_policy.py); edit the policy, not this file.
# failurePolicy Fail: when imagegate cannot answer, pods are not created (fail closed); the
# namespaceSelector exempts the control plane and imagegate itself by the immutable
# kubernetes.io/metadata.name label, which no tenant can set on another namespace.
# Each configuration has a CREATE webhook without matchConditions (they would cost the API
# server more than they save) and an UPDATE webhook with them: template-changed (both) sends
# only UPDATEs that change a Pod's containers or volumes or a workload's pod template, so
# label, annotation, finalizer, status and replica writes never wait for imagegate;
# needs-mutation (mutate-update only) skips objects where /mutate has nothing to fill in or
# pin under this policy (its fingerprint is the annotation; /readyz reports the served
# policy's). Every key read is guarded by has(): an expression error fails closed. Every
# pods/ephemeralcontainers update is sent.
"""


@app.command()
def webhooks(
    policy: PolicyOption = None,
    condition: Annotated[
        bool, typer.Option("--mutate-condition", help="Print only the needs-mutation CEL expression.")
    ] = False,
    mutating_policy: Annotated[
        bool,
        typer.Option(
            "--mutating-policy",
            help="Emit MutatingAdmissionPolicies (Kubernetes 1.32+, alpha until 1.34) that fill in the defaults "
            "in the API server, and only the validating webhook (docs/deploy.md: which to choose).",
        ),
    ] = False,
) -> None:
    """Print the webhook configurations for a policy (the mutating one skips what needs no mutation)."""
    from imagegate.core.native_policy import NativePolicyError, mutating_policies  # noqa: PLC0415
    from imagegate.core.webhooks import mutation_condition, webhook_configurations  # noqa: PLC0415

    if policy is None:
        loaded = default_policy()
    else:  # only the policy: its grants and identities files change nothing here
        try:
            loaded = load_policy(policy.read_text(), str(policy))
        except OSError as exc:
            raise fail(f"{policy}: {exc.strerror or exc}") from None
        except (PolicyError, UnicodeDecodeError) as exc:
            raise fail(f"invalid policy: {exc}") from None
    if condition:
        sys.stdout.write(mutation_condition(loaded) + "\n")
        return
    configurations = webhook_configurations(loaded)
    if mutating_policy:
        try:
            native = mutating_policies(loaded)
        except NativePolicyError as exc:
            raise fail(f"no MutatingAdmissionPolicy for this policy: {exc}") from None
        configurations = [*native, *(c for c in configurations if c["kind"] != "MutatingWebhookConfiguration")]
    sys.stdout.write(WEBHOOKS_HEADER + _yaml_documents(configurations))


def _yaml_documents(documents: list[dict[str, Any]]) -> str:
    """YAML a reviewer can read: key order kept, multi-line strings (CEL) as literal blocks."""

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)

    Dumper.add_representer(str, text)
    return yaml.dump_all(documents, Dumper=Dumper, sort_keys=False, width=1000)


@app.command()
def inspect(
    image: Annotated[str, typer.Argument(help="An image reference, e.g. ghcr.io/org/app:1.2")],
    policy: PolicyOption = None,
    platform: Annotated[
        list[str] | None,
        typer.Option(help="Platforms to examine, os/arch[/variant] (default: the policy's registry.platforms)."),
    ] = None,
    ca_file: Annotated[Path | None, typer.Option(help="CA bundle for the registry's TLS.", dir_okay=False)] = None,
    output: Annotated[OutputFormat, typer.Option("--output", "-o", help="table or json.")] = OutputFormat.table,
) -> None:
    """Read an image from its registry: digest, platforms, layers with sizes, and its trusted base."""
    import asyncio  # noqa: PLC0415
    import dataclasses  # noqa: PLC0415

    from rich.table import Table  # noqa: PLC0415

    from imagegate.core.baseimage import verify_image  # noqa: PLC0415
    from imagegate.core.reference import ReferenceError, parse_docker_ref  # noqa: PLC0415
    from imagegate.shell.registry.client import RegistryError  # noqa: PLC0415

    configure_logging("warning", json=False)
    loaded = load(policy, None)
    config = registry_options(loaded.registry, platform, ca_file)
    loaded = dataclasses.replace(loaded, registry=config)
    try:
        ref = parse_docker_ref(image)
    except ReferenceError as exc:
        raise fail(str(exc)) from None

    async def run() -> tuple[Any, Any]:
        gate = registry_gate(policy)
        try:
            resolved = await gate.lookup(loaded.registry, str(ref), lambda: gate.client(loaded.registry).resolve(ref))
            if loaded.base_images.trusted:
                await gate.refresh_bases(loaded)
            verdict = verify_image(resolved, gate.bases.versions) if loaded.base_images.trusted else None
            return resolved, verdict
        finally:
            await gate.aclose()

    try:
        resolved, verdict = asyncio.run(run())
    except RegistryError as exc:
        raise fail(f"{image}: {exc}") from None
    if output is OutputFormat.json:
        write_json(InspectJson.of(resolved, verdict))
        return
    console = Console()
    console.print(f"[bold]{escape(resolved.reference)}[/]")
    console.print(f"digest: {resolved.digest}\nmedia type: {resolved.media_type}")
    console.print(f"platforms offered: {', '.join(resolved.available_platforms) or '(none)'}")
    for examined in resolved.platforms:
        table = Table(title=f"{examined.platform}  {examined.manifest_digest}", header_style="bold")
        table.add_column("#", justify="right")
        table.add_column("layer digest")
        table.add_column("compressed", justify="right")
        for number, layer in enumerate(examined.layers, 1):
            table.add_row(str(number), layer.digest, f"{layer.size:,}")
        table.add_row("", "total", f"{examined.compressed_size:,}")
        console.print(table)
    if verdict is None:
        console.print("base: the policy names no trusted base images (baseImages.trusted)")
    else:
        state = "[green]built on a trusted base[/]" if verdict.ok else "[red]not built on a trusted base[/]"
        console.print(f"base: {state}: {escape(verdict.detail)}")
