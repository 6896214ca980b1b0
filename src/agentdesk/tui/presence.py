"""Presence on the desk (issue 5 items 7-8): availability, who else is on the open conversation, the
collision check before a send, and the notice of a new assignment. The app's methods stay thin and call here."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual.message import Message

from agentdesk.domain.clock import from_iso
from agentdesk.domain.text import safe_text
from agentdesk.store.cache import Cache
from agentdesk.store.presence import Arrival, agent_names, customer_names, newer_interactions, newest_interaction_at
from agentdesk.sync.live import Presence
from agentdesk.tui.render import span

AVAILABILITY_KEY = "availability"  # the agent's last choice, in the cache's sync_state: it survives a restart
AVAILABILITY = {"available": ("● available", "green"), "away": ("◌ away", "yellow")}
NAME_LIMIT = 32


class PresenceEvent(Message):
    """The live stream heard presence or typing (posted from its thread): repaint who is here."""


def saved_availability(cache: Cache) -> str:
    status = cache.state(AVAILABILITY_KEY)
    return status if status in AVAILABILITY else "available"


def save_availability(cache: Cache, status: str) -> None:
    with cache.write() as db:
        cache.set_state(AVAILABILITY_KEY, status, db)


def toggled(status: str) -> str:
    return "away" if status == "available" else "available"


def availability_label(status: str) -> tuple[str, str]:
    return AVAILABILITY.get(status, AVAILABILITY["available"])


def who_is_here(cache: Cache, presence: Presence, conversation_id: str, me: str) -> Text:
    """"Bob Stone is typing · Carol Diaz viewing" for the other agents on this conversation ("" if none).
    Presence is in memory; the names are one indexed lookup, only when someone is there."""
    viewers, typists = presence.here(conversation_id, me)
    if not viewers and not typists:
        return Text("")
    names = agent_names(cache, [*viewers, *typists])
    typing = set(typists)
    parts: list[Text] = []
    for agent_id in [*typists, *(v for v in viewers if v not in typing)]:
        name = safe_text(names.get(agent_id) or "another agent", "bold cyan", one_line=True, limit=NAME_LIMIT)
        parts.append(Text.assemble(name, (" is typing" if agent_id in typing else " viewing", "cyan")))
    return Text(" · ", style="dim").join(parts)


class CollisionWatch:
    """Remembers, for the conversation being answered, the newest interaction by others when the agent began
    typing; at send, what others added since (a customer's message, a colleague's reply or note)."""

    def __init__(self) -> None:
        self.mark: tuple[str, str] | None = None  # (conversation id, the newest interaction's time then)

    def began_typing(self, cache: Cache, conversation_id: str, me: str) -> None:
        if self.mark is None or self.mark[0] != conversation_id:
            self.mark = (conversation_id, newest_interaction_at(cache, conversation_id, me))

    def forget(self) -> None:
        self.mark = None

    def arrivals(self, cache: Cache, conversation_id: str, me: str) -> list[Arrival]:
        if self.mark is None or self.mark[0] != conversation_id:
            return []
        return newer_interactions(cache, conversation_id, self.mark[1], me)


VERB = {"inbound": "wrote", "outbound": "replied", "note": "added a note"}


def collision_question(arrivals: list[Arrival], now: datetime) -> Text:
    """"María López wrote 40s ago since you began typing — send anyway?" (the newest arrival, and how many more)."""
    newest = arrivals[0]
    when = from_iso(newest.occurred_at)
    ago = f" {span((now - when).total_seconds())} ago" if when else ""
    question = Text.assemble(
        safe_text(newest.who or "Someone", "bold", one_line=True, limit=NAME_LIMIT),
        f" {VERB.get(newest.direction, 'wrote')}{ago}",
    )
    if len(arrivals) > 1:
        question.append(f" (and {len(arrivals) - 1} more)")
    question.append(" since you began typing — send anyway?")
    return question


def assignment_notice(cache: Cache, conversation_ids: list[str]) -> str:
    """"Assigned to you: María López" (plain, sanitised text for notify(markup=False))."""
    from agentdesk.domain.text import clean_line

    names = [clean_line(name or "a customer", NAME_LIMIT) for name in customer_names(cache, conversation_ids)]
    if not names:
        return ""
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return "Assigned to you: " + ", ".join(names[:3]) + more
