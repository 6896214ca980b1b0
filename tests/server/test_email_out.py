"""Email out: replies pushed through the real sync API leave through the app's delivery worker and our relay
sender to a real SMTP relay (aiosmtpd on a loopback port); answers and bounces come back through the listener."""

from __future__ import annotations

import ssl
import threading
import time
import uuid
from datetime import timedelta

import httpx
import pytest
import trustme
from mail_support import (
    MailDesk,
    Relay,
    RelayHandler,
    corpus,
    free_port,
    mail_desk,
    smtp_send,
    wait_for,
)
from sqlmodel import select

from agentdesk.config.models import EmailChannelConfig
from agentdesk.domain.clock import utcnow
from agentdesk.server.channels.relay import (
    UNKNOWN_AFTER_RESTART,
    RelaySender,
    reply_subject,
)
from agentdesk.server.db import session
from agentdesk.server.delivery import OutboundJob, SendFailed, Sent
from agentdesk.server.models import Conversation, Delivery, Interaction

DSN_ORIGINAL = "3f2a9c1e0b7d4e6f8a1b2c3d4e5f6a7b"  # the reply id whose Message-ID the corpus bounce names


@pytest.fixture
def relay():
    handler = RelayHandler()
    running = Relay(handler)
    yield running
    running.close()


@pytest.fixture
def desk(db_engine, relay) -> MailDesk:
    with mail_desk(db_engine, relay_host="127.0.0.1", relay_port=relay.port, relay_security="none", relay_timeout=1.0) as running:
        yield running


def customer_writes(desk: MailDesk, sender: str, message_id: str, subject: str, *, extra: str = "") -> Interaction:
    raw = (f"From: {sender}\r\nTo: Support <support@example.com>\r\nSubject: {subject}\r\nMessage-ID: {message_id}\r\n"
           f"Date: Tue, 10 Mar 2026 09:00:00 +0000\r\n{extra}\r\nHello, where is my order?\r\n").encode()
    code, said = smtp_send(desk.smtp_port, raw)
    assert code == 250, said
    return desk.interaction(message_id)


def push_reply(desk: MailDesk, conversation_id: str, text: str, interaction_id: str | None = None) -> str:
    interaction_id = interaction_id or uuid.uuid4().hex
    mutation = {"id": uuid.uuid4().hex, "kind": "reply",
                "args": {"conversation_id": conversation_id, "interaction_id": interaction_id, "channel": "email", "text": text}}
    token = desk.world.tokens["alice@example.com"]  # Billing, the team new mail is routed to here
    response = httpx.post(f"{desk.url}/api/v1/sync/push", json={"mutations": [mutation]},
                          headers={"Authorization": f"Bearer {token}"})
    assert response.json()["results"][0]["status"] == "applied", response.text
    return interaction_id


def delivery_of(desk: MailDesk, interaction_id: str) -> Delivery:
    with session(desk.engine) as db:
        return db.exec(select(Delivery).where(Delivery.interaction_id == interaction_id)).one()


def settled(desk: MailDesk, interaction_id: str, status: str, timeout: float = 8.0) -> Delivery:
    return wait_for(lambda: (d := delivery_of(desk, interaction_id)).status == status and d, timeout, f"delivery {status}")


def test_a_reply_reaches_the_relay_threaded_signed_and_marked_sent(desk, relay):
    first = customer_writes(desk, "María López <maria@customer.test>", "<q1@customer.test>", "Order 9001")
    relay.handler.gate = threading.Event()  # the relay sits on DATA until the test has seen "sending"
    reply_id = push_reply(desk, first.conversation_id, "Your refund was issued today.\n.\nA line with a dot.")
    sending = settled(desk, reply_id, "sending")
    assert sending.attempts == 1 and sending.provider_id is None
    relay.handler.gate.set()
    sent = settled(desk, reply_id, "sent")

    assert len(relay.handler.received) == 1
    got = relay.handler.received[0]
    message_id = f"<{reply_id}@example.com>"
    assert sent.provider_id == message_id and sent.error is None
    assert (got.mail_from, got.rcpt_tos) == ("support@example.com", ["maria@customer.test"])
    msg = got.message
    assert str(msg["From"]) == "Support <support@example.com>" and str(msg["To"]) == "maria@customer.test"
    assert str(msg["Subject"]) == "Re: Order 9001"
    assert str(msg["Message-ID"]) == message_id
    assert str(msg["In-Reply-To"]) == "<q1@customer.test>" and str(msg["References"]) == "<q1@customer.test>"
    assert msg["Date"] is not None and msg["Auto-Submitted"] is None  # a person's reply, not an auto-reply
    body = msg.get_content().replace("\r\n", "\n")
    assert body == "Your refund was issued today.\n.\nA line with a dot.\n\n-- \nAlice Ward\nSupport team\n"
    with session(desk.engine) as db:
        reply = db.get(Interaction, reply_id)
    assert (reply.delivery_status, reply.external_id) == ("sent", message_id)

    # The customer answers our message: a new subject, but In-Reply-To threads it to the same conversation.
    answer = customer_writes(desk, "maria@customer.test", "<q2@customer.test>", "different words",
                             extra=f"In-Reply-To: {message_id}\r\nReferences: <q1@customer.test> {message_id}\r\n")
    assert answer.conversation_id == first.conversation_id


