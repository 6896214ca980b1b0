"""The live-event hub (DESIGN §5 "Live"): pokes, presence and typing for every SSE stream of this process.

Several server processes may share one database, so nothing here relies on in-process calls to fan out:
one background task per process polls the database every `poll_interval` for `max(change.seq)` and for
new `Signal` rows (one query pair per tick, however many subscribers), and hands what it found to every
subscriber's bounded Mailbox with `put_nowait`, so a slow stream never holds up the others. A commit
made by this process wakes the poll at once while anyone listens, so only other processes' commits wait for
the interval; but a tick that hands something out is never sooner than `min_gap` after the previous one
that did, so a burst of commits costs the streams no more rounds than the plain poll would.

- a poke is a marker queued at most once per subscriber (pokes coalesce; the stream announces the
  newest seq when it gets to it);
- the poke carries the changes since the previous one (a "page poke") when the stream had announced the
  seq the log moved on from, A: a desk that pulled after that poke is caught up, and would otherwise pull
  these very changes, as all its peers would at the same instant. The page is exactly what pull answers
  for (A, B] (routes/sync.py `poke_page`), read by the poll in the same thread hop right after it sees B,
  once per team set of the streams (at most MAX_PAGE_SETS, the most-subscribed first), and encoded once.
  It is left out (a plain poke) when it exceeds a bounded page. The desk applies it only if its cursor
  is the page's `after`, otherwise it pulls as after a plain poke (sync/engine.py);
- a presence or typing event that does not fit marks the subscriber lagged: its stream drops what is
  queued and sends a fresh presence snapshot instead;
- a stream's team set is fixed when it connects, so the poll checks the streams' tokens again (one query
  for all) every `access_check` seconds, and before its pages whenever this process changed a token, agent
  or membership since the last check (server/config_cache.py's generation, read after the log's head). A
  stream whose token was revoked, whose agent was disabled or whose teams changed is ended: the desk
  reconnects, to a 401 or with its new teams. So a change committed after this process revoked access is
  never paged to that stream, and a revocation made by another process holds within `access_check`
  seconds, as it does for a pull (server/deps.py caches a caller that long);
- every `heartbeat` the poll queues a `: ping` comment to every stream, and ends a stream whose send has
  waited more than `send_timeout` on a client that stopped reading (StreamResponse, the SSE response, is
  a lean ASGI send loop: the fan-out of one poke to 1,000 streams is bound by one socket write each).

Signal seqs can commit out of order on PostgreSQL (a sequence value is taken before commit), so the
poller remembers the holes below the newest seq it has seen and asks for them again for `gap_wait`
seconds. Signals older than `signal_ttl` are pruned, except each agent's latest presence (which says
what the agent is viewing) and the newest row (so SQLite never hands out a seq again).

uvicorn tells an app nothing when it starts to shut down while responses are open (the lifespan
shutdown comes after connections close), and its signal handlers are installed in the main thread only.
So the hub watches the serving uvicorn.Server's `should_exit` and ends every stream when it is set.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing, suppress
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import anyio
import anyio.to_thread
import sqlalchemy as sa
from sqlmodel import Session, select
from starlette.responses import Response

from agentdesk.domain.clock import utcnow
from agentdesk.server import config_cache
from agentdesk.server.auth import teams_of_tokens
from agentdesk.server.changes import begin_write, record_upsert
from agentdesk.server.db import session as open_session
from agentdesk.server.deps import TOKEN_CACHE_SECONDS
from agentdesk.server.models import Agent, Change, Signal

log = logging.getLogger(__name__)

PRESENCE_STATUSES = ("available", "away", "offline")

_POKE = object()  # queue marker: the change log moved on
_CLOSE = object()  # queue marker: end the stream
_PING = b": ping\n\n"  # the heartbeat comment, queued to every stream by the poll (Hub._heartbeat)


def encode_event(event: str, data: dict[str, Any], event_id: int | None = None) -> bytes:
    """One SSE event, LF-separated (the spec allows LF, CR or CRLF)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _presence_event(agent_id: str, status: str, viewing: str | None) -> bytes:
    return encode_event("presence", {"agent_id": agent_id, "status": status, "viewing": viewing})


