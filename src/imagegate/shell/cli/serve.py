"""``serve`` and ``certs``: the webhook, and certificates for clusters without cert-manager."""

from __future__ import annotations

import datetime as dt
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from imagegate.shell.cli.common import (
    GrantsOption,
    IdentitiesOption,
    PolicyOption,
    app,
    fail,
)
from imagegate.shell.logs import LogLevel, configure_logging
from imagegate.shell.webhook.cert_terms import CA_DAYS, CertificateError
from imagegate.shell.webhook.serve_defaults import (
    DEFAULT_HOST,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_PORT,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_WORKERS,
)


class LogFormat(StrEnum):
    json = "json"
    console = "console"


_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_WILDCARD_ADDRESSES = ("0.0.0.0", "::", "")


def _dev_certificate(directory: Path, host: str, port: int) -> tuple[Path, Path]:
    """The development certificate (its CA kept across runs, so the caBundle stays) and a true hint."""
    from imagegate.shell.webhook.certs import find_ca, make_certificates, prepare_directory  # noqa: PLC0415 (cryptography)

    hosts = ["localhost", "127.0.0.1", *([host] if host not in (*_LOOPBACK_NAMES, *_WILDCARD_ADDRESSES) else [])]
    try:
        prepare_directory(directory, "--dev-cert-dir")
    except CertificateError as exc:
        raise fail(str(exc)) from None
    try:
        ca = find_ca(directory)
    except CertificateError as exc:
        raise fail(
            f"--dev-cert-dir: {exc}; remove {directory} to make a new development CA, or give --tls-cert and --tls-key"
        ) from None
    expired = ca is not None and ca[0].not_valid_after_utc <= dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    try:
        files = make_certificates(directory, hosts, days=30, ca=None if expired else ca)
    except CertificateError as exc:
        raise fail(f"development certificate: {exc}") from None
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
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 in a cluster).")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(help="HTTPS port.", min=1, max=65535)] = DEFAULT_PORT,
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
    max_body_bytes: Annotated[
        int, typer.Option(help="Larger request bodies get HTTP 413.", min=1)
    ] = DEFAULT_MAX_BODY_BYTES,
    request_timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds from a request's first byte to its last; a slower one gets HTTP 408. "
            f"Default: {DEFAULT_REQUEST_TIMEOUT:g}.",
            min=0.1,
        ),
    ] = None,
    shutdown_grace: Annotated[
        float | None,
        typer.Option(
            help="Seconds requests in flight at SIGTERM may take to be answered (idle connections close at once). Default: 15.",
            min=0,
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option(help="Server processes sharing the port (one per core).", min=1)
    ] = DEFAULT_WORKERS,
    metrics_per_namespace: Annotated[
        bool,
        typer.Option(help="Label decisions and findings by namespace (one series per namespace: see docs/deploy.md)."),
    ] = False,
) -> None:
    """Serve the admission webhook over HTTPS (/validate, /mutate, /healthz, /readyz, /metrics).

    With no flags: the built-in policy and a self-signed development certificate.
    """
    from imagegate.shell.webhook.listen import ListenError, check_listen  # noqa: PLC0415
    from imagegate.shell.webhook.settings import SERVING_MODULE, SHUTDOWN_GRACE_SECONDS, ServerSettings  # noqa: PLC0415

    configure_logging(log_level, json=log_format is LogFormat.json)
    if (tls_cert is None) != (tls_key is None):
        raise fail("give both --tls-cert and --tls-key, or neither (for a development certificate)")
    try:
        check_listen(host, port)
    except ListenError as exc:
        raise fail(str(exc)) from None
    if tls_cert is None or tls_key is None:
        tls_cert, tls_key = _dev_certificate(dev_cert_dir, host, port)
    else:
        from imagegate.shell.webhook.certs import check_pair  # noqa: PLC0415 (cryptography: serve's own command only)

        try:
            check_pair(tls_cert, tls_key)
        except CertificateError as exc:
            raise fail(str(exc)) from None
    settings = ServerSettings(
        host=host,
        port=port,
        tls_cert=tls_cert,
        tls_key=tls_key,
        policy_path=policy,
        grants_path=grants,
        identities_path=identities,
        max_body_bytes=max_body_bytes,
        request_timeout=DEFAULT_REQUEST_TIMEOUT if request_timeout is None else request_timeout,
        shutdown_grace=SHUTDOWN_GRACE_SECONDS if shutdown_grace is None else shutdown_grace,
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

    from imagegate.shell.webhook.certs import (  # noqa: PLC0415 (cryptography: this command only)
        check_leaf_fits,
        dns_names_of,
        find_ca,
        load_ca,
        make_certificates,
        prepare_directory,
        service_dns_names,
    )

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
        raise fail(str(exc)) from None
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
    # create --dry-run | apply: the same line makes the Secret or replaces the one a renewal finds there
    _print_command(
        err,
        f"kubectl -n {namespace} create secret tls imagegate-tls --cert={cert} --key={key} "
        "--dry-run=client -o yaml | kubectl apply -f -",
    )
    err.print("then set this caBundle in deploy/'s webhook configurations (printed on stdout):", soft_wrap=True)
    sys.stdout.write(files.ca_bundle() + "\n")
