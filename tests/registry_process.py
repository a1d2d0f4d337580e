"""Real registries for the tests: Debian's docker-registry (CNCF distribution) on loopback.

Free of pytest: bench/ uses it after ``pip install '.[bench]'``.

``run_registry`` starts one with TLS and either htpasswd Basic auth or token auth; the
token server here signs JWTs (ES256, ``x5c`` chain) with a key the registry trusts through
``rootcertbundle``, so the registry itself enforces the token. ``FaultServer`` is a real
HTTPS server that misbehaves on purpose (slow, 500, 429, wrong digest, huge, redirect loop).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import json
import shutil
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from imagegate.shell.webhook.certs import CertificateFiles, load_ca, make_certificates
from tests.loopback import free_port
from tests.oci_images import Layer, OciLayout, skopeo_copy
from tests.processes import start

USER, PASSWORD = "tool-builder", "s3cret-pass"
SERVICE, ISSUER = "imagegate-test-registry", "imagegate-test-token-issuer"
# The registry section's time limits for a test whose subject is not time: the defaults (2.5 s a
# request, 4 s a lookup) are for production; a registry on a machine busy with the suite's
# workers can take longer, and a timeout there would fail a test of signatures or bases.
UNHURRIED_REQUEST, UNHURRIED_LOOKUP = 10.0, 25.0
UNHURRIED = f"timeoutSeconds: {UNHURRIED_REQUEST:g}, lookupTimeoutSeconds: {UNHURRIED_LOOKUP:g}"
# the same for a RegistryClient a test makes itself: RegistrySettings(**UNHURRIED_CLIENT)
UNHURRIED_CLIENT: dict[str, Any] = {"timeout": UNHURRIED_REQUEST, "lookup_timeout": UNHURRIED_LOOKUP}

# A timeout a test reaches by moving a SteppedLoop's clock, never by waiting: long enough that
# real time never gets there first, however loaded the machine.
STALL_TIMEOUT = 30.0


class SteppedLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock a test moves on, from any thread: a deadline ends when the test
    says (a stalled registry has the request), not when a loaded machine happens to reach it,
    perhaps before the request was even sent."""

    def __init__(self) -> None:
        super().__init__()
        self._ahead = 0.0

    def time(self) -> float:
        return super().time() + self._ahead

    def step(self, seconds: float) -> None:
        """Move the clock ``seconds`` on (the loop wakes and runs what is due then)."""

        def moved() -> None:
            self._ahead += seconds

        self.call_soon_threadsafe(moved)


