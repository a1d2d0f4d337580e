"""Operator commands say what went wrong in one line, with the right exit code (issue 14).

Each case runs the real ``imagegate`` command (a subprocess, as a user would) and asserts
the message and the exit code: 2 for bad input, 70 for a bug in imagegate, never a
traceback on stderr.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import typer.main
import yaml
from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st

from imagegate.shell.cli.main import app
from imagegate.shell.cli.serve import _dev_certificate
from imagegate.shell.cluster.grants_file import grants_configmap_yaml
from imagegate.shell.webhook.certs import make_certificates
from tests.conftest import cli_env, run_imagegate
from tests.loopback import free_port
from tests.processes import start
from tests.webhook_process import run_webhook


def _one_error_line(stderr: str, *fragments: str) -> None:
    """Bad input: exactly one ``error:`` line, naming what is wrong; no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith(("error:", "Error:"))]
    assert len(lines) == 1, stderr
    for fragment in fragments:
        assert fragment in lines[0], stderr


# --- certs (item 3) -----------------------------------------------------------------------


def test_certs_refuses_to_replace_a_ca_and_renews_from_it(tmp_path: Path) -> None:
    out = tmp_path / "tls"
    first = run_imagegate("certs", "--out", str(out))
    assert first.returncode == 0, first.stderr
    bundle = first.stdout.strip()
    again = run_imagegate("certs", "--out", str(out))
    assert again.returncode == 2
    _one_error_line(again.stderr, "already holds a CA", "--renew", "ca.key")
    assert base64.b64encode((out / "ca.crt").read_bytes()).decode() == bundle  # untouched
    renewed = run_imagegate("certs", "--out", str(out), "--renew", "--days", "30")
    assert renewed.returncode == 0, renewed.stderr
    assert renewed.stdout.strip() == bundle  # same CA, same caBundle
    leaf = x509.load_pem_x509_certificate((out / "tls.crt").read_bytes())
    assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days == 30


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--days", "0"], ["--days", "1"]),
        (["--days", "-3"], ["--days", "1"]),
        (["--days", "5000"], ["--days 5000", "--ca-days 3650", "outlive"]),
        (["--service", "Bad_Name!"], ["service name 'Bad_Name!'", "RFC 1123"]),
        (["--namespace", "-imagegate"], ["namespace '-imagegate'", "DNS label"]),
        (["--service", "x" * 64], ["service name", "1 to 63"]),
        (["--renew"], ["--renew needs the CA made earlier"]),
    ],
)
def test_certs_bad_values(tmp_path: Path, args: list[str], fragments: list[str]) -> None:
    result = run_imagegate("certs", "--out", str(tmp_path / "tls"), *args)
    assert result.returncode == 2, result.stderr
    _one_error_line(result.stderr, *fragments)
    assert not (tmp_path / "tls" / "ca.key").exists()  # nothing half-made


def test_certs_out_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    for out in ("afile", "afile/inside"):
        result = run_imagegate("certs", "--out", str(tmp_path / out))
        assert result.returncode == 2, result.stderr
        _one_error_line(result.stderr, str(tmp_path / "afile"))
        assert "file" in result.stderr.lower() or "not a directory" in result.stderr


def test_certs_renew_on_an_expired_or_ending_ca(tmp_path: Path) -> None:
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=20)
    make_certificates(tmp_path / "old", ["imagegate"], days=1, ca_days=10, now=long_ago)
    expired = run_imagegate("certs", "--out", str(tmp_path / "old"), "--renew")
    assert expired.returncode == 2
    _one_error_line(expired.stderr, "expired on", "new CA", "caBundle")
    make_certificates(tmp_path / "ending", ["imagegate"], days=1, ca_days=30)
    ending = run_imagegate("certs", "--out", str(tmp_path / "ending"), "--renew", "--days", "60")
    assert ending.returncode == 2
    _one_error_line(ending.stderr, "cannot outlive its CA", "days left")
    fits = run_imagegate("certs", "--out", str(tmp_path / "ending"), "--renew", "--days", "20")
    assert fits.returncode == 0, fits.stderr
    ca = x509.load_pem_x509_certificate((tmp_path / "ending" / "ca.crt").read_bytes())
    leaf = x509.load_pem_x509_certificate((tmp_path / "ending" / "tls.crt").read_bytes())
    assert leaf.not_valid_after_utc <= ca.not_valid_after_utc


