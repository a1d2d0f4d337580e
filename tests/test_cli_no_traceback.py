"""No traceback ever reaches the user (issue 14's acceptance), whatever the options and files.

Hypothesis feeds ``check``, ``policy validate``, ``grants``, ``certs`` and ``serve`` option
values and files of any shape (bytes, text, YAML and JSON documents, near-valid policies
with one value changed, directories where files go, missing paths) through the real
command. Every run must end with 0, 1 or 2 and no traceback; exit 2 (bad input) with one
``error:`` line. Exit 70 (an internal error) fails the test: it is a bug to fix.

Each example is a real process, so the example counts are small; each run still tries
about 70 shapes, different ones every run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagegate.shell.builtin_policy import DEFAULT_POLICY_YAML
from tests.conftest import run_imagegate
from tests.loopback import free_port
from tests.processes import start

EXAMPLES = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)

# What argv can carry: no NUL, no lone surrogates.
argument = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=30)
KEYS = [
    "apiVersion",
    "kind",
    "mode",
    "trusted",
    "blocked",
    "byoc",
    "default",
    "grants",
    "grantsFile",
    "namespace",
    "expires",
    "registries",
    "requireBaseImage",
    "namespaces",
    "include",
    "exclude",
    "podSecurity",
    "level",
    "version",
    "registry",
    "platforms",
    "caFile",
    "credentialsFile",
    "timeoutSeconds",
    "onError",
    "baseImages",
    "identities",
    "spec",
    "containers",
    "image",
    "metadata",
    "items",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    argument,
    st.sampled_from(["imagegate.toolforge.org/v1", "ImagePolicy", "ImageGrants", "Pod", "List", "2020-01-01", "*"]),
)
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS) | argument, inner, max_size=4),
    max_leaves=12,
)
DEFAULT_POLICY = yaml.safe_load(DEFAULT_POLICY_YAML)


@st.composite
def near_valid_policy(draw: st.DrawFn) -> str:
    """The built-in policy with one top-level value replaced by anything."""
    policy = dict(DEFAULT_POLICY)
    policy[draw(st.sampled_from(sorted(policy)))] = draw(documents)
    return yaml.safe_dump(policy)


def _dump(value: Any, as_json: bool) -> str:
    return json.dumps(value) if as_json else yaml.safe_dump(value)


file_contents = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300),
    st.builds(_dump, documents, st.booleans()),
    near_valid_policy(),
)


def _write(directory: Path, name: str, content: str | bytes | None) -> str:
    """A path for an option: a file with ``content``, a directory (None), or nothing there ("")."""
    path = directory / name
    if content is None:
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content:
        path.write_text(content, errors="surrogateescape")
    return str(path)


path_contents = st.one_of(file_contents, st.none(), st.just(""))


def assert_told_not_crashed(result: subprocess.CompletedProcess[str]) -> None:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode in (0, 1, 2), f"exit {result.returncode}: {result.stderr}"
    if result.returncode == 2:
        errors = [line for line in result.stderr.splitlines() if line.startswith(("error:", "Error:"))]
        assert len(errors) == 1, result.stderr


@EXAMPLES
@given(
    manifest=path_contents,
    policy=st.one_of(st.none(), path_contents),
    namespace=argument,
    now=st.one_of(st.none(), argument, st.sampled_from(["2030-01-01", "2030-01-01T00:00:00+05:00"])),
    output=st.sampled_from(["table", "json", "yaml"]),
)
def test_check(manifest: Any, policy: Any, namespace: str, now: str | None, output: str) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        here = Path(scratch)
        args = ["check", _write(here, "manifest.yaml", manifest), "-n", namespace, "-o", output]
        if policy is not None:
            args += ["-p", _write(here, "policy.yaml", policy)]
        if now is not None:
            args += ["--now", now]
        assert_told_not_crashed(run_imagegate(*args))


@EXAMPLES
@given(policy=path_contents, grants=st.one_of(st.none(), path_contents))
def test_policy_validate(policy: Any, grants: Any) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        here = Path(scratch)
        args = ["policy", "validate", "-p", _write(here, "policy.yaml", policy)]
        if grants is not None:
            args += ["-g", _write(here, "grants.yaml", grants)]
        assert_told_not_crashed(run_imagegate(*args))


@EXAMPLES
@given(
    grants=path_contents,
    action=st.sampled_from(["add", "revoke", "renew", "list", "expiring", "check"]),
    namespace=argument,
    expires=st.one_of(st.none(), argument, st.sampled_from(["2031-02-03", "1999-01-01"])),
    registry=st.one_of(st.none(), argument),
    days=st.one_of(st.none(), argument, st.integers().map(str)),
    print_configmap=st.one_of(st.none(), argument, st.just("imagegate/grants")),
)
def test_grants(
    grants: Any,
    action: str,
    namespace: str,
    expires: str | None,
    registry: str | None,
    days: str | None,
    print_configmap: str | None,
) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        args = ["grants", action, "-g", _write(Path(scratch), "grants.yaml", grants)]
        if action in ("add", "revoke", "renew"):
            args.insert(2, namespace)
            args += ["--by", "tester"]
            if print_configmap is not None:
                args += ["--print-configmap", print_configmap]
        if action == "revoke":
            args += ["--reason", registry or ""]
        if action in ("add", "renew"):
            args += [*(["--expires", expires] if expires is not None else [])]
        if action == "add":
            args += [*(["--registry", registry] if registry is not None else [])]
        if action == "expiring" and days is not None:
            args += ["--days", days]
        if action == "check":
            args += ["--from", _write(Path(scratch), "namespaces.json", registry)]
        assert_told_not_crashed(run_imagegate(*args))


@EXAMPLES
@given(
    ca_cert=st.one_of(st.just(""), file_contents),
    ca_key=st.one_of(st.just(""), file_contents),
    out_is_file=st.booleans(),
    service=st.one_of(argument, st.just("imagegate")),
    namespace=st.one_of(argument, st.just("tool-a")),
    days=st.one_of(argument, st.integers(min_value=-(10**6), max_value=10**7).map(str)),
    ca_days=st.one_of(st.none(), st.integers(min_value=-5, max_value=10**6).map(str)),
    renew=st.booleans(),
)
def test_certs(
    ca_cert: Any,
    ca_key: Any,
    out_is_file: bool,
    service: str,
    namespace: str,
    days: str,
    ca_days: str | None,
    renew: bool,
) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "tls"
        if out_is_file:
            out.write_text("x")
        else:
            out.mkdir()
            _write(out, "ca.crt", ca_cert)
            _write(out, "ca.key", ca_key)
        args = ["certs", "--out", str(out), "--service", service, "--namespace", namespace, "--days", days]
        args += [*(["--ca-days", ca_days] if ca_days is not None else []), *(["--renew"] if renew else [])]
        assert_told_not_crashed(run_imagegate(*args))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cert=st.one_of(st.none(), path_contents),
    key=st.one_of(st.none(), path_contents),
    dev_dir=st.one_of(st.none(), path_contents),
    host=st.one_of(st.sampled_from(["127.0.0.1", "::1", "localhost", "192.0.2.1", "[::1]"]), argument),
    port=st.one_of(st.just("free"), argument, st.integers(min_value=-5, max_value=70000).map(str)),
    log_level=st.one_of(st.sampled_from(["debug", "warning"]), argument),
    log_format=st.sampled_from(["json", "console", "xml"]),
    max_body=st.one_of(st.none(), argument, st.integers().map(str)),
    workers=st.one_of(st.none(), st.sampled_from(["0", "1", "2", "-1", "x"])),
    policy=st.one_of(st.none(), path_contents),
)
def test_serve(
    cert: Any,
    key: Any,
    dev_dir: Any,
    host: str,
    port: str,
    log_level: str,
    log_format: str,
    max_body: str | None,
    workers: str | None,
    policy: Any,
) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        here = Path(scratch)
        args = ["serve", "--host", host, "--port", str(free_port()) if port == "free" else port]
        args += ["--log-level", log_level, "--log-format", log_format]
        if cert is not None:
            args += ["--tls-cert", _write(here, "tls.crt", cert)]
        if key is not None:
            args += ["--tls-key", _write(here, "tls.key", key)]
        args += ["--dev-cert-dir", _write(here, "dev", dev_dir) if dev_dir is not None else str(here / "dev-new")]
        if max_body is not None:
            args += ["--max-body-bytes", max_body]
        if workers is not None:
            args += ["--workers", workers]
        if policy is not None:
            args += ["-p", _write(here, "policy.yaml", policy)]
        process = start(
            [sys.executable, "-m", "imagegate", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={"COLUMNS": "200", "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )
        try:
            stdout, stderr = process.communicate(timeout=8)
        except subprocess.TimeoutExpired:  # it started serving: the input was good; stop it
            process.send_signal(signal.SIGTERM)
            stdout, stderr = process.communicate(timeout=30)
            assert process.returncode == 0, stderr
        assert_told_not_crashed(subprocess.CompletedProcess(args, process.returncode, stdout, stderr))
