"""Ingest bench (issue 6): inbound messages per second through one uvicorn worker over SQLite, over HTTP.

    python bench/ingest_bench.py [--quick] [--mode integration|twilio|both] [--concurrency 64] [--procs 1]
                                 [--duration 10] [--warmup 3] [--path /api/v1/interactions/inbound] [--profile DIR]

The server: bench/_serve.py in its own process — create_app(make_engine(sqlite:///server.sqlite3)) under
agentdesk.server.run.serve (one uvicorn worker, the configuration `agentdesk serve` runs) over a fresh
database seeded with Core bulk inserts (bench/_common.seed_world: 2 teams, 40 agents, 5,000 conversations
x 3 interactions, 2,000 customers with email identities, half of them with phone identities), plus what
the inbound path consults: half the agents available with capacities, SLA policies (a catch-all and an
SMS one), one team keeping office hours in New York, two routing rules, and one integration token per
connection (the server's default rate limit is 50 requests/s per token).

Load: closed loop, `--concurrency` keep-alive connections, each sending its next message as soon as the
previous one is answered, for `--warmup` + `--duration` seconds; only answers inside the measured window
count. The client is raw asyncio (uvloop when installed) writing prebuilt HTTP/1.1 requests and reading
Content-Length bodies, so it costs a small fraction of the server's work per request (its CPU share is
reported). Message mix (per message, seeded): 48 % SMS and 20 % WhatsApp from returning customers, 10 %
SMS/WhatsApp from new numbers, 14 % email from returning customers (a subject from the demo pool, a
third of them "Re: ..." of an earlier one), 5 % email from new addresses, 3 % a retry of an earlier
message (same external id: answered as a duplicate). Texts are the demo generator's inbound SMS/WhatsApp
texts and email bodies (quoted replies and signatures included: merge-suggestion candidates).

Modes (the webhook is a function: `REQUESTS[mode]` builds the next request's bytes):
- integration: POST `--path` (default /api/v1/interactions/inbound), JSON, Authorization: Bearer <token>;
- twilio: POST /webhooks/twilio/messaging, form-encoded, X-Twilio-Signature computed with the `twilio`
  package's RequestValidator (our own HMAC-SHA1 when it is absent), SMS/WhatsApp only (the same mix
  without email), the server started with [channels.twilio] on.

Floor, measured in the same run by the same client: the bare ASGI app of _serve.py --bare (a fixed JSON
body, same uvicorn configuration) receiving the same requests. `ratio` = messages/s / bare requests/s;
`ratio_by_server_cpu` compares server CPU per request instead (independent of the client keeping up).

Also: a sequential phase after the loaded one (one message at a time on the warm server: server CPU per
message without group commit, and lone-request latency), and a check after each run that every message
answered 201 is in the database exactly once.

Prints one JSON object on stdout; progress on stderr. Target: >= 1,000 messages/s (integration mode).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import _common
from _common import CpuWindow, ServerProcess, log, percentiles, seed_world

TARGET_MESSAGES_PER_S = 1000.0
INTEGRATION_PATH = "/api/v1/interactions/inbound"
TWILIO_PATH = "/webhooks/twilio/messaging"
TWILIO_PUBLIC_URL = "https://bench.agentdesk.test"  # what the server believes Twilio called (it signs over this)
TWILIO_AUTH_TOKEN = "bench-auth-token-0123456789abcdef"
OUR_NUMBER = "+14155550000"


# ------------------------------------------------------------------------------------------- messages


class Mix:
    """The next inbound message of one load-generator connection, as the fields of the integration API."""

    def __init__(self, spec: dict[str, Any], stream: int, *, email: bool = True) -> None:
        self.rng = random.Random(spec["seed"] * 1_000_003 + stream)
        self.stream = stream  # unique across processes: new numbers and ids never collide between streams
        self.customers = spec["customers"]
        self.texts, self.email_texts = spec["texts"], spec["email_texts"]
        self.subjects, self.names = spec["subjects"], spec["names"]
        self.email = email
        self.count = 0
        self.sent: deque[dict[str, Any]] = deque(maxlen=500)  # for retries
        self.threads: dict[str, str] = {}  # email address -> the subject it wrote about

    def _returning_phone(self) -> str:
        i = self.rng.randrange(0, self.customers, 2)  # seed_world gives every other customer a phone identity
        return f"+1415{i:07d}"

    def _new_phone(self) -> str:
        return f"+1628{self.stream % 1000:03d}{self.count % 10_000:04d}"

    def next(self) -> dict[str, Any]:
        self.count += 1
        rng = self.rng
        roll = rng.random() * (100 if self.email else 81)
        if roll < 3 and self.sent:
            return self.rng.choice(self.sent)  # a retried delivery
        external_id = f"bench-{self.stream}-{self.count}-{uuid.uuid4().hex[:8]}"
        if roll < 81:
            address = self._returning_phone() if roll < 71 else self._new_phone()
            channel = "whatsapp" if rng.random() < 20 / 68 else "sms"
            message = {"channel": channel, "address": f"whatsapp:{address}" if channel == "whatsapp" else address,
                       "text": rng.choice(self.texts), "external_id": external_id}
            if roll >= 71:
                message["name"] = rng.choice(self.names)
        else:
            new = roll >= 95
            address = f"new{self.stream}x{self.count}@example.net" if new else f"customer{rng.randrange(self.customers)}@example.com"
            earlier = self.threads.get(address)
            subject = f"Re: {earlier}" if earlier and rng.random() < 0.34 else rng.choice(self.subjects)
            self.threads[address] = subject
            message = {"channel": "email", "address": address, "subject": subject, "text": rng.choice(self.email_texts),
                       "external_id": f"<{external_id}@example.com>"}
            if new:
                message["name"] = rng.choice(self.names)
        self.sent.append(message)
        return message


def integration_request(spec: dict[str, Any], token: str) -> Callable[[dict[str, Any]], bytes]:
    head = (f"POST {spec['path']} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\n").encode()

    def build(message: dict[str, Any]) -> bytes:
        body = json.dumps(message).encode()
        return head + b"Content-Length: %d\r\n\r\n" % len(body) + body

    return build


def _twilio_signature(url: str, params: dict[str, str]) -> str:
    try:
        from twilio.request_validator import RequestValidator
    except ImportError:  # Twilio's documented algorithm: HMAC-SHA1 over the URL + sorted name/value pairs
        payload = url + "".join(name + params[name] for name in sorted(params))
        return base64.b64encode(hmac.new(TWILIO_AUTH_TOKEN.encode(), payload.encode(), hashlib.sha1).digest()).decode()
    return RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(url, params)


def twilio_request(spec: dict[str, Any], _token: str) -> Callable[[dict[str, Any]], bytes]:
    url = TWILIO_PUBLIC_URL + TWILIO_PATH
    head = f"POST {TWILIO_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"

    def build(message: dict[str, Any]) -> bytes:
        sid = "SM" + hashlib.md5(message["external_id"].encode()).hexdigest()  # a retry keeps its MessageSid
        params = {"MessageSid": sid, "SmsSid": sid, "AccountSid": "AC" + "0" * 32, "From": message["address"],
                  "To": f"whatsapp:{OUR_NUMBER}" if message["channel"] == "whatsapp" else OUR_NUMBER,
                  "Body": message["text"], "NumMedia": "0", "NumSegments": "1", "SmsStatus": "received",
                  "ApiVersion": "2010-04-01"}
        if message.get("name"):
            params["ProfileName"] = message["name"]
        body = urlencode(params).encode()
        signature = _twilio_signature(url, params)
        return (head + f"X-Twilio-Signature: {signature}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body

    return build


REQUESTS: dict[str, Callable[[dict[str, Any], str], Callable[[dict[str, Any]], bytes]]] = {
    "integration": integration_request,
    "twilio": twilio_request,
}

# ------------------------------------------------------------------------------------------- load generator

_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = _LENGTH.search(head)
    body = await reader.readexactly(int(length.group(1))) if length else b""
    return int(head[9:12]), body


async def _reconnect(spec: dict[str, Any], statuses: Counter[str]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A new connection after a failed exchange; a refused connect is counted and tried again (a crash here
    would leave the phase without results)."""
    while True:
        try:
            return await asyncio.open_connection(spec["host"], spec["port"])
        except OSError as exc:
            statuses[f"connect {type(exc).__name__}"] += 1
            await asyncio.sleep(0.05)


