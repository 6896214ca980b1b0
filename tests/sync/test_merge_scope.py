"""Merge suggestions, merges and unmerges reach a desk's cache as a fresh bootstrap would see them, against a
real server: a team that gains sight of a customer gets the suggestions naming them; a merged-away customer
leaves the desk whole (no stale suggestion left to show again), and an unmerge brings them back."""

from __future__ import annotations

import uuid

import httpx

from agentdesk.server.auth import new_id
from agentdesk.server.db import session
from agentdesk.server.inbound import Inbound, ingest
from agentdesk.server.models import MergeSuggestion
from agentdesk.store.cache import Cache
from agentdesk.store.customers import card, queue_merge, queue_unmerge, search, suggestions
from agentdesk.sync.client import SyncClient
from agentdesk.sync.engine import SyncEngine
from mirror import differences, mirror, server_view

ALICE, BOB = "alice@example.com", "bob@example.com"  # Billing (María's team), Support (Ken's)


class Desk:
    """An agent's cache, synced by the real engine (one round at a time)."""

    def __init__(self, live, tmp_path, email: str) -> None:
        self.live, self.tmp_path, self.email = live, tmp_path, email
        self.cache = Cache(tmp_path / f"{email}.sqlite3")
        self.engine = SyncEngine(self.cache.path, SyncClient(live.url, live.world.tokens[email]), live=False)
        self.sync()

    def sync(self) -> None:
        self.engine.sync_once(self.cache)

    def differences(self) -> dict:
        """What the cache holds that a fresh bootstrap of the same agent would not, and the reverse."""
        fresh = self.tmp_path / f"fresh-{uuid.uuid4().hex}.sqlite3"
        return differences(mirror(self.cache.db), server_view(self.live.url, self.live.world.tokens[self.email], fresh))

    def suggestion_rows(self) -> list[tuple[str, str]]:
        return self.cache.db.execute("SELECT id, status FROM merge_suggestions ORDER BY id").fetchall()


def push(live, email: str, kind: str, args: dict) -> None:
    mutation = {"id": uuid.uuid4().hex, "kind": kind, "args": args}
    answer = httpx.post(f"{live.url}/api/v1/sync/push", json={"mutations": [mutation]},
                        headers={"Authorization": f"Bearer {live.world.tokens[email]}"})
    answer.raise_for_status()
    assert answer.json()["results"][0]["status"] == "applied", answer.json()


def suggest_maria_is_ken(live) -> str:
    first, other = sorted((live.world.customers["maria"], live.world.customers["ken"]))
    suggestion = MergeSuggestion(id=new_id(), customer_id=first, other_id=other, reason="the same phone")
    with session(live.engine) as db:
        db.add(suggestion)
        db.commit()
        return suggestion.id


def test_a_team_that_gains_the_second_customer_by_a_transfer_gets_their_suggestion(live_server, tmp_path):
    suggestion = suggest_maria_is_ken(live_server)
    alice = Desk(live_server, tmp_path, ALICE)
    assert alice.suggestion_rows() == []  # Billing sees María, not Ken
    world = live_server.world
    push(live_server, BOB, "transfer", {"conversation_id": world.conversations["ken-email"], "to_team_id": world.teams["Billing"]})
    alice.sync()
    assert alice.suggestion_rows() == [(suggestion, "open")]
    assert [s.other_name for s in suggestions(alice.cache, world.customers["maria"])] == ["Ken Adams"]
    assert alice.differences() == {}


def test_a_team_that_transfers_a_customer_s_last_conversation_away_drops_the_customer(live_server, tmp_path):
    """The team a conversation leaves loses sight of its customer when no other conversation of theirs is left
    there: the desk drops the customer, their identities and the suggestions naming them, as a fresh bootstrap
    would not have them."""
    suggestion = suggest_maria_is_ken(live_server)
    world = live_server.world
    alice, bob = Desk(live_server, tmp_path, ALICE), Desk(live_server, tmp_path, BOB)
    ken = world.customers["ken"]
    push(live_server, BOB, "transfer", {"conversation_id": world.conversations["ken-sms"], "to_team_id": world.teams["Billing"]})
    bob.sync()
    assert bob.cache.customer(ken) is not None and bob.differences() == {}  # his email is still Support's
    push(live_server, BOB, "transfer", {"conversation_id": world.conversations["ken-email"], "to_team_id": world.teams["Billing"]})
    bob.sync()
    alice.sync()
    assert bob.cache.customer(ken) is None
    assert bob.cache.db.execute("SELECT count(*) FROM identities WHERE customer_id = ?", (ken,)).fetchone()[0] == 0
    assert bob.differences() == {}
    assert alice.suggestion_rows() == [(suggestion, "open")] and alice.differences() == {}


def test_a_team_that_gains_the_second_customer_by_a_new_message_gets_their_suggestion(live_server, tmp_path):
    suggestion = suggest_maria_is_ken(live_server)
    alice = Desk(live_server, tmp_path, ALICE)
    with session(live_server.engine) as db:  # a new subject: a new conversation, routed to Billing (first by name)
        result = ingest(db, Inbound(channel="email", address="ken@customer.test", subject="A new order", text="Hi"))
    assert result.customer_id == live_server.world.customers["ken"]
    alice.sync()
    assert alice.suggestion_rows() == [(suggestion, "open")]
    assert alice.differences() == {}


def test_a_merged_away_customer_leaves_every_desk_whole_and_an_unmerge_brings_them_back(live_server, tmp_path):
    world = live_server.world
    maria, ken = world.customers["maria"], world.customers["ken"]
    suggestion = suggest_maria_is_ken(live_server)
    push(live_server, BOB, "transfer", {"conversation_id": world.conversations["ken-email"], "to_team_id": world.teams["Billing"]})
    alice, bob = Desk(live_server, tmp_path, ALICE), Desk(live_server, tmp_path, BOB)  # both see Ken; Alice both
    assert [s.id for s in suggestions(alice.cache, maria)] == [suggestion]

    queue_merge(alice.cache, ken, maria, "Ken Adams")
    for desk in (alice, bob):
        desk.sync()
        assert desk.cache.customer(ken) is None, desk.email
        assert desk.cache.db.execute("SELECT count(*) FROM identities WHERE customer_id = ?", (ken,)).fetchone() == (0,)
        assert desk.suggestion_rows() == [], desk.email  # the stale "open" copy would come back on an unmerge
        assert [m.id for m in search(desk.cache, "Ken", exclude_id="")] == [maria]  # Ken's address is hers now
        assert desk.differences() == {}, desk.email
    assert card(alice.cache, maria).conversations == 3 and suggestions(alice.cache, maria) == []

    assert queue_unmerge(alice.cache, maria) is not None
    for desk in (alice, bob):
        desk.sync()
        assert [m.id for m in search(desk.cache, "Ken", exclude_id="")] == [ken], desk.email
        assert desk.differences() == {}, desk.email
    assert alice.suggestion_rows() == [(suggestion, "accepted")]  # merged once: not offered again
    assert suggestions(alice.cache, maria) == [] and suggestions(alice.cache, ken) == []
    assert card(alice.cache, maria).conversations == 2 and card(alice.cache, ken).merged_into is None
