"""A big desk cache for the desk bench (issue 5): 100k conversations, 1M interactions, seeded and fast.

    from _deskgen import Sizes, cached_cache
    path, manifest = cached_cache(Sizes())          # built once into /tmp, reused while the schema is unchanged

The file is an ordinary agentdesk cache: `Cache(path)` creates the schema (store/schema.py), the mirror tables
are filled with raw sqlite3 `executemany` in key order (as a bootstrap loads them), then `Cache.finish_bootstrap`
builds INDEXES (and whatever search index the schema adds there) and marks the cache bootstrapped. The agent
"me" (Alex Morgan, in both teams) is the cache's identity, so `AgentDesk(path, me, engine=None)` opens it
without a server.

Shape: 2 teams, 8 agents, ~60k customers with identities (email, phone, whatsapp, chat), conversations over
5 channels with realistic status / priority / tag / SLA spreads, interaction texts, subjects and metadata taken
from the demo generator (agentdesk.demo.data). One customer ("the heavy customer") has 10k interactions over
250 conversations; the queue's two most urgent rows (mine, open, breached) are a normal customer's conversation
(row 0, opened at start) and then the heavy customer's (row 1), so one `j` from the start opens the 10k timeline.
Search probes: the word "quokka" is in ~0.3 % of the interactions, "zephyrine" in 25.
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
SRC = BENCH.parent / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

VERSION = "deskgen-1"  # bump when the generated data changes shape
CACHE_DIR = Path("/tmp/agentdesk-deskbench")
CHANNEL_WEIGHTS = {"email": 30, "chat": 30, "sms": 15, "whatsapp": 10, "phone": 15}
STATUS_WEIGHTS = {"open": 25, "pending": 10, "snoozed": 3, "closed": 62}
PRIORITY_WEIGHTS = {"low": 15, "normal": 65, "high": 15, "urgent": 5}
CONVERSATION_TAGS = ("vip", "refund", "outage", "fiber", "mobile", "invoice", "churn-risk", "escalated", "follow-up")
CUSTOMER_TAGS = ("vip", "enterprise", "churn-risk", "new", "accessibility")
HEAVY_NAME = "Marguerite Vasquez-Ohlsson"
FIRST_NAME = "Rosalind Achterberg"  # the queue's row 0
COMMON_PROBE, RARE_PROBE = "quokka", "zephyrine"
ME_NAME = "Alex Morgan"


@dataclass(frozen=True)
class Sizes:
    conversations: int = 100_000
    interactions: int = 1_000_000
    customers: int = 60_000
    heavy_interactions: int = 10_000
    heavy_conversations: int = 250

    @classmethod
    def quick(cls) -> Sizes:
        return cls(10_000, 100_000, 6_000, 2_000, 50)

    @classmethod
    def tiny(cls) -> Sizes:
        return cls(300, 3_000, 200, 200, 10)


def log(*parts: object) -> None:
    print("[deskgen]", *parts, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------- helpers


def iso(ts: float) -> str:
    """Epoch seconds as the cache's fixed-width ISO text (store/clock.to_iso's format)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


class Ids:
    """uuid4-like 32-hex ids from the seeded generator (so reruns give the same file)."""

    def __init__(self, rng: random.Random) -> None:
        self.bits = rng.getrandbits

    def __call__(self) -> str:
        return f"{self.bits(128):032x}"


def templates() -> tuple[dict[tuple[str, str], list[tuple[str, str | None, str]]], list[str], list[str]]:
    """(channel, direction) -> [(text, subject, meta JSON)] from the demo day; first and last names."""
    from agentdesk.demo.data import generate

    demo = generate(7, datetime(2026, 1, 1, tzinfo=UTC))
    pool: dict[tuple[str, str], list[tuple[str, str | None, str]]] = {}
    for row in demo.interactions:
        if row["text"]:
            meta = json.dumps(row["meta"] or {}, default=str)
            pool.setdefault((row["channel"], row["direction"]), []).append((row["text"], row["subject"], meta))
    firsts = sorted({c["display_name"].split()[0] for c in demo.customers})
    lasts = sorted({c["display_name"].split()[-1] for c in demo.customers})
    return pool, firsts, lasts


