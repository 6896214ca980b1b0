"""The one path every inbound interaction takes, whatever its channel or source (DESIGN §4).

Integration API, email, Twilio webhooks and web chat all call `ingest`: a retried delivery is recognised
by its external id; the sender is resolved to a customer through a normalised identity (so texts, WhatsApp
messages and calls from one number land on one timeline); the interaction is threaded into a conversation;
a new conversation is routed; SLA clocks start; contacts mentioned in the text become merge suggestions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, select

from agentdesk.domain.clock import utcnow
from agentdesk.domain.identity import AddressError, contacts_in_text, normalize_address
from agentdesk.server import routing, sla
from agentdesk.server.auth import new_id
from agentdesk.server.changes import begin_write, record_customer, record_upsert
from agentdesk.server.models import Conversation, Customer, Identity, Interaction, MergeSuggestion

CHANNELS = ("phone", "email", "chat", "sms", "whatsapp")
_SUBJECT_PREFIX = re.compile(r"^\s*((re|fwd?|aw|sv|vs|tr)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)


class InboundError(ValueError):
    """An interaction that cannot be accepted; the message says why (for the sender's logs)."""


@dataclass
class Inbound:
    channel: str
    address: str
    text: str = ""
    name: str | None = None
    subject: str | None = None
    external_id: str | None = None
    occurred_at: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # Email threading: the Message-IDs this one answers (In-Reply-To first, then References).
    references: list[str] = field(default_factory=list)
    thread_key: str | None = None  # a chat session id
    auto_reply: bool = False  # auto-replies and bounces neither reopen a conversation nor restart SLA clocks


@dataclass(frozen=True)
class Ingested:
    interaction_id: str
    conversation_id: str
    customer_id: str
    duplicate: bool = False


def ingest(session: Session, item: Inbound, *, default_region: str = "US", attempts: int = 3) -> Ingested:
    """Store one inbound interaction (at most once per channel and external id) and commit."""
    if item.channel not in CHANNELS:
        raise InboundError(f"Unknown channel {item.channel!r}; expected one of: {', '.join(CHANNELS)}.")
    try:
        kind, address = normalize_address(item.channel, item.address, default_region)
    except AddressError as exc:
        raise InboundError(str(exc)) from None
    for attempt in range(attempts):
        try:
            with session.no_autoflush:  # its reads never need its own pending rows: one flush, at commit
                result = _ingest(session, item, kind, address, default_region)
            session.commit()
            return result
        except (IntegrityError, OperationalError):
            # A concurrent delivery of the same message, or of the same new customer, won the race:
            # the next attempt finds its rows.
            session.rollback()
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def _ingest(session: Session, item: Inbound, kind: str, address: str, default_region: str) -> Ingested:
    begin_write(session)  # first: writers queue here, so what we read below stays true until commit
    if item.external_id and (seen := _by_external_id(session, item.channel, item.external_id)) is not None:
        return Ingested(seen.id, seen.conversation_id, seen.customer_id, duplicate=True)
    at = _utc(item.occurred_at) if item.occurred_at else utcnow()
    customer = _customer(session, kind, address, item.name)
    conversation = _thread(session, item, customer.id) or _new_conversation(session, item, customer.id, at)
    interaction = Interaction(
        id=new_id(), conversation_id=conversation.id, customer_id=customer.id, channel=item.channel,
        direction="inbound", text=item.text, subject=item.subject, meta={**item.metadata, "address": address},
        external_id=item.external_id, occurred_at=at,
    )
    record_upsert(session, interaction)
    if not item.auto_reply:
        if conversation.status != "open":
            conversation.status, conversation.snooze_until, conversation.closed_at = "open", None, None
        sla.on_inbound(session, conversation, at)
    conversation.last_message_at = max(conversation.last_message_at, at)
    conversation.updated_at = utcnow()
    conversation.version += 1
    record_upsert(session, conversation)
    _suggest_merges(session, customer.id, item, default_region)
    return Ingested(interaction.id, conversation.id, customer.id)


def _utc(moment: datetime) -> datetime:
    """A sender's timestamp; one without a zone is taken as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _by_external_id(session: Session, channel: str, external_id: str) -> Interaction | None:
    return session.exec(
        select(Interaction).where(Interaction.channel == channel, Interaction.external_id == external_id)
    ).first()


def _customer(session: Session, kind: str, address: str, name: str | None) -> Customer:
    """The customer owning this identity (following merges), or a new one."""
    identity = session.exec(select(Identity).where(Identity.kind == kind, Identity.address == address)).first()
    if identity is not None:
        customer = session.get(Customer, identity.customer_id)
        while customer is not None and customer.merged_into:
            customer = session.get(Customer, customer.merged_into)
        if customer is not None:
            return customer
    display = (name or "").strip() or address
    customer = Customer(id=new_id(), display_name=display, first_name=display.split()[0] if name and name.split() else "")
    record_upsert(session, customer)
    session.flush()
    record_upsert(session, Identity(id=new_id(), customer_id=customer.id, kind=kind, address=address))
    return customer


def _thread(session: Session, item: Inbound, customer_id: str) -> Conversation | None:
    """The existing conversation this interaction continues, if any."""
    mine = select(Conversation).where(Conversation.customer_id == customer_id, Conversation.channel == item.channel)
    if item.channel == "email":
        for ref in item.references:  # only the sender's own thread: a known Message-ID is not a key to others'
            if (parent := _by_external_id(session, "email", ref)) is not None and parent.customer_id == customer_id:
                return session.get(Conversation, parent.conversation_id)
        subject = thread_subject(item.subject)
        if subject:
            # An auto-reply answers something already sent, so a closed conversation counts too.
            candidates = mine if item.auto_reply else mine.where(Conversation.status != "closed")
            for conversation in session.exec(candidates.order_by(Conversation.last_message_at.desc())):  # type: ignore[attr-defined]
                if thread_subject(conversation.subject) == subject:
                    return conversation
        return None
    if item.channel == "chat":
        return session.exec(mine.where(Conversation.thread_key == item.thread_key)).first() if item.thread_key else None
    # SMS and WhatsApp join the open conversation on their channel; every call lands on the voice one.
    return session.exec(
        mine.where(Conversation.status != "closed").order_by(Conversation.last_message_at.desc())  # type: ignore[attr-defined]
    ).first()


def thread_subject(subject: str | None) -> str:
    """A subject without its Re:/Fwd: chain, case and spacing, for threading by subject."""
    return " ".join(_SUBJECT_PREFIX.sub("", subject or "").split()).lower()


def _new_conversation(session: Session, item: Inbound, customer_id: str, at: datetime) -> Conversation:
    team = routing.choose_team(session, item.channel, f"{item.subject or ''}\n{item.text}")
    agent = None if item.auto_reply else routing.choose_agent(session, team, item.channel)
    conversation = Conversation(
        id=new_id(), customer_id=customer_id, channel=item.channel, team_id=team.id,
        assignee_id=agent.id if agent else None, subject=item.subject, thread_key=item.thread_key,
        created_at=at, last_message_at=at,
    )
    if item.auto_reply:  # a bounce or out-of-office with nothing to thread on: on the timeline, not in a queue
        conversation.status, conversation.assignee_id, conversation.closed_at = "closed", None, at
    session.add(conversation)
    session.flush()
    record_customer(session, customer_id)  # the team may be new to this customer
    return conversation


def _suggest_merges(session: Session, customer_id: str, item: Inbound, default_region: str) -> None:
    """Contacts named in the message (a signature, a pre-chat form) that belong to someone else."""
    text = "\n".join([item.text, *(str(v) for k, v in item.metadata.items() if k in ("email", "phone", "prechat"))])
    for kind, address in contacts_in_text(text, default_region):
        identity = session.exec(select(Identity).where(Identity.kind == kind, Identity.address == address)).first()
        if identity is None or identity.customer_id == customer_id:
            continue
        pair = sorted((customer_id, identity.customer_id))
        known = session.exec(
            select(MergeSuggestion).where(MergeSuggestion.customer_id == pair[0], MergeSuggestion.other_id == pair[1])
        ).first()
        if known is None:
            where = "an email signature" if item.channel == "email" else f"a {item.channel} message"
            record_upsert(session, MergeSuggestion(
                id=new_id(), customer_id=pair[0], other_id=pair[1],
                reason=f"The {kind} {address} appears in {where} and belongs to the other customer.",
            ))
