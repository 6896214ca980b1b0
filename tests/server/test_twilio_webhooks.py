"""Twilio webhooks (server/channels/twilio.py) on a live server: signed form posts in Twilio's wire format.

Requests are signed by the `twilio` package's RequestValidator, not by the code under test; the signature
itself is checked against the vectors Twilio publishes.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET

import httpx
import pytest
from sqlmodel import select
from twilio.request_validator import RequestValidator

from agentdesk.server.auth import new_id
from agentdesk.server.channels.twilio import signature, signature_ok
from agentdesk.server.db import session
from agentdesk.server.models import Change, Customer, Delivery, Interaction
from twilio_live import ACCOUNT_SID, AUTH_TOKEN, OUR_NUMBER, TwilioServer, call, sms, twilio_server

MESSAGING = "/webhooks/twilio/messaging"


@pytest.fixture
def twilio(db_engine) -> TwilioServer:
    with twilio_server(db_engine) as live:
        yield live


def inbound(live: TwilioServer, channel: str, external_id: str) -> Interaction | None:
    with session(live.engine) as db:
        return db.exec(select(Interaction).where(Interaction.channel == channel, Interaction.external_id == external_id)).first()


def interaction_count(live: TwilioServer) -> int:
    with session(live.engine) as db:
        return len(db.exec(select(Interaction.id)).all())


# --- the signature ---------------------------------------------------------------------------------

VECTOR_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"


@pytest.mark.parametrize(
    ("caller", "expected"),
    [
        ("+12349013030", "0/KCTR6DLpKmkAf8muzZqo1nDgQ="),  # twilio.com/docs/usage/security, "Validating Requests"
        ("+14158675309", "RSOYDt4T1cUTdK1PDd93/VVr8B8="),  # the same example in Twilio's helper-library docs
    ],
)
def test_the_signature_matches_twilios_published_vectors(caller, expected):
    params = {"CallSid": "CA1234567890ABCDE", "Caller": caller, "Digits": "1234", "From": caller, "To": "+18005551212"}
    pairs = list(params.items())
    assert signature("12345", VECTOR_URL, pairs) == expected
    assert signature_ok("12345", VECTOR_URL, pairs, expected)
    assert not signature_ok("12345", VECTOR_URL, [*pairs[:-1], ("To", "+18005551213")], expected)
    assert not signature_ok("12345", VECTOR_URL.replace("foo=1", "foo=2"), pairs, expected)
    assert not signature_ok("54321", VECTOR_URL, pairs, expected)
    assert not signature_ok("12345", VECTOR_URL, pairs, expected[:-2])


@pytest.mark.parametrize(
    "params",
    [
        {"Body": "Grüße, 你好 & emoji 🎉 = ok?", "From": "whatsapp:+447700900123", "ProfileName": "Zoë"},
        {"B": "2", "a": "1", "A": "3", "Empty": ""},  # case-sensitive sort, blank values kept
        {},
    ],
)
def test_the_signature_agrees_with_twilios_own_validator(params):
    url = "https://desk.example.com/webhooks/twilio/messaging?tenant=a%20b"
    validator = RequestValidator(AUTH_TOKEN)
    ours = signature(AUTH_TOKEN, url, list(params.items()))
    assert ours == validator.compute_signature(url, params)
    assert validator.validate(url, params, ours)
    # Twilio has signed https URLs with and without the default port: both are accepted.
    assert signature_ok(AUTH_TOKEN, "https://desk.example.com:443/x", list(params.items()),
                        validator.compute_signature("https://desk.example.com/x", params))


# --- messaging -------------------------------------------------------------------------------------


def test_a_signed_sms_lands_on_the_timeline_and_gets_empty_twiml(twilio):
    form = sms(body="Where is parcel 1182?", NumMedia="2", MediaUrl0="https://api.twilio.com/m/ME1",
               MediaContentType0="image/jpeg", MediaUrl1="https://api.twilio.com/m/ME2", MediaContentType1="application/pdf")
    response = twilio.post(MESSAGING, form)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    assert ET.fromstring(response.text).tag == "Response" and len(ET.fromstring(response.text)) == 0
    stored = inbound(twilio, "sms", form["MessageSid"])
    assert stored is not None and stored.direction == "inbound" and stored.text == "Where is parcel 1182?"
    assert stored.meta["address"] == "+14155550142" and stored.meta["to"] == OUR_NUMBER
    assert stored.meta["attachments"] == [
        {"url": "https://api.twilio.com/m/ME1", "content_type": "image/jpeg"},
        {"url": "https://api.twilio.com/m/ME2", "content_type": "application/pdf"},
    ]


def test_unsigned_or_tampered_requests_are_refused_and_store_nothing(twilio):
    form = sms()
    before = interaction_count(twilio)
    unsigned = twilio.http.post(twilio.url + MESSAGING, data=form)
    tampered = twilio.post(MESSAGING, form, signature=RequestValidator(AUTH_TOKEN).compute_signature(
        twilio.url + MESSAGING, {**form, "Body": "something else"}))
    other_url = twilio.post(MESSAGING, form, signed_url=twilio.url + "/webhooks/twilio/status")
    other_query = twilio.post(MESSAGING, form, signed_url=twilio.url + MESSAGING + "?x=1")
    wrong_token = twilio.post(MESSAGING, form, token="not-our-token")
    for response in (unsigned, tampered, other_url, other_query, wrong_token):
        assert response.status_code == 403, response.text
    assert "Missing X-Twilio-Signature" in unsigned.json()["detail"]
    assert "Invalid X-Twilio-Signature" in tampered.json()["detail"]
    assert interaction_count(twilio) == before


def test_the_query_string_twilio_called_is_part_of_what_is_signed(twilio):
    form = sms()
    path = MESSAGING + "?source=main%20line&x=1"
    assert twilio.post(path, form).status_code == 200
    assert inbound(twilio, "sms", form["MessageSid"]) is not None


def test_a_repeated_message_sid_is_one_interaction(twilio):
    form = sms(body="Hello?")
    first, again = twilio.post(MESSAGING, form), twilio.post(MESSAGING, form)
    assert (first.status_code, again.status_code) == (200, 200)
    with session(twilio.engine) as db:
        assert len(db.exec(select(Interaction).where(Interaction.external_id == form["MessageSid"])).all()) == 1


def test_sms_whatsapp_and_a_call_from_one_number_land_on_one_customer(twilio):
    text = sms(sender="+1 (415) 555-0177", body="Texting you")
    chat = sms(sender="whatsapp:+14155550177", body="And on WhatsApp", ProfileName="Dana Reyes")
    ring = call(sender="+14155550177")
    assert twilio.post(MESSAGING, text).status_code == 200
    assert twilio.post(MESSAGING, chat).status_code == 200
    assert twilio.post("/webhooks/twilio/voice", ring).status_code == 200
    found = [inbound(twilio, "sms", text["MessageSid"]), inbound(twilio, "whatsapp", chat["MessageSid"]),
             inbound(twilio, "phone", ring["CallSid"])]
    assert all(found)
    assert len({i.customer_id for i in found}) == 1
    assert found[1].meta["address"] == "+14155550177"  # the whatsapp: prefix is not part of the number
    assert twilio.get(Customer, found[0].customer_id).display_name == "+14155550177"  # the SMS came first, nameless


@pytest.mark.parametrize(
    ("change", "status", "says"),
    [
        ({"From": ""}, 422, "'From'"),
        ({"MessageSid": ""}, 422, "'MessageSid'"),
        ({"From": "+1 555"}, 422, "not a valid phone number"),
        ({"Body": "x" * 10_001}, 422, "too long"),
        ({"NumMedia": "lots"}, 422, "whole number"),
        ({"NumMedia": "11"}, 422, "at most 10"),
    ],
)
def test_malformed_messages_get_a_clear_refusal(twilio, change, status, says):
    form = {**sms(), **change}
    response = twilio.post(MESSAGING, form)
    assert response.status_code == status
    assert says in response.json()["detail"]


def test_a_body_that_is_not_a_form_is_refused_before_anything_else(twilio):
    as_json = twilio.http.post(twilio.url + MESSAGING, json=sms(), headers={"X-Twilio-Signature": "x"})
    not_utf8 = twilio.http.post(twilio.url + MESSAGING, content=b"Body=%FF%FE&From=%2B1", headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "x"})
    assert as_json.status_code == 415
    assert not_utf8.status_code == 400 and "Malformed form body" in not_utf8.json()["detail"]


def test_without_an_auth_token_every_webhook_is_refused(db_engine):
    with twilio_server(db_engine, auth_token="") as live:
        response = live.post(MESSAGING, sms(), token="anything")
    assert response.status_code == 403 and "auth_token" in response.json()["detail"]


def test_the_messaging_fast_path_answers_as_the_route_does(twilio):
    """POST /messaging is served by its fast path (routes/inbound.InboundFastPath), not FastAPI's routing; with
    the fast path taken away the route answers: the same status, type and body for each kind of request."""
    fast = twilio.app.state.fast_paths[MESSAGING]
    served = []

    async def counting(scope, receive, send):
        served.append(scope["path"])
        await fast(scope, receive, send)

    def requests():
        repeated = sms(body="Twice")
        return [
            lambda: twilio.post(MESSAGING, sms(body="Parcel 1182, call me on +44 7700 900123")),
            lambda: twilio.post(MESSAGING, repeated),
            lambda: twilio.post(MESSAGING, repeated),
            lambda: twilio.post(MESSAGING + "?x=1", sms()),
            lambda: twilio.http.post(twilio.url + MESSAGING, data=sms()),
            lambda: twilio.post(MESSAGING, sms(), token="not-our-token"),
            lambda: twilio.post(MESSAGING, {**sms(), "From": ""}),
            lambda: twilio.post(MESSAGING, {**sms(), "Body": "x" * 10_001}),
            lambda: twilio.post(MESSAGING, {**sms(), "From": "+1 555"}),
            lambda: twilio.http.post(twilio.url + MESSAGING, json=sms(), headers={"X-Twilio-Signature": "x"}),
            lambda: twilio.http.post(twilio.url + MESSAGING, content=b"Body=%FF", headers={
                "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "x"}),
        ]

    def answers():
        return [(r.status_code, r.headers["content-type"], r.content) for r in (send() for send in requests())]

    twilio.app.state.fast_paths[MESSAGING] = counting
    by_fast_path = answers()
    assert len(served) == len(by_fast_path)
    twilio.app.state.fast_paths.clear()
    by_route = answers()
    assert len(served) == len(by_fast_path)
    assert by_fast_path == by_route
    assert [status for status, _, _ in by_route] == [200, 200, 200, 200, 403, 403, 422, 422, 422, 415, 400]


def test_the_webhooks_are_absent_when_the_channel_is_off(live_server):
    assert httpx.post(live_server.url + MESSAGING, data=sms()).status_code == 404


# --- message status callbacks ----------------------------------------------------------------------


def sent_reply(live: TwilioServer, channel: str = "sms") -> str:
    """An agent's reply that Twilio took (a Delivery in `sent` with its MessageSid); returns the sid."""
    sid = "SM" + uuid.uuid4().hex
    with session(live.engine) as db:
        conversation_id = live.world.conversations["maria-sms"]
        reply = Interaction(id=new_id(), conversation_id=conversation_id, customer_id=live.world.customers["maria"],
                            channel=channel, direction="outbound", text="On its way", delivery_status="sent")
        db.add(reply)
        db.flush()
        db.add(Delivery(id=new_id(), interaction_id=reply.id, channel=channel, to_address="+14155550000",
                        status="sent", provider_id=sid))
        db.commit()
    return sid


