"""API tokens: random, stored as a SHA-256 hash, shown once, checked in constant time.

Two kinds: an *agent* token acts as one agent (the desk, the CLI); an *integration* token belongs to a
system that feeds conversations in (a CRM, an IVR) and may only call the integration endpoints. Tokens
travel only in the `Authorization: Bearer` header, never in a URL, so no access log can hold one.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading

import sqlalchemy as sa
from sqlmodel import Session, select

from agentdesk.server.models import Agent, AgentTeam, ApiToken

TOKEN_PREFIX = "adk_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


_UUID4_CLEAR = ~((0xF << 76) | (0x3 << 62))  # the version and variant bits of a UUID...
_UUID4_SET = (0x4 << 76) | (0x2 << 62)  # ...set for version 4, RFC 4122 variant


_random = threading.local()  # per thread: (os.urandom bytes, how many of them ids have used)
os.register_at_fork(after_in_child=lambda: vars(_random).clear())  # a forked child must not repeat our ids


def new_id() -> str:
    """A random UUID (version 4) as 32 hex digits, as uuid.uuid4().hex gives, from the same source
    (os.urandom), read 4 KiB at a time: the inbound path makes several ids per message, and each
    os.urandom call is a system call that also lets other threads take the GIL."""
    pool, at = getattr(_random, "pool", (b"", 0))
    if at >= len(pool):
        pool, at = os.urandom(4096), 0
    _random.pool = (pool, at + 16)
    return f"{int.from_bytes(pool[at:at + 16]) & _UUID4_CLEAR | _UUID4_SET:032x}"


HINT_LENGTH = 4  # the token's last characters kept in clear, so an admin can tell tokens apart


def new_token(session: Session, *, kind: str, agent_id: str | None = None, name: str | None = None,
              token: str | None = None) -> tuple[ApiToken, str]:
    """Store a new token's hash and return the row and the token (the only time it exists in clear)."""
    token = token or TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(id=new_id(), kind=kind, agent_id=agent_id, name=name, token_hash=hash_token(token),
                   hint=token[-HINT_LENGTH:])
    session.add(row)
    return row, token


def issue_token(session: Session, agent: Agent, token: str | None = None) -> str:
    """A new agent token for `agent` (added to the session; the caller commits)."""
    return new_token(session, kind="agent", agent_id=agent.id, token=token)[1]


def issue_integration_token(session: Session, name: str, token: str | None = None) -> str:
    """A new integration token for the system called `name` (added to the session; the caller commits)."""
    return new_token(session, kind="integration", name=name, token=token)[1]


def _live_token(session: Session, token: str, kind: str) -> ApiToken | None:
    """The unrevoked token row of `kind` whose hash matches, compared in constant time."""
    digest = hash_token(token)
    row = session.exec(
        select(ApiToken).where(
            ApiToken.token_hash == digest, ApiToken.revoked_at.is_(None)  # type: ignore[union-attr]
        )
    ).first()
    if row is None or not hmac.compare_digest(row.token_hash, digest) or row.kind != kind:
        return None
    return row


_AGENT, _TOKEN = Agent.__table__, ApiToken.__table__  # type: ignore[attr-defined]
# Core, one query: the token cache (server/deps.py) reloads every desk's caller every few seconds, and with
# hundreds of desks the ORM's token, agent and team loads cost about as much as all their pushes.
_AGENT_OF_TOKEN = (
    sa.select(_AGENT, _TOKEN.c.token_hash.label("token_hash_"))
    .join(_TOKEN, _TOKEN.c.agent_id == _AGENT.c.id)
    .where(_TOKEN.c.token_hash == sa.bindparam("digest"), _TOKEN.c.kind == "agent", _TOKEN.c.revoked_at.is_(None))
)
_TEAMS_OF = sa.select(AgentTeam.__table__.c.team_id).where(AgentTeam.__table__.c.agent_id == sa.bindparam("agent_id"))  # type: ignore[attr-defined]


def agent_for_token(session: Session, token: str) -> Agent | None:
    """The agent of an unrevoked agent token, if that agent is enabled; None for anything else. A detached
    copy, read only (not in `session`)."""
    digest = hash_token(token)
    row = session.connection().execute(_AGENT_OF_TOKEN, {"digest": digest}).mappings().first()
    if row is None or not hmac.compare_digest(row["token_hash_"], digest) or not row["active"]:
        return None
    return Agent.model_validate({name: row[name] for name in Agent.model_fields})


def teams_of_tokens(connection: sa.Connection, digests: list[str]) -> dict[str, frozenset[str]]:
    """The teams of the agent behind each of these token hashes that still grants access (unrevoked agent
    token, enabled agent); a hash that no longer does is absent. One query, for the event hub's streams."""
    member = AgentTeam.__table__  # type: ignore[attr-defined]
    rows = connection.execute(
        sa.select(_TOKEN.c.token_hash, member.c.team_id)
        .join(_AGENT, _AGENT.c.id == _TOKEN.c.agent_id)
        .outerjoin(member, member.c.agent_id == _AGENT.c.id)
        .where(_TOKEN.c.token_hash.in_(digests), _TOKEN.c.kind == "agent", _TOKEN.c.revoked_at.is_(None), _AGENT.c.active)
    )
    teams: dict[str, set[str]] = {}
    for digest, team_id in rows:
        found = teams.setdefault(digest, set())
        if team_id is not None:
            found.add(team_id)
    return {digest: frozenset(found) for digest, found in teams.items()}


def integration_for_token(session: Session, token: str) -> ApiToken | None:
    """The row of an unrevoked integration token; None for agent tokens and anything else."""
    return _live_token(session, token, "integration")


def team_ids(session: Session, agent_id: str) -> list[str]:
    return list(session.connection().execute(_TEAMS_OF, {"agent_id": agent_id}).scalars())



def refusal(session: Session, token: str | None, wanted: str) -> str:
    """Why `token` cannot act as a `wanted` ("agent" | "integration") caller, in words for the caller."""
    row = session.exec(select(ApiToken).where(ApiToken.token_hash == hash_token(token))).first() if token else None
    if row is None:
        return "Missing or invalid API token; send it as 'Authorization: Bearer <token>'."
    if row.revoked_at is not None:
        return "This API token was revoked; ask an admin for a new one."
    if row.kind != wanted:
        if wanted == "agent":
            return "This is an integration token; it can only call the integration endpoints."
        return "This is an agent token; this endpoint needs an integration token (agentdesk admin token issue --integration NAME)."
    return "This agent account is disabled; ask an admin to enable it."
