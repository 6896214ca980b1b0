"""Server bench (issue 3): N desks syncing steadily against one uvicorn worker, and its peak pull rate.

    python bench/server_bench.py [--quick] [--agents 250] [--teams 2] [--duration 30] [--procs 1] [--profile DIR]
                                 [--steady live|timer|both]

The server: bench/_serve.py in its own process — create_app(make_engine(sqlite:///server.sqlite3)) under
agentdesk.server.run.serve (one uvicorn worker, the same configuration as `agentdesk serve`) over a fresh
database seeded with Core bulk inserts: `--teams` teams, `--agents` agents (each with an API token),
~5,000 conversations with 3 interactions each.

Steady phase, `--steady live` (default): every simulated desk does what sync/engine.py's SyncEngine does
(class _LiveDesk): it holds the live stream (GET /api/v1/events, read with a minimal SSE reader), and its agent
writes one note a second (jittered start), which the engine pushes at once (the whole outbox; it pulls after
the push only while the stream is down); a page poke whose page starts at the desk's cursor is applied without a request, any other poke (plain,
or a page that does not continue the cursor) makes it pull; the engine's timer (60 s while the stream is up,
5 s while down) and the pull when the stream comes up are kept. So the requests are the engine's: one push per
round, pulls for pokes the pages did not cover (at the engine's page size, 5,000, from the desk's cursor). Reported besides latencies: pulls by reason,
page pokes applied/dropped, notes per push and note-to-ack latency (written -> its push answered).
`--steady timer` is the earlier model (no stream: once a second one pull, then one push of one note);
`--steady both` runs live, then timer, each on a fresh server (the targets are judged on live).
Latency is measured from sending each request to receiving its whole body; `loadgen_loop_lag_ms` is how late
the generator's own event loop ran (part of every latency: on a loaded machine it is not all the server's).

Throughput: closed loop, `--concurrency` requests in flight, for the bare ASGI app (floor: a fixed JSON
body, no routing, served by the same uvicorn configuration) and for the pull endpoint (each request the
next agent's pull from its cursor), after a warm-up. throughput_ratio = pull_rps / bare_rps.

Load generator: asyncio + httpx.AsyncClient, one keep-alive connection per simulated agent (or per
in-flight slot), in `--procs` processes (this script with --worker). The machine has 2 cores: the server gets one.
CPU utilisation of the server and of the load generator is reported so a saturated generator shows.

What-if switches (--tcp-nodelay, --pool-size N) run a candidate fix without
touching src/; the JSON says so under config.what_if. Without them the server is exactly what `agentdesk serve` runs.

Prints one JSON object on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import _common
from _common import CpuWindow, ServerProcess, log, percentiles, seed_world

TARGET_PUSH_P99_MS = 100.0
TARGET_THROUGHPUT_RATIO = 0.5
KEEPS_UP_NOTES_PER_PUSH = 1.1  # live mode: one note a second per desk, so ~1 note per push when the server keeps up
PULL = "/api/v1/sync/pull"
PUSH = "/api/v1/sync/push"
PULL_PAGE = 5000  # sync/engine.py's (not imported: the load generator's processes stay light)


# ------------------------------------------------------------------------------------------- load generator


def _cursor_of(body: bytes) -> str | None:
    """The page's cursor without parsing the whole page: `"cursor":"…"` follows the changes list."""
    at = body.rfind(b'"cursor":"')
    if at < 0:
        return None
    start = at + len(b'"cursor":"')
    return body[start:body.index(b'"', start)].decode()