# --- database side: what POST /presence, /typing and the offline grace write ---------------------------------


def _latest_presence(session: Session, agent_id: str) -> dict[str, Any]:
    row = session.exec(
        select(Signal.data)
        .where(Signal.kind == "presence", Signal.agent_id == agent_id)
        .order_by(Signal.seq.desc())  # type: ignore[union-attr]
        .limit(1)
    ).first()
    return dict(row) if row else {}


_UNSET: Any = object()


def write_presence(
    session: Session,
    agent_id: str,
    *,
    status: str | None = None,
    viewing: str | None = _UNSET,
    viewing_team: str | None = None,
) -> dict[str, Any]:
    """Set an agent's presence and/or the conversation they are viewing, and commit.

    A status change updates Agent.presence through the change log (desks see it in pull too); every call
    writes a presence Signal carrying the whole state, which the hubs of all processes fan out.
    `viewing_team` is the viewed conversation's team: only that team's agents are told what is viewed.
    """
    begin_write(session)  # before reading: the agent row recorded below must not be a stale copy
    agent = session.get(Agent, agent_id, populate_existing=True)
    if agent is None:
        raise LookupError(agent_id)
    new_status = status or agent.presence
    if viewing is _UNSET:
        previous = _latest_presence(session, agent_id)
        viewing, viewing_team = previous.get("viewing"), previous.get("team_id")
    if new_status == "offline":
        viewing, viewing_team = None, None
    if new_status != agent.presence:
        agent.presence = new_status
        agent.presence_at = utcnow()
        record_upsert(session, agent)
    state = {"status": new_status, "viewing": viewing, "team_id": viewing_team}
    session.add(Signal(kind="presence", agent_id=agent_id, conversation_id=viewing, data=state))
    session.commit()
    return state


def write_typing(session: Session, agent_id: str, conversation_id: str, team_id: str) -> None:
    session.add(Signal(kind="typing", agent_id=agent_id, conversation_id=conversation_id, data={"team_id": team_id}))
    session.commit()


@dataclass(frozen=True)
class PresenceSnapshot:
    seq: int  # max(change.seq) when read
    agents: list[tuple[str, str, str | None, str | None]]  # agent id, status, viewing, viewing's team


def read_snapshot(engine: sa.Engine) -> PresenceSnapshot:
    """Every active agent's presence and viewed conversation, and the change log's newest seq."""
    latest = (
        sa.select(sa.func.max(Signal.seq)).where(Signal.kind == "presence").group_by(Signal.agent_id)  # type: ignore[arg-type]
    )
    with engine.connect() as conn:
        seq = conn.execute(sa.select(sa.func.coalesce(sa.func.max(Change.seq), 0))).scalar_one()
        agents = conn.execute(sa.select(Agent.id, Agent.presence).where(Agent.active).order_by(Agent.id)).all()  # type: ignore[arg-type]
        viewing = {
            agent_id: data or {}
            for agent_id, data in conn.execute(
                sa.select(Signal.agent_id, Signal.data).where(Signal.seq.in_(latest))  # type: ignore[union-attr]
            )
        }
    rows = []
    for agent_id, status in agents:
        state = viewing.get(agent_id, {}) if status != "offline" else {}
        rows.append((agent_id, status, state.get("viewing"), state.get("team_id")))
    return PresenceSnapshot(seq=seq, agents=rows)


# --- the hub ----------------------------------------------------------------------------------------------------

# The poll's statements, built once: it runs 20 times a second in every server process, and building them
# cost more than running them.
_HEAD = sa.select(sa.func.coalesce(sa.func.max(Change.seq), 0))
_NEWER = Signal.seq > sa.bindparam("after")  # type: ignore[operator]
_SIGNAL_COLUMNS = sa.select(Signal.seq, Signal.kind, Signal.agent_id, Signal.conversation_id, Signal.data)  # type: ignore[call-overload]
_SIGNALS = _SIGNAL_COLUMNS.where(_NEWER).order_by(Signal.seq).limit(1000)  # type: ignore[arg-type]
_SIGNALS_AND_GAPS = (
    _SIGNAL_COLUMNS.where(sa.or_(_NEWER, Signal.seq.in_(sa.bindparam("gaps", expanding=True))))  # type: ignore[union-attr]
    .order_by(Signal.seq)  # type: ignore[arg-type]
    .limit(1000)
)