def test_the_second_reply_references_the_whole_thread_and_keeps_one_re(desk, relay):
    first = customer_writes(desk, "ken@customer.test", "<k1@customer.test>", "RE: Re: Broken hinge")
    one = push_reply(desk, first.conversation_id, "Sending a new one.")
    settled(desk, one, "sent")
    two = push_reply(desk, first.conversation_id, "It left the warehouse — Grüße, Zoë.")
    settled(desk, two, "sent")
    msg = relay.handler.received[1].message
    assert msg["Content-Transfer-Encoding"] in ("quoted-printable", "base64") and relay.handler.received[1].raw.isascii()
    assert msg.get_content().startswith("It left the warehouse — Grüße, Zoë.")
    assert str(msg["Subject"]) == "RE: Re: Broken hinge"  # no "Re: RE: Re:"
    assert str(msg["In-Reply-To"]) == "<k1@customer.test>"
    assert str(msg["References"]).split() == ["<k1@customer.test>", f"<{one}@example.com>"]
    assert str(msg["Message-ID"]) == f"<{two}@example.com>"


def test_a_relay_refusing_the_address_fails_the_reply_with_the_reason(desk, relay):
    first = customer_writes(desk, "gone@customer.test", "<g1@customer.test>", "Hello")
    relay.handler.refuse["gone@customer.test"] = "550 5.1.1 <gone@customer.test>: Recipient address rejected: User unknown"
    reply_id = push_reply(desk, first.conversation_id, "Hi there")
    failed = settled(desk, reply_id, "failed")
    assert failed.error == ("The mail server refused the address gone@customer.test: "
                            "550 5.1.1 <gone@customer.test>: Recipient address rejected: User unknown")
    with session(desk.engine) as db:
        reply = db.get(Interaction, reply_id)
    assert reply.delivery_status == "failed" and reply.meta["delivery_error"] == failed.error
    assert relay.handler.received == []


def test_a_relay_that_is_down_leaves_the_reply_pending_with_backoff(db_engine):
    with mail_desk(db_engine, relay_host="127.0.0.1", relay_port=free_port(), relay_security="none", relay_timeout=1.0) as desk:
        first = customer_writes(desk, "maria@customer.test", "<d1@customer.test>", "Down")
        reply_id = push_reply(desk, first.conversation_id, "Will it go?")
        waiting = wait_for(lambda: (d := delivery_of(desk, reply_id)).attempts == 1 and d.status == "pending" and d, what="a retry")
    assert "could not be reached" in waiting.error
    now = utcnow()
    due = waiting.next_attempt_at.replace(tzinfo=now.tzinfo) if waiting.next_attempt_at.tzinfo is None else waiting.next_attempt_at
    assert timedelta(seconds=3) < due - now < timedelta(seconds=7)  # 5 s, with jitter


def test_a_4xx_at_the_end_of_data_is_transient(desk, relay):
    relay.handler.data_answer = "451 4.3.0 Try again later"
    first = customer_writes(desk, "maria@customer.test", "<t1@customer.test>", "Busy relay")
    reply_id = push_reply(desk, first.conversation_id, "Busy?")
    waiting = wait_for(lambda: (d := delivery_of(desk, reply_id)).attempts == 1 and d.status == "pending" and d, what="a retry")
    assert waiting.error == "The mail server refused the message: 451 4.3.0 Try again later"


def test_a_relay_that_stalls_after_the_message_left_is_never_sent_twice(desk, relay):
    relay.handler.stall_data = 2.5  # past relay_timeout (1 s): the relay may or may not have taken it
    first = customer_writes(desk, "maria@customer.test", "<s1@customer.test>", "Slow")
    reply_id = push_reply(desk, first.conversation_id, "Slow one")
    wait_for(lambda: relay.handler.received, timeout=6, what="the relay to take it")
    time.sleep(1.5)  # our sender has given up waiting for the relay's answer (relay_timeout 1 s)
    stuck = delivery_of(desk, reply_id)
    assert stuck.status == "sending" and stuck.attempts == 1  # left for a reconcile after the lease, not resent
    assert len(relay.handler.received) == 1


