"""Replies and callback calls leaving through Twilio's REST API, exactly once.

The provider is the loopback stand-in (agentdesk.demo.twilio_standin), which speaks Twilio's wire format and
calls our webhooks back with signed status callbacks, as Twilio does. Replies are pushed through the real
sync API of a live server, and its real delivery worker sends them.
"""

from __future__ import annotations

import socket
import time
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlmodel import select

from agentdesk.config import Settings
from agentdesk.config.models import TwilioChannelConfig
from agentdesk.demo.twilio_standin import TwilioStandIn
from agentdesk.domain.clock import utcnow
from agentdesk.server import delivery
from agentdesk.server.auth import new_id
from agentdesk.server.channels import senders
from agentdesk.server.channels.twilio import TwilioSender
from agentdesk.server.db import session
from agentdesk.server.delivery import OutboundJob, SendFailed
from agentdesk.server.models import Conversation, Customer, Delivery, Identity, Interaction
from twilio_live import ACCOUNT_SID, AUTH_TOKEN, OUR_NUMBER, OUR_WHATSAPP, TwilioServer, sms, twilio_server

MARIA_PHONE = "+14155550000"  # her phone identity in the test world


@pytest.fixture
def standin() -> TwilioStandIn:
    with TwilioStandIn(ACCOUNT_SID, AUTH_TOKEN, step_delay=0.05) as twilio:
        yield twilio


@pytest.fixture
def desk(db_engine, standin):
    """Start the server (once per test) with the Twilio channel pointed at the stand-in."""
    started = []

    def start(**overrides) -> TwilioServer:
        config = {"account_sid": ACCOUNT_SID, "api_base_url": standin.url, "sms_from": OUR_NUMBER,
                  "whatsapp_from": OUR_WHATSAPP, "request_timeout": 5.0, **overrides}
        manager = twilio_server(db_engine, **config)
        started.append(manager)
        return manager.__enter__()

    yield start
    for manager in started:
        manager.__exit__(None, None, None)


def delivery_of(live: TwilioServer, interaction_id: str) -> Delivery | None:
    with session(live.engine) as db:
        return db.exec(select(Delivery).where(Delivery.interaction_id == interaction_id)).first()


def ends(live: TwilioServer, interaction_id: str, status: str) -> Delivery:
    """Wait until the reply's delivery reaches `status` (the worker polls every 0.5 s)."""
    return live.wait_for(lambda: (d := delivery_of(live, interaction_id)) is not None and d.status == status and d,
                         what=f"delivery {status}")


def reply(live: TwilioServer, conversation_id: str, text: str, channel: str = "sms") -> str:
    interaction_id = new_id()
    live.push("reply", conversation_id=conversation_id, interaction_id=interaction_id, channel=channel, text=text)
    return interaction_id


def creates(standin: TwilioStandIn, resource: str = "Messages") -> int:
    return sum(1 for method, path in standin.requests if method == "POST" and path.endswith(f"/{resource}.json"))


# --- replies ---------------------------------------------------------------------------------------


def test_an_agent_sms_reply_leaves_through_twilio_and_ends_delivered(desk, standin):
    live = desk()
    iid = reply(live, live.world.conversations["maria-sms"], "Your parcel ships today.")
    done = ends(live, iid, "delivered")
    [message] = standin.messages()
    assert (message["to"], message["from"], message["body"]) == (MARIA_PHONE, OUR_NUMBER, "Your parcel ships today.")
    assert done.provider_id == message["sid"] and message["sid"].startswith("SM") and len(message["sid"]) == 34
    callbacks = live.wait_for(lambda: len(c := standin.callbacks(message["sid"])) == 2 and c, what="both callbacks")
    assert [c["MessageStatus"] for c in callbacks] == ["sent", "delivered"]
    assert {(c["_url"], c["_response"]) for c in callbacks} == {(live.url + "/webhooks/twilio/status", "200")}
    assert live.get(Interaction, iid).delivery_status == "delivered"


def test_a_whatsapp_reply_goes_to_the_whatsapp_address_from_our_whatsapp_sender(desk, standin):
    live = desk()
    inbound = sms(sender="whatsapp:" + MARIA_PHONE, body="Hi on WhatsApp", ProfileName="María")
    assert live.post("/webhooks/twilio/messaging", inbound).status_code == 200
    with session(live.engine) as db:
        conversation_id = db.exec(select(Interaction.conversation_id).where(Interaction.external_id == inbound["MessageSid"])).one()
    iid = reply(live, conversation_id, "Hola María", channel="whatsapp")
    ends(live, iid, "delivered")
    [message] = standin.messages()
    assert (message["to"], message["from"]) == ("whatsapp:" + MARIA_PHONE, "whatsapp:" + OUR_WHATSAPP)


