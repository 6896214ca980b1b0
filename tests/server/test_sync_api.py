"""The sync API against a real server on a loopback port."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from sqlmodel import select

from agentdesk.server.db import session
from agentdesk.server.models import Delivery, Interaction
from agentdesk.sync.client import SyncClient


def client(live, email: str = "alice@example.com") -> httpx.Client:
    return httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {live.world.tokens[email]}"})


def reply(conversation_id: str, text: str = "Thanks, refunded.") -> dict:
    return {
        "id": uuid.uuid4().hex,
        "kind": "reply",
        "args": {"conversation_id": conversation_id, "interaction_id": uuid.uuid4().hex, "channel": "email", "text": text},
    }


def test_health_and_openapi_are_public(live_server):
    assert httpx.get(f"{live_server.url}/healthz").json() == {"status": "ok"}
    spec = httpx.get(f"{live_server.url}/openapi.json").json()
    assert "/api/v1/sync/pull" in spec["paths"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}])
def test_api_needs_a_valid_bearer_token(live_server, headers):
    response = httpx.get(f"{live_server.url}/api/v1/sync/pull", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_me_names_the_agent_and_teams(live_server):
    me = client(live_server).get("/api/v1/me").json()
    assert me["email"] == "alice@example.com"
    assert me["team_ids"] == [live_server.world.teams["Billing"]]


def one_row_pages(http: httpx.Client, entity: str, **params: str) -> list[dict]:
    """Every bootstrap page of `entity`, one row a page, following `next_after` to the end."""
    pages, after = [], ""
    while after is not None:
        pages.append(http.get("/api/v1/sync/bootstrap", params={"entity": entity, "after": after, "limit": 1, **params}).json())
        after = pages[-1]["next_after"]
    return pages


def as_dicts(pages: list[dict]) -> list[dict]:
    return [dict(zip(page["columns"], row)) for page in pages for row in page["rows"]]


def test_bootstrap_pages_only_what_the_agent_may_see(live_server):
    with client(live_server) as http:
        rows = as_dicts(one_row_pages(http, "conversations"))
    ids = {row["id"] for row in rows}
    world = live_server.world
    assert world.conversations["maria-email"] in ids
    assert world.conversations["ken-email"] not in ids  # Support's, Alice is in Billing
    assert len(ids) == len(rows) == 2


def test_bootstrap_pages_carry_the_columns_asked_for_and_their_key(live_server):
    """A cache asks for the columns it keeps: the page carries those the table has (and the page key's, asked
    or not), in the table's order, and still pages on; without `columns`, every column."""
    with client(live_server) as http:
        full = http.get("/api/v1/sync/bootstrap", params={"entity": "interactions"}).json()
        pages = one_row_pages(http, "interactions", columns="text,no_such_column,id")
    assert all(page["columns"] == ["id", "conversation_id", "text"] for page in pages)
    rows = [row for page in pages for row in page["rows"]]
    assert "external_id" in full["columns"]
    keep = [full["columns"].index(name) for name in ("id", "conversation_id", "text")]
    assert rows == [[row[i] for i in keep] for row in full["rows"]]


def test_bootstrap_pages_interactions_by_conversation_each_once(live_server):
    """Interactions page in (conversation, id) order with a compound `next_after`: one-row pages cross from one
    conversation to the next without skipping or repeating a row, and show only the agent's teams'."""
    with client(live_server) as http:
        rows = as_dicts(one_row_pages(http, "interactions"))
        page = http.get("/api/v1/sync/bootstrap", params={"entity": "conversations"}).json()
        conversations = [row[page["columns"].index("id")] for row in page["rows"]]
    ids = [row["id"] for row in rows]
    assert ids and len(ids) == len(set(ids))
    assert {row["conversation_id"] for row in rows} <= set(conversations)
    with session(live_server.engine) as db:
        visible = set(db.exec(select(Interaction.id).where(Interaction.conversation_id.in_(conversations))))  # type: ignore[attr-defined]
    assert set(ids) == visible
    assert [(r["conversation_id"], r["id"]) for r in rows] == sorted((r["conversation_id"], r["id"]) for r in rows)


