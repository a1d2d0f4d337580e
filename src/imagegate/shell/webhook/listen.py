"""The listening socket: checked by ``imagegate serve`` before it becomes the server, bound by
the server's workers. Free of the server's libraries (the event loop, uvloop, the app), which
the command line would otherwise load for nothing before it ``exec``s the serving process."""

from __future__ import annotations

import errno
import ipaddress
import socket

__all__ = ["ListenError", "check_listen", "listening_socket"]


class ListenError(Exception):
    """The server cannot listen where it was told to; the message says why, in one line."""


def _bind_error(host: str, port: int, exc: OSError) -> ListenError:
    if exc.errno == errno.EADDRINUSE:
        return ListenError(
            f"port {port} on {host} is already in use by another process: stop it or choose another --port"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return ListenError(
            f"--host {host} is not an address of this host (`ip address` lists them; 0.0.0.0 listens on all)"
        )
    if exc.errno == errno.EACCES:
        return ListenError(f"port {port} needs privileges this process lacks (ports below 1024): choose --port 8443")
    return ListenError(f"cannot listen on {host} port {port}: {exc.strerror or exc}")


def listening_socket(host: str, port: int, *, shared: bool) -> socket.socket:
    """The socket to accept on; ``shared``: each worker binds its own and the kernel spreads connections.

    Raises :class:`ListenError` (an unknown host name, an address of another machine, a
    port in use) instead of a bare ``OSError``.
    """
    # An address, never a name to look up: a listen address that depends on DNS is a surprise.
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ListenError(
                f"--host {host!r} is not an IP address (e.g. 127.0.0.1, ::1, 0.0.0.0) or localhost"
            ) from None
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        raise ListenError(f"--host {host!r}: {exc}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if shared:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise _bind_error(host, port, exc) from None
    sock.setblocking(False)
    return sock


def check_listen(host: str, port: int) -> None:
    """Raise :class:`ListenError` unless this process could listen on ``host``:``port`` now.

    Bound without SO_REUSEPORT, so a port that another server holds (even another
    imagegate with several workers) is found in use instead of silently shared.
    """
    listening_socket(host, port, shared=False).close()
