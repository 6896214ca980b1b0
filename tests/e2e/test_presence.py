"""Presence, availability, collisions and assignment notices (issue 5 items 7-8), with the desk against a real
server on loopback: what the server and a teammate's live stream hear from the desk, and what the agent sees."""

from __future__ import annotations

import time
import uuid
from contextlib import asynccontextmanager, contextmanager

import httpx

from agentdesk.config import Settings
from agentdesk.desk import build_desk
from agentdesk.server.admin import add_agent
from agentdesk.server.auth import issue_token
from agentdesk.server.db import session
from agentdesk.server.inbound import Inbound, ingest
from agentdesk.server.models import Agent, Conversation
from agentdesk.sync.client import SyncClient
from agentdesk.sync.live import LiveStream, Presence
from agentdesk.tui.screens.confirm import ConfirmModal
from agentdesk.tui.widgets.queue import QueueList
from test_conversation_actions import notifications, screen_text, wait_until

ALICE = "alice@example.com"
HOSTILE_NAME = "Cy\x1b[2J[@click=app.quit]x[/]\u202eDiaz"  # ESC, markup and a bidi override


def server_presence(live_server, email: str = ALICE) -> str:
    with session(live_server.engine) as db:
        return db.get(Agent, live_server.world.agents[email]).presence


def assignee(live_server, conversation_id: str) -> str | None:
    with session(live_server.engine) as db:
        return db.get(Conversation, conversation_id).assignee_id


def new_customer_writes(live_server, name: str, phone: str, text: str = "Hi, anyone there?") -> str:
    """A new inbound SMS from a new customer: a new conversation, routed by the server (to Billing, the first team)."""
    with session(live_server.engine) as db:
        return ingest(db, Inbound(channel="sms", address=phone, name=name, text=text)).conversation_id


def add_billing_agent(live_server, name: str = "Carol Diaz", email: str = "carol@example.com") -> tuple[str, str]:
    """A teammate of Alice's (Billing), before the desk starts so its cache knows the name: (id, token)."""
    with session(live_server.engine) as db:
        agent = add_agent(db, name, email, "Billing")
        token = issue_token(db, agent)
        db.commit()
        return agent.id, token


@contextmanager
def teammate_listening(live_server, token: str):
    """The teammate's own live stream, and the Presence it keeps (what their desk would show)."""
    client = SyncClient(live_server.url, token, timeout=5)
    presence = Presence()
    stream = LiveStream(client.live_http, on_poke=lambda seq: None, presence=presence)
    stream.start()
    try:
        yield presence, client
    finally:
        stream.stop(timeout=2)
        client.close()


@asynccontextmanager
async def desk(live_server, tmp_path, *, bell: bool = True, toasts: bool = False):
    settings = Settings(sync={"poll_interval": 0.2}, desk={"bell_on_assignment": bell})
    app = build_desk(settings, live_server.url, live_server.world.tokens[ALICE], tmp_path)
    bells: list[float] = []
    app.bell = lambda: bells.append(time.monotonic())
    async with app.run_test(size=(160, 45), notifications=toasts) as pilot:
        await wait_until(pilot, lambda: app.query_one(QueueList).total >= 2 and app.open_state is not None)
        yield app, pilot, bells


async def open_from_queue(pilot, app, conversation_id: str) -> None:
    """Walk the queue (each tab, each row) until the conversation is open."""
    queue = app.query_one(QueueList)
    for _tab in range(5):
        await pilot.press("k", *["k"] * queue.total)
        for _row in range(queue.total + 1):
            if app.open_row is not None and app.open_row.id == conversation_id:
                return
            await pilot.press("j")
        await pilot.press("tab")
    raise AssertionError(f"{conversation_id} is not in any queue tab")


# --- availability ------------------------------------------------------------------------------------------


async def test_the_desk_says_available_so_round_robin_assigns_it_new_work(live_server, tmp_path):
    assert server_presence(live_server) == "offline"
    async with desk(live_server, tmp_path) as (app, pilot, bells):
        await wait_until(pilot, lambda: server_presence(live_server) == "available")
        assert "● available" in screen_text(app).splitlines()[0]
        conversation = new_customer_writes(live_server, "Zoë Newcomer", "+14155559001")
        assert assignee(live_server, conversation) == live_server.world.agents[ALICE]
        # The desk hears of it: a bell and a notice naming the customer.
        await wait_until(pilot, lambda: any("Zoë Newcomer" in n for n in notifications(app)))
        assert len(bells) == 1
        assert "Assigned to you: Zoë Newcomer" in notifications(app)
    # A clean quit says offline at once (not at the end of the server's grace for a dropped stream).
    deadline = time.monotonic() + 3
    while server_presence(live_server) != "offline":
        assert time.monotonic() < deadline, "the desk did not say offline when it quit"
        time.sleep(0.05)


