"""The client sync engine: bootstrap, push the outbox, pull changes — in a background thread.

The desk never waits on it: the desk writes to the cache and calls `wake()`; the engine reports what it
did through `on_status`, which the TUI turns into a repaint. While it runs, a second thread listens to the
server's live stream (sync/live.py): a poke wakes the engine to pull at once, so the timer poll is only a
safety net while the stream is up, and the normal interval again while it is down. A page poke brings the
changes along: when its page starts at the cache's cursor the engine applies it and skips the pull.
"""

from __future__ import annotations

import logging
import queue
import random
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import closing, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from agentdesk.domain.clock import utcnow
from agentdesk.store.cache import Cache, checkpoint
from agentdesk.store.presence import newly_assigned
from agentdesk.store.schema import MIRROR_TABLES
from agentdesk.sync.client import AuthRejected, ResetRequired, ServerUnavailable, SyncClient
from agentdesk.sync.live import LiveStream, Presence
from agentdesk.sync.presence import Announcer

T = TypeVar("T")
log = logging.getLogger(__name__)

BOOTSTRAP_PAGE = 10000  # rows per bootstrap request: few round trips, bounded memory
BOOTSTRAP_AHEAD = 4  # pages requested ahead of the one being written (~4 MB each): the slower ones come meanwhile
# Changes per pull request. A catch-up writes the cache's index pages once per transaction, and each page is
# one: 10,000 changes cost ~25% less client CPU in pages of 5,000 than of 1,000 (bench/sync_bench.py), while one
# page's transaction stays short (~0.3 s), as the desk's own writes wait for it.
PULL_PAGE = 5000


def snapshot_files(cache: Cache) -> list[Path]:
    """Where a bootstrap puts the server's two snapshot files while it loads them, beside the cache."""
    return [cache.path.with_name(f"{cache.path.name}.snapshot{n}") for n in (1, 2)]


def in_thread(call: Callable[..., T], *args: object, name: str = "agentdesk-fetch") -> Future[T]:
    """`call(*args)` started in a daemon thread (quitting does not wait for a request in flight); its result,
    or its exception, comes out of the future's result()."""
    result: Future[T] = Future()

    def run() -> None:
        try:
            result.set_result(call(*args))
        except BaseException as exc:  # noqa: BLE001 - raised to the caller by result()
            result.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return result


@dataclass
class SyncStatus:
    online: bool = False
    outbox: int = 0
    last_sync: datetime | None = None
    changed: bool = False  # the cache holds new data since the last status
    bootstrapping: str | None = None  # "interactions 5,000" while the first load runs
    error: str | None = None
    notices: list[str] = field(default_factory=list)
    live: bool = False  # the live stream is up: changes arrive as they happen, not at the next poll
    presence: Presence = field(default_factory=Presence)  # the engine's own, kept current by the stream
    assigned: list[str] = field(default_factory=list)  # conversations a pull newly assigned to the agent


