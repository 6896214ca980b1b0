"""The inbound path: identity resolution, threading, routing, SLA clocks and merge suggestions."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from agentdesk.server import routing, sla
from agentdesk.server.auth import new_id
from agentdesk.server.db import session
from agentdesk.server.inbound import Inbound, InboundError, ingest, thread_subject
from agentdesk.server.models import (
    Agent,
    AgentTeam,
    Conversation,
    Customer,
    Identity,
    Interaction,
    MergeSuggestion,
    RoutingRule,
    SlaBreach,
    SlaPolicy,
    Team,
)
from conftest import build_world


@pytest.fixture
def world(db_engine):
    return build_world(db_engine)


def feed(engine, **kw) -> tuple:
    with session(engine) as db:
        result = ingest(db, Inbound(**kw))
        return result, db.get(Conversation, result.conversation_id)


def test_sms_whatsapp_and_calls_from_one_number_reach_one_customer(db_engine, world):
    first, sms = feed(db_engine, channel="sms", address="(415) 555-0199", text="Hi, it's Jo")
    again, same = feed(db_engine, channel="sms", address="+1 415 555 0199", text="still there?")
    wa, _ = feed(db_engine, channel="whatsapp", address="whatsapp:+14155550199", text="on WhatsApp now")
    call, voice = feed(db_engine, channel="phone", address="4155550199", metadata={"duration": 93})
    assert first.customer_id == again.customer_id == wa.customer_id == call.customer_id
    assert again.conversation_id == first.conversation_id  # SMS joins the open SMS conversation
    assert len({first.conversation_id, wa.conversation_id, call.conversation_id}) == 3  # one per channel
    with session(db_engine) as db:
        identities = db.exec(select(Identity).where(Identity.customer_id == first.customer_id)).all()
        assert [(i.kind, i.address) for i in identities] == [("phone", "+14155550199")]
        assert db.get(Customer, first.customer_id).display_name == "+14155550199"


def test_a_known_number_reaches_the_existing_customer(db_engine, world):
    result, _ = feed(db_engine, channel="sms", address="415-555-0000", text="maria again")
    assert result.customer_id == world.customers["maria"]
    assert result.conversation_id == world.conversations["maria-sms"]


def test_a_repeated_external_id_is_ignored(db_engine, world):
    first, _ = feed(db_engine, channel="sms", address="+14155550123", text="once", external_id="SM1")
    second, _ = feed(db_engine, channel="sms", address="+14155550123", text="once", external_id="SM1")
    assert second.duplicate and not first.duplicate
    assert second.interaction_id == first.interaction_id
    with session(db_engine) as db:
        assert len(db.exec(select(Interaction).where(Interaction.text == "once")).all()) == 1


def test_email_threads_by_reply_headers_then_subject(db_engine, world):
    first, _ = feed(db_engine, channel="email", address="Sam <sam@example.org>", subject="Broken invoice", text="hi", external_id="<a@x>")
    by_header, _ = feed(db_engine, channel="email", address="sam@example.org", subject="totally different", references=["<a@x>"], external_id="<b@x>")
    by_subject, _ = feed(db_engine, channel="email", address="SAM@example.org", subject="RE: Fwd:  broken INVOICE", external_id="<c@x>")
    other, _ = feed(db_engine, channel="email", address="sam@example.org", subject="A new question", external_id="<d@x>")
    assert first.conversation_id == by_header.conversation_id == by_subject.conversation_id
    assert other.conversation_id != first.conversation_id
    assert thread_subject("Re: AW: Fwd[2]: Hello   World") == "hello world"


def test_each_chat_session_is_one_conversation(db_engine, world):
    a1, _ = feed(db_engine, channel="chat", address="visitor-7", thread_key="s1", text="hello")
    a2, _ = feed(db_engine, channel="chat", address="visitor-7", thread_key="s1", text="anyone?")
    b1, _ = feed(db_engine, channel="chat", address="visitor-7", thread_key="s2", text="back again")
    assert a1.conversation_id == a2.conversation_id != b1.conversation_id


def test_bad_addresses_and_channels_are_refused_with_a_reason(db_engine, world):
    with pytest.raises(InboundError, match="not a valid phone number"):
        feed(db_engine, channel="sms", address="+1 555", text="x")
    with pytest.raises(InboundError, match="Unknown channel"):
        feed(db_engine, channel="fax", address="+14155550100", text="x")
    with pytest.raises(InboundError, match="email"):
        feed(db_engine, channel="email", address="not an address", text="x")


def test_routing_rules_pick_the_team(db_engine, world):
    with session(db_engine) as db:
        db.add(RoutingRule(id=new_id(), position=1, keyword="refund", team_id=world.teams["Billing"]))
        db.add(RoutingRule(id=new_id(), position=2, channel="sms", team_id=world.teams["Support"]))
        db.commit()
    _, refund = feed(db_engine, channel="sms", address="+14155550301", text="I want a REFUND")
    _, plain = feed(db_engine, channel="sms", address="+14155550302", text="hello")
    _, mail = feed(db_engine, channel="email", address="z@example.org", text="hello")
    assert refund.team_id == world.teams["Billing"]
    assert plain.team_id == world.teams["Support"]
    assert mail.team_id == world.teams["Billing"]  # no rule matched: the first active team by name


def _team_of_three(db_engine, world, capacity: int) -> list[str]:
    """Billing gets two more agents; all three available with `capacity` SMS each. Returns ids in order."""
    with session(db_engine) as db:
        for n in (1, 2):
            agent = Agent(id=new_id(), name=f"Extra {n}", email=f"extra{n}@example.com")
            db.add(agent)
            db.flush()
            db.add(AgentTeam(id=new_id(), agent_id=agent.id, team_id=world.teams["Billing"]))
        members = db.exec(select(Agent).join(AgentTeam, AgentTeam.agent_id == Agent.id).where(AgentTeam.team_id == world.teams["Billing"])).all()
        for agent in members:
            agent.presence, agent.capacity = "available", {"sms": capacity}
            db.add(agent)
        db.commit()
        return sorted(a.id for a in members)


def test_round_robin_among_available_agents_with_capacity(db_engine, world):
    ids = _team_of_three(db_engine, world, capacity=1)
    assignees = [feed(db_engine, channel="sms", address=f"+1415555{n:04d}", text="hi")[1].assignee_id for n in range(400, 404)]
    assert assignees[:3] == ids  # each in turn
    assert assignees[3] is None  # everyone is at capacity: it waits in the team queue


def test_away_agents_and_queue_teams_get_nothing(db_engine, world):
    ids = _team_of_three(db_engine, world, capacity=5)
    with session(db_engine) as db:
        for agent_id in ids[:2]:
            agent = db.get(Agent, agent_id)
            agent.presence = "away"
            db.add(agent)
        db.commit()
    assert {feed(db_engine, channel="sms", address=f"+1415555{n:04d}", text="hi")[1].assignee_id for n in range(410, 413)} == {ids[2]}
    with session(db_engine) as db:
        team = db.get(Team, world.teams["Billing"])
        team.routing = "queue"
        db.add(team)
        db.commit()
    assert feed(db_engine, channel="sms", address="+14155550420", text="hi")[1].assignee_id is None


def test_unanswered_conversations_return_to_the_queue_after_the_grace_time(db_engine, world):
    ids = _team_of_three(db_engine, world, capacity=5)
    _, conversation = feed(db_engine, channel="sms", address="+14155550430", text="hi")
    owner = conversation.assignee_id
    assert owner in ids
    now = datetime.now(UTC)
    with session(db_engine) as db:
        agent = db.get(Agent, owner)
        agent.presence, agent.presence_at = "offline", now - timedelta(minutes=3)
        db.add(agent)
        db.commit()
        assert routing.return_unanswered(db, now, grace=timedelta(minutes=5)) == 0  # still within the grace time
        assert routing.return_unanswered(db, now, grace=timedelta(minutes=2)) == 1
        assert db.get(Conversation, conversation.id).assignee_id is None


def test_sla_clocks_start_stop_and_record_breaches(db_engine, world):
    with session(db_engine) as db:
        db.add(SlaPolicy(id=new_id(), first_response_minutes=240, next_response_minutes=120, resolution_minutes=2880))
        db.add(SlaPolicy(id=new_id(), channel="sms", priority="normal", first_response_minutes=30))
        db.commit()
    start = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)  # a Friday
    _, sms = feed(db_engine, channel="sms", address="+14155550440", text="hi", occurred_at=start)
    assert sms.first_response_due == start + timedelta(minutes=30)  # the most specific policy; Billing is 24x7
    assert sms.sla_due == sms.first_response_due
    with session(db_engine) as db:  # Billing now keeps office hours in New York: Fri 17:00 EST is 22:00 UTC
        team = db.get(Team, world.teams["Billing"])
        team.timezone, team.hours = "America/New_York", {d: "09:00-17:00" for d in ("mon", "tue", "wed", "thu", "fri")}
        db.add(team)
        db.commit()
    late = datetime(2026, 11, 20, 21, 30, tzinfo=UTC)  # 16:30 in New York
    _, mail = feed(db_engine, channel="email", address="late@example.org", subject="Q", text="?", occurred_at=late)
    assert mail.first_response_due == datetime(2026, 11, 23, 17, 30, tzinfo=UTC)  # 30 min Fri + 3h30 Mon from 09:00 EST
    with session(db_engine) as db:
        conversation = db.get(Conversation, sms.id)
        sla.on_agent_reply(db, conversation, start + timedelta(minutes=45))  # 15 minutes late
        assert conversation.first_response_at == start + timedelta(minutes=45)
        assert conversation.sla_due == conversation.resolution_due
        db.add(conversation)
        db.commit()
        breaches = db.exec(select(SlaBreach).where(SlaBreach.conversation_id == sms.id)).all()
        assert [(b.kind, b.due_at) for b in breaches] == [("first_response", start + timedelta(minutes=30))]
        # A week later the email is still unanswered (its 48 business hours of resolution are not over yet).
        assert sla.sweep_breaches(db, datetime(2026, 11, 30, tzinfo=UTC)) == 1
        assert sla.sweep_breaches(db, datetime(2026, 11, 30, tzinfo=UTC)) == 0  # recorded once
        missed = db.exec(select(SlaBreach).where(SlaBreach.conversation_id == mail.id)).all()
        assert [(b.kind, b.due_at) for b in missed] == [("first_response", mail.first_response_due)]


def test_next_response_clock_runs_after_an_answer(db_engine, world):
    with session(db_engine) as db:
        db.add(SlaPolicy(id=new_id(), first_response_minutes=60, next_response_minutes=20))
        db.commit()
    start = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)
    _, conversation = feed(db_engine, channel="sms", address="+14155550450", text="hi", occurred_at=start)
    with session(db_engine) as db:
        conversation = db.get(Conversation, conversation.id)
        sla.on_agent_reply(db, conversation, start + timedelta(minutes=5))
        assert conversation.sla_due is None  # answered, and no resolution target
        db.add(conversation)
        db.commit()
    _, conversation = feed(db_engine, channel="sms", address="+14155550450", text="thanks, one more", occurred_at=start + timedelta(minutes=10))
    assert conversation.next_response_due == start + timedelta(minutes=30)
    assert conversation.sla_due == conversation.next_response_due


def test_auto_replies_do_not_reopen_or_restart_clocks(db_engine, world):
    _, conversation = feed(db_engine, channel="email", address="ooo@example.org", subject="Order", text="hi")
    with session(db_engine) as db:
        closed = db.get(Conversation, conversation.id)
        closed.status = "closed"
        db.add(closed)
        db.commit()
    _, after = feed(db_engine, channel="email", address="ooo@example.org", subject="Re: Order", text="I am out of office",
                    references=[], auto_reply=True)
    assert after.status == "closed"


def test_contacts_in_a_signature_suggest_a_merge_never_apply_it(db_engine, world):
    result, _ = feed(db_engine, channel="email", address="maria.work@example.org", subject="Hi",
                     text="Hello,\n\n--\nMaría López\nMobile: +1 (415) 555-0000\n")
    with session(db_engine) as db:
        suggestions = db.exec(select(MergeSuggestion)).all()
        assert len(suggestions) == 1
        assert {suggestions[0].customer_id, suggestions[0].other_id} == {result.customer_id, world.customers["maria"]}
        assert "+14155550000" in suggestions[0].reason
        assert db.get(Customer, result.customer_id).merged_into is None  # nothing merged silently


def test_concurrent_first_messages_from_one_new_number_make_one_customer(db_engine, world):
    barrier = threading.Barrier(4)
    results = []

    def send(n: int) -> None:
        barrier.wait()
        with session(db_engine) as db:
            results.append(ingest(db, Inbound(channel="sms", address="+14155550460", text=f"msg {n}")))

    threads = [threading.Thread(target=send, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    assert len({r.customer_id for r in results}) == 1
    assert len({r.conversation_id for r in results}) == 1


def test_an_auto_reply_with_no_thread_does_not_open_a_conversation(db_engine, world):
    _, bounce = feed(db_engine, channel="email", address="mailer-daemon@example.org", subject="Undelivered Mail",
                     text="550 no such user", auto_reply=True)
    assert bounce.status == "closed"
    assert bounce.assignee_id is None and bounce.sla_due is None


def test_a_known_message_id_does_not_thread_another_senders_mail(db_engine, world):
    first, _ = feed(db_engine, channel="email", address="owner@example.org", subject="Account", text="hi", external_id="<own@x>")
    other, _ = feed(db_engine, channel="email", address="intruder@example.org", subject="Re: Account", references=["<own@x>"],
                    external_id="<in@x>")
    assert other.conversation_id != first.conversation_id
