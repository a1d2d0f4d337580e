"""A server that answers every request with a fixed allow, for ``server_bench.py``.

Usage: ``python bench/fixed_response.py imagegate|uvicorn|granian CERT KEY PORT``. ``imagegate``
runs imagegate's own HTTP protocol (``imagegate.shell.webhook.http``) with a handler that returns the
fixed response; ``uvicorn`` runs uvicorn (httptools, uvloop) with a raw ASGI app doing the
same; ``granian`` runs granian (Rust: hyper and rustls) with a raw RSGI app, one worker.
All read the whole request body, as the webhook must.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import uvloop

from imagegate.shell.webhook.http import HttpServer, Limits, Request, Response, server_ssl_context

BODY = b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"fixed","allowed":true}}'
FIXED = Response(200, BODY, b"application/json")


def fixed(_request: Request) -> Response:
    return FIXED


async def serve_imagegate(cert: str, key: str, port: int) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    sock.setblocking(False)
    limits = Limits(max_body_bytes=8 << 20, request_timeout=10)
    await HttpServer(fixed, limits, server_ssl_context(cert, key)).serve(sock, stop)


async def asgi_app(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
    send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


async def rsgi_app(_scope: Any, protocol: Any) -> None:
    await protocol()  # the whole body
    protocol.response_bytes(200, [("content-type", "application/json")], BODY)


def main() -> None:
    if len(sys.argv) < 5 or "--help" in sys.argv:
        sys.exit("usage: python bench/fixed_response.py STACK CERT KEY PORT (started by bench/server_bench.py)")
    stack, cert, key, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    if stack == "imagegate":
        uvloop.run(serve_imagegate(cert, key, port))
    elif stack == "granian":
        from granian import Granian  # noqa: PLC0415 (optional: only this comparison needs it)

        sys.path.insert(0, str(Path(__file__).resolve().parent))  # for the worker to import this file
        Granian(
            "fixed_response:rsgi_app",
            interface="rsgi",
            port=port,
            http="1",
            ssl_cert=Path(cert),
            ssl_key=Path(key),
            ssl_protocol_min="tls1.2",
            log_level="warning",
        ).serve()
    else:
        import uvicorn  # noqa: PLC0415 (optional: only this comparison needs it)

        uvicorn.run(
            asgi_app,
            host="127.0.0.1",
            port=port,
            ssl_certfile=cert,
            ssl_keyfile=key,
            http="httptools",
            loop="uvloop",
            access_log=False,
            log_level="warning",
        )


if __name__ == "__main__":
    main()
