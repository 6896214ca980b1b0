"""Bench launcher: one uvicorn worker on a free loopback port, in its own process (the benches start it).

    python bench/_serve.py --db PATH            the real app: create_app(make_engine(sqlite:///PATH))
    ... --config FILE.toml                      with these server settings (e.g. a channel switched on)
    python bench/_serve.py --bare               the floor: a raw ASGI app answering one fixed JSON body
    ... --profile OUT.pstats                    cProfile every thread (the sync endpoints run in anyio's
                                                threadpool) and write the merged stats on exit

What-if switches (not the shipped configuration; for measuring a candidate fix without touching src/):
    --tcp-nodelay       bind the socket with proto=IPPROTO_TCP, so asyncio sets TCP_NODELAY on accepted
                        connections (run.bind's proto-0 socket leaves Nagle on: ~40 ms per response here)
    --pool-size N       a SQLAlchemy pool of N connections (no overflow) instead of make_engine's 5 + 10

Both apps are served by agentdesk.server.run.serve — the same uvicorn configuration as `agentdesk serve`.
Prints `PORT <n>` on stdout once the socket is bound, and exits when its parent closes our stdin.
The schema must already be current (the bench migrates and seeds the database before starting us).
"""

from __future__ import annotations

import argparse
import sys
import threading

BARE_BODY = b'{"changes":[],"cursor":"djE6MTIzNDU2","has_more":false}'


async def bare_app(scope, receive, send) -> None:
    """The floor: no routing, no validation, no database: a fixed JSON body for every request."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    await send({
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(BARE_BODY)).encode())],
    })
    await send({"type": "http.response.body", "body": BARE_BODY})


class _ThreadProfiles:
    """One cProfile.Profile per thread (cProfile only sees the thread that enabled it), merged at the end."""

    def __init__(self) -> None:
        import cProfile

        self._cls = cProfile.Profile
        self.profiles: list = []
        self._lock = threading.Lock()

    def _start_here(self, *_args) -> None:
        profile = self._cls()
        with self._lock:
            self.profiles.append(profile)
        profile.enable()  # replaces this hook for the thread

    def start(self) -> None:
        threading.setprofile(self._start_here)  # threads started from now on
        self._start_here()  # and this one

    def dump(self, path: str) -> None:
        import pstats

        threading.setprofile(None)
        stats = None
        for profile in self.profiles:
            profile.create_stats()
            if not profile.stats:
                continue
            if stats is None:
                stats = pstats.Stats(profile)
            else:
                stats.add(profile)
        if stats is not None:
            stats.dump_stats(path)


def _bind_tcp(host: str, port: int):
    """run.bind, but the socket's proto is IPPROTO_TCP: asyncio then sets TCP_NODELAY on every accepted socket."""
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def _engine_with_pool(db: str, size: int):
    """make_engine's SQLite engine (same pragmas), with a pool of `size` connections and no overflow."""
    import sqlalchemy as sa

    from agentdesk.server.db import _sqlite_pragmas

    engine = sa.create_engine(f"sqlite:///{db}", connect_args={"check_same_thread": False, "timeout": 30},
                              pool_size=size, max_overflow=0)
    sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench-serve")
    parser.add_argument("--db", help="SQLite file of the server database (schema current, seeded)")
    parser.add_argument("--url", help="or the server database's URL (PostgreSQL; schema current, seeded)")
    parser.add_argument("--bare", action="store_true", help="serve the bare ASGI floor app instead")
    parser.add_argument("--config", help="server settings file (TOML) for create_app(settings=...)")
    parser.add_argument("--profile", help="write cProfile stats of all threads here on exit")
    parser.add_argument("--tcp-nodelay", action="store_true", help="what-if: a proto=IPPROTO_TCP socket (TCP_NODELAY)")
    parser.add_argument("--pool-size", type=int, help="what-if: N pooled database connections, no overflow")
    args = parser.parse_args(argv)

    from agentdesk.server.run import bind, serve

    if args.bare:
        app = bare_app
    else:
        from agentdesk.server.app import create_app
        from agentdesk.server.db import make_engine

        if args.pool_size:
            engine = _engine_with_pool(args.db, args.pool_size)
        else:
            engine = make_engine(args.url or f"sqlite:///{args.db}")
        settings = None
        if args.config:
            from agentdesk.config.loader import load_settings

            settings = load_settings(args.config)
        app = create_app(engine, settings=settings)
    profiles = _ThreadProfiles() if args.profile else None
    sock = _bind_tcp("127.0.0.1", 0) if args.tcp_nodelay else bind("127.0.0.1", 0)
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    if profiles is not None:
        profiles.start()
    try:
        serve(app, sock, exit_on_stdin_eof=True, log_level="warning")
    finally:
        if profiles is not None:
            profiles.dump(args.profile)


if __name__ == "__main__":
    main(sys.argv[1:])
