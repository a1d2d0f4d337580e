"""The ``imagegate`` command line."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from imagegate.core.decide import Decision, decide, decision_to_dict
from imagegate.core.policy import DEFAULT_POLICY_YAML, Policy, PolicyError, default_policy, load_policy
from imagegate.core.records import Mode, Outcome, Subject, outcome_of
from imagegate.core.webhooks import mutation_condition, webhook_configurations
from imagegate.core.workloads import ObjectShapeError, image_uses
from imagegate.core.yamldoc import DocumentError
from imagegate.shell.certs import (
    CA_DAYS,
    CertificateError,
    check_leaf_fits,
    check_pair,
    dns_names_of,
    find_ca,
    load_ca,
    make_certificates,
    prepare_directory,
    service_dns_names,
)
from imagegate.shell.exits import (
    DEBUG_ENV,
    EXIT_BAD_INPUT,
    EXIT_DENIED,
    report_internal_error,
)
from imagegate.shell.logs import LogLevel, configure_logging
from imagegate.shell.manifests import SourcedObject, read_manifests
from imagegate.shell.policy_source import MAX_POLICY_BYTES, load_policy_files
from imagegate.shell.verification import RegistryGate, settle

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
policy_app = typer.Typer(help="Validate or print policies.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")


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


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


def _fail(message: str) -> typer.Exit:
    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(EXIT_BAD_INPUT)


STDIN = Path("-")


def _read_stdin(source: str) -> str:
    raw = sys.stdin.buffer.read(MAX_POLICY_BYTES + 1)
    if len(raw) > MAX_POLICY_BYTES:
        raise _fail(f"{source}: larger than {MAX_POLICY_BYTES} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(f"{source}: not UTF-8 text (byte {exc.start})") from None


def _load(policy_path: Path | None, grants_path: Path | None, identities_path: Path | None = None) -> Policy:
    """The policy (``-p -``: from standard input) and its grants; exit 2 when invalid."""
    text = _read_stdin("<stdin>") if policy_path == STDIN else None
    try:
        return load_policy_files(policy_path, grants_path, identities_path=identities_path, policy_text=text)[0]
    except PolicyError as exc:
        raise _fail(f"invalid policy: {exc}") from None


def _parse_now(text: str | None) -> dt.datetime:
    if text is None:
        return dt.datetime.now(dt.UTC)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise _fail(f"--now: {text!r} is not an ISO date or date-time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


@dataclass
class CheckedObject:
    where: str
    decision: Decision
    exempt_images: int = 0  # images of an object the policy does not govern (not judged)


@contextmanager
def progress_on_terminal(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr when it is a terminal; nothing at all when it is not."""
    console = Console(stderr=True)
    if not console.is_terminal:

        def ignore(_done: int) -> None:
            return None

        yield ignore
        return
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(description, total=total)

        def advance(done: int) -> None:
            progress.advance(task, done)

        yield advance


def read_inputs(paths: list[str], what: str) -> list[SourcedObject]:
    """Objects from files, directories or stdin; a target with none is said on stderr."""
    empty: list[str] = []
    try:
        objects = read_manifests(paths, empty)
    except DocumentError as exc:
        raise _fail(f"invalid {what}: {exc}") from None
    console = Console(stderr=True, soft_wrap=True)
    for note in empty:
        console.print(f"[yellow]note:[/] {escape(note)}")
    return objects


def _namespace_labels(objects: list[SourcedObject]) -> dict[str, Mapping[str, str]]:
    """Labels of Namespace objects in the input, for policies with a namespace selector."""
    labels: dict[str, Mapping[str, str]] = {}
    for item in objects:
        metadata = item.obj.get("metadata") or {}
        if item.obj.get("kind") == "Namespace" and isinstance(metadata, Mapping):
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
    known_labels = {**(namespace_labels or {}), **_namespace_labels(objects)}

    async def judge_all(advance: Callable[[int], None]) -> list[CheckedObject]:
        results = []
        for item in objects:
            advance(1)
            metadata = item.obj.get("metadata")
            namespace = default_namespace
            if isinstance(metadata, Mapping) and isinstance(metadata.get("namespace"), str):
                namespace = metadata["namespace"]

            def evaluate(
                verdicts: Any, digests: Any, _notes: Any, obj: Any = item.obj, ns: str = namespace
            ) -> Decision:
                return decide(
                    policy,
                    obj,
                    namespace=ns,
                    now=now,
                    namespace_labels=known_labels.get(ns),
                    base_verdicts=verdicts,
                    digests=digests,
                )

            if gate is None:
                decision = evaluate({}, {}, ())
            else:
                decision = await settle(gate, policy, evaluate, lambda d: d, pins=True)
            results.append(CheckedObject(item.where, decision, 0 if decision.governed else _image_count(item.obj)))
        if gate is not None:
            await gate.aclose()
        return results

    with progress_on_terminal(f"judging {len(objects):,} objects", len(objects)) as advance:
        return asyncio.run(judge_all(advance))