def delivery_of(live: TwilioServer, sid: str) -> tuple[Delivery, Interaction]:
    with session(live.engine) as db:
        found = db.exec(select(Delivery).where(Delivery.provider_id == sid)).one()
        return found, db.get(Interaction, found.interaction_id)


def status(sid: str, value: str, **extra: str) -> dict[str, str]:
    return {"AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "MessageSid": sid, "SmsSid": sid,
            "MessageStatus": value, "SmsStatus": value, "From": OUR_NUMBER, "To": "+14155550000", **extra}


def test_status_callbacks_move_a_delivery_forward_and_never_back(twilio):
    sid = sent_reply(twilio)
    for value in ("delivered", "sent", "queued"):  # out of order, as Twilio may deliver them
        assert twilio.post("/webhooks/twilio/status", status(sid, value)).status_code == 200
    found, reply = delivery_of(twilio, sid)
    assert (found.status, reply.delivery_status) == ("delivered", "delivered")


def test_a_failed_delivery_says_why_with_twilios_error_code(twilio):
    sid = sent_reply(twilio)
    assert twilio.post("/webhooks/twilio/status", status(sid, "undelivered", ErrorCode="30003")).status_code == 200
    found, reply = delivery_of(twilio, sid)
    assert found.status == "failed" and reply.delivery_status == "failed"
    assert "30003" in found.error and "unreachable" in found.error
    assert reply.meta["delivery_error"] == found.error


