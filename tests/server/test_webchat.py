"""The web chat channel against a real server on a loopback port, with a real websocket client (`websockets`)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from conftest import LiveServer, build_world, start_uvicorn
from sqlmodel import select
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from agentdesk.config import Settings
from agentdesk.server.app import create_app
from agentdesk.server.channels.webchat import chat_address, origin_allowed, session_key
from agentdesk.server.db import make_engine, session
from agentdesk.server.models import (
    Conversation,
    Customer,
    Identity,
    Interaction,
    MergeSuggestion,
)

# --- helpers ---------------------------------------------------------------------------------------------------


def new_session() -> str:
    return uuid.uuid4().hex


def socket_url(base: str, session_id: str) -> str:
    return base.replace("http://", "ws://") + f"/chat/ws?session={session_id}"


@asynccontextmanager
async def chat(base: str, session_id: str, **kwargs: Any) -> AsyncIterator[ClientConnection]:
    async with connect(socket_url(base, session_id), open_timeout=5, **kwargs) as ws:
        yield ws


async def next_event(ws: ClientConnection, kind: str | None = None, timeout: float = 2.0) -> dict[str, Any]:
    """The next event (of `kind`, skipping others) within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no {kind or 'event'} within {timeout} s"
        event = json.loads(await asyncio.wait_for(ws.recv(), left))
        if kind is None or event["type"] == kind:
            return event


async def send(ws: ClientConnection, frame: dict[str, Any]) -> None:
    await ws.send(json.dumps(frame))


async def introduce(ws: ClientConnection, **prechat: str) -> dict[str, Any]:
    """Read the connect history, send the pre-chat, return the history that answers it."""
    first = await next_event(ws, "history")
    assert first == {"type": "history", "messages": [], "prechat_required": True}
    await send(ws, {"type": "hello", **(prechat or {"name": "Dana Scully", "email": "dana@visitor.test"})})
    answer = await next_event(ws)
    assert answer["type"] == "history" and answer["prechat_required"] is False, answer
    return answer


async def say(ws: ClientConnection, text: str, client_id: str | None = None) -> dict[str, Any]:
    """Send a message; return the event acknowledging it (its echo)."""
    await send(ws, {"type": "message", "text": text, "client_id": client_id or uuid.uuid4().hex})
    return await next_event(ws)


def chat_rows(engine: sa.Engine, session_id: str) -> list[Interaction]:
    with session(engine) as db:
        conversation = db.exec(select(Conversation).where(Conversation.thread_key == session_key(session_id))).one()
        query = select(Interaction).where(Interaction.conversation_id == conversation.id).order_by(Interaction.occurred_at)
        return list(db.exec(query))


def conversation_of(engine: sa.Engine, session_id: str) -> Conversation:
    with session(engine) as db:
        return db.exec(select(Conversation).where(Conversation.thread_key == session_key(session_id))).one()


def agent(live: LiveServer, email: str = "alice@example.com") -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=live.url, headers={"Authorization": f"Bearer {live.world.tokens[email]}"})


async def push(http: httpx.AsyncClient, kind: str, conversation_id: str, text: str) -> dict[str, Any]:
    mutation = {
        "id": uuid.uuid4().hex, "kind": kind,
        "args": {"conversation_id": conversation_id, "interaction_id": uuid.uuid4().hex, "channel": "chat", "text": text},
    }
    result = (await http.post("/api/v1/sync/push", json={"mutations": [mutation]})).json()["results"][0]
    assert result["status"] == "applied", result
    return mutation["args"]


