"""POST /api/v1/interactions/inbound: any system feeds interactions through the one inbound path."""

from __future__ import annotations

import httpx
import pytest

from agentdesk.server.auth import issue_integration_token
from agentdesk.server.db import session


@pytest.fixture
def crm(live_server) -> httpx.Client:
    with session(live_server.engine) as db:
        token = issue_integration_token(db, "crm")
        db.commit()
    return httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {token}"})


def agent(live, email: str) -> httpx.Client:
    return httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {live.world.tokens[email]}"})


def pull_all(client: httpx.Client) -> list[dict]:
    return client.get("/api/v1/sync/pull").json()["changes"]


CALL = {
    "channel": "phone", "address": "+44 20 7946 0018", "name": "Priya Shah", "text": "Called about a refund",
    "external_id": "CA123", "occurred_at": "2026-11-20T14:00:00Z",
    "metadata": {"duration": 312, "disposition": "callback requested", "direction": "inbound"},
}


def test_an_integration_feeds_a_call_that_lands_on_a_timeline(live_server, crm):
    response = crm.post("/api/v1/interactions/inbound", json=CALL)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["duplicate"] is False
    changes = pull_all(agent(live_server, "alice@example.com"))  # Billing: the first team by name takes it
    by_entity = {(c["entity"], c["id"]): c["data"] for c in changes}
    call = by_entity[("interactions", created["interaction_id"])]
    assert call["channel"] == "phone" and call["meta"]["duration"] == 312 and call["meta"]["source"] == "crm"
    assert call["occurred_at"] == "2026-11-20T14:00:00.000Z"
    assert by_entity[("customers", created["customer_id"])]["display_name"] == "Priya Shah"
    identities = [d for (entity, _), d in by_entity.items() if entity == "identities" and d["customer_id"] == created["customer_id"]]
    assert [(i["kind"], i["address"]) for i in identities] == [("phone", "+442079460018")]
    assert all(c["id"] != created["interaction_id"] for c in pull_all(agent(live_server, "bob@example.com")))


def test_a_repeated_external_id_is_ignored_so_senders_can_retry(live_server, crm):
    first = crm.post("/api/v1/interactions/inbound", json=CALL)
    again = crm.post("/api/v1/interactions/inbound", json=CALL)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == {**first.json(), "duplicate": True}


def test_an_email_with_headers_threads_into_its_conversation(live_server, crm):
    mail = {"channel": "email", "address": "Dana <dana@example.org>", "subject": "Order 1182", "text": "Where is it?",
            "external_id": "<m1@example.org>"}
    first = crm.post("/api/v1/interactions/inbound", json=mail).json()
    reply = crm.post("/api/v1/interactions/inbound", json={
        **mail, "subject": "Something else", "text": "Any news?", "external_id": "<m2@example.org>",
        "metadata": {"in_reply_to": "<m1@example.org>", "references": "<m0@example.org> <m1@example.org>"},
    }).json()
    assert reply["conversation_id"] == first["conversation_id"]


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({**CALL, "address": "+1 555"}, 422, "not a valid phone number"),
        ({**CALL, "channel": "fax"}, 422, "channel"),
        ({**CALL, "team_id": "x"}, 422, "team_id"),  # no mass assignment
        ({k: v for k, v in CALL.items() if k != "address"}, 422, "address"),
    ],
)
def test_bad_input_gets_a_clear_refusal(live_server, crm, body, status, says):
    response = crm.post("/api/v1/interactions/inbound", json=body)
    assert response.status_code == status
    assert says in response.text


def test_only_integration_tokens_may_feed(live_server):
    response = agent(live_server, "alice@example.com").post("/api/v1/interactions/inbound", json=CALL)
    assert response.status_code == 401
    assert httpx.post(f"{live_server.url}/api/v1/interactions/inbound", json=CALL).status_code == 401


INBOUND = "/api/v1/interactions/inbound"


def test_a_cached_token_takes_the_fast_path_and_every_refusal_reads_as_before(live_server, crm, monkeypatch):
    """Once its token is cached, a well-formed message is stored by routes/inbound.InboundFastPath without
    FastAPI's route; a body the route must refuse still reaches it, so the 422 has FastAPI's shape."""
    from agentdesk.server import deps
    from agentdesk.server.routes import inbound as route

    monkeypatch.setattr(deps, "TOKEN_CACHE_SECONDS", 3600.0)  # cached throughout, however slow this machine
    assert crm.post(INBOUND, json={**CALL, "external_id": "warm-up"}).status_code == 201  # loads the token
    routed: list[str] = []
    read_body = route._body

    async def recording_body(request):  # noqa: ANN001, ANN202 - the FastAPI route's body reader
        routed.append(request.url.path)
        return await read_body(request)

    monkeypatch.setattr(route, "_body", recording_body)
    fast = crm.post(INBOUND, json={**CALL, "external_id": "fast-1"})
    assert fast.status_code == 201 and routed == []
    again = crm.post(INBOUND, json={**CALL, "external_id": "fast-1"})
    assert again.status_code == 200 and again.json() == {**fast.json(), "duplicate": True} and routed == []

    extra = crm.post(INBOUND, json={**CALL, "team_id": "x"})
    assert extra.status_code == 422 and extra.json()["detail"][0]["loc"] == ["body", "team_id"]
    assert routed == [INBOUND]  # handed on to the route, which worded the refusal
    phone = crm.post(INBOUND, json={**CALL, "address": "+1 555", "external_id": "fast-2"})
    assert phone.status_code == 422 and "not a valid phone number" in phone.json()["detail"]

    def chunks(data: bytes):  # noqa: ANN202 - an iterator makes httpx send Transfer-Encoding: chunked
        for start in range(0, len(data), 64_000):
            yield data[start : start + 64_000]

    big = httpx.Request("POST", "/", json={**CALL, "text": "x" * 1_100_000}).content
    too_large = crm.post(INBOUND, content=chunks(big), headers={"Content-Type": "application/json"})
    assert too_large.status_code == 413 and too_large.json()["detail"].startswith("Request body too large")
    assert routed == [INBOUND]
    assert len(live_server.interactions("Called about a refund")) == 2  # warm-up and fast-1, once each
