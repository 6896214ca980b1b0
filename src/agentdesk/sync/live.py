"""The live stream (DESIGN §5 "Live"): one SSE subscription to GET /api/v1/events, in a thread of its own.

A `poke` {seq} says the server's change log reached seq N: the engine pulls at once rather than at its next
poll. A page poke {seq, page} also carries the changes since the previous poke, as pull would answer them
from cursor `page.after` (server/routes/events.py): the engine applies them instead of pulling when that is
its cursor. `presence` and `typing` go into a `Presence` that the desk reads whenever it paints. When the
stream drops it reconnects with exponential backoff and jitter, resuming with Last-Event-ID (the last poke's
seq), so the server only pokes again if the log moved on; while it is down the engine polls at its usual
interval.

Stopping must not wait for the next heartbeat (15 s): `stop` shuts the stream's socket down, which ends the
blocked read at once (closing the socket from another thread would not wake the reader on Linux).
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: the desk imports this module before its first frame, httpx after
    import httpx

TYPING_FOR = 6.0  # seconds a typing event counts for (clients repeat it every few seconds while typing)
STABLE_AFTER = 10.0  # a stream that lasted this long resets the backoff; a shorter one (a server closing
# every stream as it shuts down) keeps backing off, so desks do not hammer it


class Presence:
    """Who is online, viewing and typing where, as the live stream last said; safe to read from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._agents: dict[str, tuple[str, str | None]] = {}  # agent id -> (status, conversation viewed)
        self._typing: dict[str, tuple[str, float]] = {}  # agent id -> (conversation, monotonic time)

    def apply(self, kind: str, data: dict[str, Any], now: float | None = None) -> None:
        agent_id = str(data["agent_id"])
        with self._lock:
            if kind == "presence":
                self._agents[agent_id] = (str(data.get("status") or "offline"), data.get("viewing"))
                if data.get("status") == "offline":
                    self._typing.pop(agent_id, None)
            elif kind == "typing":
                self._typing[agent_id] = (str(data["conversation_id"]), time.monotonic() if now is None else now)

    def clear(self) -> None:
        """Forget everything: the stream is down (stale), or a new connection sends a fresh snapshot."""
        with self._lock:
            self._agents.clear()
            self._typing.clear()

    def status(self, agent_id: str) -> str | None:
        with self._lock:
            state = self._agents.get(agent_id)
        return state[0] if state else None

    def viewing(self) -> dict[str, str]:
        """Agent id -> the conversation they have open (only conversations of the subscriber's teams)."""
        with self._lock:
            return {agent: viewed for agent, (_status, viewed) in self._agents.items() if viewed}

    def typing(self, now: float | None = None) -> dict[str, str]:
        """Agent id -> the conversation they typed in during the last TYPING_FOR seconds."""
        now = time.monotonic() if now is None else now
        with self._lock:
            return {agent: conv for agent, (conv, at) in self._typing.items() if now - at < TYPING_FOR}

    def here(self, conversation_id: str, me: str | None = None) -> tuple[list[str], list[str]]:
        """Other agents viewing, and typing in, this conversation."""
        viewers = sorted(a for a, c in self.viewing().items() if c == conversation_id and a != me)
        typists = sorted(a for a, c in self.typing().items() if c == conversation_id and a != me)
        return viewers, typists


def backoff(failures: int, base: float = 0.5, cap: float = 30.0) -> float:
    """Seconds before reconnect attempt number `failures` (1, 2, …): doubling, capped, jittered down to half,
    so a restarted server is not hit by every desk in the same instant."""
    return min(cap, base * 2 ** max(failures - 1, 0)) * random.uniform(0.5, 1.0)


