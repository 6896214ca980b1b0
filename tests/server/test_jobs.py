"""The periodic server jobs: snoozes wake, breaches are recorded, absent agents' waiting work goes back."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select

from agentdesk.domain.clock import utcnow
from agentdesk.server.db import session
from agentdesk.server.jobs import JobsConfig, run_once
from agentdesk.server.models import Agent, Conversation, SlaBreach
from conftest import build_world


def test_one_pass_of_the_jobs(db_engine):
    world = build_world(db_engine)
    now = utcnow()
    alice = world.agents["alice@example.com"]
    with session(db_engine) as db:
        snoozed = db.get(Conversation, world.conversations["maria-email"])
        snoozed.status, snoozed.snooze_until, snoozed.sla_due = "snoozed", now - timedelta(minutes=1), None
        late = db.get(Conversation, world.conversations["ken-sms"])
        late.resolution_due = late.sla_due = now - timedelta(minutes=10)
        waiting = db.get(Conversation, world.conversations["maria-sms"])
        waiting.assignee_id, waiting.awaiting_since = alice, now - timedelta(minutes=30)
        away = db.get(Agent, alice)
        away.presence, away.presence_at = "away", now - timedelta(minutes=10)
        db.add_all([snoozed, late, waiting, away])
        db.commit()
    done = run_once(db_engine, now, JobsConfig(return_grace=timedelta(minutes=5)))
    assert done == {"woken": 1, "breaches": 1, "returned": 1}
    assert run_once(db_engine, now, JobsConfig(return_grace=timedelta(minutes=5))) == {"woken": 0, "breaches": 0, "returned": 0}
    with session(db_engine) as db:
        assert db.get(Conversation, world.conversations["maria-email"]).status == "open"
        assert db.get(Conversation, world.conversations["maria-sms"]).assignee_id is None
        breach = db.exec(select(SlaBreach)).one()
        assert (breach.conversation_id, breach.kind) == (world.conversations["ken-sms"], "resolution")
