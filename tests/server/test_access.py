"""Two agents in two teams try every id-taking endpoint against each other's data: 404 (or, in a push, the
same rejection as for something that does not exist). Every API path must be listed here, so a new
endpoint cannot slip in without its access check."""

from __future__ import annotations

import json
import sqlite3
import uuid

import httpx
import pytest

from agentdesk.server.auth import new_id
from agentdesk.server.db import session
from agentdesk.server.models import MergeRecord, MergeSuggestion
from agentdesk.server.mutations import APPLIERS

PUBLIC = {"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
NO_ID = {"/api/v1/me", "/api/v1/events", "/api/v1/sync/bootstrap", "/api/v1/sync/snapshot", "/api/v1/sync/pull"}  # scoped to the caller
INTEGRATION = {"/api/v1/interactions/inbound"}  # integration tokens only


def as_agent(live, email: str) -> httpx.Client:
    return httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {live.world.tokens[email]}"})


@pytest.fixture
def bobs(live_server) -> dict[str, str]:
    """Ids from Bob's side (Support): Alice (Billing) must not reach any of them."""
    w = live_server.world
    with session(live_server.engine) as db:  # a suggestion and a merge that live on Bob's side only
        suggestion = MergeSuggestion(id=new_id(), customer_id=w.customers["ken"], other_id=w.customers["ken"], reason="test")
        merge = MergeRecord(id=new_id(), source_id=w.customers["ken"], target_id=w.customers["ken"], moved={})
        db.add_all([suggestion, merge])
        db.commit()
    return {
        "conversation": w.conversations["ken-email"], "customer": w.customers["ken"], "agent": w.agents["bob@example.com"],
        "team": w.teams["Support"], "suggestion": suggestion.id, "merge": merge.id,
        "interaction": live_server.interactions("Hello from Ken Adams by email")[0].id,
    }


def push_args(kind: str, bob: dict[str, str], mine: dict[str, str]) -> dict:
    """Valid arguments for `kind`, aimed at Bob's side."""
    conversation = {"conversation_id": bob["conversation"]}
    return {
        "reply": {**conversation, "interaction_id": uuid.uuid4().hex, "channel": "email", "text": "hi"},
        "note": {**conversation, "interaction_id": uuid.uuid4().hex, "channel": "email", "text": "hi"},
        "assign": {**conversation, "agent_id": mine["agent"]},
        "unassign": conversation,
        "transfer": {**conversation, "to_team_id": mine["team"]},
        "set_status": {**conversation, "status": "closed"},
        "snooze": {**conversation, "until": "2099-01-01T09:00:00Z"},
        "set_priority": {**conversation, "priority": "urgent"},
        "tag": {**conversation, "tag": "vip"},
        "untag": {"customer_id": bob["customer"], "tag": "vip"},
        "edit_customer": {"customer_id": bob["customer"], "notes": "mine now"},
        "merge_customers": {"source_id": bob["customer"], "target_id": mine["customer"], "merge_id": uuid.uuid4().hex},
        "unmerge": {"merge_id": bob["merge"]},
        "dismiss_suggestion": {"suggestion_id": bob["suggestion"]},
        "retry_delivery": {"interaction_id": bob["interaction"]},
        "set_disposition": {"interaction_id": bob["interaction"], "disposition": "resolved"},
        "request_callback": {**conversation, "interaction_id": uuid.uuid4().hex},
    }[kind]


@pytest.mark.parametrize("kind", sorted(APPLIERS))
def test_every_push_kind_against_the_other_team_is_rejected_as_if_missing(live_server, bobs, kind):
    w = live_server.world
    mine = {"agent": w.agents["alice@example.com"], "team": w.teams["Billing"], "customer": w.customers["maria"]}
    mutation = {"id": uuid.uuid4().hex, "kind": kind, "args": push_args(kind, bobs, mine)}
    result = as_agent(live_server, "alice@example.com").post("/api/v1/sync/push", json={"mutations": [mutation]}).json()["results"][0]
    assert result["status"] == "rejected"
    assert "no longer exists or is not visible to you" in result["reason"], result["reason"]


def test_every_id_taking_endpoint_answers_404_across_teams(live_server, bobs):
    alice = as_agent(live_server, "alice@example.com")
    probes = {
        "/api/v1/conversations/{conversation_id}": lambda: alice.get(f"/api/v1/conversations/{bobs['conversation']}"),
        "/api/v1/customers/{customer_id}": lambda: alice.get(f"/api/v1/customers/{bobs['customer']}"),
        "/api/v1/presence": lambda: alice.post("/api/v1/presence", json={"viewing": bobs["conversation"]}),
        "/api/v1/typing": lambda: alice.post("/api/v1/typing", json={"conversation_id": bobs["conversation"]}),
    }
    for path, probe in probes.items():
        response = probe()
        assert response.status_code == 404, (path, response.status_code, response.text)
    missing = as_agent(live_server, "alice@example.com").get(f"/api/v1/conversations/{new_id()}")
    assert missing.status_code == 404 and missing.json() == alice.get(f"/api/v1/conversations/{bobs['conversation']}").json()
    own = alice.get(f"/api/v1/conversations/{live_server.world.conversations['maria-email']}")
    assert own.status_code == 200 and own.json()["interactions"]  # the probe itself works on visible data

    paths = set(httpx.get(f"{live_server.url}/openapi.json").json()["paths"]) | {"/openapi.json", "/docs", "/redoc"}
    admin = {p for p in paths if p.startswith("/api/v1/admin/")}
    unlisted = paths - PUBLIC - NO_ID - INTEGRATION - admin - set(probes) - {"/api/v1/sync/push"}
    assert unlisted == set(), "a new endpoint needs its access check in this file"
    for path in admin:  # admin endpoints: the admin role only (their ids are checked in test_auth_admin.py)
        response = alice.get(path.replace("{agent}", bobs["agent"]).replace("{team}", bobs["team"]).replace("{token_id}", "x"))
        assert response.status_code in (403, 405), (path, response.status_code)


def snapshot_rows(http: httpx.Client, path) -> set[str]:  # noqa: ANN001
    """Every row of the caller's snapshot file, as text (none from a server that makes no snapshots)."""
    response = http.get("/api/v1/sync/snapshot")
    if response.status_code == 404:
        return set()
    path.write_bytes(response.content)
    db = sqlite3.connect(path)
    tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    rows = {str(row) for table in tables for row in db.execute(f"SELECT * FROM {table}")}
    db.close()
    assert tables and rows
    return rows


def test_pull_and_bootstrap_carry_nothing_of_the_other_team(live_server, bobs, tmp_path):
    note = {"conversation_id": bobs["conversation"], "interaction_id": uuid.uuid4().hex, "channel": "email", "text": "Bob's note"}
    pushed = as_agent(live_server, "bob@example.com").post(
        "/api/v1/sync/push", json={"mutations": [{"id": uuid.uuid4().hex, "kind": "note", "args": note}]}
    )
    assert pushed.json()["results"][0]["status"] == "applied"  # Bob's side now has changes in the log
    alice = as_agent(live_server, "alice@example.com")
    changes = alice.get("/api/v1/sync/pull").json()["changes"]
    seen = {c["id"] for c in changes} | {str(c["data"]) for c in changes if c["data"]}
    for entity in ("conversations", "customers", "identities", "interactions", "merge_suggestions"):
        page = alice.get("/api/v1/sync/bootstrap", params={"entity": entity}).json()
        seen |= {str(row) for row in page["rows"]}
    seen |= snapshot_rows(alice, tmp_path / "snapshot.sqlite3")
    assert not any(bobs["conversation"] in s or bobs["customer"] in s or "Bob's note" in s for s in seen)
    bob_changes = as_agent(live_server, "bob@example.com").get("/api/v1/sync/pull").json()["changes"]
    assert any(c["id"] == note["interaction_id"] for c in bob_changes)  # the probe would have seen it


def test_a_transferred_conversation_is_gone_from_its_old_teams_pulls_even_from_the_start(live_server):
    w = live_server.world
    alice, bob = as_agent(live_server, "alice@example.com"), as_agent(live_server, "bob@example.com")
    conversation = w.conversations["maria-email"]
    note = {"conversation_id": conversation, "interaction_id": uuid.uuid4().hex, "channel": "email", "text": "private billing note"}
    move = {"conversation_id": conversation, "to_team_id": w.teams["Support"]}
    pushed = alice.post("/api/v1/sync/push", json={"mutations": [
        {"id": uuid.uuid4().hex, "kind": "note", "args": note}, {"id": uuid.uuid4().hex, "kind": "transfer", "args": move},
    ]}).json()["results"]
    assert [r["status"] for r in pushed] == ["applied", "applied"]
    replay = alice.get("/api/v1/sync/pull").json()["changes"]  # from the very start of the log
    assert not any(c["op"] == "upsert" and "private billing note" in json.dumps(c["data"]) for c in replay)
    assert any(c["op"] == "delete" and c["id"] == conversation for c in replay)  # told to drop it
    assert any(c["id"] == note["interaction_id"] for c in bob.get("/api/v1/sync/pull").json()["changes"])


def test_a_merge_suggestion_needs_both_customers_visible(live_server):
    w = live_server.world
    from agentdesk.server.changes import record_upsert

    with session(live_server.engine) as db:
        record_upsert(db, MergeSuggestion(id=new_id(), customer_id=w.customers["maria"], other_id=w.customers["ken"], reason="across teams"))
        db.commit()
    alice = as_agent(live_server, "alice@example.com")
    assert alice.get(f"/api/v1/customers/{w.customers['maria']}").json()["merge_suggestions"] == []
    assert not any(c["entity"] == "merge_suggestions" for c in alice.get("/api/v1/sync/pull").json()["changes"])
    assert alice.get("/api/v1/sync/bootstrap", params={"entity": "merge_suggestions"}).json()["rows"] == []