class Mailbox:
    """A stream's bounded queue. Leaner than asyncio.Queue, whose put and get cost every stream a dozen
    Python calls per event: the hub appends, and the stream takes everything queued at once."""

    __slots__ = ("items", "size", "_waiter")

    def __init__(self, size: int) -> None:
        self.items: list[Any] = []
        self.size = size
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        if len(self.items) >= self.size:
            raise asyncio.QueueFull
        self.items.append(item)
        if self._waiter is not None:
            if not self._waiter.done():
                self._waiter.set_result(None)
            self._waiter = None

    async def take(self) -> list[Any]:
        """Everything queued; waits while nothing is."""
        while not self.items:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        items, self.items = self.items, []
        return items

    def full(self) -> bool:
        return len(self.items) >= self.size


@dataclass(eq=False)
class Subscriber:
    """One open SSE stream."""

    agent_id: str
    teams: frozenset[str]
    sent_seq: int  # the newest change seq this stream has announced (or the client said it had)
    queue: Mailbox = field(repr=False)
    pages: PageSource | None = field(default=None, repr=False)  # what this stream's page pokes carry
    token_hash: str | None = field(default=None, repr=False)  # the caller's token, checked again (None: never)
    poke_queued: bool = False
    lagged: bool = False
    closed: bool = False
    task: asyncio.Task[None] | None = field(default=None, repr=False)  # the task sending the stream's events
    sending_since: float = 0.0  # monotonic start of the send in progress; 0: none (see Hub._heartbeat)
    timed_out: bool = False  # cancelled by the hub: the client read nothing for send_timeout


PageSource = Callable[[int, int], str | None]  # (after, seq) -> the page of (after, seq] as JSON, or None
MAX_PAGE_SETS = 32  # team sets whose pages one tick reads; streams of the others get plain pokes


@dataclass
class _Tick:
    seq: int
    signals: list[tuple[int, str, str, str | None, dict[str, Any]]]  # seq, kind, agent id, conversation, data
    pages: dict[frozenset[str], str] = field(default_factory=dict)  # team set -> its page of the new changes
    access: _Access | None = None  # the streams' tokens, when checked


@dataclass(frozen=True)
class _Access:
    generation: int  # config_cache's, read before the check
    tokens: frozenset[str]  # the token hashes checked
    teams: dict[str, frozenset[str]]  # token hash -> its agent's teams; absent: it grants nothing any more


