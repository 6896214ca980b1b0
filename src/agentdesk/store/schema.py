"""The client cache's schema: a mirror of what the agent may see, plus outbox, drafts and sync state.

Mirror tables keep the server's wire column names, so a bootstrap page or a change applies by name.
Indexes are built after the bootstrap load (DESIGN §7), hence kept apart.
"""

from __future__ import annotations

SCHEMA_VERSION = 3
# A new cache file's page size. 16 KiB pages make the bootstrap's load and index build ~30 % faster than
# SQLite's default 4 KiB (bench/sync_bench.py: rows of ~400 bytes, a million of them), for ~0.2 ms more per
# timeline or search read (bench/desk_bench.py store and search). A file keeps the size it was made with.
PAGE_SIZE = 16384

MIRROR_TABLES: dict[str, tuple[str, ...]] = {
    "teams": ("id", "name", "active"),
    "agents": ("id", "name", "email", "role", "active", "created_at"),
    "agent_teams": ("id", "agent_id", "team_id"),
    "customers": (
        "id", "display_name", "first_name", "tags", "notes", "language", "merged_into", "created_at", "updated_at",
    ),
    "identities": ("id", "customer_id", "kind", "address"),
    "conversations": (
        "id", "customer_id", "channel", "status", "priority", "assignee_id", "team_id", "subject", "sla_due",
        "snooze_until", "tags", "created_at", "updated_at", "last_message_at", "version",
    ),
    "interactions": (
        "id", "conversation_id", "customer_id", "channel", "direction", "author_id", "text", "subject", "meta",
        "delivery_status", "occurred_at",
    ),
    "merge_suggestions": ("id", "customer_id", "other_id", "reason", "status", "created_at"),
}

