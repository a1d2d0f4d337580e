"""imagegate's HTTP/1.1 protocol, over real sockets on loopback (the webhook's own tests add TLS)."""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import pytest
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagegate.shell.webhook.http import LINGER_SECONDS, MAX_HEADER_BYTES, HttpServer, Limits, Request, Response
from tests.loopback import free_port

SLOW_STARTED = threading.Event()  # set by each /slow request when its handler starts


async def _slow(request: Request) -> Response:
    SLOW_STARTED.set()
    await asyncio.sleep(0.3)
    return Response(200, b"slow " + request.body)


def handler(request: Request) -> Response | Awaitable[Response]:
    if request.path == "/slow":
        return _slow(request)
    if request.path == "/boom":
        raise RuntimeError("a bug")
    if request.path == "/big":
        return Response(200, b"x" * 65536)
    return Response(200, b"%s %s %d" % (request.method.encode(), request.path.encode(), len(request.body)))


@dataclass
class Running:
    port: int
    loop: asyncio.AbstractEventLoop
    stop: asyncio.Event
    thread: threading.Thread
    errors: list[dict[str, object]]  # what reached the event loop's exception handler: must stay empty

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=5)

    def shutdown(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.stop.set)
            self.thread.join(timeout=10)


def start_server(
    limits: Limits | None = None, handle: Callable[[Request], Response | Awaitable[Response]] = handler
) -> Running:
    port = free_port()
    ready = threading.Event()
    holder: dict[str, object] = {}
    errors: list[dict[str, object]] = []

    async def main() -> None:
        stop = asyncio.Event()
        holder["loop"], holder["stop"] = asyncio.get_running_loop(), stop
        # An exception escaping the protocol (a bug) lands here, not in a response.
        asyncio.get_running_loop().set_exception_handler(lambda _loop, context: errors.append(context))
        sock = socket.socket()
        sock.bind(("127.0.0.1", port))
        sock.listen(64)
        sock.setblocking(False)
        chosen = limits or Limits(max_body_bytes=1000, request_timeout=1.0, keep_alive_timeout=1.0)
        serving = asyncio.create_task(HttpServer(handle, chosen, None).serve(sock, stop, grace=5))
        await asyncio.sleep(0)
        ready.set()
        await serving

    thread = threading.Thread(target=lambda: uvloop.run(main()), daemon=True)
    thread.start()
    assert ready.wait(10)
    return Running(port, holder["loop"], holder["stop"], thread, errors)  # type: ignore[arg-type]


def serving() -> Iterator[Running]:
    """A server for the test, stopped after it; nothing may have reached the loop's exception handler."""
    running = start_server()
    yield running
    running.shutdown()
    assert not running.thread.is_alive()
    assert running.errors == []


server = pytest.fixture(serving, name="server")
shared_server = pytest.fixture(serving, name="shared_server", scope="module")  # for the property test


def read_all(conn: socket.socket) -> bytes:
    """Everything until the server closes the connection."""
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def read_responses(conn: socket.socket, count: int) -> list[bytes]:
    """``count`` responses (each with a content-length) from a kept-alive connection."""
    buffer = bytearray()
    start = 0
    responses: list[bytes] = []
    while len(responses) < count:
        head_end = buffer.find(b"\r\n\r\n", start)
        if head_end >= 0:
            head = bytes(buffer[start:head_end]).decode()
            length = next(
                int(line.split(":")[1]) for line in head.split("\r\n") if line.lower().startswith("content-length")
            )
            if len(buffer) >= head_end + 4 + length:
                responses.append(bytes(buffer[start : head_end + 4 + length]))
                start = head_end + 4 + length
                continue
        chunk = conn.recv(65536)
        assert chunk, f"connection closed after {len(responses)} responses"
        buffer += chunk
    return responses


def post(path: str, body: bytes, extra: bytes = b"") -> bytes:
    return b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%s\r\n%s" % (path.encode(), len(body), extra, body)


