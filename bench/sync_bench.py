"""Sync bench (issue 4): a desk's full bootstrap of a large team, and its catch-up after 10,000 changes.

    python bench/sync_bench.py [--quick] [--interactions N] [--changes N] [--pages] [--postgres URL] [--profile DIR]

(a) Bootstrap: a server database whose bench team holds >= 200k interactions (texts from the demo
    generator, ~200 characters), plus a second team the agent must not see. A fresh cache is bootstrapped
    through the real client: SyncEngine(cache_path, SyncClient(url, token)).sync_once(Cache(cache_path)),
    against the real app served by uvicorn in its own process (bench/_serve.py).
    Floor, measured in the same run: raw sqlite3 `executemany` of the same rows (fetched once from the
    server's database with the same visibility rule) into same-shaped tables (store/schema.py's mirror DDL).
    Split: time inside HTTP requests (server work + loopback transfer), JSON decoding, cache writes, the
    index build; plus the server process's CPU seconds.
(b) Catch-up: another agent of the team pushes notes (batches of 500) until the server has committed
    `--changes` change-log entries (each note = an interaction and a conversation upsert); then the
    bootstrapped desk's next sync_once pulls them all; timed, with the same split.

--tcp-nodelay runs a candidate server fix (TCP_NODELAY on accepted sockets) without touching src/.
Prints one JSON object on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any, Self

from _common import ServerProcess, copy_to_postgres, log, seed_world

TARGET_IPS = 100_000
TARGET_FLOOR_RATIO = 0.4
TARGET_CATCHUP_S = 2.0
OVERLAPPED = "http_in_fetcher_thread_s"


class Split:
    """Wraps the client's HTTP calls and the cache's writes on these instances to see where time goes."""

    def __init__(self, client: Any, cache: Any) -> None:
        self.t: dict[str, float] = defaultdict(float)
        self.n: dict[str, int] = defaultdict(int)
        self.per_entity: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        request = client.http.request

        def timed_request(*args: Any, **kw: Any) -> Any:
            # The bootstrap's requests run in the engine's fetcher thread, overlapping the rest: kept apart.
            key = "http_s" if threading.current_thread() is threading.main_thread() else OVERLAPPED
            t0 = time.perf_counter()
            try:
                return request(*args, **kw)
            finally:
                self.t[key] += time.perf_counter() - t0
                self.n["requests"] += 1

        client.http.request = timed_request

        decode = client.decode

        def timed_decode(body: bytes) -> Any:  # every answer's (the client's _call), and the bootstrap's pages
            t0 = time.perf_counter()
            result = decode(body)
            spent = time.perf_counter() - t0
            self.t["json_decode_s"] += spent
            if isinstance(result, dict) and "entity" in result:
                self.per_entity[result["entity"]]["json_decode_s"] += spent
            return result

        client.decode = timed_decode
        bootstrap_page = client.bootstrap_page

        def timed_page(entity: str, *args: Any) -> Any:  # in the engine's fetcher thread: overlaps the rest
            t0 = time.perf_counter()
            result = bootstrap_page(entity, *args)
            self.per_entity[entity]["http_s"] += time.perf_counter() - t0
            self.per_entity[entity]["pages"] += 1
            return result

        client.bootstrap_page = timed_page
        snapshot = client.snapshot

        def timed_snapshot(*args: Any) -> Any:  # a snapshot file: its making and transfer (the second, in a thread)
            key = "snapshot_http_s" if threading.current_thread() is threading.main_thread() else OVERLAPPED
            t0 = time.perf_counter()
            try:
                return snapshot(*args)
            finally:
                self.t[key] += time.perf_counter() - t0

        client.snapshot = timed_snapshot

        def around_cache(name: str, key: str, entity_arg: bool = False) -> None:
            inner = getattr(cache, name)

            def call(*args: Any, **kw: Any) -> Any:
                t0 = time.perf_counter()
                result = inner(*args, **kw)
                spent = time.perf_counter() - t0
                self.t[key] += spent
                if entity_arg:
                    self.per_entity[args[0]]["cache_apply_s"] += spent
                    self.per_entity[args[0]]["rows"] += len(args[2])
                return result

            setattr(cache, name, call)

        around_cache("apply_bootstrap_page", "cache_apply_s", entity_arg=True)
        around_cache("load_snapshot", "cache_apply_s")
        around_cache("finish_entity", "index_build_s")  # a snapshot file's tables, once it is loaded
        around_cache("apply_changes", "cache_apply_s")
        around_cache("finish_bootstrap", "index_build_s")

    def reset(self) -> None:
        self.t.clear()
        self.n.clear()
        self.per_entity.clear()

    def report(self, total: float) -> dict[str, Any]:
        out = {k: round(v, 3) for k, v in sorted(self.t.items())}
        # for the bootstrap: mostly waiting for the fetcher's next page
        out["other_client_s"] = round(total - sum(v for k, v in self.t.items() if k != OVERLAPPED), 3)
        out["requests"] = self.n["requests"]
        return out


def visible_rows(server_db: Path, team_id: str) -> dict[str, list[tuple]]:
    """The rows a bootstrap of an agent of `team_id` loads, straight from the server's database, key-ordered."""
    from agentdesk.server.wire import ENTITIES
    from agentdesk.store.schema import MIRROR_TABLES

    team_customers = "SELECT customer_id FROM conversation WHERE team_id = :team"
    where = {
        "customers": f"id IN ({team_customers})",
        "identities": f"customer_id IN ({team_customers})",
        "conversations": "team_id = :team",
        "interactions": "conversation_id IN (SELECT id FROM conversation WHERE team_id = :team)",
    }
    db = sqlite3.connect(server_db)
    try:
        out = {}
        for entity, cols in MIRROR_TABLES.items():
            table = ENTITIES[entity].__tablename__
            sql = f"SELECT {', '.join(cols)} FROM {table}"
            if entity in where:
                sql += f" WHERE {where[entity]}"
            out[entity] = db.execute(sql + " ORDER BY id", {"team": team_id}).fetchall()
        return out
    finally:
        db.close()