def split_counts(rng: random.Random, total: int, parts: int) -> list[int]:
    """`parts` positive counts summing to `total`, skewed (a few long conversations, many short ones)."""
    weights = [rng.expovariate(1.0) + 0.15 for _ in range(parts)]
    scale = (total - parts) / sum(weights)
    counts = [1 + int(w * scale) for w in weights]
    for i in rng.sample(range(parts), total - sum(counts)):
        counts[i] += 1
    return counts


def weighted(rng: random.Random, table: dict[str, int], n: int) -> list[str]:
    return rng.choices(list(table), list(table.values()), k=n)


# ------------------------------------------------------------------------------------------- the build


def build(path: Path, sizes: Sizes = Sizes(), seed: int = 5, now: datetime | None = None) -> dict[str, Any]:
    """Write a bootstrapped cache at `path` (replaced); returns the manifest (ids, counts, probes)."""
    from agentdesk.store.cache import Cache
    from agentdesk.store.schema import MIRROR_TABLES

    t0 = time.perf_counter()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    now_ts = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0).timestamp()
    rng = random.Random(seed)
    new_id = Ids(rng)
    pool, firsts, lasts = templates()
    rows: dict[str, list[tuple]] = {table: [] for table in MIRROR_TABLES}

    # people
    teams = [(new_id(), "Billing", 1), (new_id(), "Technical Support", 1)]
    agent_names = (ME_NAME, "Priya Raman", "Jonas Becker", "Amara Okafor", "Sofía Herrera", "Kenji Watanabe",
                   "Chloé Martin", "Dana Whitfield")
    agents = [(new_id(), name, f"{name.split()[0].lower()}@bench.test", "agent", 1, iso(now_ts - 400 * 86400))
              for name in agent_names]
    me_id = agents[0][0]
    membership = {teams[0][0]: [a[0] for a in agents[:4]] + [agents[6][0]],
                  teams[1][0]: [agents[0][0], agents[1][0], agents[4][0], agents[5][0], agents[6][0]]}
    rows["teams"] = teams
    rows["agents"] = agents
    rows["agent_teams"] = [(new_id(), a, t) for t, members in membership.items() for a in members]

    customers = []
    for i in range(sizes.customers):
        first, last = rng.choice(firsts), rng.choice(lasts)
        name = HEAVY_NAME if i == 0 else FIRST_NAME if i == 1 else f"{first} {last}"
        tags = json.dumps(rng.sample(CUSTOMER_TAGS, 1) if rng.random() < 0.12 else [])
        created = now_ts - rng.uniform(30, 900) * 86400
        customers.append((new_id(), name, name.split()[0], tags, "", "en", None, iso(created), iso(created + 86400)))
        cid = customers[-1][0]
        handle = f"{first.lower()}.{last.lower()}{i}"
        phone = f"+1415{i:07d}"
        if rng.random() < 0.85:
            rows["identities"].append((new_id(), cid, "email", f"{handle}@example.com"))
        if rng.random() < 0.6:
            rows["identities"].append((new_id(), cid, "phone", phone))
            if rng.random() < 0.25:
                rows["identities"].append((new_id(), cid, "whatsapp", phone))
        if rng.random() < 0.1:
            rows["identities"].append((new_id(), cid, "chat", f"visitor-{i}"))
    rows["customers"] = customers
    heavy_id, first_id = customers[0][0], customers[1][0]

    # conversations: the heavy customer's first, then everyone else's (each customer has at least one)
    n_normal = sizes.conversations - sizes.heavy_conversations
    owner = [heavy_id] * sizes.heavy_conversations
    owner += [customers[1 + i % (sizes.customers - 1)][0] if i < sizes.customers - 1
              else customers[1 + int((sizes.customers - 1) * rng.random() ** 2)][0] for i in range(n_normal)]
    counts = split_counts(rng, sizes.heavy_interactions, sizes.heavy_conversations)
    counts += split_counts(rng, sizes.interactions - sizes.heavy_interactions, n_normal)
    channels = weighted(rng, CHANNEL_WEIGHTS, sizes.conversations)
    statuses = weighted(rng, STATUS_WEIGHTS, sizes.conversations)
    priorities = weighted(rng, PRIORITY_WEIGHTS, sizes.conversations)
    subjects = sorted({s for (ch, _), items in pool.items() if ch == "email" for _, s, _ in items if s and not s.startswith("Re:")})
    team_ids = [t[0] for t in teams]
    # row 0 of the queue (a normal customer's conversation) and row 1 (the heavy customer's): mine, open, breached
    special = {sizes.heavy_conversations: now_ts - 3 * 86400, 0: now_ts - 3 * 86400 + 60}
    owner[sizes.heavy_conversations] = first_id

    interactions = rows["interactions"]
    seen = []
    fmt_ids = [new_id() for _ in range(sizes.conversations)]
    probe_every = max(1, sizes.interactions // 3000)
    rare_every = max(1, sizes.interactions // 25)
    rare_left = 25
    for k in range(sizes.conversations):
        conversation_id, customer_id, channel = fmt_ids[k], owner[k], channels[k]
        status = "open" if k in special else statuses[k]
        team = team_ids[k % 2]
        members = membership[team]
        assignee = me_id if k in special else (
            None if status == "open" and rng.random() < 0.4 else rng.choice(members))
        active = status in ("open", "pending")
        age_days = rng.uniform(0.02, 3) if active else rng.uniform(1, 720)
        at = now_ts - age_days * 86400
        created = at
        n = counts[k]
        step = min(6 * 3600.0, age_days * 86400 * 0.9 / n)
        inbound_pool = pool.get((channel, "inbound")) or pool[("email", "inbound")]
        outbound_pool = pool.get((channel, "outbound")) or pool[("email", "outbound")]
        note_pool = pool.get((channel, "note")) or pool[("email", "note")]
        for j in range(n):
            if j == 0 or rng.random() < 0.45:
                direction, chosen = "inbound", inbound_pool
            elif rng.random() < 0.12:
                direction, chosen = "note", note_pool
            else:
                direction, chosen = "outbound", outbound_pool
            text, subject, meta = chosen[int(rng.random() * len(chosen))]
            if len(interactions) % probe_every == 0:
                text += f" ({COMMON_PROBE})"
            elif rare_left and len(interactions) % rare_every == 7:
                text += f" ({RARE_PROBE})"
                rare_left -= 1
            at += rng.uniform(0.05, 1.0) * step
            delivery = None
            if direction == "outbound":
                delivery = "failed" if rng.random() < 0.01 else "delivered"
            author = None if direction == "inbound" else (assignee or members[int(rng.random() * len(members))])
            interactions.append((new_id(), conversation_id, customer_id, channel, direction, author, text,
                                 subject if channel == "email" else None, meta, delivery, iso(at)))
        last = at
        sla = special.get(k)
        if sla is None and active:
            sla = now_ts + rng.uniform(-2, 3) * 86400 if rng.random() < 0.9 else None
        tags = rng.sample(CONVERSATION_TAGS, rng.choice((1, 1, 2))) if rng.random() < 0.25 else []
        rows["conversations"].append((
            conversation_id, customer_id, channel, status, priorities[k], assignee, team,
            rng.choice(subjects) if channel == "email" else None,
            iso(sla) if sla is not None else None,
            iso(now_ts + rng.uniform(1, 48) * 3600) if status == "snoozed" else None,
            json.dumps(tags), iso(created), iso(last), iso(last), 1,
        ))
        if status == "closed" or rng.random() < 0.5:
            seen.append((conversation_id, iso(last)))
    rows["merge_suggestions"] = [
        (new_id(), customers[2 + 2 * i][0], customers[3 + 2 * i][0], "same phone", "open", iso(now_ts - i * 3600))
        for i in range(min(50, (sizes.customers - 3) // 2))
    ]
    generated_s = time.perf_counter() - t0

    # load: a bootstrap's order (by id), one transaction, then the product's own index build
    n_identities = len(rows["identities"])
    cache = Cache(path)
    me = {"id": me_id, "name": ME_NAME, "team_ids": team_ids}
    cache.set_identity(me)
    cache.close()
    t1 = time.perf_counter()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=OFF")  # a bulk load into a new file: no WAL copy (WAL again at the end)
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-1000000")
    db.execute("BEGIN")
    for table, cols in MIRROR_TABLES.items():
        table_rows = sorted(rows[table])
        db.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", table_rows)
        rows[table] = []
    db.executemany("INSERT INTO seen (conversation_id, last_message_at) VALUES (?, ?)", seen)
    for table in MIRROR_TABLES:
        db.execute("INSERT OR REPLACE INTO sync_state (key, value) VALUES (?, 'done')", (f"bootstrap.{table}",))
    db.execute("COMMIT")
    db.close()
    load_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    cache = Cache(path)
    cache.db.execute("PRAGMA cache_size=-1000000")  # this connection only: the index build sorts a lot
    cache.db.execute("PRAGMA journal_mode=OFF")
    cache.db.execute("PRAGMA synchronous=OFF")
    cache.finish_bootstrap("bench")
    cache.db.execute("PRAGMA journal_mode=WAL")
    cache.close()
    index_s = time.perf_counter() - t2
    manifest = {
        "version": VERSION, "seed": seed, "sizes": asdict(sizes), "now": iso(now_ts), "me": me,
        "heavy_customer": {"id": heavy_id, "name": HEAVY_NAME},
        "first_customer": {"id": first_id, "name": FIRST_NAME},
        "probes": {"common": COMMON_PROBE, "rare": RARE_PROBE, "rare_count": 25 - rare_left},
        "sample_phone": "+14150000042", "sample_name": f"{customers[42][1]}",
        "counts": {"conversations": sizes.conversations, "interactions": sizes.interactions,
                   "customers": sizes.customers, "identities": n_identities, "seen": len(seen)},
        "timings_s": {"generate": round(generated_s, 2), "load": round(load_s, 2), "finish_bootstrap": round(index_s, 2)},
        "bytes": path.stat().st_size,
    }
    return manifest


def schema_key() -> str:
    """Changes whenever the cache schema (tables, indexes, search index, page size) changes: then the file is rebuilt."""
    from agentdesk.store import schema

    text = f"{schema.SCHEMA_VERSION}|{schema.PAGE_SIZE}|{schema.mirror_ddl()}|{schema.LOCAL_TABLES}|{schema.INDEXES}"
    fts = [getattr(schema, name) for name in sorted(dir(schema)) if "FTS" in name.upper()]
    text += "|" + "|".join(str(value) for value in fts if not callable(value))  # a function's str is its address
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def cached_cache(sizes: Sizes = Sizes(), seed: int = 5, rebuild: bool = False) -> tuple[Path, dict[str, Any]]:
    """The generated cache for these sizes and this schema, built on first use (or when `rebuild`)."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    key = f"{VERSION}-{sizes.conversations}x{sizes.interactions}-s{seed}-{schema_key()}"
    path, meta = CACHE_DIR / f"{key}.sqlite3", CACHE_DIR / f"{key}.json"
    if not rebuild and path.exists() and meta.exists():
        log(f"reusing {path}")
        return path, json.loads(meta.read_text())
    log(f"building {path} ({sizes.conversations:,} conversations, {sizes.interactions:,} interactions)")
    t0 = time.perf_counter()
    manifest = build(path, sizes, seed)
    manifest["build_s"] = round(time.perf_counter() - t0, 2)
    meta.write_text(json.dumps(manifest, indent=1))
    log(f"built in {manifest['build_s']} s: {manifest['timings_s']}, {manifest['bytes'] / 1e6:.0f} MB")
    return path, manifest


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()
    print(json.dumps(cached_cache(Sizes.quick() if args.quick else Sizes(), rebuild=args.rebuild)[1], indent=1))
