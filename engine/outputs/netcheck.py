"""Before a server binds: one sentence for the usual reasons it cannot (port in use, an
address that is not this PC's, a privileged port), instead of a library's traceback."""
from __future__ import annotations

import errno
import socket

from engine.errors import InspectError


def check_bind(host: str, port: int, what: str) -> None:
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise InspectError(f"{what}: port {port!r} is not a TCP port (1..65535).")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InspectError(f"{what}: {host!r} is not a known address of this PC ({exc.strerror}).") from exc
    family, _, _, _, addr = infos[0]
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as asyncio servers bind
        s.bind(addr)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            why = f"port {port} on {host} is in use by another program; choose another port in Settings > Line"
        elif exc.errno == errno.EADDRNOTAVAIL:
            why = f"{host} is not an address of this PC"
        elif exc.errno == errno.EACCES:
            why = f"port {port} needs administrator rights (ports below 1024); choose a port from 1024 up"
        else:
            why = f"cannot listen on {host}:{port} ({exc.strerror or exc})"
        raise InspectError(f"{what}: {why}.") from exc
    finally:
        s.close()