def floor_insert(path: Path, rows: dict[str, list[tuple]]) -> tuple[float, float]:
    """Raw sqlite3 executemany of `rows` into the cache's mirror tables (same pragmas), then its indexes."""
    from agentdesk.store.schema import INDEXES, LOCAL_TABLES, MIRROR_TABLES, PAGE_SIZE, mirror_ddl

    db = sqlite3.connect(path, isolation_level=None)
    db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # as a new cache file has it
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA cache_size=-65536")  # as the bootstrap loads (Cache.bulk_load): the floor gets the same help
    db.execute("PRAGMA wal_autocheckpoint=16384")
    db.executescript(mirror_ddl() + LOCAL_TABLES)  # the search index's build reads sync_state
    t0 = time.perf_counter()
    db.execute("BEGIN")
    for entity, cols in MIRROR_TABLES.items():
        db.executemany(f"INSERT INTO {entity} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows[entity])
    db.execute("COMMIT")
    insert_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    db.executescript(f"BEGIN; {INDEXES}; COMMIT;")  # a script: trigger bodies and comments hold semicolons
    index_s = time.perf_counter() - t0
    db.close()
    return insert_s, index_s


def change_count(server: ServerProcess, server_db: Path) -> int:
    """The server's change-log entries (in the database it serves from)."""
    if server.url_of_database is None:
        db = sqlite3.connect(server_db)
        try:
            return db.execute("SELECT count(*) FROM change").fetchone()[0]
        finally:
            db.close()
    import sqlalchemy as sa

    engine = sa.create_engine(server.url_of_database)
    try:
        with engine.connect() as db:
            return db.execute(sa.text("SELECT count(*) FROM change")).scalar_one()
    finally:
        engine.dispose()


def push_notes(url: str, token: str, conversations: list[tuple[str, str]], notes: int, batch: int, texts: list[str]) -> dict[str, Any]:
    import random

    import httpx

    rng = random.Random(11)
    applied = rejected = 0
    t0 = time.perf_counter()
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=300) as http:
        for start in range(0, notes, batch):
            mutations = []
            for _ in range(min(batch, notes - start)):
                conversation_id, channel = rng.choice(conversations)
                mutations.append({"id": uuid.uuid4().hex, "kind": "note", "args": {
                    "conversation_id": conversation_id, "interaction_id": uuid.uuid4().hex, "channel": channel,
                    "text": rng.choice(texts)}})
            response = http.post("/api/v1/sync/push", json={"mutations": mutations})
            response.raise_for_status()
            for result in response.json()["results"]:
                applied += result["status"] == "applied"
                rejected += result["status"] != "applied"
    seconds = time.perf_counter() - t0
    return {"notes": notes, "batch": batch, "applied": applied, "rejected": rejected, "seconds": round(seconds, 3),
            "mutations_per_s": round(notes / seconds, 1)}


class ClientProfile:
    def __init__(self, out: Path | None) -> None:
        self.out = out
        self.profile = None

    def __enter__(self) -> Self:
        if self.out is not None:
            import cProfile

            self.profile = cProfile.Profile()
            self.profile.enable()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.profile is not None:
            self.profile.disable()
            self.profile.dump_stats(str(self.out))


