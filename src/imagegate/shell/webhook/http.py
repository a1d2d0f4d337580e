"""The webhook's HTTP/1.1 server: an asyncio protocol on uvloop, parsed by httptools.

Why not an ASGI server. The webhook answers one kind of request, a POST of a few KB that
is decided in tens of microseconds, and it sits in the path of every pod creation. On the
benchmark machine (2 cores, TLS, keep-alive; ``bench/server_bench.py`` repeats this each
run) a fixed response from one process cost 23 µs of CPU per request with this protocol,
37 µs with granian (Rust, which answered more per second than this protocol did before it
batched its answers only by using a second thread) and 73 µs with uvicorn on the same
uvloop and httptools: uvicorn's ASGI layer (a scope dict, a task and two awaits per request)
cost more than a whole admission decision. Neither can swap a renewed certificate into a
running server.

What it does: HTTP/1.1 keep-alive and pipelining (answers in request order), HTTP/1.0,
``Expect: 100-continue``, chunked request bodies (httptools decodes them), ``HEAD``;
an ``Upgrade`` header is ignored and the connection closed after the answer.
Limits, each answered and then the connection closed (after up to ``LINGER_SECONDS`` of
reading and discarding, so the client can read the answer): a malformed request (400), a body
over ``max_body_bytes`` (413, from the Content-Length before reading it), headers over
``MAX_HEADER_BYTES`` (431), a request not received within ``request_timeout`` (408).
Idle keep-alive connections are closed after ``keep_alive_timeout``; a client that sends
without reading the answers is not read from until it catches up. What it does not do,
on purpose: HTTP/2, upgrades, streaming responses.

Handlers return a :class:`Response`, or an awaitable of one when they must wait (registry
lookups); the common case never creates a task.

Requests are answered in batches: a request that has arrived waits for the end of the
event loop's turn, then every waiting request is decided one after another, and only then
are the answers sent. Deciding 25 reviews and then making 25 sends, instead of alternating
decision and send (where each send runs the kernel's TCP path in between), cost about a
third less CPU per request on the benchmark. Answers on one connection still leave in
request order: anything written directly (an error, ``100 Continue``) or a close first
sends what is waiting.

Heavy requests (a body of ``heavy_body_bytes`` or more; an ordinary admission review is a few
KB) never make light ones wait behind more than one of them: they are set aside, and decided
one per turn of the event loop, each after the light requests that arrived before it. Deciding
a body costs time in proportion to its size (tens of milliseconds for megabytes), and a batch
of four big pods once held another tool's review for over a second; now a light request waits
at most for the one heavy decision in progress when it arrived (``bench/bigpod_bench.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import cast

import httptools
import msgspec

from imagegate.shell.logs import get_logger

__all__ = ["HttpServer", "Limits", "Request", "Response", "server_ssl_context"]

log = get_logger("imagegate.http")

MAX_HEADER_BYTES = 64 * 1024
_SWEEP_SECONDS = 0.5
LINGER_SECONDS = 2.0


# msgspec Structs: one of each per request, and 8x cheaper to make than dataclasses.
class Request(msgspec.Struct, frozen=True):
    method: str
    path: str
    body: bytes


class Response(msgspec.Struct, frozen=True):
    status: int
    body: bytes
    content_type: bytes = b"text/plain; charset=utf-8"
    headers: tuple[tuple[bytes, bytes], ...] = ()
    close: bool = False  # close the connection after this response


Handler = Callable[[Request], Response | Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Limits:
    max_body_bytes: int
    request_timeout: float  # from the first byte of a request to its last
    # Longer than the idle timeout of the API server's webhook client (Go's default, 90 s), so
    # the client closes an idle connection first: a server-side close can cross a request the
    # client is just sending on it, and Go does not retry a POST that was written.
    keep_alive_timeout: float = 120.0
    heavy_body_bytes: int = 64 * 1024  # from this size a request is decided in the heavy lane


_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}


def _head(response: Response, close: bool) -> bytes:
    reason = _REASONS.get(response.status, b"")
    head = b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n" % (
        response.status,
        reason,
        response.content_type,
        len(response.body),
    )
    if response.headers:
        head += b"".join(b"%s: %s\r\n" % header for header in response.headers)
    return head + (b"connection: close\r\n\r\n" if close else b"\r\n")


def _error(status: int, text: str) -> Response:
    return Response(status, text.encode() + b"\n", close=True)


class _Phase(enum.Enum):
    """Where a connection is in its life."""

    OPEN = enum.auto()  # requests are parsed and answered
    DRAINING = enum.auto()  # no more requests (an Upgrade): answer what is queued, then close
    CLOSING = enum.auto()  # no more requests: closed once what is queued (up to an error) is sent
    LINGERING = enum.auto()  # an error was answered: input is read and discarded until the sweeper closes


_OPEN, _DRAINING, _CLOSING, _LINGERING = _Phase.OPEN, _Phase.DRAINING, _Phase.CLOSING, _Phase.LINGERING


class _FlowControl:
    """When to read from a client (as uvicorn's ``FlowControl``, on the transport's calls).

    Reading pauses while a handler is awaited (later requests wait in the kernel, not in
    our queue) and while the client does not read our answers (asyncio's ``pause_writing``:
    the transport's buffer is full); it resumes when neither holds any more.
    """

    __slots__ = ("reading_paused", "transport", "writing_paused")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.reading_paused = False
        self.writing_paused = False

    def pause_reading(self) -> None:
        if not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        """Read again, unless the client is still not reading our answers."""
        if self.reading_paused and not self.writing_paused and not self.transport.is_closing():
            self.reading_paused = False
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        self.writing_paused = True
        self.pause_reading()

    def resume_writing(self, *, handler_waiting: bool) -> None:
        self.writing_paused = False
        if not handler_waiting:
            self.resume_reading()


class _Connection(asyncio.Protocol):
    """One client connection: parse, queue requests in order, answer each."""

    flow: _FlowControl  # from connection_made on

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.max_body_bytes = server.limits.max_body_bytes
        self.request_timeout = server.limits.request_timeout
        self.keep_alive_timeout = server.limits.keep_alive_timeout
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.phase = _OPEN
        self.queue: deque[tuple[Request | Response, bool]] = deque()
        self.waiting: asyncio.Task[None] | None = None  # a handler being awaited; later requests queue
        # the request being received
        self.receiving = False
        self.url = b""
        self.header_bytes = 0
        self.body: list[bytes] = []
        self.body_size = 0
        self.expect_continue = False
        self.deadline = 0.0  # for the sweeper: request timeout while receiving, idle timeout otherwise
        self.outgoing: list[bytes] = []  # answers waiting for the end of the batch
        self.scheduled = False  # in the server's next batch
        self.heavy_bytes = server.limits.heavy_body_bytes
        self.deferred = False  # in the server's heavy lane: the next request is heavy
        self.heavy_turn = False  # the lane chose this connection: its next heavy request is decided now

    # -- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.flow = _FlowControl(self.transport)
        self.server.connections.add(self)
        self.deadline = self.loop.time() + self.keep_alive_timeout

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.phase = _CLOSING
        if self.waiting is not None and not self.waiting.done():
            self.waiting.cancel()

    def data_received(self, data: bytes) -> None:
        if self.phase is not _OPEN:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # The request itself was answered (its Upgrade header ignored, as RFC 9110 allows);
            # what follows would be another protocol: close once the queue is answered.
            self.phase = _DRAINING
            if self.waiting is None and not self.queue:
                self._close()
        except httptools.HttpParserCallbackError:
            # One of our callbacks failed: a bug here, not a malformed request.
            log.exception("HTTP protocol callback failed")
            if self.phase is _OPEN:
                self._reject(_error(500, "internal error"))
        except httptools.HttpParserError as exc:
            if self.phase is _OPEN:  # a limit already answered this request
                self._reject(_error(400, f"malformed HTTP request: {exc}"))

    def pause_writing(self) -> None:
        # A client that sends without reading answers: stop reading until it catches up.
        self.flow.pause_writing()

    def resume_writing(self) -> None:
        self.flow.resume_writing(handler_waiting=self.waiting is not None)

    # -- httptools callbacks --------------------------------------------------------

    def on_message_begin(self) -> None:
        self.receiving = True
        self.url = b""
        self.header_bytes = 0
        self.body = []
        self.body_size = 0
        self.expect_continue = False
        self.deadline = self.loop.time() + self.request_timeout

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.header_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value)
        if self.header_bytes > MAX_HEADER_BYTES:
            if self.phase is _OPEN:
                self._reject(_error(431, f"request headers larger than {MAX_HEADER_BYTES} bytes"))
            return
        size = len(name)  # compare the two names we need only when the length fits
        if size == 14 and name.lower() == b"content-length":
            if value.strip().isdigit() and int(value) > self.max_body_bytes and self.phase is _OPEN:
                self._reject(_error(413, f"body larger than {self.max_body_bytes} bytes"))
        elif size == 6 and name.lower() == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True

    def on_headers_complete(self) -> None:
        if self.expect_continue and self.phase is _OPEN:
            self._send_now(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, chunk: bytes) -> None:
        if self.phase is not _OPEN:
            return
        self.body_size += len(chunk)
        if self.body_size > self.max_body_bytes:
            self._reject(_error(413, f"body larger than {self.max_body_bytes} bytes"))
            return
        self.body.append(chunk)

    def on_message_complete(self) -> None:
        if self.phase is not _OPEN:
            return
        self.receiving = False
        url = self.url
        if url[:1] == b"/":
            path = url.partition(b"?")[0].decode("utf-8", "replace")
        else:  # absolute form (a proxy's) or garbage
            path = (httptools.parse_url(url).path or b"").decode("utf-8", "replace")
        body = self.body
        request = Request(
            self.parser.get_method().decode("ascii", "replace"), path, body[0] if len(body) == 1 else b"".join(body)
        )
        keep_alive = self.parser.should_keep_alive() and not self.server.stopping
        self.queue.append((request, keep_alive))
        if self.waiting is None:
            self.server.schedule(self)

    # -- answering ------------------------------------------------------------------

    def _reject(self, response: Response) -> None:
        """Answer with an error after whatever is queued, and take no more requests."""
        self.queue.append((response, False))
        self.phase = _CLOSING  # stop parsing; requests queued before this one are still answered
        if self.waiting is None:
            self.drain()

    def drain(self) -> None:
        while self.queue:
            item, keep_alive = self.queue[0]
            if isinstance(item, Request) and len(item.body) >= self.heavy_bytes:
                if not self.heavy_turn:
                    # Set aside until the lane's turn; later requests on this connection wait in order.
                    self.flow.pause_reading()
                    self.server.defer_heavy(self)
                    return
                self.heavy_turn = False
            self.queue.popleft()
            if isinstance(item, Response):
                self._write(item, keep_alive=False, head_only=False)
                return
            try:
                result = self.server.handler(item)
            except Exception:  # the handler's own errors are its job; this is the last line
                log.exception("request handler failed", path=item.path)
                result = _error(500, "internal error")
            if isinstance(result, Response):
                if not self._write(result, keep_alive, item.method == "HEAD"):
                    return
                continue
            self.flow.pause_reading()
            self.waiting = self.loop.create_task(self._finish(result, keep_alive, item.method == "HEAD"))
            return

    async def _finish(self, pending: Awaitable[Response], keep_alive: bool, head_only: bool) -> None:
        try:
            response = await pending
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("request handler failed")
            response = _error(500, "internal error")
        self.waiting = None
        if self._write(response, keep_alive, head_only):
            self.flow.resume_reading()
            self.drain()

    def _write(self, response: Response, keep_alive: bool, head_only: bool) -> bool:
        """Send ``response``; False when the connection is now closing."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        close = (
            response.close
            or not keep_alive
            or self.server.stopping
            or (self.phase is _DRAINING and not self.queue)  # the last answer before an Upgrade's close
        )
        head = _head(response, close)
        payload = head if head_only else head + response.body
        if not close:
            self.outgoing.append(payload)  # sent at the end of the batch
            self.server.schedule(self)
            self.deadline = self.loop.time() + self.keep_alive_timeout
            return True
        self._send_now(payload)
        if response.close:
            # An error answer, often while the client is still sending: closing now would
            # reset the connection and could destroy the answer before it is read. Read and
            # discard for a while instead (nginx's "lingering close"); the sweeper closes.
            self.phase = _LINGERING
            self.deadline = self.loop.time() + LINGER_SECONDS
        else:
            self.phase = _CLOSING
            self._close()
        return False

    def flush(self) -> None:
        """Send the answers waiting for the end of the batch."""
        if self.outgoing:
            data = self.outgoing[0] if len(self.outgoing) == 1 else b"".join(self.outgoing)
            self.outgoing.clear()
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(data)

    def _send_now(self, data: bytes) -> None:
        """Write ``data`` at once, after whatever is waiting (answers keep request order)."""
        self.flush()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _close(self) -> None:
        """Close after sending what is waiting (the transport sends what it holds, then closes)."""
        self.flush()
        if self.transport is not None:
            self.transport.close()

    def sweep(self, now: float) -> None:
        """Called about twice a second: enforce the request, keep-alive and linger timeouts."""
        if self.waiting is not None or now < self.deadline or self.transport is None:
            return
        if self.phase is _LINGERING:
            self._close()
        elif self.receiving:
            self._reject(_error(408, "request not received in time"))
        elif not self.queue:
            self.phase = _CLOSING
            self._close()

    def busy(self) -> bool:
        """A request is being received, decided or answered (its answer not yet handed to the kernel)."""
        if self.transport is None or self.phase is _LINGERING:  # a lingering one was answered already
            return False
        return (
            self.waiting is not None
            or self.receiving
            or bool(self.queue or self.outgoing)
            or self.transport.get_write_buffer_size() > 0
        )

    def close_when_idle(self) -> None:
        """For shutdown: close now unless a request is being received or answered."""
        if self.transport is None:
            return
        if self.phase is _LINGERING:
            self._close()
        elif self.waiting is None and not self.receiving and not self.queue:
            self.phase = _CLOSING
            self._close()


