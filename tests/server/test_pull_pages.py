"""Pull pages shared between desks (server/pull_pages.py): one query for many desks, never a stale or foreign page."""

from __future__ import annotations

import asyncio
import gc
import threading
import uuid

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from agentdesk.server.pull_pages import _WATCHERS, SharedPages


class Hub:
    seq = 0


async def test_concurrent_requests_for_one_page_share_one_computation():
    pages, calls, gate = SharedPages(Hub()), [], threading.Event()

    def compute() -> str:
        calls.append(1)
        gate.wait(5)
        return "page"

    waiting = [asyncio.create_task(pages.get("k", compute)) for _ in range(20)]
    await asyncio.sleep(0.05)
    gate.set()
    assert await asyncio.gather(*waiting) == ["page"] * 20
    assert len(calls) == 1


async def test_a_commit_or_a_newer_seq_makes_the_page_stale():
    hub, engine = Hub(), sa.create_engine("sqlite://")
    pages = SharedPages(hub)
    stop = pages.watch(engine)
    answers = iter(["first", "after commit", "after poke", "after session commit"])
    compute = lambda: next(answers)  # noqa: E731
    assert await pages.get("k", compute) == "first"
    assert await pages.get("k", compute) == "first"
    with engine.begin() as connection:  # a write in this process
        connection.execute(sa.text("select 1"))
    assert await pages.get("k", compute) == "after commit"
    hub.seq = 7  # another process's commit, seen by the hub
    assert await pages.get("k", compute) == "after poke"
    assert await pages.get("k", compute) == "after poke"
    before = pages.commit_count
    with Session(engine) as session:  # counted again once done: a page computed during the commit would lack it
        session.execute(sa.text("select 1"))
        session.commit()
    assert pages.commit_count != before
    assert await pages.get("k", compute) == "after session commit"
    stop()


def test_watchers_that_stopped_or_are_gone_are_no_longer_told():
    engine = sa.create_engine("sqlite://")
    stopped, dropped, kept = SharedPages(Hub()), SharedPages(Hub()), SharedPages(Hub())
    stop = stopped.watch(engine)
    dropped.watch(engine)
    kept.watch(engine)
    stop()
    del dropped
    gc.collect()
    with Session(engine) as session:
        session.execute(sa.text("select 1"))
        session.commit()
    assert stopped.commit_count == 0 and kept.commit_count > 0
    assert list(_WATCHERS[engine]) == [kept]  # the app that is gone left nothing behind


async def test_expired_pages_are_let_go(monkeypatch):
    pages, clock = SharedPages(Hub()), [100.0]
    monkeypatch.setattr("agentdesk.server.pull_pages.time.monotonic", lambda: clock[0])
    for key in range(10):
        await pages.get(key, lambda: "page")
    clock[0] += 5
    await pages.get("new", lambda: "page")
    assert list(pages._pages) == ["new"]


async def test_a_failure_reaches_its_waiters_and_is_not_kept():
    pages, answers = SharedPages(Hub()), iter([ValueError("db down"), "ok"])

    def compute() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    with pytest.raises(ValueError, match="db down"):
        await pages.get("k", compute)
    assert await pages.get("k", compute) == "ok"


async def test_a_request_that_gives_up_does_not_cancel_the_page_others_wait_for():
    pages, gate = SharedPages(Hub()), threading.Event()
    first = asyncio.create_task(pages.get("k", lambda: gate.wait(5) and "page"))
    second = asyncio.create_task(pages.get("k", lambda: "never computed"))
    await asyncio.sleep(0.05)
    first.cancel()
    gate.set()
    assert await second == "page"


def test_desks_of_other_teams_never_share_a_page(live_server):
    """Alice (Billing) and Bob (Support) each note their own team's conversation, then pull from the same cursor
    at the same moment, many times over: each sees their own team's note and never the other's."""
    world, url = live_server.world, live_server.url
    notes = {"alice@example.com": ("maria-sms", "Billing note"), "bob@example.com": ("ken-sms", "Support note")}
    for agent, (conversation, text) in notes.items():
        mutation = {"id": uuid.uuid4().hex, "kind": "note", "args": {
            "conversation_id": world.conversations[conversation], "interaction_id": uuid.uuid4().hex, "channel": "sms", "text": text}}
        response = httpx.post(f"{url}/api/v1/sync/push", json={"mutations": [mutation]}, headers=auth(world, agent), timeout=10)
        assert response.json()["results"][0]["status"] == "applied"

    def texts(agent: str) -> set[str]:
        changes = httpx.get(f"{url}/api/v1/sync/pull", headers=auth(world, agent), timeout=10).json()["changes"]
        return {c["data"]["text"] for c in changes if c["entity"] == "interactions"}

    for _ in range(5):
        results: list[tuple[str, set[str]]] = []
        threads = [threading.Thread(target=lambda a=a: results.append((a, texts(a)))) for a in notes for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results, key=str) == [("alice@example.com", {"Billing note"})] * 3 + [("bob@example.com", {"Support note"})] * 3


def auth(world, agent: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {world.tokens[agent]}"}
