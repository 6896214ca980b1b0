"""Pull pages shared by the desks that ask the same question at the same moment.

Every live desk pulls on every poke, and the desks of a team were all caught up, so they ask for the same
page: the changes after the same cursor, seen through the same teams (pull's visibility depends on nothing
else, server/changes.py). One query answers them all; the others wait for it instead of repeating it.

A page is reused only while nothing can have changed its answer:
- the key carries the newest seq this process's event hub has seen (commits made by other processes reach a
  desk through that hub's poke anyway, so a page at most one hub poll old is what a desk racing that commit
  would have read), and a count of this process's own commits, bumped as a commit starts (the engine's commit
  event) and again once an ORM session's commit is done (a page computed in between would lack it), so a desk
  that pushes and then pulls always gets its own changes (pushes commit through sessions);
- it lives PAGE_SECONDS at most.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

PAGE_SECONDS = 1.0
MAX_PAGES = 256  # one per (cursor, teams, limit) being asked right now; a few per team in practice


@dataclass
class _Page:
    stamp: tuple[int, int]
    expires: float
    body: asyncio.Future[str]


class SharedPages:
    def __init__(self, hub: Any) -> None:
        self._hub = hub  # its .seq: the newest change seq it has seen
        self._pages: OrderedDict[Hashable, _Page] = OrderedDict()
        self._commits = itertools.count(1)
        self.commit_count = 0  # each commit stores a new number: any commit since a stamp makes it differ

    def watch(self, engine: sa.Engine) -> Callable[[], None]:
        """Count this engine's commits from now on; returns the function that stops counting (an app that is
        gone stops by itself: the watchers are held weakly)."""
        if not sa.event.contains(engine, "commit", _engine_committed):
            sa.event.listen(engine, "commit", _engine_committed)
        _WATCHERS.setdefault(engine, weakref.WeakSet()).add(self)
        return lambda: _WATCHERS.get(engine, weakref.WeakSet()).discard(self)

    def _committed(self) -> None:
        self.commit_count = next(self._commits)

    async def get(self, key: Hashable, compute: Callable[[], str]) -> str:
        """The page for `key`: shared if a current one exists or is being computed, else `compute()` in a
        worker thread (its exception, an HTTPException say, reaches every request that shares it)."""
        stamp = (self._hub.seq, self.commit_count)  # read before the query: a commit during it makes the page stale
        now = time.monotonic()
        while self._pages and next(iter(self._pages.values())).expires <= now:  # oldest first: drop the expired
            self._pages.popitem(last=False)
        page = self._pages.get(key)
        if page is None or page.stamp != stamp or page.expires <= now:
            # A task of its own: a request that gives up must not cancel the page the others wait for.
            page = _Page(stamp, now + PAGE_SECONDS, asyncio.ensure_future(run_in_threadpool(compute)))
            page.body.add_done_callback(lambda body, key=key, page=page: self._settled(key, page))
            self._pages[key] = page
            self._pages.move_to_end(key)
            while len(self._pages) > MAX_PAGES:
                self._pages.popitem(last=False)
        return await asyncio.shield(page.body)

    def _settled(self, key: Hashable, page: _Page) -> None:
        if page.body.cancelled() or page.body.exception() is not None:  # (also marks the exception retrieved)
            if self._pages.get(key) is page:
                del self._pages[key]  # the next request tries again rather than sharing a failure


# Which SharedPages count which engine's commits, weakly both ways: a process that builds many apps over one
# engine (a test run) keeps no listener per app, and each commit tells only the live ones.
_WATCHERS: weakref.WeakKeyDictionary[sa.Engine, weakref.WeakSet[SharedPages]] = weakref.WeakKeyDictionary()


def _count_commit(bind: object) -> None:
    for pages in list(_WATCHERS.get(bind, ())):  # type: ignore[call-overload]
        pages._committed()


def _engine_committed(connection: sa.Connection) -> None:
    _count_commit(connection.engine)


@sa.event.listens_for(Session, "after_commit")
def _session_committed(session: Session) -> None:
    if isinstance(session.bind, sa.Engine):
        _count_commit(session.bind)
