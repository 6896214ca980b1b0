"""Cache reads for presence and collisions: who the other agents are, what changed while the agent typed,
which conversations a pull newly assigns to the agent. Each is an indexed lookup of a few rows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from agentdesk.store.cache import Cache


@dataclass(frozen=True)
class Arrival:
    """An interaction by someone else: an inbound message, or another agent's reply or note."""

    direction: str  # inbound | outbound | note
    who: str  # the customer's or the agent's name (untrusted: render through safe_text)
    occurred_at: str


def agent_names(cache: Cache, agent_ids: Iterable[str]) -> dict[str, str]:
    """Agent id -> name from the cache's agents table (ids it does not know are left out)."""
    ids = sorted(set(agent_ids))
    if not ids:
        return {}
    marks = ", ".join("?" for _ in ids)
    return dict(cache.db.execute(f"SELECT id, name FROM agents WHERE id IN ({marks})", ids).fetchall())


def _by_others(me: str) -> tuple[str, list[Any]]:
    # Inbound messages (no author), and replies or notes that another agent wrote; not system messages.
    return "(i.direction = 'inbound' OR (i.author_id IS NOT NULL AND i.author_id != ?))", [me]


def newest_interaction_at(cache: Cache, conversation_id: str, me: str) -> str:
    """When the newest interaction by someone else happened ("" if none): where a collision check starts.
    The agent's own rows are left out, since theirs carry the desk's clock rather than the server's."""
    where, params = _by_others(me)
    row = cache.db.execute(  # walks the (conversation_id, occurred_at) index from the newest end
        f"SELECT i.occurred_at FROM interactions i WHERE i.conversation_id = ? AND {where} ORDER BY i.occurred_at DESC LIMIT 1",
        [conversation_id, *params],
    ).fetchone()
    return (row[0] or "") if row else ""


def newer_interactions(cache: Cache, conversation_id: str, since: str, me: str, limit: int = 20) -> list[Arrival]:
    """What others added to the conversation after `since` (see newest_interaction_at), newest first."""
    where, params = _by_others(me)
    rows = cache.db.execute(
        f"""
        SELECT i.direction, coalesce(a.name, cu.display_name, ''), i.occurred_at
        FROM interactions i
        LEFT JOIN agents a ON a.id = i.author_id
        LEFT JOIN customers cu ON cu.id = i.customer_id
        WHERE i.conversation_id = ? AND i.occurred_at > ? AND {where}
        ORDER BY i.occurred_at DESC LIMIT ?
        """,
        [conversation_id, since, *params, limit],
    ).fetchall()
    return [Arrival(direction, who, at) for direction, who, at in rows]


def newly_assigned(cache: Cache, changes: Sequence[dict[str, Any]], me: str) -> list[str]:
    """Conversations that these pulled changes assign to `me` while the cache has them with someone else, in
    no one's hands or not at all. The agent's own assign is already in the cache (optimistic), so it is not
    news; nor is a reopened conversation that was theirs all along."""
    ids = list(dict.fromkeys(
        c["id"] for c in changes
        if c.get("entity") == "conversations" and c.get("op") != "delete" and (c.get("data") or {}).get("assignee_id") == me
    ))
    if not ids:
        return []
    marks = ", ".join("?" for _ in ids)
    already = {row[0] for row in cache.db.execute(
        f"SELECT id FROM conversations WHERE id IN ({marks}) AND assignee_id = ?", [*ids, me]
    )}
    return [i for i in ids if i not in already]


def customer_names(cache: Cache, conversation_ids: Sequence[str]) -> list[str]:
    """The customer's name of each conversation the cache has, in the given order."""
    if not conversation_ids:
        return []
    marks = ", ".join("?" for _ in conversation_ids)
    names = dict(cache.db.execute(
        f"SELECT c.id, coalesce(cu.display_name, '') FROM conversations c LEFT JOIN customers cu ON cu.id = c.customer_id"
        f" WHERE c.id IN ({marks})",
        list(conversation_ids),
    ).fetchall())
    return [names[i] for i in conversation_ids if i in names]