@pytest.mark.parametrize("header", [True, False], ids=["header", "older-server"])
def test_the_client_learns_the_next_page_key_before_decoding(live_server, header):
    """The sync client follows the pages by the key the server sends as a header (percent-encoded: an
    interactions key is a JSON pair), the same as the body's; from a server without it, by the body's."""
    sync = SyncClient(live_server.url, live_server.world.tokens["alice@example.com"])
    headers = []
    sync.http.event_hooks["response"].append(lambda response: headers.append("Agentdesk-Next-After" in response.headers))
    if not header:
        sync.http.event_hooks["response"].append(lambda response: response.headers.pop("Agentdesk-Next-After"))
    decoded = []
    sync.decode = lambda body: decoded.append(body) or json.loads(body)  # type: ignore[method-assign]
    keys, after = [], ""
    while after is not None:
        body, after = sync.bootstrap_page("interactions", after, 1, ["id", "text"])
        assert json.loads(body)["next_after"] == after
        keys.append(after)
    sync.close()
    assert len(keys) > 2 and keys[-1] is None and all('","' in key for key in keys[:-1])
    assert headers == [True] * len(keys)  # the server sends it on every page, the last one's empty
    assert len(decoded) == (0 if header else len(keys))  # by the header, nothing is decoded to go on


def test_push_applies_once_and_pull_returns_it(live_server):
    mutation = reply(live_server.world.conversations["maria-email"], "Refund issued today.")
    with client(live_server) as http:
        first = http.post("/api/v1/sync/push", json={"mutations": [mutation]}).json()["results"]
        second = http.post("/api/v1/sync/push", json={"mutations": [mutation]}).json()["results"]
        changes = http.get("/api/v1/sync/pull").json()["changes"]
    assert first[0]["status"] == "applied"
    assert second[0]["status"] == "duplicate"
    assert len(live_server.interactions("Refund issued today.")) == 1
    mine = [c for c in changes if c["entity"] == "interactions" and c["data"]["text"] == "Refund issued today."]
    # No email relay is configured here: the reply waits in the server's outbox, addressed from the customer's identity.
    assert len(mine) == 1 and mine[0]["data"]["delivery_status"] == "queued"
    with session(live_server.engine) as db:
        queued = db.exec(select(Delivery).where(Delivery.interaction_id == mine[0]["data"]["id"])).one()
    assert (queued.status, queued.channel, queued.to_address) == ("pending", "email", "maria@customer.test")


def test_pull_hides_other_teams_changes(live_server):
    with client(live_server, "bob@example.com") as bob:
        result = bob.post("/api/v1/sync/push", json={"mutations": [reply(live_server.world.conversations["ken-email"], "Bob's")]})
        assert result.json()["results"][0]["status"] == "applied"
    with client(live_server) as alice:
        changes = alice.get("/api/v1/sync/pull").json()["changes"]
    assert not [c for c in changes if c["entity"] == "interactions" and c["data"]["text"] == "Bob's"]


def test_reply_to_an_invisible_conversation_is_rejected_with_a_reason(live_server):
    with client(live_server) as alice:
        result = alice.post("/api/v1/sync/push", json={"mutations": [reply(live_server.world.conversations["ken-email"])]})
    assert result.json()["results"][0]["status"] == "rejected"
    assert "not visible" in result.json()["results"][0]["reason"]


def test_push_refuses_unknown_fields_and_bad_cursors(live_server):
    with client(live_server) as http:
        bad = http.post("/api/v1/sync/push", json={"mutations": [], "role": "admin"})
        cursor = http.get("/api/v1/sync/pull", params={"cursor": "garbage!"})
    assert bad.status_code == 422
    assert cursor.status_code == 400