def _image_count(obj: Mapping[str, Any]) -> int:
    try:
        return len(image_uses(obj))
    except ObjectShapeError:
        return 0


_RESULT_STYLE = {
    "denied": "[bold red]denied[/]",
    "warn": "[yellow]warn[/]",
    "audit": "[blue]audit[/]",
    "allowed": "[green]allowed[/]",
    "exempt": "[dim]exempt[/]",
}


# How the table (and ``-o json``'s counts) words each outcome.
_WORD = {Outcome.DENIED: "denied", Outcome.WARNED: "warn", Outcome.AUDITED: "audit", Outcome.ALLOWED: "allowed"}


def _rows(decision: Decision) -> list[tuple[str, str, str, str]]:
    """(result, where, image, why) for every image and every finding of one governed object."""
    rows = []
    judged = set()
    for verdict in decision.verdicts:
        use = verdict.use
        judged.add(use)
        # the image's own verdict and the tag rules' findings on the same use
        findings = [f for f in decision.findings if f.subject == use]
        if not findings:
            rows.append(("allowed", use.label, use.image, verdict.allowed_by or ""))
        for finding in findings:
            rows.append((_WORD[finding.outcome], use.label, use.image, f"{finding.rule}: {finding.reason}"))
    for finding in decision.findings:  # pod security, tool profile, a malformed object
        if finding.subject not in judged:
            rows.append((_WORD[finding.outcome], finding.subject.label, "", f"{finding.rule}: {finding.reason}"))
    return rows


def _object_outcome(decision: Decision) -> str:
    return _WORD[decision.outcome] if decision.governed else "exempt"


def _render_table(results: list[CheckedObject], console: Console) -> None:
    table = Table(header_style="bold", expand=False)
    for column in ("result", "object", "container", "image", "why"):
        table.add_column(column, overflow="fold")
    for checked in results:
        decision = checked.decision
        outcome = _object_outcome(decision)
        subject = f"{escape(decision.subject)}\n{escape(checked.where)}\n{_RESULT_STYLE[outcome]}"
        if not decision.governed:
            table.add_row(_RESULT_STYLE["exempt"], subject, "", "", "namespace not governed by the policy")
            continue
        for index, (result, where, image, why) in enumerate(_rows(decision)):
            table.add_row(
                _RESULT_STYLE[result], subject if index == 0 else "", escape(where), escape(image), escape(why)
            )
        table.add_section()
    console.print(table)


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def _counts(results: list[CheckedObject]) -> dict[str, dict[str, int]]:
    """Objects by their outcome; images by the worst finding on each (or exempt)."""
    objects = dict.fromkeys(("denied", "warn", "audit", "allowed", "exempt"), 0)
    images = dict.fromkeys(("denied", "warn", "audit", "allowed", "exempt"), 0)
    findings = dict.fromkeys(("enforce", "warn", "audit"), 0)
    for checked in results:
        decision = checked.decision
        objects[_object_outcome(decision)] += 1
        images["exempt"] += checked.exempt_images
        modes: dict[Subject, list[Mode]] = {}
        for finding in decision.findings:
            findings[finding.mode.value] += 1
            modes.setdefault(finding.subject, []).append(finding.mode)
        for verdict in decision.verdicts:
            images[_WORD[outcome_of(modes.get(verdict.use, ()))]] += 1
    return {"objects": objects, "images": images, "findings": findings}


