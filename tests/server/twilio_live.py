"""Shared by the Twilio tests: a live agentdesk server with the Twilio channel on (its public URL is its
real loopback address, so signatures and the stand-in's callbacks use it), and requests signed the way
Twilio signs them, by the `twilio` package's own RequestValidator."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import sqlalchemy as sa
import uvicorn
from twilio.request_validator import RequestValidator

from agentdesk.config import Settings
from agentdesk.server.app import create_app
from agentdesk.server.db import session
from agentdesk.server.run import bind
from conftest import PromptServer, World, build_world

ACCOUNT_SID = "AC" + "5" * 32
AUTH_TOKEN = "f3a1c9e7-test-auth-token"
OUR_NUMBER = "+14155550100"
OUR_WHATSAPP = "+14155550199"


@dataclass
class TwilioServer:
    url: str
    engine: sa.Engine
    world: World
    http: httpx.Client  # one client: a new one per request costs ~50 ms of TLS setup, even for plain HTTP
    app: Any = None  # the FastAPI app served

    def post(self, path: str, params: dict[str, str], *, signed_url: str | None = None, token: str = AUTH_TOKEN,
             signature: str | None = None, headers: dict[str, str] | None = None) -> httpx.Response:
        """POST a form as Twilio would: signed over the URL (default: the one posted to) and the params."""
        url = self.url + path
        sig = signature if signature is not None else RequestValidator(token).compute_signature(signed_url or url, params)
        return self.http.post(url, data=params, headers={"X-Twilio-Signature": sig, **(headers or {})})

    def push(self, kind: str, email: str = "alice@example.com", **args: Any) -> dict:
        token = self.world.tokens[email]
        response = self.http.post(f"{self.url}/api/v1/sync/push", headers={"Authorization": f"Bearer {token}"},
                                  json={"mutations": [{"id": uuid.uuid4().hex, "kind": kind, "args": args}]})
        assert response.status_code == 200, response.text
        result = response.json()["results"][0]
        assert result["status"] == "applied", result
        return result

    def get(self, model: type, row_id: str) -> Any:
        with session(self.engine) as db:
            return db.get(model, row_id)

    def wait_for(self, check: Callable[[], Any], timeout: float = 8.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            if result := check():
                return result
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)


@contextmanager
def twilio_server(engine: sa.Engine, **twilio: Any) -> Iterator[TwilioServer]:
    """A server over a fresh world with `[channels.twilio]` enabled (plus `twilio` overrides)."""
    world = build_world(engine)
    sock = bind("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = {"enabled": True, "auth_token": AUTH_TOKEN, **twilio}
    settings = Settings(server={"public_url": url}, channels={"twilio": config})
    app = create_app(engine, settings=settings)
    server = PromptServer(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        with httpx.Client(timeout=10) as http:
            yield TwilioServer(url, engine, world, http, app)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def sms(sender: str = "+14155550142", body: str = "Is my order on its way?", **extra: str) -> dict[str, str]:
    """An inbound message webhook's form, as Twilio posts it."""
    sid = "SM" + uuid.uuid4().hex
    return {"AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "MessageSid": sid, "SmsMessageSid": sid, "SmsSid": sid,
            "SmsStatus": "received", "From": sender, "To": OUR_NUMBER, "Body": body, "NumMedia": "0", "NumSegments": "1",
            **extra}


def call(sender: str = "+14155550142", **extra: str) -> dict[str, str]:
    """An incoming call webhook's form."""
    return {"AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "CallSid": "CA" + uuid.uuid4().hex,
            "CallStatus": "ringing", "Direction": "inbound", "From": sender, "Caller": sender, "To": OUR_NUMBER,
            "Called": OUR_NUMBER, **extra}
