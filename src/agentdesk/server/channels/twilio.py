"""Twilio: SMS, WhatsApp and voice. Signed webhooks in, the REST API out (DESIGN §2).

Webhooks (all POST, form-encoded, under ``[server] public_url``; each checks X-Twilio-Signature):
- ``/webhooks/twilio/messaging``: an SMS or WhatsApp message ("A message comes in" on the number or sender);
- ``/webhooks/twilio/status``: a reply's delivery progress (set as each reply's StatusCallback);
- ``/webhooks/twilio/voice``: an incoming call ("A call comes in"): a timeline entry, then voicemail TwiML;
- ``/webhooks/twilio/voice/status``: call progress ("Call status changes"; set on callback calls);
- ``/webhooks/twilio/voice/recorded``, ``/recording``, ``/transcription``: the voicemail and its transcript;
- ``/webhooks/twilio/voice/outbound``: the TwiML a callback call runs once the customer answers.

Signature (Twilio's "Validating Requests"): base64(HMAC-SHA1(auth_token, url + the POST parameters sorted by
name, each name followed by its value)), where url is the public URL Twilio called, query string included.
A repeated MessageSid or CallSid is ingested once (`ingest` dedupes by external id).

Out: `TwilioSender` sends replies (Messages.json) and places callback calls (Calls.json); after an unknown
outcome it reconciles by listing what Twilio holds for that recipient instead of sending again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import inspect
import itertools
import logging
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.exception_handlers import http_exception_handler
from sqlmodel import Session, select

from agentdesk.server import delivery
from agentdesk.server.changes import begin_write, record_upsert
from agentdesk.server.db import session as open_session
from agentdesk.server.delivery import OutboundJob, OutcomeUnknown, Sent
from agentdesk.server.inbound import Inbound, InboundError, ingest, submit
from agentdesk.server.models import Delivery, Interaction
from agentdesk.server.routing import NoTeam

if TYPE_CHECKING:
    import sqlalchemy as sa
    from starlette.types import Receive, Scope, Send

    from agentdesk.config import Settings
    from agentdesk.config.models import TwilioChannelConfig
    from agentdesk.server.channels.twilio_rest import TwilioRest

log = logging.getLogger("agentdesk.twilio")

PREFIX = "/webhooks/twilio"
STATUS_PATH = f"{PREFIX}/status"
VOICE_STATUS_PATH = f"{PREFIX}/voice/status"
OUTBOUND_CALL_PATH = f"{PREFIX}/voice/outbound"
RECORDED_PATH = f"{PREFIX}/voice/recorded"
RECORDING_PATH = f"{PREFIX}/recording"
TRANSCRIPTION_PATH = f"{PREFIX}/transcription"

MAX_FIELDS = 200  # Twilio sends a few dozen; MediaUrl0..9 and their types included
MAX_TEXT = 10_000  # characters of a message body or transcript (Twilio caps SMS at 1,600, WhatsApp at 4,096)
MAX_VALUE = 2_048  # any other field
MAX_MEDIA = 10  # Twilio's own limit per message
SETTLE_WAIT = 2.0  # seconds a callback waits for the worker to record the sid it answers (a fast provider)
RECONCILE_SLACK = timedelta(minutes=2)  # Twilio's clock against ours
CALL_EVENTS = ("initiated", "ringing", "answered", "completed")

GREETING = ("Thank you for calling. All of our agents are busy right now. "
            "Please leave a message after the tone, and we will call you back.")
NO_MESSAGE = "We did not get a message. Goodbye."
THANKS = "Thank you. We will call you back as soon as we can. Goodbye."
HIDDEN_NUMBER = ("Sorry, we cannot take calls from a hidden number. "
                 "Please call again with your number shown, or send us a text message. Goodbye.")
CALLBACK_GREETING = "Hello, this is the support team calling you back as you asked. Please hold while we connect you with an agent."
CALLBACK_QUEUE = "agentdesk-callbacks"  # agents' softphones take answered callbacks from this Twilio queue

# Twilio message status -> our delivery status (server/delivery.py); others (receiving, scheduled…) change nothing.
MESSAGE_STATUS = {
    "accepted": "sent", "queued": "sent", "sending": "sent", "sent": "sent",
    "delivered": "delivered", "read": "delivered",
    "undelivered": "failed", "failed": "failed", "canceled": "failed",
}
# Twilio call status -> the callback's delivery status: a call the customer answered is "delivered".
CALL_STATUS = {
    "queued": "sent", "initiated": "sent", "ringing": "sent", "in-progress": "sent",
    "completed": "delivered", "busy": "failed", "no-answer": "failed", "failed": "failed", "canceled": "failed",
}
_CALL_RANK = {"queued": 0, "initiated": 0, "ringing": 1, "in-progress": 2}  # anything else ends the call: 3
_CALL_FAILURES = {
    "busy": "The line was busy.",
    "no-answer": "The customer did not answer.",
    "failed": "Twilio could not place the call",
    "canceled": "The call was canceled before it was answered.",
}
_MESSAGE_ERRORS = {  # the common ones, for when Twilio sends ErrorCode without ErrorMessage
    "21610": "the recipient has opted out (replied STOP)",
    "30003": "the handset is unreachable",
    "30004": "the message was blocked",
    "30005": "the number is unknown or no longer exists",
    "30006": "a landline or an unreachable carrier",
    "30007": "filtered by the carrier",
    "30008": "an unknown carrier error",
    "63016": "outside WhatsApp's 24-hour window; only a template message can reach the customer now",
}


# ------------------------------------------------------------------------------------------------
# The signature


def signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """X-Twilio-Signature for a POST of `params` to `url` (repeated names sort by value, as Twilio's own
    validators do)."""
    payload = url + "".join(name + value for name, value in sorted(set(params)))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def signature_ok(auth_token: str, url: str, params: list[tuple[str, str]], header: str) -> bool:
    """Whether `header` signs this request; the URL is tried with and without its default port, since
    Twilio has signed both forms."""
    return any(hmac.compare_digest(signature(auth_token, candidate, params).encode(), header.encode())
               for candidate in _url_forms(url))


def _url_forms(url: str) -> list[str]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    host = f"{userinfo}@{host}" if userinfo else host
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return [url, parts._replace(netloc=host).geturl(), parts._replace(netloc=f"{host}:{port}").geturl()]


def webhook_url(public_url: str, request: Request) -> str:
    """The URL Twilio called: our public URL (it may carry a path prefix) + the path + the query string."""
    base = public_url.rstrip("/")
    prefix, path = urlsplit(base).path, request.url.path
    if prefix and path.startswith(prefix + "/"):  # a proxy that passes the prefix through
        path = path[len(prefix):]
    query = request.url.query
    return f"{base}{path}?{query}" if query else f"{base}{path}"


# ------------------------------------------------------------------------------------------------
# Webhooks


Form = dict[str, str]


def make_router(settings: Settings) -> APIRouter:
    config = settings.channels.twilio
    public = settings.public_url().rstrip("/")
    region = settings.identity.default_region
    if not settings.server.public_url:
        log.warning("[server] public_url is not set: Twilio's signatures are checked against %s, which Twilio "
                    "cannot reach; set it to the URL Twilio calls", public)

    async def signed_form(request: Request) -> None:
        """Every route's guard: the POST parameters (in request.state.form), once X-Twilio-Signature
        proves Twilio sent them to this URL."""
        if not request.headers.get("content-type", "").lower().startswith("application/x-www-form-urlencoded"):
            raise _refuse(415, "Expected a form post (application/x-www-form-urlencoded).")
        try:
            params = parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True,
                               errors="strict", max_num_fields=MAX_FIELDS)
        except (UnicodeDecodeError, ValueError):
            raise _refuse(400, f"Malformed form body (not UTF-8, or over {MAX_FIELDS} fields).") from None
        header = request.headers.get("x-twilio-signature")
        if not config.auth_token:
            raise _refuse(403, "Twilio webhooks are refused: [channels.twilio] auth_token is not set.")
        if not header:
            raise _refuse(403, "Missing X-Twilio-Signature header.")
        if not signature_ok(config.auth_token, webhook_url(public, request), params, header):
            raise _refuse(403, "Invalid X-Twilio-Signature: not signed by Twilio for this URL and body.")
        form: Form = {}
        for name, value in params:
            limit = MAX_TEXT if name in ("Body", "TranscriptionText") else MAX_VALUE
            if len(value) > limit:
                raise _refuse(422, f"Field {name!r} is too long ({len(value):,} characters; the limit is {limit:,}).")
            form.setdefault(name, value)
        request.state.form = form

    router = APIRouter(prefix=PREFIX, tags=["twilio"], dependencies=[Depends(signed_form)])
    if not all(inspect.iscoroutinefunction(guard.dependency) for guard in router.dependencies):
        raise TypeError("the Twilio router's guards must be async functions of the request (fast_messaging awaits them)")

    @router.post("/messaging")
    async def messaging(request: Request) -> Response:
        """An SMS or WhatsApp message from a customer; answered with empty TwiML (no auto-reply)."""
        form = _form(request)
        sender, sid = _required(form, "From"), _required(form, "MessageSid")
        channel = "whatsapp" if sender.lower().startswith("whatsapp:") else "sms"
        meta: dict[str, Any] = {"provider": "twilio", "to": form.get("To", "")}
        if attachments := _media(form):
            meta["attachments"] = attachments
        if (segments := _count(form, "NumSegments")) is not None:
            meta["num_segments"] = segments
        item = Inbound(channel=channel, address=sender, text=form.get("Body", ""),
                       name=form.get("ProfileName") or None, external_id=sid, metadata=meta)
        try:  # group commit with concurrent deliveries: answered once the message is committed
            await submit(request.app.state.engine, item, default_region=region)
        except InboundError as exc:
            raise _refuse(422, str(exc)) from None
        except NoTeam as exc:  # 503: Twilio then tries the number's fallback URL
            raise _refuse(503, str(exc)) from None
        return twiml(ET.Element("Response"))

    async def fast_messaging(scope: Scope, receive: Receive, send: Send) -> None:
        """POST /messaging without FastAPI's routing and dependency solving (issue 6: the busiest webhook, served
        by routes/inbound.InboundFastPath): the router's guards (async, taking the request) and the same
        endpoint, a refusal answered by FastAPI's own HTTPException handler."""
        request = Request(scope, receive)
        try:
            for guard in router.dependencies:
                await guard.dependency(request)  # type: ignore[misc]
            response = await messaging(request)
        except HTTPException as exc:
            response = await http_exception_handler(request, exc)
        await response(scope, receive, send)

    router.fast_paths = {f"{PREFIX}/messaging": fast_messaging}  # type: ignore[attr-defined]  # app.py collects them

    @router.post("/status")
    def message_status(request: Request) -> Response:
        """A reply's progress: sent -> delivered, or failed with Twilio's reason; never backwards."""
        form = _form(request)
        sid, raw = _required(form, "MessageSid"), _required(form, "MessageStatus").lower()
        status = MESSAGE_STATUS.get(raw)
        if status is not None:
            error = _message_failure(raw, form) if status == "failed" else None
            whatsapp = any(form.get(k, "").lower().startswith("whatsapp:") for k in ("From", "To"))
            channels = ("whatsapp", "sms") if whatsapp else ("sms", "whatsapp")
            if not _provider_status(request.app.state.engine, channels, sid, status, error, form.get("To", "")):
                log.info("status %s for a message that is not ours (%s)", raw, sid)
        return twiml(ET.Element("Response"))

    @router.post("/voice")
    def voice(request: Request) -> Response:
        """An incoming call: on the caller's timeline at once, then a greeting and a transcribed voicemail."""
        form = _form(request)
        call_sid, caller = _required(form, "CallSid"), _required(form, "From")
        meta = {"provider": "twilio", "call_status": form.get("CallStatus", "ringing"),
                "call_direction": _call_direction(form), "to": form.get("To", "")}
        item = Inbound(channel="phone", address=caller, name=form.get("CallerName") or None,
                       external_id=call_sid, metadata=meta)
        try:
            _ingest(request, item, region)
        except HTTPException as exc:
            if exc.status_code != 422:
                raise
            return twiml(_say_and_hang_up(HIDDEN_NUMBER))  # a person is on the line: tell them, kindly
        return twiml(_voicemail(public))

    @router.post("/voice/recorded")
    def voice_recorded(request: Request) -> Response:
        """<Record>'s action: the caller finished their message."""
        form = _form(request)
        _recording(request.app.state.engine, form)
        return twiml(_say_and_hang_up(THANKS))

    @router.post("/recording")
    def recording(request: Request) -> Response:
        """recordingStatusCallback: the voicemail's recording is ready."""
        form = _form(request)
        _recording(request.app.state.engine, form)
        return twiml(ET.Element("Response"))

    @router.post("/transcription")
    def transcription(request: Request) -> Response:
        """transcribeCallback: the voicemail as text; it becomes the call's text on the timeline."""
        form = _form(request)
        call_sid, state = _required(form, "CallSid"), form.get("TranscriptionStatus", "completed").lower()
        text = form.get("TranscriptionText", "") if state == "completed" else None
        changes = {"transcript_status": state, "transcript": text}
        _update_call(request.app.state.engine, call_sid, changes, text=text)
        return twiml(ET.Element("Response"))

    @router.post("/voice/status")
    def call_status(request: Request) -> Response:
        """Call progress; for a callback call also the delivery: answered and finished is "delivered"."""
        form = _form(request)
        call_sid, raw = _required(form, "CallSid"), _required(form, "CallStatus").lower()
        engine = request.app.state.engine
        changes: dict[str, Any] = {"duration_s": _count(form, "CallDuration"), "recording_url": form.get("RecordingUrl") or None}
        if (status := CALL_STATUS.get(raw)) is not None:
            error = _call_failure(raw, form) if status == "failed" else None
            _provider_status(engine, ("phone",), call_sid, status, error, form.get("To", ""))
        if not _update_call(engine, call_sid, changes, status=raw, to=form.get("To", "")):
            log.info("status %s for a call that is not ours (%s)", raw, call_sid)
        return twiml(ET.Element("Response"))

    @router.post("/voice/outbound")
    def outbound_call(request: Request) -> Response:
        """The customer answered our callback: greet them and queue them for the next agent."""
        form = _form(request)
        _required(form, "CallSid")
        root = _say_and_hang_up(CALLBACK_GREETING, hang_up=False)
        ET.SubElement(root, "Enqueue").text = CALLBACK_QUEUE
        return twiml(root)

    return router


