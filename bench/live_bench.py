"""Live bench (issue 4 item 11): server-commit-to-client-applied latency for desks on the live stream.

    python bench/live_bench.py [--clients 200] [--procs 4] [--messages 15] [--rate 0.5] [--quick] [--profile OUT]

A real server (bench/_serve.py: create_app over SQLite in a temp dir, uvicorn in its own process, the
default hub polling every 0.05 s) is seeded with one team of `--clients` agents with tokens and an
integration token. `--procs` client processes run `--clients` real `SyncEngine`s between them, each with
its own `SyncClient`, its own SQLite cache file (copied from one bootstrapped template: the team's data is
the same for every agent; each engine sets its own identity on its first round) and its own live stream:
SSE subscription → poke → cache apply, the desk's code path: a caught-up desk applies the page its poke
carries (server/events.py), any other pulls. Engines poll every 30 s (60 s while live), so only the live
path explains a row arriving sooner.

This process then posts `--messages` inbound SMS through the integration API (POST
/api/v1/interactions/inbound) at `--rate` per second. Latency = the row being in a client's cache (seen
from the engine's status callback, right after the pull's transaction commits) − the POST returning, per
client per message (CLOCK_MONOTONIC, the same clock in every process on Linux). Also reported: the same
clock to the poke reaching each engine's stream thread (the hub's share), and the time each engine takes
to stop (stream closed).

Floor, measured in the same run first: one engine in one client process, same messages and rate — the
pipeline with nobody else pulling. `ratio_p95` = p95 with all clients / the floor's p95.

Prints one JSON object on stdout; progress on stderr. Target: p95 <= 250 ms with 200 clients.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (puts src/ on sys.path)
from _common import ServerProcess, cpu_seconds, log, percentiles

TARGET_P95_MS = 250.0
TEXT = "live-bench message "  # + the message number: how a client recognises each row


# ------------------------------------------------------------------------------------------- clients


def client_process(url: str, desks: list[tuple[str, str]], conn: Any) -> None:
    """Run one engine per (token, cache path) until the parent says how many messages to expect."""
    from agentdesk.sync.client import SyncClient
    from agentdesk.sync.engine import SyncEngine

    class TimedEngine(SyncEngine):
        """The real engine; it also notes when each poke reached its stream thread."""

        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, **kw)
            self.pokes: list[tuple[int, float]] = []
            self.pulls = 0
            self.pages = 0

        def pull(self, cache: Any) -> bool:
            self.pulls += 1
            return super().pull(cache)

        def apply_pages(self, cache: Any) -> tuple[int, bool]:
            reached, applied = super().apply_pages(cache)
            self.pages += applied
            return reached, applied

        def _on_poke(self, seq: int) -> None:
            self.pokes.append((seq, time.monotonic()))
            super()._on_poke(seq)

    engines: list[TimedEngine] = []
    seen: list[dict[int, float]] = []
    for token, cache_path in desks:
        engine = TimedEngine(Path(cache_path), SyncClient(url, token, timeout=30), poll_interval=30.0, live_poll_interval=60.0)
        seen.append({})
        engine.on_status = _watcher(cache_path, seen[-1])
        engines.append(engine)
    for start in range(0, len(engines), 10):  # a burst of 200 connects would only measure the connect storm
        for engine in engines[start : start + 10]:
            engine.start()
        time.sleep(0.1)
    deadline = time.monotonic() + 120
    while not all(e.caught_up and e.status.live for e in engines) and time.monotonic() < deadline:
        time.sleep(0.05)
    conn.send(("ready", sum(not (e.caught_up and e.status.live) for e in engines)))
    pulls_before, pages_before = sum(e.pulls for e in engines), sum(e.pages for e in engines)
    expected = conn.recv()  # message numbers the parent posted
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(sum(n in s for n in expected) < len(expected) for s in seen):
        time.sleep(0.05)
    pulls = sum(e.pulls for e in engines) - pulls_before
    pages = sum(e.pages for e in engines) - pages_before
    stops = []
    for engine in engines:
        began = time.monotonic()
        engine.stop(timeout=5)
        stops.append(time.monotonic() - began)
    stuck = sum(e._thread is not None and e._thread.is_alive() for e in engines)
    conn.send(("records", [dict(s) for s in seen], [e.pokes for e in engines], stops, stuck, pulls, pages))


def _watcher(cache_path: str, seen: dict[int, float]) -> Any:
    """An on_status callback: after a round that changed the cache, note which bench messages are in it now."""
    state: dict[str, Any] = {"db": None, "rowid": 0}

    def on_status(status: Any) -> None:
        if not status.changed:
            return
        now = time.monotonic()
        if state["db"] is None:  # opened in the engine's thread, which is the only one calling us
            state["db"] = sqlite3.connect(cache_path)
        rows = state["db"].execute(
            "SELECT rowid, text FROM interactions WHERE rowid > ? AND text LIKE ?", (state["rowid"], TEXT + "%")
        ).fetchall()
        for rowid, text in rows:
            state["rowid"] = max(state["rowid"], rowid)
            seen.setdefault(int(text.removeprefix(TEXT)), now)

    return on_status


# ------------------------------------------------------------------------------------------- one phase


def run_phase(url: str, db_path: Path, tokens: list[str], template: Path, tmp: Path, *, procs: int,
              messages: int, rate: float, integration: str, server: ServerProcess, first: int) -> dict[str, Any]:
    """`len(tokens)` engines in `procs` processes; `messages` posts at `rate`/s; latencies per client."""
    import httpx

    caches = []
    for i in range(len(tokens)):
        path = tmp / f"cache-{first}-{i}.sqlite3"
        shutil.copyfile(template, path)
        caches.append(str(path))
    desks = list(zip(tokens, caches, strict=True))
    ctx = mp.get_context("spawn")
    pipes, children = [], []
    t0 = time.perf_counter()
    for k in range(procs):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=client_process, args=(url, desks[k::procs], child), daemon=True)
        proc.start()
        pipes.append(parent)
        children.append(proc)
    not_live = sum(pipe.recv()[1] for pipe in pipes)
    connect_s = time.perf_counter() - t0
    log(f"{len(tokens)} engines live in {connect_s:.1f} s ({not_live} not live)")
    time.sleep(1.0)  # let the connect burst settle

    posted: dict[int, tuple[float, int]] = {}  # message number -> (POST returned, change seq then)
    post_ms: list[float] = []
    numbers = list(range(first, first + messages))
    cpu_before = server.cpu()
    clients_cpu_before = sum(cpu_seconds(proc.pid) for proc in children)
    began = time.monotonic()
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {integration}"}, timeout=30) as crm, \
            sqlite3.connect(db_path) as db:
        for n, number in enumerate(numbers):
            time.sleep(max(0.0, began + n / rate - time.monotonic()))  # steady: on schedule, not after the last
            body = {"channel": "sms", "address": "+14155550123", "text": f"{TEXT}{number}", "external_id": uuid.uuid4().hex}
            sent = time.monotonic()
            response = crm.post("/api/v1/interactions/inbound", json=body)
            returned = time.monotonic()
            response.raise_for_status()
            post_ms.append(returned - sent)
            posted[number] = (returned, db.execute("SELECT max(seq) FROM change").fetchone()[0])
    server_cpu = server.cpu() - cpu_before
    wall = time.monotonic() - began
    clients_cpu = sum(cpu_seconds(proc.pid) for proc in children) - clients_cpu_before
    for pipe in pipes:
        pipe.send(numbers)
    seen: list[dict[int, float]] = []
    pokes: list[list[tuple[int, float]]] = []
    stops: list[float] = []
    stuck = pulls = pages = 0
    for pipe in pipes:
        _, s, p, st, stk, pl, pg = pipe.recv()
        seen += s
        pokes += p
        stops += st
        stuck += stk
        pulls += pl
        pages += pg
    server_cpu_all = server.cpu() - cpu_before  # the posting window and the tail of pulls after it
    for proc in children:
        proc.join(timeout=10)

    latencies, poke_latencies, missed = [], [], 0
    for got, heard in zip(seen, pokes, strict=True):
        for number, (returned, seq) in posted.items():
            if number in got:
                latencies.append(got[number] - returned)
            else:
                missed += 1
            poke = min((at for s, at in heard if s >= seq), default=None)
            if poke is not None:
                poke_latencies.append(poke - returned)
    return {
        "clients": len(tokens),
        "client_processes": procs,
        "messages": messages,
        "rate_per_s": rate,
        "connect_s": round(connect_s, 2),
        "not_live": not_live,
        "latency_ms": percentiles(latencies),
        "poke_ms": percentiles(poke_latencies),
        "post_ms": percentiles(post_ms),
        "missed": missed,
        "server_cpu_share": round(server_cpu / wall, 2),  # of one core, while posting
        "client_processes_cpu_share": round(clients_cpu / wall, 2),
        # how the engines caught up while the messages went out: pull requests, and pages carried by pokes
        "pulls_per_message_per_client": round(pulls / (messages * len(tokens)), 2),
        "page_pokes_per_message_per_client": round(pages / (messages * len(tokens)), 2),
        # the server's CPU for one message reaching one desk: its share of the post, the poke, any pull
        "server_cpu_ms_per_message_per_client": round(1000 * server_cpu_all / (messages * len(tokens)), 3),
        "stop_ms": percentiles(stops),
        "engines_still_running_after_stop": stuck,
    }


# ------------------------------------------------------------------------------------------- main


def seed(db_path: Path, agents: int) -> tuple[list[str], str]:
    from agentdesk.server.admin import add_agent, add_team, issue_agent_token
    from agentdesk.server.auth import issue_integration_token
    from agentdesk.server.db import make_engine, migrate, session

    engine = make_engine(f"sqlite:///{db_path}")
    migrate(engine)
    tokens = []
    with session(engine) as db:
        add_team(db, "Bench")
        for n in range(agents):
            agent = add_agent(db, f"Agent {n}", f"agent{n}@bench.agentdesk.test", "Bench")
            tokens.append(issue_agent_token(db, agent.email))
        integration = issue_integration_token(db, "bench")
        db.commit()
    engine.dispose()
    return tokens, integration


def bootstrap_template(url: str, token: str, path: Path) -> None:
    from agentdesk.store.cache import Cache
    from agentdesk.sync.client import SyncClient
    from agentdesk.sync.engine import SyncEngine

    cache = Cache(path)
    engine = SyncEngine(path, SyncClient(url, token), live=False)
    engine.sync_once(cache)
    engine.client.close()
    cache.close()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="live_bench")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--procs", type=int, default=4, help="client processes")
    parser.add_argument("--messages", type=int, default=15)
    parser.add_argument("--rate", type=float, default=0.5, help="inbound messages per second")
    parser.add_argument("--quick", action="store_true", help="50 clients, 2 processes, 10 messages")
    parser.add_argument("--profile", help="cProfile every server thread into this .pstats file")
    args = parser.parse_args(argv)
    if args.quick:
        args.clients, args.procs, args.messages = 50, 2, 10

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="adk-live-bench-") as tmp_name:
        tmp = Path(tmp_name)
        db_path = tmp / "server.sqlite3"
        t0 = time.perf_counter()
        tokens, integration = seed(db_path, args.clients)
        log(f"seeded a team and {args.clients} agents in {time.perf_counter() - t0:.1f} s")
        with ServerProcess(db_path, profile=args.profile) as server:
            # a first message, so the template already holds a customer and conversation like the ones to come
            import httpx

            httpx.post(f"{server.url}/api/v1/interactions/inbound", headers={"Authorization": f"Bearer {integration}"},
                       json={"channel": "sms", "address": "+14155550123", "text": "hello", "external_id": "first"},
                       timeout=30).raise_for_status()
            template = tmp / "template.sqlite3"
            bootstrap_template(server.url, tokens[0], template)
            common = {"messages": args.messages, "rate": args.rate, "integration": integration, "server": server}
            log("floor: one engine")
            floor = run_phase(server.url, db_path, tokens[:1], template, tmp, procs=1, first=0, **common)
            log(f"{args.clients} engines in {args.procs} processes")
            loaded = run_phase(server.url, db_path, tokens, template, tmp, procs=args.procs, first=10_000, **common)

    p95, floor_p95 = loaded["latency_ms"]["p95"], floor["latency_ms"]["p95"]
    result = {
        "cpus": os.cpu_count(),
        "load_avg_1m_before_after": [load_before, os.getloadavg()[0]],  # other work on the machine skews all of this
        "hub_poll_interval_ms": 50,
        "floor_one_client": floor,
        **loaded,
        "ratio_p95": round(p95 / floor_p95, 2) if p95 is not None and floor_p95 else None,
        "target_p95_ms": TARGET_P95_MS,
        "meets_target": p95 is not None and loaded["missed"] == 0 and p95 <= TARGET_P95_MS,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