def _summary(results: list[CheckedObject]) -> str:
    counts = _counts(results)
    objects, images, findings = counts["objects"], counts["images"], counts["findings"]
    return (
        f"{_plural(len(results), 'object')}: {objects['denied']:,} denied, {objects['warn']:,} with warnings, "
        f"{objects['audit']:,} audited, {objects['allowed']:,} allowed, {objects['exempt']:,} exempt; "
        f"{_plural(sum(images.values()), 'image')}: {images['denied']:,} denied, {images['warn']:,} with warnings, "
        f"{images['audit']:,} audited, {images['allowed']:,} allowed, {images['exempt']:,} exempt; "
        f"{_plural(sum(findings.values()), 'finding')} ({findings['enforce']:,} enforced, "
        f"{findings['warn']:,} warnings, {findings['audit']:,} audit)"
    )


@app.command()
def check(
    paths: Annotated[list[str], typer.Argument(help="Manifest files, directories, or - for stdin.")],
    policy: PolicyOption = None,
    grants: GrantsOption = None,
    identities: IdentitiesOption = None,
    namespace: Annotated[
        str, typer.Option("--namespace", "-n", help="Namespace for objects that name none.")
    ] = "default",
    output: Annotated[OutputFormat, typer.Option("--output", "-o", help="table or json.")] = OutputFormat.table,
    now: Annotated[
        str | None, typer.Option(help="Evaluate as of this ISO date/time (grant expiry). Default: now.")
    ] = None,
    registry: Annotated[
        bool, typer.Option("--registry/--offline", help="Ask registries: base images and digests to pin.")
    ] = False,
) -> None:
    """Evaluate manifests offline against a policy, as the webhook would on CREATE.

    Exit code: 0 when everything is allowed (warnings included), 1 when anything would
    be denied, 2 on bad input (unreadable manifest or invalid policy).
    """
    if policy == STDIN and "-" in paths:
        raise _fail("only one of the policy and the manifests can come from standard input (-)")
    loaded = _load(policy, grants, identities)
    moment = _parse_now(now)
    objects = read_inputs(paths, "manifest")
    gate = RegistryGate(policy.parent if policy else None) if registry else None
    if registry:
        configure_logging("warning", json=False)
    results = check_objects(loaded, objects, namespace, moment, gate)
    if output is OutputFormat.json:
        payload = {
            "summary": _summary(results),
            "counts": _counts(results),
            "allowed": all(c.decision.allowed for c in results),
            "objects": [{"source": c.where, **decision_to_dict(c.decision)} for c in results],
        }
        sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(payload)) + b"\n")
    else:
        console = Console()
        _render_table(results, console)
        console.print(_summary(results))
    if not all(c.decision.allowed for c in results):
        raise typer.Exit(EXIT_DENIED)


@policy_app.command("validate")
def policy_validate(
    policy: PolicyOption = None, grants: GrantsOption = None, identities: IdentitiesOption = None
) -> None:
    """Validate a policy (and its grants and identities files); print what it says."""
    loaded = _load(policy, grants, identities)
    now = dt.datetime.now(dt.UTC)
    console = Console()
    console.print(f"[green]valid[/]: {escape(loaded.source)}")
    console.print(f"mode: {loaded.mode.value}; byoc default: {loaded.byoc_default}")
    console.print(f"trusted: {escape(', '.join(map(str, loaded.trusted)) or '(none)')}")
    if loaded.blocked:
        console.print(f"blocked: {escape(', '.join(map(str, loaded.blocked)))}")
    for grant in loaded.grants:
        state = "expired" if grant.expired(now) else "active"
        registries = ", ".join(map(str, grant.registries)) if grant.registries is not None else "any registry"
        until = grant.expires.isoformat() if grant.expires else "no expiry"
        console.print(f"grant {escape(grant.namespace)}: {state}, {escape(registries)}, {until}")


@policy_app.command("default")
def policy_default() -> None:
    """Print the built-in policy, a starting point for your own."""
    sys.stdout.write(DEFAULT_POLICY_YAML)


WEBHOOKS_HEADER = """\
# Made by `imagegate webhooks -p POLICY` (scripts/sync_policy.py); edit the policy, not this file.
# failurePolicy Fail: when imagegate cannot answer, pods are not created (fail closed); the
# namespaceSelector exempts the control plane and imagegate itself by the immutable
# kubernetes.io/metadata.name label, which no tenant can set on another namespace.
# spec-changed (both webhooks) skips UPDATEs that leave the pod-bearing part alone: label,
# annotation, finalizer, ownerReference and status writes. needs-mutation (the mutating
# webhook only) skips objects where /mutate has nothing to fill in or pin. Every key read is
# guarded by has(): an expression error fails closed. Every pods/ephemeralcontainers update is sent.
"""


