"""Channel adapters: the real protocols traffic arrives and leaves by.

Inbound, every adapter turns what it receives into an `inbound.Inbound` and hands it to `inbound.ingest` (or,
from async code under load, `inbound.submit`: group commit), the one path of the integration API too
(identity, threading, routing, SLA). Outbound, an adapter is a
`delivery.Sender` the server outbox hands replies to. This module says which adapters the configuration
switches on: their HTTP routes, their senders, and their listeners (started and stopped with the app).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    from fastapi import APIRouter

    from agentdesk.config import Settings
    from agentdesk.server.delivery import Sender
    from agentdesk.server.events import Hub


@dataclass(frozen=True)
class ChannelContext:
    """What a listener needs: the database, the whole configuration, and the live-event hub."""

    engine: sa.Engine
    settings: Settings
    hub: Hub
    listening: dict[str, tuple[str, int]] = field(default_factory=dict)  # listener -> (host, port) it bound


Stop = Callable[[], Awaitable[None]]


def routers(settings: Settings) -> list[APIRouter]:
    """The HTTP routes of the enabled channels (webhooks, the chat widget)."""
    found: list[APIRouter] = []
    if settings.channels.chat.enabled:
        from agentdesk.server.channels import webchat

        found.append(webchat.router(settings))
    if settings.channels.twilio.enabled:
        from agentdesk.server.channels import twilio as twilio_channel

        found.append(twilio_channel.make_router(settings))
    return found


def senders(settings: Settings) -> dict[str, Sender]:
    """Channel -> the sender for replies on it, for each channel configured to send."""
    found: dict[str, Sender] = {}
    if settings.channels.email.relay_host:
        from agentdesk.server.channels.relay import RelaySender

        found["email"] = RelaySender(settings.channels.email)
    if settings.channels.twilio.enabled:
        from agentdesk.server.channels import twilio as twilio_channel

        found.update(twilio_channel.senders(settings))
    return found


async def start_listeners(context: ChannelContext) -> list[Stop]:
    """Start the enabled channels' own servers and pollers (SMTP, IMAP); returns how to stop each."""
    stops: list[Stop] = []
    if context.settings.channels.email.enabled:
        from agentdesk.server.channels import imap, smtp

        stops.append(await smtp.start_smtp(context))
        if context.settings.channels.email.imap_host:
            stops.append(await imap.start_imap(context))
    return stops
