"""The live event stream (SSE), presence and typing, against real servers on loopback ports."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from httpx_sse import ServerSentEvent, aconnect_sse

from agentdesk.server.admin import add_agent
from agentdesk.server.app import create_app
from agentdesk.server.auth import issue_token
from agentdesk.server.db import make_engine, session
from agentdesk.server.events import _POKE, Hub, StreamResponse, _Tick
from agentdesk.server.models import Agent, Change
from agentdesk.server.run import bind
from conftest import PromptServer

WAIT = 5.0  # a live event must arrive within this many seconds (live: ~0.1 s; the safety poll is 60 s; CI may be busy)


# --- helpers ------------------------------------------------------------------------------------------------


def max_seq(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.coalesce(sa.func.max(Change.seq), 0))).scalar_one()


def reply(conversation_id: str, text: str = "On it.") -> dict:
    return {
        "id": uuid.uuid4().hex,
        "kind": "reply",
        "args": {"conversation_id": conversation_id, "interaction_id": uuid.uuid4().hex, "channel": "email", "text": text},
    }


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Events:
    """The events of one open stream, read by a background task."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[ServerSentEvent | None] = asyncio.Queue()
        self.seen: list[ServerSentEvent] = []

    async def next(self, timeout: float = WAIT) -> ServerSentEvent:
        event = await asyncio.wait_for(self.queue.get(), timeout)
        assert event is not None, "the stream ended"
        self.seen.append(event)
        return event

    async def wait_for(self, kind: str, match: Callable[[dict], bool] = lambda _: True, timeout: float = WAIT) -> dict:
        """The next `kind` event whose data matches, skipping others; fails after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching {kind!r} event within {timeout}s; saw {[e.event for e in self.seen]}")
            try:
                event = await self.next(remaining)
            except TimeoutError:
                continue
            if event.event == kind and match(event.json()):
                # SSE keeps the last id for later events: only a poke's own id means something.
                return {**event.json(), "_id": event.id} if kind == "poke" else event.json()

    async def initial(self, agents: int) -> tuple[dict[str, dict], list[dict]]:
        """The connect burst: one presence per agent, then pokes (none when resuming up to date)."""
        presence = {}
        for _ in range(agents):
            event = await self.next()
            assert event.event == "presence", event
            presence[event.json()["agent_id"]] = event.json()
        pokes = []
        while not self.queue.empty():
            event = await self.next()
            if not event.data:  # a heartbeat: httpx-sse makes an empty event of it once an id was seen
                continue
            pokes.append({**event.json(), "_id": event.id, "_event": event.event})
        return presence, pokes


@asynccontextmanager
async def stream(url: str, token: str | None, **kw: Any) -> AsyncIterator[Events]:
    headers = auth(token) if token else {}
    headers.update(kw.pop("headers", {}))
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(10, read=None)) as http:
        async with aconnect_sse(http, "GET", "/api/v1/events", headers=headers, **kw) as source:
            assert source.response.status_code == 200, source.response.status_code
            events = Events()

            async def pump() -> None:
                try:
                    async for event in source.aiter_sse():
                        await events.queue.put(event)
                finally:
                    await events.queue.put(None)

            task = asyncio.create_task(pump())
            try:
                yield events
            finally:
                task.cancel()


def serve(engine: sa.Engine, hub: Hub | None = None) -> tuple[str, uvicorn.Server, threading.Thread]:
    """Another server on the same database (conftest.start_server, with the hub's options)."""
    sock = bind("127.0.0.1", 0)
    server = PromptServer(uvicorn.Config(create_app(engine, hub=hub), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server, thread


@pytest.fixture
def second_server(live_server):
    """A second server process's worth: its own engine, app and hub on the same database."""
    engine = make_engine(live_server.engine.url.render_as_string(hide_password=False))
    url, server, thread = serve(engine)
    yield url
    server.should_exit = True
    thread.join(timeout=10)
    engine.dispose()


@pytest.fixture
def quick_server(live_server):
    """A server whose hub has a short heartbeat and offline grace."""
    hub = Hub(live_server.engine, heartbeat=0.2, offline_grace=0.4)
    url, server, thread = serve(live_server.engine, hub)
    yield url, hub
    server.should_exit = True
    thread.join(timeout=10)


def add_billing_agent(live_server, name: str = "Carol Reyes", email: str = "carol@example.com") -> tuple[str, str]:
    with session(live_server.engine) as db:
        agent = add_agent(db, name, email, "Billing")
        token = issue_token(db, agent)
        db.commit()
    return agent.id, token


# --- the stream -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}])
def test_events_need_a_valid_bearer_token(live_server, headers):
    response = httpx.get(f"{live_server.url}/api/v1/events", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    for path, body in (("/api/v1/presence", {"status": "away"}), ("/api/v1/typing", {"conversation_id": "x" * 32})):
        assert httpx.post(f"{live_server.url}{path}", json=body, headers=headers).status_code == 401


async def test_connect_sends_everyones_presence_then_a_poke_with_the_current_seq(live_server):
    world = live_server.world
    async with stream(live_server.url, world.tokens["alice@example.com"]) as events:
        presence, pokes = await events.initial(agents=2)
    assert set(presence) == set(world.agents.values())
    assert all(p["status"] == "offline" and p["viewing"] is None for p in presence.values())
    seq = max_seq(live_server.engine)
    assert pokes == [{"seq": seq, "_id": str(seq), "_event": "poke"}]


async def test_a_push_by_another_agent_pokes_within_a_second(live_server):
    world = live_server.world
    async with stream(live_server.url, world.tokens["alice@example.com"]) as events:
        _, pokes = await events.initial(agents=2)
        before = pokes[0]["seq"]
        async with httpx.AsyncClient(base_url=live_server.url, headers=auth(world.tokens["bob@example.com"])) as bob:
            pushed = time.monotonic()
            result = await bob.post("/api/v1/sync/push", json={"mutations": [reply(world.conversations["ken-email"])]})
        assert result.json()["results"][0]["status"] == "applied"
        poke = await events.wait_for("poke", lambda d: d["seq"] > before)  # Bob's team only, still a poke
        assert time.monotonic() - pushed < WAIT
        assert poke["seq"] == max_seq(live_server.engine)
        assert poke["_id"] == str(poke["seq"])


@pytest.mark.parametrize("how", ["header", "query"])
async def test_resume_gets_a_poke_only_if_the_log_moved_on(live_server, how):
    world = live_server.world
    token = world.tokens["alice@example.com"]
    seq = max_seq(live_server.engine)

    def resume(at: int) -> dict:
        return {"headers": {"Last-Event-ID": str(at)}} if how == "header" else {"params": {"seq": at}}

    async with stream(live_server.url, token, **resume(seq - 3)) as events:
        _, pokes = await events.initial(agents=2)
        assert [p["seq"] for p in pokes] == [seq]  # behind: poked at once

    async with stream(live_server.url, token, **resume(seq)) as events:
        _, pokes = await events.initial(agents=2)
        assert pokes == []  # up to date: nothing to pull
        async with httpx.AsyncClient(base_url=live_server.url, headers=auth(token)) as alice:
            await alice.post("/api/v1/sync/push", json={"mutations": [reply(world.conversations["maria-email"])]})
        first = await events.next()
        assert first.event == "poke" and first.json()["seq"] > seq  # the next thing is the new change


async def test_presence_of_another_agent_reaches_the_stream_and_the_change_log(live_server):
    world = live_server.world
    bob_id = world.agents["bob@example.com"]
    seq = max_seq(live_server.engine)
    async with stream(live_server.url, world.tokens["alice@example.com"]) as events:
        await events.initial(agents=2)
        async with httpx.AsyncClient(base_url=live_server.url, headers=auth(world.tokens["bob@example.com"])) as bob:
            answer = await bob.post("/api/v1/presence", json={"status": "available", "viewing": world.conversations["ken-email"]})
        assert answer.status_code == 200
        assert answer.json() == {"agent_id": bob_id, "status": "available", "viewing": world.conversations["ken-email"]}
        got = await events.wait_for("presence", lambda d: d["agent_id"] == bob_id)
        # Alice (Billing) is told Bob is available, not which Support conversation he has open.
        assert (got["status"], got["viewing"]) == ("available", None)
        await events.wait_for("poke", lambda d: d["seq"] > seq)  # the agent row changed
    with session(live_server.engine) as db:
        assert db.get(Agent, bob_id).presence == "available"
    with httpx.Client(base_url=live_server.url, headers=auth(world.tokens["alice@example.com"])) as alice:
        from agentdesk.server.routes.sync import encode_cursor

        changes = alice.get("/api/v1/sync/pull", params={"cursor": encode_cursor(seq)}).json()["changes"]
    assert [(c["entity"], c["id"], c["data"]["presence"]) for c in changes] == [("agents", bob_id, "available")]


async def test_a_teammate_sees_what_an_agent_views_and_viewing_alone_keeps_the_status(live_server):
    world = live_server.world
    carol_id, carol = add_billing_agent(live_server)
    conversation = world.conversations["maria-email"]
    async with httpx.AsyncClient(base_url=live_server.url, headers=auth(carol)) as http:
        await http.post("/api/v1/presence", json={"status": "away"})
        async with stream(live_server.url, world.tokens["alice@example.com"]) as events:
            presence, _ = await events.initial(agents=3)
            assert presence[carol_id]["status"] == "away"
            assert (await http.post("/api/v1/presence", json={"viewing": conversation})).status_code == 200
            got = await events.wait_for("presence", lambda d: d["agent_id"] == carol_id and d["viewing"] is not None)
            assert got == {"agent_id": carol_id, "status": "away", "viewing": conversation}
        async with stream(live_server.url, world.tokens["alice@example.com"]) as events:  # a new stream is told too
            presence, _ = await events.initial(agents=3)
            assert presence[carol_id]["viewing"] == conversation
        async with stream(live_server.url, world.tokens["bob@example.com"]) as events:  # not Bob, of another team
            presence, _ = await events.initial(agents=3)
            assert presence[carol_id] == {"agent_id": carol_id, "status": "away", "viewing": None}


async def test_typing_reaches_the_team_of_the_conversation_only(live_server):
    world = live_server.world
    carol_id, carol = add_billing_agent(live_server)
    conversation = world.conversations["maria-sms"]
    async with (
        stream(live_server.url, world.tokens["alice@example.com"]) as alice_events,
        stream(live_server.url, world.tokens["bob@example.com"]) as bob_events,
        httpx.AsyncClient(base_url=live_server.url, headers=auth(carol)) as http,
    ):
        await alice_events.initial(agents=3)
        await bob_events.initial(agents=3)
        answer = await http.post("/api/v1/typing", json={"conversation_id": conversation})
        assert answer.status_code == 204
        got = await alice_events.wait_for("typing")
        assert got == {"agent_id": carol_id, "conversation_id": conversation}
        await http.post("/api/v1/presence", json={"status": "available"})  # written after the typing
        first = await bob_events.next()
        assert first.event == "presence" and first.json()["agent_id"] == carol_id  # Bob got no typing before it


@pytest.mark.parametrize("kind", ["typing", "viewing"])
async def test_another_teams_conversation_is_404_for_typing_and_viewing(live_server, kind):
    world = live_server.world
    body = {"conversation_id": world.conversations["ken-email"]} if kind == "typing" else {"viewing": world.conversations["ken-email"]}
    async with httpx.AsyncClient(base_url=live_server.url, headers=auth(world.tokens["alice@example.com"])) as alice:
        answer = await alice.post(f"/api/v1/{'typing' if kind == 'typing' else 'presence'}", json=body)
        assert answer.status_code == 404
        missing = await alice.post("/api/v1/typing", json={"conversation_id": uuid.uuid4().hex})
        assert missing.status_code == 404
        assert (await alice.post("/api/v1/presence", json={"status": "busy"})).status_code == 422


async def test_a_push_through_one_server_pokes_a_subscriber_of_another(live_server, second_server):
    world = live_server.world
    alice_id = world.agents["alice@example.com"]
    async with stream(second_server, world.tokens["bob@example.com"]) as events:
        _, pokes = await events.initial(agents=2)
        async with httpx.AsyncClient(base_url=live_server.url, headers=auth(world.tokens["alice@example.com"])) as alice:
            pushed = time.monotonic()
            await alice.post("/api/v1/sync/push", json={"mutations": [reply(world.conversations["maria-email"])]})
            poke = await events.wait_for("poke", lambda d: d["seq"] > pokes[0]["seq"])
            assert time.monotonic() - pushed < WAIT
            assert poke["seq"] == max_seq(live_server.engine)
            await alice.post("/api/v1/presence", json={"status": "away"})
            await events.wait_for("presence", lambda d: d["agent_id"] == alice_id and d["status"] == "away")


async def test_heartbeat_comments_keep_the_stream_alive(live_server, quick_server):
    url, _ = quick_server
    async with httpx.AsyncClient(base_url=url, headers=auth(live_server.world.tokens["alice@example.com"])) as http:
        async with http.stream("GET", "/api/v1/events") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            lines: list[str] = []

            async def read() -> None:
                async for line in response.aiter_lines():
                    lines.append(line)
                    if line.startswith(":"):
                        return

            await asyncio.wait_for(read(), timeout=WAIT)
    assert lines[-1] == ": ping"
    assert "event: poke" in lines


async def test_a_stream_whose_client_stopped_reading_is_ended_after_the_send_timeout(db_engine):
    hub = Hub(db_engine, heartbeat=0.05, send_timeout=0.3)
    await hub.start()
    try:
        sent: list[dict] = []

        async def send(message: dict) -> None:
            sent.append(message)
            if message.get("more_body"):  # as uvicorn's send waits while the client's socket is full
                await asyncio.Event().wait()

        async def receive() -> dict:
            await asyncio.Event().wait()  # the client never goes either
            return {}

        response = StreamResponse(hub, lambda: hub.open_stream("a" * 32, ["t"], None))
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="read nothing"):  # not wait_for's own
            await asyncio.wait_for(response({"type": "http", "method": "GET"}, receive, send), WAIT)
        assert time.monotonic() - started >= hub.send_timeout
        assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]  # stuck in the first
        assert hub.subscriber_count == 0
    finally:
        await hub.stop()


async def test_an_agent_goes_offline_when_their_last_stream_closes_after_the_grace(live_server, quick_server):
    url, hub = quick_server
    world = live_server.world
    alice_id = world.agents["alice@example.com"]
    token = world.tokens["alice@example.com"]

    def presence() -> str:
        with session(live_server.engine) as db:
            return db.get(Agent, alice_id).presence

    async with httpx.AsyncClient(base_url=url, headers=auth(token)) as http:
        await http.post("/api/v1/presence", json={"status": "available", "viewing": world.conversations["maria-email"]})
    async with stream(url, token) as first, stream(url, token) as second:
        await first.initial(agents=2)
        await second.initial(agents=2)
    # Both streams closed; a reconnect within the grace keeps Alice available.
    await asyncio.sleep(hub.offline_grace / 2)
    async with stream(url, token) as events:
        await events.initial(agents=2)
        await asyncio.sleep(hub.offline_grace * 1.5)
        assert presence() == "available"
    deadline = time.monotonic() + hub.offline_grace + WAIT
    while presence() != "offline":
        assert time.monotonic() < deadline, "still not offline after the grace period"
        await asyncio.sleep(0.05)
    async with stream(live_server.url, world.tokens["bob@example.com"]) as events:
        presence_now, _ = await events.initial(agents=2)
    assert presence_now[alice_id] == {"agent_id": alice_id, "status": "offline", "viewing": None}


def test_server_shutdown_is_not_held_up_by_open_streams(live_server):
    hub = Hub(live_server.engine)
    url, server, thread = serve(live_server.engine, hub)
    ended = threading.Event()

    def listen() -> None:
        with httpx.Client(timeout=httpx.Timeout(10, read=None)) as http:
            with http.stream("GET", f"{url}/api/v1/events", headers=auth(live_server.world.tokens["alice@example.com"])) as response:
                for _ in response.iter_lines():
                    pass
        ended.set()

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    deadline = time.monotonic() + 5
    while hub.subscriber_count == 0:
        assert time.monotonic() < deadline, "the stream never opened"
        time.sleep(0.02)
    stopping = time.monotonic()
    server.should_exit = True
    thread.join(timeout=5)
    assert not thread.is_alive(), "uvicorn still waits for the open stream"
    assert time.monotonic() - stopping < 2
    assert ended.wait(2), "the client's stream did not end"
    assert not hub.running


# --- page pokes: the changes travel with the poke -------------------------------------------------------------------


def note(conversation_id: str, text: str) -> dict:
    return {"id": uuid.uuid4().hex, "kind": "note", "args": {
        "conversation_id": conversation_id, "interaction_id": uuid.uuid4().hex, "channel": "sms", "text": text}}


async def test_each_poke_carries_exactly_what_pull_gives_that_agent_and_nothing_of_another_team(live_server):
    """Alice (Billing) and Bob (Support) are live while each writes a note in their own team's conversation, a
    few times over. Every page a poke carries is pull's answer for that agent from the page's `after` to the
    poke's seq, and no page ever holds the other team's note."""
    from agentdesk.server.routes.sync import encode_cursor

    world, url = live_server.world, live_server.url
    writers = {"alice@example.com": ("maria-sms", "Billing note"), "bob@example.com": ("ken-sms", "Support note")}
    async with stream(url, world.tokens["alice@example.com"]) as alice_events, \
            stream(url, world.tokens["bob@example.com"]) as bob_events:
        await alice_events.initial(agents=2)
        await bob_events.initial(agents=2)
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            for round_ in range(3):
                for agent, (conversation, text) in writers.items():
                    mutation = note(world.conversations[conversation], f"{text} {round_}")
                    answer = await http.post("/api/v1/sync/push", json={"mutations": [mutation]}, headers=auth(world.tokens[agent]))
                    assert answer.json()["results"][0]["status"] == "applied"
            newest = max_seq(live_server.engine)
            for agent, events in (("alice@example.com", alice_events), ("bob@example.com", bob_events)):
                await events.wait_for("poke", lambda d: d["seq"] >= newest)
                pages = [(e.json()["seq"], e.json()["page"]) for e in events.seen if e.event == "poke" and "page" in e.json()]
                assert pages, f"{agent} got no page poke"
                own, other = writers[agent][1], next(t for a, (_, t) in writers.items() if a != agent)
                for seq, page in pages:
                    pulled = (await http.get("/api/v1/sync/pull", params={"cursor": page["after"]}, headers=auth(world.tokens[agent]))).json()
                    assert page["changes"] == [c for c in pulled["changes"] if c["seq"] <= seq]
                    assert page["cursor"] == encode_cursor(seq) and page["has_more"] is False
                    texts = {c["data"]["text"] for c in page["changes"] if c["entity"] == "interactions"}
                    assert not any(t.startswith(other) for t in texts), f"{agent} was sent another team's note: {texts}"
                carried = {c["data"]["text"] for _, page in pages for c in page["changes"] if c["entity"] == "interactions"}
                assert carried & {f"{own} {n}" for n in range(3)}, f"{agent}'s own notes never came in a page"


async def test_a_resumed_stream_gets_a_plain_poke_then_pages_from_the_seq_it_announced(live_server):
    """The hub knows nothing of a resuming client's cursor: its first poke is plain (the client pulls). That
    poke announced the head, so the next change comes as a page starting there."""
    from agentdesk.server.routes.sync import encode_cursor

    world = live_server.world
    token = world.tokens["alice@example.com"]
    seq = max_seq(live_server.engine)
    hub = Hub(live_server.engine)
    url, server, thread = serve(live_server.engine, hub)
    try:
        async with httpx.AsyncClient(base_url=url, headers=auth(token)) as alice:
            await alice.post("/api/v1/sync/push", json={"mutations": [note(world.conversations["maria-sms"], "While away")]})
            async with stream(url, token, headers={"Last-Event-ID": str(seq)}) as events:
                _, pokes = await events.initial(agents=2)
                head = max_seq(live_server.engine)
                assert [p["seq"] for p in pokes] == [head] and "page" not in pokes[0]
                deadline = time.monotonic() + WAIT
                while hub.seq < head:  # the hub has moved on to the head too: the next change pages from it
                    assert time.monotonic() < deadline, "the hub never saw the head"
                    await asyncio.sleep(0.01)
                await alice.post("/api/v1/sync/push", json={"mutations": [note(world.conversations["maria-sms"], "Back")]})
                poke = await events.wait_for("poke", lambda d: d["seq"] > head)
                assert poke["page"]["after"] == encode_cursor(head)
                assert "Back" in {c["data"]["text"] for c in poke["page"]["changes"] if c["entity"] == "interactions"}
    finally:
        server.should_exit = True
        thread.join(timeout=10)


async def _until_the_end(events: Events, timeout: float) -> list[ServerSentEvent]:
    """The stream's events until it ends; fails if it has not ended within `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"the stream did not end within {timeout}s; saw {[e.event for e in events.seen]}"
        try:
            event = await asyncio.wait_for(events.queue.get(), remaining)
        except TimeoutError:
            continue
        if event is None:
            return events.seen
        events.seen.append(event)


def _alice_loses(live_server, how: str) -> None:
    from agentdesk.server.admin import disable_agent, remove_agent_from_team, revoke_token
    from agentdesk.server.auth import hash_token
    from agentdesk.server.models import ApiToken

    with session(live_server.engine) as db:
        if how == "left the team":
            remove_agent_from_team(db, "alice@example.com", "Billing")
        elif how == "agent disabled":
            disable_agent(db, "alice@example.com")
        else:
            digest = hash_token(live_server.world.tokens["alice@example.com"])
            revoke_token(db, db.exec(sa.select(ApiToken.id).where(ApiToken.token_hash == digest)).scalar_one())


def _noted(poke: dict) -> set[str]:
    """The texts of the interactions a poke's page carries."""
    return {c["data"]["text"] for c in poke.get("page", {}).get("changes", []) if c["entity"] == "interactions"}


@pytest.mark.parametrize("how", ["left the team", "token revoked", "agent disabled"])
async def test_a_stream_that_lost_access_ends_and_no_page_carries_a_later_change_of_the_team(live_server, how):
    """Alice is live in Billing and gets Carol's notes in pages; she leaves the team (or her token is revoked,
    or she is disabled), then Carol writes again. Alice's stream ends and no poke carries the second note."""
    world = live_server.world
    _, carol = add_billing_agent(live_server)
    async with stream(live_server.url, world.tokens["alice@example.com"]) as events, \
            httpx.AsyncClient(base_url=live_server.url, headers=auth(carol)) as http:
        await events.initial(agents=3)

        async def carol_notes(text: str) -> None:
            answer = await http.post("/api/v1/sync/push", json={"mutations": [note(world.conversations["maria-sms"], text)]})
            assert answer.json()["results"][0]["status"] == "applied"

        await carol_notes("Shared")
        await events.wait_for("poke", lambda d: "Shared" in _noted(d))  # pages flow (and were checked)
        _alice_loses(live_server, how)
        await carol_notes("Secret")
        seen = await _until_the_end(events, timeout=15)
    assert not [e for e in seen if e.event == "poke" and "Secret" in _noted(e.json())]
    expected = 200 if how == "left the team" else 401  # she reconnects with her new teams, or is refused
    async with httpx.AsyncClient(base_url=live_server.url, timeout=httpx.Timeout(10, read=None)) as http:
        async with http.stream("GET", "/api/v1/events", headers=auth(world.tokens["alice@example.com"])) as again:
            assert again.status_code == expected


async def test_a_token_revoked_by_another_process_ends_the_stream_within_the_check_interval(live_server):
    """A revocation this process did not make (here: a Core UPDATE, which the config cache does not see) is
    found by the hub's periodic check."""
    from agentdesk.domain.clock import utcnow
    from agentdesk.server.auth import hash_token
    from agentdesk.server.models import ApiToken

    token = live_server.world.tokens["alice@example.com"]
    async with stream(live_server.url, token) as events:
        await events.initial(agents=2)
        with live_server.engine.begin() as conn:
            conn.execute(sa.update(ApiToken).where(ApiToken.token_hash == hash_token(token)).values(revoked_at=utcnow()))
        await _until_the_end(events, timeout=15)  # the check runs every 2 s


async def test_a_commit_in_this_process_pokes_without_waiting_for_the_poll(live_server):
    """The hub polls every 30 s here; a push through this server still pokes at once (the commit wakes it)."""
    hub = Hub(live_server.engine, poll_interval=30.0)
    url, server, thread = serve(live_server.engine, hub)
    world = live_server.world
    try:
        async with stream(url, world.tokens["alice@example.com"]) as events:
            _, pokes = await events.initial(agents=2)
            async with httpx.AsyncClient(base_url=url, headers=auth(world.tokens["alice@example.com"])) as alice:
                await alice.post("/api/v1/sync/push", json={"mutations": [note(world.conversations["maria-sms"], "Now")]})
            poke = await events.wait_for("poke", lambda d: d["seq"] > pokes[0]["seq"])
            assert poke["seq"] == max_seq(live_server.engine)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# --- the hub's fan-out, without a server -------------------------------------------------------------------------


async def test_a_slow_subscriber_gets_coalesced_pokes_and_a_fresh_snapshot_instead_of_dropped_events(db_engine):
    hub = Hub(db_engine, queue_size=3)
    slow = hub.subscribe("a" * 32, ["t"], sent_seq=0)
    quick = hub.subscribe("b" * 32, ["t"], sent_seq=0)
    for seq in range(1, 50):  # many ticks while the slow stream reads nothing
        hub._apply(_Tick(seq=seq, signals=[]))
    assert slow.queue.items == [_POKE]
    presence = {"status": "away", "viewing": None, "team_id": None}
    signals = [(n, "presence", "c" * 32, None, presence) for n in range(1, 6)]
    hub._apply(_Tick(seq=49, signals=signals))
    assert slow.lagged and slow.queue.full()  # never blocked, marked to resync
    quick.queue.items.pop(0)
    assert len(quick.queue.items) == 2 and quick.lagged  # bounded for everyone
    assert hub.signal_seq == 5


async def test_out_of_order_signal_seqs_are_fetched_again(db_engine):
    hub = Hub(db_engine)
    sub = hub.subscribe("a" * 32, ["t"], sent_seq=0)
    typing = {"team_id": "t"}
    hub._apply(_Tick(seq=0, signals=[(1, "typing", "b" * 32, "x", typing), (3, "typing", "b" * 32, "z", typing)]))
    assert sorted(hub._gaps) == [2]  # 2 committed later (PostgreSQL sequences)
    hub._apply(_Tick(seq=0, signals=[(2, "typing", "b" * 32, "y", typing), (3, "typing", "b" * 32, "z", typing)]))
    got = [json.loads(item.decode().split("data: ")[1])["conversation_id"] for item in await sub.queue.take()]
    assert got == ["x", "z", "y"] and not sub.queue.items and not hub._gaps


def test_old_signals_are_pruned_but_each_agents_latest_presence_and_the_newest_row_stay(live_server):
    from datetime import timedelta

    from agentdesk.domain.clock import utcnow
    from agentdesk.server.models import Signal

    alice, bob = live_server.world.agents["alice@example.com"], live_server.world.agents["bob@example.com"]
    old = utcnow() - timedelta(minutes=5)

    def signals() -> list[int]:
        with live_server.engine.connect() as conn:
            return list(conn.execute(sa.select(Signal.seq).order_by(Signal.seq)).scalars())

    with session(live_server.engine) as db:
        for agent_id, kind in ((alice, "presence"), (alice, "presence"), (bob, "presence"), (alice, "typing"), (bob, "typing")):
            db.add(Signal(kind=kind, agent_id=agent_id, data={}, created_at=old))
            db.flush()
        db.add(Signal(kind="typing", agent_id=bob, data={}))  # recent
        db.commit()
    seqs = signals()
    Hub(live_server.engine)._prune()
    assert signals() == [seqs[1], seqs[2], seqs[5]]  # Alice's and Bob's latest presence, the recent typing

    with live_server.engine.begin() as conn:  # everything old now: the newest row still stays (no seq reuse)
        conn.execute(sa.update(Signal).values(created_at=old))
    Hub(live_server.engine)._prune()
    assert signals() == [seqs[1], seqs[2], seqs[5]]