@app.command()
def webhooks(
    policy: PolicyOption = None,
    condition: Annotated[
        bool, typer.Option("--mutate-condition", help="Print only the needs-mutation CEL expression.")
    ] = False,
) -> None:
    """Print the webhook configurations for a policy (the mutating one skips what needs no mutation)."""
    if policy is None:
        loaded = default_policy()
    else:  # only the policy: its grants and identities files change nothing here
        try:
            loaded = load_policy(policy.read_text(), str(policy))
        except OSError as exc:
            raise _fail(f"{policy}: {exc.strerror or exc}") from None
        except (PolicyError, UnicodeDecodeError) as exc:
            raise _fail(f"invalid policy: {exc}") from None
    if condition:
        sys.stdout.write(mutation_condition(loaded) + "\n")
        return
    sys.stdout.write(WEBHOOKS_HEADER + _yaml_documents(webhook_configurations(loaded)))


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
    import dataclasses  # noqa: PLC0415

    from imagegate.core.baseimage import verify_image  # noqa: PLC0415
    from imagegate.core.platforms import PlatformError, parse_platform  # noqa: PLC0415
    from imagegate.core.reference import ReferenceError, parse_docker_ref  # noqa: PLC0415
    from imagegate.shell.registry import RegistryError  # noqa: PLC0415

    configure_logging("warning", json=False)
    loaded = _load(policy, None)
    config = loaded.registry
    if platform:
        try:
            config = dataclasses.replace(config, platforms=tuple(parse_platform(p) for p in platform))
        except PlatformError as exc:
            raise _fail(f"--platform {exc}") from None
    if ca_file is not None:
        config = dataclasses.replace(config, ca_file=str(ca_file.absolute()))
    loaded = dataclasses.replace(loaded, registry=config)
    try:
        ref = parse_docker_ref(image)
    except ReferenceError as exc:
        raise _fail(str(exc)) from None

    async def run() -> tuple[Any, Any]:
        gate = RegistryGate(policy.parent if policy else None)
        try:
            resolved = await gate.client(loaded.registry).resolve(ref)
            if loaded.base_images.trusted:
                await gate.refresh_bases(loaded)
            verdict = verify_image(resolved, gate.bases.versions) if loaded.base_images.trusted else None
            return resolved, verdict
        finally:
            await gate.aclose()

    try:
        resolved, verdict = asyncio.run(run())
    except RegistryError as exc:
        raise _fail(f"{image}: {exc}") from None
    if output is OutputFormat.json:
        payload = {
            "reference": resolved.reference,
            "digest": resolved.digest,
            "mediaType": resolved.media_type,
            "availablePlatforms": list(resolved.available_platforms),
            "platforms": [
                {
                    "platform": p.platform,
                    "manifest": p.manifest_digest,
                    "layers": [{"digest": layer.digest, "size": layer.size} for layer in p.layers],
                    "diffIds": list(p.diff_ids),
                    "annotations": p.annotations,
                }
                for p in resolved.platforms
            ],
            "base": None if verdict is None else {"ok": verdict.ok, "detail": verdict.detail},
        }
        sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(payload)) + b"\n")
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


class LogFormat(StrEnum):
    json = "json"
    console = "console"


_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_WILDCARD_ADDRESSES = ("0.0.0.0", "::", "")