def test_a_whatsapp_status_finds_the_whatsapp_delivery(twilio):
    sid = sent_reply(twilio, channel="whatsapp")
    form = status(sid, "read", From="whatsapp:" + OUR_NUMBER, To="whatsapp:+14155550000")
    assert twilio.post("/webhooks/twilio/status", form).status_code == 200
    assert delivery_of(twilio, sid)[0].status == "delivered"


def test_a_status_for_someone_elses_message_is_accepted_and_ignored(twilio):
    response = twilio.post("/webhooks/twilio/status", status("SM" + uuid.uuid4().hex, "delivered"))
    assert response.status_code == 200


# --- voice -----------------------------------------------------------------------------------------


def test_an_incoming_call_is_on_the_timeline_and_answered_with_voicemail_twiml(twilio):
    form = call(CallerName="PRIYA SHAH")
    response = twilio.post("/webhooks/twilio/voice", form)
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(response.text)
    assert [verb.tag for verb in root] == ["Say", "Record", "Say", "Hangup"]
    record = root.find("Record").attrib
    assert record["transcribe"] == "true"
    assert record["transcribeCallback"] == twilio.url + "/webhooks/twilio/transcription"
    assert record["recordingStatusCallback"] == twilio.url + "/webhooks/twilio/recording"
    assert record["action"] == twilio.url + "/webhooks/twilio/voice/recorded"
    stored = inbound(twilio, "phone", form["CallSid"])
    assert stored.meta["call_status"] == "ringing" and stored.meta["call_direction"] == "inbound"
    assert twilio.post("/webhooks/twilio/voice", form).status_code == 200  # Twilio asking again: still one call
    with session(twilio.engine) as db:
        assert len(db.exec(select(Interaction).where(Interaction.external_id == form["CallSid"])).all()) == 1


