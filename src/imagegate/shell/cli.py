"""The ``imagegate`` command line."""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from imagegate.core.decide import Decision, decide, decision_to_dict
from imagegate.core.policy import DEFAULT_POLICY_YAML, Policy, PolicyError
from imagegate.core.yamldoc import DocumentError
from imagegate.shell.certs import load_ca, make_certificates, service_dns_names
from imagegate.shell.logs import configure_logging
from imagegate.shell.manifests import SourcedObject, read_manifests
from imagegate.shell.policy_source import load_policy_files
from imagegate.shell.verification import RegistryGate, settle

app = typer.Typer(
    name="imagegate",
    help="Admission control for container images on multi-tenant Kubernetes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
policy_app = typer.Typer(help="Validate or print policies.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")

EXIT_OK, EXIT_DENIED, EXIT_BAD_INPUT = 0, 1, 2

PolicyOption = Annotated[
    Path | None,
    typer.Option("--policy", "-p", help="Policy file (YAML). Default: the built-in policy.", dir_okay=False),
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


def _load(policy_path: Path | None, grants_path: Path | None, identities_path: Path | None = None) -> Policy:
    try:
        return load_policy_files(policy_path, grants_path, identities_path=identities_path)[0]
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

    async def judge_all() -> list[CheckedObject]:
        results = []
        for item in objects:
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
            results.append(CheckedObject(item.where, decision))
        if gate is not None:
            await gate.aclose()
        return results

    return asyncio.run(judge_all())


_RESULT_STYLE = {
    "denied": "[bold red]denied[/]",
    "warn": "[yellow]warn[/]",
    "audit": "[blue]audit[/]",
    "allowed": "[green]allowed[/]",
    "exempt": "[dim]exempt[/]",
}


def _render_table(results: list[CheckedObject], console: Console) -> None:
    table = Table(show_lines=False, header_style="bold", expand=False)
    for column in ("result", "object", "container", "image", "why"):
        table.add_column(column, overflow="fold")
    for checked in results:
        decision = checked.decision
        subject = escape(f"{decision.subject}\n{checked.where}")
        if not decision.governed:
            table.add_row(_RESULT_STYLE["exempt"], subject, "", "", "namespace not governed by the policy")
            continue
        if not decision.verdicts:  # a malformed object: its findings name no image
            for problem in decision.findings:
                table.add_row(_RESULT_STYLE["denied"], subject, "", "", escape(problem.message))
            continue
        for verdict in decision.verdicts:
            if verdict.finding is None:
                result, why = "allowed", verdict.allowed_by or ""
            else:
                result = {"enforce": "denied", "warn": "warn", "audit": "audit"}[verdict.finding.mode.value]
                why = f"{verdict.finding.rule}: {verdict.finding.reason}"
            table.add_row(
                _RESULT_STYLE[result],
                subject,
                escape(verdict.use.label),
                escape(verdict.use.image),
                escape(why),
            )
    console.print(table)


def _summary(results: list[CheckedObject]) -> str:
    images = sum(len(c.decision.verdicts) for c in results)
    denied = sum(1 for c in results if not c.decision.allowed)
    warned = sum(1 for c in results if c.decision.warnings)
    audited = sum(1 for c in results if c.decision.audits)
    exempt = sum(1 for c in results if not c.decision.governed)
    return (
        f"{len(results)} objects, {images} images: {denied} denied, {warned} with warnings, "
        f"{audited} audited, {exempt} exempt"
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
    loaded = _load(policy, grants, identities)
    moment = _parse_now(now)
    try:
        objects = read_manifests(paths)
    except DocumentError as exc:
        raise _fail(f"invalid manifest: {exc}") from None
    gate = RegistryGate(policy.parent if policy else None) if registry else None
    if registry:
        configure_logging("warning", json=False)
    results = check_objects(loaded, objects, namespace, moment, gate)
    if output is OutputFormat.json:
        payload = {
            "summary": _summary(results),
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


@app.command()
def inspect(
    image: Annotated[str, typer.Argument(help="An image reference, e.g. ghcr.io/org/app:1.2")],
    policy: PolicyOption = None,
    platform: Annotated[
        list[str] | None, typer.Option(help="Platforms to examine (default: the policy's registry.platforms).")
    ] = None,
    ca_file: Annotated[Path | None, typer.Option(help="CA bundle for the registry's TLS.", dir_okay=False)] = None,
    output: Annotated[OutputFormat, typer.Option("--output", "-o", help="table or json.")] = OutputFormat.table,
) -> None:
    """Read an image from its registry: digest, platforms, layers with sizes, and its trusted base."""
    import dataclasses  # noqa: PLC0415

    from imagegate.core.baseimage import verify_image  # noqa: PLC0415
    from imagegate.core.reference import ReferenceError, parse_docker_ref  # noqa: PLC0415
    from imagegate.shell.registry import RegistryError  # noqa: PLC0415

    configure_logging("warning", json=False)
    loaded = _load(policy, None)
    config = loaded.registry
    if platform:
        config = dataclasses.replace(config, platforms=tuple(platform))
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


@app.command()
def serve(
    policy: PolicyOption = None,
    grants: GrantsOption = None,
    identities: IdentitiesOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 in a cluster).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTPS port.")] = 8443,
    tls_cert: Annotated[
        Path | None, typer.Option(help="Serving certificate (PEM); reloaded when it changes.", dir_okay=False)
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="Its private key (PEM).", dir_okay=False)] = None,
    dev_cert_dir: Annotated[
        Path,
        typer.Option(help="Where to keep the self-signed certificate made when --tls-cert is not given."),
    ] = Path(".imagegate-dev-tls"),
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    log_format: Annotated[LogFormat, typer.Option(help="json (one object per line) or console.")] = LogFormat.json,
    max_body_bytes: Annotated[int, typer.Option(help="Larger request bodies get HTTP 413.")] = 8 * 1024 * 1024,
    workers: Annotated[int, typer.Option(help="Server processes sharing the port (one per core).", min=1)] = 1,
) -> None:
    """Serve the admission webhook over HTTPS (/validate, /mutate, /healthz, /readyz, /metrics).

    With no flags: the built-in policy and a self-signed development certificate.
    """
    from imagegate.shell.server import ServerSettings, run_server  # noqa: PLC0415 (keeps `check` fast)

    configure_logging(log_level, json=log_format is LogFormat.json)
    if (tls_cert is None) != (tls_key is None):
        raise _fail("give both --tls-cert and --tls-key, or neither (for a development certificate)")
    if tls_cert is None or tls_key is None:
        hosts = [
            "localhost",
            "127.0.0.1",
            *([host] if host not in ("localhost", "127.0.0.1", "0.0.0.0") else []),
        ]
        files = make_certificates(dev_cert_dir, hosts, days=30)
        tls_cert, tls_key = files.cert, files.key
        err = Console(stderr=True)
        err.print(f"[bold]development certificate[/] for {', '.join(hosts)} in {escape(str(dev_cert_dir))}/")
        # Plain writes: a console would wrap the long base64 line and break copy-paste.
        sys.stderr.write(
            "Point a cluster at it: in the Validating/MutatingWebhookConfiguration set\n"
            f"  clientConfig.url: https://<this host>:{port}/validate  (and /mutate)\n"
            f"  clientConfig.caBundle: {files.ca_bundle()}\n"
            "For a real deployment use deploy/ (cert-manager) or `imagegate certs`.\n"
        )
    settings = ServerSettings(
        host=host,
        port=port,
        tls_cert=tls_cert,
        tls_key=tls_key,
        policy_path=policy,
        grants_path=grants,
        identities_path=identities,
        max_body_bytes=max_body_bytes,
        log_level=log_level,
        log_json=log_format is LogFormat.json,
        workers=workers,
    )
    raise typer.Exit(run_server(settings))


@app.command()
def certs(
    out: Annotated[Path, typer.Option(help="Directory for ca.crt, ca.key, tls.crt, tls.key.")] = Path("imagegate-tls"),
    service: Annotated[str, typer.Option(help="The webhook's Service name.")] = "imagegate",
    namespace: Annotated[str, typer.Option(help="The webhook's namespace.")] = "imagegate",
    days: Annotated[int, typer.Option(help="Validity of the serving certificate, in days.")] = 365,
    renew: Annotated[
        bool,
        typer.Option(help="Issue a new serving certificate from the CA already in --out (same caBundle)."),
    ] = False,
) -> None:
    """Make a CA and a serving certificate for clusters without cert-manager; print the caBundle."""
    try:
        ca = load_ca(out) if renew else None
    except (OSError, ValueError) as exc:
        raise _fail(f"--renew needs the CA made earlier in {out}: {exc}") from None
    files = make_certificates(out, service_dns_names(service, namespace), days=days, ca=ca)
    err = Console(stderr=True)
    err.print(f"wrote {files.ca_cert}, {files.cert}, {files.key} (keep {out}/ca.key secret)")
    err.print(
        f"kubectl -n {namespace} create secret tls imagegate-tls --cert={files.cert} --key={files.key}\n"
        "then set this caBundle in deploy/'s webhook configurations (printed on stdout):"
    )
    sys.stdout.write(files.ca_bundle() + "\n")


def main(argv: list[str] | None = None) -> Any:
    """Entry point for the ``imagegate`` script."""
    from imagegate.shell import cli_identities, cli_ops  # noqa: F401, PLC0415 (register their commands)

    return app(args=argv)
