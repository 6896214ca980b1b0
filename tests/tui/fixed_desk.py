"""A small desk that looks the same on every machine: fixed rows in a cache, a frozen clock, UTC, true colour.

Used by the snapshot, layout and theme tests. No server and no sync engine: the cache is written directly, row by
row, with only the columns given (so columns other helpers add to the mirror tables stay NULL).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agentdesk.domain.clock import to_iso
from agentdesk.store.cache import Cache, Identity

FROZEN = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)  # a Monday afternoon
ME = Identity("a-alex", "Alex Morgan", ("t-billing",))


def at(**delta: float) -> str:
    """An ISO time relative to the frozen clock: at(hours=-2) is two hours before it."""
    return to_iso(FROZEN + timedelta(**delta))


def frozen_clock() -> datetime:
    return FROZEN


TEAMS = [{"id": "t-billing", "name": "Billing", "active": 1}, {"id": "t-support", "name": "Support", "active": 1}]
AGENTS = [
    {"id": "a-alex", "name": "Alex Morgan", "email": "alex@example.com", "role": "agent", "active": 1},
    {"id": "a-sam", "name": "Sam Lee", "email": "sam@example.com", "role": "agent", "active": 1},
]
MEMBERS = [
    {"id": "m1", "agent_id": "a-alex", "team_id": "t-billing"},
    {"id": "m2", "agent_id": "a-sam", "team_id": "t-billing"},
    {"id": "m3", "agent_id": "a-sam", "team_id": "t-support"},
]
CUSTOMERS = [
    ("cu-zoe", "Zoë White", ["vip"], "en"),
    ("cu-grace", "Grace Anderson", [], "en"),
    ("cu-ruby", "Ruby Murphy", [], "en"),
    ("cu-sabine", "Sabine Weber", [], "de"),
    ("cu-hyun", "Hyun-woo Park", [], "ko"),
    ("cu-matt", "Matthias Groß", ["reseller"], "de"),
]
IDENTITIES = [
    ("cu-zoe", "phone", "+14155550101"), ("cu-zoe", "email", "zoe@example.net"),
    ("cu-grace", "email", "grace@example.org"), ("cu-ruby", "whatsapp", "+447700900123"),
    ("cu-sabine", "email", "sabine@example.de"), ("cu-hyun", "chat", "chat-hyun"),
    ("cu-matt", "phone", "+491701234567"),
]  # fmt: skip
# The SMS and the email conversation are Alex's and come first by SLA in any tab and sort that shows them.
CONVERSATIONS = [
    # id, customer, channel, status, priority, assignee, subject, sla_due (hours from now), tags
    ("c-zoe-sms", "cu-zoe", "sms", "open", "high", "a-alex", None, -0.5, ["refund"]),
    ("c-grace-mail", "cu-grace", "email", "open", "normal", "a-alex", "Invoice copy for October", 0.4, []),
    ("c-ruby-wa", "cu-ruby", "whatsapp", "open", "urgent", None, None, 1.5, []),
    ("c-sabine-mail", "cu-sabine", "email", "pending", "normal", None, "Kein Internet seit heute früh", 3, []),
    ("c-hyun-chat", "cu-hyun", "chat", "open", "low", None, None, 6, []),
    ("c-matt-phone", "cu-matt", "phone", "open", "normal", None, None, 20, []),
    ("c-zoe-mail", "cu-zoe", "email", "closed", "normal", "a-alex", "Question about upgrading my plan", None, []),
]
INTERACTIONS = [
    # conversation, direction, author, text, subject, meta, delivery status, hours from now
    ("c-zoe-mail", "inbound", None, "Hi,\n\nCan I switch from Mobile 20GB to Mobile Unlimited without a new SIM?\n\nThank you,\nZoë",
     "Question about upgrading my plan", {}, None, -50),
    ("c-zoe-mail", "outbound", "a-alex", "Hi Zoë,\n\nAll set: Mobile Unlimited is active from today, same SIM.\n\nKind regards,\nAlex",
     "Re: Question about upgrading my plan", {}, "delivered", -49),
    ("c-zoe-mail", "note", "a-alex", "Customer eligible for loyalty pricing.", None, {}, None, -48.5),
    ("c-zoe-sms", "inbound", None, "Hi, I was charged twice for November. Can you refund one?", None, {}, None, -3),
    ("c-zoe-sms", "outbound", "a-sam", "Sorry about that! Checking with billing now.", None, {}, "delivered", -2.5),
    ("c-zoe-sms", "inbound", None, "Thanks. Any news? The second charge is still there.", None, {}, None, -1),
    ("c-grace-mail", "inbound", None, "Hello,\n\nCould you send me a copy of the October invoice? I cannot find it in my account.\n\nBest regards,\nGrace Anderson",
     "Invoice copy for October", {}, None, -5),
    ("c-ruby-wa", "inbound", None, "My 2FA code never arrives, I am locked out.", None, {}, None, -0.8),
    ("c-sabine-mail", "inbound", None, "Guten Tag, seit heute früh habe ich kein Internet.", "Kein Internet seit heute früh", {}, None, -6),
    ("c-hyun-chat", "inbound", None, "Is the fiber offer available in my building?", None, {}, None, -0.2),
    ("c-matt-phone", "inbound", None, "Caller asked about the router dropping the connection every evening.", None,
     {"call_direction": "inbound", "duration_s": 312, "disposition": "callback promised"}, None, -4),
]  # fmt: skip


def insert(cache: Cache, table: str, row: dict[str, Any]) -> None:
    columns = ", ".join(row)
    cache.db.execute(f"INSERT INTO {table} ({columns}) VALUES ({', '.join('?' for _ in row)})", list(row.values()))


def build_cache(path: Path) -> Path:
    cache = Cache(path)
    try:
        cache.set_identity({"id": ME.agent_id, "name": ME.agent_name, "team_ids": list(ME.team_ids)})
        for table, rows in (("teams", TEAMS), ("agents", AGENTS), ("agent_teams", MEMBERS)):
            for row in rows:
                insert(cache, table, row)
        for cid, name, tags, language in CUSTOMERS:
            insert(cache, "customers", {"id": cid, "display_name": name, "first_name": name.split()[0], "tags": json.dumps(tags),
                                        "notes": "", "language": language, "created_at": at(days=-400), "updated_at": at(days=-2)})  # fmt: skip
        for number, (cid, kind, address) in enumerate(IDENTITIES):
            insert(cache, "identities", {"id": f"id-{number}", "customer_id": cid, "kind": kind, "address": address})
        last_message = {}
        for number, (conv, direction, author, text, subject, meta, status, hours) in enumerate(INTERACTIONS):
            customer = next(c[1] for c in CONVERSATIONS if c[0] == conv)
            channel = next(c[2] for c in CONVERSATIONS if c[0] == conv)
            insert(cache, "interactions", {
                "id": f"i-{number:02d}", "conversation_id": conv, "customer_id": customer, "channel": channel,
                "direction": direction, "author_id": author, "text": text, "subject": subject, "meta": json.dumps(meta),
                "delivery_status": status, "occurred_at": at(hours=hours),
            })  # fmt: skip
            last_message[conv] = at(hours=hours)
        for conv, customer, channel, status, priority, assignee, subject, sla_hours, tags in CONVERSATIONS:
            insert(cache, "conversations", {
                "id": conv, "customer_id": customer, "channel": channel, "status": status, "priority": priority,
                "assignee_id": assignee, "team_id": "t-billing", "subject": subject,
                "sla_due": None if sla_hours is None else at(hours=sla_hours), "snooze_until": None, "tags": json.dumps(tags),
                "created_at": at(days=-3), "updated_at": last_message[conv], "last_message_at": last_message[conv], "version": 1,
            })  # fmt: skip
        cache.finish_bootstrap("")  # as after a first sync: indexes and the search index built
    finally:
        cache.close()
    return path


@contextmanager
def fixed_environment() -> Iterator[None]:
    """Local time is UTC and colours are not switched off, whatever the machine running the tests says."""
    saved = {key: os.environ.get(key) for key in ("TZ", "NO_COLOR")}
    os.environ["TZ"] = "UTC"
    os.environ.pop("NO_COLOR", None)
    time.tzset()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        time.tzset()


async def whole(app, pilot, deadline: float = 5.0) -> None:  # noqa: ANN001 - an AgentDesk and its Pilot
    """Wait (polling) until the desk is whole, the composer and footer mounted after its first frame
    (AgentDesk.finish_startup), and laid out: on a busy machine one pause may come before that."""
    end = time.monotonic() + deadline
    while app.starting and time.monotonic() < end:
        await pilot.pause(0.01)
    assert not app.starting, f"the desk did not finish starting in {deadline} s"
    await pilot.pause()


def fixed_desk(tmp_path: Path, theme: str | None = None):  # noqa: ANN201 - AgentDesk, imported lazily
    from agentdesk.tui.app import AgentDesk

    return AgentDesk(build_cache(tmp_path / "cache.sqlite3"), ME, engine=None, theme=theme, clock=frozen_clock)