def test_a_call_from_a_hidden_number_is_told_so_and_stores_nothing(twilio):
    before = interaction_count(twilio)
    response = twilio.post("/webhooks/twilio/voice", call(sender="anonymous"))
    root = ET.fromstring(response.text)
    assert response.status_code == 200 and [v.tag for v in root] == ["Say", "Hangup"]
    assert "hidden number" in root.find("Say").text
    assert interaction_count(twilio) == before


def test_call_progress_recording_and_transcript_land_on_the_call(twilio):
    form = call()
    sid = form["CallSid"]
    twilio.post("/webhooks/twilio/voice", form)
    base = {"AccountSid": ACCOUNT_SID, "CallSid": sid, "From": form["From"], "To": OUR_NUMBER}
    recording = "https://api.twilio.com/2010-04-01/Accounts/%s/Recordings/RE1" % ACCOUNT_SID
    steps = [
        ("/webhooks/twilio/voice/status", {**base, "CallStatus": "in-progress"}),
        ("/webhooks/twilio/voice/recorded", {**base, "RecordingUrl": recording, "RecordingSid": "RE1", "RecordingDuration": "21"}),
        ("/webhooks/twilio/voice/status", {**base, "CallStatus": "completed", "CallDuration": "37", "RecordingUrl": recording}),
        ("/webhooks/twilio/voice/status", {**base, "CallStatus": "ringing"}),  # late: never moves back
        ("/webhooks/twilio/recording", {**base, "RecordingUrl": recording, "RecordingSid": "RE1",
                                        "RecordingStatus": "completed", "RecordingDuration": "21"}),
        ("/webhooks/twilio/transcription", {**base, "TranscriptionText": "Hi, it's Priya. Please call me back about the refund.",
                                            "TranscriptionStatus": "completed", "RecordingSid": "RE1"}),
    ]
    answers = [twilio.post(path, params) for path, params in steps]
    assert [a.status_code for a in answers] == [200] * len(steps)
    assert "Thank you" in ET.fromstring(answers[1].text).find("Say").text
    stored = inbound(twilio, "phone", sid)
    assert stored.meta["call_status"] == "completed" and stored.meta["duration_s"] == 37
    assert stored.meta["recording_url"] == recording and stored.meta["recording_duration"] == 21
    assert stored.text == "Hi, it's Priya. Please call me back about the refund."
    assert stored.meta["transcript"] == stored.text
    with session(twilio.engine) as db:  # each change is in the change log, so desks see it
        logged = db.exec(select(Change).where(Change.entity_id == stored.id).order_by(Change.seq.desc())).first()
    assert logged.data["meta"]["duration_s"] == 37 and logged.data["text"] == stored.text