LOCAL_TABLES = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    mutation_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    args TEXT NOT NULL,             -- JSON
    entity_id TEXT,                 -- the row this mutation changed optimistically
    undo TEXT,                      -- JSON {table, id, before, after}: how a rejection puts that row back
    state TEXT NOT NULL DEFAULT 'queued',  -- queued | sending | failed
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS drafts (
    conversation_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    text TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (conversation_id, channel)
);
CREATE TABLE IF NOT EXISTS sync_state (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS seen (  -- unread markers: what the agent has opened, as of which message
    conversation_id TEXT PRIMARY KEY,
    last_message_at TEXT
);
CREATE TABLE IF NOT EXISTS notices (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    text TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"""

def table_ddl(table: str) -> str:
    columns = ", ".join(c + (" TEXT PRIMARY KEY" if c == "id" else "") for c in MIRROR_TABLES[table])
    return f"CREATE TABLE IF NOT EXISTS {table} ({columns});"


def mirror_ddl() -> str:
    return "\n".join(table_ddl(table) for table in MIRROR_TABLES)


# The customer card's lookups (store/customers.py), by table: a customer's conversations, merge suggestions,
# and their rated messages (partial: only the few interactions whose meta holds a "csat"; the query repeats
# the index's WHERE term word for word so SQLite can use it).
CARD_INDEXES = {
    "conversations": "CREATE INDEX IF NOT EXISTS conversations_customer ON conversations (customer_id, status);",
    "interactions": """CREATE INDEX IF NOT EXISTS interactions_csat ON interactions (customer_id, occurred_at) WHERE meta LIKE '%"csat"%';""",
    "merge_suggestions": """
CREATE INDEX IF NOT EXISTS merge_suggestions_customer ON merge_suggestions (customer_id);
CREATE INDEX IF NOT EXISTS merge_suggestions_other ON merge_suggestions (other_id);""",
}


def _fts_ddl(table: str, columns: tuple[str, ...]) -> str:
    """An external-content FTS5 index over a mirror table (the text stays only in the table), filled once,
    and the triggers that keep it current. The BEFORE INSERT trigger drops the index entry of a row an
    `INSERT OR REPLACE` (every pull page) is about to replace: REPLACE's own delete fires no delete trigger
    (recursive_triggers is off, SQLite's default). detail=full keeps phrases (an address, "quoted words");
    columnsize=0 skips the per-row size table (bm25 ranking is not used); a 16 MB hashsize makes the
    one-off build flush fewer, larger segments (fewer merges). The build inserts the rows in rowid order rather
    than by 'rebuild', whose scan may take a covering index (identities by address): FTS5 flushes a segment
    whenever a rowid comes out of order, which made that build 5x slower."""
    fts, cols = f"{table}_fts", ", ".join(columns)
    built = f"SELECT 1 FROM sync_state WHERE key IN ('search.built', 'search.built.{table}')"  # the first: older caches'
    old, new = ", ".join(f"old.{c}" for c in columns), ", ".join(f"new.{c}" for c in columns)
    drop = f"INSERT INTO {fts}({fts}, rowid, {cols})"
    return f"""
CREATE VIRTUAL TABLE IF NOT EXISTS {fts} USING fts5({cols}, content='{table}', content_rowid='rowid',
    detail=full, columnsize=0, tokenize='unicode61 remove_diacritics 2');
CREATE TRIGGER IF NOT EXISTS {fts}_replace BEFORE INSERT ON {table} BEGIN
    {drop} SELECT 'delete', rowid, {cols} FROM {table} WHERE id = new.id;
END;
CREATE TRIGGER IF NOT EXISTS {fts}_insert AFTER INSERT ON {table} BEGIN
    INSERT INTO {fts}(rowid, {cols}) VALUES (new.rowid, {new});
END;
CREATE TRIGGER IF NOT EXISTS {fts}_delete AFTER DELETE ON {table} BEGIN
    {drop} VALUES ('delete', old.rowid, {old});
END;
CREATE TRIGGER IF NOT EXISTS {fts}_update AFTER UPDATE OF {cols} ON {table} BEGIN
    {drop} VALUES ('delete', old.rowid, {old});
    INSERT INTO {fts}(rowid, {cols}) VALUES (new.rowid, {new});
END;
INSERT INTO {fts}({fts}, rank) SELECT 'hashsize', 16777216 WHERE NOT EXISTS ({built});
INSERT INTO {fts}({fts}) SELECT 'delete-all' WHERE NOT EXISTS ({built});
INSERT INTO {fts}(rowid, {cols}) SELECT rowid, {cols} FROM {table} WHERE NOT EXISTS ({built}) ORDER BY rowid;
INSERT OR REPLACE INTO sync_state (key, value) VALUES ('search.built.{table}', '1');
"""


FTS_TABLES = ("interactions", "customers", "identities")
# Forgetting the mirror drops the index first: a million delete triggers would cost more than the rebuild.
FTS_DROP = "".join(
    f"DROP TRIGGER IF EXISTS {t}_fts_{k}; " for t in FTS_TABLES for k in ("replace", "insert", "delete", "update")
) + "".join(f"DROP TABLE IF EXISTS {t}_fts; " for t in FTS_TABLES) + "DELETE FROM sync_state WHERE key LIKE 'search.built%';"


# Upgrades of an existing cache file, by the version they lead to: the SQL to run (outbox, drafts and sync
# state are kept), and the mirror tables whose new columns only the server can fill, so they are loaded again.
MIGRATIONS: dict[int, tuple[str, tuple[str, ...]]] = {
    2: (
        """
        ALTER TABLE teams ADD COLUMN active;
        ALTER TABLE agents ADD COLUMN active;
        ALTER TABLE conversations ADD COLUMN tags;
        ALTER TABLE outbox ADD COLUMN undo TEXT;
        UPDATE outbox SET undo = json_object('table', 'interactions', 'id', entity_id, 'before', NULL)
            WHERE undo IS NULL AND kind IN ('reply', 'note')
        """,
        ("teams", "agents", "conversations"),
    ),
    3: (
        table_ddl("merge_suggestions")
        + "CREATE TABLE IF NOT EXISTS seen (conversation_id TEXT PRIMARY KEY, last_message_at TEXT);"
        + "".join(CARD_INDEXES.values()),  # the search index comes with the reload's finish_bootstrap, in the sync thread, not at open
        ("merge_suggestions",),
    ),
}

# Each mirror table's indexes and full-text search (store/search.py), built once its rows are loaded (a
# snapshot bootstrap builds the first file's while the server makes the second). A table's search index is
# filled once: 'search.built.<table>' marks it, so a second run (a reload after an upgrade) does not rebuild an
# index the triggers kept current (older caches have one mark for all: 'search.built').
ENTITY_INDEXES = {
    # The queue (store/queue.py): a count reads its tab's range of queue_counts; a window walks the sort's index
    # in display order and stops after it. Each carries the columns tabs and filters test, so neither reads rows.
    "conversations": """
DROP INDEX IF EXISTS conversations_queue;
CREATE INDEX IF NOT EXISTS queue_counts ON conversations (status, assignee_id, team_id, channel, priority, sla_due, last_message_at, id, tags);
CREATE INDEX IF NOT EXISTS queue_sla ON conversations (ifnull(sla_due, '~'), last_message_at DESC, id, status, team_id, assignee_id, channel, priority, sla_due, tags);
CREATE INDEX IF NOT EXISTS queue_newest ON conversations (last_message_at, id, status, team_id, assignee_id, channel, priority, tags);
CREATE INDEX IF NOT EXISTS queue_priority ON conversations (CASE priority WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 WHEN 'low' THEN 3 ELSE 2 END, ifnull(sla_due, '~'), last_message_at DESC, id, status, team_id, assignee_id, channel, priority, sla_due, tags);
""" + CARD_INDEXES["conversations"],
    "interactions": """
CREATE INDEX IF NOT EXISTS interactions_conversation ON interactions (conversation_id, occurred_at);
CREATE INDEX IF NOT EXISTS interactions_customer ON interactions (customer_id, occurred_at);
""" + CARD_INDEXES["interactions"] + _fts_ddl("interactions", ("text", "subject")),
    "customers": _fts_ddl("customers", ("display_name",)),
    # The address index serves from:+1415… (a prefix range).
    "identities": """
CREATE INDEX IF NOT EXISTS identities_customer ON identities (customer_id);
CREATE INDEX IF NOT EXISTS identities_address ON identities (address);
""" + _fts_ddl("identities", ("address",)),
    "merge_suggestions": CARD_INDEXES["merge_suggestions"],
}
INDEXES = "".join(ENTITY_INDEXES.values())