async def _closed_loop(spec: dict[str, Any], out: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    start_in = max(0.0, spec["start_at"] - time.time())
    t_measure = loop.time() + start_in + spec["warmup"]
    t_end = t_measure + spec["duration"]
    statuses: Counter[str] = out["statuses"]
    lat: list[float] = out["lat"]
    mode = "integration" if spec["mode"] == "bare" else spec["mode"]

    async def connection(slot: int) -> None:
        stream = spec["first_stream"] + slot
        mix = Mix(spec, stream, email=mode != "twilio")
        build = REQUESTS[mode](spec, spec["tokens"][stream % len(spec["tokens"])])
        await asyncio.sleep(start_in)
        reader, writer = await asyncio.open_connection(spec["host"], spec["port"])
        try:
            while loop.time() < t_end:
                request = build(mix.next())
                t_sent = loop.time()
                t0 = time.perf_counter()
                try:
                    status, body = await asyncio.wait_for(_exchange(reader, writer, request), spec["timeout"])
                except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                    statuses[type(exc).__name__] += 1
                    writer.close()
                    reader, writer = await _reconnect(spec, statuses)
                    continue
                if t_sent >= t_measure and loop.time() <= t_end:
                    lat.append(time.perf_counter() - t0)
                    statuses[str(status)] += 1
                if status == 201:  # every accepted message, warm-up included: checked against the database
                    out["created"] += 1
                elif status >= 300 and len(out["samples"]) < 5:
                    out["samples"].append(f"{status} {body[:200].decode(errors='replace')}")
        finally:
            writer.close()

    await asyncio.gather(*(connection(slot) for slot in range(spec["concurrency"])))


async def _sequential(spec: dict[str, Any], out: dict[str, Any]) -> None:
    """One message at a time on one connection (after a short warm-up): lone-request latency."""
    mode = "integration" if spec["mode"] == "bare" else spec["mode"]
    mix = Mix(spec, spec["first_stream"], email=mode != "twilio")
    builders = [REQUESTS[mode](spec, token) for token in spec["tokens"]]  # in turn: each token's rate limit is 50/s
    reader, writer = await asyncio.open_connection(spec["host"], spec["port"])
    try:
        for n in range(spec["count"] + 20):
            request = builders[n % len(builders)](mix.next())
            t0 = time.perf_counter()
            try:
                status, _ = await asyncio.wait_for(_exchange(reader, writer, request), spec["timeout"])
            except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                out["statuses"][type(exc).__name__] += 1
                writer.close()
                reader, writer = await _reconnect(spec, out["statuses"])
                continue
            if n >= 20:
                out["lat"].append(time.perf_counter() - t0)
                out["statuses"][str(status)] += 1
            out["created"] += status == 201
    finally:
        writer.close()


def worker_main() -> None:
    """--worker: read a phase spec (JSON) on stdin, run it, write the results (JSON) on stdout."""
    spec = json.load(sys.stdin)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    out: dict[str, Any] = {"statuses": Counter(), "lat": [], "created": 0, "samples": []}
    wall0, cpu0 = time.perf_counter(), time.process_time()
    asyncio.run(_sequential(spec, out) if spec["count"] else _closed_loop(spec, out))
    out["wall_s"], out["cpu_s"] = time.perf_counter() - wall0, time.process_time() - cpu0
    out["statuses"] = dict(out["statuses"])
    print(json.dumps(out), flush=True)


def run_phase(spec: dict[str, Any], procs: int) -> dict[str, Any]:
    """Run a phase in `procs` load-generator processes (connections split among them); merge the results."""
    children = []
    share = spec["concurrency"] // procs + 1
    for i in range(procs):
        part = dict(spec, concurrency=spec["concurrency"] // procs + (i < spec["concurrency"] % procs),
                    first_stream=spec["first_stream"] + i * share)
        child = subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 env=_common.env_with_src(), text=True)
        child.stdin.write(json.dumps(part))
        child.stdin.close()
        children.append(child)
    merged: dict[str, Any] = {"statuses": Counter(), "lat": [], "created": 0, "samples": [], "wall_s": 0.0, "cpu_s": 0.0}
    for child in children:
        output = child.stdout.read()
        if child.wait() != 0:  # before parsing: a worker that died printed no results (its traceback is on stderr)
            raise RuntimeError(f"a load-generator process failed (exit status {child.returncode}); see its error above")
        result = _worker_result(output)
        merged["statuses"].update(result["statuses"])
        merged["lat"] += result["lat"]
        merged["samples"] += result["samples"]
        merged["created"] += result["created"]
        merged["wall_s"] = max(merged["wall_s"], result["wall_s"])
        merged["cpu_s"] += result["cpu_s"]
    merged["statuses"] = dict(merged["statuses"])
    return merged


