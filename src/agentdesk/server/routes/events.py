"""Live events (DESIGN §5 "Live"): the SSE stream, and the presence and typing an agent announces.

GET /api/v1/events (text/event-stream), events:
- `poke` {seq}, with `id: seq`: the change log's newest seq; the client pulls. A "page poke" {seq, page:
  {after, changes, cursor, has_more: false}} also carries the changes in (after, seq] the subscriber's
  teams may see — exactly pull's answer from cursor `after` (server/events.py says when): a client whose
  cursor is `after` applies the page and is at `cursor`; any other client pulls. The stream ends when the
  caller's token stops granting access or their teams change (server/events.py): the client reconnects.
- `presence` {agent_id, status: available|away|offline, viewing: conversation id or null}; `viewing` is
  null unless the conversation is in one of the subscriber's teams.
- `typing` {agent_id, conversation_id}: only to agents of the conversation's team.
- a `: ping` comment every heartbeat (15 s by default).
On connect: every active agent's presence, then a poke with the current seq. A client that resumes
(`Last-Event-ID` header or `?seq=`) gets that first poke only if the log moved on since.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Literal

from fastapi import (
    APIRouter,
    Header,
    HTTPException,
    Query,
    Request,
    Response,
    status,
)
from pydantic import BaseModel, ConfigDict

from agentdesk.server.deps import Caller, CallerDep, SessionDep
from agentdesk.server.events import Hub, StreamResponse, write_presence, write_typing
from agentdesk.server.models import Conversation
from agentdesk.server.routes.sync import poke_page
from agentdesk.server.visibility import visible_conversation

router = APIRouter(prefix="/api/v1", tags=["live"])


def _resume_seq(last_event_id: str | None, seq: int | None) -> int | None:
    if last_event_id:
        try:
            return max(int(last_event_id.strip()), 0)
        except ValueError:
            pass  # not one of ours: start afresh
    return seq


@router.get("/events", response_class=StreamResponse, status_code=200)  # OpenAPI: else read from __init__
async def events(
    request: Request,
    caller: CallerDep,
    seq: Annotated[int | None, Query(ge=0, description="resume after this change seq")] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamResponse:
    """The caller's live event stream (server-sent events)."""
    hub: Hub = request.app.state.hub
    if not hub.running:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "The live event hub is not running.")
    pages = partial(poke_page, request.app.state.engine, tuple(sorted(caller.teams)))
    resume = _resume_seq(last_event_id, seq)
    return StreamResponse(hub, partial(hub.open_stream, caller.agent.id, caller.teams, resume, pages, caller.token_hash))


def _visible_conversation(session: SessionDep, caller: Caller, conversation_id: str) -> Conversation:
    conversation = visible_conversation(session, caller.teams, conversation_id)
    if conversation is None:
        raise HTTPException(404, "No such conversation.")
    return conversation


class PresenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["available", "away", "offline"] | None = None
    viewing: str | None = None  # a conversation id; null: none; omitted: unchanged


class PresenceOut(BaseModel):
    agent_id: str
    status: str
    viewing: str | None


@router.post("/presence")
def presence(caller: CallerDep, session: SessionDep, body: PresenceIn) -> PresenceOut:
    """Set the caller's presence and/or the conversation they are looking at."""
    kwargs: dict = {"status": body.status}
    if "viewing" in body.model_fields_set:
        team = _visible_conversation(session, caller, body.viewing).team_id if body.viewing else None
        kwargs.update(viewing=body.viewing, viewing_team=team)
    state = write_presence(session, caller.agent.id, **kwargs)
    return PresenceOut(agent_id=caller.agent.id, status=state["status"], viewing=state["viewing"])


class TypingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    conversation_id: str


@router.post("/typing", status_code=204)
def typing(caller: CallerDep, session: SessionDep, body: TypingIn) -> Response:
    """The caller is typing in a conversation (clients send this at most every few seconds)."""
    conversation = _visible_conversation(session, caller, body.conversation_id)
    write_typing(session, caller.agent.id, conversation.id, conversation.team_id)
    return Response(status_code=204)
