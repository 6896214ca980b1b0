"""Push of intent mutations (server/mutations.py) through the real HTTP API of a live server."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import select

from agentdesk.domain.clock import to_iso, utcnow
from agentdesk.server.admin import add_agent
from agentdesk.server.auth import issue_token, new_id
from agentdesk.server.db import session
from agentdesk.server.models import (
    AgentTeam,
    Change,
    Conversation,
    Customer,
    Identity,
    Interaction,
    MergeRecord,
    MergeSuggestion,
    Mutation,
    SlaPolicy,
)
from agentdesk.server import changes, mutations
from agentdesk.server.mutations import wake_snoozed

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
NOT_VISIBLE = "no longer exists or is not visible to you."


# --- helpers -------------------------------------------------------------------------------------


def client(live, email: str = ALICE) -> httpx.Client:
    return httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {live.world.tokens[email]}"})


def mutation(kind: str, mutation_id: str | None = None, **args: Any) -> dict:
    return {"id": mutation_id or uuid.uuid4().hex, "kind": kind, "args": args}


def push(live, kind: str, email: str = ALICE, mutation_id: str | None = None, **args: Any) -> dict:
    with client(live, email) as http:
        response = http.post("/api/v1/sync/push", json={"mutations": [mutation(kind, mutation_id, **args)]})
    assert response.status_code == 200, response.text
    return response.json()["results"][0]


def applied(live, kind: str, email: str = ALICE, **args: Any) -> None:
    result = push(live, kind, email, **args)
    assert result["status"] == "applied", result


def pull(live, email: str = ALICE, cursor: str = "") -> tuple[list[dict], str]:
    """Every change after `cursor` the agent may see, and the cursor after them."""
    changes: list[dict] = []
    with client(live, email) as http:
        while True:
            page = http.get("/api/v1/sync/pull", params={"cursor": cursor}).json()
            changes += page["changes"]
            cursor = page["cursor"]
            if not page["has_more"]:
                return changes, cursor


def get(live, model, row_id: str):
    with session(live.engine) as db:
        return db.get(model, row_id)


def conversation(live, label: str = "maria-email") -> Conversation:
    return get(live, Conversation, live.world.conversations[label])


def change_count(live) -> int:
    with session(live.engine) as db:
        return db.execute(sa.select(sa.func.count()).select_from(Change)).scalar_one()


def add_customer(live, label: str, team: str, name: str) -> str:
    """Another customer with two identities and a conversation (with one message) in `team`."""
    with session(live.engine) as db:
        customer = Customer(id=new_id(), display_name=name)
        db.add(customer)
        db.add(Identity(id=new_id(), customer_id=customer.id, kind="email", address=f"{label}@customer.test"))
        db.add(Identity(id=new_id(), customer_id=customer.id, kind="phone", address=f"+1415{uuid.uuid4().int % 10**7:07d}"))
        db.flush()
        conv = Conversation(id=new_id(), customer_id=customer.id, channel="email", team_id=live.world.teams[team])
        db.add(conv)
        db.flush()
        db.add(Interaction(id=new_id(), conversation_id=conv.id, customer_id=customer.id, channel="email", direction="inbound", text=f"Hi, {name} here"))
        db.commit()
    live.world.customers[label] = customer.id
    live.world.conversations[f"{label}-email"] = conv.id
    return customer.id


def add_billing_agent(live, email: str = CAROL, name: str = "Carol Reed", role: str = "agent") -> str:
    with session(live.engine) as db:
        agent = add_agent(db, name, email, "Billing", role=role)
        live.world.tokens[email] = issue_token(db, agent)
        db.commit()
    live.world.agents[email] = agent.id
    return agent.id


def owners(live, customer_ids: list[str]) -> dict[str, str]:
    """row id -> customer id of every identity, conversation and interaction of these customers."""
    with session(live.engine) as db:
        return {
            row.id: row.customer_id
            for model in (Identity, Conversation, Interaction)
            for row in db.exec(select(model).where(model.customer_id.in_(customer_ids)))
        }


@pytest.fixture
def carol(live_server) -> str:
    """A second Billing agent, so two agents can race for one conversation."""
    return add_billing_agent(live_server)


# --- every kind applies --------------------------------------------------------------------------


def test_reply_stops_the_first_response_clock_and_note_does_not(live_server):
    cid = live_server.world.conversations["maria-email"]
    applied(live_server, "note", conversation_id=cid, interaction_id=new_id(), channel="email", text="internal")
    assert conversation(live_server).first_response_at is None
    applied(live_server, "reply", conversation_id=cid, interaction_id=new_id(), channel="email", text="Refunded.")
    after = conversation(live_server)
    assert after.first_response_at is not None  # sla.on_agent_reply ran
    assert after.version == 3
    assert [i.direction for i in live_server.interactions("internal")] == ["note"]


def test_assign_to_self_and_to_a_teammate(live_server, carol):
    world = live_server.world
    applied(live_server, "assign", conversation_id=world.conversations["maria-email"], agent_id=world.agents[ALICE])
    applied(live_server, "assign", conversation_id=world.conversations["maria-sms"], agent_id=carol)
    assert conversation(live_server).assignee_id == world.agents[ALICE]
    assert conversation(live_server, "maria-sms").assignee_id == carol
    assert conversation(live_server).version == 2
    changes, _ = pull(live_server)
    mine = [c for c in changes if c["entity"] == "conversations" and c["id"] == world.conversations["maria-email"]]
    assert mine[-1]["data"]["assignee_id"] == world.agents[ALICE] and mine[-1]["data"]["version"] == 2


def test_assign_refuses_a_taken_conversation_and_outsiders(live_server, carol):
    world = live_server.world
    cid = world.conversations["maria-email"]
    outsider = push(live_server, "assign", conversation_id=cid, agent_id=world.agents[BOB])
    assert outsider == {"id": outsider["id"], "status": "rejected", "reason": "Bob Stone is not in this conversation's team."}
    applied(live_server, "assign", CAROL, conversation_id=cid, agent_id=carol)
    taken = push(live_server, "assign", conversation_id=cid, agent_id=world.agents[ALICE])
    assert taken["status"] == "rejected" and taken["reason"] == "Carol Reed took this conversation first."
    assert conversation(live_server).assignee_id == carol


def test_unassign_is_for_the_assignee_or_a_supervisor(live_server, carol):
    world = live_server.world
    cid = world.conversations["maria-email"]
    applied(live_server, "assign", CAROL, conversation_id=cid, agent_id=carol)
    refused = push(live_server, "unassign", conversation_id=cid)  # Alice, a plain agent
    assert refused["status"] == "rejected" and refused["reason"] == "Only Carol Reed or a supervisor can unassign this conversation."
    add_billing_agent(live_server, "sue@example.com", "Sue Park", role="supervisor")
    applied(live_server, "unassign", "sue@example.com", conversation_id=cid)
    assert conversation(live_server).assignee_id is None
    applied(live_server, "assign", CAROL, conversation_id=cid, agent_id=carol)
    applied(live_server, "unassign", CAROL, conversation_id=cid)
    assert conversation(live_server).assignee_id is None and conversation(live_server).version == 5


def test_transfer_to_an_agent_of_the_same_team(live_server, carol):
    cid = live_server.world.conversations["maria-email"]
    applied(live_server, "assign", conversation_id=cid, agent_id=live_server.world.agents[ALICE])
    applied(live_server, "transfer", conversation_id=cid, to_agent_id=carol)
    assert conversation(live_server).assignee_id == carol
    refused = push(live_server, "transfer", conversation_id=cid, to_agent_id=live_server.world.agents[BOB])
    assert refused["reason"] == "Bob Stone is not in this conversation's team."


def test_transfer_to_another_team_and_its_agent(live_server):
    world = live_server.world
    applied(live_server, "transfer", conversation_id=world.conversations["maria-sms"], to_team_id=world.teams["Support"], to_agent_id=world.agents[BOB])
    moved = conversation(live_server, "maria-sms")
    assert (moved.team_id, moved.assignee_id, moved.version) == (world.teams["Support"], world.agents[BOB], 2)
    unknown = push(live_server, "transfer", conversation_id=world.conversations["maria-email"], to_team_id=new_id())
    assert unknown["reason"] == "That team does not exist or is not active."


def test_transfer_billing_to_support_moves_the_conversation_between_pulls(live_server):
    world = live_server.world
    cid, maria = world.conversations["maria-email"], world.customers["maria"]
    _, alice_cursor = pull(live_server, ALICE)
    _, bob_cursor = pull(live_server, BOB)
    applied(live_server, "assign", conversation_id=cid, agent_id=world.agents[ALICE])
    applied(live_server, "transfer", conversation_id=cid, to_team_id=world.teams["Support"])

    alice, _ = pull(live_server, ALICE, alice_cursor)
    assert {"entity": "conversations", "id": cid, "op": "delete"} in [{k: c[k] for k in ("entity", "id", "op")} for c in alice]
    assert not [c for c in alice if c["op"] == "upsert" and c["entity"] == "conversations" and c["data"]["team_id"] == world.teams["Support"]]

    bob, _ = pull(live_server, BOB, bob_cursor)
    upserts = {(c["entity"], c["id"]): c["data"] for c in bob if c["op"] == "upsert"}
    assert upserts[("conversations", cid)]["team_id"] == world.teams["Support"]
    assert upserts[("conversations", cid)]["assignee_id"] is None  # Alice is not in Support
    with session(live_server.engine) as db:
        interaction_ids = set(db.exec(select(Interaction.id).where(Interaction.conversation_id == cid)))
        identity_ids = set(db.exec(select(Identity.id).where(Identity.customer_id == maria)))
    assert interaction_ids and {i for (e, i) in upserts if e == "interactions"} == interaction_ids
    assert ("customers", maria) in upserts
    assert identity_ids <= {i for (e, i) in upserts if e == "identities"}


def test_set_status_closes_with_closed_at_and_reopens(live_server):
    cid = live_server.world.conversations["maria-email"]
    assert conversation(live_server).sla_due is not None
    applied(live_server, "set_status", conversation_id=cid, status="closed")
    closed = conversation(live_server)
    assert closed.status == "closed" and closed.closed_at is not None
    assert closed.sla_due is None  # sla.on_status stopped the clocks
    applied(live_server, "set_status", conversation_id=cid, status="open")
    reopened = conversation(live_server)
    assert (reopened.status, reopened.closed_at, reopened.version) == ("open", None, 3)
    applied(live_server, "set_status", conversation_id=cid, status="open")  # already open: nothing changes
    assert conversation(live_server).version == 3


def test_snooze_needs_a_future_time_and_wakes_when_due(live_server):
    cid = live_server.world.conversations["maria-email"]
    past = push(live_server, "snooze", conversation_id=cid, until=to_iso(utcnow() - timedelta(minutes=1)))
    assert past["status"] == "rejected" and past["reason"] == "A snooze must end in the future."
    until = utcnow() + timedelta(hours=2)
    applied(live_server, "snooze", conversation_id=cid, until=to_iso(until))
    snoozed = conversation(live_server)
    assert snoozed.status == "snoozed" and abs(snoozed.snooze_until - until) < timedelta(seconds=1)
    assert snoozed.sla_due is None

    _, cursor = pull(live_server)
    with session(live_server.engine) as db:
        assert wake_snoozed(db, utcnow()) == 0  # not yet
    with session(live_server.engine) as db:
        assert wake_snoozed(db, until + timedelta(seconds=1)) == 1
    woken = conversation(live_server)
    assert (woken.status, woken.snooze_until, woken.version) == ("open", None, 3)
    changes, _ = pull(live_server, ALICE, cursor)
    assert [c["data"]["status"] for c in changes if c["id"] == cid] == ["open"]


def test_set_priority_recomputes_the_sla_targets(live_server):
    with session(live_server.engine) as db:
        db.add(SlaPolicy(id=new_id(), priority="urgent", resolution_minutes=30))
        db.commit()
    cid = live_server.world.conversations["maria-email"]
    assert conversation(live_server).resolution_due is None
    applied(live_server, "set_priority", conversation_id=cid, priority="urgent")
    urgent = conversation(live_server)
    assert urgent.priority == "urgent" and urgent.resolution_due is not None  # sla.on_status ran
    bad = push(live_server, "set_priority", conversation_id=cid, priority="whenever")
    assert bad["status"] == "rejected" and bad["reason"].startswith("Invalid set_priority: priority:")


def test_tag_and_untag_a_conversation_normalised_and_idempotent(live_server):
    cid = live_server.world.conversations["maria-email"]
    applied(live_server, "tag", conversation_id=cid, tag="  VIP ")
    applied(live_server, "tag", conversation_id=cid, tag="vip")
    applied(live_server, "tag", conversation_id=cid, tag="Refund")
    assert conversation(live_server).tags == ["vip", "refund"]
    assert conversation(live_server).version == 3  # the second "vip" changed nothing
    applied(live_server, "untag", conversation_id=cid, tag="VIP")
    applied(live_server, "untag", conversation_id=cid, tag="vip")
    assert conversation(live_server).tags == ["refund"] and conversation(live_server).version == 4


@pytest.mark.parametrize("tag", ["", "   ", "x" * 51, "red\x1b[31m", "a\u202eb", "zero\u200bwidth", 7])
def test_bad_tags_are_rejected(live_server, tag):
    result = push(live_server, "tag", conversation_id=live_server.world.conversations["maria-email"], tag=tag)
    assert result["status"] == "rejected" and result["reason"].startswith("Invalid tag: tag:")
    assert conversation(live_server).tags == []


def test_tag_and_untag_a_customer(live_server):
    maria = live_server.world.customers["maria"]
    applied(live_server, "tag", customer_id=maria, tag="Churn-Risk")
    applied(live_server, "tag", customer_id=maria, tag="churn-risk")
    assert get(live_server, Customer, maria).tags == ["churn-risk"]
    changes, cursor = pull(live_server)
    assert [c["data"]["tags"] for c in changes if c["entity"] == "customers" and c["id"] == maria][-1] == ["churn-risk"]
    applied(live_server, "untag", customer_id=maria, tag="churn-risk")
    assert get(live_server, Customer, maria).tags == []
    both = push(live_server, "tag", customer_id=maria, conversation_id=live_server.world.conversations["maria-email"], tag="x")
    assert both["status"] == "rejected" and "either conversation_id or customer_id" in both["reason"]


def test_edit_customer_changes_only_the_given_fields(live_server):
    maria = live_server.world.customers["maria"]
    applied(live_server, "edit_customer", customer_id=maria, display_name="  María López-Díaz ", notes="Prefers SMS", language="es", tags=["B", "a", "b"])
    edited = get(live_server, Customer, maria)
    assert (edited.display_name, edited.first_name, edited.notes, edited.language, edited.tags) == (
        "María López-Díaz", "María", "Prefers SMS", "es", ["b", "a"]
    )
    changes, _ = pull(live_server)
    assert [c["data"]["notes"] for c in changes if c["entity"] == "customers" and c["id"] == maria][-1] == "Prefers SMS"
    bad = push(live_server, "edit_customer", customer_id=maria, language="English!")
    assert bad["status"] == "rejected" and get(live_server, Customer, maria).language == "es"


def test_dismiss_a_suggestion(live_server):
    world = live_server.world
    other = add_customer(live_server, "lena", "Billing", "Lena Ruiz")
    with session(live_server.engine) as db:
        suggestion = MergeSuggestion(id=new_id(), customer_id=world.customers["maria"], other_id=other, reason="same phone")
        db.add(suggestion)
        db.commit()
    applied(live_server, "dismiss_suggestion", suggestion_id=suggestion.id)
    applied(live_server, "dismiss_suggestion", suggestion_id=suggestion.id)  # already dismissed: no change
    assert get(live_server, MergeSuggestion, suggestion.id).status == "dismissed"
    changes, _ = pull(live_server)
    assert [c["data"]["status"] for c in changes if c["entity"] == "merge_suggestions"] == ["dismissed"]


# --- merge and unmerge ---------------------------------------------------------------------------


def test_merge_then_unmerge_restores_everything_exactly(live_server):
    world = live_server.world
    maria, lena = world.customers["maria"], add_customer(live_server, "lena", "Billing", "Lena Ruiz")
    with session(live_server.engine) as db:
        suggestion = MergeSuggestion(id=new_id(), customer_id=lena, other_id=maria, reason="same name")
        db.add(suggestion)
        db.commit()
    before = owners(live_server, [maria, lena])
    lena_rows = {row for row, owner in before.items() if owner == lena}
    merge_id = new_id()

    applied(live_server, "merge_customers", source_id=lena, target_id=maria, merge_id=merge_id)
    assert set(owners(live_server, [maria, lena]).values()) == {maria}
    assert get(live_server, Customer, lena).merged_into == maria
    record = get(live_server, MergeRecord, merge_id)
    assert {row for ids in record.moved.values() for row in ids} == lena_rows
    assert get(live_server, MergeSuggestion, suggestion.id).status == "accepted"
    assert get(live_server, Conversation, world.conversations["lena-email"]).version == 2

    # Something that arrives for the kept customer after the merge stays with her after the undo.
    add_customer(live_server, "later", "Billing", "Later Person")
    with session(live_server.engine) as db:
        late = db.get(Conversation, world.conversations["later-email"])
        late.customer_id = maria
        db.add(late)
        db.commit()

    applied(live_server, "unmerge", merge_id=merge_id)
    after = owners(live_server, [maria, lena])
    assert after.pop(late.id) == maria
    assert after == before
    assert get(live_server, Customer, lena).merged_into is None
    assert get(live_server, MergeRecord, merge_id).undone_at is not None
    again = push(live_server, "unmerge", merge_id=merge_id)
    assert again["status"] == "rejected" and again["reason"] == "This merge was already undone."


def test_merge_refusals(live_server):
    maria = live_server.world.customers["maria"]
    lena = add_customer(live_server, "lena", "Billing", "Lena Ruiz")
    itself = push(live_server, "merge_customers", source_id=maria, target_id=maria, merge_id=new_id())
    assert itself["reason"] == "A customer cannot be merged into themselves."
    bad_id = push(live_server, "merge_customers", source_id=lena, target_id=maria, merge_id="not-hex")
    assert bad_id["status"] == "rejected" and bad_id["reason"].startswith("Invalid merge_customers: merge_id:")
    merge_id = new_id()
    applied(live_server, "merge_customers", source_id=lena, target_id=maria, merge_id=merge_id)
    twice = push(live_server, "merge_customers", source_id=lena, target_id=maria, merge_id=new_id())
    assert twice["reason"] == f"That customer {NOT_VISIBLE}"  # lena has no conversations left to see her by


def test_merge_across_teams_tells_each_team_what_it_lost_and_gained(live_server):
    """Dana (in both teams) merges María (Billing) into Ken (Support): Billing drops María, gets Ken."""
    world = live_server.world
    maria, ken = world.customers["maria"], world.customers["ken"]
    dana = add_billing_agent(live_server, "dana@example.com", "Dana Fox")
    with session(live_server.engine) as db:
        db.add(AgentTeam(id=new_id(), agent_id=dana, team_id=world.teams["Support"]))
        db.commit()
    _, cursor = pull(live_server, ALICE)
    merge_id = new_id()
    applied(live_server, "merge_customers", "dana@example.com", source_id=maria, target_id=ken, merge_id=merge_id)
    changes, cursor = pull(live_server, ALICE, cursor)
    ops = {(c["entity"], c["id"], c["op"]) for c in changes}
    assert ("customers", maria, "delete") in ops
    assert ("customers", ken, "upsert") in ops
    ken_identities = {i.id for i in get_identities(live_server, ken)}
    assert {(e, i) for e, i, op in ops if e == "identities" and op == "upsert"} >= {("identities", i) for i in ken_identities}

    applied(live_server, "unmerge", "dana@example.com", merge_id=merge_id)
    changes, _ = pull(live_server, ALICE, cursor)
    ops = {(c["entity"], c["id"], c["op"]) for c in changes}
    assert ("customers", ken, "delete") in ops and ("customers", maria, "upsert") in ops
    ken_identities = {i.id for i in get_identities(live_server, ken)}
    assert {i for e, i, op in ops if e == "identities" and op == "delete"} == ken_identities  # Billing drops Ken whole


def get_identities(live, customer_id: str) -> list[Identity]:
    with session(live.engine) as db:
        return list(db.exec(select(Identity).where(Identity.customer_id == customer_id)))


# --- rejections: visibility, versions, extra fields, duplicates -----------------------------------


def _support_merge(live) -> str:
    """A merge inside Support (Bob's), for Alice to try to undo."""
    zoe = add_customer(live, "zoe", "Support", "Zoe Hart")
    merge_id = new_id()
    applied(live, "merge_customers", BOB, source_id=zoe, target_id=live.world.customers["ken"], merge_id=merge_id)
    return merge_id


def _support_suggestion(live) -> str:
    with session(live.engine) as db:
        suggestion = MergeSuggestion(id=new_id(), customer_id=live.world.customers["ken"], other_id=live.world.customers["maria"], reason="r")
        db.add(suggestion)
        db.commit()
    return suggestion.id


# kind -> (args against Support's conversation/customer, the same args naming nothing that exists)
def _cross_team_cases(live, kind: str) -> tuple[dict, dict]:
    world = live.world
    conv, ken, maria, ghost = world.conversations["ken-email"], world.customers["ken"], world.customers["maria"], new_id()
    conversation_args = {
        "reply": {"interaction_id": new_id(), "channel": "email", "text": "hi"},
        "note": {"interaction_id": new_id(), "channel": "email", "text": "hi"},
        "assign": {"agent_id": world.agents[ALICE]},
        "unassign": {},
        "transfer": {"to_team_id": world.teams["Billing"]},
        "set_status": {"status": "closed"},
        "snooze": {"until": to_iso(utcnow() + timedelta(days=1))},
        "set_priority": {"priority": "urgent"},
        "tag": {"tag": "vip"},
        "untag": {"tag": "vip"},
    }
    if kind in conversation_args:
        return {"conversation_id": conv, **conversation_args[kind]}, {"conversation_id": ghost, **conversation_args[kind]}
    return {
        "tag_customer": ({"customer_id": ken, "tag": "vip"}, {"customer_id": ghost, "tag": "vip"}),
        "edit_customer": ({"customer_id": ken, "notes": "x"}, {"customer_id": ghost, "notes": "x"}),
        "merge_source": ({"source_id": ken, "target_id": maria, "merge_id": new_id()}, {"source_id": ghost, "target_id": maria, "merge_id": new_id()}),
        "merge_target": ({"source_id": maria, "target_id": ken, "merge_id": new_id()}, {"source_id": maria, "target_id": ghost, "merge_id": new_id()}),
        "unmerge": ({"merge_id": _support_merge(live)}, {"merge_id": ghost}),
        "dismiss_suggestion": ({"suggestion_id": _support_suggestion(live)}, {"suggestion_id": ghost}),
    }[kind]


CROSS_TEAM = [
    "reply", "note", "assign", "unassign", "transfer", "set_status", "snooze", "set_priority", "tag", "untag",
    "tag_customer", "edit_customer", "merge_source", "merge_target", "unmerge", "dismiss_suggestion",
]
KIND_OF = {"tag_customer": "tag", "merge_source": "merge_customers", "merge_target": "merge_customers"}


@pytest.mark.parametrize("case", CROSS_TEAM)
def test_other_teams_things_are_rejected_like_missing_ones(live_server, case):
    kind = KIND_OF.get(case, case)
    hidden, missing = _cross_team_cases(live_server, case)
    ken_before = get(live_server, Customer, live_server.world.customers["ken"])
    changes_before = change_count(live_server)
    refused = push(live_server, kind, **hidden)
    nothing = push(live_server, kind, **missing)
    assert refused["status"] == nothing["status"] == "rejected"
    assert refused["reason"].endswith(NOT_VISIBLE)
    assert refused["reason"] == nothing["reason"]  # no existence leak
    assert change_count(live_server) == changes_before
    assert conversation(live_server, "ken-email").version == 1
    assert get(live_server, Customer, live_server.world.customers["ken"]) == ken_before


def test_expected_version_mismatch_is_rejected(live_server):
    cid = live_server.world.conversations["maria-email"]
    stale = push(live_server, "set_status", conversation_id=cid, status="pending", expected_version=5)
    assert stale["status"] == "rejected"
    assert stale["reason"] == "This conversation changed since you opened it (version 5, now 1)."
    applied(live_server, "set_status", conversation_id=cid, status="pending", expected_version=1)
    late = push(live_server, "tag", conversation_id=cid, tag="x", expected_version=1)
    assert late["reason"] == "This conversation changed since you opened it (version 1, now 2)."
    assert conversation(live_server).tags == [] and conversation(live_server).status == "pending"


@pytest.mark.parametrize(
    ("kind", "args"),
    [
        ("set_status", {"status": "closed", "assignee_id": "x"}),
        ("assign", {"agent_id": "x", "team_id": "x"}),
        ("tag", {"tag": "vip", "version": 9}),
        ("edit_customer", {"notes": "x", "merged_into": "someone"}),
        ("edit_customer", {"notes": "x", "id": "other"}),
        ("merge_customers", {"target_id": "t", "merge_id": "0" * 32, "moved": {}}),
    ],
)
def test_extra_fields_in_args_are_rejected(live_server, kind, args):
    world = live_server.world
    target = {"customer_id": world.customers["maria"]} if kind == "edit_customer" else (
        {"source_id": world.customers["maria"]} if kind == "merge_customers" else {"conversation_id": world.conversations["maria-email"]}
    )
    changes_before = change_count(live_server)
    result = push(live_server, kind, **target, **args)
    assert result["status"] == "rejected"
    assert result["reason"].startswith(f"Invalid {kind}: ") and result["reason"].endswith("Extra inputs are not permitted")
    assert change_count(live_server) == changes_before
    assert get(live_server, Customer, world.customers["maria"]).notes == ""


@pytest.mark.parametrize(
    ("kind", "args", "undo_kind", "undo_args", "field", "final"),
    [
        ("set_priority", {"priority": "high"}, "set_priority", {"priority": "low"}, "priority", "low"),
        ("tag", {"tag": "vip"}, "untag", {"tag": "vip"}, "tags", []),
        ("set_status", {"status": "closed"}, "set_status", {"status": "open"}, "status", "open"),
    ],
)
def test_the_same_mutation_id_applies_once(live_server, kind, args, undo_kind, undo_args, field, final):
    cid = live_server.world.conversations["maria-email"]
    once = mutation(kind, conversation_id=cid, **args)
    undo = mutation(undo_kind, conversation_id=cid, **undo_args)
    with client(live_server) as http:
        results = [http.post("/api/v1/sync/push", json={"mutations": [m]}).json()["results"][0] for m in (once, undo, once)]
    assert [r["status"] for r in results] == ["applied", "applied", "duplicate"]
    after = conversation(live_server)
    assert getattr(after, field) == final  # the repeat did not apply again
    assert after.version == 3  # two effects, not three
    with session(live_server.engine) as db:
        assert db.get(Mutation, once["id"]).status == "applied"


def test_a_rejection_after_writes_undoes_them_and_the_rest_of_the_push_applies(live_server, monkeypatch):
    """Pushes share a transaction (group commit); each mutation's savepoint takes back exactly its own writes."""
    cid = live_server.world.conversations["maria-email"]

    def refuse(*_args: Any) -> None:  # runs once the reply's interaction is inserted, before the change-log rows
        raise mutations.Rejected("Refused late.")

    monkeypatch.setattr(mutations.sla, "on_agent_reply", refuse)
    note, reply, second = (new_id() for _ in range(3))
    changes_before = change_count(live_server)
    batch = [
        mutation("note", conversation_id=cid, interaction_id=note, channel="email", text="first"),
        mutation("reply", conversation_id=cid, interaction_id=reply, channel="email", text="never sent"),
        mutation("note", conversation_id=cid, interaction_id=second, channel="email", text="second"),
    ]
    with client(live_server) as http:
        results = http.post("/api/v1/sync/push", json={"mutations": batch}).json()["results"]
    assert [(r["status"], r["reason"]) for r in results] == [("applied", None), ("rejected", "Refused late."), ("applied", None)]
    assert get(live_server, Interaction, reply) is None
    assert get(live_server, Interaction, note) is not None and get(live_server, Interaction, second) is not None
    assert change_count(live_server) == changes_before + 4  # each note: its interaction and its conversation
    assert conversation(live_server).version == 3
    assert get(live_server, Mutation, batch[1]["id"]).reason == "Refused late."


def test_a_push_failing_in_the_database_is_undone_whole_and_the_pushes_around_it_are_stored(live_server):
    """Pushes share a transaction. One whose mutation id cannot be recorded (a database error, outside any
    mutation's savepoint; its agent is gone) fails alone: on PostgreSQL the error would abort the transaction,
    and its COMMIT would roll the other pushes back after they were told "applied"."""
    from agentdesk.server.models import Agent

    world = live_server.world
    cid = world.conversations["maria-email"]
    with session(live_server.engine) as db:
        alice = db.get(Agent, world.agents[ALICE])
        ghost = Agent(id=new_id(), name="Gone", email="gone@example.com")  # no row: the mutation's agent_id fails
        teams = [world.teams["Billing"]]

        def one(agent: Agent, kind: str, **args: Any) -> mutations.Push:
            return mutations.Push(agent, teams, [mutations.MutationIn(**mutation(kind, **args))])

        pushes = [
            one(alice, "note", conversation_id=cid, interaction_id=new_id(), channel="email", text="before"),
            one(ghost, "no such kind"),  # rejected, then its id's insert fails
            one(alice, "note", conversation_id=cid, interaction_id=new_id(), channel="email", text="after"),
        ]
        outcomes = mutations.store_pushes(db, pushes)
    assert isinstance(outcomes[1], sa.exc.IntegrityError)
    for pushed, outcome in zip(pushes[::2], outcomes[::2], strict=True):
        assert [r.status for r in outcome] == ["applied"]
        assert get(live_server, Mutation, pushed.mutations[0].id).status == "applied"
        assert get(live_server, Interaction, pushed.mutations[0].args["interaction_id"]) is not None
    assert get(live_server, Mutation, pushes[1].mutations[0].id) is None


def test_a_batch_that_applies_at_once_is_stored_without_savepoints_and_answers_a_repeat(live_server):
    """The usual batch (every mutation applies, repeats an id, or does not parse) takes the plain path: no
    SAVEPOINT statement at all; a repeat of an id stored earlier in the same transaction is answered as a
    duplicate."""
    from agentdesk.server.models import Agent

    world = live_server.world
    cid = world.conversations["maria-email"]
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    with session(live_server.engine) as db:
        alice = db.get(Agent, world.agents[ALICE])
        teams = [world.teams["Billing"]]
        first = mutations.MutationIn(**mutation("note", conversation_id=cid, interaction_id=new_id(), channel="email", text="one"))
        second = mutations.MutationIn(**mutation("note", conversation_id=cid, interaction_id=new_id(), channel="email", text="two"))
        malformed = mutations.MutationIn(**mutation("note", conversation_id=cid))  # no text: rejected as it parses
        pushes = [mutations.Push(alice, teams, [first]), mutations.Push(alice, teams, [second, first, malformed])]
        sa.event.listen(live_server.engine, "before_cursor_execute", seen)
        try:
            outcomes = mutations.store_pushes(db, pushes)
        finally:
            sa.event.remove(live_server.engine, "before_cursor_execute", seen)
    assert [[r.status for r in outcome] for outcome in outcomes] == [["applied"], ["applied", "duplicate", "rejected"]]
    assert not [s for s in statements if "SAVEPOINT" in s.upper()]  # nor a second try for the malformed one
    assert "Invalid note" in outcomes[1][2].reason
    assert get(live_server, Interaction, first.args["interaction_id"]).text == "one"
    assert conversation(live_server).version == 3


def test_concurrent_pushes_each_get_their_own_results(live_server):
    """Many desks pushing at once: each push's results are its own, every applied note is stored once."""
    cid = live_server.world.conversations["maria-email"]
    pushes = [
        [mutation("note", conversation_id=cid, interaction_id=new_id(), channel="email", text=f"note {i}"),
         mutation("note", conversation_id=new_id(), interaction_id=new_id(), channel="email", text="nowhere")]
        for i in range(12)
    ]
    barrier = threading.Barrier(len(pushes))
    results: dict[int, list[dict]] = {}

    def send(i: int) -> None:
        with client(live_server) as http:
            http.get("/api/v1/me")  # connection open before the rush
            barrier.wait()
            results[i] = http.post("/api/v1/sync/push", json={"mutations": pushes[i]}).json()["results"]

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(pushes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for i, batch in enumerate(pushes):
        assert [(r["id"], r["status"]) for r in results[i]] == [(batch[0]["id"], "applied"), (batch[1]["id"], "rejected")]
        assert get(live_server, Interaction, batch[0]["args"]["interaction_id"]).text == f"note {i}"
    assert conversation(live_server).version == 1 + len(pushes)


# --- concurrency ---------------------------------------------------------------------------------


def _take(live, email: str, agent_id: str, cid: str, barrier: threading.Barrier, results: dict[str, dict]) -> None:
    """One agent assigning `cid` to themselves, released together with the other by the barrier."""
    with client(live, email) as http:
        body = {"mutations": [mutation("assign", conversation_id=cid, agent_id=agent_id)]}
        http.get("/api/v1/me")  # connection open before the race starts
        barrier.wait()
        results[agent_id] = http.post("/api/v1/sync/push", json=body).json()["results"][0]


def _rendezvous_after_reading(monkeypatch) -> None:
    """Hold each assign a moment after it read the conversation, until the other one has read it too.

    The window between read and write is too short to hit by chance. A server that serialises the two
    transactions (the change-log lock) keeps the second one from reading, so the first goes on after the
    wait; one that does not gets the worst interleaving: both read "unassigned" before either writes.
    """
    rendezvous = threading.Barrier(2)
    original = mutations._team_member

    def held(*args: Any) -> Any:
        try:
            rendezvous.wait(timeout=0.15)
        except threading.BrokenBarrierError:
            rendezvous.reset()
        return original(*args)

    monkeypatch.setattr(mutations, "_team_member", held)


@pytest.mark.parametrize("change_log_lock", [True, False], ids=["locked", "compare-and-set-alone"])
def test_two_agents_assigning_at_once_produce_exactly_one_winner(live_server, carol, monkeypatch, change_log_lock):
    """Ten races, each with exactly one winner; also with the change-log lock bypassed, so the conditional
    UPDATE (… WHERE version = :read AND assignee_id IS NULL) alone must keep the loser out."""
    world = live_server.world
    names = {world.agents[ALICE]: "Alice Ward", carol: "Carol Reed"}
    _rendezvous_after_reading(monkeypatch)
    if not change_log_lock:
        unlocked = lambda db: db.connection()  # noqa: E731 - begins the transaction, takes no lock
        monkeypatch.setattr(mutations, "begin_write", unlocked)
        monkeypatch.setattr(changes, "begin_write", unlocked)
    for round_ in range(10):
        label = f"race{round_}"
        add_customer(live_server, label, "Billing", f"Race {round_}")
        cid = world.conversations[f"{label}-email"]
        barrier = threading.Barrier(2)
        results: dict[str, dict] = {}
        threads = [
            threading.Thread(target=_take, args=(live_server, email, agent_id, cid, barrier, results))
            for email, agent_id in ((ALICE, world.agents[ALICE]), (CAROL, carol))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        statuses = sorted(r["status"] for r in results.values())
        assert statuses == ["applied", "rejected"], results
        winner = next(agent for agent, r in results.items() if r["status"] == "applied")
        loser = next(r for r in results.values() if r["status"] == "rejected")
        assert loser["reason"] == f"{names[winner]} took this conversation first."
        row = get(live_server, Conversation, cid)
        assert (row.assignee_id, row.version) == (winner, 2)
        with session(live_server.engine) as db:
            logged = db.exec(select(Change).where(Change.entity == "conversations", Change.entity_id == cid)).all()
        assert [c.data["assignee_id"] for c in logged] == [winner]