async def wait_for(predicate: Any, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


# --- a visitor's first chat ----------------------------------------------------------------------------------


async def test_prechat_then_message_is_a_chat_interaction_of_the_visitor(live_server):
    visitor = new_session()
    async with chat(live_server.url, visitor) as ws:
        await introduce(ws, name="  Dana   Scully ", email="Dana@Visitor.TEST")
        message = await say(ws, "My parcel never came.", client_id="c1")
    assert {k: message[k] for k in ("type", "from", "author", "text", "client_id")} == {
        "type": "message", "from": "visitor", "author": "Dana Scully", "text": "My parcel never came.", "client_id": "c1",
    }
    [row] = chat_rows(live_server.engine, visitor)
    key = session_key(visitor)
    assert (row.channel, row.direction, row.external_id, row.id) == ("chat", "inbound", f"chat:{key}:c1", message["id"])
    assert row.meta["prechat"] == {"name": "Dana Scully", "email": "dana@visitor.test"}
    assert row.meta["email"] == "dana@visitor.test"
    with session(live_server.engine) as db:
        customer = db.get(Customer, row.customer_id)
        identities = db.exec(select(Identity).where(Identity.customer_id == row.customer_id)).all()
        conversation = db.get(Conversation, row.conversation_id)
    assert customer.display_name == "Dana Scully" and customer.first_name == "Dana"
    # Known by the session (stored only as its digest), not by the unverified email.
    assert [(i.kind, i.address) for i in identities] == [("chat", chat_address(key))]
    assert (conversation.channel, conversation.thread_key, conversation.status) == ("chat", key, "open")
    assert visitor not in json.dumps(row.meta) + (row.external_id or "") + (conversation.thread_key or "")


async def test_a_message_before_the_prechat_is_refused_and_the_socket_stays_usable(live_server):
    visitor = new_session()
    async with chat(live_server.url, visitor) as ws:
        assert (await next_event(ws, "history"))["prechat_required"] is True
        await send(ws, {"type": "message", "text": "hi", "client_id": "early"})
        error = await next_event(ws)
        assert (error["type"], error["reason"], error["client_id"]) == ("error", "prechat_required", "early")
        await send(ws, {"type": "hello", "name": "Dana"})  # neither email nor phone
        error = await next_event(ws)
        assert (error["reason"], error["field"]) == ("invalid_prechat", "email")
        await send(ws, {"type": "hello", "name": "Dana", "email": "not-an-address"})
        error = await next_event(ws)
        assert (error["reason"], error["field"]) == ("invalid_prechat", "email") and "not-an-address" in error["message"]
        await send(ws, {"type": "hello", "name": "Dana", "phone": "12"})
        assert (await next_event(ws))["field"] == "phone"
        await send(ws, {"type": "hello", "name": " ", "phone": "+1 415 555 0199"})
        assert (await next_event(ws))["field"] == "name"
        await send(ws, {"type": "hello", "name": "Dana", "phone": "+1 415 555 0199"})
        assert (await next_event(ws))["prechat_required"] is False
        await say(ws, "now it works", client_id="later")
    [row] = chat_rows(live_server.engine, visitor)
    assert row.text == "now it works" and row.meta["phone"] == "+14155550199"


async def test_a_resent_client_id_is_stored_once(live_server):
    visitor = new_session()
    async with chat(live_server.url, visitor) as ws:
        await introduce(ws)
        first = await say(ws, "Hello?", client_id="same")
        await send(ws, {"type": "message", "text": "Hello?", "client_id": "same"})  # the widget resends, unsure
        await say(ws, "Anyone there?", client_id="other")
    async with chat(live_server.url, visitor) as ws:  # and after a reconnect
        history = await next_event(ws, "history")
        await send(ws, {"type": "message", "text": "Hello?", "client_id": "same"})
        await say(ws, "marker", client_id="marker")
    texts = [row.text for row in chat_rows(live_server.engine, visitor)]
    assert texts == ["Hello?", "Anyone there?", "marker"]
    assert [m["text"] for m in history["messages"]] == ["Hello?", "Anyone there?"]
    assert history["messages"][0]["id"] == first["id"]


# --- agents' side ------------------------------------------------------------------------------------------------


async def test_an_agent_reply_reaches_the_open_socket_within_a_second_and_becomes_delivered(live_server):
    visitor = new_session()
    async with chat(live_server.url, visitor) as ws, agent(live_server) as alice:
        await introduce(ws)
        await say(ws, "Where is my refund?")
        conversation = conversation_of(live_server.engine, visitor)
        assert conversation.team_id == live_server.world.teams["Billing"]  # Alice's team
        await push(alice, "note", conversation.id, "internal: check the ledger")  # never shown to the visitor
        started = time.monotonic()
        reply = await push(alice, "reply", conversation.id, "It left yesterday <b>really</b>.")
        event = await next_event(ws, timeout=1.0)
        elapsed = time.monotonic() - started
        assert {k: event[k] for k in ("type", "id", "from", "author", "text")} == {
            "type": "message", "id": reply["interaction_id"], "from": "agent", "author": "Alice",
            "text": "It left yesterday <b>really</b>.",
        }
        assert elapsed < 1.0

        def delivered() -> bool:
            with session(live_server.engine) as db:
                return db.get(Interaction, reply["interaction_id"]).delivery_status == "delivered"

        await wait_for(delivered, timeout=1.0)
        changes = (await alice.get("/api/v1/sync/pull")).json()["changes"]
    mine = [c["data"]["delivery_status"] for c in changes if c["entity"] == "interactions" and c["data"]["id"] == reply["interaction_id"]]
    assert mine[-1] == "delivered"  # the agent's desk learns it through the change log


async def test_a_reply_written_by_another_server_process_is_pushed_too(live_server):
    """Two servers over one database: the visitor is on one, the agent's push goes to the other."""
    other_engine = make_engine(live_server.engine.url.render_as_string(hide_password=False))
    other_url, other, thread = start_uvicorn(create_app(other_engine))
    try:
        visitor = new_session()
        async with chat(live_server.url, visitor) as ws, httpx.AsyncClient(
            base_url=other_url, headers={"Authorization": f"Bearer {live_server.world.tokens['alice@example.com']}"}
        ) as alice:
            await introduce(ws)
            await say(ws, "Anyone?")
            conversation = conversation_of(live_server.engine, visitor)
            reply = await push(alice, "reply", conversation.id, "Yes, from the other process.")
            event = await next_event(ws, "message", timeout=1.0)
            assert (event["id"], event["text"]) == (reply["interaction_id"], "Yes, from the other process.")
            await alice.post("/api/v1/typing", json={"conversation_id": conversation.id})
            assert await next_event(ws, timeout=1.0) == {"type": "typing", "author": "Alice"}
    finally:
        other.should_exit = True
        thread.join(timeout=10)
        other_engine.dispose()


async def test_reconnecting_resumes_the_session_with_its_history_in_order(live_server):
    visitor = new_session()
    async with chat(live_server.url, visitor) as ws, agent(live_server) as alice:
        await introduce(ws)
        await say(ws, "one")
        await say(ws, "two")
        conversation = conversation_of(live_server.engine, visitor)
        await push(alice, "reply", conversation.id, "three")
        await next_event(ws, "message", timeout=1.0)
    async with chat(live_server.url, visitor) as ws:  # a reload: no pre-chat again
        history = await next_event(ws, "history")
        assert history["prechat_required"] is False
        assert [(m["from"], m["text"]) for m in history["messages"]] == [("visitor", "one"), ("visitor", "two"), ("agent", "three")]
        echo = await say(ws, "four")
        assert (echo["type"], echo["from"], echo["author"], echo["text"]) == ("message", "visitor", "Dana Scully", "four")
    rows = chat_rows(live_server.engine, visitor)
    assert [r.text for r in rows] == ["one", "two", "three", "four"]
    assert {r.conversation_id for r in rows} == {conversation.id}
    assert rows[-1].meta["prechat"]["email"] == "dana@visitor.test"  # remembered from the first connection


async def test_a_reply_written_while_the_visitor_was_away_comes_with_the_history(live_server):
    visitor = new_session()
    async with chat(live_server.url, visitor) as ws:
        await introduce(ws)
        await say(ws, "I'll be back")
    conversation = conversation_of(live_server.engine, visitor)
    async with agent(live_server) as alice:
        reply = await push(alice, "reply", conversation.id, "Answered while you were away.")
    with session(live_server.engine) as db:
        assert db.get(Interaction, reply["interaction_id"]).delivery_status == "sent"
    async with chat(live_server.url, visitor) as ws:
        history = await next_event(ws, "history")
        assert history["messages"][-1]["text"] == "Answered while you were away."

        def delivered() -> bool:
            with session(live_server.engine) as db:
                return db.get(Interaction, reply["interaction_id"]).delivery_status == "delivered"

        await wait_for(delivered, timeout=1.0)


async def test_two_tabs_of_one_session_see_each_others_messages(live_server):
    visitor = new_session()
    async with chat(live_server.url, visitor) as first:
        await introduce(first)
        await say(first, "from tab one")
        async with chat(live_server.url, visitor) as second:
            assert [m["text"] for m in (await next_event(second, "history"))["messages"]] == ["from tab one"]
            echo = await say(second, "from tab two")
            relayed = await next_event(first, "message", timeout=1.0)
            assert relayed["id"] == echo["id"] and relayed["text"] == "from tab two"


async def test_agent_typing_reaches_the_visitor_with_the_agents_first_name(live_server):
    visitor, bystander = new_session(), new_session()
    async with chat(live_server.url, visitor) as ws, chat(live_server.url, bystander) as other, agent(live_server) as alice:
        await introduce(ws)
        await say(ws, "hello")
        await introduce(other, name="Fox", phone="+1 415 555 0123")
        await say(other, "me too")
        conversation = conversation_of(live_server.engine, visitor)
        answer = await alice.post("/api/v1/typing", json={"conversation_id": conversation.id})
        assert answer.status_code == 204
        assert await next_event(ws, timeout=1.0) == {"type": "typing", "author": "Alice"}
        with pytest.raises((TimeoutError, AssertionError)):  # typing in Dana's chat is not shown to Fox
            await next_event(other, timeout=0.3)


# --- what a visitor must not be able to do -------------------------------------------------------------------------


async def test_a_page_of_another_origin_is_refused_at_the_handshake(live_server):
    with pytest.raises(InvalidStatus) as refused:
        async with chat(live_server.url, new_session(), origin="http://evil.example"):
            pass
    assert refused.value.response.status_code == 403
    async with chat(live_server.url, new_session(), origin=live_server.url) as ws:  # the server's own pages
        assert (await next_event(ws))["type"] == "history"


def test_origin_rules():
    assert origin_allowed("http://127.0.0.1:8765", "127.0.0.1:8765", [])
    assert origin_allowed("https://chat.example.com", "chat.example.com", [])  # TLS ended by a proxy
    assert origin_allowed("HTTPS://Chat.Example.com:443", "chat.example.com", [])
    assert not origin_allowed("http://127.0.0.1:9999", "127.0.0.1:8765", [])
    assert not origin_allowed("http://evil.example", "chat.example.com", [])
    assert not origin_allowed("null", "chat.example.com", [])
    assert not origin_allowed("http://chat.example.com.evil.example", "chat.example.com", [])
    assert origin_allowed("https://www.example.com", "chat.example.com", ["https://www.example.com"])
    assert not origin_allowed("http://www.example.com", "chat.example.com", ["https://www.example.com"])
    assert origin_allowed("https://desk.example.com", "10.0.0.5:8765", [], "https://desk.example.com/")


async def test_a_configured_origin_is_let_in(db_engine):
    build_world(db_engine)
    settings = Settings(channels={"chat": {"allowed_origins": ["https://shop.example.com"]}})
    url, server, thread = start_uvicorn(create_app(db_engine, settings=settings))
    try:
        async with chat(url, new_session(), origin="https://shop.example.com") as ws:
            assert (await next_event(ws))["type"] == "history"
        with pytest.raises(InvalidStatus):
            async with chat(url, new_session(), origin="https://other.example.com"):
                pass
        async with httpx.AsyncClient() as http:
            page = await http.get(f"{url}/chat")
        assert "frame-ancestors 'self' https://shop.example.com" in page.headers["content-security-policy"]
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.mark.parametrize("session_id", ["", "abc", "A" * 32, "0" * 31 + "g", "0" * 64])
async def test_a_bad_session_id_gets_a_reason_and_a_clean_close(live_server, session_id):
    async with chat(live_server.url, session_id) as ws:
        event = await next_event(ws)
        assert (event["type"], event["reason"]) == ("error", "bad_session")
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd.code == 1008


async def test_malformed_frames_get_error_events_and_the_socket_stays_usable(live_server):
    visitor = new_session()
    async with chat(live_server.url, visitor) as ws:
        await introduce(ws)
        cases = [
            ("{not json", "bad_json"),
            ("[1, 2]", "bad_message"),
            ('"hello"', "bad_message"),
            ('{"type": "dance"}', "bad_message"),
            ('{"type": ["message"]}', "bad_message"),
            ('{"type": "message", "text": "no id"}', "bad_message"),
            ('{"type": "message", "text": "bad id", "client_id": "a b"}', "bad_message"),
            ('{"type": "message", "text": 5, "client_id": "n"}', "bad_message"),
            ('{"type": "message", "text": "   ", "client_id": "blank"}', "bad_message"),
            (json.dumps({"type": "message", "text": "x" * 5001, "client_id": "long"}), "too_long"),
            (json.dumps({"type": "message", "text": "x" * 70_000, "client_id": "huge"}), "too_long"),
            ('{"type": "hello", "name": {"x": 1}, "email": "a@b.co"}', "invalid_prechat"),
            ('{"type": "hello", "name": "Dana", "email": ["a@b.co"]}', "invalid_prechat"),
        ]
        for frame, reason in cases:
            await ws.send(frame)
            event = await next_event(ws)
            assert (event["type"], event["reason"]) == ("error", reason), frame
            assert event["message"]
            await asyncio.sleep(0.07)  # within the rate limit (10 a second, bursts of 10)
        await ws.send(b"\x00binary")
        assert (await next_event(ws))["reason"] == "bad_message"
        exactly = "y" * 5000
        echo = await say(ws, exactly)
        assert echo["text"] == exactly
    assert [len(r.text) for r in chat_rows(live_server.engine, visitor)] == [5000]


async def test_hostile_text_is_stored_and_echoed_as_data(live_server):
    hostile = '<img src=x onerror=alert(1)>\x1b]52;c;aGk=\x07\u202e[@click=app.quit]'
    visitor = new_session()
    async with chat(live_server.url, visitor) as ws:
        await introduce(ws, name="<script>alert(1)</script>", email="x@visitor.test")
        echo = await say(ws, hostile)
    assert echo["text"] == hostile and echo["author"] == "<script>alert(1)</script>"
    [row] = chat_rows(live_server.engine, visitor)
    assert row.text == hostile


async def test_too_many_messages_get_a_rate_limit_error_then_flooding_closes(live_server):
    visitor = new_session()
    async with chat(live_server.url, visitor) as ws:
        await introduce(ws)  # the hello spent one frame of the burst
        for index in range(15):
            await send(ws, {"type": "typing"} if index else {"type": "message", "text": "burst", "client_id": "b0"})
        await send(ws, {"type": "message", "text": "too fast", "client_id": "fast"})
        events = []
        while not any(e.get("client_id") == "fast" for e in events):
            events.append(await next_event(ws))
        assert [e["reason"] for e in events if e["type"] == "error"][-1] == "rate_limited"
        assert events[-1]["message"].startswith("Too many messages")
        await asyncio.sleep(0.3)  # the bucket refills
        echo = await say(ws, "calm again", client_id="fast")
        assert echo["type"] == "message" and echo["text"] == "calm again"
        for _ in range(80):
            await send(ws, {"type": "typing"})
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await next_event(ws)
    assert closed.value.rcvd.code == 1008
    assert [r.text for r in chat_rows(live_server.engine, visitor)] == ["burst", "calm again"]


async def test_the_prechat_email_of_a_known_customer_is_a_merge_suggestion_not_a_merge(live_server):
    maria = live_server.world.customers["maria"]
    visitor = new_session()
    async with chat(live_server.url, visitor) as ws:
        await introduce(ws, name="Maria", email="MARIA@customer.test")
        await say(ws, "It's me, Maria")
        await say(ws, "again")
    rows = chat_rows(live_server.engine, visitor)
    with session(live_server.engine) as db:
        suggestions = db.exec(select(MergeSuggestion)).all()
        visitor_customer = db.get(Customer, rows[0].customer_id)
        maria_identities = db.exec(select(Identity).where(Identity.customer_id == maria)).all()
    assert visitor_customer.id != maria and visitor_customer.merged_into is None
    assert len(suggestions) == 1  # once, however many messages repeat the claim
    assert {suggestions[0].customer_id, suggestions[0].other_id} == {maria, visitor_customer.id}
    assert suggestions[0].status == "open" and "maria@customer.test" in suggestions[0].reason
    assert sorted(i.kind for i in maria_identities) == ["email", "phone"]  # Maria's record is untouched


# --- the page -------------------------------------------------------------------------------------------------------


async def test_the_widget_page_escapes_its_title_and_serves_its_script(db_engine):
    settings = Settings(channels={"chat": {"title": 'Help & <script>alert("t")</script>'}})
    url, server, thread = start_uvicorn(create_app(db_engine, settings=settings))
    try:
        async with httpx.AsyncClient(base_url=url) as http:
            page = await http.get("/chat")
            script = await http.get("/chat/chat.js")
            style = await http.get("/chat/chat.css")
            missing = await http.get("/chat/secrets.txt")
            traversal = await http.get("/chat/..%2Fwebchat.py")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<title>Help &amp; &lt;script&gt;alert(&quot;t&quot;)&lt;/script&gt;</title>" in page.text
    assert "<script>alert" not in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert 'id="prechat"' in page.text and 'id="messages"' in page.text
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert "innerHTML" not in script.text and "textContent" in script.text
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
    assert missing.status_code == 404 and traversal.status_code == 404


async def test_a_disabled_chat_serves_nothing(db_engine):
    url, server, thread = start_uvicorn(create_app(db_engine, settings=Settings(channels={"chat": {"enabled": False}})))
    try:
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{url}/chat")).status_code == 404
        with pytest.raises(InvalidStatus):
            async with chat(url, new_session()):
                pass
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_session_ids_never_reach_the_server_log():
    """uvicorn logs every websocket handshake with its query string; the session id in it is a secret."""
    import logging

    from agentdesk.server.channels.webchat import _HideSessionIds

    secret = "0123456789abcdef0123456789abcdef"
    record = logging.LogRecord("uvicorn.error", logging.INFO, "", 0, '%s - "WebSocket %s" %d',
                               ("127.0.0.1:5000", f"/chat/ws?session={secret}&x=1", 101), None)
    assert _HideSessionIds().filter(record)
    assert secret not in record.getMessage() and "/chat/ws?session=…&x=1" in record.getMessage()
