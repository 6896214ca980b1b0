"""The agent-token cache (server/deps.py get_caller, server/config_cache.py): presence changes keep it, a change
that matters to authorisation drops it at once."""

from __future__ import annotations

from agentdesk.server.config_cache import cached, peek
from agentdesk.server.db import session
from agentdesk.server.events import write_presence
from agentdesk.server.models import Agent


def test_presence_keeps_cached_callers_and_a_role_change_drops_them(live_server):
    engine, alice = live_server.engine, live_server.world.agents["alice@example.com"]
    cached(engine, "probe", lambda: "cached")
    with session(engine) as db:
        write_presence(db, alice, status="available")  # every desk start: must not flush the caches
    assert peek(engine, "probe") == "cached"
    with session(engine) as db:
        db.get(Agent, alice).role = "supervisor"
        db.commit()
    assert peek(engine, "probe") is None


def test_a_disabled_agent_is_refused_at_once_though_their_caller_was_cached(live_server):
    import httpx

    url, token = live_server.url, live_server.world.tokens["alice@example.com"]
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{url}/api/v1/me", headers=headers, timeout=10).status_code == 200  # now cached
    with session(live_server.engine) as db:
        db.get(Agent, live_server.world.agents["alice@example.com"]).active = False
        db.commit()
    assert httpx.get(f"{url}/api/v1/me", headers=headers, timeout=10).status_code == 401