async def _steady(clients: list[Any], spec: dict[str, Any], out: dict[str, Any]) -> None:
    import httpx

    loop = asyncio.get_running_loop()
    interval, texts = spec["interval"], spec["texts"]
    start_in = max(0.0, spec["start_at"] - time.time())
    t_start = loop.time() + start_in
    t_end = t_start + spec["duration"]
    errors: Counter[str] = out["errors"]
    pull_lat, push_lat = out["pull_lat"], out["push_lat"]

    def in_window(now: float, kind: str) -> None:
        """Answers inside [first second over, end]: every agent has started, none has stopped."""
        if t_start + interval <= now <= t_end:
            out["window_done"] += 1
            out["window_" + kind] += 1

    async def agent(a: dict[str, Any], client: Any, rng: random.Random) -> None:
        headers = {"Authorization": f"Bearer {a['token']}"}
        conversations = spec["conversations"][a["team"]]
        await asyncio.sleep(max(0.0, t_start - loop.time()) + rng.uniform(0, interval))  # jittered start
        next_tick = loop.time()
        while next_tick < t_end:
            t0 = time.perf_counter()
            try:
                r = await client.get(PULL, params={"cursor": a["cursor"], "limit": 1000}, headers=headers)
                if r.status_code == 200:
                    pull_lat.append(time.perf_counter() - t0)
                    in_window(loop.time(), "pulls")
                    body = r.content
                    a["cursor"] = _cursor_of(body) or a["cursor"]
                    out["changes_pulled"] += body.count(b'"seq":')
                else:
                    errors[f"pull HTTP {r.status_code}"] += 1
            except httpx.HTTPError as exc:
                errors[f"pull {type(exc).__name__}"] += 1
            conversation_id, channel = rng.choice(conversations)
            mutation = {"id": uuid.uuid4().hex, "kind": "note", "args": {
                "conversation_id": conversation_id, "interaction_id": uuid.uuid4().hex, "channel": channel,
                "text": rng.choice(texts)}}
            t0 = time.perf_counter()
            try:
                r = await client.post(PUSH, json={"mutations": [mutation]}, headers=headers)
                if r.status_code == 200:
                    push_lat.append(time.perf_counter() - t0)
                    in_window(loop.time(), "pushes")
                    status = r.json()["results"][0]["status"]
                    out["push_" + status] += 1
                    if status != "applied":
                        errors[f"push {status}"] += 1
                else:
                    errors[f"push HTTP {r.status_code}"] += 1
            except httpx.HTTPError as exc:
                errors[f"push {type(exc).__name__}"] += 1
            out["ticks"] += 1
            next_tick += interval
            now = loop.time()
            if next_tick > now:
                await asyncio.sleep(next_tick - now)
            else:
                out["late_ticks"] += 1
                next_tick = now  # do not pile up missed ticks: the next one starts now

    seed = spec.get("seed", 0)
    await asyncio.gather(*(agent(a, clients[i], random.Random(seed * 100_003 + i)) for i, a in enumerate(spec["agents"])))


