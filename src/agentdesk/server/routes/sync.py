"""Sync API (DESIGN §5): bootstrap pages, pull of the change log, push of intent mutations."""

from __future__ import annotations

import base64
import json
from functools import partial
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from agentdesk.server.compaction import horizon
from agentdesk.server.db import session as open_session
from agentdesk.server.deps import CallerDep, SessionDep
from agentdesk.server.models import (
    Change,
    Conversation,
    Customer,
    Identity,
    Interaction,
    MergeSuggestion,
    UTCDateTime,
)
from agentdesk.server.mutations import MutationIn, MutationResult, apply
from agentdesk.server.visibility import conversation_visible, customer_visible
from agentdesk.server.wire import ENTITIES, columns

router = APIRouter(prefix="/api/v1/sync", tags=["sync"])


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        version, seq = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split(":")
        if version != "v1":
            raise ValueError(version)
        return int(seq)
    except ValueError as exc:
        raise HTTPException(400, "Malformed sync cursor; bootstrap again.") from exc


def _max_seq(session: SessionDep) -> int:
    return session.execute(sa.select(sa.func.coalesce(sa.func.max(Change.seq), 0))).scalar_one()


def _visible_change(teams: sa.BindParameter) -> sa.ColumnElement[bool]:
    """The change-log scope rule of server/changes.py, as a filter. It depends on the caller's teams alone, so
    desks of the same teams share pull pages (server/pull_pages.py); a change scoped to one agent
    (Change.agent_id, which nothing writes yet) would need those pages keyed by agent too."""
    return sa.or_(
        sa.and_(Change.team_id.is_(None), Change.customer_id.is_(None), Change.agent_id.is_(None)),  # type: ignore[union-attr]
        sa.and_(
            Change.team_id.in_(teams),  # type: ignore[union-attr]
            sa.or_(Change.op == "delete", conversation_visible(Change.conversation_id, teams)),  # type: ignore[arg-type]
        ),
        sa.and_(
            Change.customer_id.is_not(None),  # type: ignore[union-attr]
            customer_visible(Change.customer_id, teams),  # type: ignore[arg-type]
            sa.or_(Change.other_customer_id.is_(None), customer_visible(Change.other_customer_id, teams)),  # type: ignore[union-attr,arg-type]
        ),
    )


# Built once with bound parameters: every desk pulls on every poke, and building this expression anew cost
# more than running it.
_PULL = (
    sa.select(Change.seq, Change.entity, Change.entity_id, Change.op, sa.cast(Change.data, sa.Text))
    .where(
        Change.seq > sa.bindparam("after"),  # type: ignore[operator]
        _visible_change(sa.bindparam("teams", expanding=True)),
    )
    .order_by(Change.seq)  # type: ignore[arg-type]
    .limit(sa.bindparam("limit"))
)


def _visible_filter(entity: str, teams: list[str]) -> sa.ColumnElement[bool] | None:
    """Which rows of `entity` the caller may see (None: all of them)."""
    return {
        "customers": lambda: customer_visible(Customer.id, teams),  # type: ignore[arg-type]
        "identities": lambda: customer_visible(Identity.customer_id, teams),  # type: ignore[arg-type]
        "merge_suggestions": lambda: sa.and_(
            customer_visible(MergeSuggestion.customer_id, teams),  # type: ignore[arg-type]
            customer_visible(MergeSuggestion.other_id, teams),  # type: ignore[arg-type]
        ),
        "conversations": lambda: Conversation.team_id.in_(teams),  # type: ignore[attr-defined]
        "interactions": lambda: conversation_visible(Interaction.conversation_id, teams),  # type: ignore[arg-type]
    }.get(entity, lambda: None)()


