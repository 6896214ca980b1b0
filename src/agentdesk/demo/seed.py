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
    """Insert every demo row and a token for the demo agent, in one transaction.

    A conversation's SLA due time is its running first-response target: so a new message on it keeps that
    clock (server/sla.py recomputes the targets of a conversation that has none, from its start)."""
    agent_teams = [{"id": new_id(), **row} for row in data.agent_teams]
    token = {"id": new_id(), "agent_id": data.demo_agent_id, "token_hash": hash_token(demo_token)}
    with engine.begin() as conn:
        for model, rows in (
            (Team, data.teams),
            (Agent, data.agents),
            (AgentTeam, agent_teams),
            (Customer, data.customers),
            (Identity, data.identities),
            (Conversation, [{**row, "first_response_due": row["sla_due"]} for row in data.conversations]),
            (Interaction, [_with_external_id(row) for row in data.interactions]),
            (ApiToken, [token]),
        ):
            if rows:
                conn.execute(model.__table__.insert(), rows)  # type: ignore[attr-defined]


def _with_external_id(row: dict) -> dict:
    """An email's Message-ID is its external id, as for mail the server takes in or sends: so a customer's
    answer (In-Reply-To) threads into the seeded conversation it answers."""
    meta = row.get("meta") or {}
    return {**row, "external_id": meta.get("message_id") if row["channel"] == "email" else None}
