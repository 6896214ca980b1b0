"""Server bench (issue 3): N desks syncing steadily against one uvicorn worker, and its peak pull rate.

    python bench/server_bench.py [--quick] [--agents 250] [--teams 2] [--duration 30] [--procs 1] [--profile DIR]

The server: bench/_serve.py in its own process — create_app(make_engine(sqlite:///server.sqlite3)) under
agentdesk.server.run.serve (one uvicorn worker, the same configuration as `agentdesk serve`) over a fresh
database seeded with Core bulk inserts: `--teams` teams, `--agents` agents (each with an API token),
~5,000 conversations with 3 interactions each.

Steady phase: every simulated agent, starting at a random offset within the first second, once a second
does one pull (GET /api/v1/sync/pull with its own cursor, limit 1000) then one push (POST /api/v1/sync/push
with one `note` on a random conversation of its team), for `--duration` seconds. Latency is measured from
sending each request to receiving its whole body; a tick that starts late (the previous one overran) is
counted in `late_ticks`.

Throughput: closed loop, `--concurrency` requests in flight, for the bare ASGI app (floor: a fixed JSON
body, no routing, served by the same uvicorn configuration) and for the pull endpoint (each request the
next agent's pull from its cursor), after a warm-up. throughput_ratio = pull_rps / bare_rps.

Load generator: asyncio + httpx.AsyncClient, one keep-alive connection per simulated agent (or per
in-flight slot), in `--procs` processes (this script with --worker). The machine has 2 cores: the server gets one.
CPU utilisation of the server and of the load generator is reported so a saturated generator shows.

What-if switches (--tcp-nodelay, --pool-size N) run a candidate server fix without touching src/; the JSON
says so under config.what_if. Without them the server is exactly what `agentdesk serve` runs.

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
from collections import Counter
from pathlib import Path
from typing import Any

import _common
from _common import CpuWindow, ServerProcess, log, percentiles, seed_world

TARGET_PUSH_P99_MS = 100.0
TARGET_THROUGHPUT_RATIO = 0.5
PULL = "/api/v1/sync/pull"
PUSH = "/api/v1/sync/push"


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

    def in_window(now: float) -> None:
        """Answers inside [first second over, end]: every agent has started, none has stopped."""
        if t_start + interval <= now <= t_end:
            out["window_done"] += 1

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
                    in_window(loop.time())
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
                    in_window(loop.time())
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

    out: dict[str, Any] = {"errors": Counter(), "pull_lat": [], "push_lat": [], "lat": [], "changes_pulled": 0,
                           "push_applied": 0, "push_duplicate": 0, "push_rejected": 0, "ticks": 0, "late_ticks": 0,
                           "window_done": 0}
    ssl_context = ssl.create_default_context()

    def new_client() -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=spec["url"], limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                                 timeout=httpx.Timeout(spec["timeout"]), verify=ssl_context, trust_env=False)

    slots = len(spec["agents"]) if spec["mode"] == "steady" else spec["concurrency"]
    clients = [new_client() for _ in range(slots)]
    try:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        if spec["mode"] == "steady":
            await _steady(clients, spec, out)
        else:
            await _closed(clients, spec, out)
        out["wall_s"] = time.perf_counter() - wall0
        out["cpu_s"] = time.process_time() - cpu0
    finally:
        for client in clients:
            await client.aclose()
    out["errors"] = dict(out["errors"])
    out["cursors"] = {a["token"]: a["cursor"] for a in spec["agents"]}
    for key in ("pull_lat", "push_lat", "lat"):
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


def steady_phase(server: ServerProcess, agents: list[dict[str, Any]], world: Any, texts: list[str], args: argparse.Namespace) -> dict[str, Any]:
    spec = {"mode": "steady", "url": server.url, "agents": agents, "interval": 1.0, "duration": args.duration,
            "timeout": args.timeout,
            "conversations": world.conversations, "texts": texts}
    log(f"steady: {len(agents)} agents, 1 pull + 1 push a second each, for {args.duration:g} s")
    spec["start_at"] = time.time() + 1.0 + 0.3 * args.procs
    window = CpuWindow(server, spec["start_at"] + 1.0, spec["start_at"] + args.duration)
    result = run_phase(spec, args.procs)
    server_cpu = window.util()
    for a in agents:
        a["cursor"] = result["cursors"].get(a["token"], a["cursor"])
    achieved = result["window_done"] / (args.duration - 1.0)  # answers a second, once every agent is running
    requests = len(result["pull_lat"]) + len(result["push_lat"])
    errors = sum(result["errors"].values())
    pull, push = percentiles(result["pull_lat"]), percentiles(result["push_lat"])
    log(f"  pull p50/p95/p99 {pull['p50']}/{pull['p95']}/{pull['p99']} ms; push {push['p50']}/{push['p95']}/{push['p99']} ms; "
        f"{achieved:,.0f} requests/s of {2 * len(agents)} offered; errors {errors}; late ticks {result['late_ticks']}; "
        f"server CPU {server_cpu:.0%}")
    return {
        "agents": len(agents),
        "duration_s": args.duration,
        "offered_rps": 2 * len(agents),
        "achieved_rps": round(achieved, 1),
        "requests_ok": requests,
        "pull_ms": pull,
        "push_ms": push,
        "push_applied": result["push_applied"],
        "changes_pulled": result["changes_pulled"],
        "changes_per_pull": round(result["changes_pulled"] / max(1, len(result["pull_lat"])), 1),
        "ticks": result["ticks"],
        "late_ticks": result["late_ticks"],
        "errors": errors,
        "error_kinds": result["errors"],
        "server_cpu_util": round(server_cpu, 2),
        "server_cpu_ms_per_request": round(server_cpu * 1000 / achieved, 2) if achieved else None,
        "loadgen_cpu_util": round(result["cpu_s"] / result["wall_s"], 2),
    }


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
    agents = [{"token": a.token, "team": a.team_id, "cursor": ""} for a in world.agents]
    import sqlite3

    texts = [t for t, in sqlite3.connect(db).execute("SELECT DISTINCT text FROM interaction LIMIT 2000")]
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)

    result: dict[str, Any] = {"bench": "server", "quick": args.quick,
                              "config": {"agents": n_agents, "teams": teams, "dataset": world.counts,
                                         "concurrency": args.concurrency, "loadgen_procs": args.procs,
                                         "request_timeout_s": args.timeout,
                                         "uvicorn": "1 worker, h11, asyncio (agentdesk.server.run.serve)"}}
    what_if = {"tcp_nodelay": args.tcp_nodelay, "pool_size": args.pool_size}
    result["config"]["what_if"] = what_if if any(what_if.values()) else None
    with ServerProcess(bare=True, tcp_nodelay=args.tcp_nodelay, grace=grace) as bare_server:
        bare = closed_phase(bare_server, "bare", agents, args)
    profile = str(args.profile / "server.pstats") if args.profile else None
    with ServerProcess(db, profile=profile, tcp_nodelay=args.tcp_nodelay, pool_size=args.pool_size, grace=grace) as server:
        steady = steady_phase(server, agents, world, texts, args)
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
    }
    result.update({
        "steady": steady,
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
    if profile:
        import io
        import pstats

        buf = io.StringIO()
        pstats.Stats(profile, stream=buf).sort_stats("tottime").print_stats(30)
        log("--- server profile, top 30 by own time ---\n" + buf.getvalue())
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        worker_main()
    else:
        main(sys.argv[1:])
