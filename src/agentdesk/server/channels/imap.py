"""Inbound email by IMAP polling (when `imap_host` is set): for mailboxes the SMTP listener cannot receive.

Every `imap_poll_seconds` the poller logs in over IMAPS (stdlib imaplib, in a worker thread), fetches the
unseen messages of `imap_folder` without marking them, and stores each through `smtp.store_email`, the same
parse and ingest as SMTP mail. A message is flagged \\Seen only after its ingest committed; on a transient
problem (database, no team yet) the round stops and the next one tries again. A message that can never be
taken is flagged seen with a logged reason; it stays in the mailbox, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import imaplib
import logging
import ssl
from typing import TYPE_CHECKING

import sqlalchemy as sa

from agentdesk.server.channels.email_parse import EmailParseError
from agentdesk.server.channels.smtp import store_email
from agentdesk.server.inbound import InboundError
from agentdesk.server.routing import NoTeam

if TYPE_CHECKING:
    from agentdesk.config import Settings
    from agentdesk.server.channels import ChannelContext, Stop

log = logging.getLogger("agentdesk.email.imap")
TIMEOUT = 60.0  # seconds for one IMAP command


def poll_once(engine: sa.Engine, settings: Settings, *, ssl_context: ssl.SSLContext | None = None) -> int:
    """One round: store the unseen messages; returns how many were stored (new or already known)."""
    config = settings.channels.email
    stored = 0
    with imaplib.IMAP4_SSL(config.imap_host, config.imap_port, ssl_context=ssl_context or ssl.create_default_context(),
                           timeout=TIMEOUT) as imap:
        imap.login(config.imap_username, config.imap_password)
        status, _ = imap.select(_quoted(config.imap_folder))
        if status != "OK":
            raise imaplib.IMAP4.error(f"cannot open the folder {config.imap_folder!r}")
        status, found = imap.uid("SEARCH", None, "UNSEEN")
        for uid in (found[0] or b"").split() if status == "OK" else []:
            raw = _fetch(imap, uid)
            if raw is None:
                continue
            try:
                store_email(engine, settings, raw, envelope_from=None, source="imap")
                stored += 1
            except (EmailParseError, InboundError) as exc:
                log.warning("IMAP message %s refused, left in the mailbox as seen: %s", uid.decode(), exc)
            except (NoTeam, sa.exc.SQLAlchemyError) as exc:
                log.warning("IMAP round stopped, retried next round: %s", type(exc).__name__)
                break
            imap.uid("STORE", uid, "+FLAGS", "(\\Seen)")
        imap.close()
    return stored


def _fetch(imap: imaplib.IMAP4, uid: bytes) -> bytes | None:
    status, data = imap.uid("FETCH", uid, "(BODY.PEEK[])")  # PEEK: not seen until stored
    if status != "OK":
        return None
    return next((item[1] for item in data if isinstance(item, tuple) and len(item) == 2), None)


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def start_imap(context: ChannelContext) -> Stop:
    """Poll in the background until stopped."""
    interval = context.settings.channels.email.imap_poll_seconds

    async def loop() -> None:
        while True:
            try:
                count = await asyncio.to_thread(poll_once, context.engine, context.settings)
                if count:
                    log.info("IMAP: stored %d message(s)", count)
            except (OSError, imaplib.IMAP4.error) as exc:  # the server is away or refuses us: next round
                log.warning("IMAP poll of %s failed: %s", context.settings.channels.email.imap_host, exc)
            except Exception:
                log.exception("IMAP poll failed")
            await asyncio.sleep(interval)

    task = asyncio.create_task(loop(), name="agentdesk-imap")

    async def stop() -> None:
        task.cancel()

    return stop
