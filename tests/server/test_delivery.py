"""The server outbox's claim and lease rules, on each backend: an attempt records its outcome only while it
holds the row's lease, so a slow send that another process took over cannot overwrite (or double) it."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlmodel import select

from agentdesk.domain.clock import utcnow
from agentdesk.server import delivery
from agentdesk.server.db import session
from agentdesk.server.models import Conversation, Delivery, Interaction
from conftest import build_world


def queued_reply(engine) -> str:
    world = build_world(engine)
    with session(engine) as db:
        conversation = db.get(Conversation, world.conversations["maria-sms"])
        reply = Interaction(id=uuid.uuid4().hex, conversation_id=conversation.id, customer_id=conversation.customer_id,
                            channel="sms", direction="outbound", text="On its way", author_id=world.agents["alice@example.com"])
        db.add(reply)
        db.flush()
        delivery.enqueue(db, reply, "+14155550000")
        db.commit()
        return reply.id


def stored(engine) -> Delivery:
    with session(engine) as db:
        return db.exec(select(Delivery)).one()


def test_an_attempt_whose_lease_was_taken_over_records_nothing(db_engine):
    reply_id = queued_reply(db_engine)
    [(slow, reconcile)] = delivery._claim(db_engine, {"sms"}, utcnow(), 1)
    assert not reconcile and slow.interaction_id == reply_id and stored(db_engine).status == "sending"

    # The slow attempt outlives its lease: another process takes the row over to reconcile it.
    later = slow.lease_until + timedelta(seconds=1)
    [(takeover, reconcile)] = delivery._claim(db_engine, {"sms"}, later, 1)
    assert reconcile and takeover.lease_until > slow.lease_until

    delivery._settle(db_engine, slow, "sent", provider_id="SM" + "1" * 32)  # too late: not its row any more
    row = stored(db_engine)
    assert (row.status, row.provider_id, row.next_attempt_at) == ("sending", None, takeover.lease_until)

    delivery._settle(db_engine, takeover, "sent", provider_id="SM" + "2" * 32)  # the holder records
    assert (stored(db_engine).status, stored(db_engine).provider_id) == ("sent", "SM" + "2" * 32)


def test_a_claimed_row_is_not_claimed_again_while_its_lease_runs(db_engine):
    queued_reply(db_engine)
    assert len(delivery._claim(db_engine, {"sms"}, utcnow(), 5)) == 1
    assert delivery._claim(db_engine, {"sms"}, utcnow() + delivery.LEASE - timedelta(seconds=1), 5) == []