def test_keep_alive_and_pipelining_answer_in_order(server: Running) -> None:
    with server.connect() as conn:
        conn.sendall(post("/a", b"12") + post("/slow", b"xy") + post("/c", b"123"))
        first, second, third = read_responses(conn, 3)
        assert first.endswith(b"POST /a 2") and second.endswith(b"slow xy") and third.endswith(b"POST /c 3")
        conn.sendall(b"GET /d?q=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_responses(conn, 1)[0].endswith(b"GET /d 0")


def test_requests_answered_in_one_batch_each_get_their_own_answers(server: Running) -> None:
    # Requests that arrive together are decided together and their answers sent after:
    # every connection must still get exactly its own answers, in its own order.
    connections = [server.connect() for _ in range(40)]
    try:
        for n, conn in enumerate(connections):
            middle = post("/slow", b"s%d" % n) if n % 5 == 0 else b""
            conn.sendall(post(f"/c{n}", b"x" * n) + middle + post(f"/d{n}", b"y"))
        for n, conn in enumerate(connections):
            replies = read_responses(conn, 3 if n % 5 == 0 else 2)
            assert replies[0].endswith(b"POST /c%d %d" % (n, n))
            if n % 5 == 0:
                assert replies[1].endswith(b"slow s%d" % n)
            assert replies[-1].endswith(b"POST /d%d 1" % n)
    finally:
        for conn in connections:
            conn.close()


def test_heavy_requests_wait_behind_light_ones_never_the_reverse() -> None:
    """A light request that arrives while heavy ones queue is decided before all but the heavy
    one in progress; pipelined requests on one connection still keep their order."""
    order: list[bytes] = []
    others_sent = threading.Event()

    def deciding(request: Request) -> Response:
        order.append(request.path.encode())
        if request.path == "/heavy0":
            # The first heavy decision holds the loop until the others are in the server's
            # socket (sent on loopback), so all of them wait for it together.
            assert others_sent.wait(timeout=10)
        return Response(200, request.path.encode())

    running = start_server(Limits(max_body_bytes=10_000, request_timeout=5.0, heavy_body_bytes=1000), deciding)
    connections = [running.connect() for _ in range(5)]
    try:
        for conn in connections:  # every connection accepted before the test begins
            conn.sendall(post("/warm", b""))
            read_responses(conn, 1)
        order.clear()
        connections[0].sendall(post("/heavy0", b"h" * 2000))
        while not order:
            time.sleep(0.01)
        for n in (1, 2, 3):
            connections[n].sendall(post(f"/heavy{n}", b"h" * 2000))
        connections[4].sendall(post("/light", b"l") + post("/heavy4", b"h" * 2000) + post("/light-after", b"l"))
        others_sent.set()
        for n, conn in enumerate(connections[:4]):
            assert read_responses(conn, 1)[0].endswith(b"/heavy%d" % n)
        light, heavy, after = read_responses(connections[4], 3)
        assert (
            light.endswith(b"\r\n\r\n/light")
            and heavy.endswith(b"\r\n\r\n/heavy4")
            and after.endswith(b"\r\n/light-after")
        )
    finally:
        for conn in connections:
            conn.close()
        running.shutdown()
    assert running.errors == []
    assert order[:2] == [b"/heavy0", b"/light"], order
    assert order.index(b"/heavy4") < order.index(b"/light-after")  # one connection's order holds
    assert sorted(order) == sorted(
        [b"/heavy0", b"/heavy1", b"/heavy2", b"/heavy3", b"/light", b"/heavy4", b"/light-after"]
    )


def test_http_1_0_and_connection_close_end_the_connection(server: Running) -> None:
    for request in (b"GET /x HTTP/1.0\r\n\r\n", b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"):
        with server.connect() as conn:
            conn.sendall(request)
            reply = read_all(conn)
            assert reply.startswith(b"HTTP/1.1 200 OK") and b"connection: close" in reply


def test_head_has_no_body(server: Running) -> None:
    with server.connect() as conn:
        conn.sendall(b"HEAD /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = read_all(conn)
        assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"\r\n\r\n")


def test_expect_continue_and_chunked_bodies(server: Running) -> None:
    with server.connect() as conn:
        conn.sendall(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert conn.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        conn.sendall(b"hello")
        assert read_responses(conn, 1)[0].endswith(b"POST /e 5")
        conn.sendall(
            b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
        )
        assert read_responses(conn, 1)[0].endswith(b"POST /c 7")


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (post("/big", b"x" * 1001), b"413"),  # refused from the Content-Length
        (
            b"POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + (b"200\r\n" + b"x" * 512 + b"\r\n") * 2,
            b"413",
        ),
        (b"GET /x HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (MAX_HEADER_BYTES + 1) + b"\r\n\r\n", b"431"),
        (b"NOT HTTP AT ALL\r\n\r\n", b"400"),
        (b"GET /x HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n", b"400"),
    ],
    ids=["content-length", "chunked-over-limit", "headers", "garbage", "bad-length"],
)
def test_limits_answer_then_close(server: Running, request_bytes: bytes, status: bytes) -> None:
    with server.connect() as conn:
        conn.sendall(post("/first", b"ok") + request_bytes)
        conn.shutdown(socket.SHUT_WR)  # done sending: the server need not linger
        reply = read_all(conn)
        assert reply.startswith(b"HTTP/1.1 200"), reply[:100]  # what came before is still answered
        assert reply.count(b"HTTP/1.1 ") == 2 and b"HTTP/1.1 " + status + b" " in reply, reply[-200:]
        assert reply.endswith(b"\n") and b"connection: close" in reply


def test_upgrade_is_ignored_then_the_connection_closed(server: Running) -> None:
    with server.connect() as conn:
        conn.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nnot http")
        reply = read_all(conn)
        assert reply.startswith(b"HTTP/1.1 200") and reply.count(b"HTTP/1.1 ") == 1


def test_slow_request_gets_408_and_idle_connections_close(server: Running) -> None:
    with server.connect() as conn:
        conn.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        started = time.monotonic()
        assert read_responses(conn, 1)[0].startswith(b"HTTP/1.1 408")
        assert time.monotonic() - started < 3
        assert conn.recv(100) == b""  # closed once the server has lingered
        assert time.monotonic() - started < 3 + LINGER_SECONDS
    with server.connect() as conn:
        conn.sendall(post("/x", b""))
        read_responses(conn, 1)
        started = time.monotonic()
        assert conn.recv(100) == b""  # closed by the server after keep_alive_timeout
        assert 0.5 < time.monotonic() - started < 3


def test_a_failing_handler_gets_500_and_the_server_carries_on(server: Running) -> None:
    with server.connect() as conn:
        conn.sendall(post("/boom", b"") + post("/after", b""))
        conn.shutdown(socket.SHUT_WR)
        reply = read_all(conn)
        assert reply.startswith(b"HTTP/1.1 500") and b"connection: close" in reply
    with server.connect() as conn:
        conn.sendall(post("/after", b""))
        assert read_responses(conn, 1)[0].startswith(b"HTTP/1.1 200")


def test_shutdown_finishes_requests_in_flight(server: Running) -> None:
    busy = server.connect()
    idle = server.connect()
    idle.sendall(post("/x", b""))
    read_responses(idle, 1)
    SLOW_STARTED.clear()
    busy.sendall(post("/slow", b"last"))
    assert SLOW_STARTED.wait(timeout=5)  # the slow handler is running
    server.loop.call_soon_threadsafe(server.stop.set)
    reply = read_all(busy)  # answered, then closed
    assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"slow last") and b"connection: close" in reply
    assert idle.recv(100) == b""  # the idle keep-alive connection is closed at once
    busy.close()
    idle.close()
    server.thread.join(timeout=10)
    with pytest.raises(OSError):
        server.connect()


def test_a_client_that_does_not_read_is_not_read_from_until_it_does() -> None:
    """Pipelined requests whose answers (38 MiB) exceed every buffer: while the client reads
    nothing, the server stops reading its requests (they wait in the kernel, and the client's
    send blocks); once it reads, every answer comes, in order. Without flow control the server
    would read and answer all of them into its memory, and the sending would never block."""
    count = 600
    decided: list[int] = []

    def big(request: Request) -> Response:
        decided.append(1)
        return Response(200, b"x" * 65536)

    # Requests of 16 KiB: 9.4 MiB of them, more than the kernel's buffers on both ends hold.
    request = b"GET /big HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 16384 + b"\r\n\r\n"
    running = start_server(Limits(max_body_bytes=1000, request_timeout=60.0, keep_alive_timeout=60.0), big)
    try:
        with running.connect() as conn:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
            conn.setblocking(False)
            data = memoryview(request * count)
            sent = 0
            # Send without reading until the server has read nothing for 2 s (its socket full).
            while sent < len(data):
                _, writable, _ = select.select([], [conn], [], 2.0)
                if not writable:
                    break
                with contextlib.suppress(BlockingIOError):
                    sent += conn.send(data[sent:])
            assert sent < len(data), "the server read every request while its answers were not read"
            assert len(decided) < count // 2, len(decided)  # decided only what it read
            conn.setblocking(True)
            conn.settimeout(30)
            sender = threading.Thread(target=lambda: conn.sendall(data[sent:]))
            sender.start()
            responses = read_responses(conn, count)
            sender.join(timeout=30)
        assert len(responses) == count and all(r.endswith(b"x" * 65536) for r in responses)
    finally:
        running.shutdown()
    assert running.errors == []


REQUEST_LINES = st.sampled_from(
    [b"GET / HTTP/1.1", b"POST /v HTTP/1.1", b"HEAD /h HTTP/1.0", b"PUT /p?q=1 HTTP/1.1", b"GET http://x/abs HTTP/1.1"]
)
HEADERS = st.lists(
    st.sampled_from(
        [
            b"Host: x",
            b"Content-Length: 3",
            b"Content-Length: 99999999999999999999",
            b"Content-Length: -1",
            b"Transfer-Encoding: chunked",
            b"Expect: 100-continue",
            b"Connection: close",
            b"Connection: keep-alive",
            b"Upgrade: h2c",
            b"X-Long: " + b"a" * 1000,
        ]
    ),
    max_size=4,
)
BODIES = st.sampled_from([b"", b"abc", b"3\r\nabc\r\n0\r\n\r\n", b"\x00\xff\xfe"])


@st.composite
def client_bytes(draw: st.DrawFn) -> bytes:
    """A few requests, well formed or not, with garbage spliced in somewhere."""
    requests = []
    for _ in range(draw(st.integers(1, 4))):
        head = b"\r\n".join([draw(REQUEST_LINES), *draw(HEADERS)])
        requests.append(head + b"\r\n\r\n" + draw(BODIES))
    data = b"".join(requests)
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(max_size=20)) + data[at:]
    return data


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=client_bytes(), split=st.integers(1, 64))
def test_any_bytes_get_http_answers_or_a_close(shared_server: Running, data: bytes, split: int) -> None:
    """Whatever a client sends, in whatever pieces: only HTTP responses come back, and the server lives on."""
    with shared_server.connect() as conn:
        conn.settimeout(5)
        for start in range(0, len(data), split):
            try:
                conn.sendall(data[start : start + split])
            except OSError:
                break  # the server answered and closed early: fine
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_WR)
        try:
            reply = read_all(conn)
        except TimeoutError:
            reply = b""  # an incomplete request waits for its timeout; nothing wrong came back
        except ConnectionResetError:
            reply = b""  # bytes sent after "Connection: close" meet a closed socket; nothing wrong came back
        assert reply == b"" or reply.startswith(b"HTTP/1.1 "), reply[:80]
        assert b"HTTP/1.1 500" not in reply  # only a bug in the server answers 500 here
    assert shared_server.errors == []
    with shared_server.connect() as conn:  # still serving
        conn.sendall(b"GET /alive HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert read_all(conn).endswith(b"GET /alive 0")
