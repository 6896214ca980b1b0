"""Search (`/`): the FTS5 index follows every way the cache changes, and the search screen finds, shows
(hostile text inert) and opens what it found."""

from __future__ import annotations

import json
import sqlite3

from agentdesk.store.cache import Cache
from agentdesk.store.schema import FTS_DROP, FTS_TABLES
from agentdesk.store.search import NOT_READY, search
from agentdesk.tui.app import AgentDesk
from agentdesk.tui.screens.search import SearchResultsView, SearchScreen
from agentdesk.tui.widgets.timeline import Timeline

from queue_world import ME, NOW, build
from test_untrusted_text import HOSTILE, VISIBLE, screen_lines

COLUMNS = ("id", "conversation_id", "customer_id", "channel", "direction", "author_id", "text", "subject", "meta",
           "delivery_status", "occurred_at")


def interaction(id_: str, text: str, conversation: str = "c-mine-sms", customer: str = "cu-ana") -> dict:
    values = (id_, conversation, customer, "sms", "inbound", None, text, None, "{}", None, "2026-11-23T12:00:00.000Z")
    return {"entity": "interactions", "op": "upsert", "id": id_, "data": dict(zip(COLUMNS, values, strict=True))}


def found(cache: Cache, query: str) -> list[str]:
    return [hit.interaction_id or hit.customer_id for hit in search(cache.db, query)]


def assert_index_intact(cache: Cache) -> None:
    for table in FTS_TABLES:  # external content: compares the index with the table, row by row
        cache.db.execute(f"INSERT INTO {table}_fts ({table}_fts) VALUES ('integrity-check')")


def test_the_index_follows_pulled_upserts_replacements_and_deletes(tmp_path):
    cache = Cache(build(tmp_path / "cache.sqlite3"))
    assert found(cache, "latest c mine sms") == ["i-c-mine-sms"]  # built by finish_bootstrap
    cache.apply_changes([interaction("i-new", "the wombat ate my router")], "1")
    assert found(cache, "wombat") == ["i-new"]
    cache.apply_changes([interaction("i-new", "a quokka now")], "2")  # INSERT OR REPLACE: a delete and an insert
    assert found(cache, "wombat") == [] and found(cache, "quokka") == ["i-new"]
    cache.apply_changes([{"entity": "interactions", "op": "delete", "id": "i-new", "data": None}], "3")
    assert found(cache, "quokka") == []
    cache.apply_changes([{"entity": "conversations", "op": "delete", "id": "c-mine-mail", "data": None}], "4")
    assert found(cache, "c mine mail") == []  # its messages left with it
    assert_index_intact(cache)


def test_a_pulled_message_is_stored_exactly_as_a_bootstrapped_one(tmp_path):
    """A NUL and an emoji survive a pull (the search index's triggers in place) unchanged, and the row equals
    what a bootstrap page stores."""
    cache = Cache(build(tmp_path / "cache.sqlite3"))
    pulled = interaction("i-pulled", "before\x00after 🦘 end")
    pulled["data"]["meta"] = {"csat": 5, "note": "🙂\x00"}
    cache.apply_changes([pulled], "1")
    loaded = interaction("i-loaded", "before\x00after 🦘 end")
    loaded["data"]["meta"] = json.dumps(pulled["data"]["meta"])  # a bootstrap page carries JSON columns as text
    cache.apply_bootstrap_page("interactions", COLUMNS, [list(loaded["data"].values())], None)

    def stored(id_: str) -> list[tuple]:
        columns = ", ".join(f"{c}, typeof({c})" for c in COLUMNS if c != "id")
        return cache.db.execute(f"SELECT {columns} FROM interactions WHERE id = ?", (id_,)).fetchall()

    assert stored("i-pulled") == stored("i-loaded")
    text, meta = cache.db.execute("SELECT text, meta FROM interactions WHERE id = 'i-pulled'").fetchone()
    assert text == "before\x00after 🦘 end" and json.loads(meta) == pulled["data"]["meta"]
    assert set(found(cache, "before")) == {"i-pulled", "i-loaded"}
    assert_index_intact(cache)


def test_local_replies_renames_and_new_addresses_are_found(tmp_path):
    cache = Cache(build(tmp_path / "cache.sqlite3"))
    reply = cache.queue_interaction(ME, "c-mine-sms", "sms", "Your refund is on its way")
    assert found(cache, "refund way") == [reply]
    cache.queue_row_change("customers", "cu-ana", "edit_customer", {}, {"display_name": "Anabel Zuniga"})
    assert found(cache, "zuniga") == ["cu-ana"] and found(cache, "lima") == []
    cache.apply_changes([{"entity": "identities", "op": "upsert", "id": "id-1",
                          "data": {"id": "id-1", "customer_id": "cu-dee", "kind": "phone", "address": "+14155550123"}}], "1")
    assert found(cache, "14155550123") == ["cu-dee"]
    assert found(cache, "from:+1415555") == ["i-c-free-call"]  # a phone prefix: the customer's messages
    assert_index_intact(cache)