@pytest.mark.parametrize(
    ("path", "params", "says"),
    [
        ("/webhooks/twilio/voice", {"CallSid": "CA1", "To": OUR_NUMBER}, "'From'"),
        ("/webhooks/twilio/voice/status", {"CallStatus": "completed"}, "'CallSid'"),
        ("/webhooks/twilio/voice/status", {"CallSid": "CA1", "CallStatus": "completed", "CallDuration": "-3"}, "whole number"),
        ("/webhooks/twilio/transcription", {"TranscriptionText": "hello"}, "'CallSid'"),
    ],
)
def test_malformed_voice_callbacks_get_a_clear_refusal(twilio, path, params, says):
    response = twilio.post(path, params)
    assert response.status_code == 422 and says in response.json()["detail"]


def test_the_stand_ins_own_signed_traffic_is_accepted(twilio):
    """The demo's Twilio stand-in signs with its own few lines of code; our webhooks accept what it sends."""
    from agentdesk.demo.twilio_standin import TwilioStandIn

    standin = TwilioStandIn(ACCOUNT_SID, AUTH_TOKEN)  # not started: only its client side is used here
    text = standin.incoming_message(twilio.url + MESSAGING, from_="+14155550188", to=OUR_NUMBER, body="From the stand-in")
    ring = standin.incoming_call(twilio.url + "/webhooks/twilio/voice", from_="+14155550188", to=OUR_NUMBER)
    assert (text.status_code, ring.status_code) == (200, 200)
    assert ET.fromstring(ring.text).find("Record") is not None
    with session(twilio.engine) as db:
        found = [i for i in db.exec(select(Interaction)).all() if i.meta.get("address") == "+14155550188"]
    assert sorted(i.channel for i in found) == ["phone", "sms"] and len({i.customer_id for i in found}) == 1