def _form(request: Request) -> Form:
    return request.state.form


def _refuse(status: int, reason: str) -> HTTPException:
    log.warning("twilio webhook refused (%d): %s", status, reason)
    return HTTPException(status, reason)


def _required(form: Form, name: str) -> str:
    value = form.get(name, "").strip()
    if not value:
        raise _refuse(422, f"Missing required field {name!r}.")
    return value


def _count(form: Form, name: str) -> int | None:
    """A non-negative integer field (NumMedia, CallDuration…), None when absent."""
    value = form.get(name, "").strip()
    if not value:
        return None
    if not value.isdigit() or len(value) > 9:
        raise _refuse(422, f"Field {name!r} must be a whole number, not {value[:20]!r}.")
    return int(value)


def _media(form: Form) -> list[dict[str, str]]:
    count = _count(form, "NumMedia") or 0
    if count > MAX_MEDIA:
        raise _refuse(422, f"NumMedia is {count}; Twilio sends at most {MAX_MEDIA} attachments.")
    return [{"url": form.get(f"MediaUrl{i}", ""), "content_type": form.get(f"MediaContentType{i}", "")}
            for i in range(count) if form.get(f"MediaUrl{i}")]


def _ingest(request: Request, item: Inbound, region: str) -> None:
    with open_session(request.app.state.engine) as session:
        try:
            ingest(session, item, default_region=region)
        except InboundError as exc:
            raise _refuse(422, str(exc)) from None
        except NoTeam as exc:  # 503: Twilio then tries the number's fallback URL
            raise _refuse(503, str(exc)) from None