class _LiveDesk:
    """One simulated desk in `--steady live`: what sync/engine.py's SyncEngine does, request for request.

    It holds the SSE stream (sync/live.py) and runs the engine's loop: a round (`sync_once`) pushes the outbox,
    applies the page pokes that continue its cursor, and pulls if it pushed, if the round is the timer's or the
    desk's (`wake`), or if a poke announced changes its pages did not bring; between rounds it waits for a wake
    (a poke, the stream coming up, a note written) or the engine's timer (60 s while the stream is up, else
    5 s). The cache's work (applying changes) is not modelled: only what the server sees."""

    LIVE_POLL, POLL = 60.0, 5.0  # SyncEngine's live_poll_interval and the default [sync] poll_interval

    def __init__(self, a: dict[str, Any], client: Any, url: str, out: dict[str, Any], in_window: Any) -> None:
        self.a, self.client, self.url, self.out, self.in_window = a, client, url, out, in_window
        self.headers = {"Authorization": f"Bearer {a['token']}"}
        self.outbox: list[tuple[dict[str, Any], float]] = []  # (mutation, when the agent wrote it)
        self.pages: deque[tuple[int, str, str]] = deque(maxlen=16)  # page pokes' (seq, after, cursor)
        self.poked_seq = self.pulled_seq = -1
        self.live_up = False
        self.wake, self.poll_asked = asyncio.Event(), False
        self.last_seq: int | None = None

    def ask(self) -> None:
        """SyncEngine.wake(): a round that pulls (the stream came up or went down)."""
        self.poll_asked = True
        self.wake.set()

    def send(self) -> None:
        """SyncEngine.wake(pull=False), the desk's after a local action: a round that pushes; it pulls only while
        the stream is down (with it up, the push's page poke brings the answer)."""
        self.poll_asked |= not self.live_up
        self.wake.set()

    async def run(self, t_end: float) -> None:
        """SyncEngine.run until `t_end`."""
        loop = asyncio.get_running_loop()
        poll = True
        while loop.time() < t_end:
            self.wake.clear()
            if self.poll_asked:
                self.poll_asked, poll = False, True
            await self.sync_once(poll)
            delay = self.LIVE_POLL if self.live_up else self.POLL
            try:
                await asyncio.wait_for(self.wake.wait(), min(delay, max(0.0, t_end - loop.time())))
                poll = False
            except TimeoutError:
                poll = True
                self.out["pull_timer"] += loop.time() < t_end

    async def sync_once(self, poll: bool) -> None:
        poked = self.poked_seq
        pushed = await self.push()
        reached = self.apply_pages()
        if (pushed and not self.live_up) or poll or max(reached, self.pulled_seq) < poked:
            why = "after_push" if pushed else "asked" if poll else "poke"
            while await self.pull(why):
                pass
        self.pulled_seq = max(self.pulled_seq, poked, reached)

    def apply_pages(self) -> int:
        reached = -1
        while self.pages:
            seq, after, cursor = self.pages.popleft()
            if cursor == self.a["cursor"]:
                reached = seq
            elif after == self.a["cursor"]:
                self.a["cursor"], reached = cursor, seq
                self.out["pages_applied"] += 1
            else:
                self.out["pages_dropped"] += 1
        return reached

    async def _answer(self, kind: str, request: Awaitable[Any]) -> tuple[Any, float] | None:
        """The request's 200 answer and the seconds it took; None (an error of `kind`, counted) otherwise."""
        import httpx

        t0 = time.perf_counter()
        try:
            r = await request
        except httpx.HTTPError as exc:
            self.out["errors"][f"{kind} {type(exc).__name__}"] += 1
            return None
        if r.status_code != 200:
            self.out["errors"][f"{kind} HTTP {r.status_code}"] += 1
            return None
        return r, time.perf_counter() - t0

    async def pull(self, why: str) -> bool:
        """One pull request; True if the page says there is more."""
        params = {"cursor": self.a["cursor"], "limit": PULL_PAGE}
        if (answer := await self._answer("pull", self.client.get(PULL, params=params, headers=self.headers))) is None:
            return False
        r, took = answer
        self.out["pull_lat"].append(took)
        self.out["pull_" + why] += 1
        self.in_window("pulls")
        body = r.content
        self.a["cursor"] = _cursor_of(body) or self.a["cursor"]
        self.out["changes_pulled"] += body.count(b'"seq":')
        return body.endswith(b'"has_more":true}')

    async def push(self) -> bool:
        """SyncEngine.push: the whole outbox in one request."""
        if not self.outbox:
            return False
        sending, self.outbox = self.outbox[:500], self.outbox[500:]
        request = self.client.post(PUSH, json={"mutations": [m for m, _ in sending]}, headers=self.headers)
        if (answer := await self._answer("push", request)) is None:
            return True
        r, took = answer
        done = time.perf_counter()
        self.out["push_lat"].append(took)
        self.out["note_lat"].extend(done - written for _, written in sending)
        self.in_window("pushes")
        for result in r.json()["results"]:
            self.out["push_" + result["status"]] += 1
            if result["status"] != "applied":
                self.out["errors"][f"push {result['status']}"] += 1
        return True

    # the live stream (sync/live.py): raw HTTP/1.1, chunked, SSE; only pokes matter here

    def on_poke(self, data: str) -> None:
        """LiveStream._dispatch + SyncEngine._on_page/_on_poke, reading only the page's ends."""
        seq = int(data[7:data.index(",") if "," in data else -1])  # {"seq":N,... or {"seq":N}
        self.last_seq = seq
        self.out["pokes"] += 1
        if '"page":' in data:
            after = data[data.index('"after":"') + 9:]
            at = data.rindex('"cursor":"') + 10
            self.pages.append((seq, after[:after.index('"')], data[at:data.index('"', at)]))
            self.out["page_pokes"] += 1
        if seq > max(self.pulled_seq, self.poked_seq):
            self.poked_seq = seq
            self.wake.set()

    async def stream(self, t_end: float) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while loop.time() < t_end:
            try:
                await asyncio.wait_for(self._listen(), max(0.0, t_end - loop.time()))
            except TimeoutError:
                return
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                self.out["errors"][f"stream {type(exc).__name__}"] += 1
            if self.live_up:
                self.live_up = False
                self.ask()
            failures += 1
            await asyncio.sleep(min(30.0, 0.5 * 2 ** (failures - 1)) * random.uniform(0.5, 1.0))

    async def _listen(self) -> None:
        host, port = self.url.rsplit("//", 1)[1].split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        resume = f"Last-Event-ID: {self.last_seq}\r\n" if self.last_seq is not None else ""
        writer.write(f"GET /api/v1/events HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {self.a['token']}\r\n"
                     f"Accept: text/event-stream\r\n{resume}\r\n".encode())
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            status_line = head.split(b"\r\n", 1)[0]
            if not status_line.startswith(b"HTTP/1.1 200") or b"chunked" not in head.lower():
                raise ValueError(f"the stream answered {status_line!r}")
            self.live_up = True
            self.ask()  # SyncEngine._on_live_state(True): pull once
            tail = b""
            while size := int((await reader.readuntil(b"\r\n"))[:-2], 16):
                tail += (await reader.readexactly(size + 2))[:-2]
                *events, tail = tail.split(b"\n\n")
                for event in events:
                    if b"event: poke\n" in event:
                        self.on_poke(event[event.index(b"data: ") + 6:].decode())
        finally:
            writer.close()


