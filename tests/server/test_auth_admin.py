"""Tokens, roles, the admin API, request limits, log hygiene and declared config, against a live server."""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from fastapi import Depends, FastAPI
from sqlmodel import select

from agentdesk.config import ConfigError, Settings, load_settings
from agentdesk.server import admin
from agentdesk.server.app import create_app
from agentdesk.server.auth import agent_for_token, integration_for_token, issue_integration_token, issue_token
from agentdesk.server.db import session
from agentdesk.server.declared import DeclaredError, apply_declared
from agentdesk.server.deps import IntegrationDep, require_role
from agentdesk.server.limits import BodyLimit, RateLimit, TokenBuckets
from agentdesk.server.models import Agent, AgentTeam, ApiToken, Change, RoutingRule, SlaPolicy, Team
from conftest import build_world, start_uvicorn

REPO = Path(__file__).resolve().parents[2]
ADMIN = "ada@example.com"
SMALL_BODY_LIMIT = 4096


# ---------------------------------------------------------------------------------------------- fixtures


class Live:
    def __init__(self, url: str, app: FastAPI, tokens: dict[str, str], world) -> None:  # noqa: ANN001
        self.url, self.app, self.tokens, self.world = url, app, tokens, world

    def client(self, who: str | None = ADMIN, token: str | None = None) -> httpx.Client:
        token = token or (self.tokens[who] if who else None)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)


@pytest.fixture
def world(db_engine):
    """conftest's two teams (Alice in Billing, Bob in Support, both agents) plus an admin and a supervisor."""
    world = build_world(db_engine)
    with session(db_engine) as db:
        for name, email, role in (("Ada Admin", ADMIN, "admin"), ("Sam Super", "sam@example.com", "supervisor")):
            agent = admin.add_agent(db, name, email, role=role)
            world.agents[email] = agent.id
            world.tokens[email] = issue_token(db, agent)
        db.commit()
    return world

@contextmanager
def running(app: FastAPI) -> Iterator[httpx.Client]:
    """A small app on a real loopback port, and a client for it."""
    url, server, thread = start_uvicorn(app)
    try:
        with httpx.Client(base_url=url, timeout=10) as http:
            yield http
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def serve(db_engine, world):
    """Start live servers over the test database: serve(settings=None, **uvicorn_config) -> Live."""
    started: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(settings: Settings | None = None, **config) -> Live:  # noqa: ANN003
        app = create_app(db_engine, settings=settings)
        url, server, thread = start_uvicorn(app, **config)
        started.append((server, thread))
        return Live(url, app, world.tokens, world)

    yield start
    for server, thread in started:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def live(serve) -> Live:
    return serve()


def reply(conversation_id: str, text: str) -> dict:
    return {
        "id": uuid.uuid4().hex,
        "kind": "reply",
        "args": {"conversation_id": conversation_id, "interaction_id": uuid.uuid4().hex, "channel": "email", "text": text},
    }


def admin_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (METHOD, path template) of the admin API, from the app's OpenAPI schema."""
    return sorted(
        (method.upper(), path)
        for path, item in app.openapi()["paths"].items()
        if path.startswith("/api/v1/admin")
        for method in item
    )


# ---------------------------------------------------------------------------------------------- roles


def test_agents_and_supervisors_get_403_on_every_admin_endpoint(live, db_engine):
    routes = admin_routes(live.app)
    assert len(routes) >= 17
    with session(db_engine) as db:
        before = db.execute(sa.select(sa.func.count()).select_from(Change)).scalar_one()
    for who in ("alice@example.com", "sam@example.com"):
        with live.client(who) as http:
            for method, path in routes:
                url = path.replace("{agent}", "bob@example.com").replace("{team}", "Support").replace("{token_id}", "x" * 32)
                body = {"name": "X", "email": "x@example.com", "skills": [], "capacity": {}, "role": "admin", "agent": who}
                response = http.request(method, url, json=body if method in ("POST", "PUT") else None)
                assert response.status_code == 403, (who, method, path, response.text)
                assert "needs the admin role" in response.json()["detail"]
    with live.client(None) as anonymous:
        assert anonymous.get("/api/v1/admin/agents").status_code == 401
    with session(db_engine) as db:  # nothing was written
        assert db.execute(sa.select(sa.func.count()).select_from(Change)).scalar_one() == before
        assert db.exec(select(Agent).where(Agent.email == "x@example.com")).first() is None


