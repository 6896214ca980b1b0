"""Running the server under uvicorn, on an address or on a socket bound beforehand."""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI


def bind(host: str, port: int) -> socket.socket:
    """Bind first, so a caller asking for port 0 learns the real port before serving starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only when it sees the protocol,
    # and without it every small response waits ~40 ms for the peer's delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)  # connections made before uvicorn starts wait in the backlog, not refused
    return sock


def serve(app: FastAPI, sock: socket.socket, *, exit_on_stdin_eof: bool = False, log_level: str = "info",
          on_stdin_eof: Callable[[], None] | None = None) -> None:
    """`on_stdin_eof`: called first when stdin closes (the demo stops its traffic before the server goes)."""
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=False))
    if exit_on_stdin_eof:
        # A parent that owns us (the demo) holds our stdin open; when it exits, however it dies, we follow.
        def watch() -> None:
            sys.stdin.read()
            if on_stdin_eof is not None:
                on_stdin_eof()
            server.should_exit = True

        threading.Thread(target=watch, daemon=True, name="parent-watch").start()
    server.run(sockets=[sock])