def twiml(root: ET.Element) -> Response:
    body = '<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(root, encoding="unicode")
    return Response(body, media_type="application/xml")


def _say_and_hang_up(text: str, *, hang_up: bool = True) -> ET.Element:
    root = ET.Element("Response")
    ET.SubElement(root, "Say").text = text
    if hang_up:
        ET.SubElement(root, "Hangup")
    return root


def _voicemail(public: str) -> ET.Element:
    """Greet, record up to two minutes with a transcript, and say goodbye (the action) or note silence."""
    root = ET.Element("Response")
    ET.SubElement(root, "Say").text = GREETING
    ET.SubElement(root, "Record", {
        "action": public + RECORDED_PATH, "method": "POST",  # without an action Twilio re-requests /voice: a loop
        "maxLength": "120", "timeout": "5", "playBeep": "true",
        "transcribe": "true", "transcribeCallback": public + TRANSCRIPTION_PATH,
        "recordingStatusCallback": public + RECORDING_PATH, "recordingStatusCallbackMethod": "POST",
        "recordingStatusCallbackEvent": "completed",
    })
    ET.SubElement(root, "Say").text = NO_MESSAGE  # reached only when nothing was recorded
    ET.SubElement(root, "Hangup")
    return root


def _message_failure(raw: str, form: Form) -> str:
    code = form.get("ErrorCode", "").strip()
    detail = form.get("ErrorMessage", "").strip()[:300] or _MESSAGE_ERRORS.get(code, "")
    why = f"error {code}: {detail}" if code and detail else (f"error {code}" if code else detail)
    return f"Twilio could not deliver this message ({raw}{', ' + why if why else ''})."