def test_require_role_admits_only_the_roles_named(db_engine, world):
    app = FastAPI()
    app.state.engine = db_engine
    supervisors = require_role("supervisor", "admin")

    @app.get("/watch")
    def watch(caller=Depends(supervisors)) -> dict:  # noqa: ANN001, B008 - a local dependency, so no Annotated
        return {"role": caller.agent.role}

    with running(app) as http:
        def call(email: str) -> httpx.Response:
            return http.get("/watch", headers={"Authorization": f"Bearer {world.tokens[email]}"})

        assert call("sam@example.com").json() == {"role": "supervisor"}
        assert call(ADMIN).json() == {"role": "admin"}
        refused = call("alice@example.com")
        assert refused.status_code == 403
        assert refused.json()["detail"] == "This needs the supervisor or admin role; you are signed in as agent."
    with pytest.raises(ValueError, match="require_role"):
        require_role("owner")


# ---------------------------------------------------------------------------------------------- the admin API


def test_admin_can_do_every_operation(live, db_engine):
    used: set[tuple[str, str]] = set()

    def call(http: httpx.Client, method: str, template: str, expect: int = 200, **params) -> dict | list:  # noqa: ANN003
        json = params.pop("json", None)
        response = http.request(method, template.format(**params), json=json)
        assert response.status_code == expect, (method, template, response.text)
        used.add((method, template))
        return response.json()

    with live.client() as http:
        team = call(http, "POST", "/api/v1/admin/teams", 201, json={"name": "Sales", "routing": "queue", "timezone": "Europe/Paris"})
        assert (team["name"], team["routing"], team["timezone"], team["members"], team["active"]) == ("Sales", "queue", "Europe/Paris", 0, True)
        teams = call(http, "GET", "/api/v1/admin/teams")
        assert [t["name"] for t in teams] == ["Billing", "Sales", "Support"]

        new = call(http, "POST", "/api/v1/admin/agents", 201, json={
            "name": "Lee Park", "email": "Lee@Example.com", "role": "supervisor", "teams": ["Sales", "Billing"],
            "skills": ["Spanish", "refunds"], "capacity": {"email": 4, "*": 2},
        })
        assert new["email"] == "lee@example.com" and new["role"] == "supervisor"
        assert new["teams"] == ["Billing", "Sales"] and new["skills"] == ["spanish", "refunds"]
        assert new["capacity"] == {"email": 4, "*": 2} and new["active"] is True
        lee = new["id"]
        agents = call(http, "GET", "/api/v1/admin/agents")
        assert [a["email"] for a in agents] == sorted(a["email"] for a in agents) and len(agents) == 5
        assert call(http, "GET", "/api/v1/admin/agents/{agent}", agent="lee@example.com")["id"] == lee

        assert call(http, "PUT", "/api/v1/admin/agents/{agent}/skills", agent=lee, json={"skills": ["french"]})["skills"] == ["french"]
        assert call(http, "PUT", "/api/v1/admin/agents/{agent}/capacity", agent=lee, json={"capacity": {"sms": 1}})["capacity"] == {"sms": 1}
        assert call(http, "PUT", "/api/v1/admin/agents/{agent}/role", agent=lee, json={"role": "agent"})["role"] == "agent"
        assert call(http, "PUT", "/api/v1/admin/agents/{agent}/teams/{team}", agent=lee, team="Support")["teams"] == ["Billing", "Sales", "Support"]
        assert call(http, "DELETE", "/api/v1/admin/agents/{agent}/teams/{team}", agent=lee, team="Sales")["teams"] == ["Billing", "Support"]
        assert call(http, "POST", "/api/v1/admin/agents/{agent}/disable", agent=lee)["active"] is False
        assert call(http, "POST", "/api/v1/admin/agents/{agent}/enable", agent=lee)["active"] is True
        assert call(http, "POST", "/api/v1/admin/teams/{team}/disable", team="Sales")["active"] is False
        assert call(http, "POST", "/api/v1/admin/teams/{team}/enable", team=team["id"])["active"] is True

        issued = call(http, "POST", "/api/v1/admin/tokens", 201, json={"agent": "lee@example.com"})
        assert issued["token"].startswith("adk_") and issued["hint"] == issued["token"][-4:]
        assert (issued["kind"], issued["agent_email"], issued["revoked_at"]) == ("agent", "lee@example.com", None)
        machine = call(http, "POST", "/api/v1/admin/tokens", 201, json={"integration": "Acme CRM"})
        assert (machine["kind"], machine["name"], machine["agent_id"]) == ("integration", "Acme CRM", None)
        listed = call(http, "GET", "/api/v1/admin/tokens")
        hashes = {hashlib.sha256(t.encode()).hexdigest() for t in (issued["token"], machine["token"], *live.tokens.values())}
        for row in listed:
            assert set(row) == {"id", "kind", "agent_id", "agent_email", "name", "hint", "created_at", "revoked_at"}
            assert not hashes & {str(v) for v in row.values()}  # neither a hash nor a token is ever listed
            assert "token" not in row
        assert {r["id"] for r in listed} >= {issued["id"], machine["id"]}
        with live.client(token=issued["token"]) as as_lee:
            assert as_lee.get("/api/v1/me").json()["email"] == "lee@example.com"
            revoked = call(http, "POST", "/api/v1/admin/tokens/{token_id}/revoke", token_id=issued["id"])
            assert revoked["revoked_at"] is not None and "token" not in revoked
            assert as_lee.get("/api/v1/me").status_code == 401

        # Refusals map to 400 / 404 / 409 with the admin module's message.
        assert http.post("/api/v1/admin/teams", json={"name": "Sales"}).status_code == 409
        assert http.post("/api/v1/admin/agents/nobody@example.com/disable").status_code == 404
        assert http.put(f"/api/v1/admin/agents/{lee}/role", json={"role": "owner"}).status_code == 400
        assert http.put(f"/api/v1/admin/agents/{lee}/capacity", json={"capacity": {"fax": 1}}).status_code == 400
        assert http.post(f"/api/v1/admin/tokens/{issued['id']}/revoke").status_code == 409
        assert http.post("/api/v1/admin/tokens", json={}).status_code == 400
        last_admin = http.post(f"/api/v1/admin/agents/{ADMIN}/disable")
        assert last_admin.status_code == 409 and "last enabled admin" in last_admin.json()["detail"]

    assert used == set(admin_routes(live.app)), "an admin route was not exercised"

    # Desks see agent, team and membership changes through the change log.
    with live.client("alice@example.com") as alice:
        changes = alice.get("/api/v1/sync/pull", params={"limit": 10000}).json()["changes"]
    seen = {(c["entity"], c["id"]) for c in changes}
    assert ("teams", team["id"]) in seen and ("agents", lee) in seen
    lee_rows = [c["data"] for c in changes if c["entity"] == "agents" and c["id"] == lee]
    assert lee_rows[-1]["skills"] == ["french"] and lee_rows[-1]["capacity"] == {"sms": 1}  # the latest state
    assert any(c["entity"] == "agent_teams" and c["op"] == "delete" for c in changes)
    with session(db_engine) as db:
        sales = db.exec(select(Team).where(Team.name == "Sales")).one()
        assert db.exec(select(AgentTeam).where(AgentTeam.team_id == sales.id)).all() == []


