"""Shared bench helpers: a scaled, realistic server database seeded with Core bulk inserts, the server
subprocess (bench/_serve.py), process CPU time, percentiles. Imported by the bench scripts in this folder.
"""

from __future__ import annotations

import os
import random
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from collections.abc import Callable
from typing import Self

BENCH = Path(__file__).resolve().parent
SRC = BENCH.parent / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

CHANNELS = ("email", "sms", "whatsapp", "chat", "phone")


def log(*parts: object) -> None:
    print("[bench]", *parts, file=sys.stderr, flush=True)


def env_with_src() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
    return env


# ------------------------------------------------------------------------------------------- measuring


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentiles(values: list[float], scale: float = 1000.0) -> dict[str, float | int | None]:
    """p50/p95/p99/max (nearest rank), in ms for values in seconds; count of samples."""
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))] * scale, 2)

    return {"n": len(ordered), "p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99), "max": round(ordered[-1] * scale, 2)}


class CpuWindow:
    """The server's CPU seconds between two wall-clock instants (sampled by a thread), so start-up, warm-up
    and the drain of late requests stay out of the figure."""

    def __init__(self, server: ServerProcess, t_from: float, t_to: float) -> None:
        import threading

        self.seconds: float | None = None
        self.span = t_to - t_from

        def sample() -> None:
            time.sleep(max(0.0, t_from - time.time()))
            cpu0 = server.cpu()
            time.sleep(max(0.0, t_to - time.time()))
            self.seconds = server.cpu() - cpu0

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()

    def util(self) -> float:
        self._thread.join()
        return (self.seconds or 0.0) / self.span



# ------------------------------------------------------------------------------------------- seeding


@dataclass
class SeededAgent:
    id: str
    email: str
    team_id: str
    token: str


@dataclass
class World:
    teams: list[str] = field(default_factory=list)
    agents: list[SeededAgent] = field(default_factory=list)
    conversations: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # team -> [(id, channel)]
    counts: dict[str, int] = field(default_factory=dict)


def _text_pools(seed: int) -> tuple[list[str], list[str], list[str]]:
    """Realistic interaction texts (~200 chars on average), subjects and customer names from the demo generator."""
    from agentdesk.demo.data import generate

    demo = generate(seed)
    texts = [row["text"] for row in demo.interactions if row["text"]]
    subjects = sorted({row["subject"] for row in demo.conversations if row.get("subject")}) or ["Question"]
    names = [row["display_name"] for row in demo.customers]
    return texts, subjects, names


def seed_world(
    db_path: Path,
    *,
    agents_per_team: list[int],
    conversations_per_team: list[int],
    interactions_per_conversation: int,
    customers: int,
    seed: int = 7,
) -> World:
    """Migrate a fresh SQLite server database and fill it: teams, agents with tokens, customers with
    identities, conversations and interactions (texts from the demo), in Core bulk inserts (no ORM)."""

    from agentdesk.server.auth import hash_token
    from agentdesk.server.db import make_engine, migrate
    from agentdesk.server.models import (
        Agent,
        AgentTeam,
        ApiToken,
        Conversation,
        Customer,
        Identity,
        Interaction,
        Team,
    )

    rng = random.Random(seed)

    def new_id() -> str:
        return f"{rng.getrandbits(128):032x}"

    texts, subjects, names = _text_pools(seed)
    now = datetime.now(UTC)
    world = World()
    engine = make_engine(f"sqlite:///{db_path}")
    migrate(engine)

    teams = [{"id": new_id(), "name": f"Team {i + 1}", "active": True, "routing": "round_robin", "timezone": "UTC",
              "hours": {}, "holidays": [], "last_assigned_id": None} for i in range(len(agents_per_team))]
    world.teams = [t["id"] for t in teams]
    agents, memberships, tokens = [], [], []
    team_agents: dict[str, list[str]] = {}
    for team, count in zip(teams, agents_per_team, strict=True):
        for _ in range(count):
            n = len(agents)
            agent_id = new_id()
            email = f"agent{n}@bench.agentdesk.test"
            token = "adk_" + secrets.token_urlsafe(32)
            agents.append({"id": agent_id, "name": f"Agent {n}", "email": email, "role": "agent", "active": True,
                           "skills": [], "capacity": {}, "presence": "offline", "presence_at": None,
                           "created_at": now - timedelta(days=90)})
            memberships.append({"id": new_id(), "agent_id": agent_id, "team_id": team["id"]})
            tokens.append({"id": new_id(), "kind": "agent", "agent_id": agent_id, "name": None,
                           "token_hash": hash_token(token), "hint": token[-4:], "created_at": now, "revoked_at": None})
            world.agents.append(SeededAgent(agent_id, email, team["id"], token))
            team_agents.setdefault(team["id"], []).append(agent_id)

    customer_rows, identity_rows = [], []
    for i in range(customers):
        name = rng.choice(names)
        created = now - timedelta(seconds=rng.uniform(30 * 86400, 700 * 86400))
        customer_rows.append({"id": new_id(), "display_name": name, "first_name": name.split()[0], "tags": [],
                              "notes": "", "language": "en", "merged_into": None, "created_at": created, "updated_at": created})
        identity_rows.append({"id": new_id(), "customer_id": customer_rows[-1]["id"], "kind": "email",
                              "address": f"customer{i}@example.com"})
        if i % 2 == 0:
            identity_rows.append({"id": new_id(), "customer_id": customer_rows[-1]["id"], "kind": "phone",
                                  "address": f"+1415{i:07d}"})

    t0 = time.perf_counter()
    with engine.begin() as conn:
        for model, rows in ((Team, teams), (Agent, agents), (AgentTeam, memberships), (ApiToken, tokens),
                            (Customer, customer_rows), (Identity, identity_rows)):
            conn.execute(model.__table__.insert(), rows)
        n_conversations = n_interactions = 0
        for team, count in zip(teams, conversations_per_team, strict=True):
            members = team_agents[team["id"]]
            world.conversations[team["id"]] = []
            for chunk_start in range(0, count, 5000):
                conversation_rows, interaction_rows = [], []
                for _ in range(min(5000, count - chunk_start)):
                    customer = rng.choice(customer_rows)
                    channel = rng.choice(CHANNELS)
                    started = now - timedelta(seconds=rng.uniform(600, 30 * 86400))
                    status = rng.choices(("open", "pending", "snoozed", "closed"), (25, 10, 3, 62))[0]
                    assignee = rng.choice(members) if status != "open" or rng.random() < 0.7 else None
                    conversation_id = new_id()
                    at = started
                    for k in range(interactions_per_conversation):
                        at = at + timedelta(seconds=rng.uniform(30, 3600))
                        direction = "inbound" if k % 2 == 0 else rng.choice(("outbound", "outbound", "note"))
                        interaction_rows.append({
                            "id": new_id(), "conversation_id": conversation_id, "customer_id": customer["id"],
                            "channel": channel, "direction": direction,
                            "author_id": None if direction == "inbound" else (assignee or rng.choice(members)),
                            "text": rng.choice(texts), "subject": None,
                            "meta": {"segments": 1} if channel in ("sms", "whatsapp") else {},
                            "delivery_status": "delivered" if direction == "outbound" else None,
                            "external_id": None, "occurred_at": at,
                        })
                    conversation_rows.append({
                        "id": conversation_id, "customer_id": customer["id"], "channel": channel, "status": status,
                        "priority": rng.choices(("low", "normal", "high", "urgent"), (15, 65, 15, 5))[0],
                        "assignee_id": assignee, "team_id": team["id"], "subject": rng.choice(subjects),
                        "thread_key": None, "tags": [],
                        "sla_due": at + timedelta(hours=4) if status == "open" else None,
                        "first_response_due": None, "next_response_due": None, "resolution_due": None,
                        "first_response_at": None, "awaiting_since": None,
                        "closed_at": at if status == "closed" else None,
                        "snooze_until": now + timedelta(hours=3) if status == "snoozed" else None,
                        "created_at": started, "updated_at": at, "last_message_at": at, "version": 1,
                    })
                    world.conversations[team["id"]].append((conversation_id, channel))
                conn.execute(Conversation.__table__.insert(), conversation_rows)
                if interaction_rows:
                    conn.execute(Interaction.__table__.insert(), interaction_rows)
                n_conversations += len(conversation_rows)
                n_interactions += len(interaction_rows)
    engine.dispose()  # checkpoints the WAL into the file
    world.counts = {"teams": len(teams), "agents": len(agents), "customers": len(customer_rows),
                    "identities": len(identity_rows), "conversations": n_conversations, "interactions": n_interactions}
    log(f"seeded {world.counts} in {time.perf_counter() - t0:.1f} s")
    return world


def copy_to_postgres(db_path: Path, url: str) -> tuple[str, Callable[[], None]]:
    """The seeded SQLite database's rows in a new, migrated schema of the PostgreSQL database at `url`: that
    schema's URL (its search_path set) and how to drop it. COPY, table by table in the models' order."""
    import uuid
    import sqlite3

    import psycopg
    import sqlalchemy as sa
    from sqlmodel import SQLModel

    import agentdesk.server.models  # noqa: F401 - the tables
    from agentdesk.server.db import make_engine, migrate

    schema = f"adk_bench_{uuid.uuid4().hex[:12]}"
    admin = make_engine(url)
    with admin.begin() as db:
        db.execute(sa.text(f'CREATE SCHEMA "{schema}"'))

    def drop() -> None:
        with admin.begin() as db:
            db.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    try:
        schema_url = sa.engine.make_url(url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
        engine = make_engine(schema_url)
        migrate(engine)
        engine.dispose()
        source = sqlite3.connect(db_path)
        dsn = sa.engine.make_url(schema_url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn) as target:
            target.execute("SET TIME ZONE 'UTC'")  # the SQLite file's times are UTC without a zone
            for table in SQLModel.metadata.sorted_tables:  # (the seed has no change-log rows: no sequence to move on)
                names = [c.name for c in table.columns]
                with target.cursor().copy(f'COPY "{table.name}" ({", ".join(names)}) FROM STDIN') as copy:
                    for row in source.execute(f'SELECT {", ".join(names)} FROM "{table.name}"'):
                        copy.write_row(row)
            target.execute("ANALYZE")
        source.close()
    except BaseException:
        drop()
        raise
    return schema_url, drop


# ------------------------------------------------------------------------------------------- the server


class ServerProcess:
    """bench/_serve.py in a subprocess: the real app over `db`, or the bare floor app."""

    def __init__(self, db: Path | None = None, *, bare: bool = False, profile: str | None = None,
                 tcp_nodelay: bool = False, pool_size: int | None = None, grace: float = 10.0,
                 config: Path | None = None, url: str | None = None) -> None:
        self.grace = grace
        self.url_of_database = url  # None: the SQLite file `db`
        cmd = [sys.executable, str(BENCH / "_serve.py")]
        cmd += ["--bare"] if bare else ["--url", url] if url else ["--db", str(db)]
        if config:
            cmd += ["--config", str(config)]
        if profile:
            cmd += ["--profile", profile]
        if tcp_nodelay:
            cmd += ["--tcp-nodelay"]
        if pool_size:
            cmd += ["--pool-size", str(pool_size)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env_with_src(), text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise RuntimeError(f"bench server did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"
        self.pid = self.proc.pid
        self._wait_ready()

    def _wait_ready(self) -> None:
        import httpx

        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code in (200, 404):  # the bare app: 200
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("bench server not answering")
            time.sleep(0.05)

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def wait_idle(self, quiet_s: float = 0.3, limit_s: float = 15.0) -> float:
        """Wait until the server's start-up work is done (its jobs' first SLA sweep over a freshly seeded
        database takes ~0.2 s of CPU): until it uses < 5 % of a core for `quiet_s`. Returns the wait."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit_s:
            before = self.cpu()
            time.sleep(quiet_s)
            if self.cpu() - before < 0.05 * quiet_s:
                break
        else:
            log(f"server {self.pid} still busy after {limit_s:g} s: measuring anyway")
        return time.monotonic() - t0

    def stop(self, grace: float | None = None) -> None:
        """Close its stdin (it shuts down gracefully); kill it if requests stuck inside keep it past `grace`."""
        grace = self.grace if grace is None else grace
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log(f"server {self.pid} still busy {grace:g} s after shutdown began; killing it")
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