def _as_wire_text(column: sa.Column, dialect: str) -> sa.ColumnElement:
    """A column as the wire carries it, computed by the database: JSON as its text, times as ISO 8601 UTC
    with milliseconds (domain.clock.to_iso), so no value of a 10k-row page is parsed and re-encoded here."""
    if isinstance(column.type, sa.JSON):
        return sa.cast(column, sa.Text)
    if isinstance(column.type, UTCDateTime):
        if dialect == "sqlite":  # stored as "YYYY-MM-DD HH:MM:SS.ffffff" in UTC; milliseconds cut, as to_iso does
            return sa.func.substr(column, 1, 10).op("||")("T").op("||")(sa.func.substr(column, 12, 12)).op("||")("Z")
        if dialect == "postgresql":
            return sa.func.to_char(sa.func.timezone("UTC", column), 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
    return column


class BootstrapPage(BaseModel):
    entity: str
    columns: list[str]
    rows: list[list[Any]]
    next_after: str | None
    cursor: str  # where pull starts once the bootstrap is complete


@router.get("/bootstrap", response_model=BootstrapPage)
def bootstrap(
    caller: CallerDep,
    session: SessionDep,
    entity: str = Query(description="one of: " + ", ".join(ENTITIES)),
    after: str = "",
    limit: int = Query(5000, ge=1, le=20000),
) -> Response:
    """One key-ordered page of an entity the caller may see, as compact tuples."""
    if entity not in ENTITIES:
        raise HTTPException(404, f"Unknown entity {entity!r}.")
    seq = _max_seq(session)  # read before the rows: pull from here re-applies anything newer
    table = ENTITIES[entity].__table__  # type: ignore[attr-defined]
    names = columns(entity)
    # JSON columns travel as their JSON text: the cache stores that text, so nothing is parsed twice.
    dialect = session.get_bind().dialect.name
    selected = [_as_wire_text(table.c[n], dialect) for n in names]
    query = sa.select(*selected).where(table.c.id > after).order_by(table.c.id).limit(limit)
    where = _visible_filter(entity, caller.teams)
    if where is not None:
        query = query.where(where)
    rows = [list(row) for row in session.execute(query)]
    next_after = rows[-1][names.index("id")] if len(rows) == limit else None
    page = {"entity": entity, "columns": names, "rows": rows, "next_after": next_after, "cursor": encode_cursor(seq)}
    # Encoded directly: validating thousands of rows through the response model would double the cost.
    return Response(json.dumps(page, separators=(",", ":")), media_type="application/json")


class ChangeOut(BaseModel):
    seq: int
    entity: str
    id: str
    op: str
    data: dict[str, Any] | None


class PullPage(BaseModel):
    changes: list[ChangeOut]
    cursor: str
    has_more: bool


@router.get("/pull", response_model=PullPage)
async def pull(caller: CallerDep, request: Request, cursor: str = "", limit: int = Query(1000, ge=1, le=10000)) -> Response:
    """Changes after `cursor` that the caller may see, oldest first."""
    after = decode_cursor(cursor)
    teams = tuple(sorted(caller.teams))
    # Async, with the database work in one worker thread (a session dependency and a sync route take three
    # hops), shared with every desk of the same teams asking the same at the same moment: after a poke,
    # that is all of them.
    compute = partial(_pull_body, request.app.state.engine, teams, after, limit)
    body = await request.app.state.pull_pages.get((after, teams, limit), compute)
    return Response(body, media_type="application/json")


def _pull_body(engine: sa.Engine, teams: tuple[str, ...], after: int, limit: int) -> str:
    with open_session(engine) as session:
        rows = session.execute(_PULL, {"after": after, "teams": teams, "limit": limit + 1}).all()
        if after < horizon(session):  # read after the rows: a compaction that ran in between is seen here
            raise HTTPException(
                410,
                {"reset_required": True, "message": "This cache is older than the server's change history; bootstrap again."},
            )
    page = rows[:limit]
    last = page[-1][0] if page else max(after, 0)
    # Assembled as text: each change's data is stored as JSON already, so it is neither parsed nor re-encoded.
    changes = ",".join(
        f'{{"seq":{seq},"entity":{json.dumps(entity)},"id":{json.dumps(entity_id)},"op":{json.dumps(op)},"data":{data or "null"}}}'
        for seq, entity, entity_id, op, data in page
    )
    return f'{{"changes":[{changes}],"cursor":"{encode_cursor(last)}","has_more":{"true" if len(rows) > limit else "false"}}}'


class PushIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mutations: list[MutationIn] = Field(max_length=500)


class PushOut(BaseModel):
    results: list[MutationResult]


@router.post("/push")
def push(caller: CallerDep, request: Request, body: PushIn) -> PushOut:
    """Apply mutations in order, each in its own transaction, each at most once."""
    factory = partial(open_session, request.app.state.engine)
    return PushOut(results=[apply(factory, caller.agent, caller.teams, m) for m in body.mutations])