def _call_failure(raw: str, form: Form) -> str:
    reason = _CALL_FAILURES.get(raw, f"The call ended: {raw}.")
    code = form.get("ErrorCode", "").strip()
    if raw == "failed":
        reason += f" (error {code})." if code else "."
    return reason


def _recording(engine: sa.Engine, form: Form) -> None:
    call_sid = _required(form, "CallSid")
    if form.get("RecordingStatus", "completed").lower() != "completed":
        return
    changes = {"recording_url": form.get("RecordingUrl") or None, "recording_sid": form.get("RecordingSid") or None,
               "recording_duration": _count(form, "RecordingDuration")}
    _update_call(engine, call_sid, changes)


# ------------------------------------------------------------------------------------------------
# Writing what callbacks say


def _provider_status(engine: sa.Engine, channels: tuple[str, ...], sid: str, status: str, error: str | None, to: str) -> bool:
    """delivery.on_provider_status on the first channel that knows `sid`. A callback can overtake the
    worker recording the sid it answers (the API call returned a moment ago): while a delivery to that
    address is still `sending`, wait a little for it."""
    return _patiently(engine, channels, to, lambda session: any(
        delivery.on_provider_status(session, channel, sid, status, error) for channel in channels))


def _patiently(engine: sa.Engine, channels: tuple[str, ...], to: str, attempt: Callable[[Session], bool]) -> bool:
    deadline = time.monotonic() + SETTLE_WAIT
    address = to.split(":", 1)[1] if to.lower().startswith("whatsapp:") else to
    while True:
        with open_session(engine) as session:
            if attempt(session):
                return True
            settling = address and session.exec(select(Delivery.id).where(
                Delivery.channel.in_(channels), Delivery.status == "sending", Delivery.to_address == address,  # type: ignore[attr-defined]
            )).first()
            session.rollback()
        if not settling or time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _call_interaction(session: Session, call_sid: str) -> Interaction | None:
    """The call's interaction: an incoming call by its CallSid; a callback call through its delivery."""
    found = session.exec(select(Interaction).where(Interaction.channel == "phone", Interaction.external_id == call_sid)).first()
    if found is not None:
        return found
    placed = session.exec(select(Delivery).where(Delivery.channel == "phone", Delivery.provider_id == call_sid)).first()
    return session.get(Interaction, placed.interaction_id) if placed else None


