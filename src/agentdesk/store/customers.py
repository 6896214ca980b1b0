"""The customer card's reads and actions over the local cache.

Reads are a handful of indexed lookups (identities_customer, conversations_customer, interactions_customer,
interactions_csat, merge_suggestions_*), each LIMITed or aggregated in SQLite, so a customer with 10k interactions costs what
one with ten does. Actions go through the outbox like every desk action: an optimistic change to the cached
row now, the mutation to the server on the next sync, rolled back with the server's reason if refused.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from agentdesk.store.cache import Cache

IDENTITY_LIMIT = 20  # identities shown on a card; a customer with more is told how many more
SEARCH_LIMIT = 10
NOTES_LIMIT = 20_000  # the server's limit (EditCustomerArgs.notes)
OPEN_STATUSES = ("open", "pending", "snoozed")


@dataclass(frozen=True)
class CustomerCard:
    id: str
    display_name: str
    tags: list[str]
    notes: str
    language: str | None
    merged_into: str | None
    merged_into_name: str | None
    identities: list[tuple[str, str]]  # (kind, address), at most IDENTITY_LIMIT
    identity_count: int
    open_conversations: int
    conversations: int
    last_csat: int | None  # 1-5, from the newest interaction whose meta carries one
    last_contact: str | None  # ISO time of the newest non-note interaction


@dataclass(frozen=True)
class Suggestion:
    id: str
    other_id: str
    other_name: str
    reason: str


@dataclass(frozen=True)
class CustomerMatch:
    id: str
    name: str
    address: str | None  # an identity that matched (or the first one), to tell namesakes apart


def _tags(raw: str | None) -> list[str]:
    try:
        tags = json.loads(raw or "[]")
    except ValueError:
        return []
    return [str(tag) for tag in tags] if isinstance(tags, list) else []


def card(cache: Cache, customer_id: str) -> CustomerCard | None:
    db = cache.db
    row = db.execute(
        "SELECT c.display_name, c.tags, c.notes, c.language, c.merged_into, m.display_name"
        " FROM customers c LEFT JOIN customers m ON m.id = c.merged_into WHERE c.id = ?",
        (customer_id,),
    ).fetchone()
    if row is None:
        return None
    identities = db.execute(
        "SELECT kind, address FROM identities WHERE customer_id = ? ORDER BY kind, address LIMIT ?",
        (customer_id, IDENTITY_LIMIT),
    ).fetchall()
    identity_count = len(identities)
    if identity_count == IDENTITY_LIMIT:
        identity_count = db.execute("SELECT count(*) FROM identities WHERE customer_id = ?", (customer_id,)).fetchone()[0]
    marks = ", ".join("?" for _ in OPEN_STATUSES)
    total, open_ = db.execute(
        f"SELECT count(*), coalesce(sum(status IN ({marks})), 0) FROM conversations WHERE customer_id = ?",
        (*OPEN_STATUSES, customer_id),
    ).fetchone()
    return CustomerCard(
        id=customer_id, display_name=row[0] or "", tags=_tags(row[1]), notes=row[2] or "", language=row[3],
        merged_into=row[4], merged_into_name=row[5], identities=[(k, a) for k, a in identities],
        identity_count=identity_count, open_conversations=open_, conversations=total,
        last_csat=last_csat(cache, customer_id), last_contact=last_contact(cache, customer_id),
    )


def last_csat(cache: Cache, customer_id: str) -> int | None:
    """The newest satisfaction score (an integer 1-5 in an interaction's meta "csat"); the server keeps no
    CSAT field. The LIKE term is the partial index interactions_csat's own, so only the customer's
    interactions that mention a csat are read, newest first."""
    row = cache.db.execute(
        """
        SELECT json_extract(meta, '$.csat') FROM interactions
        WHERE customer_id = ? AND meta LIKE '%"csat"%' AND json_valid(meta)
          AND typeof(json_extract(meta, '$.csat')) = 'integer' AND json_extract(meta, '$.csat') BETWEEN 1 AND 5
        ORDER BY occurred_at DESC LIMIT 1
        """,
        (customer_id,),
    ).fetchone()
    return row[0] if row else None


def last_contact(cache: Cache, customer_id: str) -> str | None:
    row = cache.db.execute(
        "SELECT occurred_at FROM interactions WHERE customer_id = ? AND direction != 'note' ORDER BY occurred_at DESC LIMIT 1",
        (customer_id,),
    ).fetchone()
    return row[0] if row else None


def suggestions(cache: Cache, customer_id: str) -> list[Suggestion]:
    """Open merge suggestions pairing this customer with another still in the cache and not merged away."""
    rows = cache.db.execute(
        """
        SELECT s.id, o.id, o.display_name, s.reason FROM (
            SELECT id, other_id AS other, reason, created_at FROM merge_suggestions WHERE customer_id = ?1 AND status = 'open'
            UNION ALL
            SELECT id, customer_id, reason, created_at FROM merge_suggestions WHERE other_id = ?1 AND status = 'open'
        ) s JOIN customers o ON o.id = s.other
        WHERE o.merged_into IS NULL AND o.id != ?1
        ORDER BY s.created_at DESC, s.id LIMIT 50
        """,
        (customer_id,),
    ).fetchall()
    return [Suggestion(*row) for row in rows]


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search(cache: Cache, text: str, exclude_id: str, limit: int = SEARCH_LIMIT) -> list[CustomerMatch]:
    """Customers whose name, email, phone or other address contains `text` (case-insensitive for ASCII),
    leaving out `exclude_id` and customers merged away. Two LIKE scans (names, addresses), each stopping at
    `limit` matches: a common name costs little; text matching nothing scans both tables once."""
    text = text.strip()
    if not text:
        return []
    pattern = _like(text)
    rows = cache.db.execute(
        """
        SELECT c.id, c.display_name,
               (SELECT i.address FROM identities i WHERE i.customer_id = c.id
                 ORDER BY i.address LIKE ?1 ESCAPE '\\' DESC, i.kind LIMIT 1)
        FROM customers c
        WHERE c.id IN (
              SELECT id FROM (SELECT id FROM customers WHERE display_name LIKE ?1 ESCAPE '\\' AND id != ?2
                                AND merged_into IS NULL LIMIT ?3)
              UNION
              SELECT customer_id FROM (SELECT customer_id FROM identities WHERE address LIKE ?1 ESCAPE '\\' LIMIT ?3 * 2))
          AND c.id != ?2 AND c.merged_into IS NULL
        ORDER BY c.display_name LIKE ?1 ESCAPE '\\' DESC, c.display_name
        LIMIT ?3
        """,
        (pattern, exclude_id, limit),
    ).fetchall()
    return [CustomerMatch(*row) for row in rows]


# --- actions: optimistic change + outbox row --------------------------------------------------------


def queue_retag(cache: Cache, customer_id: str, kind: str, tag: str, tags: list[str]) -> str:
    """Add (`tag`) or remove (`untag`) one tag: the server's per-tag mutation, so two agents editing
    different tags at once both keep theirs (a whole-list edit_customer would lose one)."""
    new = tags if (tag in tags) == (kind == "tag") else ([*tags, tag] if kind == "tag" else [t for t in tags if t != tag])
    return cache.queue_row_change("customers", customer_id, kind, {"customer_id": customer_id, "tag": tag}, {"tags": new})


def queue_notes(cache: Cache, customer_id: str, notes: str) -> str:
    if len(notes) > NOTES_LIMIT:
        raise ValueError(f"Notes hold at most {NOTES_LIMIT:,} characters (these have {len(notes):,}).")
    args = {"customer_id": customer_id, "notes": notes}
    return cache.queue_row_change("customers", customer_id, "edit_customer", args, {"notes": notes})


def _merge_key(target_id: str) -> str:
    return f"customer.last_merge.{target_id}"


def queue_merge(cache: Cache, source_id: str, target_id: str, source_name: str) -> str:
    """Merge `source` into `target` (kept). The merge id is ours, so the merge can be undone (unmerge); it is
    kept in sync_state until then. Optimistically the source is marked merged, which takes it (and its
    suggestions) off the card; its conversations move when the server's changes arrive."""
    merge_id = uuid.uuid4().hex
    args = {"source_id": source_id, "target_id": target_id, "merge_id": merge_id}
    cache.queue_row_change("customers", source_id, "merge_customers", args, {"merged_into": target_id})
    record = {"merge_id": merge_id, "source_id": source_id, "source_name": source_name}
    cache.set_state(_merge_key(target_id), json.dumps(record))
    return merge_id


def last_merge(cache: Cache, target_id: str) -> dict[str, Any] | None:
    """The merge into this customer that can still be undone: recorded here, and not refused by the server
    (a refusal puts the source's merged_into back to empty; once merged, the source may leave the cache)."""
    raw = cache.state(_merge_key(target_id))
    if raw is None:
        return None
    record = json.loads(raw)
    source = cache.customer(record["source_id"])
    return record if source is None or source.get("merged_into") == target_id else None


def queue_unmerge(cache: Cache, target_id: str) -> str | None:
    record = last_merge(cache, target_id)
    if record is None:
        return None
    # The source row is back at once if the cache still has it; otherwise it returns with the server's
    # changes, and the no-op on the target only gives the mutation a row to hang on.
    row_id = record["source_id"] if cache.customer(record["source_id"]) else target_id
    mutation = cache.queue_row_change("customers", row_id, "unmerge", {"merge_id": record["merge_id"]}, {"merged_into": None})
    with cache.write() as db:
        db.execute("DELETE FROM sync_state WHERE key = ?", (_merge_key(target_id),))
    return mutation


def queue_dismiss(cache: Cache, suggestion_id: str) -> str:
    args = {"suggestion_id": suggestion_id}
    return cache.queue_row_change("merge_suggestions", suggestion_id, "dismiss_suggestion", args, {"status": "dismissed"})