def _dev_certificate(directory: Path, host: str, port: int) -> tuple[Path, Path]:
    """The development certificate (its CA kept across runs, so the caBundle stays) and a true hint."""
    hosts = ["localhost", "127.0.0.1", *([host] if host not in (*_LOOPBACK_NAMES, *_WILDCARD_ADDRESSES) else [])]
    try:
        prepare_directory(directory, "--dev-cert-dir")
    except CertificateError as exc:
        raise _fail(str(exc)) from None
    try:
        ca = find_ca(directory)
    except CertificateError as exc:
        raise _fail(
            f"--dev-cert-dir: {exc}; remove {directory} to make a new development CA, or give --tls-cert and --tls-key"
        ) from None
    expired = ca is not None and ca[0].not_valid_after_utc <= dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    try:
        files = make_certificates(directory, hosts, days=30, ca=None if expired else ca)
    except CertificateError as exc:
        raise _fail(f"development certificate: {exc}") from None
    where = "a new development CA" if ca is None or expired else "the development CA kept"
    lines = [f"development certificate for {', '.join(hosts)}, signed by {where} in {directory}/"]
    url_host = host if host not in _WILDCARD_ADDRESSES else "127.0.0.1"
    url = f"https://{f'[{url_host}]' if ':' in url_host else url_host}:{port}"
    if host in _LOOPBACK_NAMES or host.startswith("127."):
        lines.append(f"listening on {url}: loopback, so only this machine can connect (use --host ADDRESS for others)")
    elif host in _WILDCARD_ADDRESSES:
        lines.append(
            f"listening on port {port} of every address of this host, but the certificate names only "
            f"{', '.join(hosts)}: a client that connects by another name or address cannot verify it "
            "(--host ADDRESS adds that address)"
        )
    else:
        lines.append(f"listening on {url}")
    if ca is not None and expired:
        lines.append(f"the earlier development CA in {directory}/ expired or was about to: update the caBundle")
    # Plain writes: a console would wrap the long base64 line and break copy-paste.
    sys.stderr.write(
        "\n".join(lines) + "\n"
        "A cluster whose API server can reach that address can use it: in the Validating/MutatingWebhookConfiguration set\n"
        f"  clientConfig.url: {url}/validate  (and /mutate)\n"
        f"  clientConfig.caBundle: {files.ca_bundle()}\n"
        "For a real deployment use deploy/ (cert-manager) or `imagegate certs`.\n"
    )
    return files.cert, files.key


@app.command()
def serve(
    policy: PolicyOption = None,
    grants: GrantsOption = None,
    identities: IdentitiesOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 in a cluster).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTPS port.", min=1, max=65535)] = 8443,
    tls_cert: Annotated[
        Path | None, typer.Option(help="Serving certificate (PEM); reloaded when it changes.", dir_okay=False)
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="Its private key (PEM).", dir_okay=False)] = None,
    dev_cert_dir: Annotated[
        Path,
        typer.Option(help="Where to keep the self-signed certificate made when --tls-cert is not given."),
    ] = Path(".imagegate-dev-tls"),
    log_level: Annotated[LogLevel, typer.Option(help="Least severe log lines written.")] = LogLevel.info,
    log_format: Annotated[LogFormat, typer.Option(help="json (one object per line) or console.")] = LogFormat.json,
    max_body_bytes: Annotated[int, typer.Option(help="Larger request bodies get HTTP 413.", min=1)] = 8 * 1024 * 1024,
    workers: Annotated[int, typer.Option(help="Server processes sharing the port (one per core).", min=1)] = 1,
    metrics_per_namespace: Annotated[
        bool,
        typer.Option(help="Label decisions and findings by namespace (one series per namespace: see docs/deploy.md)."),
    ] = False,
) -> None:
    """Serve the admission webhook over HTTPS (/validate, /mutate, /healthz, /readyz, /metrics).

    With no flags: the built-in policy and a self-signed development certificate.
    """
    from imagegate.shell.server import SERVING_MODULE, ListenError, ServerSettings, check_listen  # noqa: PLC0415

    configure_logging(log_level, json=log_format is LogFormat.json)
    if (tls_cert is None) != (tls_key is None):
        raise _fail("give both --tls-cert and --tls-key, or neither (for a development certificate)")
    try:
        check_listen(host, port)
    except ListenError as exc:
        raise _fail(str(exc)) from None
    if tls_cert is None or tls_key is None:
        tls_cert, tls_key = _dev_certificate(dev_cert_dir, host, port)
    else:
        try:
            check_pair(tls_cert, tls_key)
        except CertificateError as exc:
            raise _fail(str(exc)) from None
    settings = ServerSettings(
        host=host,
        port=port,
        tls_cert=tls_cert,
        tls_key=tls_key,
        policy_path=policy,
        grants_path=grants,
        identities_path=identities,
        max_body_bytes=max_body_bytes,
        log_level=log_level.value,
        log_json=log_format is LogFormat.json,
        workers=workers,
        metrics_per_namespace=metrics_per_namespace,
    )
    # The server runs as a process of its own, with none of the command line's libraries (typer,
    # rich, the cluster client, the reports): the same pid, so signals and the kubelet see no change.
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", SERVING_MODULE, settings.to_json()])


