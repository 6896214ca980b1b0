"""Call and delivery actions from the desk's keys (callback, disposition, retry), against a real server:
on screen at once from the cache, then applied on the server through the sync engine."""

from __future__ import annotations

from sqlmodel import select

from agentdesk.server import delivery
from agentdesk.server.changes import begin_write
from agentdesk.server.db import session
from agentdesk.server.inbound import Inbound, ingest
from agentdesk.server.models import Delivery, Interaction
from agentdesk.tui.widgets.queue import QueueList
from test_conversation_actions import desk, notifications, screen_text, wait_until


def server_rows(live_server, model, *where):
    with session(live_server.engine) as db:
        return list(db.exec(select(model).where(*where)))


async def test_callback_queues_a_call_for_the_voice_provider(live_server, tmp_path):
    async with desk(live_server, tmp_path) as (app, pilot, gate):
        conversation_id = app.open_state["id"]
        gate.hold()
        await pilot.press("b")
        assert "Callback" in screen_text(app)  # the outbound call is on the timeline before the server knows
        gate.release()
        await wait_until(pilot, lambda: app.cache.outbox_count() == 0)
    calls = server_rows(live_server, Interaction, Interaction.conversation_id == conversation_id, Interaction.channel == "phone")
    assert [(c.direction, c.meta.get("call")) for c in calls] == [("outbound", "callback")]
    queued = server_rows(live_server, Delivery, Delivery.interaction_id == calls[0].id)
    assert [(d.channel, d.status, d.to_address) for d in queued] == [("phone", "pending", "+14155550000")]  # María's number


async def test_disposition_of_the_latest_call(live_server, tmp_path):
    async with desk(live_server, tmp_path) as (app, pilot, gate):
        with session(live_server.engine) as db:  # María calls (her number, written another way)
            call = ingest(db, Inbound(channel="phone", address="+1 415 555 0000", text="Inbound call", external_id="CA1"))
        queue = app.query_one(QueueList)
        await pilot.press("tab")  # the Team tab: the call is there, whether routing gave it to Alice or not
        await wait_until(pilot, lambda: queue.total == 3)
        app.open_conversation(next(queue.row(i) for i in range(queue.total) if queue.row(i).id == call.conversation_id))
        await pilot.press("d", "down", "enter")  # the second choice: follow-up
        assert "follow-up" in screen_text(app)  # on the timeline at once
        await wait_until(pilot, lambda: app.cache.outbox_count() == 0)
        assert notifications(app, "warning", "error") == []
    stored = server_rows(live_server, Interaction, Interaction.id == call.interaction_id)
    assert stored[0].meta["disposition"] == "follow-up"


async def test_a_failed_reply_is_shown_and_sent_again(live_server, tmp_path):
    async with desk(live_server, tmp_path) as (app, pilot, gate):
        conversation_id = app.open_state["id"]
        app.cache.queue_interaction(app.me, conversation_id, "email", "Your refund is on its way.")
        app.engine.wake()
        await wait_until(pilot, lambda: len(server_rows(live_server, Delivery)) == 1)
        with session(live_server.engine) as db:  # the relay refused it
            begin_write(db)
            row = db.exec(select(Delivery)).one()
            delivery._set_status(db, row, "failed", error="The mail server refused the address: 550 no such user")
            db.commit()
        await wait_until(pilot, lambda: "✗ failed" in screen_text(app))  # pulled, and the timeline repainted
        assert "Not delivered: The mail server refused the address: 550 no such user" in screen_text(app)
        await pilot.press("R")
        assert "◷ queued" in screen_text(app)
        await wait_until(pilot, lambda: app.cache.outbox_count() == 0)
    assert [(d.status, d.error) for d in server_rows(live_server, Delivery)] == [("pending", None)]