def print_profile(path: Path, title: str, limit: int = 25) -> None:
    import io
    import pstats

    if not path.exists():
        return
    buf = io.StringIO()
    stats = pstats.Stats(str(path), stream=buf)
    stats.sort_stats("tottime").print_stats(limit)
    log(f"--- profile {title}: top {limit} by own time ({path}) ---\n" + buf.getvalue())


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="sync_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small version (< 60 s) for a smoke run")
    parser.add_argument("--interactions", type=int, help="interactions the bench agent sees (default 200,000; quick 20,000)")
    parser.add_argument("--changes", type=int, help="change-log entries to catch up on (default 10,000; quick 2,000)")
    parser.add_argument("--profile", type=Path, help="write cProfile stats of server and client here (slower; figures not comparable)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--pages", action="store_true", help="bootstrap in pages, not from the server's snapshot")
    parser.add_argument("--postgres", metavar="URL", help="serve from a copy of the seeded database in a new schema of this PostgreSQL database")
    parser.add_argument("--tcp-nodelay", action="store_true",
                        help="what-if: serve on a proto=IPPROTO_TCP socket so TCP_NODELAY is set (see bench/_serve.py)")
    args = parser.parse_args(argv)

    interactions = args.interactions or (20_000 if args.quick else 200_000)
    changes = args.changes or (2_000 if args.quick else 10_000)
    per_conversation = 5
    team_conversations = -(-interactions // per_conversation)
    other_conversations = max(100, team_conversations // 4)  # a second team's work the agent must not see

    from agentdesk.store.cache import Cache
    from agentdesk.sync.client import SyncClient
    from agentdesk.sync.engine import BOOTSTRAP_PAGE, SyncEngine

    tmp = Path(tempfile.mkdtemp(prefix="agentdesk-sync-bench-"))
    server_db = tmp / "server.sqlite3"
    log(f"seeding {team_conversations * per_conversation:,} visible interactions (+{other_conversations * per_conversation:,} in another team) into {server_db}")
    world = seed_world(
        server_db,
        agents_per_team=[5, 5],
        conversations_per_team=[team_conversations, other_conversations],
        interactions_per_conversation=per_conversation,
        customers=max(200, team_conversations * 5 // 8),
    )
    team = world.teams[0]
    desk_agent, pusher = [a for a in world.agents if a.team_id == team][:2]
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    server_profile = str(args.profile / "sync_server.pstats") if args.profile else None

    result: dict[str, Any] = {"bench": "sync", "quick": args.quick, "dataset": world.counts,
                              "bootstrap_by": "pages" if args.pages else "snapshot",
                              "what_if": {"tcp_nodelay": True} if args.tcp_nodelay else None}
    server_url = None
    if args.postgres:
        log("copying the seeded database into PostgreSQL")
        server_url, drop_schema = copy_to_postgres(server_db, args.postgres)
        atexit.register(drop_schema)  # however the bench ends
        result["server_database"] = "postgresql"
    load_before = os.getloadavg()
    with ServerProcess(server_db, profile=server_profile, tcp_nodelay=args.tcp_nodelay, url=server_url) as server:
        # (a) bootstrap ------------------------------------------------------------------------------------
        cache_path = tmp / "cache.sqlite3"
        client = SyncClient(server.url, desk_agent.token)
        log(f"server started; idle after {server.wait_idle():.1f} s. Bootstrap into a fresh cache (pages of {BOOTSTRAP_PAGE:,} rows)")
        cpu0, pcpu0 = server.cpu(), time.process_time()
        with ClientProfile(args.profile / "sync_client_bootstrap.pstats" if args.profile else None):
            t0 = time.perf_counter()
            cache = Cache(cache_path)
            engine = SyncEngine(cache_path, client, snapshots=not args.pages)
            split = Split(client, cache)
            engine.sync_once(cache)
            bootstrap_s = time.perf_counter() - t0
            if engine.checkpointed is not None:  # the WAL's copy into the file, which the desk does not wait for
                engine.checkpointed.result()  # (waited for here, so it overlaps nothing measured next)
            checkpoint_s = time.perf_counter() - t0 - bootstrap_s
        server_cpu, client_cpu = server.cpu() - cpu0, time.process_time() - pcpu0
        loaded = {t: cache.db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for t in ("teams", "agents", "agent_teams", "customers", "identities", "conversations", "interactions")}
        n_interactions = loaded["interactions"]
        ips = n_interactions / bootstrap_s
        log(f"bootstrap: {n_interactions:,} interactions ({sum(loaded.values()):,} rows) in {bootstrap_s:.2f} s = {ips:,.0f} interactions/s")
        per_entity = {e: {k: round(v, 3) if isinstance(v, float) and k != "rows" and k != "pages" else int(v) for k, v in d.items()}
                      for e, d in split.per_entity.items()}
        result["bootstrap"] = {
            "interactions": n_interactions,
            "rows": loaded,
            "seconds": round(bootstrap_s, 3),
            "interactions_per_s": round(ips),
            "rows_per_s": round(sum(loaded.values()) / bootstrap_s),
            "split": split.report(bootstrap_s),
            "per_entity": per_entity,
            "server_cpu_s": round(server_cpu, 3),
            "client_cpu_s": round(client_cpu, 3),  # the checkpoint's included
            "checkpoint_after_s": round(checkpoint_s, 3),
        }

        # floor: the same rows, raw executemany, same process, same run -----------------------------------
        log("floor: fetching the same rows from the server database, then raw executemany")
        rows = visible_rows(server_db, team)
        same = {e: len(rows[e]) for e in loaded} == loaded
        insert_s, index_s = floor_insert(tmp / "floor.sqlite3", rows)
        floor_ips = len(rows["interactions"]) / insert_s
        ratio = ips / floor_ips
        log(f"floor: {insert_s:.2f} s insert (+{index_s:.2f} s indexes) = {floor_ips:,.0f} interactions/s; ratio {ratio:.3f}")
        result["floor"] = {
            "what": "raw sqlite3 executemany of the same rows (every mirror table) into the mirror DDL, one transaction",
            "same_rows_as_bootstrap": same,
            "insert_s": round(insert_s, 3),
            "index_build_s": round(index_s, 3),
            "interactions_per_s": round(floor_ips),
            "interactions_per_s_with_indexes": round(len(rows["interactions"]) / (insert_s + index_s)),
        }
        result["ratio"] = round(ratio, 3)
        result["ratio_vs_floor_with_indexes"] = round(ips / result["floor"]["interactions_per_s_with_indexes"], 3)
        del rows

        # (b) catch-up ------------------------------------------------------------------------------------
        notes = changes // 2  # a note = an interaction upsert + a conversation upsert
        db = sqlite3.connect(server_db)
        texts = [t for t, in db.execute("SELECT text FROM interaction LIMIT 2000")]
        db.close()
        before = change_count(server, server_db)
        log(f"catch-up: another agent pushes {notes:,} notes in batches of 500 ({changes:,} changes)")
        cpu0 = server.cpu()
        pushed = push_notes(server.url, pusher.token, world.conversations[team], notes, 500, texts)
        pushed["server_cpu_s"] = round(server.cpu() - cpu0, 3)
        committed = change_count(server, server_db) - before
        log(f"pushed: {pushed}; {committed:,} changes committed")
        split.reset()
        cpu0, pcpu0 = server.cpu(), time.process_time()
        with ClientProfile(args.profile / "sync_client_catchup.pstats" if args.profile else None):
            t0 = time.perf_counter()
            engine.sync_once(cache)
            catchup_s = time.perf_counter() - t0
        server_cpu, client_cpu = server.cpu() - cpu0, time.process_time() - pcpu0
        after = cache.db.execute("SELECT count(*) FROM interactions").fetchone()[0]
        log(f"catch-up: {committed:,} changes in {catchup_s:.2f} s")
        result["catchup"] = {
            "changes": committed,
            "push": pushed,
            "seconds": round(catchup_s, 3),
            "changes_per_s": round(committed / catchup_s),
            "pull_page": engine.page_size,
            "split": split.report(catchup_s),  # pages fetched ahead count in http_in_fetcher_thread_s: parts overlap
            "server_cpu_s": round(server_cpu, 3),
            "client_cpu_s": round(client_cpu, 3),
            "new_interactions_in_cache": after - n_interactions,
            "complete": after - n_interactions == pushed["applied"],
        }
        cache.close()
        client.close()

    meets = {
        "interactions_per_s": ips >= TARGET_IPS,
        "ratio": ratio >= TARGET_FLOOR_RATIO,
        "catchup_s": catchup_s <= TARGET_CATCHUP_S,
        "correct": same and result["catchup"]["complete"],
    }
    result["targets"] = {"interactions_per_s": TARGET_IPS, "ratio": TARGET_FLOOR_RATIO, "catchup_s": TARGET_CATCHUP_S}
    result["meets"] = meets
    result["meets_target"] = all(meets.values())
    result["load_avg_before_after"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    if args.profile:
        print_profile(Path(server_profile), "server (bootstrap + push + pull)")
        print_profile(args.profile / "sync_client_bootstrap.pstats", "client bootstrap")
        print_profile(args.profile / "sync_client_catchup.pstats", "client catch-up")
    if args.keep:
        log(f"kept {tmp}")
    else:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
