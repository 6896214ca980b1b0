"""Sync API (DESIGN §5): bootstrap pages, pull of the change log, push of intent mutations."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from agentdesk.server.compaction import horizon
from agentdesk.server.db import session as open_session
from agentdesk.server.deps import Caller, CallerDep, SessionDep, cached_caller
from agentdesk.server.models import (
    Change,
    Conversation,
    Customer,
    Identity,
    Interaction,
    MergeSuggestion,
    UTCDateTime,
)
from agentdesk.server import mutations
from agentdesk.server import snapshot as snapshot_file
from agentdesk.server.mutations import MutationIn, MutationResult
from agentdesk.server.limits import ASGIApp, Receive, Scope, Send, bearer_token
from agentdesk.server.routes.inbound import read_model, send_json  # the ASGI fast paths' pieces
from agentdesk.server.visibility import conversation_visible, customer_visible
from agentdesk.server.wire import ENTITIES, columns

log = logging.getLogger(__name__)

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
        Change.seq <= sa.bindparam("upto"),  # type: ignore[operator]
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


def _interactions_page(selected: list[sa.ColumnElement], teams: list[str], after: str, limit: int, dialect: str) -> sa.Select:
    """A page of the caller's interactions in (conversation_id, id) order, walking the caller's conversations
    in id order and each one's interactions by the conversation_id index: one visibility test per
    conversation rather than per interaction (~1 s less server CPU for 200k interactions). On SQLite, `|| ''`
    hides two indexes from the planner to keep it on that path: by the team index, or from the interactions'
    side, it would sort all the team's interactions for every page. PostgreSQL's planner finds the path by
    itself (and those terms would cost it the indexes)."""
    conversation, interaction = Conversation.__table__, Interaction.__table__  # type: ignore[attr-defined]
    after_conversation, after_id = _interactions_after(after)
    unindexed: Callable[[sa.ColumnElement], sa.ColumnElement] = (lambda c: c + "") if dialect == "sqlite" else (lambda c: c)
    return (
        sa.select(*selected)
        .select_from(conversation.join(interaction, interaction.c.conversation_id == unindexed(conversation.c.id)))
        .where(
            unindexed(conversation.c.team_id).in_(teams),
            conversation.c.id >= after_conversation,
            sa.tuple_(conversation.c.id, interaction.c.id) > sa.tuple_(sa.literal(after_conversation), sa.literal(after_id)),
        )
        .order_by(conversation.c.id, interaction.c.id)
        .limit(limit)
    )


def _interactions_after(after: str) -> tuple[str, str]:
    """The (conversation_id, id) an interactions page starts after: `next_after` is their JSON pair. Anything
    else (an interaction id from a server before this order) starts over: pages are upserts, so that is safe."""
    try:
        conversation_id, interaction_id = json.loads(after)
        return str(conversation_id), str(interaction_id)
    except (ValueError, TypeError):
        return "", ""


def _page_key(entity: str, names: list[str]) -> Callable[[Sequence[Any]], str]:
    """How a page's last row names where the next page starts."""
    if entity == "interactions":
        conversation, key = names.index("conversation_id"), names.index("id")
        return lambda row: json.dumps([row[conversation], row[key]], separators=(",", ":"))
    return lambda row: row[names.index("id")]


