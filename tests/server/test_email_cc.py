"""Cc on email replies: validated by the reply mutation, carried in the Cc header and the SMTP envelope."""

from __future__ import annotations

import uuid

import httpx
import pytest
from mail_support import Relay, RelayHandler, mail_desk
from test_email_out import customer_writes, settled

from agentdesk.server.db import session
from agentdesk.server.models import Interaction


@pytest.fixture
def relay():
    running = Relay(RelayHandler())
    yield running
    running.close()


@pytest.fixture
def desk(db_engine, relay):
    with mail_desk(db_engine, relay_host="127.0.0.1", relay_port=relay.port, relay_security="none", relay_timeout=1.0) as running:
        yield running


def push(desk, args: dict, kind: str = "reply") -> dict:
    mutation = {"id": uuid.uuid4().hex, "kind": kind, "args": args}
    token = desk.world.tokens["alice@example.com"]
    response = httpx.post(f"{desk.url}/api/v1/sync/push", json={"mutations": [mutation]}, headers={"Authorization": f"Bearer {token}"})
    return response.json()["results"][0]


def reply_args(conversation_id: str, **extra) -> dict:
    return {"conversation_id": conversation_id, "interaction_id": uuid.uuid4().hex, "channel": "email", "text": "See below.", **extra}


def test_a_reply_with_cc_reaches_every_recipient_and_names_them(desk, relay):
    first = customer_writes(desk, "maria@customer.test", "<c1@customer.test>", "Invoice")
    args = reply_args(first.conversation_id, subject="Re: Invoice", cc=["Accounts@Customer.test", "boss@customer.test", "accounts@customer.test"])
    assert push(desk, args)["status"] == "applied"
    settled(desk, args["interaction_id"], "sent")
    [got] = relay.handler.received
    assert got.rcpt_tos == ["maria@customer.test", "accounts@customer.test", "boss@customer.test"]  # normalised, once each
    assert str(got.message["To"]) == "maria@customer.test"
    assert str(got.message["Cc"]) == "accounts@customer.test, boss@customer.test"
    with session(desk.engine) as db:
        assert db.get(Interaction, args["interaction_id"]).meta["cc"] == ["accounts@customer.test", "boss@customer.test"]


def test_a_reply_without_cc_has_no_cc_header(desk, relay):
    first = customer_writes(desk, "ken@customer.test", "<c2@customer.test>", "Hinge")
    args = reply_args(first.conversation_id)
    assert push(desk, args)["status"] == "applied"
    settled(desk, args["interaction_id"], "sent")
    [got] = relay.handler.received
    assert got.message["Cc"] is None and got.rcpt_tos == ["ken@customer.test"]


def test_a_refused_cc_fails_the_reply_with_the_reason(desk, relay):
    first = customer_writes(desk, "ana@customer.test", "<c3@customer.test>", "Hello")
    relay.handler.refuse["gone@customer.test"] = "550 5.1.1 User unknown"
    args = reply_args(first.conversation_id, cc=["gone@customer.test"])
    assert push(desk, args)["status"] == "applied"
    failed = settled(desk, args["interaction_id"], "failed")
    assert failed.error == "The mail server refused the address gone@customer.test: 550 5.1.1 User unknown"
    assert relay.handler.received == []


@pytest.mark.parametrize(
    ("extra", "kind", "reason"),
    [
        ({"cc": ["not an address"]}, "reply", "cc.0"),
        ({"cc": ["a@b.test\r\nBcc: evil@x.test"]}, "reply", "cc.0"),  # no header injection through a Cc
        ({"cc": ["zoë@exämple.test"]}, "reply", "non-ASCII"),
        ({"cc": [f"p{i}@customer.test" for i in range(11)]}, "reply", "at most 10"),
        ({"cc": ["a@customer.test"], "channel": "sms"}, "reply", "cc applies to email replies only"),
        ({"cc": ["a@customer.test"]}, "note", "cannot have cc addresses"),
    ],
)
def test_bad_cc_is_rejected_with_a_reason(desk, relay, extra, kind, reason):
    first = customer_writes(desk, "lee@customer.test", f"<{uuid.uuid4().hex}@customer.test>", "Hi")
    result = push(desk, reply_args(first.conversation_id, **extra), kind)
    assert result["status"] == "rejected" and reason in result["reason"], result
