"""The demo's server process: a fresh database full of a realistic day, served on a free loopback port.

Started by `agentdesk demo` as `python -m agentdesk.demo.server`; prints `PORT <n>` once it can serve,
and exits when its parent closes our stdin.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DB_NAME = "server.sqlite3"


def fresh_database(data_dir: Path) -> str:
    data_dir.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        (data_dir / f"{DB_NAME}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{data_dir / DB_NAME}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="agentdesk-demo-server")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    token = os.environ.pop("AGENTDESK_DEMO_TOKEN")

    from agentdesk.demo.data import generate
    from agentdesk.demo.seed import seed_demo
    from agentdesk.server.app import create_app
    from agentdesk.server.db import create_schema, make_engine
    from agentdesk.server.run import bind, serve

    engine = make_engine(fresh_database(args.data_dir))
    create_schema(engine)
    app = create_app(engine)
    seed_demo(engine, generate(args.seed), token)
    sock = bind("127.0.0.1", 0)
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    serve(app, sock, exit_on_stdin_eof=True, log_level="warning")


if __name__ == "__main__":
    main(sys.argv[1:])