class SyncEngine:
    def __init__(
        self,
        cache_path: Path,
        client: SyncClient,
        *,
        page_size: int = PULL_PAGE,
        poll_interval: float = 5.0,
        on_status: Callable[[SyncStatus], None] = lambda status: None,
        live: bool = True,
        live_poll_interval: float = 60.0,
        snapshots: bool = True,
    ) -> None:
        self.cache_path = cache_path
        self.client = client
        self.snapshots = snapshots  # a fresh cache loads from the server's snapshot where it makes one (else pages)
        self.page_size = page_size
        self.poll_interval = poll_interval
        self.on_status = on_status
        self.live = live  # subscribe to the server's live stream while running
        self.live_poll_interval = live_poll_interval  # the safety-net poll while the stream is up
        self.live_backoff = (0.5, 30.0)  # reconnect delays: first, cap (seconds; jittered)
        self.on_live: Callable[[str, dict], None] = lambda kind, data: None  # presence/typing, in the live thread
        self.presence = Presence()
        self._wake = threading.Event()
        self._poll_asked = threading.Event()  # a wake that wants a pull: the desk's, the stream's (not a poke's)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stream: LiveStream | None = None
        self._live_up = False
        self._failing = False  # the last round failed: the engine is backing off, and pokes do not cut that short
        self._poked_seq = -1  # the newest seq the server poked about
        self._pulled_seq = -1  # a pull that began after that poke has finished: the cache has everything to here
        self._pages: deque[tuple[int, dict]] = deque(maxlen=16)  # page pokes' (seq, page), oldest first, to apply
        self._identity_checked = False
        self._assigned: list[str] = []  # newly assigned by pulls since the last report
        self.announcer: Announcer | None = None  # started by the desk's first presence call (not by `agentdesk sync`)
        self.status = SyncStatus(presence=self.presence)
        # The WAL checkpoint after the last bootstrap, in a thread (store/cache.checkpoint): the desk goes on
        # meanwhile; a headless run waits for it, so the next start need not read a large WAL back.
        self.checkpointed: Future[None] | None = None

    def start(self) -> None:
        """Run in a background thread (once; later calls do nothing)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self.run, name="agentdesk-sync", daemon=True)
            self._thread.start()

    def wake(self, pull: bool = True) -> None:
        """Something local changed (or the agent asked): sync now rather than at the next tick. `pull=False`:
        only the outbox needs sending; while the live stream is up its page pokes bring the server's answer
        (a pull after every push made a desk's pulls one per action, the server's biggest steady load)."""
        if pull or not self._live_up:
            self._poll_asked.set()
        self._wake.set()

    # --- presence: thread-safe, return at once; sync/presence.py posts from a thread of its own -----------

    def _announcer(self) -> Announcer:
        if self.announcer is None:
            self.announcer = Announcer(self.client)
            self.announcer.start()
        return self.announcer

    def set_availability(self, status: str) -> None:
        """available | away: what routing obeys (the first call starts announcing presence)."""
        self._announcer().set_status(status)

    def set_viewing(self, conversation_id: str | None) -> None:
        self._announcer().set_viewing(conversation_id)

    def typing(self, conversation_id: str) -> None:
        self._announcer().typing(conversation_id)

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the loop to finish and wait for it (a request in flight ends at its timeout)."""
        if self.announcer is not None:
            self.announcer.stop()  # says `offline` (best effort, about a second at most)
        self._stop.set()
        self._wake.set()
        if self._stream is not None:
            self._stream.stop(timeout=0)  # from here, so the stream ends even while the loop waits on a request
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def caught_up(self) -> bool:
        """The live stream is up and a pull has finished since its latest poke (for tests and benches)."""
        return self._live_up and self._poked_seq >= 0 and self._pulled_seq >= self._poked_seq

    def run(self) -> None:
        """Sync until stopped, backing off (with jitter) while the server is away."""
        cache = Cache(self.cache_path)
        failures = 0
        stream = self._start_stream()
        poll = True  # the first round pulls
        try:
            while not self._stop.is_set():
                self._wake.clear()  # before the round, so a poke that comes during it runs another
                if self._poll_asked.is_set():  # cleared only when seen set: an ask that comes now runs another
                    self._poll_asked.clear()
                    poll = True
                try:
                    self.sync_once(cache, poll=poll)
                    if failures and self.announcer is not None:
                        self.announcer.resend()  # the server is back: tell it where we are
                    failures = 0
                except (ServerUnavailable, AuthRejected) as exc:
                    failures += 1
                    self._report(cache, online=False, error=str(exc))
                except Exception as exc:  # noqa: BLE001 - a full disk or a bug must not end syncing silently
                    failures += 1
                    self._report(cache, online=False, error=f"sync failed: {type(exc).__name__}: {exc}")
                self._failing = failures > 0
                if not failures and (self._pages or self._poked_seq > self._pulled_seq):
                    self._wake.set()  # pokes that came while failing did not wake us (_on_poke): see to them now
                poll = not self._wake.wait(self._delay(failures))  # the timer's round polls; a poke's need not
        finally:
            if stream is not None:
                stream.stop(timeout=1.0)
            cache.close()
            self.client.close()

    def _delay(self, failures: int) -> float:
        """Seconds to the next round unless woken: back off while failing; poll rarely while the stream is up."""
        if failures:
            return min(60.0, 2 ** min(failures, 6)) * random.uniform(0.5, 1)
        return max(self.poll_interval, self.live_poll_interval) if self._live_up else self.poll_interval

    # --- the live stream (its callbacks run in the stream's thread) -------------------------------

    def _start_stream(self) -> LiveStream | None:
        if not self.live or self._stop.is_set():
            return None
        self._stream = LiveStream(
            self.client.live_http, on_poke=self._on_poke, on_page=self._on_page, on_state=self._on_live_state,
            on_event=lambda kind, data: self.on_live(kind, data), presence=self.presence,
            backoff_base=self.live_backoff[0], backoff_cap=self.live_backoff[1],
        )
        self._stream.start()
        return self._stream

    def _on_page(self, seq: int, page: dict) -> None:
        self._pages.append((seq, page))  # applied by the sync thread (deque appends are thread-safe)

    def _on_poke(self, seq: int) -> None:
        if seq > max(self._pulled_seq, self._poked_seq):
            self._poked_seq = seq
            if not self._failing:  # else a broken pull would be retried on every change, not at the backoff
                self._wake.set()

    def _on_live_state(self, up: bool) -> None:
        # Up: pull once (pokes sent while the stream was down are gone) and report `live`. Down: fall back to
        # the poll interval now rather than at the end of the long live-mode wait.
        self._live_up = up
        if up and self.announcer is not None:
            self.announcer.resend()  # a server that lost our stream for long marked us offline
        self._poll_asked.set()
        self._wake.set()

    def sync_once(self, cache: Cache, poll: bool = True) -> None:
        """One round: push, apply the pages pokes brought, pull. `poll`: the round is the timer's or the desk's
        (pull in any case); False when only pokes woke it (pull only what their pages did not bring)."""
        changed = False
        if not self._identity_checked:  # the desk may have opened from the cache alone
            cache.set_identity(self.client.me())
            self._identity_checked = True
        poked = self._poked_seq  # read before pulling: the pull then brings everything up to it
        if cache.state("bootstrapped") != "1":
            self.bootstrap(cache)
            self._report(cache, online=True, changed=True)  # paint the loaded cache before pushing and pulling
        pushed = self.push(cache)
        reached, applied = self.apply_pages(cache)
        changed |= pushed or applied
        try:
            # Pull unless the pages (this round's or an earlier one's) brought everything poked about; on a poll;
            # and after a push while the stream is down (with it up, the push's own page poke brings the answer).
            if (pushed and not self._live_up) or poll or max(reached, self._pulled_seq) < poked:
                changed |= self.pull(cache)
        except ResetRequired:
            # The server compacted its history past our cursor: reload everything (outbox and drafts stay).
            cache.reset_mirror()
            self.bootstrap(cache)
            changed = True
        self._pulled_seq = max(self._pulled_seq, poked, reached)
        self._report(cache, online=True, changed=changed, last_sync=utcnow())

    def bootstrap(self, cache: Cache) -> None:
        """Load every entity: a cache that has nothing yet from the server's snapshot files, where it makes them
        (_load_snapshot); what they did not bring (a PostgreSQL server, a resume, a reload) in pages, each
        committed with its progress, so a restart resumes."""
        try:
            for path in snapshot_files(cache):  # a killed bootstrap's, if any
                path.unlink(missing_ok=True)
            if self.snapshots and cache.state("bootstrap.cursor") is None:
                self._load_snapshot(cache)
            cursor = cache.state("bootstrap.cursor")
            todo = [(entity, progress.removeprefix("after:")) for entity in MIRROR_TABLES
                    if (progress := cache.state(f"bootstrap.{entity}", "after:")) != "done"]
            loaded: dict[str, int] = {}
            with closing(self._bootstrap_pages(todo)) as pages:  # closed at once if a write fails: the fetcher ends
                for entity, page in pages:
                    if cursor is None:  # the first page's cursor: pull from there re-applies anything newer
                        cursor = page["cursor"]
                        cache.set_state("bootstrap.cursor", cursor)
                    cache.apply_bootstrap_page(entity, page["columns"], page["rows"], page["next_after"])
                    loaded[entity] = loaded.get(entity, 0) + len(page["rows"])
                    self._report(cache, online=True, bootstrapping=f"{entity} {loaded[entity]:,}")
            cache.finish_bootstrap(cursor or "")
            self.checkpointed = in_thread(checkpoint, cache.path, name="agentdesk-checkpoint")
        finally:
            cache.bulk_load(False)  # the connection's usual page cache and checkpoints, however the load ended

    def _load_snapshot(self, cache: Cache) -> None:
        """The rows of a fresh cache from the server's snapshot (sync/client.snapshot), if it makes one, in two
        files the server makes at once: everything but the interactions, loaded and indexed while the larger
        second file, the interactions, is still coming. The pull starts at the older file's cursor (what came
        between the two is pulled again, which changes nothing). A file that is not a usable database is set
        aside: the pages load what is not loaded yet, as they do after a bootstrap stopped between the files."""
        first = [entity for entity in MIRROR_TABLES if entity != "interactions"]
        paths = snapshot_files(cache)
        self._report(cache, online=True, bootstrapping="everything but the messages")
        second = in_thread(self.client.snapshot, paths[1], {"interactions": MIRROR_TABLES["interactions"]})
        try:
            if (made := self.client.snapshot(paths[0], {entity: MIRROR_TABLES[entity] for entity in first})) is None:
                return
            self._load_snapshot_file(cache, paths[0], first, made[0])
            self._report(cache, online=True, bootstrapping="the messages")
            if (messages := second.result()) is not None:
                self._load_snapshot_file(cache, paths[1], ["interactions"], messages[0] if messages[1] < made[1] else None)
        except sqlite3.DatabaseError as exc:
            log.warning("the server's snapshot is not a usable database (%s): loading the pages instead", exc)
        finally:
            with suppress(Exception):  # its file is written to the end before it is removed
                second.result()
            for path in paths:
                path.unlink(missing_ok=True)

    def _load_snapshot_file(self, cache: Cache, path: Path, entities: list[str], cursor: str | None) -> None:
        loaded = cache.load_snapshot(path, entities, cursor)
        for entity in entities:
            cache.finish_entity(entity)
        self._report(cache, online=True, bootstrapping=", ".join(f"{entity} {count:,}" for entity, count in loaded.items() if count))

    def _bootstrap_pages(self, todo: list[tuple[str, str]]) -> Iterator[tuple[str, dict]]:
        """(entity, page) for each (entity, after) still to load, in order. A thread of its own requests the
        pages, up to BOOTSTRAP_AHEAD ahead of the one being written, following the next page's key that the
        server sends as a header; so the server's work overlaps the cache's writes (a page fetched but not
        written when the bootstrap stops is simply fetched again on resume). That thread only moves bytes; the
        pages are decoded here: decoding them there had the two threads trade the GIL row by row (executemany
        releases it for every row), which made the writes several times slower. A daemon thread: quitting
        mid-bootstrap does not wait for its request."""
        fetched: queue.Queue[tuple[str, bytes, str | None] | BaseException | None] = queue.Queue(max(1, BOOTSTRAP_AHEAD - 1))  # + 1 in hand
        stop = threading.Event()

        def fetch_all() -> None:
            try:
                for entity, after in todo:
                    next_after: str | None = after
                    while next_after is not None:
                        if stop.is_set():
                            return
                        body, next_after = self.client.bootstrap_page(entity, next_after, BOOTSTRAP_PAGE, MIRROR_TABLES[entity])
                        fetched.put((entity, body, next_after))
                fetched.put(None)
            except BaseException as exc:  # noqa: BLE001 - raised in the writing thread
                fetched.put(exc)

        threading.Thread(target=fetch_all, name="agentdesk-bootstrap", daemon=True).start()
        try:
            while (item := fetched.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                entity, body, followed = item
                page = self.client.decode(body)
                if page["next_after"] != followed:  # the progress saved must be where the fetcher went on from
                    raise ServerUnavailable(f"{self.client.base_url} sent a bootstrap page whose header and body disagree on the next page")
                yield entity, page
        finally:  # stopped early: room for the fetcher's one last put, after which it sees `stop` and ends
            stop.set()
            with fetched.mutex:
                fetched.queue.clear()
                fetched.not_full.notify_all()

    def push(self, cache: Cache) -> bool:
        """Send the outbox in order; each answer settles its row (a rejection rolls back)."""
        pending = cache.outbox()
        if not pending:
            return False
        ids = [item["mutation_id"] for item in pending]
        cache.mark_sending(ids)
        self._report(cache, online=True, changed=True)
        try:
            results = self.client.push([{"id": i["mutation_id"], "kind": i["kind"], "args": i["args"]} for i in pending])
        except (ServerUnavailable, AuthRejected) as exc:
            cache.mark_failed(ids, str(exc))
            raise
        for result in results:
            cache.settle(result["id"], result["status"], result.get("reason"))
        return True

    def apply_pages(self, cache: Cache) -> tuple[int, bool]:
        """Apply the page pokes that continue the cache's cursor, in order. Returns the seq of the newest poke
        whose changes the cache now has (-1: none) and whether any page was applied. A page that does not
        start at the cursor is dropped: the cache is behind it (a pull is due) or past it (a pull got there)."""
        reached, applied = -1, False
        while self._pages:
            seq, page = self._pages.popleft()
            cursor = cache.state("cursor")
            if page["cursor"] == cursor:  # a pull got exactly here already
                reached = seq
                continue
            if page["after"] != cursor:
                continue
            me = cache.identity()
            assigned = newly_assigned(cache, page["changes"], me.agent_id) if me else []
            # `after` again: the cursor is checked inside the write transaction, so no page applies twice
            if cache.apply_changes(page["changes"], page["cursor"], after=page["after"]) >= 0:
                self._assigned += assigned
                reached, applied = seq, True
        return reached, applied

    def pull(self, cache: Cache) -> bool:
        """Pull until the server has no more, each page applied with its cursor in one transaction. The next
        page is requested (in a thread) while this one is written, so the server's work and the cache's overlap;
        it applies only if the cursor is still where it starts, checked in the writing transaction."""
        applied = 0
        cursor = cache.state("cursor")
        page = self.client.pull(cursor or "", self.page_size)
        while True:
            # The thread only moves bytes; decoded there, the page would compete for the GIL with the writes.
            ahead = in_thread(self.client.pull_page, page["cursor"], self.page_size) if page["has_more"] else None
            me = cache.identity()
            assigned = newly_assigned(cache, page["changes"], me.agent_id) if me else []
            count = cache.apply_changes(page["changes"], page["cursor"], after=cursor)
            if count < 0:  # the cursor moved (a page poke, another process): on from where it is now
                cursor = cache.state("cursor")
                page = self.client.pull(cursor or "", self.page_size)
                continue
            applied += count
            self._assigned += assigned
            if ahead is None:
                return applied > 0
            cursor, page = page["cursor"], self.client.decode(ahead.result())

    def _report(self, cache: Cache, **changes: object) -> None:
        status = SyncStatus(
            online=bool(changes.get("online", self.status.online)),
            outbox=cache.outbox_count(),
            last_sync=changes.get("last_sync", self.status.last_sync),  # type: ignore[arg-type]
            changed=bool(changes.get("changed", False)),
            bootstrapping=changes.get("bootstrapping"),  # type: ignore[arg-type]
            error=changes.get("error"),  # type: ignore[arg-type]
            notices=cache.take_notices(),
            assigned=self._take_assigned(),
            live=self._live_up,
            presence=self.presence,
        )
        self.status = status
        self.on_status(status)

    def _take_assigned(self) -> list[str]:
        assigned, self._assigned = self._assigned, []
        return assigned
