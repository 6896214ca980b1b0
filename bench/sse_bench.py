"""SSE bench (issue 3 item 5): commit-to-poke latency for 1000 live subscribers of one server process.

    python bench/sse_bench.py [--subscribers 1000] [--agents 100] [--clients 4] [--rounds 20] [--gap 0.3]
                              [--servers 1] [--client httpx|raw] [--commit db|api]

A real server (bench/_serve.py: create_app over SQLite in a temp dir, uvicorn in its own process, the
default hub polling every 0.05 s) is seeded with a team and `--agents` agents with tokens through
server.admin. `--clients` client processes open `--subscribers` SSE streams between them (asyncio + httpx
+ httpx-sse, connection limit lifted). Then this process commits one change-log entry per round, straight
to the database (as another server process would), `--rounds` times, `--gap` seconds apart, and every
subscriber notes when the poke for it arrives. Latency = poke received - commit returned, per subscriber
per round (CLOCK_MONOTONIC, the same clock in every process on Linux).

`--commit api` commits through the (first) server instead: an agent's status flips between available and
away (POST /api/v1/presence: a change-log entry and a presence signal), and latency counts from the POST
being sent (so it includes the request's own handling). A commit made by the server process wakes its hub at once, where one made by another process
waits for the hub's next poll (every 0.05 s): `db` measures the multi-process path, `api` the usual one.

`--servers K` runs K server processes on the one SQLite file (the multi-process design: each polls the
database itself) and spreads the subscribers over them. `--client raw` reads the streams with bare asyncio
sockets and a regex instead of httpx + httpx-sse, to tell the server's share of the latency from the
clients' parsing on this machine.

Floor, measured in the same run: this process broadcasting to `--subscribers` asyncio.Queues, each read
by its own task (what the hub's fan-out costs with no HTTP, no database and no poll interval).

Prints one JSON object on stdout; progress on stderr. Target: p99 <= 100 ms for 1000 subscribers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (puts src/ on sys.path)
from _common import ServerProcess, log, percentiles

TARGET_P99_MS = 100.0


# ------------------------------------------------------------------------------------------- clients


def client_process(urls: list[str], tokens: list[str], conn: Any, kind: str) -> None:
    asyncio.run(_client_main(urls, tokens, conn, kind))


_POKE = re.compile(r"^id: (\d+)\nevent: poke$", re.M)


async def _raw_stream(url: str, token: str, on_poke: Any) -> None:
    """A minimal SSE reader: HTTP/1.1 over a bare socket (the body is chunked; pokes are found by regex)."""
    host, port = url.rsplit("//", 1)[1].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET /api/v1/events HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
                 "Accept: text/event-stream\r\n\r\n".encode())
    tail = ""
    try:
        while data := await reader.read(65536):
            now = time.monotonic()
            text = tail + data.decode()
            cut = text.rfind("\n\n") + 2
            for match in _POKE.finditer(text, 0, cut):
                on_poke(int(match.group(1)), now)
            tail = text[cut:]
    finally:
        writer.close()


async def _client_main(urls: list[str], tokens: list[str], conn: Any, kind: str) -> None:
    import httpx
    from httpx_sse import aconnect_sse

    loop = asyncio.get_running_loop()
    records: list[list[tuple[int, float]]] = [[] for _ in tokens]  # per stream: (poke seq, received at)
    connected = 0
    all_connected = asyncio.Event()
    errors: list[str] = []

    def on_poke(i: int, seq: int, now: float) -> None:
        nonlocal connected
        records[i].append((seq, now))
        if len(records[i]) == 1:
            connected += 1
            if connected == len(tokens):
                all_connected.set()

    async def listen(i: int, token: str) -> None:
        url = urls[i % len(urls)]
        try:
            if kind == "raw":
                await _raw_stream(url, token, lambda seq, now: on_poke(i, seq, now))
                return
            headers = {"Authorization": f"Bearer {token}"}
            async with aconnect_sse(http, "GET", f"{url}/api/v1/events", headers=headers) as source:
                async for event in source.aiter_sse():
                    if event.event == "poke":
                        on_poke(i, int(event.id), time.monotonic())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            errors.append(f"{type(exc).__name__}: {exc}")
            all_connected.set()

    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(60, read=None)) as http:
        tasks = []
        for start in range(0, len(tokens), 50):  # connect in batches: the server snapshots each new stream
            tasks += [asyncio.create_task(listen(i, tokens[i])) for i in range(start, min(start + 50, len(tokens)))]
            await asyncio.sleep(0.05)
        await all_connected.wait()
        conn.send(("ready", errors))
        last_seq = await loop.run_in_executor(None, conn.recv)  # the parent's rounds are done
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(not r or r[-1][0] < last_seq for r in records):
            await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    conn.send(("records", records, errors))


# ------------------------------------------------------------------------------------------- the floor


async def queue_floor(subscribers: int, rounds: int) -> list[float]:
    """Latency of broadcasting to `subscribers` asyncio.Queues, each awaited by its own task."""
    queues = [asyncio.Queue(256) for _ in range(subscribers)]
    samples: list[float] = []

    async def reader(queue: asyncio.Queue) -> None:
        while True:
            sent = await queue.get()
            samples.append(time.monotonic() - sent)

    tasks = [asyncio.create_task(reader(q)) for q in queues]
    await asyncio.sleep(0.01)
    for _ in range(rounds):
        sent = time.monotonic()
        for queue in queues:
            queue.put_nowait(sent)
        await asyncio.sleep(0.05)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return samples


# ------------------------------------------------------------------------------------------- main


def seed(db_path: Path, agents: int) -> tuple[Any, str, list[str]]:
    from agentdesk.server.admin import add_agent, add_team, issue_agent_token
    from agentdesk.server.db import make_engine, migrate, session

    engine = make_engine(f"sqlite:///{db_path}")
    migrate(engine)
    tokens = []
    with session(engine) as db:
        team = add_team(db, "Bench")
        for n in range(agents):
            agent = add_agent(db, f"Agent {n}", f"agent{n}@bench.agentdesk.test", "Bench")
            tokens.append(issue_agent_token(db, agent.email))
    return engine, team.id, tokens


def commit_change(engine: Any, team_id: str) -> tuple[int, float]:
    """One change-log entry (a team upsert), committed; returns its seq and when the commit returned."""
    import sqlalchemy as sa

    from agentdesk.server.changes import begin_write, record_upsert
    from agentdesk.server.db import session
    from agentdesk.server.models import Change, Team

    with session(engine) as db:
        begin_write(db)
        team = db.get(Team, team_id)
        team.last_assigned_id = uuid.uuid4().hex
        record_upsert(db, team)
        db.commit()
        committed = time.monotonic()
        seq = db.execute(sa.select(sa.func.max(Change.seq))).scalar_one()
    return seq, committed


def newest_seq(engine: Any) -> int:
    import sqlalchemy as sa

    from agentdesk.server.models import Change

    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.max(Change.seq))).scalar_one()


def commit_via_api(url: str, token: str, n: int) -> float:
    """Flip an agent's status through the server; returns when the POST was sent (its poke may come before
    the POST's answer: the commit wakes the hub before the response goes out)."""
    import httpx

    sent = time.monotonic()
    response = httpx.post(f"{url}/api/v1/presence", json={"status": ("away", "available")[n % 2]},
                          headers={"Authorization": f"Bearer {token}"}, timeout=30)
    response.raise_for_status()
    return sent


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="sse_bench")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--agents", type=int, default=100, help="agents the subscribers are spread over")
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--gap", type=float, default=0.3, help="seconds between commits")
    parser.add_argument("--servers", type=int, default=1, help="server processes on the one database")
    parser.add_argument("--client", choices=("httpx", "raw"), default="httpx", help="how the clients read the streams")
    parser.add_argument("--commit", choices=("db", "api"), default="db",
                        help="commit straight to the database (as another process) or through the server")
    parser.add_argument("--profile", help="cProfile every thread of the (first) server into this .pstats file")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="adk-sse-bench-") as tmp:
        db_path = Path(tmp) / "server.sqlite3"
        t0 = time.perf_counter()
        engine, team_id, tokens = seed(db_path, args.agents)
        log(f"seeded a team and {args.agents} agents in {time.perf_counter() - t0:.1f} s")
        servers = [ServerProcess(db_path, profile=args.profile if k == 0 else None) for k in range(args.servers)]
        try:
            urls = [server.url for server in servers]
            ctx = mp.get_context("spawn")
            streams = [tokens[i % len(tokens)] for i in range(args.subscribers)]
            shares = [streams[k :: args.clients] for k in range(args.clients)]
            pipes, procs = [], []
            t0 = time.perf_counter()
            for share in shares:
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=client_process, args=(urls, share, child, args.client), daemon=True)
                proc.start()
                pipes.append(parent)
                procs.append(proc)
            errors: list[str] = []
            for pipe in pipes:
                _, errs = pipe.recv()
                errors += errs
            connect_s = time.perf_counter() - t0
            log(f"{args.subscribers} streams open in {connect_s:.1f} s ({len(errors)} errors)")

            time.sleep(1.0)  # let the connect burst settle
            cpu_before = sum(server.cpu() for server in servers)
            commits: dict[int, float] = {}
            for n in range(args.rounds):
                if args.commit == "api":
                    committed = commit_via_api(urls[0], tokens[0], n)
                    seq = newest_seq(engine)
                else:
                    seq, committed = commit_change(engine, team_id)
                commits[seq] = committed
                time.sleep(args.gap + (n % 5) * 0.013)  # not in step with the poll
            server_cpu = sum(server.cpu() for server in servers) - cpu_before
            last_seq = max(commits)
            for pipe in pipes:
                pipe.send(last_seq)
            records: list[list[tuple[int, float]]] = []
            for pipe in pipes:
                _, recs, errs = pipe.recv()
                records += recs
                errors += errs
            for proc in procs:
                proc.join(timeout=10)
        finally:
            for server in servers:
                server.stop()

        latencies, missed, per_round = [], 0, {seq: [] for seq in commits}
        for stream in records:
            for seq, committed in commits.items():
                got = next((at for s, at in stream if s >= seq and at >= committed), None)
                if got is None:
                    missed += 1
                else:
                    latencies.append(got - committed)
                    per_round[seq].append(got - committed)
        floor = asyncio.run(queue_floor(args.subscribers, args.rounds))
        engine.dispose()

    result = {
        "subscribers": args.subscribers,
        "agents": args.agents,
        "server_processes": args.servers,
        "client_processes": args.clients,
        "client": args.client,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "load_avg_1m_before_after": [load_before, os.getloadavg()[0]],  # other work on the machine skews all of this
        "poll_interval_ms": 50,
        "commit": args.commit,
        "connect_s": round(connect_s, 2),
        "latency_ms": percentiles(latencies),
        "worst_round_p99_ms": max((percentiles(v)["p99"] or 0) for v in per_round.values()),
        # per round: the first subscriber's latency (the poll's wait + reading the database + the hub's
        # hand-out) and the spread to the last one (sending 1000 streams + the clients' parsing)
        "first_poke_ms": percentiles([min(v) for v in per_round.values() if v]),
        "round_spread_ms": percentiles([max(v) - min(v) for v in per_round.values() if v]),
        "missed": missed,
        "errors": errors[:5],
        "server_cpu_s_during_rounds": round(server_cpu, 2),
        "floor_in_process_queue_ms": percentiles(floor),
        "target_p99_ms": TARGET_P99_MS,
        "target_met": bool(latencies) and missed == 0 and percentiles(latencies)["p99"] <= TARGET_P99_MS,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