class Hub:
    def __init__(
        self,
        engine: sa.Engine,
        *,
        poll_interval: float = 0.05,
        heartbeat: float = 15.0,
        offline_grace: float = 10.0,
        queue_size: int = 256,
        signal_ttl: float = 60.0,
        prune_every: float = 10.0,
        gap_wait: float = 2.0,
        min_gap: float = 0.05,
        access_check: float = TOKEN_CACHE_SECONDS,
        send_timeout: float | None = None,
    ) -> None:
        self.engine = engine
        self.poll_interval = poll_interval
        self.min_gap = min_gap  # between two ticks that hand something out (see the module docstring)
        self.heartbeat = heartbeat
        self.offline_grace = offline_grace
        self.queue_size = queue_size
        self.signal_ttl = signal_ttl
        self.prune_every = prune_every
        self.gap_wait = gap_wait
        self.access_check = access_check  # seconds between checks of the streams' tokens (module docstring)
        # a stream whose send waits this long on a client that stopped reading is ended (checked every heartbeat)
        self.send_timeout = max(30.0, 2 * heartbeat) if send_timeout is None else send_timeout
        self.seq = 0  # newest change seq seen
        self.prev_seq = -1  # the seq before the log's last move: streams that announced it get page pokes
        self.signal_seq = 0  # newest signal seq seen
        self._gaps: dict[int, float] = {}  # signal seqs below signal_seq not seen yet -> when first missed
        self._subscribers: set[Subscriber] = set()
        self._by_agent: dict[str, set[Subscriber]] = {}
        self._page_sets: Counter[frozenset[str]] = Counter()  # team set -> its streams that take page pokes
        self._page_sources: dict[frozenset[str], PageSource] = {}  # team set -> how to read its pages
        self._tokens: Counter[str] = Counter()  # token hash -> its streams
        self._access_checked = (-1, 0.0)  # config_cache generation and monotonic time of the last check
        self._grace: dict[str, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._limiter = anyio.CapacityLimiter(1)  # the poll never waits behind request handlers' threads
        self._poke_cache: tuple[int, bytes] = (-1, b"")
        self._page_pokes: dict[frozenset[str], bytes] = {}  # team set -> the poke of (prev_seq, seq] with its page
        self._woken = asyncio.Event()  # this process committed: poll now
        self._wake_pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handed_out_at = 0.0  # when a tick last handed events out
        self._server: Any = None  # the uvicorn.Server serving us, when found
        self.closing = False
        self.ticks = 0

    # lifecycle

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        if self.running:
            return
        self.closing = False
        self.seq, self.signal_seq = await anyio.to_thread.run_sync(self._read_heads, limiter=self._limiter)
        # Nothing from a previous run: its pages and gaps are of a log position the streams may not share.
        self.prev_seq, self._page_pokes, self._poke_cache, self._gaps = -1, {}, (-1, b""), {}
        self._access_checked, self._wake_pending, self._handed_out_at = (-1, 0.0), False, 0.0
        self._server = _serving_uvicorn_server()
        self._loop = asyncio.get_running_loop()
        self._woken = asyncio.Event()
        sa.event.listen(Session, "after_commit", self._committed)
        self._task = self._loop.create_task(self._run(), name="agentdesk-event-hub")

    async def stop(self) -> None:
        self.close_streams()
        if sa.event.contains(Session, "after_commit", self._committed):
            sa.event.remove(Session, "after_commit", self._committed)
        for task in self._grace.values():
            task.cancel()
        self._grace.clear()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def close_streams(self) -> None:
        """End every stream (server shutdown); new ones end at once."""
        self.closing = True
        for sub in list(self._subscribers):
            self._close(sub)
            if sub.sending_since and sub.task is not None:  # stuck on a client that reads nothing: end it now
                sub.timed_out = True
                sub.task.cancel()

    @staticmethod
    def _close(sub: Subscriber) -> None:
        if sub.closed:
            return
        sub.closed = True
        try:
            sub.queue.put_nowait(_CLOSE)
        except asyncio.QueueFull:
            pass  # the stream is busy; it checks `closed` after each item

    # subscribers

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def subscribe(
        self,
        agent_id: str,
        teams: list[str] | frozenset[str],
        sent_seq: int = -1,
        pages: PageSource | None = None,
        token_hash: str | None = None,
    ) -> Subscriber:
        sub = Subscriber(agent_id=agent_id, teams=frozenset(teams), sent_seq=sent_seq,
                         queue=Mailbox(self.queue_size), pages=pages, token_hash=token_hash)
        self._subscribers.add(sub)
        if token_hash is not None:
            self._tokens[token_hash] += 1
        self._by_agent.setdefault(agent_id, set()).add(sub)
        if pages is not None:
            self._page_sets[sub.teams] += 1
            self._page_sources.setdefault(sub.teams, pages)
        pending = self._grace.pop(agent_id, None)
        if pending is not None:
            pending.cancel()  # back within the grace period
        if self.closing:
            self._close(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        if sub not in self._subscribers:
            return
        self._subscribers.discard(sub)
        if sub.token_hash is not None:
            self._tokens[sub.token_hash] -= 1
            if not self._tokens[sub.token_hash]:
                del self._tokens[sub.token_hash]
        if sub.pages is not None:
            self._page_sets[sub.teams] -= 1
            if not self._page_sets[sub.teams]:
                del self._page_sets[sub.teams], self._page_sources[sub.teams]
        streams = self._by_agent.get(sub.agent_id)
        if streams is not None:
            streams.discard(sub)
            if not streams:
                del self._by_agent[sub.agent_id]
                if not self.closing and self.running:
                    self._grace[sub.agent_id] = asyncio.get_running_loop().create_task(self._offline_later(sub.agent_id))

    async def _offline_later(self, agent_id: str) -> None:
        await asyncio.sleep(self.offline_grace)
        if self._grace.get(agent_id) is not asyncio.current_task() or self._by_agent.get(agent_id):
            return
        del self._grace[agent_id]
        try:
            await anyio.to_thread.run_sync(self._write_offline, agent_id)
        except Exception:
            log.exception("could not mark agent %s offline", agent_id)

    def _write_offline(self, agent_id: str) -> None:
        with open_session(self.engine) as session:
            agent = session.get(Agent, agent_id)
            if agent is not None and agent.presence != "offline":
                write_presence(session, agent_id, status="offline")

    # the stream of one subscriber

    def poke_bytes(self) -> bytes:
        seq, encoded = self._poke_cache
        if seq != self.seq:
            encoded = encode_event("poke", {"seq": self.seq}, event_id=self.seq)
            self._poke_cache = (self.seq, encoded)
        return encoded

    def _next_poke(self, sub: Subscriber) -> bytes:
        """The poke announcing the newest seq to `sub`: with the changes since its last poke when that one
        announced the seq the log moved on from and the tick read its teams' page (see the module docstring)."""
        after, sub.sent_seq = sub.sent_seq, self.seq
        if after == self.prev_seq and (encoded := self._page_pokes.get(sub.teams)) is not None:
            return encoded
        return self.poke_bytes()

    async def snapshot_bytes(self, sub: Subscriber) -> tuple[int, bytes]:
        snapshot = await anyio.to_thread.run_sync(read_snapshot, self.engine)
        events = [
            _presence_event(agent_id, status, viewing if team in sub.teams else None)
            for agent_id, status, viewing, team in snapshot.agents
        ]
        return snapshot.seq, b"".join(events)

    def open_stream(
        self,
        agent_id: str,
        teams: list[str] | frozenset[str],
        resume: int | None,
        pages: PageSource | None = None,
        token_hash: str | None = None,
    ) -> Subscriber:
        """The subscriber of a new SSE stream (its events: `stream`).

        `resume` is the seq the client last heard of (Last-Event-ID or ?seq=): then the first poke is
        sent only if the log moved on since; without it the first poke always comes (plain: the hub knows
        nothing of the client's cursor yet). `pages(after, seq)`: the changes in (after, seq] this stream
        may see, for page pokes (called in the poll's thread); without it every poke is plain. `token_hash`:
        the caller's token, which the poll checks still grants `teams` (see the module docstring).
        """
        return self.subscribe(agent_id, teams, -1 if resume is None else resume, pages, token_hash)

    async def stream(self, sub: Subscriber) -> AsyncIterator[bytes]:
        """The events of one SSE stream (`sub`, from `open_stream`): presence of every agent, a poke, then
        whatever happens; the stream is unsubscribed when this ends."""
        try:
            seq, presence = await self.snapshot_bytes(sub)
            first = [presence]
            seq = max(seq, self.seq)  # the snapshot's seq may be fresher than the last tick's
            if seq > sub.sent_seq:
                first.append(encode_event("poke", {"seq": seq}, event_id=seq))
                sub.sent_seq = seq
            yield b"".join(first)
            queue = sub.queue
            while True:
                chunks: list[bytes] = []
                for item in await queue.take():
                    if item is _CLOSE or sub.closed:
                        return
                    if item is _POKE:
                        sub.poke_queued = False
                    else:
                        chunks.append(item)
                if sub.lagged:  # events were dropped: replace what was queued by a fresh snapshot
                    sub.lagged = False
                    _, presence = await self.snapshot_bytes(sub)
                    chunks = [presence]
                if sub.closed:  # while the snapshot was read: its access may be gone, send it nothing more
                    return
                if self.seq > sub.sent_seq:
                    chunks.append(self._next_poke(sub))
                if chunks:
                    yield b"".join(chunks)
        finally:
            self.unsubscribe(sub)

    # the poll task

    def _read_heads(self) -> tuple[int, int]:
        with self.engine.connect() as conn:
            seq = conn.execute(sa.select(sa.func.coalesce(sa.func.max(Change.seq), 0))).scalar_one()
            signal_seq = conn.execute(sa.select(sa.func.coalesce(sa.func.max(Signal.seq), 0))).scalar_one()
        return seq, signal_seq

    def _read(
        self, after: int, gaps: list[int], seq: int, sources: dict[frozenset[str], PageSource], tokens: frozenset[str]
    ) -> _Tick:
        """New signals after `after` (and the `gaps`), the change log's head, the access of the streams'
        `tokens` if a check is due, and, if the log moved on from `seq`, the page of the changes since for
        each team set of `sources`."""
        with self.engine.connect() as conn:
            head = conn.execute(_HEAD).scalar_one()
            if gaps:
                rows = conn.execute(_SIGNALS_AND_GAPS, {"after": after, "gaps": gaps}).all()
            else:
                rows = conn.execute(_SIGNALS, {"after": after}).all()
            access = self._check_access(conn, tokens)  # after the head: see the module docstring
        tick = _Tick(seq=head, signals=[(r[0], r[1], r[2], r[3], r[4] or {}) for r in rows], access=access)
        if head > seq:
            for teams, source in sources.items():
                try:
                    page = source(seq, head)
                except Exception:  # noqa: BLE001 - a cursor behind the horizon, say: the desks pull and are told
                    log.debug("no page for a poke", exc_info=True)
                    continue
                if page is not None:
                    tick.pages[teams] = page
        return tick

    def _check_access(self, conn: sa.Connection, tokens: frozenset[str]) -> _Access | None:
        """What the streams' tokens grant now, if the last check is `access_check` seconds old or this process
        changed a token, agent or membership since; else None."""
        generation = config_cache.generation()
        checked_generation, checked_at = self._access_checked
        if not tokens or (generation == checked_generation and time.monotonic() - checked_at < self.access_check):
            return None
        return _Access(generation, tokens, teams_of_tokens(conn, sorted(tokens)))

    def _end_lost_access(self, access: _Access) -> None:
        """End each checked stream whose token no longer grants access, or grants other teams than it streams
        for (the desk reconnects: to a 401, or with its new teams)."""
        self._access_checked = (access.generation, time.monotonic())
        for sub in self._subscribers:
            if sub.token_hash in access.tokens and access.teams.get(sub.token_hash) != sub.teams:
                self._close(sub)

    def _sources(self) -> dict[frozenset[str], PageSource]:
        """The page source of each team set with streams, the most-subscribed first (MAX_PAGE_SETS at most)."""
        return {teams: self._page_sources[teams] for teams, _ in self._page_sets.most_common(MAX_PAGE_SETS)}

    def _prune(self) -> None:
        cutoff = utcnow() - timedelta(seconds=self.signal_ttl)
        keep_presence = sa.select(sa.func.max(Signal.seq)).where(Signal.kind == "presence").group_by(Signal.agent_id)  # type: ignore[arg-type]
        newest = sa.select(sa.func.max(Signal.seq)).scalar_subquery()  # type: ignore[arg-type]
        with self.engine.begin() as conn:
            conn.execute(
                sa.delete(Signal).where(
                    Signal.created_at < cutoff,  # type: ignore[operator]
                    Signal.seq < newest,  # type: ignore[operator]
                    Signal.seq.not_in(keep_presence),  # type: ignore[union-attr]
                )
            )

    def _committed(self, session: Session) -> None:
        """A session committed (in any thread): if it wrote to our database, wake the poll."""
        if session.bind is self.engine and self._subscribers and not self._wake_pending and self._loop is not None:
            self._wake_pending = True  # one wake-up in flight is enough; cleared by the poll
            try:
                self._loop.call_soon_threadsafe(self._woken.set)
            except RuntimeError:  # the loop is closed: the server is gone
                pass

    async def _wait(self, began: float) -> None:
        """Until `poll_interval` after `began` or a commit of this process, whichever comes first, but not
        within `min_gap` of the last tick that handed events out."""
        try:
            await asyncio.wait_for(self._woken.wait(), max(0.0, began + self.poll_interval - time.monotonic()))
        except TimeoutError:
            pass
        await asyncio.sleep(max(0.0, self._handed_out_at + self.min_gap - time.monotonic()))

    async def _run(self) -> None:
        last_prune = last_beat = time.monotonic()
        while True:
            began = time.monotonic()
            if began - last_beat >= self.heartbeat:
                last_beat = began
                self._heartbeat(began)
            self._woken.clear()  # before reading: a commit from here on is read by this tick or wakes the next
            self._wake_pending = False
            try:
                if self._server is not None and self._server.should_exit and not self.closing:
                    self.close_streams()
                tick = await anyio.to_thread.run_sync(
                    self._read, self.signal_seq, sorted(self._gaps), self.seq, self._sources(), frozenset(self._tokens),
                    limiter=self._limiter,
                )
                self.ticks += 1
                if self._apply(tick):
                    self._handed_out_at = time.monotonic()
                if time.monotonic() - last_prune >= self.prune_every:
                    last_prune = time.monotonic()
                    await anyio.to_thread.run_sync(self._prune, limiter=self._limiter)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("event hub poll failed; retrying")
                await asyncio.sleep(max(self.poll_interval, 1.0))
            await self._wait(began)

    def _apply(self, tick: _Tick) -> bool:
        """Hand what the tick found to the subscribers; True if there was anything."""
        if tick.access is not None:  # first: a stream that lost access gets nothing of this tick
            self._end_lost_access(tick.access)
        now = time.monotonic()
        events: list[tuple[str, str, dict[str, Any]]] = []  # kind, agent id, data
        for seq, kind, agent_id, conversation_id, data in tick.signals:
            if seq > self.signal_seq:
                if seq - self.signal_seq <= 1000:
                    for missing in range(self.signal_seq + 1, seq):
                        self._gaps[missing] = now
                self.signal_seq = seq
            elif self._gaps.pop(seq, None) is None:
                continue  # seen already
            events.append((kind, agent_id, {**data, "conversation_id": conversation_id}))
        for missing, since in list(self._gaps.items()):
            if now - since > self.gap_wait:
                del self._gaps[missing]
        if events:
            self._fan_out_signals(events)
        if tick.seq <= self.seq:
            return bool(events)
        self.prev_seq, self.seq = self.seq, tick.seq
        self._page_pokes = {teams: event for teams, page in tick.pages.items() if (event := _page_poke(tick.seq, page))}
        self._fan_out_poke()
        return True

    def _heartbeat(self, now: float) -> None:
        """Queue a ping to every stream (proxies and clients see an idle stream alive), in one pass; end the
        streams whose send has waited more than `send_timeout` on a client that stopped reading."""
        for sub in self._subscribers:
            if sub.sending_since and now - sub.sending_since > self.send_timeout and sub.task is not None:
                sub.timed_out = True
                sub.task.cancel()
                continue
            try:
                sub.queue.put_nowait(_PING)
            except asyncio.QueueFull:
                pass  # it has events to send: the stream is not idle

    def _fan_out_poke(self) -> None:
        for sub in self._subscribers:
            if not sub.poke_queued and sub.sent_seq < self.seq:
                try:
                    sub.queue.put_nowait(_POKE)
                    sub.poke_queued = True
                except asyncio.QueueFull:
                    pass  # the stream has items to take; it checks the seq after each

    def _fan_out_signals(self, events: list[tuple[str, str, dict[str, Any]]]) -> None:
        for kind, agent_id, data in events:
            team = data.get("team_id")
            if kind == "presence":
                status = data.get("status", "offline")
                full = _presence_event(agent_id, status, data.get("viewing"))
                hidden = _presence_event(agent_id, status, None) if data.get("viewing") else full
                for sub in self._subscribers:
                    self._offer(sub, full if team in sub.teams else hidden)
            elif kind == "typing":
                encoded = encode_event("typing", {"agent_id": agent_id, "conversation_id": data["conversation_id"]})
                for sub in self._subscribers:
                    if team in sub.teams and sub.agent_id != agent_id:
                        self._offer(sub, encoded)

    @staticmethod
    def _offer(sub: Subscriber, encoded: bytes) -> None:
        if sub.lagged:
            return
        try:
            sub.queue.put_nowait(encoded)
        except asyncio.QueueFull:
            sub.lagged = True  # its stream will send a fresh presence snapshot instead


class StreamResponse(Response):
    """The SSE response of one subscriber: a plain ASGI send loop over `Hub.stream`.

    sse-starlette's EventSourceResponse gave every event of every stream a cancel scope (its send timeout),
    a lock and a task group's bookkeeping, most of a poke's CPU at 1,000 streams. Here a stream is one task
    sending what its queue holds (each event encoded once by the hub, the same bytes for every stream) and
    one waiting for the client to go, while the request's own task waits for either; the hub queues the heartbeat pings to all streams in one pass and
    cancels a send stuck on a client that stopped reading (`Hub._heartbeat`). `open_stream` subscribes the
    stream (`Hub.open_stream` with the caller's arguments), called once the response starts.
    """

    media_type = "text/event-stream"

    def __init__(self, hub: Hub, open_stream: Callable[[], Subscriber]) -> None:
        self.status_code = 200
        self.background = None
        self.init_headers({"Cache-Control": "no-store", "Connection": "keep-alive", "X-Accel-Buffering": "no"})
        self.hub = hub
        self._open_stream = open_stream

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        start = {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        hub, loop = self.hub, asyncio.get_running_loop()
        sub = self._open_stream()
        sender = watcher = None
        try:
            await send(start)
            # The events are sent from a task of their own: each wake-up of this one would resume every
            # coroutine of the middleware stack it runs under, for every event of every stream.
            sender = sub.task = loop.create_task(self._send_events(sub, send))
            watcher = loop.create_task(self._until_disconnect(receive))
            await asyncio.wait((sender, watcher), return_when=asyncio.FIRST_COMPLETED)
            hub._close(sub)  # the client went: the sender ends at the queue's marker
            await sender  # its error, if any (a client that stopped reading: TimeoutError)
        finally:
            for task in (watcher, sender):
                if task is not None:
                    task.cancel()
            hub.unsubscribe(sub)

    async def _send_events(self, sub: Subscriber, send: Any) -> None:
        try:
            async with aclosing(self.hub.stream(sub)) as chunks:
                async for chunk in chunks:
                    sub.sending_since = time.monotonic()
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    sub.sending_since = 0.0
            # The body's end: best effort, as a client that stopped reading must not hold this task (nor, through
            # it, the server's shutdown); the hub no longer watches this send.
            with suppress(TimeoutError):
                await asyncio.wait_for(send({"type": "http.response.body", "body": b"", "more_body": False}), 1.0)
        except asyncio.CancelledError:
            if not sub.timed_out:
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
            raise TimeoutError(f"an event stream's client read nothing for {self.hub.send_timeout:g} s") from None

    @staticmethod
    async def _until_disconnect(receive: Any) -> None:
        """uvicorn tells the app that the client went only through `receive`."""
        try:
            while (await receive())["type"] != "http.disconnect":
                pass
        except Exception:  # noqa: BLE001 - whatever went wrong with the connection, the stream ends
            log.debug("event stream receive failed", exc_info=True)


def _page_poke(seq: int, page: str) -> bytes | None:
    """The poke announcing `seq` with its page (JSON text); None if the text could break the event's framing
    (JSON text never holds a raw line break, but the framing must not depend on it)."""
    if "\n" in page or "\r" in page:
        return None
    return f'id: {seq}\nevent: poke\ndata: {{"seq":{seq},"page":{page}}}\n\n'.encode()


def _serving_uvicorn_server() -> Any:
    """The uvicorn.Server whose `serve` runs this event loop, if any (see the module docstring)."""
    try:
        import uvicorn
    except ImportError:  # pragma: no cover - uvicorn is a dependency
        return None
    for task in asyncio.all_tasks():
        coro: Any = task.get_coro()
        while coro is not None:
            frame = getattr(coro, "cr_frame", None)
            owner = frame.f_locals.get("self") if frame is not None else None
            if isinstance(owner, uvicorn.Server):
                return owner
            coro = getattr(coro, "cr_await", None)
    return None