def test_certs_names_are_valid_dns_names(tmp_path: Path) -> None:
    result = run_imagegate("certs", "--out", str(tmp_path / "tls"), "--service", "gate", "--namespace", "tool-x")
    assert result.returncode == 0, result.stderr
    leaf = x509.load_pem_x509_certificate((tmp_path / "tls" / "tls.crt").read_bytes())
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert names == ["gate", "gate.tool-x", "gate.tool-x.svc", "gate.tool-x.svc.cluster.local"]


def test_certs_renew_keeps_the_names(tmp_path: Path) -> None:
    out = str(tmp_path / "tls")
    assert run_imagegate("certs", "--out", out, "--service", "gate", "--namespace", "tool-x").returncode == 0
    renewed = run_imagegate("certs", "--out", out, "--renew")
    assert renewed.returncode == 0, renewed.stderr
    leaf = x509.load_pem_x509_certificate((tmp_path / "tls" / "tls.crt").read_bytes())
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName)[:2] == ["gate", "gate.tool-x"]
    assert "kubectl -n tool-x create secret tls" in renewed.stderr


# --- serve (item 4) -----------------------------------------------------------------------


def _serve_fails(*args: str) -> subprocess.CompletedProcess[str]:
    return run_imagegate("serve", *args, timeout=60)


def test_serve_certificate_problems(tmp_path: Path) -> None:
    one = make_certificates(tmp_path / "one", ["localhost"])
    other = make_certificates(tmp_path / "other", ["localhost"])
    port = str(free_port())
    missing = _serve_fails("--port", port, "--tls-cert", str(tmp_path / "nope.crt"), "--tls-key", str(one.key))
    assert missing.returncode == 2
    _one_error_line(missing.stderr, "nope.crt", "does not exist")
    mismatched = _serve_fails("--port", port, "--tls-cert", str(one.cert), "--tls-key", str(other.key))
    assert mismatched.returncode == 2
    _one_error_line(mismatched.stderr, "does not belong to", str(one.cert))
    not_a_key = _serve_fails("--port", port, "--tls-cert", str(one.cert), "--tls-key", str(one.cert))
    assert not_a_key.returncode == 2
    _one_error_line(not_a_key.stderr, "not a PEM private key")
    only_one = _serve_fails("--port", port, "--tls-cert", str(one.cert))
    assert only_one.returncode == 2
    _one_error_line(only_one.stderr, "--tls-cert and --tls-key")


def test_serve_port_in_use_and_address_not_here(tmp_path: Path) -> None:
    tls = make_certificates(tmp_path / "tls", ["localhost"])
    pair = ("--tls-cert", str(tls.cert), "--tls-key", str(tls.key))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        in_use = _serve_fails("--port", port, *pair)
        assert in_use.returncode == 2
        _one_error_line(in_use.stderr, f"port {port}", "in use")
        with_workers = _serve_fails("--port", port, "--workers", "2", *pair)
        assert with_workers.returncode == 2
        _one_error_line(with_workers.stderr, "in use")
    elsewhere = _serve_fails("--host", "192.0.2.1", "--port", port, *pair)  # TEST-NET-1: never ours
    assert elsewhere.returncode == 2
    _one_error_line(elsewhere.stderr, "192.0.2.1", "not an address of this host")
    name = _serve_fails("--host", "no-such-host.invalid", "--port", port, *pair)  # never looked up in DNS
    assert name.returncode == 2
    _one_error_line(name.stderr, "'no-such-host.invalid' is not an IP address")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--log-level", "loud"], "--log-level"),
        (["--port", "70000"], "--port"),
        (["--port", "0"], "--port"),
        (["--max-body-bytes", "-1"], "--max-body-bytes"),
        (["--workers", "0"], "--workers"),
    ],
)
def test_serve_bad_option_values(args: list[str], fragment: str) -> None:
    result = _serve_fails(*args)
    assert result.returncode == 2
    _one_error_line(result.stderr, fragment)


def test_serve_unusable_dev_cert_dir(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    port = str(free_port())
    for directory in ("afile", "afile/below"):
        result = _serve_fails("--port", port, "--dev-cert-dir", str(tmp_path / directory))
        assert result.returncode == 2
        _one_error_line(result.stderr, "--dev-cert-dir", str(tmp_path / "afile"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "ca.crt").write_text("not a certificate")
    (broken / "ca.key").write_text("not a key")
    result = _serve_fails("--port", port, "--dev-cert-dir", str(broken))
    assert result.returncode == 2
    _one_error_line(result.stderr, "not a PEM certificate", f"remove {broken}")


@contextmanager
def _dev_server(tmp_path: Path, *args: str) -> Iterator[tuple[str, int]]:
    """``imagegate serve`` with a development certificate; yields (its stderr so far, port)."""
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = start(
            [
                sys.executable,
                "-m",
                "imagegate",
                "serve",
                "--port",
                str(port),
                "--dev-cert-dir",
                str(tmp_path / "dev"),
                *args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "80"},
        )
    try:
        deadline = time.monotonic() + 30
        while '"serving"' not in log.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            time.sleep(0.1)
        yield log.read_text(), port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_dev_certificate_hint_says_what_is_true(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with _dev_server(tmp_path) as (text, port):
        assert f"listening on https://127.0.0.1:{port}: loopback, so only this machine can connect" in text
        assert "development certificate for localhost, 127.0.0.1, signed by a new development CA" in text
        assert f"clientConfig.url: https://127.0.0.1:{port}/validate" in text
        assert "<this host>" not in text
        bundle = next(line for line in text.splitlines() if "clientConfig.caBundle:" in line).split()[-1]
        ca = tmp_path / "dev" / "ca.crt"
        assert base64.b64decode(bundle) == ca.read_bytes()
        answer = httpx.get(f"https://127.0.0.1:{port}/healthz", verify=ssl.create_default_context(cafile=ca))
        assert answer.status_code == 200  # the certificate really covers the URL the hint gives
    # A wildcard address, in process (tests listen on loopback only): the same function serve calls.
    _dev_certificate(tmp_path / "dev", "0.0.0.0", 8443)
    text = capsys.readouterr().err
    assert "port 8443 of every address of this host" in text and "names only localhost, 127.0.0.1" in text
    assert "signed by the development CA kept" in text  # a restart keeps the caBundle
    assert next(line for line in text.splitlines() if "clientConfig.caBundle:" in line).split()[-1] == bundle


# --- logs (item 7's colours) --------------------------------------------------------------


def test_console_logs_carry_no_colour_codes_off_a_terminal(tmp_path: Path) -> None:
    with run_webhook(tmp_path, "--log-format", "console") as webhook:
        assert webhook.client().get("/healthz").status_code == 200
        logs = webhook.logs()
    assert "imagegate ready" in logs
    assert "\x1b[" not in logs


# --- metrics (item 12) --------------------------------------------------------------------


def test_namespace_labels_only_when_asked_for(tmp_path: Path) -> None:
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u1",
            "operation": "CREATE",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},  # as the API server sends it
            "namespace": "tool-a",
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "spec": {"containers": [{"name": "c", "image": "evil.example/x:1"}]},
            },
        },
    }
    with run_webhook(tmp_path, "--metrics-per-namespace") as webhook:
        webhook.client().post("/validate", json=review)
        metrics = webhook.client().get("/metrics").text
    assert 'imagegate_decisions_total{endpoint="validate",namespace="tool-a",result="denied"} 1.0' in metrics
    assert 'imagegate_findings_total{mode="enforce",namespace="tool-a",rule="untrusted-registry"} 1.0' in metrics


# --- help and printed commands at 80 columns (item 13) ------------------------------------


