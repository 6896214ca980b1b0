"""Integration API: any system (a CRM, an IVR, a social-media bridge) feeds interactions of any channel."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal, TypeVar

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import State

from agentdesk.server.deps import IntegrationDep, cached_integration
from agentdesk.server.inbound import Inbound, InboundError, submit
from agentdesk.server.limits import ASGIApp, Message, Receive, Scope, Send, bearer_token
from agentdesk.server.models import ApiToken
from agentdesk.server.routing import NoTeam

router = APIRouter(prefix="/api/v1/interactions", tags=["integration"])
INBOUND_PATH = f"{router.prefix}/inbound"


Model = TypeVar("Model", bound=BaseModel)


class InboundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channel: Literal["phone", "email", "chat", "sms", "whatsapp"]
    address: str = Field(min_length=1, max_length=320, description="the customer's phone number, email address or chat id")
    name: str | None = Field(default=None, max_length=200)
    text: str = Field(default="", max_length=200_000)
    subject: str | None = Field(default=None, max_length=1000)
    external_id: str | None = Field(default=None, min_length=1, max_length=998, description="repeated ids are ignored")
    occurred_at: datetime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict, description="channel-specific: call duration, email headers…")


class InboundOut(BaseModel):
    interaction_id: str
    conversation_id: str
    customer_id: str
    duplicate: bool


def _references(metadata: dict[str, Any]) -> list[str]:
    """Email threading ids from the metadata: in_reply_to first, then references (a list or a header string)."""
    refs = metadata.get("references") or []
    if isinstance(refs, str):
        refs = refs.split()
    return [str(r) for r in [metadata.get("in_reply_to"), *reversed(refs)] if r]


# The body is parsed and validated by pydantic-core straight from the JSON bytes (InboundIn.model_validate_json):
# FastAPI's body parameter would decode the JSON to Python first and validate that, a fifth of this route's
# cost without the database. Its schema is given to OpenAPI by hand; refusals keep FastAPI's 422 shape.
_BODY_SCHEMA = {"requestBody": {"required": True, "content": {"application/json": {"schema": InboundIn.model_json_schema()}}}}


async def _body(request: Request) -> InboundIn:
    try:
        return InboundIn.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]) from None


@router.post(
    "/inbound", response_model=InboundOut, status_code=201, openapi_extra=_BODY_SCHEMA,
    responses={200: {"model": InboundOut, "description": "a repeated external id: the interaction stored before"}},
)
async def inbound(integration: IntegrationDep, request: Request) -> Response:
    """Feed one interaction; it is threaded, routed and timed like every channel's."""
    status, answer = await _accept(request.app.state, integration, await _body(request))
    return JSONResponse(answer, status_code=status)


async def _accept(state: State, integration: ApiToken, body: InboundIn) -> tuple[int, dict[str, Any]]:
    """Store a validated interaction from `integration` (app.state: engine, settings): (status, answer)."""
    settings = getattr(state, "settings", None)
    region = settings.identity.default_region if settings else "US"
    item = Inbound(
        channel=body.channel, address=body.address, text=body.text, name=body.name, subject=body.subject,
        external_id=body.external_id, occurred_at=body.occurred_at,
        metadata={**body.metadata, "source": integration.name}, references=_references(body.metadata),
        thread_key=str(body.metadata["session_id"]) if body.channel == "chat" and "session_id" in body.metadata else None,
        auto_reply=bool(body.metadata.get("auto_reply")),
    )
    try:
        # Group commit (inbound.submit): no worker thread per request, and concurrent senders share one
        # transaction; answered once the row is committed.
        result = await submit(state.engine, item, default_region=region)
    except InboundError as exc:
        raise HTTPException(422, str(exc)) from None
    except NoTeam as exc:
        raise HTTPException(503, str(exc)) from None
    # Four strings and a flag: no response-model validation on the way out.
    return 200 if result.duplicate else 201, vars(result)


class InboundFastPath:
    """Pure ASGI middleware for the busiest request of the server (issue 6): POST INBOUND_PATH from an
    integration token this process has cached, with a body that validates, is stored without FastAPI's
    routing, dependency solving and response handling (~0.3 ms a request, a fifth of a message's cost).

    Everything else goes on to the FastAPI route above, which answers it as it always has: an unknown or
    uncached token (the route loads it, or refuses it), a body that fails validation (the route words the
    422). Installed inside the body-size and rate limits (server/limits.py), which apply as before.

    A channel's busiest webhook (Twilio's messaging) is passed to its own fast path the same way
    (app.state.fast_paths: POST path -> ASGI callable, from the channel's router).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        if scope["path"] != INBOUND_PATH:
            webhook = getattr(state, "fast_paths", {}).get(scope["path"])
            await (webhook or self.app)(scope, receive, send)
            return
        token = bearer_token(scope)
        integration = cached_integration(state.engine, token) if token else None
        if integration is None:
            await self.app(scope, receive, send)
            return
        fields = await read_model(InboundIn, self.app, scope, receive, send)
        if fields is None:
            return
        try:
            status, answer = await _accept(state, integration, fields)
        except HTTPException as exc:
            await answer_error(exc, scope, receive, send)
            return
        await send_json(send, status, json.dumps(answer, ensure_ascii=False, separators=(",", ":")).encode())


# --- the ASGI fast paths' pieces (this one's, routes/sync.py PushFastPath's) ------------------------------------------


async def read_model(model: type[Model], app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> Model | None:
    """The request body, validated as `model`; None once the request is dealt with otherwise: the client went
    away, the body was too large (413), or it does not validate (passed on to `app`, the route, which words
    the 422 as it always has). A body FastAPI would not read as JSON, by its content type, goes to the route."""
    if not _json_content(scope):
        await app(scope, receive, send)
        return None
    try:
        body = await _read_body(receive)
    except HTTPException as exc:  # server/limits.BodyTooLarge
        await answer_error(exc, scope, receive, send)
        return None
    if body is None:  # the client went away
        return None
    try:
        return model.model_validate_json(body)
    except ValidationError:
        await app(scope, _replay(body, receive), send)
        return None


def _json_content(scope: Scope) -> bool:
    """Whether FastAPI reads this request's body as JSON: no content type, application/json or
    application/*+json (parameters such as charset aside)."""
    value = next((v for k, v in scope["headers"] if k == b"content-type"), b"").split(b";")[0].strip().lower()
    return not value or value == b"application/json" or (value.startswith(b"application/") and value.endswith(b"+json"))


async def answer_error(exc: HTTPException, scope: Scope, receive: Receive, send: Send) -> None:
    """As FastAPI's exception handler answers it."""
    await JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)(scope, receive, send)


async def send_json(send: Send, status: int, payload: bytes) -> None:
    """A JSON answer's bytes, sent directly (as JSONResponse would)."""
    await send({"type": "http.response.start", "status": status, "headers": [*_JSON, (b"content-length", b"%d" % len(payload))]})
    await send({"type": "http.response.body", "body": payload})


_JSON = [(b"content-type", b"application/json")]


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body; None if the client disconnected first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` for an app downstream, which reads the body already read here first."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay
