"""Inbound email over SMTP: an aiosmtpd listener on the app's event loop, and `store_email`, the one way a
raw message (from SMTP or IMAP) becomes an interaction.

The listener is no open relay: it takes mail only for our address's domain (550 otherwise), and messages
only up to `max_message_bytes` (552). It answers 250 only once the message is committed, so nothing it
accepted can be lost: a transient database problem answers 451 and the sending server tries again later
(a repeated Message-ID is ignored by `ingest`), a message that cannot be read answers 554 with the reason.
Parsing and ingest run in a worker thread, never on the event loop.

A delivery report (DSN) about one of our replies marks that reply failed, with the remote server's
diagnostic, and lands on the timeline of the customer it is about.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from aiosmtpd.smtp import SMTP
from sqlmodel import select
from starlette.concurrency import run_in_threadpool

from agentdesk.server import delivery
from agentdesk.server.channels.email_parse import Bounce, EmailParseError, parse_email
from agentdesk.server.db import session as open_session
from agentdesk.server.inbound import Inbound, InboundError, Ingested, ingest
from agentdesk.server.models import Delivery
from agentdesk.server.routing import NoTeam

if TYPE_CHECKING:
    from agentdesk.config import Settings
    from agentdesk.server.channels import ChannelContext, Stop

log = logging.getLogger("agentdesk.email")


def store_email(engine: sa.Engine, settings: Settings, raw: bytes, *, envelope_from: str | None, source: str) -> Ingested:
    """Parse and ingest one message; committed when it returns. Raises EmailParseError or InboundError for a
    message that can never be taken, NoTeam or a database error when it may be taken later."""
    parsed = parse_email(raw, envelope_from=envelope_from)
    item = parsed.inbound
    item.metadata["source"] = source
    with open_session(engine) as db:
        if parsed.bounce is not None:
            _apply_bounce(db, parsed.bounce, item)
        return ingest(db, item, default_region=settings.identity.default_region)


def _apply_bounce(db: Any, bounce: Bounce, item: Inbound) -> None:
    """A report on replies of ours: fail them (idempotent) and put the report on that customer's timeline."""
    ours = db.exec(
        select(Delivery.provider_id, Delivery.to_address)
        .where(Delivery.channel == "email", Delivery.provider_id.in_(bounce.original_ids))  # type: ignore[union-attr]
    ).all()
    db.rollback()  # end the read; on_provider_status takes the write lock itself
    if not ours:
        return
    if bounce.failed:
        for provider_id, _ in ours:
            delivery.on_provider_status(db, "email", provider_id, "failed",
                                        f"The recipient's mail server bounced it: {bounce.diagnostic}")
    # The report is about the customer, not from them: thread it to the reply it reports on. The address
    # comes from our own outbox, never from the report.
    item.address, item.name = ours[0][1], None
    item.references = [provider_id for provider_id, _ in ours] + item.references


# ------------------------------------------------------------------------------------------------
# The SMTP listener


def _smtp_text(reason: object) -> str:
    """A reason fit for one SMTP reply line: printable ASCII, no CR/LF (it may quote what a sender wrote)."""
    text = str(reason).encode("ascii", "backslashreplace").decode("ascii")
    return re.sub(r"[\x00-\x1f\x7f]+", " ", text)[:400]


class _Handler:
    """aiosmtpd hooks: whom we accept mail for, and what becomes of each message."""

    def __init__(self, engine: sa.Engine, settings: Settings) -> None:
        self.engine, self.settings = engine, settings
        self.address = settings.channels.email.address.strip().lower()
        self.domain = self.address.rpartition("@")[2]

    async def handle_RCPT(self, server: SMTP, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        if address.strip().lower().rpartition("@")[2] != self.domain:
            return f"550 5.7.1 Relaying denied: this server takes mail for @{_smtp_text(self.domain)} only"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        peer = _smtp_text(session.peer[0] if session.peer else "?")
        mail_from = "" if envelope.mail_from in ("<>", "", None) else str(envelope.mail_from)
        try:
            result = await run_in_threadpool(
                store_email, self.engine, self.settings, bytes(envelope.original_content or b""),
                envelope_from=mail_from, source="smtp",
            )
        except (EmailParseError, InboundError) as exc:
            log.warning("email from %s refused: %s", peer, _smtp_text(exc))
            return f"554 5.6.0 {_smtp_text(exc)}"
        except NoTeam as exc:
            log.error("email from %s deferred: %s", peer, _smtp_text(exc))
            return "451 4.3.0 No team takes new conversations yet; try again later"
        except sa.exc.SQLAlchemyError as exc:
            log.warning("email from %s deferred, database unavailable: %s", peer, type(exc).__name__)
            return "451 4.3.0 Temporary local problem; try again later"
        except Exception:  # a bug must not lose mail: the sender keeps it and retries
            log.exception("email from %s deferred after an unexpected error", peer)
            return "451 4.3.0 Temporary local problem; try again later"
        if result.duplicate:
            log.info("email from %s: already have it (interaction %s)", peer, result.interaction_id)
        return f"250 2.0.0 OK {result.interaction_id}"


class _Session(SMTP):
    # RFC 5321 caps lines at 1000 bytes, but real mailers send longer HTML lines; refusing those (500) would
    # bounce real customers' mail. The whole message is still capped by data_size_limit.
    line_length_limit = 1 << 20


async def start_smtp(context: ChannelContext) -> Stop:
    """Listen on smtp_host:smtp_port (0 = any free port; the bound one is logged and kept in the context)."""
    config = context.settings.channels.email
    loop = asyncio.get_running_loop()
    handler = _Handler(context.engine, context.settings)
    hostname = handler.domain or "localhost"  # given, else aiosmtpd asks DNS for the FQDN on every connection

    def session() -> SMTP:
        return _Session(handler, data_size_limit=config.max_message_bytes, enable_SMTPUTF8=True,
                        hostname=hostname, ident="agentdesk", loop=loop)

    try:
        server = await loop.create_server(session, host=config.smtp_host, port=config.smtp_port)
    except OSError as exc:  # in use, or not an address of this machine: say which setting to change
        raise RuntimeError(f"The SMTP listener cannot listen on {config.smtp_host}:{config.smtp_port} "
                           f"([channels.email] smtp_host/smtp_port): {exc.strerror or exc}") from None
    host, port = server.sockets[0].getsockname()[:2]
    context.listening["smtp"] = (host, port)
    log.info("SMTP listener on %s:%d for @%s", host, port, handler.domain)

    async def stop() -> None:
        server.close()
        try:
            await asyncio.wait_for(server.wait_closed(), timeout=5)
        except TimeoutError:
            log.warning("SMTP listener: connections still open at shutdown")

    return stop