def test_a_number_twilio_refuses_fails_with_twilios_reason(desk, standin):
    live = desk()
    with session(live.engine) as db:  # a number imported long ago, never normalised
        customer = Customer(id=new_id(), display_name="Old Import")
        db.add(customer)
        db.add(Identity(id=new_id(), customer_id=customer.id, kind="phone", address="+1555"))
        db.flush()
        conversation = Conversation(id=new_id(), customer_id=customer.id, channel="sms", team_id=live.world.teams["Billing"])
        db.add(conversation)
        db.commit()
    iid = reply(live, conversation.id, "Hello")
    failed = ends(live, iid, "failed")
    assert "21211" in failed.error and "is not a valid phone number" in failed.error
    assert live.get(Interaction, iid).meta["delivery_error"] == failed.error
    assert standin.messages() == []


def test_a_twilio_500_leaves_the_reply_pending_and_the_retry_sends_it_once(desk, standin, monkeypatch):
    monkeypatch.setattr(delivery, "_backoff", lambda attempts: timedelta(milliseconds=100))
    live = desk()
    standin.fail_next(500)
    iid = reply(live, live.world.conversations["maria-sms"], "Retry me")
    done = ends(live, iid, "delivered")
    assert creates(standin) == 2 and len(standin.messages()) == 1
    assert done.attempts == 2 and done.provider_id == standin.messages()[0]["sid"]


def test_accepted_but_unanswered_is_reconciled_not_sent_again(desk, standin, monkeypatch):
    """The crash case: Twilio took the message but we never heard (the client timed out). After the lease
    the worker asks Twilio what it holds, finds the message and records its sid: one message, not two."""
    monkeypatch.setattr(delivery, "LEASE", timedelta(seconds=0.8))
    live = desk(request_timeout=0.3)
    standin.hang_next(3, accept=True)
    iid = reply(live, live.world.conversations["maria-sms"], "Exactly once, please")
    done = ends(live, iid, "delivered")
    [message] = standin.messages()
    assert creates(standin) == 1
    assert done.provider_id == message["sid"]
    assert any(method == "GET" and path.endswith("/Messages.json") for method, path in standin.requests)


def test_a_request_that_never_reached_twilio_is_sent_once_after_the_reconcile(desk, standin, monkeypatch):
    monkeypatch.setattr(delivery, "LEASE", timedelta(seconds=0.8))
    live = desk(request_timeout=0.3)
    standin.hang_next(3, accept=False)
    iid = reply(live, live.world.conversations["maria-sms"], "Did this arrive?")
    done = ends(live, iid, "delivered")
    [message] = standin.messages()
    assert creates(standin) == 2 and done.provider_id == message["sid"]


# --- callback calls --------------------------------------------------------------------------------


def test_a_requested_callback_places_a_call_whose_progress_updates_the_delivery(desk, standin):
    live = desk()
    iid = new_id()
    live.push("request_callback", conversation_id=live.world.conversations["maria-sms"], interaction_id=iid,
              note="Call about the refund")
    done = ends(live, iid, "delivered")
    [placed] = standin.calls()
    assert (placed["to"], placed["from"]) == (MARIA_PHONE, OUR_NUMBER) and done.provider_id == placed["sid"]
    callbacks = live.wait_for(lambda: len(c := standin.callbacks(placed["sid"])) == 4 and c, what="four callbacks")
    assert [c["CallStatus"] for c in callbacks] == ["initiated", "ringing", "in-progress", "completed"]
    assert {(c["_url"], c["_response"]) for c in callbacks} == {(live.url + "/webhooks/twilio/voice/status", "200")}
    twiml = ET.fromstring(standin.twiml(placed["sid"]))  # what our /voice/outbound told Twilio to do
    assert [verb.tag for verb in twiml] == ["Say", "Enqueue"]
    call = live.wait_for(lambda: (c := live.get(Interaction, iid)).meta.get("duration_s") == 42 and c, what="call meta")
    assert call.meta["call_status"] == "completed" and call.external_id == placed["sid"]


def test_an_unanswered_callback_fails_with_the_reason(desk, standin):
    standin.call_outcome = ("no-answer", 0)
    live = desk()
    iid = new_id()
    live.push("request_callback", conversation_id=live.world.conversations["maria-sms"], interaction_id=iid)
    failed = ends(live, iid, "failed")
    assert failed.error == "The customer did not answer."
    assert live.wait_for(lambda: live.get(Interaction, iid).meta.get("call_status") == "no-answer", what="call status")