async def _live(clients: list[Any], spec: dict[str, Any], out: dict[str, Any]) -> None:
    """`--steady live`: every desk keeps its stream and SyncEngine's loop, and its agent writes one note a second."""
    loop = asyncio.get_running_loop()
    interval, texts = spec["interval"], spec["texts"]
    t_start = loop.time() + max(0.0, spec["start_at"] - time.time())
    t_end = t_start + spec["duration"]

    def in_window(kind: str) -> None:
        if t_start + interval <= loop.time() <= t_end:
            out["window_done"] += 1
            out["window_" + kind] += 1

    async def agent(desk: _LiveDesk, rng: random.Random) -> None:
        conversations = spec["conversations"][desk.a["team"]]
        await asyncio.sleep(max(0.0, t_start - loop.time()) + rng.uniform(0, interval))  # jittered start
        next_note = loop.time()
        while next_note < t_end:
            conversation_id, channel = rng.choice(conversations)
            desk.outbox.append(({"id": uuid.uuid4().hex, "kind": "note", "args": {
                "conversation_id": conversation_id, "interaction_id": uuid.uuid4().hex, "channel": channel,
                "text": rng.choice(texts)}}, time.perf_counter()))
            out["notes"] += 1
            desk.send()
            next_note += interval
            await asyncio.sleep(max(0.0, next_note - loop.time()))

    desks = [_LiveDesk(a, clients[i], spec["url"], out, in_window) for i, a in enumerate(spec["agents"])]
    seed = spec.get("seed", 0)
    # The streams connect (and their desks catch up) before the agents start writing, as desks open before work.
    streams = [asyncio.create_task(desk.stream(t_end)) for desk in desks]
    await asyncio.gather(
        *(desk.run(t_end) for desk in desks),
        *(agent(desk, random.Random(seed * 100_003 + i)) for i, desk in enumerate(desks)),
    )
    await asyncio.gather(*streams)


async def _closed(clients: list[Any], spec: dict[str, Any], out: dict[str, Any]) -> None:
    import httpx

    loop = asyncio.get_running_loop()
    start_in = max(0.0, spec["start_at"] - time.time())
    t_measure = loop.time() + start_in + spec["warmup"]
    t_end = t_measure + spec["duration"]
    agents = spec["agents"]
    errors: Counter[str] = out["errors"]
    lat = out["lat"]
    counter = 0

    async def worker(client: Any) -> None:
        nonlocal counter
        await asyncio.sleep(start_in)
        while loop.time() < t_end:
            counter += 1
            t_sent = loop.time()
            t0 = time.perf_counter()
            try:
                if spec["target"] == "bare":
                    r = await client.get("/")
                    ok = r.status_code == 200
                    _ = r.content
                else:
                    a = agents[counter % len(agents)]
                    r = await client.get(PULL, params={"cursor": a["cursor"], "limit": 1000},
                                         headers={"Authorization": f"Bearer {a['token']}"})
                    ok = r.status_code == 200
                    if ok:
                        a["cursor"] = _cursor_of(r.content) or a["cursor"]
                if not ok:
                    errors[f"HTTP {r.status_code}"] += 1
            except httpx.HTTPError as exc:
                ok = False
                errors[type(exc).__name__] += 1
            t_done = loop.time()
            if ok and t_sent >= t_measure and t_done <= t_end:
                lat.append(time.perf_counter() - t0)

    await asyncio.gather(*(worker(client) for client in clients))


async def _loop_lag(lags: list[float], every: float = 0.01) -> None:
    """How late this generator's event loop wakes (a starved or saturated generator adds that to every latency)."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + every
        await asyncio.sleep(every)
        lags.append(loop.time() - due)


def _cheap_sniffio() -> None:
    """httpcore runs `import sniffio` on every request; without sniffio installed each is a failed import
    (a sys.path scan, ~1 ms here). A stub answering "asyncio" keeps that cost out of the load generator."""
    try:
        import sniffio  # noqa: F401
    except ImportError:
        import types

        stub = types.ModuleType("sniffio")
        stub.current_async_library = lambda: "asyncio"  # type: ignore[attr-defined]
        sys.modules["sniffio"] = stub


async def _run(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one phase. One small httpx.AsyncClient per simulated agent (steady) or per in-flight slot (closed):
    httpcore's pool does O(connections^2) work per request, so one shared pool of 250 connections spends more
    CPU in bookkeeping than in HTTP; every client shares one SSL context and reads nothing from the environment."""
    import ssl

    _cheap_sniffio()
    import httpx

    out: dict[str, Any] = {"errors": Counter(), "pull_lat": [], "push_lat": [], "lat": [], "loop_lag": [], "changes_pulled": 0,
                           "push_applied": 0, "push_duplicate": 0, "push_rejected": 0, "ticks": 0, "late_ticks": 0,
                           "window_done": 0, "window_pulls": 0, "window_pushes": 0, "notes": 0, "note_lat": [], "pokes": 0, "page_pokes": 0,
                           "pages_applied": 0, "pages_dropped": 0, "pull_after_push": 0, "pull_asked": 0,
                           "pull_poke": 0, "pull_timer": 0}
    ssl_context = ssl.create_default_context()

    def new_client() -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=spec["url"], limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                                 timeout=httpx.Timeout(spec["timeout"]), verify=ssl_context, trust_env=False)

    slots = spec["concurrency"] if spec["mode"] == "closed" else len(spec["agents"])
    clients = [new_client() for _ in range(slots)]
    try:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        lag = asyncio.create_task(_loop_lag(out["loop_lag"]))
        await {"timer": _steady, "live": _live, "closed": _closed}[spec["mode"]](clients, spec, out)
        lag.cancel()
        out["wall_s"] = time.perf_counter() - wall0
        out["cpu_s"] = time.process_time() - cpu0
    finally:
        for client in clients:
            await client.aclose()
    out["errors"] = dict(out["errors"])
    out["cursors"] = {a["token"]: a["cursor"] for a in spec["agents"]}
    for key in ("pull_lat", "push_lat", "lat", "note_lat", "loop_lag"):
        out[key] = [round(v, 6) for v in out[key]]
    return out


