"""The local SQLite cache the desk reads from (raw sqlite3: it is on every hot path).

One `Cache` per thread: the TUI reads through its own, the sync worker writes through another; WAL lets
them work side by side. Local writes use BEGIN IMMEDIATE so a writer never deadlocks on upgrade.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

from agentdesk.domain.clock import to_iso, utcnow
from agentdesk.store.schema import (
    ENTITY_INDEXES,
    FTS_DROP,
    INDEXES,
    LOCAL_TABLES,
    MIGRATIONS,
    MIRROR_TABLES,
    PAGE_SIZE,
    SCHEMA_VERSION,
    mirror_ddl,
)
from agentdesk.store import queue as queue_views
from agentdesk.store.queue import QueueRow, QueueView  # noqa: F401 - QueueRow is imported from here too
from agentdesk.store.timeline import CustomerTimeline, TimelineItem  # noqa: F401 - TimelineItem re-exported

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Identity:
    agent_id: str
    agent_name: str
    team_ids: tuple[str, ...]


@dataclass(frozen=True)
class TransferTarget:
    team_id: str
    team_name: str
    agent_id: str | None = None  # None: to the team, unassigned
    agent_name: str | None = None


NOTE_DRAFT = "note"  # the drafts table's channel for an internal note being written (a note goes to no channel)

# How a rejected mutation is announced: "<this>: <the server's reason>".
REJECTED = {
    "reply": "Not sent", "note": "Note not saved", "assign": "Not assigned", "unassign": "Not unassigned",
    "transfer": "Not transferred", "set_status": "Status not changed", "snooze": "Not snoozed",
    "set_priority": "Priority not changed", "tag": "Tag not added", "untag": "Tag not removed",
    "retry_delivery": "Not sent again", "set_disposition": "Disposition not saved", "request_callback": "No callback",
    "edit_customer": "Customer not saved", "merge_customers": "Not merged", "unmerge": "Merge not undone",
    "dismiss_suggestion": "Suggestion not dismissed",
}  # fmt: skip


def _undo(db: sqlite3.Connection, undo: dict[str, Any]) -> None:
    """Put back what a rejected local action changed: delete the row it created, or restore the columns it
    set — each only while it still holds the action's value. Where a later queued action changed it since,
    that one stands, and now undoes to this action's `before` (should it be rejected too)."""
    table, key, before = undo["table"], undo["id"], undo["before"]
    if before is None:
        db.execute(f"DELETE FROM {table} WHERE id = ?", (key,))
        return
    for column, value in before.items():
        if column not in MIRROR_TABLES[table]:
            continue
        query = f"UPDATE {table} SET {column} = ? WHERE id = ? AND {column} IS ?"
        if db.execute(query, (value, key, undo["after"][column])).rowcount == 0:
            _hand_down(db, table, key, column, value)


def _hand_down(db: sqlite3.Connection, table: str, key: str, column: str, value: Any) -> None:
    """The next queued action on this row's column undoes to `value` (its own `before` was rejected)."""
    for seq, text in db.execute("SELECT seq, undo FROM outbox WHERE entity_id = ? ORDER BY seq", (key,)).fetchall():
        undo = json.loads(text or "null")
        if undo and undo["table"] == table and column in (undo["before"] or {}):
            undo["before"][column] = value
            db.execute("UPDATE outbox SET undo = ? WHERE seq = ?", (json.dumps(undo), seq))
            return


