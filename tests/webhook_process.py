"""Start ``imagegate serve`` as a real process on loopback, with real certificates."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from imagegate.shell.webhook.certs import CertificateFiles, make_certificates
from tests.conftest import admission_review
from tests.loopback import free_port
from tests.processes import start

# free_port lives in tests/loopback.py (free of pytest, for bench/); tests still import it from here.
__all__ = ["WebhookProcess", "free_port", "run_webhook", "validate_each"]


@dataclass
class WebhookProcess:
    process: subprocess.Popen[bytes]
    port: int
    tls: CertificateFiles
    log_path: Path
    clients: list[httpx.Client] = field(default_factory=list)
    command: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def client(self) -> httpx.Client:
        """A keep-alive client that trusts only our CA."""
        # The bound of a hung server, not of a slow answer: a review that asks a registry on a
        # machine busy with the suite's workers can take many seconds.
        client = httpx.Client(base_url=self.url, verify=ssl.create_default_context(cafile=self.tls.ca_cert), timeout=60)
        self.clients.append(client)
        return client

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def served_certificate(self) -> bytes:
        """The DER certificate a new TLS handshake gets."""
        context = ssl.create_default_context(cafile=self.tls.ca_cert)
        with (
            socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            der = tls.getpeercert(binary_form=True)
            assert der is not None
            return der

    def wait_ready(self, timeout: float = 60.0, expect_status: int = 200) -> None:
        # Ends as soon as /readyz answers; the bound is generous because a start on a loaded
        # machine (the suite's workers, a CI runner) can take many seconds, and costs nothing then.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"imagegate exited with {self.process.returncode}:\n{self.logs()}")
            try:
                context = ssl.create_default_context(cafile=self.tls.ca_cert)
                # A probe waits for its answer: one abandoned after a second and sent again would
                # pile handshakes on a server that a loaded machine already starves.
                status = httpx.get(
                    f"{self.url}/readyz", verify=context, timeout=max(1.0, deadline - time.monotonic())
                ).status_code
                if status == expect_status:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"imagegate not ready in {timeout}s:\n{self.logs()}")

    def restart(self) -> None:
        """After :meth:`stop`: the same command again, on the same port and certificate; its log appended."""
        assert self.process.poll() is not None, "stop it first"
        with self.log_path.open("ab") as log:
            self.process = start(self.command, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        self.wait_ready()

    def stop(self) -> int:
        for client in self.clients:
            client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@contextmanager
def run_webhook(
    workdir: Path,
    *args: str,
    policy: Path | None = None,
    grants: Path | None = None,
    expect_ready: int = 200,
    env: dict[str, str] | None = None,
    port: int | None = None,
    tls: CertificateFiles | None = None,
) -> Iterator[WebhookProcess]:
    """``imagegate serve`` on a free loopback port (or ``port``), serving ``tls`` (or a new CA's
    certificate for 127.0.0.1); always stopped on exit."""
    if tls is None:
        tls = make_certificates(workdir / "tls", ["localhost", "127.0.0.1"])
    port = port or free_port()
    command = [
        sys.executable,
        "-m",
        "imagegate",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--tls-cert",
        str(tls.cert),
        "--tls-key",
        str(tls.key),
        *(["--policy", str(policy)] if policy else []),
        *(["--grants", str(grants)] if grants else []),
        *args,
    ]
    log_path = workdir / "imagegate.log"
    environment = {**os.environ, **(env or {})}
    with log_path.open("wb") as log:
        process = start(command, stdout=log, stderr=subprocess.STDOUT, env=environment)
    webhook = WebhookProcess(process, port, tls, log_path, command=command, env=environment)
    try:
        webhook.wait_ready(expect_status=expect_ready)
        yield webhook
    finally:
        webhook.stop()


def validate_each(tmp_path: Path, policy: Path, objects: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    """Serve ``policy``, send each object to ``/validate`` in ``namespace``: the response for each key."""
    with run_webhook(tmp_path, policy=policy) as webhook:
        http = webhook.client()
        return {
            key: http.post("/validate", json=admission_review(obj, namespace)).json()["response"]
            for key, obj in objects.items()
        }
