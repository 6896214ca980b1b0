"""Group commit (server/group_commit.py): callers queued meanwhile share a transaction; each gets its own outcome."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import sqlalchemy as sa

from agentdesk.server.group_commit import GroupCommit
from agentdesk.server.models import ServerState


def _recording_store(batches: list[list[int]], gate: threading.Event, entered: threading.Event | None = None):
    """A store that says it `entered`, waits for `gate`, writes a row per item in one transaction, and fails
    item 13 alone."""

    def store(session, items):
        if entered is not None:
            entered.set()
        gate.wait(10)
        batches.append(list(items))
        for item in items:
            session.add(ServerState(key=f"item-{item}", value=str(item)))
        session.commit()
        return [ValueError("thirteen") if item == 13 else item * 10 for item in items]

    return store


def _stored(engine: sa.Engine) -> set[str]:
    with engine.connect() as connection:
        return {key for key, in connection.execute(sa.select(ServerState.key).where(ServerState.key.like("item-%")))}


def test_callers_queued_meanwhile_share_one_transaction_and_get_their_own_outcomes(db_engine):
    batches: list[list[int]] = []
    gate, entered = threading.Event(), threading.Event()
    writer = GroupCommit(db_engine, _recording_store(batches, gate, entered), name="test-writer", idle_seconds=0.2)

    async def main() -> list[object]:
        first = asyncio.ensure_future(writer.submit(1))
        assert await asyncio.to_thread(entered.wait, 10)  # the writer took it alone and waits at the gate
        rest = [asyncio.ensure_future(writer.submit(i)) for i in (12, 13, 14)]  # queued meanwhile
        await asyncio.sleep(0)  # let them queue
        gate.set()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    outcomes = asyncio.run(main())
    assert outcomes[:2] == [10, 120] and outcomes[3] == 140
    assert isinstance(outcomes[2], ValueError)
    assert batches == [[1], [12, 13, 14]]
    assert _stored(db_engine) == {"item-1", "item-12", "item-13", "item-14"}


def test_the_idle_writer_stops_and_the_next_item_starts_it_again(db_engine):
    batches: list[list[int]] = []
    gate = threading.Event()
    gate.set()
    writer = GroupCommit(db_engine, _recording_store(batches, gate), name="test-writer", idle_seconds=0.05)
    assert asyncio.run(writer.submit(1)) == 10
    deadline = time.monotonic() + 10
    while writer._running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not writer._running
    assert asyncio.run(writer.submit(2)) == 20
    assert batches == [[1], [2]]


def test_batches_are_bounded_by_the_items_weight_too(db_engine):
    """A batch stops short of max_weight (an item too heavy for it starts the next one), and an item heavier
    than max_weight alone is still stored, alone."""
    batches: list[list[int]] = []
    gate, entered = threading.Event(), threading.Event()
    writer = GroupCommit(db_engine, _recording_store(batches, gate, entered), name="test-writer", idle_seconds=0.2,
                         weight=lambda item: item % 10, max_weight=5)

    async def main() -> list[object]:
        first = asyncio.ensure_future(writer.submit(1))
        assert await asyncio.to_thread(entered.wait, 10)
        rest = [asyncio.ensure_future(writer.submit(i)) for i in (23, 32, 44, 51, 69)]
        await asyncio.sleep(0)
        gate.set()
        return await asyncio.gather(first, *rest)

    assert asyncio.run(main()) == [10, 230, 320, 440, 510, 690]
    assert batches == [[1], [23, 32], [44, 51], [69]]


def test_a_store_that_breaks_its_contract_fails_its_batch_and_the_writer_carries_on(db_engine):
    """A store returning too few outcomes: each caller of that batch gets an error of its own (no shared
    traceback), and the next batch is stored as usual."""
    gate, entered = threading.Event(), threading.Event()

    def store(session, items):
        if -1 in items:
            entered.set()
            gate.wait(10)
        return [] if 0 in items else [item * 10 for item in items]

    writer = GroupCommit(db_engine, store, name="test-writer", idle_seconds=0.2)

    async def main() -> list[object]:
        blocker = asyncio.ensure_future(writer.submit(-1))
        assert await asyncio.to_thread(entered.wait, 10)  # the writer is busy: the next two make one batch
        broken = [asyncio.ensure_future(writer.submit(i)) for i in (0, 1)]
        await asyncio.sleep(0)
        gate.set()
        return await asyncio.gather(blocker, *broken, return_exceptions=True)

    _, first, second = asyncio.run(main())
    assert isinstance(first, RuntimeError) and isinstance(second, RuntimeError) and first is not second
    assert "outcomes for 2 items" in str(first)
    assert asyncio.run(writer.submit(2)) == 20


def test_a_writer_name_serves_one_store_only(db_engine):
    from agentdesk.server.group_commit import writer_for

    def store(session, items):
        return list(items)

    assert writer_for(db_engine, store, name="test-one-store") is writer_for(db_engine, store, name="test-one-store")
    with pytest.raises(ValueError, match="test-one-store"):
        writer_for(db_engine, lambda session, items: list(items), name="test-one-store")
