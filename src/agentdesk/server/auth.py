"""Agent API tokens: random, stored as a SHA-256 hash, shown once, checked in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid

from sqlmodel import Session, select

from agentdesk.server.models import Agent, AgentTeam, ApiToken

TOKEN_PREFIX = "adk_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_id() -> str:
    return uuid.uuid4().hex


def issue_token(session: Session, agent: Agent, token: str | None = None) -> str:
    """Store a new token's hash for `agent` and return the token (the only time it exists in clear)."""
    token = token or TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(id=new_id(), agent_id=agent.id, token_hash=hash_token(token)))
    return token


def agent_for_token(session: Session, token: str) -> Agent | None:
    digest = hash_token(token)
    row = session.exec(
        select(ApiToken, Agent).join(Agent, Agent.id == ApiToken.agent_id).where(
            ApiToken.token_hash == digest, ApiToken.revoked_at.is_(None)  # type: ignore[union-attr]
        )
    ).first()
    if row is None or not hmac.compare_digest(row[0].token_hash, digest):
        return None
    return row[1]


def team_ids(session: Session, agent_id: str) -> list[str]:
    return list(session.exec(select(AgentTeam.team_id).where(AgentTeam.agent_id == agent_id)))

