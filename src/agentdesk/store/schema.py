"""The client cache's schema: a mirror of what the agent may see, plus outbox, drafts and sync state.

Mirror tables keep the server's wire column names, so a bootstrap page or a change applies by name.
Indexes are built after the bootstrap load (DESIGN §7), hence kept apart.
"""

from __future__ import annotations

SCHEMA_VERSION = 3

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
        + "CREATE TABLE IF NOT EXISTS seen (conversation_id TEXT PRIMARY KEY, last_message_at TEXT);",
        ("merge_suggestions",),
    ),
}

INDEXES = """
CREATE INDEX IF NOT EXISTS conversations_queue ON conversations (status, assignee_id, sla_due);
CREATE INDEX IF NOT EXISTS interactions_conversation ON interactions (conversation_id, occurred_at);
CREATE INDEX IF NOT EXISTS interactions_customer ON interactions (customer_id, occurred_at);
CREATE INDEX IF NOT EXISTS identities_customer ON identities (customer_id);
"""

