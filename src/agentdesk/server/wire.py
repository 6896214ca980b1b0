"""How server rows travel: one shape for bootstrap pages and change-log entries alike."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import SQLModel

from agentdesk.domain.clock import to_iso
from agentdesk.server.models import (
    Agent,
    AgentTeam,
    Conversation,
    Customer,
    Identity,
    Interaction,
    MergeSuggestion,
    Team,
)

# Entity name on the wire -> table model. Order matters for bootstrap (parents first).
ENTITIES: dict[str, type[SQLModel]] = {
    "teams": Team,
    "agents": Agent,
    "agent_teams": AgentTeam,
    "customers": Customer,
    "identities": Identity,
    "conversations": Conversation,
    "interactions": Interaction,
    "merge_suggestions": MergeSuggestion,
}
ENTITY_OF: dict[type[SQLModel], str] = {model: name for name, model in ENTITIES.items()}


def columns(entity: str) -> list[str]:
    return list(ENTITIES[entity].__table__.columns.keys())  # type: ignore[attr-defined]


def wire_value(value: Any) -> Any:
    return to_iso(value) if isinstance(value, datetime) else value


def wire_row(obj: SQLModel) -> dict[str, Any]:
    return {name: wire_value(getattr(obj, name)) for name in columns(ENTITY_OF[type(obj)])}
