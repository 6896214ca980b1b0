"""The presence announcer (sync/presence.py) against a scripted client: what it posts, when, and how it copes
with a server that is away. Real threads and real time, no sleeping-and-hoping: each test waits for a
condition with a deadline, and checks what must NOT have been posted by looking at the whole call list."""

from __future__ import annotations

import threading
import time

import pytest

from agentdesk.sync.client import RequestRejected, ServerUnavailable
from agentdesk.sync.presence import Announcer


class ScriptedClient:
    """Records the posts; `down` makes them fail as an unreachable server does; `refuse` names conversations
    the server will not let the agent view (404)."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.down = False
        self.refuse: set[str] = set()
        self._lock = threading.Lock()

    def live_http(self, read_timeout: float = 0):  # noqa: ANN201 - the announcer only hands it back to us
        return self

    def close(self) -> None:
        pass

    def set_presence(self, status, viewing, *, http=None, timeout=None):  # noqa: ANN001, ANN201
        if self.down:
            raise ServerUnavailable("unreachable")
        if viewing in self.refuse:
            raise RequestRejected("404")
        with self._lock:
            self.calls.append(("presence", status, viewing))
        return {"status": status, "viewing": viewing}

    def typing(self, conversation_id, *, http=None):  # noqa: ANN001, ANN201
        if self.down:
            raise ServerUnavailable("unreachable")
        with self._lock:
            self.calls.append(("typing", conversation_id))

    def presence_posts(self) -> list[tuple]:
        with self._lock:
            return [c[1:] for c in self.calls if c[0] == "presence"]

    def typing_posts(self) -> list[str]:
        with self._lock:
            return [c[1] for c in self.calls if c[0] == "typing"]


def wait_for(predicate, timeout: float = 5.0) -> float:
    began = time.monotonic()
    while not predicate():
        assert time.monotonic() - began < timeout, "timed out"
        time.sleep(0.01)
    return time.monotonic() - began


@pytest.fixture
def client() -> ScriptedClient:
    return ScriptedClient()


@pytest.fixture
def announcer(client):
    announcer = Announcer(client)  # type: ignore[arg-type]
    announcer.start()
    yield announcer
    announcer.stop(timeout=3)


def test_availability_is_posted_at_once(client, announcer):
    announcer.set_status("available")
    took = wait_for(lambda: client.presence_posts() == [("available", None)])
    assert took < 0.2  # not debounced: routing should hear it now
    announcer.set_status("away")
    wait_for(lambda: client.presence_posts()[-1] == ("away", None))


def test_moving_through_the_queue_posts_only_where_the_agent_stays(client, announcer):
    announcer.set_status("available")
    wait_for(lambda: client.presence_posts() == [("available", None)])
    for conversation in ("c1", "c2", "c3", "c4"):  # j, j, j, j: faster than the debounce
        announcer.set_viewing(conversation)
        time.sleep(0.05)
    took = wait_for(lambda: len(client.presence_posts()) == 2)
    assert client.presence_posts() == [("available", None), ("available", "c4")]
    assert took >= 0.2  # it waited for the agent to stay
    announcer.set_viewing("c4")  # the same again: nothing to say
    announcer.set_status("away")  # the viewed conversation goes with the new status
    wait_for(lambda: len(client.presence_posts()) == 3)
    assert client.presence_posts()[-1] == ("away", "c4")


def test_typing_is_posted_at_most_every_few_seconds_per_conversation(client, announcer):
    for _ in range(30):  # a burst of keystrokes
        announcer.typing("c1")
        time.sleep(0.01)
    wait_for(lambda: client.typing_posts() == ["c1"])
    announcer.typing("c2")  # another conversation: says so at once
    wait_for(lambda: client.typing_posts() == ["c1", "c2"])
    time.sleep(0.2)
    assert client.typing_posts() == ["c1", "c2"]  # nothing more from the burst


def test_while_the_server_is_away_posts_fail_quietly_and_the_latest_state_arrives_when_it_is_back(client, announcer):
    client.down = True
    announcer.set_status("available")
    announcer.set_viewing("c1")
    announcer.typing("c1")  # dropped: stale by the time the server is back
    announcer.set_status("away")
    announcer.set_viewing("c2")
    time.sleep(0.5)
    assert announcer.sent is None and client.calls == []
    client.down = False
    announcer.resend()  # what the engine does when a sync round or the live stream works again
    took = wait_for(lambda: client.presence_posts() == [("away", "c2")])
    assert took < 0.5
    assert client.typing_posts() == []


def test_without_a_hint_the_retry_backoff_finds_the_server_again(client, announcer):
    client.down = True
    announcer.set_status("away")
    time.sleep(0.3)
    client.down = False
    wait_for(lambda: client.presence_posts() == [("away", None)], timeout=4)  # first retry after about a second


def test_resend_posts_the_same_state_again(client, announcer):
    announcer.set_status("available")
    wait_for(lambda: len(client.presence_posts()) == 1)
    announcer.resend()  # e.g. the live stream came back after the server's offline grace
    wait_for(lambda: client.presence_posts() == [("available", None)] * 2)


def test_a_conversation_the_server_refuses_still_lets_the_status_through(client, announcer):
    client.refuse.add("gone")
    announcer.set_status("away")
    announcer.set_viewing("gone")
    wait_for(lambda: ("away", None) in client.presence_posts())
    time.sleep(0.5)
    assert ("away", "gone") not in client.presence_posts()
    assert client.presence_posts().count(("away", None)) <= 2  # not retried forever


def test_a_clean_stop_says_offline(client):
    announcer = Announcer(client)  # type: ignore[arg-type]
    announcer.start()
    announcer.set_status("available")
    wait_for(lambda: len(client.presence_posts()) == 1)
    began = time.monotonic()
    announcer.stop()
    assert time.monotonic() - began < 1.0
    assert client.presence_posts()[-1] == ("offline", None)


def test_a_stop_while_the_server_is_away_is_quick_and_quiet(client):
    announcer = Announcer(client)  # type: ignore[arg-type]
    announcer.start()
    client.down = True
    announcer.set_status("available")
    time.sleep(0.1)
    began = time.monotonic()
    announcer.stop()
    assert time.monotonic() - began < 2.0
    assert client.calls == []


def test_only_available_and_away_can_be_chosen(announcer):
    with pytest.raises(ValueError):
        announcer.set_status("offline")
