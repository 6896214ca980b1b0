"""The demo's outside world: where the desk's replies go, so they really leave and come back "sent" or "delivered".

- `MailSink`: the customers' mail server, an aiosmtpd server on a loopback port that takes every email reply
  (the demo's `[channels.email]` relay) and tells the traffic simulator about it, so customers can answer.
- `TwilioStandIn` (twilio_standin.py): Twilio's REST API for SMS, WhatsApp and callback calls; it works each
  message and call through its states and posts signed status callbacks to the demo server.

`OutsideWorld` binds both sockets first (so the demo server's configuration can name them at once) and starts
them later, each on its own thread and event loop, off the demo's start-up path: until then a reply's
connection waits in the listen backlog. Fresh credentials each run; the company's own demo numbers.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import secrets
import socket
import threading
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from typing import TYPE_CHECKING, Any

from agentdesk.demo.data import COMPANY

if TYPE_CHECKING:
    from agentdesk.demo.twilio_standin import TwilioStandIn

log = logging.getLogger("agentdesk.demo")

MAILBOX = "support@demo.agentdesk.test"  # the company's address (the seeded day's teams write from it)
SMS_NUMBER = "+18005550199"  # the company's number: SMS, calls (COMPANY_PHONE in data.py, in E.164)
WHATSAPP_NUMBER = "+18005550142"  # the company's WhatsApp sender
TWILIO_STEP_SECONDS = 0.5  # between a reply's "sent" and "delivered" (a real phone takes about that)


@dataclass(frozen=True)
class Mail:
    """One reply that reached a customer's mailbox: enough for the customer to answer it."""

    to: str
    message_id: str
    subject: str
    references: tuple[str, ...]


class MailSink:
    """Every customer's mail server at once: takes all mail, keeps none, queues a `Mail` per message."""

    def __init__(self) -> None:
        self.received: queue.Queue[Mail] = queue.Queue()
        self.sock = listening_socket()
        self.port: int = self.sock.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="demo-mail-sink")

    def start(self) -> None:
        from aiosmtpd.smtp import SMTP

        def session() -> SMTP:
            return SMTP(self, hostname="mx.example.net", ident="demo mail sink", loop=self._loop, enable_SMTPUTF8=True)

        async def listen() -> asyncio.AbstractServer:
            return await self._loop.create_server(session, sock=self.sock)

        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(listen(), self._loop).result(10)

    def stop(self) -> None:
        if self._thread.is_alive():
            if self._server is not None:
                self._loop.call_soon_threadsafe(self._server.close)
            self._loop.call_soon_threadsafe(self._loop.stop)
        else:
            self.sock.close()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd's hook
        try:
            headers = BytesParser(policy=policy.default).parsebytes(bytes(envelope.original_content or b""), headersonly=True)
            references = tuple(str(headers.get("References", "")).split())
            for to in envelope.rcpt_tos:
                self.received.put(Mail(str(to).lower(), str(headers.get("Message-ID", "")).strip(),
                                       str(headers.get("Subject", "")), references))
        except Exception:  # a reply we cannot read is still delivered; nobody answers it
            log.exception("the demo mail sink could not read a reply's headers")
        return "250 2.0.0 OK: in the customer's mailbox"


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


@dataclass
class OutsideWorld:
    """The mail sink and the Twilio stand-in, with the credentials the demo server is configured with."""

    account_sid: str = field(default_factory=lambda: "AC" + secrets.token_hex(16))
    auth_token: str = field(default_factory=lambda: secrets.token_hex(16))
    mail: MailSink = field(default_factory=MailSink)
    twilio_sock: socket.socket = field(default_factory=listening_socket)
    twilio: TwilioStandIn | None = None

    @property
    def twilio_url(self) -> str:
        return f"http://127.0.0.1:{self.twilio_sock.getsockname()[1]}"

    def start(self) -> None:
        from agentdesk.demo.twilio_standin import TwilioStandIn

        self.mail.start()
        twilio = TwilioStandIn(self.account_sid, self.auth_token, step_delay=TWILIO_STEP_SECONDS)
        twilio.start(self.twilio_sock)
        self.twilio = twilio

    def stop(self) -> None:
        self.mail.stop()
        if self.twilio is not None:
            self.twilio.stop()
        else:
            self.twilio_sock.close()

    def channels(self) -> dict[str, Any]:
        """`[channels]` for the demo server: email in by SMTP and out to the sink, Twilio through the stand-in."""
        return {
            "email": {
                "enabled": True, "address": MAILBOX, "from_name": f"{COMPANY} Support",
                "signature": "{agent_name}\n" + COMPANY + " Support", "smtp_host": "127.0.0.1", "smtp_port": 0,
                "imap_host": "", "relay_host": "127.0.0.1", "relay_port": self.mail.port, "relay_security": "none",
                "relay_username": "", "relay_password": "", "relay_timeout": 10.0,
            },
            "twilio": {
                "enabled": True, "account_sid": self.account_sid, "auth_token": self.auth_token,
                "api_base_url": self.twilio_url, "sms_from": SMS_NUMBER, "whatsapp_from": WHATSAPP_NUMBER,
            },
            "chat": {"enabled": True, "title": f"Chat with {COMPANY}"},
        }
