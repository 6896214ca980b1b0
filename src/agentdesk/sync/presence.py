"""Announcing the agent's presence (DESIGN §5 "Live"): availability, the conversation open, typing.

The desk calls `set_status`, `set_viewing` and `typing` from its UI thread; they only record what is wanted
and return. A thread of the engine's own posts it: the whole state (POST /presence) whenever it differs
from what the server last accepted — a status at once, a viewed conversation once the agent has stayed on
it for `debounce` seconds (moving down the queue does not post every row) — and typing (POST /typing) at
most every `typing_every` seconds. While the server is away, posts fail quietly and are retried with
backoff; `resend` (the live stream is back) posts the latest state again, since a server that lost our
stream marks us offline after its grace time. `stop` says `offline`, best effort, within a short timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the desk imports this module before its first frame, httpx after
    import httpx

from agentdesk.sync.client import AuthRejected, RequestRejected, ServerUnavailable, SyncClient

STATUSES = ("available", "away")
DEBOUNCE = 0.3  # seconds on a conversation before the server hears the agent views it
TYPING_EVERY = 3.0  # seconds between typing posts while the agent keeps typing (the server counts one for 6 s)
RETRY = (1.0, 15.0)  # backoff after a failed post: first delay, cap
POST_TIMEOUT = 3.0  # a presence post that takes longer is dropped and retried later
STOP_TIMEOUT = 1.0  # the `offline` post at a clean stop

State = tuple[str, str | None]  # (status, viewed conversation id)


class Announcer:
    """What the server should know of this agent, and a thread that tells it (see the module doc)."""

    def __init__(
        self,
        client: SyncClient,
        *,
        debounce: float = DEBOUNCE,
        typing_every: float = TYPING_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self.debounce = debounce
        self.typing_every = typing_every
        self._clock = clock
        self._lock = threading.Lock()
        self._kick = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._status: str | None = None  # nothing to say until the desk sets one
        self._viewing: str | None = None
        self._due = 0.0  # monotonic time from which the wanted state may be posted
        self._sent: State | None = None  # what the server last accepted (None: unknown, post again)
        self._typing: str | None = None  # a conversation to post typing for
        self._typed: tuple[str, float] | None = None  # the last typing post: conversation, when
        self._failures = 0
        self.posts = 0  # presence posts that succeeded (for tests and diagnostics)

    # --- the desk's side: record and return ------------------------------------------------------

    @property
    def status(self) -> str | None:
        return self._status

    @property
    def sent(self) -> State | None:
        with self._lock:
            return self._sent

    def set_status(self, status: str) -> None:
        if status not in STATUSES:
            raise ValueError(f"availability must be one of {', '.join(STATUSES)}, not {status!r}")
        with self._lock:
            self._status = status
            self._due = self._clock()
        self._kick.set()

    def set_viewing(self, conversation_id: str | None) -> None:
        with self._lock:
            if conversation_id == self._viewing:
                return
            self._viewing = conversation_id
            self._due = self._clock() + self.debounce
        self._kick.set()

    def typing(self, conversation_id: str) -> None:
        now = self._clock()
        with self._lock:
            last = self._typed
            if last is not None and last[0] == conversation_id and now - last[1] < self.typing_every:
                return  # said a moment ago: the server still counts it
            self._typed = (conversation_id, now)
            self._typing = conversation_id
        self._kick.set()

    def resend(self) -> None:
        """The server is back (or may have forgotten us): post the latest state now, without backoff."""
        with self._lock:
            self._sent = None
            self._failures = 0
            self._due = min(self._due, self._clock())
        self._kick.set()

    # --- the thread --------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="agentdesk-presence", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = STOP_TIMEOUT + 0.5) -> None:
        """Say `offline` (best effort, from the thread) and wait up to `timeout` for it."""
        self._stop.set()
        self._kick.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        http = self._client.live_http(read_timeout=POST_TIMEOUT)
        try:
            while not self._stop.is_set():
                self._kick.clear()
                self._kick.wait(self._step(http))
            if self.posts:  # the server heard from us: tell it we left
                self._try(lambda: self._client.set_presence("offline", None, http=http, timeout=STOP_TIMEOUT))
        finally:
            http.close()

    def _step(self, http: httpx.Client) -> float | None:
        """Post whatever is due; returns how long to sleep before the next look (None: until kicked)."""
        with self._lock:
            typing, self._typing = self._typing, None
            wanted = (self._status or "", self._viewing)
            wait = self._due - self._clock()
            fresh = self._status is not None and wanted != self._sent
        if typing is not None:
            self._try(lambda: self._client.typing(typing, http=http))  # lost if it fails: it is stale by then
        if not fresh:
            return None
        if wait > 0:
            return wait
        if self._try(lambda: self._post(http, *wanted)):
            with self._lock:
                self._sent = wanted  # a change made meanwhile differs from this and is posted next round
                self._failures = 0
            return 0.0 if (self._status, self._viewing) != wanted else None
        with self._lock:
            self._failures += 1
            self._due = self._clock() + min(RETRY[1], RETRY[0] * 2 ** (self._failures - 1))
        return self._due - self._clock()

    def _post(self, http: httpx.Client, status: str, viewing: str | None) -> None:
        try:
            self._client.set_presence(status, viewing, http=http)
        except RequestRejected:
            if viewing is None:
                raise
            # The server will not let us view that conversation (gone from our teams): the status still counts.
            self._client.set_presence(status, None, http=http)
        self.posts += 1

    def _try(self, post: Callable[[], object]) -> bool:
        try:
            post()
        except RequestRejected:
            # The server refused this state for good (e.g. a conversation it no longer lets us see): sending
            # it again would not help, so it counts as said.
            return True
        except (ServerUnavailable, AuthRejected):
            return False
        except Exception:  # noqa: BLE001 - presence is a courtesy: a surprise must not end the thread
            return False
        return True