def test_a_tag_with_accents_is_found(tmp_path):
    """Tag lists are stored as JSON with non-ASCII escaped (caf\u00e9): the filter compares decoded values."""
    cache = Cache(build(tmp_path / "cache.sqlite3"))
    with cache.write() as db:
        db.execute("""UPDATE conversations SET tags = '["caf\\u00e9"]' WHERE id = 'c-closed'""")
    assert found(cache, "latest tag:café") == ["i-c-closed"]


def test_filters_narrow_the_words(tmp_path):
    cache = Cache(build(tmp_path / "cache.sqlite3"))
    assert set(found(cache, "latest channel:email")) == {"i-c-mine-mail", "i-c-closed", "i-c-support"}
    assert found(cache, "latest channel:email status:closed") == ["i-c-closed"]
    assert set(found(cache, "latest tag:vip")) == {"i-c-free-chat", "i-c-sams"}
    assert found(cache, "latest after:2026-11-23 before:2026-11-23T") == []  # a bad date: a message instead
    assert search(cache.db, "latest before:2026-11-23T").problems
    assert found(cache, "from:nobody-at-all") == [] and search(cache.db, "from:nobody-at-all").problems


def test_a_reset_mirror_drops_the_index_and_the_next_bootstrap_builds_it(tmp_path):
    cache = Cache(build(tmp_path / "cache.sqlite3"))
    cache.reset_mirror()
    assert search(cache.db, "latest").problems == (NOT_READY,)
    cache.apply_bootstrap_page("interactions", COLUMNS, [list(interaction("i-back", "back again")["data"].values())], None)
    cache.finish_bootstrap("again")
    assert found(cache, "back again") == ["i-back"]
    assert_index_intact(cache)


def test_an_upgraded_cache_gets_a_built_index(tmp_path):
    path = build(tmp_path / "cache.sqlite3")
    db = sqlite3.connect(path)  # back to what a bootstrapped version-2 cache had: no index, no v3 tables
    db.executescript(FTS_DROP + "DROP INDEX identities_address; DROP TABLE merge_suggestions; DROP TABLE seen;"
                     " PRAGMA user_version = 2;")
    db.close()
    cache = Cache(path)  # opens at once: a million messages are indexed by the sync thread, not here
    assert search(cache.db, "latest").problems == (NOT_READY,)
    assert cache.state("bootstrapped") is None  # the upgrade reloads merge suggestions, then finishes a bootstrap
    cache.finish_bootstrap(cache.state("bootstrap.cursor") or "")  # what the sync engine does after that reload
    assert found(cache, "latest c closed") == ["i-c-closed"]
    assert_index_intact(cache)


async def wait_for(pilot, condition, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("timed out")


async def test_typing_finds_and_enter_opens_the_conversation_at_the_interaction(tmp_path, monkeypatch):
    monkeypatch.setattr("agentdesk.tui.widgets.timeline.HIGHLIGHT_SECONDS", 60.0)  # a stalled CI loop must not outlast it
    app = AgentDesk(build(tmp_path / "cache.sqlite3"), ME, engine=None, clock=lambda: NOW)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("slash")
        assert isinstance(app.screen, SearchScreen)
        await pilot.press(*"latest words of c-clo")  # the closed conversation: not in the queue
        view = app.screen.query_one(SearchResultsView)
        await wait_for(pilot, lambda: [h.interaction_id for h in view.hits] == ["i-c-closed"])
        assert "Ben Okoro" in "\n".join(screen_lines(app))
        await pilot.press("enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, SearchScreen))
        assert app.open_row is not None and app.open_row.id == "c-closed"
        await wait_for(pilot, lambda: app.query_one(Timeline).highlighted == "i-c-closed")


async def test_up_and_down_pick_among_the_hits(tmp_path):
    app = AgentDesk(build(tmp_path / "cache.sqlite3"), ME, engine=None, clock=lambda: NOW)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("slash", *"latest", "space")
        view = app.screen.query_one(SearchResultsView)
        await wait_for(pilot, lambda: len(view.hits) == 8)
        await pilot.press("down", "down", "up")
        chosen = view.hits[1]
        await pilot.press("enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, SearchScreen))
        assert app.open_row.id == chosen.conversation_id


async def test_a_bad_filter_is_explained_on_the_screen(tmp_path):
    app = AgentDesk(build(tmp_path / "cache.sqlite3"), ME, engine=None, clock=lambda: NOW)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("slash", *"latest channel:fax")
        await wait_for(pilot, lambda: "not a channel" in "\n".join(screen_lines(app)))
        await pilot.press("escape")
        assert not isinstance(app.screen, SearchScreen) and app.is_running


async def test_hostile_names_and_snippets_render_literally(tmp_path):
    names = {"cu-ana": HOSTILE[0] + " Ana", "cu-ben": HOSTILE[1] + " Ben"}
    previews = {"c-mine-sms": "wombat " + HOSTILE[2], "c-mine-mail": "wombat " + HOSTILE[3] + " \x9b31m"}
    app = AgentDesk(build(tmp_path / "cache.sqlite3", names=names, previews=previews), ME, engine=None, clock=lambda: NOW)
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.press("slash", *"wombat")
        view = app.screen.query_one(SearchResultsView)
        await wait_for(pilot, lambda: len(view.hits) == 2)
        text = "\n".join(screen_lines(app))  # asserts no ESC / C1 reached the screen
        assert all(v in text for v in VISIBLE) and "<9B>31m" in text
        assert app.is_running