def server_ssl_context(cert: str, key: str) -> ssl.SSLContext:
    """A server context (TLS 1.2 and up, HTTP/1.1 by ALPN); ``load_cert_chain`` on it later swaps the pair."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    context.load_cert_chain(cert, key)
    return context


class HttpServer:
    """Serves ``handler`` on a listening socket until :meth:`serve`'s ``stop`` is set."""

    def __init__(self, handler: Handler, limits: Limits, ssl_context: ssl.SSLContext | None) -> None:
        self.handler = handler
        self.limits = limits
        self.ssl_context = ssl_context
        self.connections: set[_Connection] = set()
        self.stopping = False
        self._batch: list[_Connection] = []  # connections with requests to answer or answers to send
        self._heavy: deque[_Connection] = deque()  # connections whose next request is heavy, in arrival order
        self._heavy_scheduled = False

    def defer_heavy(self, connection: _Connection) -> None:
        """Put ``connection`` in the heavy lane: its next request is decided on a turn of its own."""
        if connection.deferred:
            return
        connection.deferred = True
        self._heavy.append(connection)
        if not self._heavy_scheduled:
            self._heavy_scheduled = True
            asyncio.get_running_loop().call_soon(self._run_heavy)

    def _run_heavy(self) -> None:
        """One heavy request, after the light ones waiting; the next on a later turn of the loop."""
        self._heavy_scheduled = False
        if self._batch:
            self._run_batch()  # what arrived before it goes first
        while self._heavy:
            connection = self._heavy.popleft()
            connection.deferred = False
            if connection.transport is None or connection.transport.is_closing():
                continue
            connection.heavy_turn = True
            try:
                connection.drain()
            finally:
                connection.heavy_turn = False
                connection.flush()
                if connection.waiting is None and not connection.deferred:
                    connection.flow.resume_reading()
            break
        if self._heavy and not self._heavy_scheduled:
            self._heavy_scheduled = True
            asyncio.get_running_loop().call_soon(self._run_heavy)

    def schedule(self, connection: _Connection) -> None:
        """Put ``connection`` in the batch run at the end of this turn of the event loop."""
        if connection.scheduled:
            return
        connection.scheduled = True
        if not self._batch:
            asyncio.get_running_loop().call_soon(self._run_batch)
        self._batch.append(connection)

    def _run_batch(self) -> None:
        batch = self._batch
        try:
            # Decide every waiting request first: answers collect in each connection's
            # outgoing list (the connections are still scheduled, so none is queued again)...
            for connection in batch:
                if connection.waiting is None and connection.queue and not connection.deferred:
                    connection.drain()
        finally:
            # ...then send them all.
            self._batch = []
            for connection in batch:
                connection.scheduled = False
                connection.flush()

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(_SWEEP_SECONDS)
            now = loop.time()
            for connection in list(self.connections):
                connection.sweep(now)

    async def serve(self, sock: socket.socket, stop: asyncio.Event, grace: float = 15.0) -> None:
        """Accept on ``sock`` until ``stop``; then finish what is in flight (up to ``grace`` s)."""
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: _Connection(self),
            sock=sock,
            ssl=self.ssl_context,
            ssl_handshake_timeout=10 if self.ssl_context is not None else None,
        )
        sweeper = asyncio.create_task(self._sweep(), name="http-sweep")
        try:
            await stop.wait()
        finally:
            self.stopping = True
            server.close()
            deadline = loop.time() + grace
            busy = sum(connection.busy() for connection in self.connections)
            log.info("stopping", connections=len(self.connections), in_flight=busy)
            # Idle connections are closed at once, busy ones as soon as their answer is sent.
            # Only requests in flight are waited for: a closed TLS connection waits for the
            # client's close_notify, which an idle keep-alive client (the API server's) never
            # sends before its own idle timeout, so closed ones are dropped at the end.
            while True:
                for connection in list(self.connections):
                    connection.close_when_idle()
                if not any(connection.busy() for connection in self.connections) or loop.time() >= deadline:
                    break
                await asyncio.sleep(0.05)
            if self.connections:
                await asyncio.sleep(0.05)  # a turn for the close_notify just written to be sent
            for connection in list(self.connections):
                if connection.transport is not None:
                    connection.transport.abort()
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await server.wait_closed()
