"""The engine's pull of a long catch-up: the next page is fetched while this one is written, decoded in the
writing thread, and applied only while the cache's cursor is still where it starts; and a page's repeated
upserts of one row leave its last version."""

from __future__ import annotations

import json
import threading
import time

from agentdesk.store.cache import Cache
from agentdesk.sync.engine import SyncEngine


class ScriptedPulls:
    """`pages` pull answers of one new interaction each; the page after cursor n is "i{n}" and ends at n + 1.
    Notes which thread fetched and decoded each page; `on_fetch(n)` runs in the fetching thread."""

    def __init__(self, pages: int, on_fetch=None) -> None:  # noqa: ANN001
        self.pages = pages
        self.on_fetch = on_fetch
        self.requested: list[int] = []
        self.fetched_in: list[str] = []
        self.decoded_in: set[str] = set()

    def pull_page(self, cursor: str, limit: int) -> bytes:
        n = int(cursor or 0)
        self.requested.append(n)
        self.fetched_in.append(threading.current_thread().name)
        if self.on_fetch is not None:
            self.on_fetch(n)
        data = {"id": f"i{n}", "conversation_id": "c1", "text": f"message {n}", "meta": {}}
        change = {"seq": n + 1, "entity": "interactions", "id": f"i{n}", "op": "upsert", "data": data}
        return json.dumps({"changes": [change], "cursor": str(n + 1), "has_more": n + 1 < self.pages}).encode()

    def pull(self, cursor: str, limit: int) -> dict:
        return self.decode(self.pull_page(cursor, limit))

    def decode(self, body: bytes) -> dict:
        self.decoded_in.add(threading.current_thread().name)
        return json.loads(body)


def wait_until(condition, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + 10
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert condition(), what


def cache_at(tmp_path, cursor: str) -> Cache:  # noqa: ANN001
    cache = Cache(tmp_path / "cache.sqlite3")
    cache.set_state("cursor", cursor)
    return cache


def texts(cache: Cache) -> list[str]:
    return [text for (text,) in cache.db.execute("SELECT text FROM interactions ORDER BY id")]


def test_the_next_page_is_fetched_while_this_one_is_written_and_decoded_in_the_writing_thread(tmp_path):
    client = ScriptedPulls(pages=4)
    cache = cache_at(tmp_path, "0")
    apply = cache.apply_changes

    def apply_once_the_next_page_is_asked_for(changes, cursor, after=None):  # noqa: ANN001, ANN202
        n = int(after)
        if n + 1 < client.pages:
            wait_until(lambda: n + 1 in client.requested, f"page {n + 1} was not requested while page {n} was written")
        return apply(changes, cursor, after=after)

    cache.apply_changes = apply_once_the_next_page_is_asked_for  # type: ignore[method-assign]
    assert SyncEngine(cache.path, client).pull(cache) is True  # type: ignore[arg-type]
    assert texts(cache) == ["message 0", "message 1", "message 2", "message 3"]
    assert cache.state("cursor") == "4"
    assert client.requested == [0, 1, 2, 3]  # each page once, in order
    assert client.fetched_in[1:] == ["agentdesk-fetch"] * 3
    assert client.decoded_in == {threading.current_thread().name}


def test_a_page_fetched_ahead_is_not_applied_once_the_cursor_moved_and_the_pull_goes_on_from_there(tmp_path):
    """Something else moved the cursor while the next page was on its way (a page poke applied, another
    process): that page starts elsewhere, so it is dropped, and the pull goes on from where the cursor is."""
    cache = cache_at(tmp_path, "0")
    other = Cache(cache.path)

    def move_the_cursor(n: int) -> None:
        if n == 1 and other.state("cursor") != "3":
            wait_until(lambda: other.state("cursor") == "1", "page 0 was not applied")
            other.set_state("cursor", "3")  # as if pages 1 and 2 had come another way

    client = ScriptedPulls(pages=5, on_fetch=move_the_cursor)
    assert SyncEngine(cache.path, client).pull(cache) is True  # type: ignore[arg-type]
    assert texts(cache) == ["message 0", "message 3", "message 4"]  # page 1 (fetched ahead) dropped
    assert cache.state("cursor") == "5"
    assert client.requested[:2] == [0, 1] and client.requested[-2:] == [3, 4]  # (page 2, asked for ahead: dropped)


def test_a_pages_repeated_upserts_of_a_row_leave_its_last_version(tmp_path):
    cache = cache_at(tmp_path, "0")

    def conversation(status: str, version: int) -> dict:
        data = {"id": "c1", "customer_id": "u1", "status": status, "tags": ["vip"], "version": version}
        return {"entity": "conversations", "op": "upsert", "id": "c1", "data": data}

    note = {"entity": "interactions", "op": "upsert", "id": "i1", "data": {"id": "i1", "text": "hi"}}
    page = [conversation("open", 1), note, conversation("closed", 3), conversation("pending", 2)]
    assert cache.apply_changes(page, "1") == 4
    row = cache.db.execute("SELECT status, version, tags FROM conversations").fetchall()
    assert row == [("pending", 2, '["vip"]')]  # the page's order decides, not the version
    assert texts(cache) == ["hi"]