def test_a_cached_token_pushes_by_the_fast_path_and_every_refusal_reads_as_before(live_server, monkeypatch):
    """Once the caller is cached, a well-formed push is stored by routes/sync.PushFastPath without FastAPI's
    route; a body the route must refuse still reaches it (FastAPI's 422), and an oversized one gets the 413."""
    from agentdesk.server import deps
    from agentdesk.server.routes import sync as route

    monkeypatch.setattr(deps, "TOKEN_CACHE_SECONDS", 3600.0)  # cached throughout, however slow this machine
    fast_path: list[object] = []  # a request the fast path began to read
    read_model = route.read_model

    async def recording(model, app, scope, receive, send):  # noqa: ANN001, ANN202 - the fast path's body reader
        fast_path.append(scope)
        return await read_model(model, app, scope, receive, send)

    monkeypatch.setattr(route, "read_model", recording)
    mutation = reply(live_server.world.conversations["maria-email"], "Fast and once.")
    with client(live_server) as http:
        assert http.get("/api/v1/me").status_code == 200  # loads the caller into the token cache
        first = http.post("/api/v1/sync/push", json={"mutations": [mutation]})
        again = http.post("/api/v1/sync/push", json={"mutations": [mutation]})
        assert len(fast_path) == 2
        extra = http.post("/api/v1/sync/push", json={"mutations": [], "role": "admin"})
        big = json.dumps({"mutations": [{**mutation, "args": {**mutation["args"], "text": "x" * 1_100_000}}]}).encode()
        too_large = http.post("/api/v1/sync/push", content=iter([big[:500_000], big[500_000:]]),
                              headers={"Content-Type": "application/json"})
        as_text = http.post("/api/v1/sync/push", content=json.dumps({"mutations": [reply(mutation["args"]["conversation_id"], "As text.")]}),
                            headers={"Content-Type": "text/plain"})
    assert first.status_code == 200 and first.json() == {"results": [{"id": mutation["id"], "status": "applied", "reason": None}]}
    assert again.json()["results"][0]["status"] == "duplicate"
    assert len(live_server.interactions("Fast and once.")) == 1
    assert extra.status_code == 422 and extra.json()["detail"][0]["loc"] == ["body", "role"]
    assert too_large.status_code == 413 and too_large.json()["detail"].startswith("Request body too large")
    assert len(fast_path) == 5  # all read here; the 422's body handed on to the route, which worded it
    assert as_text.status_code == 422 and not live_server.interactions("As text.")  # not JSON, as FastAPI reads it
    with httpx.Client(base_url=live_server.url, headers={"Authorization": "Bearer adk_not-a-token"}) as stranger:
        assert stranger.post("/api/v1/sync/push", json={"mutations": [mutation]}).status_code == 401
    assert len(fast_path) == 5  # an unknown token never takes the fast path


def test_a_rejected_mutation_sent_again_stays_rejected_with_its_reason(live_server):
    mutation = reply(live_server.world.conversations["ken-email"])  # not visible to Alice
    with client(live_server) as alice:
        first = alice.post("/api/v1/sync/push", json={"mutations": [mutation]}).json()["results"][0]
        again = alice.post("/api/v1/sync/push", json={"mutations": [mutation]}).json()["results"][0]
    assert first["status"] == again["status"] == "rejected"
    assert again["reason"] == first["reason"]


def test_bootstrap_rows_match_the_wire_shape_of_every_other_read(live_server):
    """Bootstrap formats times and JSON in SQL; they must equal what pull and record reads send."""
    alice = client(live_server)
    page = alice.get("/api/v1/sync/bootstrap", params={"entity": "conversations"}).json()
    record = alice.get(f"/api/v1/conversations/{live_server.world.conversations['maria-email']}").json()
    rows = {row[page["columns"].index("id")]: dict(zip(page["columns"], row, strict=True)) for row in page["rows"]}
    expected = record["conversation"]
    assert {k: v for k, v in expected.items() if k in page["columns"]} == rows[expected["id"]] | {"tags": expected["tags"]}
    assert json.loads(rows[expected["id"]]["tags"]) == expected["tags"]  # JSON columns travel as their text
    assert rows[expected["id"]]["sla_due"].endswith("Z") and len(rows[expected["id"]]["sla_due"]) == 24


def test_written_replies_that_could_reach_no_one_are_refused(live_server):
    conversation = live_server.world.conversations["maria-email"]
    phone, chat = reply(conversation, "By phone?"), reply(conversation, "By chat?")
    phone["args"]["channel"], chat["args"]["channel"] = "phone", "chat"
    with client(live_server) as http:
        results = http.post("/api/v1/sync/push", json={"mutations": [phone, chat]}).json()["results"]
    assert [r["status"] for r in results] == ["rejected", "rejected"]
    assert "callback or reply by SMS" in results[0]["reason"] and "visitor of a chat conversation" in results[1]["reason"]
    assert live_server.interactions("By phone?") == live_server.interactions("By chat?") == []
