"""SSE bench (issue 3 item 5): commit-to-poke latency for 1000 live subscribers of one server process.

    python bench/sse_bench.py [--subscribers 1000] [--agents 100] [--clients 4] [--rounds 20] [--gap 0.3]
                              [--servers 1] [--client raw|httpx] [--client-sched batch|normal] [--commit db|api]

A real server (bench/_serve.py: create_app over SQLite in a temp dir, uvicorn in its own process, the
default hub polling every 0.05 s) is seeded with a team and `--agents` agents with tokens through
server.admin. `--clients` client processes open `--subscribers` SSE streams between them. Then this
process commits one change-log entry per round, straight to the database (as another server process
would), `--rounds` times, `--gap` seconds apart, and every subscriber notes when the poke for it arrives.
Latency = poke read by its client - commit returned, per subscriber per round (CLOCK_MONOTONIC, the same
clock in every process on Linux). The target is judged on it.

The clients (`--client raw`, the default) are real HTTP/1.1 SSE clients, one keep-alive connection per
stream, kept light so that the load generator, which shares the server's 2 cores, does not slow what it
measures: a bare non-blocking socket read with `loop.add_reader` + recvmsg, the response head checked
(200, chunked), the chunked body decoded, SSE framing parsed (id/event/data lines, comments, LF or CRLF)
and each poke's JSON read (its seq must equal its id). Each read also brings the kernel's receive timestamp
(SO_TIMESTAMPNS), so `arrival_ms` (commit -> the poke's last byte in the client's socket) is the server's
share whatever the clients were doing, and `latency_ms - arrival_ms` is the load generator's own delay.
`--client httpx` reads with httpx + httpx-sse (what the desk uses; ~3x the client CPU, no kernel
timestamp). The client processes run under SCHED_BATCH (`--client-sched`): on a 2-core machine each of
the server's socket writes wakes a client, and a normal-policy client woken that way preempts the server
in the middle of its fan-out, which remote desks would not do. Reported with the CPU of both sides:
`server_cpu_us_per_poke_per_subscriber` (net of the idle hub's poll, user and system split given),
`server_preempted_per_round` (involuntary context switches), `clients_cpu_share_of_a_core`.

`--commit api` commits through the (first) server instead: an agent's status flips between available and
away (POST /api/v1/presence: a change-log entry and a presence signal), and latency counts from the POST
being sent (so it includes the request's own handling). A commit made by the server process wakes its hub
at once, where one made by another process waits for the hub's next poll (every 0.05 s): `db` measures the
multi-process path, `api` the usual one.

`--servers K` runs K server processes on the one SQLite file (the multi-process design: each polls the
database itself) and spreads the subscribers over them.

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
import socket
import struct
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (puts src/ on sys.path)
from _common import ServerProcess, cpu_seconds, log, percentiles

TARGET_P99_MS = 100.0


# ------------------------------------------------------------------------------------------- clients


def client_process(urls: list[str], tokens: list[str], conn: Any, kind: str, batch: bool) -> None:
    if batch:  # see --client-sched: woken by the server's writes, do not take its CPU from it
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    asyncio.run(_client_main(urls, tokens, conn, kind))


SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux's value; Python < 3.14 does not name it
_TIMESTAMP_SPACE = socket.CMSG_SPACE(16)  # one struct timespec


class _SseStream:
    """One real SSE client over HTTP/1.1 on a bare non-blocking socket: the response head (200, chunked), the
    chunked body, SSE framing (`id:`/`event:`/`data:` lines, comments, LF or CRLF) and each poke's JSON.

    Each read also brings the kernel's receive timestamp of its bytes (SO_TIMESTAMPNS), so a poke is timed
    twice: when its last byte reached this machine's socket (`arrived`: the server's share, whatever this
    process was busy with) and when this process read it (`read`: what a desk would see, including the load
    generator's own scheduling)."""

    def __init__(self, sock: socket.socket, on_poke: Any) -> None:
        self.sock, self.on_poke = sock, on_poke
        self.raw = b""  # undecoded HTTP bytes
        self.body = b""  # decoded SSE text not yet ending in a blank line
        self.head_done = False
        self.chunk_left = -1  # bytes left of the current chunk (+2 for its CRLF); -1: a size line is next
        self.done = asyncio.get_running_loop().create_future()

    def readable(self) -> None:
        try:
            data, ancillary, _, _ = self.sock.recvmsg(65536, _TIMESTAMP_SPACE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            return self._finish(exc)
        if not data:
            return self._finish(ConnectionError("the server closed the stream"))
        read_at = time.monotonic()
        arrived_at = read_at
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = struct.unpack("qq", value[:16])
                arrived_at = sec + nsec / 1e9 - (time.time() - read_at)  # realtime -> monotonic
        try:
            self._feed(data, arrived_at, read_at)
        except Exception as exc:  # noqa: BLE001 - a protocol error ends this stream, reported to the parent
            self._finish(exc)

    def _finish(self, result: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(result)

    def _feed(self, data: bytes, arrived_at: float, read_at: float) -> None:
        self.raw += data
        if not self.head_done:
            end = self.raw.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.raw = self.raw[:end].decode("latin-1").lower(), self.raw[end + 4 :]
            if not head.startswith("http/1.1 200") or "transfer-encoding: chunked" not in head:
                raise ValueError(f"unexpected response: {head.splitlines()[0]}")
            self.head_done = True
        while self.raw:
            if self.chunk_left < 0:
                line_end = self.raw.find(b"\r\n")
                if line_end < 0:
                    return
                size = int(self.raw[:line_end].split(b";")[0], 16)
                if size == 0:
                    raise ConnectionError("the server ended the stream")
                self.raw, self.chunk_left = self.raw[line_end + 2 :], size + 2
            take = self.raw[: self.chunk_left]
            self.raw, self.chunk_left = self.raw[len(take) :], self.chunk_left - len(take)
            if self.chunk_left == 0:
                take, self.chunk_left = take[:-2], -1
            elif self.chunk_left == 1:
                take = take[:-1]  # the CR of the chunk's CRLF
            self.body += take
        self._events(arrived_at, read_at)

    def _events(self, arrived_at: float, read_at: float) -> None:
        text = self.body.replace(b"\r\n", b"\n")
        cut = text.rfind(b"\n\n")
        if cut < 0:
            return
        self.body = text[cut + 2 :]
        for block in text[:cut].split(b"\n\n"):
            fields: dict[bytes, bytes] = {}
            for line in block.split(b"\n"):
                if line and not line.startswith(b":"):
                    name, _, value = line.partition(b":")
                    fields[name] = value[1:] if value.startswith(b" ") else value
            if fields.get(b"event") == b"poke":
                seq = json.loads(fields[b"data"])["seq"]
                if int(fields[b"id"]) != seq:
                    raise ValueError(f"poke id {fields[b'id']!r} != seq {seq}")
                self.on_poke(seq, arrived_at, read_at)


async def _raw_stream(url: str, token: str, on_poke: Any) -> None:
    """GET /api/v1/events on a bare socket, read with `loop.add_reader` + recvmsg (see _SseStream)."""
    loop = asyncio.get_running_loop()
    host, port = url.rsplit("//", 1)[1].split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.setblocking(False)
    stream = _SseStream(sock, on_poke)
    try:
        await loop.sock_connect(sock, (host, int(port)))
        await loop.sock_sendall(sock, f"GET /api/v1/events HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}"
                                      "\r\nAccept: text/event-stream\r\n\r\n".encode())
        loop.add_reader(sock.fileno(), stream.readable)
        await stream.done
    finally:
        loop.remove_reader(sock.fileno())
        sock.close()


async def _client_main(urls: list[str], tokens: list[str], conn: Any, kind: str) -> None:
    import httpx
    from httpx_sse import aconnect_sse

    loop = asyncio.get_running_loop()
    records: list[list[tuple[int, float, float]]] = [[] for _ in tokens]  # per stream: (poke seq, arrived, read)
    connected = 0
    all_connected = asyncio.Event()
    errors: list[str] = []

    def on_poke(i: int, seq: int, arrived: float, read: float) -> None:
        nonlocal connected
        records[i].append((seq, arrived, read))
        if len(records[i]) == 1:
            connected += 1
            if connected == len(tokens):
                all_connected.set()

    async def listen(i: int, token: str) -> None:
        url = urls[i % len(urls)]
        try:
            if kind == "raw":
                await _raw_stream(url, token, lambda seq, arrived, read: on_poke(i, seq, arrived, read))
                return
            headers = {"Authorization": f"Bearer {token}"}
            async with aconnect_sse(http, "GET", f"{url}/api/v1/events", headers=headers) as source:
                async for event in source.aiter_sse():
                    if event.event == "poke":
                        now = time.monotonic()  # no kernel timestamp here: arrived = read
                        on_poke(i, int(event.id), now, now)
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


def user_system_cpu(pids: list[int]) -> tuple[float, float]:
    """User and system (kernel: socket writes, mostly) CPU seconds of these processes, from /proc."""
    user = system = 0.0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        user, system = user + int(fields[11]), system + int(fields[12])
    tick = os.sysconf("SC_CLK_TCK")
    return user / tick, system / tick


def involuntary_switches(pids: list[int]) -> int:
    """How often these processes were preempted (a woken process took their CPU), from /proc."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            total += sum(int(line.split()[1]) for line in f if line.startswith("nonvoluntary_ctxt_switches"))
    return total


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
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw", help="how the clients read the streams")
    parser.add_argument("--client-sched", choices=("batch", "normal"), default="batch",
                        help="the client processes' scheduling policy (batch: no wake-up preemption of the server)")
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
                proc = ctx.Process(target=client_process, args=(urls, share, child, args.client, args.client_sched == "batch"),
                                   daemon=True)
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
            idle_from, idle_cpu = time.monotonic(), sum(server.cpu() for server in servers)
            time.sleep(2.0)  # the servers' idle CPU (the hub's poll), taken off their CPU per poke
            idle_cpu_per_s = (sum(server.cpu() for server in servers) - idle_cpu) / (time.monotonic() - idle_from)
            rounds_from = time.monotonic()
            cpu_before = sum(server.cpu() for server in servers)
            split_before = user_system_cpu([server.pid for server in servers])
            preempted_before = involuntary_switches([server.pid for server in servers])
            clients_cpu_before = sum(cpu_seconds(proc.pid) for proc in procs)
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
            split_after = user_system_cpu([server.pid for server in servers])
            preempted = involuntary_switches([server.pid for server in servers]) - preempted_before
            server_user, server_system = (after - before for after, before in zip(split_after, split_before, strict=True))
            clients_cpu = sum(cpu_seconds(proc.pid) for proc in procs) - clients_cpu_before
            rounds_s = time.monotonic() - rounds_from
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

        latencies, arrivals, missed, per_round = [], [], 0, {seq: [] for seq in commits}
        for stream in records:
            for seq, committed in commits.items():
                got = next(((arrived, read) for s, arrived, read in stream if s >= seq and read >= committed), None)
                if got is None:
                    missed += 1
                else:
                    arrivals.append(max(0.0, got[0] - committed))
                    latencies.append(got[1] - committed)
                    per_round[seq].append(got[1] - committed)
        pokes = args.rounds * args.subscribers
        floor = asyncio.run(queue_floor(args.subscribers, args.rounds))
        engine.dispose()

    result = {
        "subscribers": args.subscribers,
        "agents": args.agents,
        "server_processes": args.servers,
        "client_processes": args.clients,
        "client": args.client,
        "client_sched": args.client_sched,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "load_avg_1m_before_after": [load_before, os.getloadavg()[0]],  # other work on the machine skews all of this
        "poll_interval_ms": 50,
        "commit": args.commit,
        "connect_s": round(connect_s, 2),
        # commit -> the poke read and parsed by its client (the target's figure); `arrival_ms`: -> its last
        # byte in the client's socket (kernel timestamp), which the load generator's own CPU does not delay
        "latency_ms": percentiles(latencies),
        "arrival_ms": percentiles(arrivals),
        "worst_round_p99_ms": max((percentiles(v)["p99"] or 0) for v in per_round.values()),
        # per round: the first subscriber's latency (the poll's wait + reading the database + the hub's
        # hand-out) and the spread to the last one (sending 1000 streams + the clients' parsing)
        "first_poke_ms": percentiles([min(v) for v in per_round.values() if v]),
        "round_spread_ms": percentiles([max(v) - min(v) for v in per_round.values() if v]),
        "missed": missed,
        "errors": errors[:5],
        "server_cpu_s_during_rounds": round(server_cpu, 2),
        "server_user_system_cpu_s_during_rounds": [round(server_user, 2), round(server_system, 2)],
        "server_preempted_per_round": round(preempted / args.rounds, 1),
        "server_idle_cpu_share": round(idle_cpu_per_s, 3),
        # the servers' CPU over the rounds less their idle rate, per poke per subscriber
        "server_cpu_us_per_poke_per_subscriber": round((server_cpu - idle_cpu_per_s * rounds_s) / pokes * 1e6, 1),
        "clients_cpu_s_during_rounds": round(clients_cpu, 2),
        "clients_cpu_share_of_a_core": round(clients_cpu / rounds_s, 3),
        "clients_cpu_us_per_poke": round(clients_cpu / pokes * 1e6, 1),
        "floor_in_process_queue_ms": percentiles(floor),
        "target_p99_ms": TARGET_P99_MS,
        "target_met": bool(latencies) and missed == 0 and percentiles(latencies)["p99"] <= TARGET_P99_MS,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
