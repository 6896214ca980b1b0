"""The whole path: a real server on loopback, a real cache, the desk driven by Pilot."""

from __future__ import annotations

import time

from agentdesk.config import Settings
from agentdesk.desk import build_desk
from agentdesk.tui.widgets.queue import QueueList
from agentdesk.tui.widgets.timeline import Timeline


async def wait_until(pilot, predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        await pilot.pause(0.05)


def timeline_text(app) -> str:
    return "\n".join("".join(segment.text for segment in line) for line in app.query_one(Timeline)._lines)


async def test_reply_typed_in_the_desk_reaches_the_server_exactly_once(live_server, tmp_path):
    settings = Settings(sync={"poll_interval": 0.2})
    app = build_desk(settings, live_server.url, live_server.world.tokens["alice@example.com"], tmp_path)
    async with app.run_test(size=(160, 45)) as pilot:
        queue = app.query_one(QueueList)
        await wait_until(pilot, lambda: queue.total == 2)  # María's two Billing conversations; Ken's are Support's
        await wait_until(pilot, lambda: "Hello from María López" in timeline_text(app))
        await pilot.press("j", "k", "r")
        await pilot.press(*"We refunded you.")
        await pilot.press("ctrl+s")
        assert app.query_one("#reply").text == ""
        await wait_until(pilot, lambda: len(live_server.interactions("We refunded you.")) == 1)
        await wait_until(pilot, lambda: app.cache.outbox_count() == 0)
        # Accepted, and waiting in the server's outbox: this server has no provider for the channel configured.
        await wait_until(pilot, lambda: "◷ queued" in timeline_text(app))
        await pilot.pause(0.5)  # a few more sync rounds must not send it again
    stored = live_server.interactions("We refunded you.")
    assert len(stored) == 1
    assert stored[0].direction == "outbound" and stored[0].author_id == live_server.world.agents["alice@example.com"]


async def test_a_draft_stays_with_its_conversation(live_server, tmp_path):
    app = build_desk(Settings(), live_server.url, live_server.world.tokens["alice@example.com"], tmp_path)
    async with app.run_test(size=(160, 45)) as pilot:
        queue = app.query_one(QueueList)
        await wait_until(pilot, lambda: queue.total == 2)
        first = queue.current.id
        await pilot.press("r", *"half a thought", "escape", "j")
        assert queue.current.id != first
        assert app.query_one("#reply").text == ""
        await pilot.press("k")
        assert app.query_one("#reply").text == "half a thought"
    assert app.cache.latest_draft(first)[1] == "half a thought"


async def test_a_full_disk_keeps_the_reply_in_the_composer(live_server, tmp_path):
    app = build_desk(Settings(), live_server.url, live_server.world.tokens["alice@example.com"], tmp_path)
    async with app.run_test(size=(160, 45)) as pilot:
        queue = app.query_one(QueueList)
        await wait_until(pilot, lambda: queue.total == 2)
        pages = app.cache.db.execute("PRAGMA page_count").fetchone()[0]
        app.cache.db.execute(f"PRAGMA max_page_count = {pages}")
        big = "Your refund is on its way. " * 5000
        await pilot.press("r")
        app.query_one("#reply").load_text(big)
        await pilot.press("ctrl+s")
        assert app.is_running
        assert app.query_one("#reply").text == big
        assert any("Could not queue the reply" in str(n.message) for n in app._notifications)