def worker_main() -> None:
    """--worker: read a phase spec (JSON) on stdin, run it, write the results (JSON) on stdout."""
    spec = json.load(sys.stdin)
    print(json.dumps(asyncio.run(_run(spec))), flush=True)


def run_phase(spec: dict[str, Any], procs: int) -> dict[str, Any]:
    """Run one phase in `procs` load-generator processes (agents and concurrency split among them); merge."""
    procs = max(1, min(procs, len(spec["agents"])))
    children = []
    for i in range(procs):
        part = dict(spec, agents=spec["agents"][i::procs], seed=i,
                    concurrency=spec.get("concurrency", 0) // procs + (i < spec.get("concurrency", 0) % procs))
        child = subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 env=_common.env_with_src(), text=True)
        child.stdin.write(json.dumps(part))
        child.stdin.close()
        children.append(child)
    merged: dict[str, Any] = {"errors": Counter(), "cursors": {}, "wall_s": 0.0, "cpu_s": 0.0}
    for child in children:
        result = json.loads(child.stdout.read())
        if child.wait() != 0:
            raise RuntimeError("a load-generator process failed")
        for key, value in result.items():
            if key == "errors":
                merged["errors"].update(value)
            elif key == "cursors":
                merged["cursors"].update(value)
            elif key == "wall_s":
                merged["wall_s"] = max(merged["wall_s"], value)
            elif isinstance(value, list):
                merged.setdefault(key, []).extend(value)
            else:
                merged[key] = merged.get(key, 0) + value
    merged["errors"] = dict(merged["errors"])
    return merged


# ------------------------------------------------------------------------------------------- phases


