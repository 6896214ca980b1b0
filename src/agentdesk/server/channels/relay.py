"""Email replies out through an SMTP relay: the outbox's `Sender` for the email channel.

Each reply is one message with a deterministic Message-ID, `<interaction id@our domain>`: the same reply
always carries the same id, the customer's answer threads back to it by In-Reply-To, and a bounce names it.
Errors are sorted for the outbox: the relay refusing the address or the message (5xx) is permanent, with a
reason the agent can act on; a relay that is down, busy (4xx) or unreachable is transient (retried with
backoff); a connection lost after the message's final dot was sent is an unknown outcome. An SMTP relay
keeps no record we could ask, so a reconcile cannot tell and says so (the agent may send it again).
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import TYPE_CHECKING

from agentdesk.domain.text import reply_subject
from agentdesk.server.delivery import OutboundJob, OutcomeUnknown, SendFailed, Sent

if TYPE_CHECKING:
    from agentdesk.config.models import EmailChannelConfig

# CRLF on the wire, and 7-bit bodies (quoted-printable or base64): a relay need not offer 8BITMIME.
_POLICY = policy.SMTP.clone(cte_type="7bit")
_WELL_FORMED_ID = re.compile(r"^<[^<>\s]+@[^<>\s]+>$")
UNKNOWN_AFTER_RESTART = (
    "The server stopped while handing this email to the relay; it may or may not have been sent. Retry to send it again."
)


def message_id(interaction_id: str, our_address: str) -> str:
    return f"<{interaction_id}@{our_address.rpartition('@')[2] or 'localhost'}>"


class RelaySender:
    """Sends email replies through the configured relay (smtplib, blocking: the outbox calls it in a thread)."""

    def __init__(self, config: EmailChannelConfig, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.config = config
        self.ssl_context = ssl_context  # default: the system's trusted CAs, host name checked

    # -- the message

    def message(self, job: OutboundJob, now: datetime | None = None) -> EmailMessage:
        config = self.config
        msg = EmailMessage(policy=_POLICY)
        msg["From"] = Address(display_name=" ".join(config.from_name.split()), addr_spec=config.address)
        msg["To"] = job.to_address
        if job.cc:
            msg["Cc"] = ", ".join(job.cc)
        msg["Subject"] = reply_subject(job.subject)
        msg["Date"] = format_datetime(now or datetime.now(UTC))
        msg["Message-ID"] = message_id(job.interaction_id, config.address)
        references = [ref for ref in job.references if _WELL_FORMED_ID.match(ref)]
        if job.in_reply_to and _WELL_FORMED_ID.match(job.in_reply_to):
            msg["In-Reply-To"] = job.in_reply_to
            if job.in_reply_to not in references:
                references.append(job.in_reply_to)
        if references:
            msg["References"] = " ".join(references[-20:])  # the newest; long threads would bloat every reply
        msg.set_content(self.body(job))
        return msg

    def body(self, job: OutboundJob) -> str:
        # str.replace, not format(): the signature is admin config, the agent's name is data.
        signature = self.config.signature.replace("{agent_name}", job.agent_name or self.config.from_name).strip("\n")
        return f"{job.text}\n\n-- \n{signature}\n" if signature.strip() else f"{job.text}\n"

    # -- the Sender protocol

    def send(self, job: OutboundJob) -> Sent:
        try:
            msg = self.message(job)
        except (ValueError, TypeError) as exc:  # nothing a retry could change
            raise SendFailed(f"This reply could not be made into an email: {exc}", permanent=True) from None
        relay = self._connect()
        try:
            self._envelope(relay, job.to_address, job.cc)
            self._data(relay, msg)
        finally:
            _quit(relay)  # not `with`: a failed QUIT after the relay took the message must not undo "sent"
        return Sent(provider_id=str(msg["Message-ID"]))

    def reconcile(self, job: OutboundJob) -> Sent | None:
        raise SendFailed(UNKNOWN_AFTER_RESTART, permanent=True)

    # -- the SMTP conversation

    def _context(self) -> ssl.SSLContext:
        return self.ssl_context or ssl.create_default_context()

    def _connect(self) -> smtplib.SMTP:
        """Connected, secured and logged in as configured; every failure here is transient (nothing was sent)."""
        config = self.config
        where = f"{config.relay_host}:{config.relay_port}"
        relay: smtplib.SMTP | None = None
        try:
            if config.relay_security == "tls":
                relay = smtplib.SMTP_SSL(config.relay_host, config.relay_port, timeout=config.relay_timeout, context=self._context())
            else:
                relay = smtplib.SMTP(config.relay_host, config.relay_port, timeout=config.relay_timeout)
            relay.ehlo()
            if config.relay_security == "starttls":
                relay.starttls(context=self._context())
                relay.ehlo()
            if config.relay_username:
                relay.login(config.relay_username, config.relay_password)
            return relay
        except socket.gaierror as exc:
            raise SendFailed(f"The mail relay {where} could not be found: {exc.strerror or exc}", permanent=False) from None
        except smtplib.SMTPAuthenticationError as exc:
            _close(relay)
            raise SendFailed(f"The mail relay {where} refused our login: {_said(exc.smtp_code, exc.smtp_error)}", permanent=False) from None
        except smtplib.SMTPNotSupportedError as exc:  # no STARTTLS, or no AUTH (often: only after STARTTLS)
            _close(relay)
            raise SendFailed(f"The mail relay {where} does not support what we need: {exc} "
                             "(check relay_security and relay_username)", permanent=False) from None
        except smtplib.SMTPResponseException as exc:  # e.g. a 421/554 greeting
            _close(relay)
            raise SendFailed(f"The mail relay {where} refused the connection: {_said(exc.smtp_code, exc.smtp_error)}", permanent=False) from None
        except (OSError, smtplib.SMTPException) as exc:  # refused, unreachable, timed out, TLS failed, dropped
            _close(relay)
            raise SendFailed(f"The mail relay {where} could not be reached: {_describe(exc)}", permanent=False) from None

    def _envelope(self, relay: smtplib.SMTP, to_address: str, cc: tuple[str, ...] = ()) -> None:
        """MAIL FROM and RCPT TO (the customer, then each Cc): a 5xx here is the relay refusing for good, a 4xx
        or a drop is transient. A refused Cc fails the reply too: its header names them all."""
        try:
            code, said = relay.mail(self.config.address)
            if code != 250:
                raise _refused(code, said, f"The mail server refused our sender address {self.config.address}")
            for address in (to_address, *cc):
                code, said = relay.rcpt(address)
                if code not in (250, 251):
                    raise _refused(code, said, f"The mail server refused the address {address}")
        except (OSError, smtplib.SMTPException) as exc:
            raise SendFailed(f"The mail relay dropped the connection before the message was sent: {_describe(exc)}", permanent=False) from None
        except UnicodeEncodeError:  # smtplib speaks ASCII envelopes only (no SMTPUTF8)
            raise SendFailed(f"The address {to_address} has non-ASCII characters, which our mail relay connection cannot send to.", permanent=True) from None

    def _data(self, relay: smtplib.SMTP, msg: EmailMessage) -> None:
        """DATA by hand (smtplib's public putcmd/getreply/send), to know the moment the message has left:
        a failure before the final dot is safe to retry; one after it may mean the relay took it."""
        payload = msg.as_bytes()
        payload = re.sub(rb"(?m)^\.", b"..", payload)
        if not payload.endswith(b"\r\n"):
            payload += b"\r\n"
        try:
            relay.putcmd("data")
            code, said = relay.getreply()
        except (OSError, smtplib.SMTPException) as exc:
            raise SendFailed(f"The mail relay dropped the connection before the message was sent: {_describe(exc)}", permanent=False) from None
        if code != 354:
            raise _refused(code, said, "The mail server refused the message")
        try:
            relay.send(payload + b".\r\n")
            code, said = relay.getreply()
        except (OSError, smtplib.SMTPException) as exc:
            raise OutcomeUnknown(f"the relay connection failed after the message was sent: {_describe(exc)}") from None
        if code != 250:
            raise _refused(code, said, "The mail server refused the message")


def _refused(code: int, said: bytes | str, what: str) -> SendFailed:
    return SendFailed(f"{what}: {_said(code, said)}", permanent=500 <= code < 600)


def _said(code: int, said: bytes | str) -> str:
    text = said.decode("utf-8", "replace") if isinstance(said, bytes) else str(said)
    return f"{code} {' '.join(text.split())}"[:500]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    return str(exc) or type(exc).__name__


def _close(relay: smtplib.SMTP | None) -> None:
    if relay is not None:
        try:
            relay.close()
        except OSError:
            pass


def _quit(relay: smtplib.SMTP) -> None:
    try:
        relay.quit()
    except (OSError, smtplib.SMTPException):
        pass
    finally:
        _close(relay)
