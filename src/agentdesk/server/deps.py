"""FastAPI dependencies: the database session, the calling agent (and its role), the calling integration."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, TypeVar

import sqlalchemy as sa
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from agentdesk.server.admin import ROLES
from agentdesk.server.auth import (
    agent_for_token,
    hash_token,
    integration_for_token,
    refusal,
    team_ids,
)
from agentdesk.server.config_cache import cached, peek
from agentdesk.server.db import session as open_session
from agentdesk.server.models import Agent, ApiToken

_bearer = HTTPBearer(auto_error=False)
T = TypeVar("T")


def get_session(request: Request) -> Iterator[Session]:
    with open_session(request.app.state.engine) as session:
        yield session


@dataclass(frozen=True)
class Caller:
    agent: Agent
    teams: list[str]
    token_hash: str  # of the bearer token: the event hub checks it again while the caller's stream is open


async def get_caller(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Caller:
    """The calling agent and their teams; 401 for anything else. Every desk pulls on every poke, so a cached
    caller saves two queries and a thread hop per pull. The cached agent is a detached row: routes read it,
    never change it."""
    return await _for_token(request, credentials, "agent", _load_caller)


async def get_integration(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> ApiToken:
    """The calling integration's token row (its `name` says which system); 401 for anything else. A busy
    integration feeding hundreds of messages a second then costs no query and no thread hop each."""
    return await _for_token(request, credentials, "integration", integration_for_token)


TOKEN_CACHE_SECONDS = 2.0


async def _for_token(
    request: Request, credentials: HTTPAuthorizationCredentials | None, kind: str, load: Callable[[Session, str], T | None]
) -> T:
    """What `load` finds for the bearer token of `kind`, cached for TOKEN_CACHE_SECONDS per token
    (server/config_cache.py: a token, agent or membership change made in this process drops it at once; one
    made by another process holds within those seconds); async, so a cached token costs no thread hop."""
    token = credentials.credentials if credentials else None
    engine = request.app.state.engine
    value = peek(engine, _token_key(kind, token)) if token else None
    if value is None:
        value, why = await run_in_threadpool(_load_or_refusal, engine, token, kind, load)
        if value is None:
            raise _unauthorized(why)
    return value


def cached_integration(engine: sa.Engine, token: str) -> ApiToken | None:
    """The integration behind `token` if this process holds it in the token cache (no query, no thread hop)."""
    return peek(engine, _token_key("integration", token))


def cached_caller(engine: sa.Engine, token: str) -> Caller | None:
    """The agent caller behind `token` if this process holds it in the token cache (no query, no thread hop)."""
    return peek(engine, _token_key("agent", token))


def _token_key(kind: str, token: str) -> tuple[str, str]:
    return (f"{kind} token", hash_token(token))


def _load_or_refusal(engine: sa.Engine, token: str | None, kind: str, load: Callable[[Session, str], T | None]) -> tuple[T | None, str]:
    # Its own short session: one shared with the route would hold a pooled connection while the request
    # waits for worker threads, and enough such requests starve the threads that could give them back.
    with open_session(engine) as session:
        if token:
            value = cached(engine, _token_key(kind, token), lambda: load(session, token), ttl=TOKEN_CACHE_SECONDS)
            if value is not None:
                return value, ""
        return None, refusal(session, token, kind)


def _load_caller(session: Session, token: str) -> Caller | None:
    agent = agent_for_token(session, token)
    if agent is None:
        return None
    return Caller(agent=agent, teams=team_ids(session, agent.id), token_hash=hash_token(token))


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, message, headers={"WWW-Authenticate": "Bearer"})


def require_role(*roles: str) -> Callable[[Caller], Caller]:
    """A dependency admitting agents whose role is one of `roles` (403 otherwise); yields the Caller.

        AdminDep = Annotated[Caller, Depends(require_role("admin"))]
    """
    unknown = [role for role in roles if role not in ROLES]
    if not roles or unknown:
        raise ValueError(f"require_role needs roles from {ROLES}, got {roles!r}")
    wanted = " or ".join(roles)

    def check(caller: Annotated[Caller, Depends(get_caller)]) -> Caller:
        if caller.agent.role not in roles:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"This needs the {wanted} role; you are signed in as {caller.agent.role}."
            )
        return caller

    return check


SessionDep = Annotated[Session, Depends(get_session)]
CallerDep = Annotated[Caller, Depends(get_caller)]
IntegrationDep = Annotated[ApiToken, Depends(get_integration)]
AdminDep = Annotated[Caller, Depends(require_role("admin"))]
SupervisorDep = Annotated[Caller, Depends(require_role("supervisor", "admin"))]