def _print_command(console: Console, text: str) -> None:
    """A command to copy: never wrapped (a wrapped line breaks copy and paste), paths quoted."""
    console.print(escape(text), soft_wrap=True)


@app.command()
def certs(
    out: Annotated[Path, typer.Option(help="Directory for ca.crt, ca.key, tls.crt, tls.key.", file_okay=False)] = Path(
        "imagegate-tls"
    ),
    service: Annotated[
        str | None,
        typer.Option(help="The webhook's Service name (a DNS label). Default: imagegate; with --renew, as before."),
    ] = None,
    namespace: Annotated[
        str | None, typer.Option(help="The webhook's namespace. Default: imagegate; with --renew, as before.")
    ] = None,
    days: Annotated[int, typer.Option(help="Validity of the serving certificate, in days.", min=1)] = 365,
    ca_days: Annotated[int, typer.Option(help="Validity of a new CA, in days.", min=1)] = CA_DAYS,
    renew: Annotated[
        bool,
        typer.Option(help="Issue a new serving certificate from the CA already in --out (same caBundle)."),
    ] = False,
) -> None:
    """Make a CA and a serving certificate for clusters without cert-manager; print the caBundle.

    Run it once; later, --renew issues a new serving certificate from the same CA, so the
    webhooks' caBundle stays valid. An existing CA is never replaced.
    """
    import shlex  # noqa: PLC0415

    try:
        earlier = dns_names_of(out / "tls.crt") if renew and service is None and namespace is None else None
        names = earlier or service_dns_names(service or "imagegate", namespace or "imagegate")
        if namespace is None:  # for the kubectl line: the namespace in <service>.<namespace>
            namespace = names[1].split(".")[1] if len(names) > 1 and names[1].count(".") == 1 else "imagegate"
        prepare_directory(out, "--out")
        existing = find_ca(out)
        if renew:
            if existing is None:
                raise CertificateError(f"--renew needs the CA made earlier in {out}/ (ca.crt, ca.key); there is none")
            check_leaf_fits(existing, days, where=f"{out}/")
        elif days > ca_days:
            raise CertificateError(
                f"--days {days} is longer than --ca-days {ca_days}: a certificate cannot outlive its CA"
            )
        elif existing is not None:
            raise CertificateError(
                f"{out}/ already holds a CA (valid until {existing[0].not_valid_after_utc:%Y-%m-%d}); "
                "replacing it would break the caBundle the cluster has. Add --renew to issue a new serving "
                f"certificate from it, or remove {out}/ca.crt and {out}/ca.key first to make a new CA"
            )
        files = make_certificates(out, names, days=days, ca=existing, ca_days=ca_days)
    except CertificateError as exc:
        raise _fail(str(exc)) from None
    err = Console(stderr=True)
    authority = load_ca(out)[0]
    err.print(
        f"wrote {escape(str(files.cert))} and {escape(str(files.key))} for {escape(', '.join(names))}, valid "
        f"{days} days; CA {escape(str(files.ca_cert))} valid until {authority.not_valid_after_utc:%Y-%m-%d} "
        f"(keep {escape(str(out / 'ca.key'))} secret)",
        soft_wrap=True,
    )
    err.print("Store it in the cluster:", soft_wrap=True)
    cert, key = shlex.quote(str(files.cert)), shlex.quote(str(files.key))
    _print_command(err, f"kubectl -n {namespace} create secret tls imagegate-tls --cert={cert} --key={key}")
    err.print("then set this caBundle in deploy/'s webhook configurations (printed on stdout):", soft_wrap=True)
    sys.stdout.write(files.ca_bundle() + "\n")


@app.callback()
def _global_options(
    debug: Annotated[
        bool, typer.Option("--debug", help=f"Print the traceback of an internal error (or set {DEBUG_ENV}=1).")
    ] = False,
) -> None:
    if debug:
        os.environ[DEBUG_ENV] = "1"  # also seen by the server's worker processes


def main(argv: list[str] | None = None) -> Any:
    """Entry point for the ``imagegate`` script: bad input exits 2, a bug 70, never a bare traceback."""
    from imagegate.shell import cli_identities, cli_ops  # noqa: F401, PLC0415 (register their commands)

    try:
        return app(args=argv)
    except Exception as exc:
        sys.exit(report_internal_error(exc))
