"""FastAPI dependencies: the database session, the calling agent (and its role), the calling integration."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

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


def get_session(request: Request) -> Iterator[Session]:
    with open_session(request.app.state.engine) as session:
        yield session


@dataclass(frozen=True)
class Caller:
    agent: Agent
    teams: list[str]


async def get_caller(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Caller:
    """The calling agent and their teams; 401 for anything else.

    Cached per token for TOKEN_CACHE_SECONDS like integration tokens (server/config_cache.py: a token,
    agent or membership change made in this process drops it at once; one made by another process holds
    within those seconds). Every desk pulls on every poke, so a cached caller saves two queries and a
    thread hop per pull. The cached agent is a detached row: routes read it, never change it.
    """
    token = credentials.credentials if credentials else None
    engine = request.app.state.engine
    caller = peek(engine, _agent_key(token)) if token else None
    if caller is None:
        caller, why = await run_in_threadpool(_caller_or_refusal, engine, token)
        if caller is None:
            raise _unauthorized(why)
    return caller


def _agent_key(token: str) -> tuple[str, str]:
    return ("agent token", hash_token(token))


def _caller_or_refusal(engine: sa.Engine, token: str | None) -> tuple[Caller | None, str]:
    # Its own short session: one shared with the route would hold a pooled connection while the request
    # waits for worker threads, and enough such requests starve the threads that could give them back.
    with open_session(engine) as session:
        if token:
            caller = cached(engine, _agent_key(token), lambda: _load_caller(session, token), ttl=TOKEN_CACHE_SECONDS)
            if caller is not None:
                return caller, ""
        return None, refusal(session, token, "agent")


def _load_caller(session: Session, token: str) -> Caller | None:
    agent = agent_for_token(session, token)
    return Caller(agent=agent, teams=team_ids(session, agent.id)) if agent is not None else None


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, message, headers={"WWW-Authenticate": "Bearer"})


async def get_integration(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> ApiToken:
    """The calling integration's token row (its `name` says which system); 401 for anything else.

    Async, and cached for TOKEN_CACHE_SECONDS per token (server/config_cache.py; a revocation made in
    this process drops the cache at once, one made by another process holds within those seconds): a
    busy integration feeding hundreds of messages a second then costs no query and no thread hop each.
    """
    token = credentials.credentials if credentials else None
    engine = request.app.state.engine
    row = peek(engine, _integration_key(token)) if token else None
    if row is None:
        row, why = await run_in_threadpool(_integration_or_refusal, engine, token)
        if row is None:
            raise _unauthorized(why)
    return row


TOKEN_CACHE_SECONDS = 2.0


def _integration_key(token: str) -> tuple[str, str]:
    return ("integration token", hash_token(token))


def _integration_or_refusal(engine: sa.Engine, token: str | None) -> tuple[ApiToken | None, str]:
    with open_session(engine) as session:
        if token:
            row = cached(engine, _integration_key(token), lambda: integration_for_token(session, token), ttl=TOKEN_CACHE_SECONDS)
            if row is not None:
                return row, ""
        return None, refusal(session, token, "integration")


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