# --- the sender on its own -------------------------------------------------------------------------


def sender_for(standin: TwilioStandIn, **overrides) -> TwilioSender:
    config = TwilioChannelConfig(**{"enabled": True, "account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN,
                                    "api_base_url": standin.url, "sms_from": OUR_NUMBER, "request_timeout": 5.0, **overrides})
    return TwilioSender(config, "http://127.0.0.1:9")  # nobody listens there: the callbacks just go unheard


def job(text: str = "Thanks!", to: str = "+14155550123", channel: str = "sms") -> OutboundJob:
    now = utcnow()
    return OutboundJob(delivery_id=new_id(), interaction_id=new_id(), conversation_id=new_id(), channel=channel,
                       to_address=to, text=text, subject=None, agent_name="Alice", attempts=1, claimed_at=now, queued_at=now)


def test_reconcile_takes_the_earliest_match_that_no_other_delivery_owns(standin):
    sender, sent = sender_for(standin), job()
    first, second = sender.send(sent), sender.send(sent)
    assert sender.reconcile(sent).provider_id == first.provider_id
    assert sender.reconcile(replace(sent, taken_ids=frozenset({first.provider_id}))).provider_id == second.provider_id
    assert sender.reconcile(replace(sent, taken_ids=frozenset({first.provider_id, second.provider_id}))) is None
    assert sender.reconcile(replace(sent, text="Something else")) is None
    assert sender.reconcile(replace(sent, to_address="+14155550124")) is None
    assert sender.reconcile(replace(sent, queued_at=utcnow() + timedelta(minutes=5))) is None  # older than this job


def test_reconcile_pages_through_next_page_uri(standin):
    sender = sender_for(standin)
    jobs = [job(text=f"Message {n}") for n in range(60)]
    sids = [sender.send(j).provider_id for j in jobs]
    deadline = time.monotonic() + 5
    while any(m["date_sent"] is None for m in standin.messages()):  # all sent: the dated query must find it
        assert time.monotonic() < deadline
        time.sleep(0.05)
    gets_before = sum(1 for method, _ in standin.requests if method == "GET")
    assert sender.reconcile(jobs[0]).provider_id == sids[0]  # the oldest of 60: on the second page of 50
    assert sum(1 for method, _ in standin.requests if method == "GET") - gets_before >= 2  # it had to read page 2


def test_reconcile_sees_a_message_still_queued_at_twilio(standin):
    standin.step_delay = 5  # it stays "queued": no date_sent, so the date filter alone would miss it
    sender, sent = sender_for(standin), job(text="Still queued")
    placed = sender.send(sent)
    found = sender.reconcile(sent)
    assert found is not None and (found.provider_id, found.status) == (placed.provider_id, "sent")


def test_refusals_are_sorted_into_permanent_and_transient(standin):
    with pytest.raises(SendFailed) as wrong_token:
        sender_for(standin, account_sid=ACCOUNT_SID.replace("5", "6")).send(job())
    assert wrong_token.value.permanent and "20003" in str(wrong_token.value)
    standin.fail_next(429)
    with pytest.raises(SendFailed) as busy:
        sender_for(standin).send(job())
    assert not busy.value.permanent
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens: connection refused, so the request never left
    config = TwilioChannelConfig(enabled=True, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN,
                                 api_base_url=f"http://127.0.0.1:{port}", sms_from=OUR_NUMBER)
    with pytest.raises(SendFailed) as unreachable:
        TwilioSender(config, "http://127.0.0.1:9").send(job())
    assert not unreachable.value.permanent and "Cannot reach Twilio" in str(unreachable.value)


def test_senders_are_registered_only_for_what_is_configured():
    def channels(**twilio) -> set[str]:
        return set(senders(Settings(channels={"twilio": twilio})))

    account = {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN}
    assert channels(**account, sms_from=OUR_NUMBER) == set()  # not enabled
    assert channels(enabled=True, sms_from=OUR_NUMBER, auth_token=AUTH_TOKEN) == set()  # no account
    assert channels(enabled=True, **account, sms_from=OUR_NUMBER) == {"sms", "phone"}
    assert channels(enabled=True, **account, sms_from=OUR_NUMBER, whatsapp_from=OUR_WHATSAPP) == {"sms", "phone", "whatsapp"}
    assert channels(enabled=True, **account, whatsapp_from=OUR_WHATSAPP) == {"whatsapp"}