def _page_columns(entity: str, wanted: str) -> list[str]:
    """The columns a page carries: those named in `wanted` (comma-separated: what the cache keeps) that the
    table has, plus the page key's, in the table's order; every column when `wanted` is empty."""
    names = columns(entity)
    if not wanted:
        return names
    kept = {*wanted.split(","), "id", *(["conversation_id"] if entity == "interactions" else [])}
    return [name for name in names if name in kept]


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
    wanted: str = Query("", alias="columns", description="comma-separated: only these columns (and the page key's)"),
) -> Response:
    """One key-ordered page of an entity the caller may see, as compact tuples."""
    if entity not in ENTITIES:
        raise HTTPException(404, f"Unknown entity {entity!r}.")
    seq = _max_seq(session)  # read before the rows: pull from here re-applies anything newer
    table = ENTITIES[entity].__table__  # type: ignore[attr-defined]
    names = _page_columns(entity, wanted)
    # JSON columns travel as their JSON text: the cache stores that text, so nothing is parsed twice.
    dialect = session.get_bind().dialect.name
    selected = [_as_wire_text(table.c[n], dialect) for n in names]
    if entity == "interactions":
        query = _interactions_page(selected, caller.teams, after, limit, dialect)
    else:
        # The page's keys first, then their rows: where the visibility rule picks rows by an index (conversations
        # by team), what is left to sort is those keys, not every column of every visible row (~2x faster).
        keys = sa.select(table.c.id).where(table.c.id > after).order_by(table.c.id).limit(limit)
        if (where := _visible_filter(entity, caller.teams)) is not None:
            keys = keys.where(where)
        query = sa.select(*selected).where(table.c.id.in_(keys)).order_by(table.c.id)
    rows = session.execute(query).all()  # fetchall: iterating the result would fetch row by row
    next_after = _page_key(entity, names)(rows[-1]) if len(rows) == limit else None
    page = {"entity": entity, "columns": names, "rows": rows, "next_after": next_after, "cursor": encode_cursor(seq)}
    # Encoded directly: validating thousands of rows through the response model would double the cost. The
    # next page's key also travels as a header (percent-encoded; empty after the last page), so a client can
    # ask for the next pages before it decodes this one.
    headers = {"Agentdesk-Next-After": quote(next_after or "", safe="")}
    return Response(orjson.dumps(page, default=tuple), media_type="application/json", headers=headers)  # default: the rows


@router.get("/snapshot")
def snapshot(caller: CallerDep, request: Request) -> Response:
    """Every row the caller may see, as one SQLite file (server/snapshot.py), its cursor in `Agentdesk-Cursor`
    (and the change-log position it shows, in `Agentdesk-Head`, to tell which of two snapshots is older);
    404 from a server that makes none (an in-memory database, a PostgreSQL driver without server-side cursors),
    507 while it has no room for one, 500 if making it failed: the desk loads the bootstrap pages then (it does
    on any 5xx). `entities` (comma-separated) keeps the file to those; a query parameter named after an entity
    lists the columns wanted of it, as a bootstrap page's `columns` does."""
    engine = request.app.state.engine
    if not snapshot_file.available(engine):
        raise HTTPException(404, "This server makes no snapshots: load the bootstrap pages.")
    wanted = request.query_params.get("entities")
    queries = {}
    for entity, model in ENTITIES.items():
        if wanted is not None and entity not in wanted.split(","):
            continue
        names = _page_columns(entity, request.query_params.get(entity, ""))
        query = sa.select(*[_as_wire_text(model.__table__.c[name], engine.dialect.name) for name in names])  # type: ignore[attr-defined]
        where = snapshot_file.interactions_visible(caller.teams) if entity == "interactions" else _visible_filter(entity, caller.teams)
        queries[entity] = (names, query if where is None else query.where(where))
    try:
        made = snapshot_file.make(engine, queries)
    except snapshot_file.NoRoom as exc:
        log.warning("no snapshot for %s: %s; the desk loads the bootstrap pages", caller.agent.id, exc)
        raise HTTPException(507, "This server has no room for a snapshot now: load the bootstrap pages.") from exc
    except Exception as exc:  # answered, not raised: an unhandled error may reset the connection before the 500 is read
        log.exception("no snapshot for %s: making it failed; the desk loads the bootstrap pages", caller.agent.id)
        raise HTTPException(500, "This server could not make a snapshot: load the bootstrap pages.") from exc
    headers = {"Agentdesk-Cursor": encode_cursor(made.head), "Agentdesk-Head": str(made.head), "Content-Length": str(made.size)}
    return StreamingResponse(snapshot_file.chunks(made.file), media_type="application/vnd.sqlite3", headers=headers)


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
    # hops), shared with every desk of the same teams asking the same at the same moment: after a plain
    # poke, that is all of them.
    engine = request.app.state.engine
    body = await request.app.state.pull_pages.get((after, teams, limit), lambda: _pull_page(engine, teams, after, limit)[0])
    return Response(body, media_type="application/json")


POKE_PAGE_LIMIT = 1000  # changes a poke may carry (pull's default page); more, and the desk pulls
POKE_PAGE_BYTES = 128 * 1024  # ... and bytes: a burst is better fetched by the desks that want it


def poke_page(engine: sa.Engine, teams: tuple[str, ...], after: int, seq: int) -> str | None:
    """The page a poke carries to the streams of `teams` (server/events.py): pull's answer from cursor `after`
    once the log reached `seq`, plus that `after`; None when it would be more than a bounded page (the desk
    then pulls). Called by the event hub in its own thread, once per team set."""
    body, complete = _pull_page(engine, teams, after, POKE_PAGE_LIMIT, seq)
    if not complete or len(body) > POKE_PAGE_BYTES:
        return None
    return f'{{"after":"{encode_cursor(after)}",{body[1:]}'  # the page says where it starts


def _pull_page(engine: sa.Engine, teams: tuple[str, ...], after: int, limit: int, upto: int | None = None) -> tuple[str, bool]:
    """The pull answer for changes in (after, upto] (upto: the log's newest seq, read first), and whether it is
    complete. A complete page's cursor is `upto` itself, not its last visible change: a desk that pulled is at
    the log's head even when none of the newest changes were for it, so its cursor matches the `after` of the
    next poke's page (server/events.py)."""
    with open_session(engine) as session:
        if upto is None:
            upto = _max_seq(session)  # read before the rows: every change up to it has committed (changes.py)
        # On the session's connection: through the ORM's result the same rows cost up to 3x (10k changes: 40-100 vs 34 ms).
        params = {"after": after, "upto": upto, "teams": teams, "limit": limit + 1}
        rows = session.connection().execute(_PULL, params).all()
        if after < horizon(session):  # read after the rows: a compaction that ran in between is seen here
            raise HTTPException(
                410,
                {"reset_required": True, "message": "This cache is older than the server's change history; bootstrap again."},
            )
    page = rows[:limit]
    complete = len(rows) <= limit
    last = max(after, upto) if complete else page[-1][0]
    # Assembled as text: each change's data is stored as JSON already, so it is neither parsed nor re-encoded.
    changes = ",".join(
        f'{{"seq":{seq},"entity":{json.dumps(entity)},"id":{json.dumps(entity_id)},"op":{json.dumps(op)},"data":{data or "null"}}}'
        for seq, entity, entity_id, op, data in page
    )
    body = f'{{"changes":[{changes}],"cursor":"{encode_cursor(last)}","has_more":{"false" if complete else "true"}}}'
    return body, complete


class PushIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mutations: list[MutationIn] = Field(max_length=500)


class PushOut(BaseModel):
    results: list[MutationResult]


@router.post("/push", response_model=PushOut)
async def push(caller: CallerDep, request: Request, body: PushIn) -> Response:
    """Apply mutations in order, each at most once (concurrent pushes share a transaction and one writer
    thread: mutations.push)."""
    return Response(await _pushed(request.app.state.engine, caller, body), media_type="application/json")


async def _pushed(engine: sa.Engine, caller: Caller, body: PushIn) -> bytes:
    """The push stored; its answer encoded by pydantic (FastAPI would validate the results again first)."""
    results = await mutations.push(engine, caller.agent, caller.teams, body.mutations)
    return PushOut(results=results).model_dump_json().encode()


class PushFastPath:
    """Pure ASGI middleware for the push every desk sends for each thing its agent does: from an agent token
    this process has cached, with a body that validates, it is stored and answered without FastAPI's routing,
    dependency solving and response handling (~0.3 ms of a one-note push's ~1.5 ms), as
    routes/inbound.py's InboundFastPath does for inbound messages. Anything else (an uncached or bad token, a
    body that does not validate) goes on to the route above, which answers it as it always has."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PUSH_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        engine = scope["app"].state.engine
        token = bearer_token(scope)
        caller = cached_caller(engine, token) if token else None
        if caller is None:
            await self.app(scope, receive, send)
            return
        fields = await read_model(PushIn, self.app, scope, receive, send)
        if fields is not None:
            await send_json(send, 200, await _pushed(engine, caller, fields))


PUSH_PATH = router.prefix + "/push"