def closed_phase(server: ServerProcess, target: str, agents: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    spec = {"mode": "closed", "target": target, "url": server.url, "agents": agents, "concurrency": args.concurrency,
            "timeout": args.timeout, "warmup": args.warmup, "duration": args.max_duration}
    log(f"closed loop on {target}: {args.concurrency} in flight, {args.warmup:g} s warm-up + {args.max_duration:g} s")
    spec["start_at"] = time.time() + 1.0 + 0.3 * args.procs  # every generator process starts together
    window = CpuWindow(server, spec["start_at"] + args.warmup, spec["start_at"] + args.warmup + args.max_duration)
    result = run_phase(spec, args.procs)
    server_cpu = window.util()
    rps = len(result["lat"]) / args.max_duration
    log(f"  {target}: {rps:,.0f} requests/s, server CPU {server_cpu:.0%} of a core, load generator {result['cpu_s'] / result['wall_s']:.0%}")
    for a in agents:
        a["cursor"] = result["cursors"].get(a["token"], a["cursor"])
    return {
        "rps": round(rps, 1),
        "latency_ms": percentiles(result["lat"]),
        "errors": result["errors"],
        "server_cpu_util": round(server_cpu, 2),
        "server_cpu_ms_per_request": round(server_cpu * 1000 / rps, 2) if rps else None,
        "loadgen_cpu_util": round(result["cpu_s"] / result["wall_s"], 2),
    }


STEADY_MODES = {
    "live": "each desk as sync/engine.py runs it: an SSE stream whose page pokes carry the changes; "
            "its agent writes one note a second, pushed at once and followed by a pull, as the engine does",
    "timer": "each desk does one pull (on a 1 s timer) then one push of one note a second, no stream (the old model)",
}


def steady_phase(server: ServerProcess, agents: list[dict[str, Any]], world: Any, texts: list[str], args: argparse.Namespace,
                 mode: str) -> dict[str, Any]:
    spec = {"mode": mode, "url": server.url, "agents": agents, "interval": 1.0, "duration": args.duration,
            "timeout": args.timeout,
            "conversations": world.conversations, "texts": texts}
    log(f"steady ({mode}): {len(agents)} agents, {STEADY_MODES[mode]}, for {args.duration:g} s")
    # Live desks open their streams (and make the pull a stream's start asks for) before their agents write, as
    # desks open before work: a settling time, so 250 desks connecting in the same second is not in the window.
    settle = 2.0 + len(agents) / 100 if mode == "live" else 0.0
    spec["start_at"] = time.time() + 1.0 + 0.3 * args.procs + settle
    window = CpuWindow(server, spec["start_at"] + 1.0, spec["start_at"] + args.duration)
    result = run_phase(spec, args.procs)
    server_cpu = window.util()
    for a in agents:
        a["cursor"] = result["cursors"].get(a["token"], a["cursor"])
    span = args.duration - 1.0  # the window: every agent is running
    achieved, pushes_per_s = result["window_done"] / span, result["window_pushes"] / span
    requests = len(result["pull_lat"]) + len(result["push_lat"])
    errors = sum(result["errors"].values())
    pull, push = percentiles(result["pull_lat"]), percentiles(result["push_lat"])
    log(f"  pull p50/p95/p99 {pull['p50']}/{pull['p95']}/{pull['p99']} ms; push {push['p50']}/{push['p95']}/{push['p99']} ms; "
        f"{achieved:,.0f} requests/s ({pushes_per_s:,.0f} pushes/s of {len(agents)} notes/s written); errors {errors}; "
        f"server CPU {server_cpu:.0%}")
    out = {
        "mode": mode,
        "model": STEADY_MODES[mode],
        "agents": len(agents),
        "duration_s": args.duration,
        "offered_rps": 2 * len(agents) if mode == "timer" else None,  # live: pulls follow from pokes and pushes
        "offered_notes_per_s": len(agents),
        "achieved_rps": round(achieved, 1),
        "pushes_per_s": round(pushes_per_s, 1),
        "pulls_per_s": round(result["window_pulls"] / span, 1),
        "requests_ok": requests,
        "pull_ms": pull,
        "push_ms": push,
        "push_applied": result["push_applied"],
        "changes_pulled": result["changes_pulled"],
        "changes_per_pull": round(result["changes_pulled"] / max(1, len(result["pull_lat"])), 1),
        "errors": errors,
        "error_kinds": result["errors"],
        "server_cpu_util": round(server_cpu, 2),
        "server_cpu_ms_per_request": round(server_cpu * 1000 / achieved, 2) if achieved else None,
        "server_cpu_ms_per_push": round(server_cpu * 1000 / pushes_per_s, 2) if pushes_per_s else None,
        "loadgen_cpu_util": round(result["cpu_s"] / result["wall_s"], 2),
        "loadgen_loop_lag_ms": percentiles(result["loop_lag"]),  # the generator's own lateness, in every latency
    }
    if mode == "timer":
        out.update(ticks=result["ticks"], late_ticks=result["late_ticks"])
    else:
        out.update(
            note_to_ack_ms=percentiles(result["note_lat"]),  # written -> its push answered (waits for a round in flight)
            notes_per_push=round(result["notes"] / max(1, len(result["push_lat"])), 2),
            # per note: an overloaded server gets fewer, fuller pushes (the engine sends its whole outbox)
            server_cpu_ms_per_note=round(server_cpu * 1000 * len(result["push_lat"]) / (pushes_per_s * max(1, result["notes"])), 2)
            if pushes_per_s else None,
            pulls_by_reason={why: result["pull_" + why] for why in ("after_push", "poke", "asked", "timer")},
            pokes=result["pokes"], page_pokes=result["page_pokes"], pages_applied=result["pages_applied"],
            pages_dropped=result["pages_dropped"],
        )
    return out


def sequential_phase(server: ServerProcess, agents: list[dict[str, Any]], world: Any, n: int, args: argparse.Namespace) -> dict[str, Any]:
    """One request at a time, each agent in turn: the server's CPU cost per request with nothing else running,
    and the latency of a lone request (the floor under every figure above)."""
    import httpx

    _cheap_sniffio()
    rng = random.Random(5)
    out: dict[str, Any] = {}
    with httpx.Client(base_url=server.url, timeout=args.timeout, trust_env=False) as http:

        def pull(i: int) -> None:
            a = agents[i % len(agents)]
            r = http.get(PULL, params={"cursor": a["cursor"], "limit": 1000}, headers={"Authorization": f"Bearer {a['token']}"})
            r.raise_for_status()
            a["cursor"] = _cursor_of(r.content) or a["cursor"]

        def push(i: int) -> None:
            a = agents[i % len(agents)]
            conversation_id, channel = rng.choice(world.conversations[a["team"]])
            r = http.post(PUSH, headers={"Authorization": f"Bearer {a['token']}"}, json={"mutations": [{
                "id": uuid.uuid4().hex, "kind": "note", "args": {"conversation_id": conversation_id,
                "interaction_id": uuid.uuid4().hex, "channel": channel, "text": "Called back, left a voicemail."}}]})
            r.raise_for_status()

        def healthz(_i: int) -> None:
            http.get("/healthz").raise_for_status()

        for i in range(len(agents)):  # every cursor to the head first
            pull(i)
        # The idle server is not idle: the live-event hub polls the database (events.py). Its rate is
        # measured first and taken off each figure below ("net"), since slow requests would otherwise
        # carry more of it.
        cpu0, t0 = server.cpu(), time.perf_counter()
        time.sleep(3.0)
        idle = (server.cpu() - cpu0) / (time.perf_counter() - t0)
        out["idle_server_cpu_util"] = round(idle, 3)
        for name, call in (("healthz", healthz), ("pull_at_head", pull), ("push_one_note", push)):
            lat = []
            cpu0, t0 = server.cpu(), time.perf_counter()
            for i in range(n):
                t1 = time.perf_counter()
                call(i)
                lat.append(time.perf_counter() - t1)
            cpu, wall = server.cpu() - cpu0, time.perf_counter() - t0
            out[name] = {"server_cpu_ms": round(cpu / n * 1000, 2),
                         "server_cpu_ms_net": round(max(0.0, cpu - idle * wall) / n * 1000, 2),
                         "latency_ms": percentiles(lat)}
    log(f"sequential (idle server {idle:.1%} of a core): " + "; ".join(
        f"{k} {v['server_cpu_ms_net']} ms server CPU net, p50 {v['latency_ms']['p50']} ms"
        for k, v in out.items() if isinstance(v, dict)))
    return out


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="server_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small version (< 60 s) for a smoke run")
    parser.add_argument("--agents", type=int, help="simulated agents (default 250; quick 50)")
    parser.add_argument("--teams", type=int, default=2, help="teams the agents are spread over (default 2)")
    parser.add_argument("--conversations", type=int, help="conversations (default 5,000; quick 1,000)")
    parser.add_argument("--duration", type=float, help="steady phase seconds (default 30; quick 6)")
    parser.add_argument("--max-duration", type=float, help="closed-loop measuring seconds (default 10; quick 3)")
    parser.add_argument("--warmup", type=float, help="closed-loop warm-up seconds (default 3; quick 1)")
    parser.add_argument("--concurrency", type=int, default=64, help="closed-loop requests in flight (default 64)")
    parser.add_argument("--procs", type=int, default=1, help="load-generator processes (default 1)")
    parser.add_argument("--timeout", type=float, help="per-request timeout in seconds; a slower answer is an error (default 30; quick 5)")
    parser.add_argument("--steady", choices=("live", "timer", "both"), default="live",
                        help="steady-phase desk model: live (the real engine: stream + page pokes; default), "
                             "timer (the old model: pull + push every second, no stream), or both in turn")
    parser.add_argument("--profile", type=Path, help="cProfile the server (all threads) into DIR (slower; figures not comparable)")
    parser.add_argument("--tcp-nodelay", action="store_true",
                        help="what-if: serve on a proto=IPPROTO_TCP socket so TCP_NODELAY is set (see bench/_serve.py)")
    parser.add_argument("--pool-size", type=int, help="what-if: the server's database pool holds N connections (no overflow)")
    args = parser.parse_args(argv)
    n_agents = args.agents or (50 if args.quick else 250)
    n_conversations = args.conversations or (1_000 if args.quick else 5_000)
    args.duration = args.duration or (6.0 if args.quick else 30.0)
    args.max_duration = args.max_duration or (3.0 if args.quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 3.0)
    args.timeout = args.timeout or (5.0 if args.quick else 30.0)
    grace = 2.0 if args.quick else 10.0  # a server with requests stuck inside is killed after this
    teams = max(1, min(args.teams, n_agents))

    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="agentdesk-server-bench-"))
    db = tmp / "server.sqlite3"
    per_team = [n_agents // teams + (i < n_agents % teams) for i in range(teams)]
    conv_per_team = [n_conversations // teams + (i < n_conversations % teams) for i in range(teams)]
    world = seed_world(db, agents_per_team=per_team, conversations_per_team=conv_per_team,
                       interactions_per_conversation=3, customers=max(100, n_conversations * 2 // 5))
    import sqlite3

    from agentdesk.server.routes.sync import encode_cursor

    seeded = sqlite3.connect(db)
    texts = [t for t, in seeded.execute("SELECT DISTINCT text FROM interaction LIMIT 2000")]
    # Steady sync is measured for desks that are open and caught up, as a bootstrap leaves them (at the log's
    # head): 250 desks pulling the whole seeded history at once is a bootstrap storm, not what this measures.
    head = encode_cursor(seeded.execute("SELECT coalesce(max(seq), 0) FROM change").fetchone()[0])
    agents = [{"token": a.token, "team": a.team_id, "cursor": head} for a in world.agents]
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)

    result: dict[str, Any] = {"bench": "server", "quick": args.quick,
                              "config": {"agents": n_agents, "teams": teams, "dataset": world.counts,
                                         "concurrency": args.concurrency, "loadgen_procs": args.procs,
                                         "request_timeout_s": args.timeout,
                                         "uvicorn": "1 worker, uvicorn defaults: httptools and uvloop when installed (agentdesk.server.run.serve)"}}
    what_if = {"tcp_nodelay": args.tcp_nodelay, "pool_size": args.pool_size}
    result["config"]["what_if"] = what_if if any(what_if.values()) else None
    with ServerProcess(bare=True, tcp_nodelay=args.tcp_nodelay, grace=grace) as bare_server:
        bare = closed_phase(bare_server, "bare", agents, args)
    steady_runs, profiles = {}, []
    for mode in ("live", "timer") if args.steady == "both" else (args.steady,):
        profile_of = str(args.profile / f"server-{mode}.pstats") if args.profile else None
        profiles += [profile_of] if profile_of else []
        with ServerProcess(db, profile=profile_of, tcp_nodelay=args.tcp_nodelay, pool_size=args.pool_size, grace=grace) as server:
            steady_runs[mode] = steady_phase(server, agents, world, texts, args, mode)
    steady = next(iter(steady_runs.values()))  # the targets are judged on the first: live unless --steady timer
    # A fresh server process for the rest (same database, cursors where the steady phase left them), so
    # requests still stuck from an overloaded steady phase do not count against the sequential costs or
    # the peak pull rate. The sequential phase runs first: it also brings every cursor to the head.
    with ServerProcess(db, tcp_nodelay=args.tcp_nodelay, pool_size=args.pool_size, grace=grace) as server:
        sequential = sequential_phase(server, agents, world, 30 if args.quick else 200, args)
        pull = closed_phase(server, "pull", agents, args)
    ratio = pull["rps"] / bare["rps"] if bare["rps"] else 0.0
    bare_cost, pull_cost = bare["server_cpu_ms_per_request"], pull["server_cpu_ms_per_request"]
    push_p99 = steady["push_ms"]["p99"]
    meets = {
        "push_p99": push_p99 is not None and push_p99 <= TARGET_PUSH_P99_MS,
        "throughput_ratio": ratio >= TARGET_THROUGHPUT_RATIO,
        "no_errors": steady["errors"] == 0 and not pull["errors"],
        # and the worker keeps up: a live desk sends its whole outbox per push, so a server falling behind gets
        # fewer, fuller pushes (and a low push p99 would hide it)
        "keeps_up": steady.get("notes_per_push", 1.0) <= KEEPS_UP_NOTES_PER_PUSH,
    }
    result.update({
        "steady": steady,
        **({"steady_timer": steady_runs["timer"]} if len(steady_runs) > 1 else {}),
        "max_rate": {"bare": bare, "pull": pull},
        "sequential": sequential,
        "floor": {"what": "bare ASGI app, fixed JSON body, same uvicorn configuration, same closed-loop generator",
                  "bare_rps": bare["rps"]},
        "pull_rps": pull["rps"],
        "throughput_ratio": round(ratio, 3),
        # The same ratio from server CPU per request (what each would reach with the server saturated); it
        # does not depend on the load generator keeping up, which at the bare app's rate it may not.
        "throughput_ratio_by_server_cpu": round(bare_cost / pull_cost, 3) if bare_cost and pull_cost else None,
        "targets": {"agents": 250, "push_p99_ms": TARGET_PUSH_P99_MS, "throughput_ratio": TARGET_THROUGHPUT_RATIO},
        "meets": meets,
        "meets_target": all(meets.values()) and n_agents >= 250,
        "load_avg_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    })
    for profile in profiles:
        import io
        import pstats

        buf = io.StringIO()
        pstats.Stats(profile, stream=buf).sort_stats("tottime").print_stats(30)
        log(f"--- server profile ({profile}), top 30 by own time ---\n" + buf.getvalue())
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        worker_main()
    else:
        main(sys.argv[1:])
