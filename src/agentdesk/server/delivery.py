"""The server outbox: every reply that leaves through a provider leaves exactly once.

A reply mutation writes its interaction and a `Delivery` row in one transaction (`enqueue`). The worker
(`run_forever`, in every server process) claims due rows by compare-and-set, so two processes never take the
same one, and commits `sending` *before* the request leaves. Then:

- the provider accepted it: `sent` with the provider's id (email Message-ID, Twilio MessageSid/CallSid);
  the provider's later callbacks move it to `delivered` or `failed` (`on_provider_status`);
- a transient failure (connection refused, 5xx, SMTP 4xx): back to `pending`, retried with backoff;
- a permanent failure (bad number, SMTP 5xx): `failed`, with the reason the agent sees (they may retry);
- the outcome is unknown (a timeout after the request left, or the process died mid-send): the row stays
  `sending` and, once its lease is over, the sender *reconciles* with the provider instead of sending again.

Each status change is mirrored on the interaction's `delivery_status` and recorded in the change log, so
the agent's timeline shows queued, sending, sent, delivered or failed.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import sqlalchemy as sa
from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool

from agentdesk.domain.clock import utcnow
from agentdesk.server.auth import new_id
from agentdesk.server.changes import begin_write, record_upsert
from agentdesk.server.db import session as open_session
from agentdesk.server.models import Agent, Conversation, Delivery, Identity, Interaction

log = logging.getLogger("agentdesk.delivery")

OUTBOUND_CHANNELS = ("email", "sms", "whatsapp")  # replies on these leave through a provider
# A `sending` row whose lease is over is reconciled (its sender died or timed out). Longer than any sender's
# whole attempt (the relay: a few SMTP commands of relay_timeout each; Twilio: request_timeout per request),
# so a slow send is never reconciled by another process while it is still on its way.
LEASE = timedelta(minutes=5)
MAX_ATTEMPTS = 8
_RANK = {"pending": 0, "sending": 1, "sent": 2, "delivered": 3, "failed": 3}  # callbacks never move backwards


@dataclass(frozen=True)
class OutboundJob:
    """What a sender needs to send one reply (read in the claiming transaction)."""

    delivery_id: str
    interaction_id: str
    conversation_id: str
    channel: str  # email | sms | whatsapp | phone (a callback call)
    to_address: str  # an email address, or an E.164 number
    text: str
    subject: str | None
    agent_name: str
    attempts: int
    claimed_at: datetime  # when this attempt began: a reconcile looks for what the provider got after it
    lease_until: datetime | None = None  # the claim's token: only the attempt holding this lease may record an outcome
    in_reply_to: str | None = None  # email: the Message-ID this answers (the customer's latest)
    references: list[str] = field(default_factory=list)  # email: the thread's Message-IDs, oldest first
    provider_id: str | None = None  # set on a reconcile when the send had already reported one
    queued_at: datetime | None = None  # when the reply was queued: nothing the provider got before it is this job
    taken_ids: frozenset[str] = frozenset()  # on a reconcile: provider ids other deliveries to this address hold
    cc: tuple[str, ...] = ()  # email: the agent's Cc addresses (validated by the reply mutation)


@dataclass(frozen=True)
class Sent:
    provider_id: str
    status: str = "sent"  # or "delivered" when the provider already says so


class SendFailed(Exception):
    """The provider refused it (permanent) or could not take it now (transient). The message is for the agent."""

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.permanent = permanent


class OutcomeUnknown(Exception):
    """The request may have reached the provider (a timeout after it left): reconcile, never resend blindly."""


class Sender(Protocol):
    def send(self, job: OutboundJob) -> Sent: ...

    def reconcile(self, job: OutboundJob) -> Sent | None:
        """What the provider has of this job: Sent if it got it, None if it never did (so sending is safe).
        Raise SendFailed when it cannot tell (an SMTP relay keeps no record we can ask about)."""
        ...


# ------------------------------------------------------------------------------------------------
# Writing: the reply's transaction, provider callbacks, the agent's retry


def recipient(session: Session, conversation: Conversation, channel: str) -> str | None:
    """Where a reply on `channel` goes: the address the customer last wrote from on it, else one on file."""
    latest = session.exec(
        select(Interaction.meta)
        .where(Interaction.conversation_id == conversation.id, Interaction.channel == channel, Interaction.direction == "inbound")
        .order_by(Interaction.occurred_at.desc())  # type: ignore[attr-defined]
    ).first()
    if latest and latest.get("address"):
        return str(latest["address"])
    kind = "email" if channel == "email" else "phone"
    return session.exec(
        select(Identity.address).where(Identity.customer_id == conversation.customer_id, Identity.kind == kind)
    ).first()


def enqueue(session: Session, interaction: Interaction, to_address: str) -> Delivery:
    """Queue an outbound interaction for its provider, in the caller's (the reply's) transaction."""
    delivery = Delivery(id=new_id(), interaction_id=interaction.id, channel=interaction.channel, to_address=to_address)
    session.add(delivery)
    interaction.delivery_status = "queued"
    return delivery


def _set_status(session: Session, delivery: Delivery, status: str, *, error: str | None = None, provider_id: str | None = None) -> None:
    """Move a delivery (already locked by its caller's compare-and-set or begin_write) and its interaction."""
    now = utcnow()
    delivery.status, delivery.error, delivery.updated_at = status, error, now
    if provider_id:
        delivery.provider_id = provider_id
    session.add(delivery)
    interaction = session.get(Interaction, delivery.interaction_id)
    if interaction is None:
        return
    shown = "queued" if status == "pending" else status
    meta = dict(interaction.meta)
    if error and status == "failed":
        meta["delivery_error"] = error
    else:
        meta.pop("delivery_error", None)
    if provider_id and interaction.channel == "email":
        interaction.external_id = provider_id  # the customer's answer threads to it by In-Reply-To
    if interaction.delivery_status != shown or interaction.meta != meta or provider_id:
        interaction.delivery_status, interaction.meta = shown, meta
        record_upsert(session, interaction)


def on_provider_status(session: Session, channel: str, provider_id: str, status: str, error: str | None = None) -> bool:
    """A provider's status callback (sent, delivered, failed); commits. False: no such delivery of ours.
    Callbacks arrive out of order and repeated, so a status never moves back."""
    begin_write(session)
    delivery = session.exec(select(Delivery).where(Delivery.channel == channel, Delivery.provider_id == provider_id)).first()
    if delivery is None:
        session.rollback()
        return False
    if _RANK.get(status, 0) > _RANK[delivery.status] or (status == "failed" and delivery.status != "failed"):
        _set_status(session, delivery, status, error=error if status == "failed" else None)
    session.commit()
    return True


def retry(session: Session, interaction_id: str) -> Delivery | None:
    """The agent asked to send a failed reply again (in the caller's transaction): back to pending, now."""
    delivery = session.exec(select(Delivery).where(Delivery.interaction_id == interaction_id)).first()
    if delivery is None or delivery.status != "failed":
        return None
    delivery.attempts, delivery.next_attempt_at, delivery.provider_id = 0, utcnow(), None
    _set_status(session, delivery, "pending")
    return delivery


# ------------------------------------------------------------------------------------------------
# The worker


_D = Delivery.__table__.c  # type: ignore[attr-defined]


def _claim(engine: sa.Engine, channels: set[str], now: datetime, limit: int) -> list[tuple[OutboundJob, bool]]:
    """Take up to `limit` due deliveries: (job, is_reconcile). Each claim is a compare-and-set on the row,
    so of two processes looking at once, one gets it."""
    with open_session(engine) as session:
        due = session.exec(
            select(Delivery.id, Delivery.status, Delivery.next_attempt_at)
            .where(Delivery.status.in_(("pending", "sending")), Delivery.next_attempt_at <= now, Delivery.channel.in_(channels))  # type: ignore[attr-defined]
            .order_by(Delivery.next_attempt_at)  # type: ignore[arg-type]
            .limit(limit)
        ).all()
        session.rollback()  # a cheap read most of the time; write only when something is due
        if not due:
            return []
        begin_write(session)
        jobs = []
        for delivery_id, status, due_at in due:
            reconcile = status == "sending"
            claimed = session.execute(
                sa.update(Delivery.__table__)  # type: ignore[arg-type]
                .where(_D.id == delivery_id, _D.status == status, _D.next_attempt_at == due_at)
                .values(status="sending", next_attempt_at=now + LEASE, updated_at=now,
                        attempts=_D.attempts + (0 if reconcile else 1))
            ).rowcount == 1
            delivery = session.get(Delivery, delivery_id, populate_existing=True) if claimed else None
            if delivery is None:
                continue
            job = _job(session, delivery, now, reconcile)
            if job is None:
                _set_status(session, delivery, "failed", error="The message to send no longer exists.")
                continue
            jobs.append((job, reconcile))
            if not reconcile:
                _set_status(session, delivery, "sending")  # the timeline shows it leaving
        session.commit()
        return jobs


def _job(session: Session, delivery: Delivery, now: datetime, reconcile: bool = False) -> OutboundJob | None:
    interaction = session.get(Interaction, delivery.interaction_id)
    if interaction is None:
        return None
    agent = session.get(Agent, interaction.author_id) if interaction.author_id else None
    subject, in_reply_to, references = interaction.subject, None, []
    if delivery.channel == "email":
        thread = session.exec(
            select(Interaction.external_id, Interaction.direction, Interaction.subject)
            .where(Interaction.conversation_id == interaction.conversation_id, Interaction.channel == "email",
                   Interaction.id != interaction.id, Interaction.occurred_at <= interaction.occurred_at)
            .order_by(Interaction.occurred_at)  # type: ignore[arg-type]
        ).all()
        references = [ext for ext, _, _ in thread if ext]
        inbound = [(ext, subj) for ext, direction, subj in thread if direction == "inbound"]
        in_reply_to = next((ext for ext, _ in reversed(inbound) if ext), None)
        if not subject:
            conversation = session.get(Conversation, interaction.conversation_id)
            subject = next((subj for _, subj in reversed(inbound) if subj), None) or (conversation.subject if conversation else None)
    return OutboundJob(
        delivery_id=delivery.id, interaction_id=interaction.id, conversation_id=interaction.conversation_id,
        channel=delivery.channel, to_address=delivery.to_address, text=interaction.text, subject=subject,
        agent_name=agent.name if agent else "", attempts=delivery.attempts, claimed_at=now, lease_until=now + LEASE,
        in_reply_to=in_reply_to, references=references, provider_id=delivery.provider_id,
        queued_at=delivery.created_at, taken_ids=_taken_ids(session, delivery) if reconcile else frozenset(),
        cc=tuple(interaction.meta.get("cc") or ()) if delivery.channel == "email" else (),
    )


def _taken_ids(session: Session, delivery: Delivery) -> frozenset[str]:
    """Provider ids of other deliveries to the same address since this one was queued: a reconcile that
    finds two identical messages must not take the one another delivery already owns."""
    return frozenset(session.exec(
        select(Delivery.provider_id).where(
            Delivery.channel == delivery.channel, Delivery.to_address == delivery.to_address, Delivery.id != delivery.id,
            Delivery.provider_id.is_not(None),  # type: ignore[union-attr]
            Delivery.updated_at >= delivery.created_at - timedelta(hours=1),  # clocks differ: a wide margin
        )
    ).all())


def _backoff(attempts: int) -> timedelta:
    """5 s, 10 s, 20 s … up to 15 min, with jitter so a provider coming back is not hit all at once."""
    base = min(5 * 2 ** max(attempts - 1, 0), 900)
    return timedelta(seconds=base * random.uniform(0.8, 1.2))


def _settle(engine: sa.Engine, job: OutboundJob, status: str, *, error: str | None = None,
            provider_id: str | None = None, retry_in: timedelta | None = None) -> None:
    """Record an attempt's outcome, if this attempt still holds the row's lease (none took it over since)."""
    with open_session(engine) as session:
        begin_write(session)
        delivery = session.get(Delivery, job.delivery_id)
        if delivery is None or delivery.status != "sending" or delivery.next_attempt_at != job.lease_until:
            session.rollback()
            return
        if retry_in is not None:
            delivery.next_attempt_at = utcnow() + retry_in
        _set_status(session, delivery, status, error=error, provider_id=provider_id)
        session.commit()


def attempt(engine: sa.Engine, sender: Sender, job: OutboundJob, reconcile: bool = False) -> str:
    """Send (or reconcile) one claimed job and record the outcome; returns the status it ended in."""
    try:
        if reconcile:
            found = sender.reconcile(job)
            if found is None:  # the provider never got it: sending is safe, right away
                _settle(engine, job, "pending", retry_in=timedelta(0))
                return "pending"
        else:
            found = sender.send(job)
    except SendFailed as exc:
        if exc.permanent or job.attempts >= MAX_ATTEMPTS:
            reason = str(exc) if exc.permanent else f"Gave up after {job.attempts} attempts: {exc}"
            _settle(engine, job, "failed", error=reason)
            return "failed"
        _settle(engine, job, "pending", error=str(exc), retry_in=_backoff(job.attempts))
        return "pending"
    except OutcomeUnknown as exc:
        log.warning("delivery %s: outcome unknown (%s); reconciling after the lease", job.delivery_id, exc)
        return "sending"  # the lease runs out, then the worker reconciles
    except Exception:  # a bug in a sender must not stop the worker; the lease brings the row back
        log.exception("delivery %s: sender failed", job.delivery_id)
        return "sending"
    _settle(engine, job, found.status, provider_id=found.provider_id)
    return found.status


def run_once(engine: sa.Engine, senders: Mapping[str, Sender], limit: int = 20) -> int:
    """Work through up to `limit` due jobs, claiming each just before it is worked, so its lease runs while
    it is sent and not while others ahead of it are; returns how many were worked."""
    worked = 0
    while senders and worked < limit and (jobs := _claim(engine, set(senders), utcnow(), 1)):
        for job, reconcile in jobs:
            attempt(engine, senders[job.channel], job, reconcile)
        worked += 1
    return worked


async def run_forever(engine: sa.Engine, senders: Mapping[str, Sender], interval: float = 0.5) -> None:
    """The app's delivery worker: look for due deliveries every `interval` seconds (cheap: one index probe)."""
    while True:
        try:
            busy = await run_in_threadpool(run_once, engine, senders)
        except sa.exc.SQLAlchemyError as exc:  # the database is away for a moment: the next round retries
            log.warning("delivery worker: %s", type(exc).__name__)
            busy = 0
        if not busy:
            await asyncio.sleep(interval)
