"""The serving process: the listening socket, the event loop and, with ``--workers``, the worker processes.

``run_server`` serves until SIGTERM/SIGINT: one process, or a parent that starts one worker
process per core (each binds the port with SO_REUSEPORT and runs its own ``WebhookApp``),
forwards the stop signal and stops them all when one dies. A worker stops too when the parent
dies without a word (SIGKILL, the OOM killer): it would otherwise keep serving on the port.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile

import uvloop
from prometheus_client import multiprocess

from imagegate.core.admission import SIZE_CHECK_BYTES
from imagegate.shell.exits import EXIT_BAD_INPUT, EXIT_INTERNAL_ERROR
from imagegate.shell.logs import configure_logging, get_logger
from imagegate.shell.parent_death import end_with_parent
from imagegate.shell.policy_source import PolicySource
from imagegate.shell.webhook.app import WebhookApp
from imagegate.shell.webhook.http import HttpServer, Limits, server_ssl_context
from imagegate.shell.webhook.listen import ListenError, listening_socket
from imagegate.shell.webhook.metrics import MULTIPROCESS_ENV
from imagegate.shell.webhook.settings import ServerSettings

__all__ = ["run_server", "serve_worker"]

log = get_logger("imagegate.server")


async def _serve(app: WebhookApp, settings: ServerSettings, sock: socket.socket | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    tls_context = None
    if settings.tls_cert is not None and settings.tls_key is not None:
        tls_context = server_ssl_context(str(settings.tls_cert), str(settings.tls_key))
    if sock is None:
        sock = listening_socket(settings.host, settings.port, shared=settings.workers > 1)
    await app.startup(tls_context)
    # A review big enough to be counted before it is decoded is also decided in the heavy lane.
    limits = Limits(
        max_body_bytes=settings.max_body_bytes,
        request_timeout=settings.request_timeout,
        heavy_body_bytes=SIZE_CHECK_BYTES,
    )
    log.info("serving", url=f"https://{settings.host}:{settings.port}", workers=settings.workers)
    try:
        await HttpServer(app, limits, tls_context).serve(sock, stop, grace=settings.shutdown_grace)
    finally:
        await app.shutdown()


def serve_worker(settings: ServerSettings, sock: socket.socket | None = None) -> None:
    """One server process: its own policy watcher, TLS reloader and event loop."""
    configure_logging(settings.log_level, json=settings.log_json)
    source = PolicySource(
        settings.policy_path, settings.grants_path, strict=False, identities_path=settings.identities_path
    )
    app = WebhookApp(settings, source)
    source.on_reload = app.on_policy_reload  # the app counts reloads in its metrics
    uvloop.run(_serve(app, settings, sock))


def _worker_process(settings: ServerSettings, parent: int) -> None:
    """A worker's entry point: its failure is one log line and an exit status, not a traceback on stderr.

    First it asks to be sent SIGTERM (its graceful stop) when ``parent`` dies: a parent killed
    outright forwards no signal, and the worker would keep the port (SO_REUSEPORT) and serve on.
    """
    configure_logging(settings.log_level, json=settings.log_json)  # before its first line may be logged
    try:
        end_with_parent(parent)
    except OSError as exc:  # a sandbox that forbids prctl: serve, as without the safeguard
        log.warning("a worker cannot ask to end with its parent", error=str(exc))
    try:
        serve_worker(settings)
    except ListenError as exc:
        log.error("cannot listen", error=str(exc))
        sys.exit(EXIT_BAD_INPUT)
    except Exception:
        log.exception("internal error in a worker; stopping")
        sys.exit(EXIT_INTERNAL_ERROR)


def run_server(settings: ServerSettings) -> int:
    """Serve until SIGTERM/SIGINT; in-flight requests finish (graceful shutdown).

    With ``workers > 1`` the parent starts that many worker processes, forwards the stop
    signal to them and exits when they have; if one dies, the others are stopped and
    the exit status is non-zero, so the kubelet restarts the pod whole.
    """
    if settings.workers <= 1:
        # Bound here, before anything else starts: a port in use is a ListenError for the caller.
        serve_worker(settings, listening_socket(settings.host, settings.port, shared=False))
        return 0
    metrics_dir = tempfile.mkdtemp(prefix="imagegate-metrics-")
    os.environ[MULTIPROCESS_ENV] = metrics_dir  # inherited by the spawned workers
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_worker_process, args=(settings, os.getpid()), name=f"imagegate-worker-{n}")
        for n in range(settings.workers)
    ]
    for worker in workers:
        worker.start()
    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.pid is not None and worker.is_alive():
                os.kill(worker.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    try:
        while any(worker.is_alive() for worker in workers):
            for worker in workers:
                worker.join(timeout=0.5)
                if not worker.is_alive() and not stopping:
                    print(f"imagegate: {worker.name} exited ({worker.exitcode}); stopping", file=sys.stderr)
                    status = 1
                    forward(signal.SIGTERM, None)
    finally:
        for worker in workers:
            if worker.pid is not None:
                multiprocess.mark_process_dead(worker.pid, metrics_dir)  # type: ignore[no-untyped-call]
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return status