def test_unknown_fields_are_refused_with_422(live, db_engine):
    with live.client() as http:
        bodies = {
            ("POST", "/api/v1/admin/agents"): {"name": "Eve", "email": "eve@example.com", "superuser": True},
            ("POST", "/api/v1/admin/teams"): {"name": "Ops", "colour": "red"},
            ("POST", "/api/v1/admin/tokens"): {"agent": "alice@example.com", "expires": "never"},
            ("PUT", "/api/v1/admin/agents/alice@example.com/skills"): {"skills": [], "extra": 1},
            ("PUT", "/api/v1/admin/agents/alice@example.com/capacity"): {"capacity": {}, "extra": 1},
            ("PUT", "/api/v1/admin/agents/alice@example.com/role"): {"role": "admin", "extra": 1},
        }
        for (method, path), body in bodies.items():
            response = http.request(method, path, json=body)
            assert response.status_code == 422, (path, response.text)
            assert response.json()["detail"][0]["type"] == "extra_forbidden"
    with session(db_engine) as db:
        assert db.exec(select(Agent).where(Agent.email == "eve@example.com")).first() is None
        assert db.get(Agent, live.world.agents["alice@example.com"]).role == "agent"


# ---------------------------------------------------------------------------------------------- tokens


def test_a_revoked_token_gets_401(live):
    with live.client("alice@example.com") as alice:
        assert alice.get("/api/v1/me").status_code == 200
        with live.client() as http:
            alice_token = next(
                t for t in http.get("/api/v1/admin/tokens").json() if t["agent_email"] == "alice@example.com"
            )
            assert http.post(f"/api/v1/admin/tokens/{alice_token['id'][:8]}/revoke").status_code == 200  # a prefix will do
        refused = alice.get("/api/v1/me")
        assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
        assert refused.headers["www-authenticate"] == "Bearer"
        assert alice.get("/api/v1/sync/pull").status_code == 401


def test_a_disabled_agent_gets_401_until_enabled(live):
    with live.client("bob@example.com") as bob, live.client() as http:
        assert bob.get("/api/v1/me").status_code == 200
        assert http.post("/api/v1/admin/agents/bob@example.com/disable").json()["presence"] == "offline"
        refused = bob.get("/api/v1/sync/pull")
        assert refused.status_code == 401 and "disabled" in refused.json()["detail"]
        assert bob.post("/api/v1/sync/push", json={"mutations": []}).status_code == 401
        assert http.post("/api/v1/admin/tokens", json={"agent": "bob@example.com"}).status_code == 409  # no token for a disabled agent
        http.post("/api/v1/admin/agents/bob@example.com/enable")
        assert bob.get("/api/v1/me").status_code == 200


def test_an_integration_token_cannot_act_as_an_agent(live, db_engine):
    with session(db_engine) as db:
        machine = issue_integration_token(db, "Acme IVR")
        db.commit()
        assert agent_for_token(db, machine) is None
        assert integration_for_token(db, machine).name == "Acme IVR"
    with live.client(token=machine) as http:
        for path in ("/api/v1/me", "/api/v1/sync/pull", "/api/v1/admin/agents"):
            refused = http.get(path)
            assert refused.status_code == 401, path
            assert "integration token" in refused.json()["detail"]


def test_the_integration_dependency_refuses_agent_tokens(db_engine, world):
    app = FastAPI()
    app.state.engine = db_engine

    @app.post("/feed")
    def feed(integration: IntegrationDep) -> dict:
        return {"source": integration.name}

    with session(db_engine) as db:
        machine = issue_integration_token(db, "Acme CRM")
        db.commit()
    with running(app) as http:
        def call(token: str | None) -> httpx.Response:
            return http.post("/feed", headers={"Authorization": f"Bearer {token}"} if token else {})

        assert call(machine).json() == {"source": "Acme CRM"}
        agent = call(world.tokens["alice@example.com"])
        assert agent.status_code == 401 and "this endpoint needs an integration token" in agent.json()["detail"]
        assert call(None).status_code == 401 and call("adk_nonsense").status_code == 401
        with session(db_engine) as db:
            row = db.exec(select(ApiToken).where(ApiToken.name == "Acme CRM")).one()
            admin.revoke_token(db, row.id)
        assert call(machine).status_code == 401
        assert "revoked" in call(machine).json()["detail"]


def test_tokens_keep_only_a_hash_and_a_hint(db_engine, world):
    with session(db_engine) as db:
        row, token = admin.issue(db, integration="Acme")
        stored = db.get(ApiToken, row.id)
        assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest() and stored.hint == token[-4:]
        assert token not in {str(v) for v in stored.model_dump().values()}


# ---------------------------------------------------------------------------------------------- limits


def test_an_oversized_body_gets_413_with_or_without_content_length(serve):
    live = serve(Settings(server={"max_body_bytes": SMALL_BODY_LIMIT}))
    conversation = live.world.conversations["maria-email"]
    big = {"mutations": [reply(conversation, "x" * (SMALL_BODY_LIMIT * 2))]}
    with live.client("alice@example.com") as alice:
        declared = alice.post("/api/v1/sync/push", json=big)
        assert declared.status_code == 413
        assert declared.json() == {"detail": f"Request body too large; the limit is {SMALL_BODY_LIMIT:,} bytes."}

        payload = httpx.Request("POST", "/", json=big).content

        def chunks(data: bytes):  # noqa: ANN202 - an iterator makes httpx send Transfer-Encoding: chunked
            for start in range(0, len(data), 1000):
                yield data[start : start + 1000]

        chunked = alice.post("/api/v1/sync/push", content=chunks(payload), headers={"Content-Type": "application/json"})
        assert chunked.request.headers.get("transfer-encoding") == "chunked" and "content-length" not in chunked.request.headers
        assert chunked.status_code == 413
        assert chunked.json()["detail"].startswith("Request body too large")

        # A body under the limit goes through, chunked too.
        small = httpx.Request("POST", "/", json={"mutations": [reply(conversation, "Small and chunked.")]}).content
        ok = alice.post("/api/v1/sync/push", content=chunks(small), headers={"Content-Type": "application/json"})
        assert ok.status_code == 200 and ok.json()["results"][0]["status"] == "applied"
    assert live.app.state.settings.server.max_body_bytes == SMALL_BODY_LIMIT


async def test_the_body_limit_also_stops_apps_that_read_the_stream_themselves():
    seen: list[int] = []

    async def raw_app(scope, receive, send) -> None:  # noqa: ANN001 - reads every chunk, like a raw webhook
        total = 0
        while True:
            message = await receive()
            total += len(message.get("body", b""))
            seen.append(total)
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"read it all"})

    async def run(chunks: list[bytes], headers: list[tuple[bytes, bytes]]) -> list[dict]:
        queue = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
        sent: list[dict] = []

        async def receive() -> dict:
            return queue.pop(0)

        async def send(message: dict) -> None:
            sent.append(message)

        await BodyLimit(raw_app, max_bytes=10)({"type": "http", "headers": headers}, receive, send)
        return sent

    over = await run([b"12345", b"67890", b"X"], [(b"transfer-encoding", b"chunked")])
    assert over[0]["status"] == 413 and b"too large" in over[1]["body"]
    assert seen == [5, 10]  # the 11th byte was never handed to the app
    assert (await run([b"x"], [(b"content-length", b"11")]))[0]["status"] == 413
    under = await run([b"12345", b"67890"], [])
    assert under[0]["status"] == 200 and under[1]["body"] == b"read it all"


def test_429_with_retry_after_once_a_token_spends_its_burst(serve):
    live = serve(Settings(server={"rate_limit_per_second": 0.2, "rate_limit_burst": 5}))
    with live.client("alice@example.com") as alice, live.client("bob@example.com") as bob:
        statuses = [alice.get("/api/v1/me").status_code for _ in range(5)]
        limited = alice.get("/api/v1/me")
        assert statuses == [200] * 5
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) == 5  # one request's worth at 0.2 a second
        assert "Too many requests" in limited.json()["detail"]
        assert bob.get("/api/v1/me").status_code == 200  # buckets are per token
    with httpx.Client(base_url=live.url) as anonymous:  # no token: not this limiter's business
        assert all(anonymous.get("/healthz").status_code == 200 for _ in range(10))


def test_token_buckets_refill_at_the_configured_rate():
    now = [100.0]
    buckets = TokenBuckets(rate=2.0, burst=3, clock=lambda: now[0], max_keys=2)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)
    now[0] += 0.5
    assert buckets.take("a") == 0.0 and buckets.take("a") > 0
    buckets.take("b")
    buckets.take("c")  # over max_keys: the least recently used key ("a") is forgotten
    assert "a" not in buckets._buckets and buckets.take("a") == 0.0
    with pytest.raises(ValueError):
        TokenBuckets(rate=0, burst=1)


async def test_rate_limit_keys_on_the_token_hash_not_the_token():
    async def app(scope, receive, send) -> None:  # noqa: ANN001
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    limiter = RateLimit(app, rate=1, burst=1)
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "headers": [(b"authorization", b"Bearer adk_secret")]}
    await limiter(scope, None, send)
    await limiter(scope, None, send)
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [204, 429]
    assert list(limiter.buckets._buckets) == [hashlib.sha256(b"adk_secret").hexdigest()]


# ---------------------------------------------------------------------------------------------- logs


def test_access_logs_at_debug_hold_neither_tokens_nor_bodies(serve, caplog, monkeypatch):
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        monkeypatch.setattr(logging.getLogger(name), "propagate", True)  # into caplog, whatever configured them before
    caplog.set_level(logging.DEBUG)
    live = serve(log_config=None, log_level="debug", access_log=True)
    secret_text = f"card ending 4242, code {uuid.uuid4().hex}"
    token = live.tokens["alice@example.com"]
    wrong_token = "adk_" + uuid.uuid4().hex
    with live.client("alice@example.com") as alice:
        pushed = alice.post("/api/v1/sync/push", json={"mutations": [reply(live.world.conversations["maria-email"], secret_text)]})
        assert pushed.json()["results"][0]["status"] == "applied"
        assert alice.post("/api/v1/sync/push", json={"mutations": [], "note": secret_text}).status_code == 422
        assert alice.post("/api/v1/admin/agents", json={"name": secret_text, "email": "z@example.com"}).status_code == 403
    with live.client(token=wrong_token) as stranger:
        assert stranger.get("/api/v1/me").status_code == 401
    time.sleep(0.2)  # the access log line is written after the response
    text = caplog.text
    assert re.search(r'"POST /api/v1/sync/push HTTP/1.1" 200', text), "the access log was not captured"
    assert '"GET /api/v1/me HTTP/1.1" 401' in text
    for secret in (token, wrong_token, secret_text, secret_text.split()[-1]):
        assert secret not in text


def test_no_route_accepts_a_token_in_the_query_string(live):
    spec = httpx.get(f"{live.url}/openapi.json").json()
    suspicious = re.compile(r"token|auth|key|secret|password|bearer", re.I)
    query_params = [
        (path, param["name"])
        for path, item in spec["paths"].items()
        for operation in item.values()
        for param in operation.get("parameters", [])
        if param["in"] == "query"
    ]
    assert query_params  # the check sees real query parameters (pull's cursor, bootstrap's entity…)
    assert [p for p in query_params if suspicious.search(p[1])] == []
    token = live.tokens["alice@example.com"]
    for name in ("token", "access_token", "api_key"):
        assert httpx.get(f"{live.url}/api/v1/me", params={name: token}).status_code == 401


# ---------------------------------------------------------------------------------------------- declared config


DECLARED = """
[[teams]]
name = "Billing"
timezone = "Europe/London"
hours = { mon = "09:00-17:00", tue = "09:00-17:00", fri = "10:00-16:00" }
holidays = [2026-12-25, "2026-12-26"]
routing = "queue"

[[teams]]
name = "Nights"
hours = { mon = "22:00-24:00", tue = "00:00-06:00" }

[[sla.policies]]
channel = "email"
first_response = 240
resolution = 2880

[[sla.policies]]
priority = "urgent"
first_response = 15

[[routing.rules]]
channel = "sms"
team = "Nights"

[[routing.rules]]
keyword = "invoice"
team = "Billing"
"""


def declared_settings(tmp_path: Path, text: str = DECLARED) -> Settings:
    path = tmp_path / "server.toml"
    path.write_text(text)
    return load_settings(path, env={})


def test_declared_teams_policies_and_rules_are_applied_idempotently(db_engine, world, tmp_path):
    settings = declared_settings(tmp_path)
    with session(db_engine) as db:
        first = apply_declared(db, settings)
        seq = db.execute(sa.select(sa.func.max(Change.seq))).scalar_one()
        again = apply_declared(db, settings)
        assert db.execute(sa.select(sa.func.max(Change.seq))).scalar_one() == seq  # a restart writes nothing
    assert first == {"teams": 2, "sla_policies": 2, "routing_rules": 2}
    assert again == {"teams": 0, "sla_policies": 0, "routing_rules": 0}
    with session(db_engine) as db:
        billing = db.exec(select(Team).where(Team.name == "Billing")).one()
        assert billing.id == world.teams["Billing"]  # updated in place, by name
        assert (billing.timezone, billing.routing) == ("Europe/London", "queue")
        assert billing.hours == {"mon": "09:00-17:00", "tue": "09:00-17:00", "fri": "10:00-16:00"}
        assert billing.holidays == ["2026-12-25", "2026-12-26"]
        nights = db.exec(select(Team).where(Team.name == "Nights")).one()
        policies = {(p.channel, p.priority): (p.first_response_minutes, p.next_response_minutes, p.resolution_minutes)
                    for p in db.exec(select(SlaPolicy))}
        assert policies == {("email", None): (240, None, 2880), (None, "urgent"): (15, None, None)}
        rules = [(r.position, r.channel, r.keyword, r.team_id) for r in db.exec(select(RoutingRule).order_by(RoutingRule.position))]
        assert rules == [(0, "sms", None, nights.id), (1, None, "invoice", billing.id)]
        changes = db.exec(select(Change).where(Change.entity == "teams", Change.entity_id == nights.id)).all()
        assert len(changes) == 1  # desks learn about the new team once

    # Edit the file: a changed target, a dropped policy, reordered rules.
    edited = DECLARED.replace("first_response = 240", "first_response = 120").replace(
        '[[sla.policies]]\npriority = "urgent"\nfirst_response = 15\n', ""
    )
    edited = edited.replace('channel = "sms"\nteam = "Nights"', 'channel = "sms"\nteam = "Billing"')
    with session(db_engine) as db:
        assert apply_declared(db, declared_settings(tmp_path, edited)) == {"teams": 0, "sla_policies": 2, "routing_rules": 4}
        assert [(p.channel, p.first_response_minutes) for p in db.exec(select(SlaPolicy))] == [("email", 120)]
        assert [r.team_id for r in db.exec(select(RoutingRule).order_by(RoutingRule.position))] == [billing.id] * 2
        # Nothing declared: stored policies and rules are left alone.
        assert apply_declared(db, Settings()) == {"teams": 0, "sla_policies": 0, "routing_rules": 0}
        assert db.exec(select(SlaPolicy)).all() and db.exec(select(RoutingRule)).all()


def test_create_app_applies_the_declared_config(serve, db_engine, tmp_path):
    live = serve(declared_settings(tmp_path))
    with live.client() as http:
        names = {t["name"]: t for t in http.get("/api/v1/admin/teams").json()}
    assert names["Nights"]["hours"] == {"mon": "22:00-24:00", "tue": "00:00-06:00"}
    assert names["Billing"]["routing"] == "queue"
    assert live.app.state.declared == {"teams": 2, "sla_policies": 2, "routing_rules": 2}


def test_a_rule_for_an_unknown_team_is_refused(db_engine, world, tmp_path):
    settings = declared_settings(tmp_path, '[[routing.rules]]\nkeyword = "refund"\nteam = "Refunds"\n')
    with session(db_engine) as db, pytest.raises(DeclaredError, match="number 1 sends to team 'Refunds', which does not exist"):
        apply_declared(db, settings)
    with session(db_engine) as db:
        assert db.exec(select(RoutingRule)).all() == []


@pytest.mark.parametrize(
    ("toml", "line", "message"),
    [
        ('[[teams]]\nname = "A"\nhours = { mon = "9-5" }\n', 3, "teams.0.hours: mon: expected 'HH:MM-HH:MM' such as '09:00-17:00', got '9-5'"),
        ('[[teams]]\nname = "A"\nhours = { mon = "17:00-09:00" }\n', 3, "teams.0.hours: mon: opening 17:00 is not before closing 09:00"),
        ('[[teams]]\nname = "A"\nhours = { mon = "09:00-25:00" }\n', 3, "teams.0.hours: mon: expected times from 00:00 to 24:00"),
        ('[[teams]]\nname = "A"\n\nhours = { mnday = "09:00-17:00" }\n', 4, "teams.0.hours: unknown day 'mnday'"),
        ('[[teams]]\nname = "A"\ntimezone = "Mars/Base"\n', 3, "teams.0.timezone: expected an IANA time zone"),
        ('[[teams]]\nname = "A"\nholidays = ["25/12/2026"]\n', 3, "teams.0.holidays.0: expected a date like 2026-12-25"),
        ('[[teams]]\nname = "A"\nrouting = "roundrobin"\n', 3, 'teams.0.routing: expected one of round_robin, queue, got \'roundrobin\' (did you mean "round_robin"?)'),
        ('[[teams]]\nname = "A"\n[[teams]]\nname = "A"\n', 1, "teams: [[teams]] number 2 declares 'A' again"),
        ('[[sla.policies]]\nchannel = "fax"\nfirst_response = 5\n', 2, "[sla] policies.0.channel: expected one of email, sms, whatsapp, chat, phone"),
        ('[[sla.policies]]\nchannel = "sms"\n', 1, "[sla] policies.0: a policy needs at least one of first_response"),
        ('[[sla.policies]]\nfirst_response = 0\n', 2, "[sla] policies.0.first_response: expected a number of minutes greater than 0"),
        ('[[sla.policies]]\nresolution = 5\n[[sla.policies]]\nresolution = 6\n', 1, "[sla] policies: [[sla.policies]] number 2 has the same channel (any) and priority (any) as number 1"),
        ('[[routing.rules]]\nkeyword = "x"\n', 1, "[routing] rules.0.team: missing required key"),
        ('[[routing.rules]]\nteam = "A"\nteams = "B"\n', 3, "[routing] rules.0.teams: unknown key"),
        ('[server]\nrate_limit_burst = 0\n', 2, "[server] rate_limit_burst: expected an integer at least 1, got 0"),
        ('[server]\nrate_limit_per_second = -1\n', 2, "[server] rate_limit_per_second: expected a number greater than 0, got -1"),
    ],
)
def test_bad_declarations_are_reported_with_file_and_line(tmp_path, toml, line, message):
    path = tmp_path / "server.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    lines = str(info.value).splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{path}:{line}: {message}"), lines


def test_the_commented_examples_in_config_example_toml_are_valid(tmp_path):
    """The `#   ` examples for [[teams]], [[sla.policies]] and [[routing.rules]], switched on, load and apply."""
    lines = []
    for line in (REPO / "config.example.toml").read_text().splitlines():
        if line.startswith("#   ") and not line.startswith("#   AGENTDESK_"):
            line = line[4:]
        elif line.startswith("# policies =") or line.startswith("# rules ="):
            continue
        lines.append(line)
    settings = declared_settings(tmp_path, "\n".join(lines) + "\n")
    assert [t.name for t in settings.teams] == ["Billing"] and settings.teams[0].hours["fri"] == "09:00-16:00"
    assert len(settings.sla.policies) == 2 and settings.routing.rules[0].team == "Billing"


def test_rate_limit_defaults():
    server = Settings().server
    assert (server.rate_limit_per_second, server.rate_limit_burst) == (50.0, 200)


def test_disabling_an_agent_returns_their_waiting_work_to_the_queue_after_the_grace(db_engine, world):
    from agentdesk.domain.clock import utcnow
    from agentdesk.server.models import Conversation
    from agentdesk.server.routing import return_unanswered

    later, grace = utcnow() + timedelta(minutes=10), timedelta(minutes=5)
    with session(db_engine) as db:
        conversation = db.get(Conversation, world.conversations["maria-email"])
        conversation.assignee_id, conversation.awaiting_since = world.agents["alice@example.com"], utcnow()
        db.add(conversation)
        db.commit()
        assert return_unanswered(db, later, grace) == 0  # enabled (presence never set): kept
        admin.disable_agent(db, "alice@example.com")
        alice = db.get(Agent, world.agents["alice@example.com"])
        assert (alice.active, alice.presence) == (False, "offline")
        assert return_unanswered(db, later, grace) == 1
        assert db.get(Conversation, world.conversations["maria-email"]).assignee_id is None


def test_a_declared_length_over_the_cap_is_refused_before_the_body_is_read(serve):
    live = serve(Settings(server={"max_body_bytes": 10}))
    response = httpx.post(f"{live.url}/api/v1/sync/push", content=b"{" + b" " * 20 + b"}",
                          headers={"Authorization": f"Bearer {live.tokens['alice@example.com']}", "Content-Type": "application/json"})
    assert response.status_code == 413 and response.headers["connection"] == "close"