def _call_direction(form: Mapping[str, str]) -> str:
    """Twilio's Direction (inbound, outbound-api, outbound-dial) as the timeline says it: inbound or outbound."""
    return "outbound" if form.get("Direction", "inbound").startswith("outbound") else "inbound"


def _update_call(engine: sa.Engine, call_sid: str, changes: dict[str, Any], *, status: str | None = None,
                 text: str | None = None, to: str = "") -> bool:
    """Merge what a callback says into the call's meta (and text); False when the call is not ours.
    Call progress never moves back: a late "ringing" does not undo "completed"."""
    def attempt(session: Session) -> bool:
        begin_write(session)  # first: concurrent callbacks for one call apply one after the other
        call = _call_interaction(session, call_sid)
        if call is None:
            session.rollback()
            return False
        meta = dict(call.meta)
        meta.update({key: value for key, value in changes.items() if value is not None})
        if status and _CALL_RANK.get(status, 3) >= _CALL_RANK.get(meta.get("call_status", ""), 0) and meta.get("call_status") not in _ENDED:
            meta["call_status"] = status
        if meta != call.meta or (text is not None and text != call.text) or call.external_id is None:
            call.meta, call.external_id = meta, call.external_id or call_sid
            if text is not None:
                call.text = text
            record_upsert(session, call)
        session.commit()
        return True

    return _patiently(engine, ("phone",), to, attempt)


_ENDED = {"completed", "busy", "no-answer", "failed", "canceled"}


# ------------------------------------------------------------------------------------------------
# Out: the outbox's sender


