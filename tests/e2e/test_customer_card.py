"""The customer card (`c`) against a real server: the facts it shows, and tag, notes, merge, undo and dismiss
edits — shown at once from the cache, each reaching the server once, rolled back with the reason if refused."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import select

from agentdesk.domain.clock import utcnow
from agentdesk.server.auth import new_id
from agentdesk.server.db import session
from agentdesk.server.models import Conversation, Customer, Identity, Interaction, MergeRecord, MergeSuggestion, Mutation
from agentdesk.tui.screens.customer import CustomerScreen, CustomerSearchModal
from agentdesk.tui.screens.pick import PickModal
from test_conversation_actions import desk, notifications, screen_text, wait_until


@dataclass
class Duplicate:
    customer_id: str
    suggestion_id: str


def add_rated_history_and_a_duplicate(live_server) -> Duplicate:
    """María gets a closed, rated conversation; "Maria Lopez" (closed, in Billing too) looks like her, and the
    server suggests merging them. All before the desk starts, so its bootstrap brings them."""
    world, now = live_server.world, utcnow()
    maria, billing = world.customers["maria"], world.teams["Billing"]
    with session(live_server.engine) as db:
        duplicate = Customer(id=new_id(), display_name="Maria Lopez", first_name="Maria", language="es")
        db.add(duplicate)
        db.add(Identity(id=new_id(), customer_id=duplicate.id, kind="whatsapp", address="+34600111222"))
        db.flush()
        for customer_id, text, csat, days in ((maria, "Thanks, all sorted", 4, 3), (duplicate.id, "Old order question", 2, 10)):
            at = now - timedelta(days=days)
            conversation = Conversation(
                id=new_id(), customer_id=customer_id, channel="email", status="closed", team_id=billing,
                subject=text, created_at=at, last_message_at=at, closed_at=at,
            )
            db.add(conversation)
            db.flush()
            db.add(Interaction(
                id=new_id(), conversation_id=conversation.id, customer_id=customer_id, channel="email",
                direction="inbound", text=text, meta={"csat": csat}, occurred_at=at,
            ))
        suggestion = MergeSuggestion(
            id=new_id(), customer_id=maria, other_id=duplicate.id, reason="the same name on two customers: María López",
        )
        db.add(suggestion)
        db.commit()
        return Duplicate(duplicate.id, suggestion.id)


def server_customer(live_server, customer_id: str) -> Customer:
    with session(live_server.engine) as db:
        return db.get(Customer, customer_id)


def mutations(live_server, kind: str) -> list[Mutation]:
    with session(live_server.engine) as db:
        return list(db.exec(select(Mutation).where(Mutation.kind == kind)))


def card_text(app) -> str:
    assert isinstance(app.screen, CustomerScreen)
    return screen_text(app)


async def open_card(app, pilot) -> None:
    await pilot.press("c")
    await wait_until(pilot, lambda: isinstance(app.screen, CustomerScreen))


async def test_the_card_shows_who_the_customer_is(live_server, tmp_path):
    add_rated_history_and_a_duplicate(live_server)
    async with desk(live_server, tmp_path) as (app, pilot, gate):
        await open_card(app, pilot)
        text = card_text(app)
        lines = text.splitlines()
        assert "Customer  María López" in text
        assert any("Identities" in line and "✉ Email  maria@customer.test" in line for line in lines)
        assert "☎ Phone  +14155550000" in text
        assert any("Language" in line and " en" in line for line in lines)
        assert any("Conversations" in line and "2 open · 3 total" in line for line in lines)
        assert any("Last CSAT" in line and "4/5" in line for line in lines)  # María's own, newer than the duplicate's 2
        assert any("Last contact" in line and "30m ago" in line for line in lines)
        assert any("Maria Lopez" in line and "the same name on two customers" in line for line in lines)
        assert "Find another customer to merge" in text
        await pilot.press("escape")
        assert not isinstance(app.screen, CustomerScreen)


async def test_tag_and_notes_edits_show_at_once_and_reach_the_server_once(live_server, tmp_path):
    maria = live_server.world.customers["maria"]
    async with desk(live_server, tmp_path) as (app, pilot, gate):
        await open_card(app, pilot)
        gate.hold()
        await pilot.press("t", *"VIP", "enter", "t", *"refund", "enter", "t", *"-refund", "enter")
        assert isinstance(app.screen, CustomerScreen)
        assert any("Tags" in line and "#vip" in line and "#refund" not in line for line in card_text(app).splitlines())
        await pilot.press("n", *"Prefers email", "ctrl+s")
        assert app.cache.customer(maria)["notes"] == "Prefers email"
        assert app.cache.outbox_count() == 4  # not sent yet: the card shows the cache's own change
        gate.release()
        await wait_until(pilot, lambda: app.cache.outbox_count() == 0)
        assert notifications(app, "warning", "error") == []
    customer = server_customer(live_server, maria)
    assert customer.tags == ["vip"] and customer.notes == "Prefers email"
    assert [len(mutations(live_server, kind)) for kind in ("tag", "untag", "edit_customer")] == [2, 1, 1]


async def test_merging_a_suggestion_reaches_the_server_then_undo_puts_it_back(live_server, tmp_path):
    duplicate = add_rated_history_and_a_duplicate(live_server)
    maria = live_server.world.customers["maria"]
    async with desk(live_server, tmp_path) as (app, pilot, gate):
        await open_card(app, pilot)
        gate.hold()
        await pilot.press("m")
        assert isinstance(app.screen, PickModal)
        assert "Merge Maria Lopez into María López?" in screen_text(app)
        await pilot.press("enter")
        text = card_text(app)
        assert "Merged Maria Lopez into this customer · u undoes" in text
        assert "the same name on two customers" not in text  # the suggestion left at once
        gate.release()
        await wait_until(pilot, lambda: server_customer(live_server, duplicate.customer_id).merged_into == maria)
        # Once synced the duplicate's history is María's: on the card and on the desk's timeline.
        await wait_until(pilot, lambda: "2 open · 4 total" in card_text(app))
        await pilot.press("escape", "enter")  # back on the desk, the conversation opened anew
        await wait_until(pilot, lambda: "Old order question" in screen_text(app))
        await open_card(app, pilot)
        await pilot.press("u")
        await wait_until(pilot, lambda: server_customer(live_server, duplicate.customer_id).merged_into is None)
        await wait_until(pilot, lambda: "2 open · 3 total" in card_text(app))
        assert "u undoes" not in card_text(app)
        await pilot.press("escape")
        await wait_until(pilot, lambda: "Old order question" not in screen_text(app))
        assert notifications(app, "warning", "error") == []
    with session(live_server.engine) as db:
        [record] = db.exec(select(MergeRecord)).all()
        assert record.source_id == duplicate.customer_id and record.target_id == maria and record.undone_at is not None
        assert db.get(MergeSuggestion, duplicate.suggestion_id).status == "accepted"
    assert len(mutations(live_server, "merge_customers")) == 1 and len(mutations(live_server, "unmerge")) == 1


async def test_dismiss_a_suggestion_then_merge_a_customer_found_by_search(live_server, tmp_path):
    duplicate = add_rated_history_and_a_duplicate(live_server)
    maria = live_server.world.customers["maria"]
    async with desk(live_server, tmp_path) as (app, pilot, gate):
        await open_card(app, pilot)
        await pilot.press("x")
        assert "the same name on two customers" not in card_text(app)
        await wait_until(pilot, lambda: app.cache.outbox_count() == 0)
        await pilot.press("m")  # no suggestion left: "find another customer" is highlighted
        assert isinstance(app.screen, CustomerSearchModal)
        await pilot.press(*"34600")
        await wait_until(pilot, lambda: "Maria Lopez  +34600111222" in screen_text(app))
        await pilot.press("enter")
        assert isinstance(app.screen, PickModal)
        await pilot.press("enter")
        await wait_until(pilot, lambda: server_customer(live_server, duplicate.customer_id).merged_into == maria)
        assert notifications(app, "warning", "error") == []
    with session(live_server.engine) as db:
        assert db.get(MergeSuggestion, duplicate.suggestion_id).status == "dismissed"
    assert len(mutations(live_server, "dismiss_suggestion")) == 1


async def test_a_refused_notes_edit_rolls_back_with_the_servers_reason(live_server, tmp_path):
    maria = live_server.world.customers["maria"]
    async with desk(live_server, tmp_path) as (app, pilot, gate):
        await open_card(app, pilot)
        with session(live_server.engine) as db:  # María leaves Billing on the server; the desk does not know yet
            for conversation in db.exec(select(Conversation).where(Conversation.customer_id == maria)):
                conversation.team_id = live_server.world.teams["Support"]
                db.add(conversation)
            db.commit()
        gate.hold()
        await pilot.press("n", *"Secret plan", "ctrl+s")
        assert app.cache.customer(maria)["notes"] == "Secret plan"
        gate.release()
        reason = "Customer not saved: That customer no longer exists or is not visible to you."
        await wait_until(pilot, lambda: reason in notifications(app, "warning"))
        await wait_until(pilot, lambda: app.cache.customer(maria)["notes"] == "")
        await wait_until(pilot, lambda: "Secret plan" not in card_text(app))
    assert server_customer(live_server, maria).notes == ""


async def test_c_opens_the_card_only_with_a_conversation_open(live_server, tmp_path):
    async with desk(live_server, tmp_path) as (app, pilot, gate):
        assert app.check_action("open_customer", ()) is True
        first = app.open_state["id"]  # both conversations go to Support, out of Alice's view: none stays open
        await pilot.press("T", "enter")
        await wait_until(pilot, lambda: app.open_state is not None and app.open_state["id"] != first)
        await pilot.press("T", "enter")
        await wait_until(pilot, lambda: app.open_state is None)
        assert app.check_action("open_customer", ()) is False
        await pilot.press("c")
        assert not isinstance(app.screen, CustomerScreen)
