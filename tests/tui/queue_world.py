"""A small cache for the queue tests: two teams, three agents, conversations in every tab, status and channel.

Written straight into the cache's tables (no server), then `finish_bootstrap` builds the queue's indexes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agentdesk.domain.clock import to_iso
from agentdesk.store.cache import Cache, Identity

NOW = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)
ME = Identity("a-me", "Alex Morgan", ("t-billing",))


def at(hours: float) -> str:
    return to_iso(NOW + timedelta(hours=hours))


# id, customer, channel, status, priority, assignee, team, sla_due (hours from NOW), last message (hours), tags
CONVERSATIONS = [
    ("c-mine-sms", "cu-ana", "sms", "open", "normal", "a-me", "t-billing", 2, -1, []),
    ("c-mine-mail", "cu-ben", "email", "pending", "high", "a-me", "t-billing", -1, -5, ["refund"]),
    ("c-mine-snoozed", "cu-ana", "chat", "snoozed", "normal", "a-me", "t-billing", None, -30, []),
    ("c-free-chat", "cu-cy", "chat", "open", "urgent", None, "t-billing", 5, -0.5, ["vip"]),
    ("c-free-call", "cu-dee", "phone", "open", "low", None, "t-billing", None, -2, []),
    ("c-sams", "cu-eve", "whatsapp", "open", "normal", "a-sam", "t-billing", 1, -3, ["vip", "refund"]),
    ("c-closed", "cu-ben", "email", "closed", "normal", "a-me", "t-billing", None, -48, []),
    ("c-support", "cu-fay", "email", "open", "normal", None, "t-support", 0.5, -0.2, []),
]
CUSTOMER_NAMES = {"cu-ana": "Ana Lima", "cu-ben": "Ben Okoro", "cu-cy": "Cy Park", "cu-dee": "Dee Moss",
                  "cu-eve": "Eve Stone", "cu-fay": "Fay Quill"}  # fmt: skip
PREVIEWS = {c[0]: f"latest words of {c[0]}" for c in CONVERSATIONS}


def build(path: Path, names: dict[str, str] | None = None, previews: dict[str, str] | None = None,
          tags: dict[str, list[str]] | None = None) -> Path:
    """The cache at `path`; `names`, `previews` and `tags` override customers' names, conversations' last
    message and tags (for hostile text)."""
    names, previews, tags = CUSTOMER_NAMES | (names or {}), PREVIEWS | (previews or {}), tags or {}
    cache = Cache(path)
    cache.set_identity({"id": ME.agent_id, "name": ME.agent_name, "team_ids": list(ME.team_ids)})
    with cache.write() as db:
        db.executemany("INSERT INTO teams (id, name, active) VALUES (?, ?, 1)", [("t-billing", "Billing"), ("t-support", "Support")])
        db.executemany("INSERT INTO agents (id, name, active) VALUES (?, ?, 1)",
                       [("a-me", "Alex Morgan"), ("a-sam", "Sam Lee"), ("a-kim", "Kim Ode")])
        db.executemany("INSERT INTO agent_teams (id, agent_id, team_id) VALUES (?, ?, ?)",
                       [("m1", "a-me", "t-billing"), ("m2", "a-sam", "t-billing"), ("m3", "a-kim", "t-support")])
        db.executemany("INSERT INTO customers (id, display_name, tags) VALUES (?, ?, '[]')", list(names.items()))
        for cid, customer, channel, status, priority, assignee, team, sla, last, conv_tags in CONVERSATIONS:
            db.execute(
                "INSERT INTO conversations (id, customer_id, channel, status, priority, assignee_id, team_id, sla_due,"
                " tags, created_at, last_message_at, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
                (cid, customer, channel, status, priority, assignee, team, None if sla is None else at(sla),
                 json.dumps(tags.get(cid, conv_tags)), at(last - 1), at(last)),
            )
            db.execute(
                "INSERT INTO interactions (id, conversation_id, customer_id, channel, direction, text, meta, occurred_at)"
                " VALUES (?, ?, ?, ?, 'inbound', ?, '{}', ?)",
                (f"i-{cid}", cid, customer, channel, previews[cid], at(last)),
            )
    cache.finish_bootstrap("test")
    cache.close()
    return path