class TwilioSender:
    """Replies by SMS and WhatsApp, and callback calls, through Twilio's REST API (see twilio_rest.py)."""

    def __init__(self, config: TwilioChannelConfig, public_url: str) -> None:
        self.config = config
        self.public = public_url.rstrip("/")
        self._rest: TwilioRest | None = None
        self._rest_lock = threading.Lock()

    @property
    def rest(self) -> TwilioRest:
        """The REST client, made on first use: importing httpx and making its TLS context would add ~0.2 s to
        every server start (the demo's included)."""
        with self._rest_lock:
            if self._rest is None:
                from agentdesk.server.channels.twilio_rest import TwilioRest

                config = self.config
                self._rest = TwilioRest(config.account_sid, config.auth_token, config.api_base_url, config.request_timeout)
            return self._rest

    def _numbers(self, job: OutboundJob) -> tuple[str, str]:
        """(To, From) as Twilio wants them: WhatsApp addresses carry the whatsapp: prefix."""
        if job.channel == "whatsapp":
            return f"whatsapp:{job.to_address}", f"whatsapp:{self.config.whatsapp_from}"
        return job.to_address, self.config.sms_from

    def send(self, job: OutboundJob) -> Sent:
        to, from_ = self._numbers(job)
        if job.channel == "phone":
            reply = self.rest.create_call(to=to, from_=from_, url=self.public + OUTBOUND_CALL_PATH,
                                          status_callback=self.public + VOICE_STATUS_PATH, events=CALL_EVENTS)
        else:
            reply = self.rest.create_message(to=to, from_=from_, body=job.text, status_callback=self.public + STATUS_PATH)
        sid = reply.get("sid")
        if not isinstance(sid, str) or not sid:
            raise OutcomeUnknown("Twilio's answer carried no sid")
        return Sent(sid, "delivered" if reply.get("status") in ("delivered", "read") else "sent")

    def reconcile(self, job: OutboundJob) -> Sent | None:
        """What Twilio holds of this job, sent to this recipient from our number since it was queued and not
        claimed by another delivery; None when it holds nothing, so sending is safe."""
        if job.provider_id:
            return Sent(job.provider_id)
        to, from_ = self._numbers(job)
        since = (job.queued_at or job.claimed_at) - RECONCILE_SLACK
        resource = "Calls" if job.channel == "phone" else "Messages"
        filters = {"To": to, "From": from_}
        # Those sent (started) since that day; then the newest page unfiltered, for any still queued at
        # Twilio (no date_sent or start_time yet, so the date filter cannot see them).
        listed = itertools.chain(self.rest.list_recent(resource, filters, since.date()),
                                 itertools.islice(self.rest.list_recent(resource, filters, None), 50))
        best: tuple[datetime, str, str] | None = None
        for item in listed:
            created = _twilio_time(item.get("date_created"))
            sid, status = str(item.get("sid") or ""), str(item.get("status") or "")
            if not sid or sid in job.taken_ids or (created is not None and created < since):
                continue
            if resource == "Messages" and str(item.get("body", "")).strip() != job.text.strip():
                continue
            outcome = _reconciled_status(resource, status)
            # The earliest match (ours was queued first); lists run newest first, so on a tie the later one.
            if outcome is not None and (best is None or (created or since) <= best[0]):
                best = (created or since, sid, outcome)
        return Sent(best[1], best[2]) if best else None


def _twilio_time(value: object) -> datetime | None:
    """Twilio's RFC 2822 timestamps ("Thu, 24 Aug 2023 05:01:45 +0000"); None when unreadable."""
    try:
        return parsedate_to_datetime(str(value)) if value else None
    except (TypeError, ValueError):
        return None


def _reconciled_status(resource: str, status: str) -> str | None:
    """Our status for what a reconcile found; None for what never left Twilio (sending again is safe)."""
    if status in ("failed", "canceled"):
        return None
    if resource == "Calls":
        return {"completed": "delivered", "busy": "failed", "no-answer": "failed"}.get(status, "sent")
    return "delivered" if status in ("delivered", "read") else "sent"


def senders(settings: Settings) -> dict[str, TwilioSender]:
    """sms and phone (callbacks) when an account and our number are configured; whatsapp with its sender."""
    config = settings.channels.twilio
    if not (config.enabled and config.account_sid and config.auth_token):
        return {}
    sender = TwilioSender(config, settings.public_url())
    found: dict[str, TwilioSender] = {}
    if config.sms_from:
        found |= {"sms": sender, "phone": sender}
    if config.whatsapp_from:
        found["whatsapp"] = sender
    return found
