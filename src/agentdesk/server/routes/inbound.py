"""Integration API: any system (a CRM, an IVR, a social-media bridge) feeds interactions of any channel."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentdesk.server.deps import IntegrationDep
from agentdesk.server.inbound import Inbound, InboundError, submit
from agentdesk.server.routing import NoTeam

router = APIRouter(prefix="/api/v1/interactions", tags=["integration"])


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
    body = await _body(request)
    settings = getattr(request.app.state, "settings", None)
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
        result = await submit(request.app.state.engine, item, default_region=region)
    except InboundError as exc:
        raise HTTPException(422, str(exc)) from None
    except NoTeam as exc:
        raise HTTPException(503, str(exc)) from None
    # Encoded here: four strings and a flag need no response-model validation on the way out.
    return JSONResponse(vars(result), status_code=200 if result.duplicate else 201)