def _worker_result(output: str) -> dict[str, Any]:
    """A worker's results: the last line of its stdout (anything a library printed before it is not JSON)."""
    lines = [line for line in output.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"a load-generator process printed no results: {output[-500:]!r}")
    return json.loads(lines[-1])


# ------------------------------------------------------------------------------------------- phases


def closed_phase(server: ServerProcess, mode: str, base: dict[str, Any], args: argparse.Namespace, stream: int) -> dict[str, Any]:
    host, port = server.url.removeprefix("http://").split(":")
    spec = dict(base, mode=mode, host=host, port=int(port), concurrency=args.concurrency, warmup=args.warmup,
                duration=args.duration, timeout=args.timeout, count=0, first_stream=stream)
    log(f"{mode}: {args.concurrency} connections, {args.warmup:g} s warm-up + {args.duration:g} s")
    spec["start_at"] = time.time() + 1.0 + 0.3 * args.procs  # every generator process starts together
    window = CpuWindow(server, spec["start_at"] + args.warmup, spec["start_at"] + args.warmup + args.duration)
    result = run_phase(spec, args.procs)
    server_cpu = window.util()
    ok = sum(n for status, n in result["statuses"].items() if status in ("200", "201"))
    rate = ok / args.duration
    errors = {status: n for status, n in result["statuses"].items() if status not in ("200", "201")}
    log(f"  {mode}: {rate:,.0f} answers/s, p50/p99 {percentiles(result['lat'])['p50']}/{percentiles(result['lat'])['p99']} ms, "
        f"server CPU {server_cpu:.0%} of a core, load generator {result['cpu_s'] / result['wall_s']:.0%}; errors {errors or 0}")
    return {
        "per_s": round(rate, 1),
        "latency_ms": percentiles(result["lat"]),
        "statuses": result["statuses"],
        "errors": errors,
        "error_samples": result["samples"],
        "server_cpu_util": round(server_cpu, 2),
        "server_cpu_ms_per_request": round(server_cpu * 1000 / rate, 3) if rate else None,
        "loadgen_cpu_util": round(result["cpu_s"] / result["wall_s"], 2),
        "created": result["created"],
    }


def sequential_phase(server: ServerProcess, mode: str, base: dict[str, Any], n: int, stream: int) -> dict[str, Any]:
    """One message at a time: server CPU per message (net of the idle server's own polling, measured
    first) and lone-request latency."""
    host, port = server.url.removeprefix("http://").split(":")
    spec = dict(base, mode=mode, host=host, port=int(port), concurrency=1, count=n, first_stream=stream, timeout=30.0)
    cpu0, t0 = server.cpu(), time.perf_counter()
    time.sleep(2.0)
    idle = (server.cpu() - cpu0) / (time.perf_counter() - t0)
    cpu0, t0 = server.cpu(), time.perf_counter()
    result = run_phase(spec, 1)
    cpu, wall = server.cpu() - cpu0, time.perf_counter() - t0
    lat = percentiles(result["lat"])
    per_message = max(0.0, cpu - idle * wall) / (n + 20) * 1000  # the 20 warm-up messages cost CPU too
    log(f"  {mode} sequential: p50 {lat['p50']} ms, {per_message:.2f} ms server CPU per message (idle server {idle:.1%})")
    return {"latency_ms": lat, "server_cpu_ms_per_message_net": round(per_message, 3), "idle_server_cpu_util": round(idle, 3),
            "statuses": result["statuses"], "created": result["created"]}


# ------------------------------------------------------------------------------------------- world


def _message_pools(seed: int) -> tuple[list[str], list[str], list[str], list[str]]:
    """What customers write, from the demo generator: SMS/WhatsApp texts, email bodies, subjects, names."""
    from agentdesk.demo.data import generate

    demo = generate(seed)
    inbound = [row for row in demo.interactions if row["direction"] == "inbound" and row["text"]]
    texts = [row["text"] for row in inbound if row["channel"] in ("sms", "whatsapp")]
    email_texts = [row["text"] for row in inbound if row["channel"] == "email"]
    subjects = sorted({row["subject"] for row in demo.conversations if row.get("subject")}) or ["Question"]
    return texts, email_texts, subjects, [row["display_name"] for row in demo.customers]