@dataclass
class Registry:
    host: str  # 127.0.0.1:port
    tls: CertificateFiles
    cert_dir: Path  # for skopeo: holds ca.crt
    process: subprocess.Popen[bytes]
    log: Path
    token_requests: list[str]
    token_answer: dict[str, Any]  # fields the token server adds to (or puts in place of) its answer

    @property
    def credentials(self) -> str:
        return f"{USER}:{PASSWORD}"

    def docker_config(self, path: Path) -> Path:
        auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        path.write_text(json.dumps({"auths": {self.host: {"auth": auth}}}))
        return path

    def push(self, layout: OciLayout, name: str, image_layers: list[Layer], dest: str, **options: Any) -> None:
        """Write an image into ``layout`` as ``name`` and push it to ``dest`` here with skopeo."""
        annotations = options.pop("annotations", None)
        created = options.pop("created", None)
        layout.tag(layout.image(image_layers, annotations=annotations, created=created), name)
        skopeo_copy(
            layout.root, name, f"{self.host}/{dest}", cert_dir=self.cert_dir, credentials=self.credentials, **options
        )

    def put_manifest(self, repository: str, tag: str, body: bytes, media_type: str) -> None:
        """Tag an existing manifest (a registry API call, with Basic auth)."""
        response = httpx.put(
            f"https://{self.host}/v2/{repository}/manifests/{tag}",
            content=body,
            headers={"Content-Type": media_type},
            auth=(USER, PASSWORD),
            verify=ssl.create_default_context(cafile=self.tls.ca_cert),
        )
        response.raise_for_status()

    def get_manifest(self, repository: str, reference: str) -> Any:
        """A manifest or index as JSON, or None when there is none (HTTP 404)."""
        response = httpx.get(
            f"https://{self.host}/v2/{repository}/manifests/{reference}",
            headers={"Accept": "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"},
            auth=(USER, PASSWORD),
            verify=ssl.create_default_context(cafile=self.tls.ca_cert),
        )
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def put_blob(self, repository: str, data: bytes) -> dict[str, Any]:
        """Upload a blob (monolithic upload, with Basic auth); returns its descriptor (no media type)."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        verify = ssl.create_default_context(cafile=self.tls.ca_cert)
        # a blob is sent in one write: the bench's 500 MB layer takes longer than httpx's 5 s default
        timeout = httpx.Timeout(5, write=300)
        with httpx.Client(auth=(USER, PASSWORD), verify=verify, timeout=timeout) as http:
            started = http.post(f"https://{self.host}/v2/{repository}/blobs/uploads/")
            started.raise_for_status()
            location = started.headers["Location"]
            if location.startswith("/"):
                location = f"https://{self.host}{location}"
            joiner = "&" if "?" in location else "?"  # the location carries the upload's state
            http.put(f"{location}{joiner}digest={digest}", content=data).raise_for_status()
        return {"digest": digest, "size": len(data)}


class _TokenHandler(BaseHTTPRequestHandler):
    key: Any
    chain: list[str]
    requests: list[str]
    answer: dict[str, Any]

    def log_message(self, *_args: object) -> None:
        pass

    def do_GET(self) -> None:
        query = parse_qs(urlparse(self.path).query)
        self.requests.append(self.path)
        header = self.headers.get("Authorization", "")
        user = ""
        if header.startswith("Basic "):
            name, _, password = base64.b64decode(header[6:]).decode().partition(":")
            if (name, password) != (USER, PASSWORD):
                self.send_response(401)
                self.end_headers()
                return
            user = name
        access = []
        for scope in query.get("scope", []):
            kind, name, actions = scope.split(":")
            allowed = actions.split(",") if user else []  # anonymous: no access
            access.append({"type": kind, "name": name, "actions": allowed})
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": user,
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": str(uuid.uuid4()),
            "access": access,
        }
        token = jwt.encode(claims, self.key, algorithm="ES256", headers={"x5c": self.chain})
        body = json.dumps({"token": token, "expires_in": 300, **self.answer}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def https_server(handler: type[BaseHTTPRequestHandler], tls: CertificateFiles) -> Iterator[str]:
    """A threaded HTTPS server on a free loopback port; yields host:port; always shut down."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.cert, tls.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def run_registry(workdir: Path, auth: str = "htpasswd") -> Iterator[Registry]:
    """docker-registry on 127.0.0.1 with TLS and ``auth`` (htpasswd | token | none)."""
    binary = shutil.which("docker-registry")
    if binary is None:
        raise RuntimeError("docker-registry is not installed (apt-get install docker-registry)")
    workdir.mkdir(parents=True, exist_ok=True)
    tls = make_certificates(workdir / "tls", ["127.0.0.1", "localhost"])
    cert_dir = workdir / "certs.d"
    cert_dir.mkdir(exist_ok=True)
    shutil.copy(tls.ca_cert, cert_dir / "ca.crt")
    port = free_port()
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(workdir / "data")}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "tls": {"certificate": str(tls.cert), "key": str(tls.key)}},
    }
    token_requests: list[str] = []
    token_answer: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        if auth == "htpasswd":
            htpasswd = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], check=True, capture_output=True, text=True)
            (workdir / "htpasswd").write_text(htpasswd.stdout)
            config["auth"] = {"htpasswd": {"realm": "imagegate-test", "path": str(workdir / "htpasswd")}}
        elif auth == "token":
            signer = make_certificates(workdir / "token-signer", ["token-signer"], ca=load_ca(workdir / "tls"))
            key = serialization.load_pem_private_key(signer.key.read_bytes(), password=None)
            der = x509.load_pem_x509_certificate(signer.cert.read_bytes()).public_bytes(serialization.Encoding.DER)
            handler = type(
                "TokenHandler",
                (_TokenHandler,),
                {
                    "key": key,
                    "chain": [base64.b64encode(der).decode()],
                    "requests": token_requests,
                    "answer": token_answer,
                },
            )
            token_host = stack.enter_context(https_server(handler, tls))
            config["auth"] = {
                "token": {
                    "realm": f"https://{token_host}/token",
                    "service": SERVICE,
                    "issuer": ISSUER,
                    "rootcertbundle": str(tls.ca_cert),
                }
            }
        (workdir / "config.yml").write_text(json.dumps(config))
        log = workdir / "registry.log"
        with log.open("wb") as out:
            process = start([binary, "serve", str(workdir / "config.yml")], stdout=out, stderr=subprocess.STDOUT)
        registry = Registry(f"127.0.0.1:{port}", tls, cert_dir, process, log, token_requests, token_answer)
        try:
            _wait(registry)
            yield registry
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait(registry: Registry, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    context = ssl.create_default_context(cafile=registry.tls.ca_cert)
    while time.monotonic() < deadline:
        if registry.process.poll() is not None:
            raise RuntimeError(f"docker-registry exited:\n{registry.log.read_text()}")
        try:
            httpx.get(f"https://{registry.host}/v2/", verify=context, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("docker-registry did not start")


# --- a registry that misbehaves on purpose ------------------------------------------------

Behaviour = Callable[[BaseHTTPRequestHandler], None]


def fault_handler(behaviour: Behaviour, hits: list[str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: object) -> None:
            pass

        def do_GET(self) -> None:
            hits.append(self.path)
            behaviour(self)

        do_HEAD = do_GET  # noqa: N815 (the name http.server looks up)

    return Handler


def reply(
    handler: BaseHTTPRequestHandler, status: int, body: bytes = b"", headers: dict[str, str] | None = None
) -> None:
    handler.send_response(status)
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
