"""Shared by the email channel tests: a real server with its SMTP listener, a real SMTP client session, and a
real SMTP relay (aiosmtpd on a loopback port) that records what our sender hands it."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiosmtpd.smtp import SMTP, AuthResult
from conftest import World, build_world, start_uvicorn
from sqlmodel import select

from agentdesk.config import Settings
from agentdesk.server.app import create_app
from agentdesk.server.db import session
from agentdesk.server.models import Conversation, Interaction

CORPUS = Path(__file__).with_name("email_corpus")
OUR_ADDRESS = "support@example.com"


@dataclass
class MailDesk:
    url: str
    engine: sa.Engine
    world: World
    smtp_port: int

    def interaction(self, external_id: str) -> Interaction | None:
        with session(self.engine) as db:
            return db.exec(select(Interaction).where(Interaction.channel == "email", Interaction.external_id == external_id)).first()

    def conversation(self, conversation_id: str) -> Conversation:
        with session(self.engine) as db:
            return db.get(Conversation, conversation_id)

    def count(self) -> int:
        with session(self.engine) as db:
            return len(db.exec(select(Interaction.id)).all())


@contextmanager
def mail_desk(engine: sa.Engine, **email: Any) -> Iterator[MailDesk]:
    """A real server (create_app + uvicorn) with the email channel enabled and its SMTP listener on a free port."""
    world = build_world(engine)
    settings = Settings(channels={"email": {"enabled": True, "smtp_port": 0, "address": OUR_ADDRESS, **email}})
    app = create_app(engine, settings=settings)
    url, server, thread = start_uvicorn(app)
    try:
        _, port = app.state.channels.listening["smtp"]
        yield MailDesk(url, engine, world, port)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def smtp_send(port: int, raw: bytes, *, mail_from: str = "someone@customer.test", rcpt: str = OUR_ADDRESS) -> tuple[int, str]:
    """One real SMTP session; returns the server's final answer (to RCPT when refused there, else to DATA)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.test")
        code, said = client.mail(mail_from)
        assert code == 250, said
        code, said = client.rcpt(rcpt)
        if code != 250:
            return code, said.decode()
        try:
            code, said = client.data(raw)
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code, exc.smtp_error.decode()
        return code, said.decode()


def corpus(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def wait_for(check: Callable[[], Any], timeout: float = 8.0, what: str = "condition") -> Any:
    """Poll `check` until it returns something truthy (returned), failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# ------------------------------------------------------------------------------------------------
# A real SMTP relay


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage


@dataclass
class RelayHandler:
    """What the relay answers: refuse some recipients, hold or stall DATA, require a login."""

    received: list[Received] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)  # recipient -> the RCPT answer
    data_answer: str = "250 2.0.0 Ok: queued"
    stall_data: float = 0.0  # seconds to sit on the final dot before answering
    gate: threading.Event | None = None  # DATA waits for it (to watch the delivery in "sending")
    logins: list[tuple[str, str]] = field(default_factory=list)
    tls_seen: list[bool] = field(default_factory=list)

    async def handle_RCPT(self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        if self.gate is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.gate.wait, 10)
        raw = bytes(envelope.original_content)
        self.tls_seen.append(server.transport.get_extra_info("ssl_object") is not None)
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), raw,
                                      BytesParser(policy=policy.default).parsebytes(raw)))  # type: ignore[arg-type]
        if self.stall_data:  # it has the message, but our sender hears nothing back in time
            await asyncio.sleep(self.stall_data)
        return self.data_answer


class Relay:
    """aiosmtpd on its own event loop in a thread, bound to a free loopback port."""

    def __init__(self, handler: RelayHandler, *, tls: ssl.SSLContext | None = None, implicit_tls: bool = False,
                 password: str | None = None) -> None:
        self.handler = handler
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        def authenticate(server: SMTP, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
            login, secret = data.login.decode(), data.password.decode()
            handler.logins.append((login, secret))
            return AuthResult(success=secret == password, handled=False)  # handled=False: aiosmtpd answers 535

        def factory() -> SMTP:
            with warnings.catch_warnings():  # "AUTH without TLS": aiosmtpd cannot see implicit TLS; it is there
                warnings.simplefilter("ignore", UserWarning)
                return session_for()

        def session_for() -> SMTP:
            return SMTP(handler, hostname="relay.test", loop=self.loop, timeout=30,
                        tls_context=None if implicit_tls else tls, require_starttls=bool(tls) and not implicit_tls,
                        authenticator=authenticate if password is not None else None, auth_required=password is not None,
                        auth_require_tls=not implicit_tls)  # aiosmtpd cannot see implicit TLS; it is there

        async def start() -> asyncio.AbstractServer:
            return await self.loop.create_server(factory, "127.0.0.1", 0, ssl=tls if implicit_tls else None)

        self.server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        self.port = self.server.sockets[0].getsockname()[1]

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
