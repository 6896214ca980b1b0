"""Reads of single records, for scripts and integrations (the desk reads its cache): 404 for what is not visible."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from sqlmodel import select

from agentdesk.server.deps import CallerDep, SessionDep
from agentdesk.server.models import Conversation, Identity, Interaction, MergeSuggestion
from agentdesk.server.visibility import customer_visible, visible_conversation, visible_customer
from agentdesk.server.wire import wire_row

router = APIRouter(prefix="/api/v1", tags=["records"])


@router.get("/conversations/{conversation_id}")
def conversation(conversation_id: str, caller: CallerDep, session: SessionDep) -> dict[str, Any]:
    """A conversation and its interactions, oldest first."""
    found = visible_conversation(session, caller.teams, conversation_id)
    if found is None:
        raise HTTPException(404, "No such conversation.")
    interactions = session.exec(
        select(Interaction).where(Interaction.conversation_id == found.id).order_by(Interaction.occurred_at)  # type: ignore[arg-type]
    )
    return {"conversation": wire_row(found), "interactions": [wire_row(i) for i in interactions]}


@router.get("/customers/{customer_id}")
def customer(customer_id: str, caller: CallerDep, session: SessionDep) -> dict[str, Any]:
    """A customer with their identities, the conversations the caller may see, and open merge suggestions."""
    found = visible_customer(session, caller.teams, customer_id)
    if found is None:
        raise HTTPException(404, "No such customer.")
    identities = session.exec(select(Identity).where(Identity.customer_id == found.id))
    conversations = session.exec(
        select(Conversation).where(Conversation.customer_id == found.id, Conversation.team_id.in_(caller.teams))  # type: ignore[attr-defined]
    )
    suggestions = session.exec(
        select(MergeSuggestion).where(
            MergeSuggestion.status == "open",
            (MergeSuggestion.customer_id == found.id) | (MergeSuggestion.other_id == found.id),
            customer_visible(MergeSuggestion.customer_id, caller.teams),  # type: ignore[arg-type]
            customer_visible(MergeSuggestion.other_id, caller.teams),  # type: ignore[arg-type]
        )
    )
    return {
        "customer": wire_row(found),
        "identities": [wire_row(i) for i in identities],
        "conversations": [wire_row(c) for c in conversations],
        "merge_suggestions": [wire_row(s) for s in suggestions],
    }
