"""``imagegate`` commands for the tests, each in a process of its own, forked from one that imported the CLI.

A test runs ``imagegate ...`` as a user does (``tests.conftest.run_imagegate``): a process of its
own, with its own standard streams, environment, working directory and exit status. Started
afresh, each such process spends about 0.3 s of CPU starting the interpreter and importing the
command line (typer, rich, pydantic, the core) before its command runs, the same for every call;
the suite runs about a thousand of them. So each test process keeps one server (this module run
as a script) that has imported them once, and forks it for each command: the child takes the
caller's stdin, stdout and stderr (passed over a Unix socket), environment, working directory and
``sys.path[0]``, runs ``imagegate`` as ``python -m imagegate`` does (``runpy``, ``__main__``) and
exits as the interpreter would (``SystemExit``'s code, a traceback and 1 for an uncaught
exception, ``atexit`` handlers run). What it no longer exercises per call is the interpreter's
start and the CLI's import, the same for every command: ``tests/test_cli_imports.py`` starts fresh
interpreters for those, and ``IMAGEGATE_TEST_FRESH_PROCESSES=1`` gives every command one.

The server runs only the standard library and the imports below until a command names more; it
exits when the test process that started it closes its stdin (ends or dies), and kills the
commands still running then. A command's parent is the server, not the test process (a
parent-death signal can name only the parent), and the server's end follows the test process's;
so each command asks to be sent SIGTERM when the *server* ends (``imagegate.shell.parent_death``):
a server killed outright (SIGKILL, an uncaught ^C) leaves no command running either.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO, Any

FRESH_ENV = "IMAGEGATE_TEST_FRESH_PROCESSES"
# What every command imports before it runs (the entry point's modules) and typer's option
# coercion (pydantic): imported once in the server instead of in each command's process.
PRELOAD = ("imagegate.shell.cli.main", "pydantic")
_FDS = 3  # stdin, stdout, stderr


def startup_alike(env: dict[str, str], server_env: dict[str, str]) -> bool:
    """Whether a process started with ``env`` starts as the server did: the same ``PYTHON*``
    variables (the code under test on ``PYTHONPATH``, hashing, warnings, I/O encoding) and locale."""

    def read_at_start(environment: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in environment.items() if k.startswith(("PYTHON", "LC_")) or k == "LANG"}

    return read_at_start(env) == read_at_start(server_env)


def _send(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode() + b"\n"
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    sock.sendmsg([data], ancillary)


def _read_line(sock: socket.socket, buffer: bytearray) -> dict[str, Any] | None:
    while b"\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buffer += chunk
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    message = json.loads(line)
    assert isinstance(message, dict)
    return message


class ForkServer:
    """The test process's side: starts the server, asks it for one command at a time per thread."""

    def __init__(self, env: dict[str, str]) -> None:
        self._directory = tempfile.mkdtemp(prefix="imagegate-forkserver-")
        self.path = str(Path(self._directory) / "socket")
        self.env = env
        # stdin a pipe kept open: the server ends when this process does (EOF)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__main__')",
                __file__,
                self.path,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            env=env,
            cwd=Path(__file__).resolve().parent.parent,  # as the tests' own (never a test's tmp_path)
        )
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(1)
            for _ in range(600):  # the server's imports: seconds at most, even on a loaded machine
                if self.process.poll() is not None:
                    raise RuntimeError(f"the imagegate fork server exited with {self.process.returncode}")
                try:
                    probe.connect(self.path)
                    break
                except (FileNotFoundError, ConnectionRefusedError):
                    threading.Event().wait(0.1)
            else:
                self.stop()
                raise RuntimeError("the imagegate fork server did not start in 60 s")
            _send(probe, {"ping": True})

    def run(
        self, args: list[str], env: dict[str, str], stdin: str | None, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        """``python -m imagegate ARGS`` with ``env``, as ``subprocess.run(..., capture_output=True, text=True)``."""
        with (
            tempfile.TemporaryFile() as stdin_file,
            tempfile.TemporaryFile() as out,
            tempfile.TemporaryFile() as err,
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock,
        ):
            if stdin is not None:
                stdin_file.write(stdin.encode())
                stdin_file.seek(0)
            sock.connect(self.path)
            request = {"args": args, "env": env, "cwd": os.getcwd()}
            _send(sock, request, [stdin_file.fileno() if stdin is not None else 0, out.fileno(), err.fileno()])
            buffer = bytearray()
            started = _read_line(sock, buffer)
            if started is None or "pid" not in started:
                raise RuntimeError(f"the imagegate fork server did not start the command: {started}")
            sock.settimeout(timeout)
            try:
                finished = _read_line(sock, buffer)
            except BaseException as exc:  # past its timeout, or the test stopped (pytest-timeout, ^C)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(started["pid"], signal.SIGKILL)  # the command's own process, by its PID
                if not isinstance(exc, TimeoutError):
                    raise
                sock.settimeout(60)
                _read_line(sock, buffer)  # its status, once the server has reaped it
                raise subprocess.TimeoutExpired([sys.executable, "-m", "imagegate", *args], timeout) from None
            if finished is None or "status" not in finished:
                raise RuntimeError(f"the imagegate fork server lost the command: {finished}")
            stdout, stderr = _read_text(out), _read_text(err)
        return subprocess.CompletedProcess(
            [sys.executable, "-m", "imagegate", *args], finished["status"], stdout, stderr
        )

    def stop(self) -> None:
        """Close the server's stdin (it exits), wait for it; remove its socket's directory."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        Path(self.path).unlink(missing_ok=True)
        os.rmdir(self._directory)


def _read_text(file: IO[bytes]) -> str:
    """What ``subprocess.run(text=True)`` returns: decoded, universal newlines."""
    file.seek(0)
    return file.read().decode().replace("\r\n", "\n").replace("\r", "\n")


# --- the server process ---------------------------------------------------------------------


def _serve(path: str) -> None:
    import gc  # noqa: PLC0415 - only the server needs these
    import importlib  # noqa: PLC0415
    import selectors  # noqa: PLC0415

    for name in PRELOAD:
        importlib.import_module(name)
    importlib.import_module("imagegate.shell.parent_death")  # prctl looked up here, not in a forked child
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    wakeup_read, wakeup_write = os.pipe()
    os.set_blocking(wakeup_read, False)
    os.set_blocking(wakeup_write, False)
    signal.set_wakeup_fd(wakeup_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the selector through the wakeup fd
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "accept")
    selector.register(wakeup_read, selectors.EVENT_READ, "child")
    selector.register(sys.stdin.fileno(), selectors.EVENT_READ, "parent")
    waiting: dict[int, socket.socket] = {}  # a command's pid: the connection that asked for it
    gc.freeze()  # the imported modules' objects stay shared with the children (copy-on-write)
    while True:
        for key, _events in selector.select():
            if key.data == "parent":
                if not os.read(sys.stdin.fileno(), 4096):  # the test process has ended
                    for pid in waiting:  # commands still running: stopped by their PIDs
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                    return
            elif key.data == "accept":
                connection, _ = listener.accept()
                try:
                    started = _start(connection, [listener, connection, *waiting.values()], [wakeup_read, wakeup_write])
                except (OSError, ValueError):  # a caller gone before its request was read whole
                    connection.close()
                    continue
                if started is not None:
                    waiting[started] = connection
            else:
                while True:
                    try:
                        os.read(wakeup_read, 4096)
                    except BlockingIOError:
                        break
                _reap(waiting)


def _start(connection: socket.socket, sockets: list[socket.socket], fds: list[int]) -> int | None:
    """Read one request and fork its command; None for a ping (the connection is closed)."""
    message, ancillary, _flags, _address = connection.recvmsg(1 << 20, socket.CMSG_SPACE(_FDS * 4))
    request = json.loads(message.partition(b"\n")[0])
    if request.get("ping"):
        connection.close()
        return None
    passed = array.array("i")
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            passed.frombytes(data[: len(data) - (len(data) % passed.itemsize)])
    sys.stdout.flush()
    sys.stderr.flush()
    server = os.getpid()
    pid = os.fork()
    if pid == 0:
        _child(server, request, list(passed), sockets, fds)  # never returns
    for fd in passed:
        os.close(fd)
    _send(connection, {"pid": pid})
    return pid


def _reap(waiting: dict[int, socket.socket]) -> None:
    while waiting:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        connection = waiting.pop(pid, None)
        if connection is not None:
            with contextlib.suppress(OSError):  # the caller gave up (a timeout) and closed
                _send(connection, {"status": os.waitstatus_to_exitcode(status)})
            connection.close()


def _child(
    server: int, request: dict[str, Any], passed: list[int], sockets: list[socket.socket], fds: list[int]
) -> None:
    """In the forked process: become ``python -m imagegate ARGS`` and exit as the interpreter would."""
    import atexit  # noqa: PLC0415
    import runpy  # noqa: PLC0415
    import traceback  # noqa: PLC0415

    from imagegate.shell.parent_death import end_with_parent  # noqa: PLC0415 - imported by the server

    code = 1
    try:
        end_with_parent(server)  # SIGTERM when the server ends (already gone: now)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for sock in sockets:
            sock.close()
        for fd in fds:
            os.close(fd)
        for target, fd in enumerate(passed):
            os.dup2(fd, target)
            os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        sys.path[0] = os.getcwd()  # as `python -m` puts it
        sys.argv = ["-m", *request["args"]]  # run_module sets argv[0] to the module's file
        try:
            runpy.run_module("imagegate", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            code = _exit_code(exc.code)
        except BaseException:  # the interpreter's own handling of an uncaught exception
            traceback.print_exc()
            code = 1
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def _exit_code(code: object) -> int:
    """How the interpreter turns ``SystemExit``'s argument into an exit status."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


if __name__ == "__main__":
    _serve(sys.argv[-1])  # run_path put this file's path first