class LiveStream:
    """Listens in a daemon thread; reports through callbacks, which run in that thread and must not block."""

    def __init__(
        self,
        open_http: Callable[[], httpx.Client],
        *,
        on_poke: Callable[[int], None],
        on_page: Callable[[int, dict[str, Any]], None] = lambda seq, page: None,
        on_state: Callable[[bool], None] = lambda up: None,
        on_event: Callable[[str, dict[str, Any]], None] = lambda kind, data: None,
        presence: Presence | None = None,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
    ) -> None:
        self._open_http = open_http
        self.on_poke = on_poke
        self.on_page = on_page  # a page poke's page, just before its on_poke
        self.on_state = on_state
        self.on_event = on_event
        self.presence = presence if presence is not None else Presence()
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.up = False
        self.last_seq: int | None = None  # the newest poke's seq: sent back as Last-Event-ID on reconnect
        self.connects = 0
        self.error: str | None = None  # why the last attempt ended, for diagnostics
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="agentdesk-live", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """End the stream now (shut its socket down) and wait up to `timeout` for the thread."""
        self._stop.set()
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in recv()
            except OSError:
                pass  # already closed by the other side
        thread = self._thread
        if thread is not None and thread is not threading.current_thread() and timeout > 0:
            thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        try:
            http = self._open_http()
        except Exception as exc:  # noqa: BLE001 - e.g. a server URL httpx refuses: the desk stays on polling
            self.error = f"{type(exc).__name__}: {exc}"
            return
        failures = 0
        try:
            while not self._stop.is_set():
                heard, began = False, time.monotonic()
                try:
                    heard = self._listen(http)
                except Exception as exc:  # noqa: BLE001 - a dropped or refused stream is retried, whatever the cause
                    self.error = f"{type(exc).__name__}: {exc}"
                finally:
                    self._set_up(False)
                stable = heard and time.monotonic() - began >= STABLE_AFTER
                failures = 1 if stable else failures + 1  # a stream that worked reconnects at the shortest delay
                self._stop.wait(backoff(failures, self.backoff_base, self.backoff_cap))
        finally:
            http.close()

    def _listen(self, http: httpx.Client) -> bool:
        """One connection, until it ends; True when it was established."""
        from httpx_sse import connect_sse  # only the live thread needs it

        headers = {"Last-Event-ID": str(self.last_seq)} if self.last_seq is not None else {}
        with connect_sse(http, "GET", "/api/v1/events", headers=headers) as source:
            if source.response.status_code != 200:
                self.error = f"the live stream answered {source.response.status_code}"
                return False
            if not self._hold(source.response):
                return False  # stop came while connecting
            self.connects += 1
            self.presence.clear()  # the stream starts with a fresh snapshot
            self._set_up(True)
            for event in source.iter_sse():
                self._dispatch(event.event, event.data)
        return True

    def _hold(self, response: httpx.Response) -> bool:
        """Keep the response's socket where `stop` can shut it down; False when stop already came."""
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        with self._lock:
            if self._stop.is_set():
                return False
            self._sock = sock
        return True

    def _set_up(self, up: bool) -> None:
        if up == self.up:
            return
        self.up = up
        if not up:
            with self._lock:
                self._sock = None
            self.presence.clear()  # stale from now on
        self.on_state(up)

    def _dispatch(self, kind: str, raw: str) -> None:
        if kind not in ("poke", "presence", "typing"):
            return  # a newer server's event: not ours to understand
        try:
            data = json.loads(raw)
            if kind == "poke":
                seq, page = int(data["seq"]), _page(data.get("page"))
            else:
                self.presence.apply(kind, data)
        except (ValueError, KeyError, TypeError, AttributeError):
            return  # a malformed event is skipped rather than dropping a working stream
        if kind == "poke":
            self.last_seq = seq
            if page is not None:
                self.on_page(seq, page)
            self.on_poke(seq)
        else:
            self.on_event(kind, data)


def _page(page: Any) -> dict[str, Any] | None:
    """A page poke's page if it has the shape of one (else the poke counts as plain: the engine pulls)."""
    if (
        isinstance(page, dict)
        and isinstance(page.get("after"), str)
        and isinstance(page.get("cursor"), str)
        and page.get("has_more") is False
        and isinstance(page.get("changes"), list)
        and all(isinstance(c, dict) for c in page["changes"])
    ):
        return page
    return None