def seed_inbound_world(db: Path, tokens: int, args: argparse.Namespace) -> dict[str, Any]:
    """seed_world, then what the inbound path consults; returns the load generator's shared spec."""
    import sqlalchemy as sa

    from agentdesk.server.auth import hash_token
    from agentdesk.server.db import make_engine
    from agentdesk.server.models import Agent, ApiToken, RoutingRule, SlaPolicy, Team

    customers = args.customers
    world = seed_world(db, agents_per_team=[20, 20], conversations_per_team=[args.conversations // 2] * 2,
                       interactions_per_conversation=3, customers=customers)
    texts, email_texts, subjects, names = _message_pools(7)
    rng = random.Random(11)
    engine = make_engine(f"sqlite:///{db}")
    now = datetime.now(UTC)
    secrets = [f"adk_bench_integration_{i}_{uuid.uuid4().hex}" for i in range(tokens)]
    with engine.begin() as conn:
        for agent in world.agents[::2]:  # half the agents are at their desks, some with a declared capacity
            capacity = {"*": 40} if rng.random() < 0.5 else {"sms": 30, "whatsapp": 30, "email": 20}
            conn.execute(sa.update(Agent).where(Agent.id == agent.id).values(presence="available", presence_at=now, capacity=capacity))
        conn.execute(sa.update(Team).where(Team.id == world.teams[1]).values(
            timezone="America/New_York", hours={d: "09:00-17:00" for d in ("mon", "tue", "wed", "thu", "fri")}))
        conn.execute(sa.insert(SlaPolicy), [
            {"id": uuid.uuid4().hex, "channel": None, "priority": None, "first_response_minutes": 240,
             "next_response_minutes": 120, "resolution_minutes": 2880},
            {"id": uuid.uuid4().hex, "channel": "sms", "priority": None, "first_response_minutes": 30,
             "next_response_minutes": 30, "resolution_minutes": None},
        ])
        conn.execute(sa.insert(RoutingRule), [
            {"id": uuid.uuid4().hex, "position": 1, "channel": None, "keyword": "refund", "team_id": world.teams[0]},
            {"id": uuid.uuid4().hex, "position": 2, "channel": "email", "keyword": None, "team_id": world.teams[1]},
        ])
        conn.execute(sa.insert(ApiToken), [
            {"id": uuid.uuid4().hex, "kind": "integration", "agent_id": None, "name": f"bench-{i}", "token_hash": hash_token(t),
             "hint": t[-4:], "created_at": now - timedelta(days=1), "revoked_at": None} for i, t in enumerate(secrets)
        ])
    engine.dispose()
    return {"customers": customers, "texts": texts, "email_texts": email_texts, "subjects": subjects, "names": names[:500],
            "tokens": secrets, "path": args.path, "seed": 1, "counts": world.counts}


def interactions_in(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM interaction").fetchone()[0]


def twilio_config(tmp: Path) -> Path:
    path = tmp / "server.toml"
    path.write_text(
        f'[server]\npublic_url = "{TWILIO_PUBLIC_URL}"\n\n'
        f'[channels.twilio]\nenabled = true\naccount_sid = "AC{"0" * 32}"\nauth_token = "{TWILIO_AUTH_TOKEN}"\n'
        f'sms_from = "{OUR_NUMBER}"\n'
    )
    return path


def twilio_available() -> bool:
    """Whether the Twilio messaging webhook exists in this tree (another engineer's work in progress)."""
    return (_common.SRC / "agentdesk/server/channels/twilio.py").exists()


def run_mode(mode: str, db: Path, base: dict[str, Any], args: argparse.Namespace, tmp: Path, profile: str | None) -> dict[str, Any]:
    """The closed loop, then the sequential phase, on a fresh server over `db`; checks nothing accepted was lost."""
    config = twilio_config(tmp) if mode == "twilio" else None
    before = interactions_in(db)
    stream = {"integration": 100, "twilio": 400}[mode]  # new numbers and addresses differ between modes
    with ServerProcess(db, config=config, profile=profile, grace=args.grace) as server:
        loaded = closed_phase(server, mode, base, args, stream + 1)
        sequential = sequential_phase(server, mode, base, args.sequential, stream)  # a warm server: steady costs
    stored = interactions_in(db) - before
    created = sequential["created"] + loaded["created"]
    # Twilio answers 200 for new and repeated messages alike: only the integration API can be checked this way.
    check = {"answered_201": created, "new_rows": stored, "lost_or_doubled": stored - created} if mode == "integration" else {"new_rows": stored}
    log(f"  {mode}: {stored:,} new interactions stored; " + ", ".join(f"{k} {v}" for k, v in check.items()))
    return {"sequential": sequential, "max_rate": loaded, "check": check}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="ingest_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small version (< 60 s) for a smoke run")
    parser.add_argument("--mode", choices=("integration", "twilio", "both"), default="both",
                        help="which webhook to drive (default both; twilio only when its route exists)")
    parser.add_argument("--path", default=INTEGRATION_PATH, help=f"integration mode's URL path (default {INTEGRATION_PATH})")
    parser.add_argument("--concurrency", type=int, default=64, help="keep-alive connections (default 64)")
    parser.add_argument("--procs", type=int, default=1, help="load-generator processes (default 1)")
    parser.add_argument("--duration", type=float, help="measured seconds (default 10; quick 3)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds (default 3; quick 1)")
    parser.add_argument("--sequential", type=int, help="messages in the one-at-a-time phase (default 300; quick 100)")
    parser.add_argument("--customers", type=int, default=2000, help="seeded customers (default 2,000)")
    parser.add_argument("--conversations", type=int, help="seeded conversations (default 5,000; quick 1,000)")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-request timeout in seconds (default 30)")
    parser.add_argument("--profile", type=Path, help="cProfile the server (all threads) into DIR (slower; figures not comparable)")
    args = parser.parse_args(argv)
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 3.0)
    args.sequential = args.sequential or (100 if args.quick else 300)
    args.conversations = args.conversations or (1_000 if args.quick else 5_000)
    args.grace = 2.0 if args.quick else 10.0
    modes = ["integration", "twilio"] if args.mode == "both" else [args.mode]
    if "twilio" in modes and not twilio_available():
        log("no Twilio webhook in this tree (src/agentdesk/server/channels/twilio.py): twilio mode skipped")
        modes.remove("twilio")

    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="agentdesk-ingest-bench-"))
    db = tmp / "server.sqlite3"
    base = seed_inbound_world(db, max(args.concurrency, 1), args)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)

    with ServerProcess(bare=True, grace=args.grace) as bare_server:
        bare = closed_phase(bare_server, "bare", base, args, 0)
    runs = {mode: run_mode(mode, db, base, args, tmp, str(args.profile / f"{mode}.pstats") if args.profile else None)
            for mode in modes}

    result: dict[str, Any] = {
        "bench": "ingest", "quick": args.quick,
        "config": {"concurrency": args.concurrency, "loadgen_procs": args.procs, "duration_s": args.duration,
                   "warmup_s": args.warmup, "dataset": base["counts"], "path": args.path,
                   "uvicorn": "1 worker (agentdesk.server.run.serve), SQLite WAL",
                   "client": "raw asyncio HTTP/1.1 keep-alive, closed loop"},
        "floor": {"what": "bare ASGI app (_serve.py --bare), same requests, same client", "bare_rps": bare["per_s"],
                  "latency_ms": bare["latency_ms"], "server_cpu_ms_per_request": bare["server_cpu_ms_per_request"],
                  "loadgen_cpu_util": bare["loadgen_cpu_util"]},
    }
    for mode, run in runs.items():
        rate, cost = run["max_rate"]["per_s"], run["max_rate"]["server_cpu_ms_per_request"]
        run["messages_per_s"] = rate
        run["ratio"] = round(rate / bare["per_s"], 3) if bare["per_s"] else None
        run["ratio_by_server_cpu"] = round(bare["server_cpu_ms_per_request"] / cost, 3) if cost and bare["server_cpu_ms_per_request"] else None
        result[mode] = run
    main_run = runs.get("integration") or next(iter(runs.values()))
    no_loss = all(r["check"].get("lost_or_doubled", 0) == 0 for r in runs.values())
    no_errors = all(not r["max_rate"]["errors"] for r in runs.values())
    result.update({
        "messages_per_s": main_run["messages_per_s"],
        "target": {"messages_per_s": TARGET_MESSAGES_PER_S},
        "meets": {"rate": main_run["messages_per_s"] >= TARGET_MESSAGES_PER_S, "no_errors": no_errors, "nothing_lost": no_loss},
        "load_avg_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    })
    result["meets_target"] = all(result["meets"].values())
    if args.profile:
        import io
        import pstats

        for mode in modes:
            buf = io.StringIO()
            pstats.Stats(str(args.profile / f"{mode}.pstats"), stream=buf).sort_stats("tottime").print_stats(30)
            log(f"--- server profile ({mode}), top 30 by own time ---\n" + buf.getvalue())
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        worker_main()
    else:
        main(sys.argv[1:])