COMMANDS = [
    ["check"],
    ["inspect"],
    ["serve"],
    ["certs"],
    ["audit"],
    ["layers"],
    ["scan"],
    ["sbom"],
    ["bases"],
    ["grants", "add"],
    ["grants", "renew"],
    ["grants", "revoke"],
    ["grants", "list"],
    ["grants", "expiring"],
    ["grants", "check"],
    ["policy", "validate"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_at_80_columns_shows_every_option_name_whole(command: list[str]) -> None:
    click_command = typer.main.get_command(app)
    for name in command:
        click_command = click_command.commands[name]  # type: ignore[attr-defined]
    names = [
        opt for param in click_command.params for opt in (*param.opts, *param.secondary_opts) if opt.startswith("-")
    ]
    result = run_imagegate(*command, "--help", columns=80)
    assert result.returncode == 0, result.stderr
    assert "…" not in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    words = set(result.stdout.replace(",", " ").split())
    for name in names:
        assert name in words, f"{name} cut short in:\n{result.stdout}"


def test_printed_commands_are_never_wrapped(tmp_path: Path) -> None:
    out = tmp_path / "a-rather-long-directory-name-for-the-certificates" / "imagegate-tls"
    result = run_imagegate("certs", "--out", str(out), columns=80)
    assert result.returncode == 0, result.stderr
    (command,) = [line for line in result.stderr.splitlines() if "kubectl" in line]
    assert command == (
        f"kubectl -n imagegate create secret tls imagegate-tls --cert={out / 'tls.crt'} --key={out / 'tls.key'} "
        "--dry-run=client -o yaml | kubectl apply -f -"
    )


def test_print_configmap_is_yaml_a_reviewer_reads(tmp_path: Path) -> None:
    grants = tmp_path / "grants.yaml"
    result = run_imagegate(
        "grants",
        "add",
        "tool-a",
        "-g",
        str(grants),
        "--expires",
        "2099-12-31",
        "--reason",
        "needs its own image: a long reason that would have been an escaped one-line string before",
        "--create",  # a new grants file
        "--print-configmap",
        "imagegate/imagegate-grants",
        columns=80,
    )
    assert result.returncode == 0, result.stderr
    assert "  grants.yaml: |" in result.stdout and "\\n" not in result.stdout
    assert "\n    - namespace: tool-a\n" in result.stdout  # the grants file, line for line
    configmap = yaml.safe_load(result.stdout)
    assert configmap["data"] == {"grants.yaml": grants.read_text()}  # the same data, exactly


@given(st.text(), st.text(min_size=1))
def test_configmap_yaml_round_trips_any_text(text: str, name: str) -> None:
    printed = grants_configmap_yaml(text, name, "imagegate")
    assert yaml.safe_load(printed)["data"] == {"grants.yaml": text}
    assert yaml.safe_load(printed)["metadata"] == {"name": name, "namespace": "imagegate"}


# --- option-parser errors (issue 23 item 8) ----------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--bogus"], ["No such option: --bogus", "imagegate --help"]),
        (["grants", "lst"], ["No such command 'lst'", "grants --help"]),
        (["grants", "expiring", "--days", "x"], ["--days", "integer", "grants expiring --help"]),
        (["grants", "expiring", "--days", "-5"], ["--days", "greater than or equal to 0"]),
        (["grants", "list", "--expiring-days", "-1"], ["--expiring-days", "greater than or equal to 0"]),
        (["audit", "--expiring-days", "-3"], ["--expiring-days", "greater than or equal to 0"]),
        (["grants", "add"], ["Missing argument 'namespace'"]),
        (["check", "-o", "xml", "examples"], ["--output", "'xml'"]),
    ],
)
def test_option_parser_errors_are_one_error_line(args: list[str], fragments: list[str]) -> None:
    """click's usage box (usage, a hint, a blank line, the error) becomes one ``error:`` line, exit 2."""
    result = run_imagegate(*args)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    _one_error_line(result.stderr, *fragments)
    assert result.stdout == ""


def test_a_bare_command_group_still_shows_its_help() -> None:
    result = run_imagegate("grants")
    assert result.returncode == 2
    assert "Commands:" in result.stdout + result.stderr and "revoke" in result.stdout + result.stderr


# --- a bug is not bad input ---------------------------------------------------------------

_EXPLODING = """
import imagegate.shell.cli.main as cli

@cli.app.command("explode")
def explode() -> None:
    {}["missing"]

cli.main()
"""


def test_a_bug_is_one_line_and_its_own_exit_code() -> None:
    env = cli_env()
    plain = subprocess.run(
        [sys.executable, "-c", _EXPLODING, "explode"], capture_output=True, text=True, env=env, check=False
    )
    assert plain.returncode == 70
    assert "Traceback" not in plain.stderr
    (line,) = plain.stderr.splitlines()
    assert "internal error" in line and "KeyError" in line and "explode" in line and "--debug" in line
    debug = subprocess.run(
        [sys.executable, "-c", _EXPLODING, "--debug", "explode"], capture_output=True, text=True, env=env, check=False
    )
    assert debug.returncode == 70
    assert "Traceback" in debug.stderr and "KeyError" in debug.stderr.splitlines()[-1]


@pytest.mark.parametrize("command", [["audit"], ["reports", "--metrics-port", "0"]])
def test_a_cluster_that_does_not_answer_is_one_line_and_exit_2(command: list[str], tmp_path: Path) -> None:
    """lightkube 1.0 raises httpx2's errors (not httpx's) when nothing answers: said, never a 'bug' (70)."""
    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{free_port()}', insecure-skip-tls-verify: true}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n"
    )
    done = run_imagegate(*command, timeout=60, env=cli_env(KUBECONFIG=str(config)))
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no answer from the API server" in errors[0], done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr
