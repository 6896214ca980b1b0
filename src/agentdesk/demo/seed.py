"""Load generated demo data into a fresh server database (bulk Core inserts, no ORM on this path)."""

from __future__ import annotations

import sqlalchemy as sa

from agentdesk.demo.data import DemoData
from agentdesk.server.auth import hash_token, new_id
from agentdesk.server.models import (
    Agent,
    AgentTeam,
    ApiToken,
    Conversation,
    Customer,
    Identity,
    Interaction,
    Team,
)


def seed_demo(engine: sa.Engine, data: DemoData, demo_token: str) -> None:
    """Insert every demo row and a token for the demo agent, in one transaction."""
    agent_teams = [{"id": new_id(), **row} for row in data.agent_teams]
    token = {"id": new_id(), "agent_id": data.demo_agent_id, "token_hash": hash_token(demo_token)}
    with engine.begin() as conn:
        for model, rows in (
            (Team, data.teams),
            (Agent, data.agents),
            (AgentTeam, agent_teams),
            (Customer, data.customers),
            (Identity, data.identities),
            (Conversation, data.conversations),
            (Interaction, data.interactions),
            (ApiToken, [token]),
        ):
            if rows:
                conn.execute(model.__table__.insert(), rows)  # type: ignore[attr-defined]