def test_reconcile_cannot_ask_an_smtp_relay_and_says_so():
    sender = RelaySender(EmailChannelConfig(relay_host="127.0.0.1"))
    job = OutboundJob(delivery_id="d", interaction_id="i", conversation_id="c", channel="email", to_address="a@b.test",
                      text="t", subject=None, agent_name="", attempts=1, claimed_at=utcnow())
    with pytest.raises(SendFailed) as refused:
        sender.reconcile(job)
    assert refused.value.permanent and str(refused.value) == UNKNOWN_AFTER_RESTART


def test_a_bounce_for_our_reply_fails_it_and_lands_in_its_conversation(desk, relay):
    first = customer_writes(desk, "gone@customer.test", "<b1@customer.test>", "Where is my order?")
    push_reply(desk, first.conversation_id, "On its way.", interaction_id=DSN_ORIGINAL)
    settled(desk, DSN_ORIGINAL, "sent")
    with session(desk.engine) as db:  # the agent closed it after answering
        conversation = db.get(Conversation, first.conversation_id)
        conversation.status = "closed"
        db.add(conversation)
        db.commit()
    code, said = smtp_send(desk.smtp_port, corpus("13_dsn_bounce.eml"), mail_from="")
    assert code == 250, said
    failed = delivery_of(desk, DSN_ORIGINAL)
    assert failed.status == "failed"
    assert failed.error == ("The recipient's mail server bounced it: 550 5.1.1 <gone@customer.test>: "
                            "Recipient address rejected: User unknown in virtual mailbox table")
    report = desk.interaction("<20260310100500.ABC12@mx.customer.test>")
    assert report.conversation_id == first.conversation_id and report.meta["auto_reply"] == "bounce"
    assert desk.conversation(first.conversation_id).status == "closed"  # a bounce is no customer reply
    # The same report delivered again changes nothing.
    assert smtp_send(desk.smtp_port, corpus("13_dsn_bounce.eml"), mail_from="")[0] == 250
    assert delivery_of(desk, DSN_ORIGINAL).status == "failed"


# ------------------------------------------------------------------------------------------------
# Relay security and login, against a real TLS relay with a throwaway CA


def job_for(to: str = "maria@customer.test") -> OutboundJob:
    return OutboundJob(delivery_id="d", interaction_id=uuid.uuid4().hex, conversation_id="c", channel="email",
                       to_address=to, text="Hello", subject="Order", agent_name="Alice", attempts=1, claimed_at=utcnow(),
                       in_reply_to="<x@customer.test>", references=["<x@customer.test>"])


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_starttls_or_tls_with_login(ca, security):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    handler = RelayHandler()
    relay = Relay(handler, tls=context, implicit_tls=security == "tls", password="s3cret")
    try:
        config = EmailChannelConfig(relay_host="localhost", relay_port=relay.port, relay_security=security,
                                    relay_username="desk", relay_password="s3cret", relay_timeout=5)
        job = job_for()
        assert RelaySender(config, ssl_context=client).send(job) == Sent(provider_id=f"<{job.interaction_id}@example.com>")
        assert handler.logins == [("desk", "s3cret")] and handler.tls_seen == [True]
        wrong = EmailChannelConfig(**{**config.model_dump(), "relay_password": "nope"})
        with pytest.raises(SendFailed) as refused:
            RelaySender(wrong, ssl_context=client).send(job_for())
        assert not refused.value.permanent and "refused our login" in str(refused.value)
        with pytest.raises(SendFailed) as untrusted:  # the system CAs do not know this relay's certificate
            RelaySender(config).send(job_for())
        assert not untrusted.value.permanent and "could not be reached" in str(untrusted.value)
    finally:
        relay.close()
    assert len(handler.received) == 1


def test_the_signature_is_filled_without_format_and_subjects_are_one_line():
    config = EmailChannelConfig(signature="{agent_name} · {team} {0} {{x}}\nSupport")
    job = OutboundJob(delivery_id="d", interaction_id="a" * 32, conversation_id="c", channel="email",
                      to_address="a@b.test", text="Hi", subject="Line\r\nBcc: evil@x.test", agent_name="{0} Eve",
                      attempts=1, claimed_at=utcnow(), in_reply_to="not an id", references=["<ok@b.test>", "bad id"])
    msg = RelaySender(config).message(job)
    assert msg.get_content() == "Hi\n\n-- \n{0} Eve · {team} {0} {{x}}\nSupport\n"
    assert str(msg["Subject"]) == "Re: Line Bcc: evil@x.test" and msg["Bcc"] is None
    assert msg["In-Reply-To"] is None and str(msg["References"]) == "<ok@b.test>"
    assert reply_subject(None) == "Re: your message" and reply_subject("re:x") == "re:x"
