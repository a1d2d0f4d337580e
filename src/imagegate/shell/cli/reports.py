"""``imagegate reports``: the in-cluster audit controller (shell/cluster/reports.py) from the command line."""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING, Annotated

import typer

from imagegate.core.names import namespace_name_error
from imagegate.core.policy import PolicyError
from imagegate.core.policyreport import ReportFormat
from imagegate.shell.cli.common import GrantsOption, IdentitiesOption, PolicyOption, app, fail, invalid_policy
from imagegate.shell.cli.serve import LogFormat
from imagegate.shell.logs import LogLevel, configure_logging

if TYPE_CHECKING:
    from imagegate.shell.cluster.reports import ReportsSettings
    from imagegate.shell.policy_source import PolicySource


def _default_identity() -> str:
    import socket  # noqa: PLC0415

    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


@app.command()
def reports(
    policy: PolicyOption = None,
    grants: GrantsOption = None,
    identities: IdentitiesOption = None,
    report_format: Annotated[
        ReportFormat,
        typer.Option(
            "--format",
            help="openreports (openreports.io/v1alpha1 Report) or wgpolicyk8s (wgpolicyk8s.io/v1alpha2 PolicyReport).",
        ),
    ] = ReportFormat.openreports,
    period: Annotated[float, typer.Option(help="Seconds between full passes (grants end with time).", min=0.1)] = 300.0,
    max_results: Annotated[
        int, typer.Option(help="Results listed per report; the rest are counted in one result.", min=1)
    ] = 1000,
    events: Annotated[
        bool, typer.Option("--events/--no-events", help="Warning Events GrantExpiring and GrantExpired.")
    ] = True,
    lease_namespace: Annotated[
        str | None,
        typer.Option(help="Namespace of the leader-election Lease. Default: $POD_NAMESPACE, else imagegate."),
    ] = None,
    lease_name: Annotated[str, typer.Option(help="Name of the coordination.k8s.io/v1 Lease.")] = "imagegate-reports",
    lease_duration: Annotated[
        float, typer.Option(help="Seconds; a leader that stops renewing is replaced within this.", min=0.5)
    ] = 15.0,
    identity: Annotated[
        str | None, typer.Option(help="This replica's name in the Lease. Default: $POD_NAME, else host-PID.")
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Address of /metrics and /healthz.")] = "0.0.0.0",
    metrics_port: Annotated[
        int, typer.Option(help="Port of /metrics and /healthz (plain HTTP).", min=0, max=65535)
    ] = 8081,
    log_level: Annotated[LogLevel, typer.Option(help="Least severe log lines written.")] = LogLevel.info,
    log_format: Annotated[LogFormat, typer.Option(help="json (one object per line) or console.")] = LogFormat.json,
) -> None:
    """Keep a policy report in every governed namespace that runs something, and warn tools with
    Events before and when their grant ends (docs/reports.md). Runs until stopped (SIGTERM)."""
    configure_logging(log_level, json=log_format is LogFormat.json)
    namespace = lease_namespace or os.environ.get("POD_NAMESPACE") or "imagegate"
    problem = namespace_name_error(namespace)
    if problem is not None:
        raise fail(f"--lease-namespace: {problem}")
    # lightkube and the controller only here: `imagegate --help` stays fast
    import asyncio  # noqa: PLC0415

    from imagegate.shell.cluster.reports import ReportsSettings  # noqa: PLC0415
    from imagegate.shell.policy_source import PolicySource  # noqa: PLC0415

    try:
        source = PolicySource(policy, grants, identities_path=identities)
    except PolicyError as exc:
        raise invalid_policy(exc) from None
    settings = ReportsSettings(
        fmt=report_format,
        period=period,
        max_results=max_results,
        events=events,
        lease_namespace=namespace,
        lease_name=lease_name,
        lease_duration=lease_duration,
        identity=identity or _default_identity(),
    )
    message = asyncio.run(_run(source, settings, metrics_host, metrics_port))
    if message is not None:
        raise fail(message)


async def _run(source: PolicySource, settings: ReportsSettings, host: str, port: int) -> str | None:
    """The controller until SIGTERM or SIGINT; a message when it cannot start."""
    import asyncio  # noqa: PLC0415

    from lightkube import AsyncClient  # noqa: PLC0415
    from lightkube.core.exceptions import ConfigError  # noqa: PLC0415

    from imagegate.shell.cluster.reports import (  # noqa: PLC0415
        CrdMissingError,
        ReportsController,
        ensure_crd,
        serve_metrics,
    )

    try:
        client = AsyncClient(field_manager="imagegate-reports")
    except (ConfigError, OSError) as exc:
        return f"no cluster to talk to: {exc}"
    try:
        try:
            await ensure_crd(client, settings.fmt)
        except CrdMissingError as exc:
            return str(exc)
        controller = ReportsController(client, source, settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            server = await serve_metrics(controller, host, port, stop)
        except OSError as exc:
            return f"cannot listen on {host}:{port} for /metrics: {exc.strerror}"
        try:
            await controller.run(stop)
        finally:
            server.close()
        return None
    finally:
        await client.close()