def _drop_conversation(db: sqlite3.Connection, conversation_id: str) -> None:
    """A conversation left the agent's teams (or is gone): its messages leave with it, and so does its customer
    (addresses and merge suggestions too) once no other conversation of theirs is in view — the server's rule
    (server/visibility.py), which tells the old team only that the conversation went."""
    row = db.execute("SELECT customer_id FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
    db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
    db.execute("DELETE FROM interactions WHERE conversation_id = ?", (conversation_id,))
    if row is not None and db.execute("SELECT 1 FROM conversations WHERE customer_id = ?", row).fetchone() is None:
        db.execute("DELETE FROM customers WHERE id = ?", row)
        db.execute("DELETE FROM identities WHERE customer_id = ?", row)
        db.execute("DELETE FROM merge_suggestions WHERE customer_id = ?1 OR other_id = ?1", row)


def _run_script(db: sqlite3.Connection, script: str) -> None:
    """executescript() would COMMIT the open transaction; run the statements inside it instead (a trigger's
    body holds semicolons: pieces are joined until SQLite calls the statement complete)."""
    statement = ""
    for piece in script.split(";"):
        statement += piece + ";"
        if sqlite3.complete_statement(statement):
            if statement.strip(" \t\n;"):
                db.execute(statement)
            statement = ""


def _kept(entity: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> tuple[str, str, Iterable[Sequence[Any]]]:
    """The column list and placeholders for the server's columns the cache's table has (a newer server may
    send more), and the rows cut down to them."""
    keep = [i for i, name in enumerate(columns) if name in MIRROR_TABLES[entity]]
    if len(keep) < len(columns):
        rows = ([row[i] for i in keep] for row in rows)
    return ", ".join(columns[i] for i in keep), ", ".join("?" for _ in keep), rows


def checkpoint(path: Path) -> None:
    """Copy the WAL into the database file, on a connection of its own and PASSIVE, so the desk's reads and
    writes go on meanwhile. After a bootstrap the WAL holds the whole mirror (~200 MB for 200k messages): a
    few tenths of a second of disk work nothing needs to wait for (the engine runs it in a thread). Should it
    fail, the pages stay in the WAL, where they are as safe; the next checkpoint copies them."""
    try:
        with closing(sqlite3.connect(path, timeout=10, isolation_level=None)) as db:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)")
    except sqlite3.Error as exc:
        log.warning("checkpoint of %s failed (%s): its WAL keeps the pages until the next one", path, exc)


class Cache:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
        self.db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # before WAL: it takes effect only in a new, empty file
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=10000")
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version < SCHEMA_VERSION:
            with self.write() as db:
                if version == 0:  # a new file
                    _run_script(db, mirror_ddl() + LOCAL_TABLES)
                for step in range(version + 1, SCHEMA_VERSION + 1) if version else ():
                    script, reload = MIGRATIONS[step]
                    _run_script(db, script)
                    for entity in reload:
                        self._reload_entity(db, entity)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One local transaction, taken as a writer from the start."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:  # SQLite may have rolled back already (a full disk, say)
                self.db.execute("ROLLBACK")
            raise

    # --- sync state -------------------------------------------------------------------------------

    def state(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM sync_state WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_state(self, key: str, value: str | None, db: sqlite3.Connection | None = None) -> None:
        (db or self.db).execute("INSERT OR REPLACE INTO sync_state (key, value) VALUES (?, ?)", (key, value))

    def identity(self) -> Identity | None:
        raw = self.state("me")
        if raw is None:
            return None
        me = json.loads(raw)
        return Identity(me["id"], me["name"], tuple(me["team_ids"]))

    def set_identity(self, me: dict[str, Any]) -> None:
        with self.write() as db:
            self.set_state("me", json.dumps({k: me[k] for k in ("id", "name", "team_ids")}), db)

    # --- applying server data ---------------------------------------------------------------------

    def upsert_rows(self, db: sqlite3.Connection, entity: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Insert-or-replace rows given in the server's column order (columns the cache lacks are skipped).

        The rows go through a TEMP staging table shaped like the target (same columns and affinities, so values
        keep their exact types), then into the target in one statement: FTS5 flushes its pending terms at the
        end of every statement, so with the search index's triggers in place a statement per row writes an
        index segment per row and then merges them (~0.4 ms a row instead of ~0.05)."""
        names, marks, rows = _kept(entity, columns, rows)
        stage = f"temp.stage_{entity}"
        # IF NOT EXISTS each time rather than remembered: a rolled-back transaction takes the CREATE with it.
        db.execute(f"CREATE TEMP TABLE IF NOT EXISTS stage_{entity} AS SELECT * FROM main.{entity} WHERE 0")
        db.executemany(f"INSERT INTO {stage} ({names}) VALUES ({marks})", rows)
        # ORDER BY rowid: staging order, so a row's last version still wins
        db.execute(f"INSERT OR REPLACE INTO main.{entity} ({names}) SELECT {names} FROM {stage} ORDER BY rowid")
        db.execute(f"DELETE FROM {stage}")

    def apply_bootstrap_page(self, entity: str, columns: Sequence[str], rows: list[list[Any]], next_after: str | None) -> None:
        """Load a page and record how far this entity got, together, so a bootstrap can resume.

        Plain `executemany` (cheaper than upsert_rows' staging): while a bootstrap loads, the search
        index and its triggers do not exist yet (finish_bootstrap builds them; reset_mirror drops them)."""
        names, marks, kept = _kept(entity, columns, rows)
        self.bulk_load(True)
        with self.write() as db:
            db.executemany(f"INSERT OR REPLACE INTO {entity} ({names}) VALUES ({marks})", kept)
            self.set_state(f"bootstrap.{entity}", "done" if next_after is None else f"after:{next_after}", db)

    def load_snapshot(self, path: Path, entities: Sequence[str], cursor: str | None) -> dict[str, int]:
        """Load these `entities` from a server snapshot (server/snapshot.py: a SQLite file of the rows the agent
        may see) into the mirror tables, in one transaction with the bootstrap's progress: those entities done,
        and, given a `cursor`, the pull to start there. The file is the server's, so it is read as data
        only: its tables by name, the columns both sides have, with untrusted schema objects disabled. Rows
        loaded, by entity."""
        self.db.execute("PRAGMA trusted_schema=OFF")  # no function a view or default of that file names runs here
        try:
            self.db.execute("ATTACH DATABASE ? AS snapshot", (str(path),))  # (a file that is no database fails below)
            try:
                return self._copy_snapshot(entities, cursor)
            finally:
                self.db.execute("DETACH DATABASE snapshot")
        finally:
            self.db.execute("PRAGMA trusted_schema=ON")  # SQLite's default, which the search index's triggers need

    def _copy_snapshot(self, entities: Sequence[str], cursor: str | None) -> dict[str, int]:
        tables = {name for (name,) in self.db.execute("SELECT name FROM snapshot.sqlite_master WHERE type = 'table'")}
        loaded: dict[str, int] = {}
        self.bulk_load(True)
        with self.write() as db:
            for entity in entities:
                if entity not in tables:
                    raise sqlite3.DatabaseError(f"the snapshot has no {entity} table")
                have = {row[1] for row in db.execute(f"PRAGMA snapshot.table_info({entity})")}
                names = ", ".join(c for c in MIRROR_TABLES[entity] if c in have)
                loaded[entity] = db.execute(f"INSERT OR REPLACE INTO main.{entity} ({names}) SELECT {names} FROM snapshot.{entity}").rowcount
                self.set_state(f"bootstrap.{entity}", "done", db)
            if cursor is not None:
                self.set_state("bootstrap.cursor", cursor, db)
        return loaded

    def finish_entity(self, entity: str) -> None:
        """Build a loaded entity's indexes and search index (store/schema.py ENTITY_INDEXES)."""
        with self.write() as db:
            _run_script(db, ENTITY_INDEXES.get(entity, ""))

    def reset_mirror(self) -> None:
        """Forget the server's data (kept: outbox, drafts, notices), so the next sync bootstraps afresh."""
        with self.write() as db:
            _run_script(db, FTS_DROP)  # built again after the next bootstrap
            for table in MIRROR_TABLES:
                db.execute(f"DELETE FROM {table}")
            db.execute("DELETE FROM sync_state WHERE key IN ('cursor', 'bootstrapped') OR key LIKE 'bootstrap.%'")

    def _reload_entity(self, db: sqlite3.Connection, entity: str) -> None:
        """Load this entity's rows again on the next sync (kept meanwhile), then pull from where the cache
        was: the reload brings new columns, the pull everything since the old cursor, deletions included."""
        db.execute("DELETE FROM sync_state WHERE key = ?", (f"bootstrap.{entity}",))
        if self.state("bootstrapped") == "1":
            self.set_state("bootstrap.cursor", self.state("cursor"), db)
            db.execute("DELETE FROM sync_state WHERE key = 'bootstrapped'")

    def finish_bootstrap(self, cursor: str) -> None:
        self.bulk_load(True)  # (a resumed bootstrap may have no page left to load)
        with self.write() as db:
            _run_script(db, INDEXES)
            self.set_state("cursor", cursor, db)
            self.set_state("bootstrapped", "1", db)
        self.bulk_load(False)  # (the WAL, which now holds the whole mirror, is left to `checkpoint`)

    def bulk_load(self, on: bool) -> None:
        """While a bootstrap loads, this connection caches more pages (the interactions arrive in conversation
        order, so their id index is written all over) and checkpoints the WAL rarely (a checkpoint syncs the
        disk; each page still commits with its progress, so a killed bootstrap resumes as before)."""
        cache_kib, checkpoint_pages = (65536, 16384) if on else (2000, 1000)  # off: SQLite's defaults
        self.db.execute(f"PRAGMA cache_size=-{cache_kib}")
        self.db.execute(f"PRAGMA wal_autocheckpoint={checkpoint_pages}")

    def apply_changes(self, changes: list[dict[str, Any]], cursor: str, after: str | None = None) -> int:
        """Apply a pull page and advance the cursor in one transaction; with `after`, only if the cursor is
        still `after` when the transaction holds the write lock (else nothing is applied and -1 returned).

        Upserts of one entity and shape go in one `executemany`, so a page of 1,000 new messages costs one
        statement rather than a thousand. Without deletes in the page they are grouped across the page, each
        row's last version only (a busy conversation changes many times a page); with deletes, only
        consecutive runs are grouped (staged in order, so a row's last version still wins).
        """
        def shape(change: dict[str, Any]) -> tuple:
            data = change["data"] if change["op"] != "delete" else None
            return change["entity"], change["op"], tuple(data) if data else change["id"]

        with self.write() as db:
            if after is not None and self.state("cursor") != after:
                return -1
            mirrored = [c for c in changes if c["entity"] in MIRROR_TABLES]
            if all(c["op"] != "delete" for c in mirrored):
                mirrored = sorted({(c["entity"], c["id"]): c for c in mirrored}.values(), key=shape)
            for (entity, op, columns), run in groupby(mirrored, key=shape):
                if op == "delete":
                    if entity == "conversations":
                        _drop_conversation(db, columns)
                    else:
                        db.execute(f"DELETE FROM {entity} WHERE id = ?", (columns,))
                    continue
                # JSON columns arrive parsed here; the cache keeps JSON text.
                rows = [[json.dumps(v) if isinstance(v, (list, dict)) else v for v in c["data"].values()] for c in run]
                self.upsert_rows(db, entity, list(columns), rows)
            self.set_state("cursor", cursor, db)
        return len(changes)

    # --- the desk's reads -------------------------------------------------------------------------

    def queue_count(self, me: Identity, view: QueueView | None = None) -> int:
        """How many conversations a queue view lists (store/queue.py); by default mine and unassigned in my teams."""
        return queue_views.count(self.db, me, view or QueueView("inbox"))

    def queue(self, me: Identity, offset: int = 0, limit: int = 100, view: QueueView | None = None) -> list[QueueRow]:
        return queue_views.rows(self.db, me, view or QueueView("inbox"), offset, limit)

    def conversation(self, conversation_id: str) -> dict[str, Any] | None:
        """The conversation's row, with its assignee's and team's names (None where unknown)."""
        cur = self.db.execute(
            "SELECT c.*, a.name AS assignee_name, t.name AS team_name FROM conversations c"
            " LEFT JOIN agents a ON a.id = c.assignee_id LEFT JOIN teams t ON t.id = c.team_id WHERE c.id = ?",
            (conversation_id,),
        )
        row = cur.fetchone()
        return dict(zip([d[0] for d in cur.description], row, strict=True)) if row else None

    def transfer_targets(self, me: Identity) -> list[TransferTarget]:
        """Where a conversation can go: every active team, and each active agent of the agent's own teams."""
        mine = ", ".join("?" for _ in me.team_ids) or "NULL"
        rows = self.db.execute(
            f"""
            SELECT * FROM (
              SELECT t.id AS team_id, t.name AS team_name, NULL AS agent_id, NULL AS agent_name
                FROM teams t WHERE coalesce(t.active, 1)
              UNION ALL
              SELECT t.id, t.name, a.id, a.name FROM agent_teams m
                JOIN agents a ON a.id = m.agent_id JOIN teams t ON t.id = m.team_id
               WHERE m.team_id IN ({mine}) AND coalesce(a.active, 1) AND coalesce(t.active, 1)
            ) ORDER BY agent_id IS NOT NULL, team_name, agent_name
            """,
            me.team_ids,
        ).fetchall()
        return [TransferTarget(*row) for row in rows]

    def is_member(self, agent_id: str, team_id: str) -> bool:
        query = "SELECT 1 FROM agent_teams WHERE agent_id = ? AND team_id = ?"
        return self.db.execute(query, (agent_id, team_id)).fetchone() is not None

    def customer(self, customer_id: str) -> dict[str, Any] | None:
        cur = self.db.execute("SELECT * FROM customers WHERE id = ?", (customer_id,))
        row = cur.fetchone()
        return dict(zip([d[0] for d in cur.description], row, strict=True)) if row else None

    def customer_channels(self, customer_id: str) -> list[str]:
        """Channels the customer can be answered on: the identities they have and the channels they used."""
        kinds = {k for (k,) in self.db.execute("SELECT kind FROM identities WHERE customer_id = ?", (customer_id,))}
        used = {c for (c,) in self.db.execute("SELECT DISTINCT channel FROM conversations WHERE customer_id = ?", (customer_id,))}
        channels = used | ({"sms", "phone"} if "phone" in kinds else set()) | (kinds & {"email", "chat", "whatsapp"})
        order = ("email", "sms", "whatsapp", "chat", "phone")
        return [c for c in order if c in channels]

    def customer_address(self, customer_id: str, kind: str) -> str | None:
        """One of the customer's addresses of `kind` (email, phone…), for the composer's To line and templates."""
        row = self.db.execute(
            "SELECT address FROM identities WHERE customer_id = ? AND kind = ? ORDER BY id LIMIT 1", (customer_id, kind)
        ).fetchone()
        return row[0] if row else None

    def timeline(self, customer_id: str) -> CustomerTimeline:
        """The customer's merged timeline, across all conversations and channels, read a window at a time
        (store/timeline.py): `.newest(200)`, `.before(position, 200)`…"""
        return CustomerTimeline(self.db, customer_id)

    # --- local actions: optimistic change + outbox row, in one transaction ------------------------

    def queue_interaction(
        self, me: Identity, conversation_id: str, channel: str, text: str, *, note: bool = False, subject: str | None = None,
        cc: list[str] | None = None,
    ) -> str:
        """A reply or an internal note: on the timeline now (queued), to the server on the next sync."""
        args = {"channel": channel, "text": text} | ({"subject": subject} if subject else {}) | ({"cc": cc} if cc else {})
        kind = "note" if note else "reply"
        return self._queue_new_interaction(
            me, conversation_id, kind, args, channel=channel, subject=subject, text=text, meta={"cc": cc} if cc else None
        )

    def queue_callback(self, me: Identity, conversation_id: str, note: str = "") -> str:
        """Ask the voice provider to call the customer back: an outbound call on the timeline, queued."""
        return self._queue_new_interaction(
            me, conversation_id, "request_callback", {"note": note}, channel="phone", text=note or "Callback",
            meta={"call": "callback", "call_direction": "outbound"},
        )

    def _queue_new_interaction(
        self, me: Identity, conversation_id: str, kind: str, args: dict[str, Any], *, channel: str, text: str,
        subject: str | None = None, meta: dict[str, Any] | None = None,
    ) -> str:
        """A new interaction created by `kind` (reply, note, request_callback): its row now, its mutation queued."""
        conversation = self.conversation(conversation_id)
        if conversation is None:
            raise LookupError(f"No conversation {conversation_id} in the cache.")
        interaction_id = uuid.uuid4().hex
        direction = "note" if kind == "note" else "outbound"
        with self.write() as db:
            db.execute(
                "INSERT INTO interactions (id, conversation_id, customer_id, channel, direction, author_id, text,"
                " subject, meta, delivery_status, occurred_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    interaction_id, conversation_id, conversation["customer_id"], channel, direction, me.agent_id, text,
                    subject, json.dumps(meta or {}), None if kind == "note" else "queued", to_iso(utcnow()),
                ),
            )
            undo = {"table": "interactions", "id": interaction_id, "before": None}  # a new row: delete it
            self._queue_mutation(db, kind, {"conversation_id": conversation_id, "interaction_id": interaction_id, **args}, undo)
            if kind in ("reply", "note"):  # what the agent typed has left: its draft goes in the same transaction
                draft = NOTE_DRAFT if kind == "note" else channel
                db.execute("DELETE FROM drafts WHERE conversation_id = ? AND channel = ?", (conversation_id, draft))
        return interaction_id

    def queue_conversation_change(self, conversation_id: str, kind: str, args: dict[str, Any], changes: dict[str, Any]) -> str:
        """Any action on a conversation (assign, set_status, snooze, tag…): `changes` to its row now, and the
        `kind` mutation with `args` to the server; the columns' previous values go with it, for a rejection."""
        return self.queue_row_change("conversations", conversation_id, kind, {"conversation_id": conversation_id, **args}, changes)

    def queue_row_change(self, table: str, row_id: str, kind: str, args: dict[str, Any], changes: dict[str, Any]) -> str:
        """`changes` to a cached row now and the `kind` mutation to the server, undone if it is rejected."""
        if unknown := set(changes) - set(MIRROR_TABLES[table]) - {"id"}:
            raise ValueError(f"not {table[:-1]} columns: {', '.join(sorted(unknown))}")
        after = {column: json.dumps(v) if isinstance(v, (list, dict)) else v for column, v in changes.items()}
        with self.write() as db:
            before = db.execute(f"SELECT {', '.join(['id', *after])} FROM {table} WHERE id = ?", (row_id,)).fetchone()
            if before is None:
                raise LookupError(f"No {table[:-1]} {row_id} in the cache.")
            assignments = ", ".join(f"{column} = ?" for column in after)
            db.execute(f"UPDATE {table} SET {assignments} WHERE id = ?", [*after.values(), row_id])
            undo = {"table": table, "id": row_id, "before": dict(zip(after, before[1:], strict=True)), "after": after}
            return self._queue_mutation(db, kind, args, undo)

    def latest_interaction(self, conversation_id: str, where: str) -> dict[str, Any] | None:
        """The newest interaction of a conversation matching a fixed SQL condition (callers pass constants)."""
        cur = self.db.execute(
            f"SELECT * FROM interactions WHERE conversation_id = ? AND {where} ORDER BY occurred_at DESC LIMIT 1", (conversation_id,)
        )
        row = cur.fetchone()
        return dict(zip([d[0] for d in cur.description], row, strict=True)) if row else None

    def _queue_mutation(self, db: sqlite3.Connection, kind: str, args: dict[str, Any], undo: dict[str, Any]) -> str:
        """The outbox row of a local action, in the transaction of its optimistic change."""
        mutation_id = uuid.uuid4().hex
        db.execute(
            "INSERT INTO outbox (mutation_id, kind, args, entity_id, undo, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (mutation_id, kind, json.dumps(args), undo["id"], json.dumps(undo), to_iso(utcnow())),
        )
        return mutation_id

    # --- outbox -----------------------------------------------------------------------------------

    def outbox(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT seq, mutation_id, kind, args, entity_id, state, attempts FROM outbox ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        keys = ("seq", "mutation_id", "kind", "args", "entity_id", "state", "attempts")
        return [dict(zip(keys, r, strict=True)) | {"args": json.loads(r[3])} for r in rows]

    def outbox_count(self) -> int:
        return self.db.execute("SELECT count(*) FROM outbox").fetchone()[0]

    def mark_sending(self, mutation_ids: list[str]) -> None:
        with self.write() as db:
            db.executemany(
                "UPDATE outbox SET state = 'sending', attempts = attempts + 1 WHERE mutation_id = ?",
                [(m,) for m in mutation_ids],
            )

    def mark_failed(self, mutation_ids: list[str], error: str) -> None:
        """The push did not get an answer: the items wait to be retried, as queued."""
        with self.write() as db:
            db.executemany(
                "UPDATE outbox SET state = 'queued', last_error = ? WHERE mutation_id = ?",
                [(error, m) for m in mutation_ids],
            )

    def settle(self, mutation_id: str, status: str, reason: str | None) -> None:
        """The server answered: drop the outbox row; a rejection also rolls its optimistic change back."""
        with self.write() as db:
            row = db.execute("SELECT kind, entity_id, undo FROM outbox WHERE mutation_id = ?", (mutation_id,)).fetchone()
            if row is None:
                return
            kind, _entity_id, undo = row
            db.execute("DELETE FROM outbox WHERE mutation_id = ?", (mutation_id,))
            if status == "rejected":
                if undo:
                    _undo(db, json.loads(undo))
                db.execute(
                    "INSERT INTO notices (text, created_at) VALUES (?, ?)",
                    (f"{REJECTED.get(kind, kind)}: {reason or 'the server refused it'}", to_iso(utcnow())),
                )

    def take_notices(self) -> list[str]:
        rows = self.db.execute("SELECT id, text FROM notices ORDER BY id").fetchall()
        if rows:
            with self.write() as db:
                db.execute("DELETE FROM notices WHERE id <= ?", (rows[-1][0],))
        return [text for _, text in rows]

    # --- drafts -----------------------------------------------------------------------------------

    def save_draft(self, conversation_id: str, channel: str, text: str) -> None:
        """Keep what the agent typed for this conversation and channel; an empty text removes it."""
        with self.write() as db:
            if text.strip():
                db.execute(
                    "INSERT OR REPLACE INTO drafts (conversation_id, channel, text, updated_at) VALUES (?, ?, ?, ?)",
                    (conversation_id, channel, text, to_iso(utcnow())),
                )
            else:
                db.execute("DELETE FROM drafts WHERE conversation_id = ? AND channel = ?", (conversation_id, channel))

    def latest_draft(self, conversation_id: str) -> tuple[str, str] | None:
        """(channel, text) of the conversation's most recent draft."""
        row = self.db.execute(
            "SELECT channel, text FROM drafts WHERE conversation_id = ? ORDER BY updated_at DESC LIMIT 1",
            (conversation_id,),
        ).fetchone()
        return (row[0], row[1]) if row else None
