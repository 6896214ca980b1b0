"""Group commit: concurrent async callers' writes stored by one thread, many to a transaction.

On SQLite every writer waits its turn for the one write lock anyway (on PostgreSQL, for the change-log
lock: server/changes.py); a transaction per request would make each pay its own (lock hand-over, BEGIN,
COMMIT, a thread-pool hop) and crowd the thread pool with writers waiting for each other. Here callers
queue their items; one thread hands everything queued to `store` with one session, which writes it in one
transaction, commits, and returns an outcome per item (a result, or an exception for that caller to raise);
each caller is answered after the commit, so none hears of a rolled-back write. Batches form by
themselves: whatever arrives while a batch is being written is the next batch, so a lone request waits for
nothing, bounded by `max_batch` items and by `max_weight` (the items' summed `weight`: a push weighs its
mutations, so no transaction holds the write lock for too long). The thread exits after `idle_seconds`
without work and starts again on the next item. Whatever goes wrong, every caller is answered: a failed
batch (no database, a store that breaks its contract) answers each of its callers with the exception.
"""

from __future__ import annotations

import asyncio
import copy
import math
import queue
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlmodel import Session

from agentdesk.server.db import session as open_session

Item = TypeVar("Item")
Result = TypeVar("Result")
Store = Callable[[Session, Sequence[Item]], Sequence["Result | Exception"]]  # writes and commits; an outcome per item


_Waiting = tuple[Any, asyncio.AbstractEventLoop, "asyncio.Future[Any]", int]  # an item, who awaits it, its weight


class GroupCommit(Generic[Item, Result]):
    """One writer thread for one kind of item on one database (see the module docstring)."""

    def __init__(
        self,
        engine: sa.Engine,
        store: Store,
        *,
        name: str,
        max_batch: int = 64,
        weight: Callable[[Any], int] = lambda _item: 1,
        max_weight: float = math.inf,
        idle_seconds: float = 10.0,
    ) -> None:
        self.engine = engine
        self.store = store
        self.name = name
        self.max_batch = max_batch
        self.weight = weight
        self.max_weight = max_weight  # a heavier item than this is a batch of its own
        self.idle_seconds = idle_seconds
        # A SimpleQueue, not a list under a threading.Condition: a put is one C call on the event loop, and
        # the writer sleeps in a C-level get (Condition is Python code, and allocates a lock per wait).
        self._queue: queue.SimpleQueue[_Waiting] = queue.SimpleQueue()
        self._lifecycle = threading.Lock()  # starting and stopping the thread (not taken per item)
        self._running = False
        self._held: _Waiting | None = None  # taken from the queue, too heavy for the batch: the next one's first

    async def submit(self, item: Item) -> Result:
        """`item`'s outcome, once the transaction that stored it has committed (its exception is raised)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._queue.put((item, loop, future, self.weight(item)))
        if not self._running:  # read after the put: see _stopped for why no item can be stranded
            with self._lifecycle:
                if not self._running:
                    self._running = True
                    threading.Thread(target=self._run, name=self.name, daemon=True).start()
        return await future

    def _run(self) -> None:
        batch: list[_Waiting] = []
        try:
            while batch := self._next_batch():
                self._write(batch)
        except BaseException as exc:
            # Died of something unforeseen: the next submit starts a new thread, and nobody waits for this one.
            with self._lifecycle:
                self._running = False
                stranded = [*batch, *([self._held] if self._held else []), *_drain(self._queue)]
                self._held = None
            error = exc if isinstance(exc, Exception) else RuntimeError(f"{self.name} stopped: {exc!r}")
            self._answer(stranded, _each(error, len(stranded)))
            raise

    def _next_batch(self) -> list[_Waiting]:
        """The queued items (up to max_batch and max_weight), waiting for some; [] once idle for idle_seconds
        (then stopped)."""
        if self._held is not None:
            batch, self._held = [self._held], None
        else:
            while True:
                try:
                    batch = [self._queue.get(timeout=self.idle_seconds)]
                    break
                except queue.Empty:
                    if self._stopped():
                        return []
        weight = batch[0][3]
        while len(batch) < self.max_batch:
            try:
                waiting = self._queue.get_nowait()
            except queue.Empty:
                break
            weight += waiting[3]
            if weight > self.max_weight:
                self._held = waiting
                break
            batch.append(waiting)
        return batch

    def _stopped(self) -> bool:
        """Stop when idle, unless an item came in meanwhile. `_running` is cleared before the queue is
        checked, and a submit reads it after its put: either this check sees the item, or that submit sees
        the flag cleared and waits on the lock to start a thread (or finds this one carrying on)."""
        with self._lifecycle:
            self._running = False
            if self._queue.empty():
                return True
            self._running = True
            return False

    def _write(self, batch: list[_Waiting]) -> None:
        try:
            with open_session(self.engine) as session:
                outcomes: Sequence[Any] = self.store(session, [waiting[0] for waiting in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"{self.name}: {len(outcomes)} outcomes for {len(batch)} items")
        except Exception as exc:  # e.g. no connection to the database: every caller hears it, none waits forever
            outcomes = _each(exc, len(batch))
        self._answer(batch, outcomes)

    @staticmethod
    def _answer(batch: list[_Waiting], outcomes: Sequence[Any]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]] = {}
        for (_, loop, future, _), outcome in zip(batch, outcomes, strict=True):
            by_loop.setdefault(loop, []).append((future, outcome))
        for loop, answers in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, answers)  # one wake-up of the loop per batch, not per item
            except RuntimeError:  # that loop is closed: its server has stopped, nobody is waiting
                pass


def _drain(waiting: queue.SimpleQueue[_Waiting]) -> list[_Waiting]:
    items = []
    while True:
        try:
            items.append(waiting.get_nowait())
        except queue.Empty:
            return items


def _each(exc: Exception, count: int) -> list[Exception]:
    """`exc` for each of `count` callers, each a copy of its own with the writer's traceback: one exception
    raised in many tasks would have each task's frames added to the one traceback. `exc` itself when it cannot
    be copied."""
    if count == 1:
        return [exc]
    try:
        copies = [copy.copy(exc).with_traceback(exc.__traceback__) for _ in range(count)]
    except Exception:  # noqa: BLE001 - an exception class that cannot be rebuilt from its args
        return [exc] * count
    for each in copies:
        each.__cause__, each.__context__ = exc.__cause__, exc.__context__
    return copies


def _settle(answers: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for future, outcome in answers:
        if future.done():  # the caller went away (a cancelled request); the item is stored all the same
            continue
        if isinstance(outcome, Exception):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


_writers: weakref.WeakKeyDictionary[sa.Engine, dict[str, GroupCommit]] = weakref.WeakKeyDictionary()
_writers_lock = threading.Lock()


def writer_for(engine: sa.Engine, store: Store, *, name: str, **options: Any) -> GroupCommit:
    """The one writer named `name` on this engine (made on first use, with `store` and `options`); asking for
    it with another `store` is a mistake (two kinds of item under one name)."""
    with _writers_lock:
        writers = _writers.setdefault(engine, {})
        writer = writers.get(name)
        if writer is None:
            writer = writers[name] = GroupCommit(engine, store, name=name, **options)
        elif writer.store != store:
            raise ValueError(f"the writer {name!r} stores with {writer.store!r}, not {store!r}")
        return writer