async def test_A_switches_to_away_which_routing_obeys_and_a_restart_keeps(live_server, tmp_path):
    async with desk(live_server, tmp_path) as (app, pilot, _bells):
        await wait_until(pilot, lambda: server_presence(live_server) == "available")
        await pilot.press("A")
        assert "◌ away" in screen_text(app).splitlines()[0]  # at once, from the desk
        await wait_until(pilot, lambda: server_presence(live_server) == "away")
        conversation = new_customer_writes(live_server, "Otto Later", "+14155559002")
        assert assignee(live_server, conversation) is None  # left in the team's queue
    async with desk(live_server, tmp_path) as (app, pilot, _bells):  # the same cache: the choice is kept
        assert "◌ away" in screen_text(app).splitlines()[0]
        await wait_until(pilot, lambda: server_presence(live_server) == "away")
        await pilot.press("A")
        await wait_until(pilot, lambda: server_presence(live_server) == "available")
        assert "● available" in screen_text(app).splitlines()[0]


# --- who else is here --------------------------------------------------------------------------------------


async def test_the_conversation_the_agent_views_and_types_in_reaches_a_teammate(live_server, tmp_path):
    _carol, token = add_billing_agent(live_server)
    alice = live_server.world.agents[ALICE]
    with teammate_listening(live_server, token) as (carol_sees, _client):
        async with desk(live_server, tmp_path) as (app, pilot, _bells):
            first = app.open_row.id
            await wait_until(pilot, lambda: carol_sees.viewing().get(alice) == first)
            await pilot.press("j")
            second = app.open_row.id
            assert second != first
            await wait_until(pilot, lambda: carol_sees.viewing().get(alice) == second)
            assert carol_sees.typing().get(alice) is None
            await pilot.press("r", *"On it")
            await wait_until(pilot, lambda: carol_sees.typing().get(alice) == second)
        deadline = time.monotonic() + 3  # the desk quit: Carol hears it went offline, viewing nothing
        while not (carol_sees.status(alice) == "offline" and alice not in carol_sees.viewing()):
            assert time.monotonic() < deadline, "Carol never heard Alice leave"
            time.sleep(0.05)


async def test_a_teammate_viewing_and_typing_is_named_under_the_header(live_server, tmp_path):
    _carol, token = add_billing_agent(live_server, name=HOSTILE_NAME)
    carol_http = httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {token}"})
    async with desk(live_server, tmp_path) as (app, pilot, _bells):
        conversation = app.open_row.id
        await wait_until(pilot, lambda: app.sync_status.live)
        assert "viewing" not in screen_text(app) and "is typing" not in screen_text(app)
        assert carol_http.post("/api/v1/presence", json={"status": "available", "viewing": conversation}).status_code == 200
        await wait_until(pilot, lambda: "Diaz viewing" in screen_text(app))
        line = next(line for line in screen_text(app).splitlines() if "viewing" in line)
        assert "Cy␛[2J[@click=app.quit]x[/]Diaz viewing" in line  # literally, inert
        assert carol_http.post("/api/v1/typing", json={"conversation_id": conversation}).status_code == 204
        await wait_until(pilot, lambda: "Diaz is typing" in screen_text(app))
        await pilot.click("#conversation-presence")  # the markup in the name is not a link
        assert app.is_running
        # Typing fades by itself a few seconds after the last keystroke; viewing stays.
        await wait_until(pilot, lambda: "Diaz is typing" not in screen_text(app) and "Diaz viewing" in screen_text(app), timeout=10)
        await pilot.press("j")  # another conversation: Carol is not on it
        assert "Diaz" not in screen_text(app)
    carol_http.close()


# --- collisions --------------------------------------------------------------------------------------------


def teammate_note(live_server, token: str, conversation_id: str, text: str) -> None:
    mutation = {"id": uuid.uuid4().hex, "kind": "note",
                "args": {"conversation_id": conversation_id, "interaction_id": uuid.uuid4().hex, "channel": "sms", "text": text}}
    answer = httpx.post(f"{live_server.url}/api/v1/sync/push", json={"mutations": [mutation]},
                        headers={"Authorization": f"Bearer {token}"})
    assert answer.json()["results"][0]["status"] == "applied", answer.text


async def test_a_customer_message_while_typing_asks_before_sending_and_escape_keeps_the_draft(live_server, tmp_path):
    async with desk(live_server, tmp_path) as (app, pilot, _bells):
        conversation = app.open_row.id
        assert conversation == live_server.world.conversations["maria-sms"]
        await pilot.press("r", *"Your refund is on its way")
        new_customer_writes(live_server, "María López", "+14155550000", "Actually, never mind!")  # her number: same thread
        await wait_until(pilot, lambda: "Actually, never mind!" in screen_text(app))
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, ConfirmModal)
        question = screen_text(app)
        assert "María López wrote" in question and "since you began typing — send anyway?" in question
        await pilot.press("escape")
        assert not isinstance(app.screen, ConfirmModal)
        assert app.query_one("#reply").text == "Your refund is on its way"  # the draft untouched
        assert app.focused is app.query_one("#reply")  # back to editing
        assert app.cache.outbox_count() == 0 and not live_server.interactions("Your refund is on its way")
        await pilot.press(*", or is it?")
        await pilot.press("ctrl+s")  # she was seen: no second warning for the same message
        assert not isinstance(app.screen, ConfirmModal)
        await wait_until(pilot, lambda: live_server.interactions("Your refund is on its way, or is it?") != [])


async def test_a_teammates_note_while_typing_asks_and_enter_sends_anyway(live_server, tmp_path):
    _carol, token = add_billing_agent(live_server)
    async with desk(live_server, tmp_path) as (app, pilot, _bells):
        conversation = app.open_row.id
        await pilot.press("r", *"I will refund you today")
        teammate_note(live_server, token, conversation, "Careful, I already refunded her")
        await wait_until(pilot, lambda: "Careful, I already refunded her" in screen_text(app))
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, ConfirmModal)
        assert "Carol Diaz added a note" in screen_text(app)
        await pilot.press("enter")
        assert not isinstance(app.screen, ConfirmModal)
        assert app.query_one("#reply").text == ""
        await wait_until(pilot, lambda: live_server.interactions("I will refund you today") != [])
        # The next reply starts afresh: nothing new since, so no question.
        await pilot.press(*"Done")
        await pilot.press("ctrl+s")
        assert not isinstance(app.screen, ConfirmModal)
        await wait_until(pilot, lambda: live_server.interactions("Done") != [])


async def test_no_question_when_nothing_arrived_or_only_the_agents_own_messages(live_server, tmp_path):
    async with desk(live_server, tmp_path) as (app, pilot, _bells):
        await pilot.press("r", *"First")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: live_server.interactions("First") != [] and app.cache.outbox_count() == 0)
        await pilot.press(*"Second")
        await pilot.pause(0.5)  # the first reply's server copy has been pulled by now
        await pilot.press("ctrl+s")
        assert not isinstance(app.screen, ConfirmModal)
        await wait_until(pilot, lambda: live_server.interactions("Second") != [])


# --- assignment notices ------------------------------------------------------------------------------------


async def test_no_bell_for_the_agents_own_assign_and_none_when_turned_off(live_server, tmp_path):
    async with desk(live_server, tmp_path, bell=False) as (app, pilot, bells):
        conversation = app.open_row.id
        await pilot.press("a")
        await wait_until(pilot, lambda: assignee(live_server, conversation) == live_server.world.agents[ALICE])
        await wait_until(pilot, lambda: server_presence(live_server) == "available")
        new_customer_writes(live_server, "Nina Routed", "+14155559003")  # assigned by round robin
        await wait_until(pilot, lambda: any("Nina Routed" in n for n in notifications(app)))
        assert not any("María" in n for n in notifications(app))  # her assign was the agent's own
        assert [n for n in notifications(app) if n.startswith("Assigned to you")] == ["Assigned to you: Nina Routed"]
        assert bells == []  # desk.bell_on_assignment = false: the notice only


async def test_hostile_customer_names_in_the_assignment_notice_and_the_collision_question_stay_inert(live_server, tmp_path):
    async with desk(live_server, tmp_path, toasts=True) as (app, pilot, bells):
        await wait_until(pilot, lambda: server_presence(live_server) == "available")
        conversation = new_customer_writes(live_server, HOSTILE_NAME, "+14155559004", "hello")
        await wait_until(pilot, lambda: any(n.startswith("Assigned to you") for n in notifications(app)))
        assert notifications(app)[-1] == "Assigned to you: Cy␛[2J[@click=app.quit]x[/]Diaz"
        await wait_until(pilot, lambda: "Assigned to you: Cy␛[2J[@click=app.quit]x[/]Diaz" in screen_text(app))  # the toast
        assert len(bells) == 1
        queue = app.query_one(QueueList)
        await open_from_queue(pilot, app, conversation)
        await pilot.press("r", *"Hello there")
        new_customer_writes(live_server, HOSTILE_NAME, "+14155559004", "are you there?")
        await wait_until(pilot, lambda: "are you there?" in screen_text(app))
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, ConfirmModal)
        assert "Cy␛[2J[@click=app.quit]x[/]Diaz wrote" in screen_text(app)
        await pilot.click("#confirm-question")
        assert app.is_running and isinstance(app.screen, ConfirmModal)
        await pilot.press("escape")
        assert queue.total >= 3 and app.query_one("#reply").text == "Hello there"
