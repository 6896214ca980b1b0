"""A loopback stand-in for the parts of Twilio's REST API agentdesk uses, speaking Twilio's wire format.

Real Twilio cannot be reached from a test machine or a demo, so this small HTTP server plays it:
- ``POST/GET /2010-04-01/Accounts/{AccountSid}/Messages.json`` and ``…/Calls.json`` (create and list, with
  Twilio's JSON field names, RFC 2822 dates, ``next_page_uri`` paging and the To/From/DateSent/StartTime
  filters), plus ``GET …/Messages/{Sid}.json`` and ``…/Calls/{Sid}.json``;
- HTTP basic auth with the account SID and auth token, refused with Twilio's error 20003;
- Twilio's error JSON for bad input (``{"code": 21211, "message": …, "more_info": …, "status": 400}``);
- then, like Twilio, it works the message or call through its states and POSTs each one to the request's
  StatusCallback as a form signed with X-Twilio-Signature (and fetches a call's ``Url`` for its TwiML).

Test controls: `fail_next` (the next create answers 500 or 429), `hang_next` (the next create is taken, or
not, and answered only after the client gave up), and the outcomes messages and calls end in.
It never imports agentdesk's server: it signs with its own few lines, so a signing bug cannot hide itself.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import math
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

API = "/2010-04-01"
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENDED = set("^{}\\[~]|€\f")  # two septets each
_ERRORS = {
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "An internal server error has occurred",
}


def sign(auth_token: str, url: str, params: dict[str, str]) -> str:
    """X-Twilio-Signature: base64 HMAC-SHA1 over the URL and the parameters sorted by name."""
    payload = url + "".join(name + params[name] for name in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


def rfc2822(moment: datetime | None) -> str | None:
    return format_datetime(moment.astimezone(UTC)) if moment else None


def segments(body: str) -> int:
    """SMS segments: GSM-7 fits 160 septets in one, 153 each when split; anything else UCS-2, 70 and 67."""
    if all(ch in GSM_BASIC or ch in GSM_EXTENDED for ch in body):
        septets = len(body) + sum(ch in GSM_EXTENDED for ch in body)
        return 1 if septets <= 160 else math.ceil(septets / 153)
    units = len(body.encode("utf-16-le")) // 2
    return 1 if units <= 70 else math.ceil(units / 67)


def error_json(status: int, code: int, message: str) -> JSONResponse:
    body = {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}
    headers = {"WWW-Authenticate": 'Basic realm="Twilio API"'} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


@dataclass
class _Resource:
    """One message or call: its public JSON and what Twilio keeps to itself."""

    json: dict[str, Any]
    created: datetime
    sent: datetime | None = None  # date_sent (messages) or start_time (calls)
    status_callback: str = ""
    url: str = ""  # a call's TwiML URL
    events: tuple[str, ...] = ("completed",)
    twiml: str | None = None  # what the call's Url answered
    callbacks: list[dict[str, str]] = field(default_factory=list)


class TwilioStandIn:
    """Serve on a loopback port: ``with TwilioStandIn(sid, token) as twilio: twilio.url …``."""

    def __init__(self, account_sid: str = "AC" + "0" * 32, auth_token: str = "standin-token", *,
                 step_delay: float = 0.05, host: str = "127.0.0.1") -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.step_delay = step_delay  # seconds between a resource's states (and so its callbacks)
        self.host = host
        self.url = ""
        # Outcomes: how the next messages and calls end.
        self.message_outcome: tuple[str, int | None] = ("delivered", None)  # or ("undelivered", 30003)…
        self.call_outcome: tuple[str, int] = ("completed", 42)  # (final status, seconds talked)
        self.requests: list[tuple[str, str]] = []  # (method, path) of every API request, for tests
        self._messages: list[_Resource] = []
        self._calls: list[_Resource] = []
        self._failures: list[int] = []
        self._hang: tuple[float, bool] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: Any = None
        self._client: httpx.AsyncClient | None = None  # for callbacks, on the server's loop
        self._thread: threading.Thread | None = None

    # -- life ------------------------------------------------------------------------------------

    def start(self, sock: Any = None) -> str:
        """Serve on a free loopback port, or on `sock` (bound and listening: its URL can be handed out first)."""
        import socket

        import uvicorn

        if sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, 0))
            sock.listen(128)
        self.url = f"http://{self.host}:{sock.getsockname()[1]}"
        config = uvicorn.Config(self.app(), log_level="warning", access_log=False, timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True, name="twilio-standin")
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the Twilio stand-in did not start")
            time.sleep(0.01)
        return self.url

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> TwilioStandIn:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test controls ---------------------------------------------------------------------------

    def fail_next(self, status: int = 500, times: int = 1) -> None:
        """The next `times` creates answer `status` (500 or 429) with Twilio's error JSON, holding nothing."""
        with self._lock:
            self._failures += [status] * times

    def hang_next(self, seconds: float, *, accept: bool = True) -> None:
        """The next create answers only after `seconds` (past the client's timeout). accept=True: the
        message or call is taken and goes on as usual (the provider got it, the client never heard);
        False: it is dropped, as if the request had never arrived."""
        with self._lock:
            self._hang = (seconds, accept)

    def messages(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r.json) for r in self._messages]

    def calls(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r.json) for r in self._calls]

    def callbacks(self, sid: str) -> list[dict[str, str]]:
        """The status callbacks posted for one message or call: their params, "_url" and "_response" (HTTP status)."""
        with self._lock:
            found = next((r for r in self._messages + self._calls if r.json["sid"] == sid), None)
            return [dict(c) for c in found.callbacks] if found else []

    def twiml(self, call_sid: str) -> str | None:
        """What a call's Url answered when the customer picked up."""
        with self._lock:
            return next((r.twiml for r in self._calls if r.json["sid"] == call_sid), None)

    # -- the API ---------------------------------------------------------------------------------

    def app(self) -> Starlette:
        base = API + "/Accounts/{account}"

        @asynccontextmanager
        async def lifespan(_app: Starlette) -> AsyncIterator[None]:
            async with httpx.AsyncClient(timeout=15) as client:
                self._client = client
                yield

        return Starlette(lifespan=lifespan, routes=[
            Route(base + "/Messages.json", self._messages_endpoint, methods=["GET", "POST"]),
            Route(base + "/Messages/{sid}.json", self._fetch_message, methods=["GET"]),
            Route(base + "/Calls.json", self._calls_endpoint, methods=["GET", "POST"]),
            Route(base + "/Calls/{sid}.json", self._fetch_call, methods=["GET"]),
        ])

    def _authorized(self, request: Request) -> JSONResponse | None:
        self.requests.append((request.method, request.url.path))
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Basic {expected}".encode()):
            return error_json(401, 20003, _ERRORS[20003])
        if request.path_params["account"] != self.account_sid:
            return error_json(404, 20404, _ERRORS[20404])
        return None

    async def _form(self, request: Request) -> list[tuple[str, str]]:
        return parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)

    async def _messages_endpoint(self, request: Request) -> JSONResponse:
        if (refused := self._authorized(request)) is not None:
            return refused
        if request.method == "GET":
            return self._list(request, "messages", self._messages, "DateSent")
        form = dict(await self._form(request))
        to, from_, body = form.get("To", ""), form.get("From", ""), form.get("Body", "")
        if not to:
            return error_json(400, 21604, "A 'To' phone number is required.")
        if not from_:
            return error_json(400, 21603, "A 'From' phone number is required.")
        if not body and not form.get("MediaUrl"):
            return error_json(400, 21602, "Message body is required.")
        whatsapp = to.startswith("whatsapp:")
        if whatsapp != from_.startswith("whatsapp:"):
            return error_json(400, 21910, "Invalid From and To pair. From and To should be of the same channel")
        if not E164.match(to.removeprefix("whatsapp:")):
            return error_json(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if len(body) > 1600:
            return error_json(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
        return await self._create(self._messages, self._message_json(to, from_, body, whatsapp), form, self._run_message)

    async def _calls_endpoint(self, request: Request) -> JSONResponse:
        if (refused := self._authorized(request)) is not None:
            return refused
        if request.method == "GET":
            return self._list(request, "calls", self._calls, "StartTime")
        pairs = await self._form(request)
        form = dict(pairs)
        to, from_ = form.get("To", ""), form.get("From", "")
        if not to:
            return error_json(400, 21201, "No 'To' number is specified")
        if not from_:
            return error_json(400, 21213, "No 'From' number is specified")
        if not form.get("Url") and not form.get("Twiml"):
            return error_json(400, 21205, "Url parameter is required.")
        if not E164.match(to):
            return error_json(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        events = tuple(v.strip().lower() for k, v in pairs if k == "StatusCallbackEvent") or ("completed",)
        return await self._create(self._calls, self._call_json(to, from_), form, self._run_call, events=events)

    async def _create(self, store: list[_Resource], body: dict[str, Any], form: dict[str, str], run: Any,
                      events: tuple[str, ...] = ()) -> JSONResponse:
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
            hang, self._hang = self._hang, None
        if failure is not None:
            return error_json(failure, 20000 + failure, _ERRORS.get(20000 + failure, "Error"))
        record = _Resource(json=body, created=datetime.now(UTC), status_callback=form.get("StatusCallback", ""),
                           url=form.get("Url", ""), events=events or ("completed",))
        if hang is None or hang[1]:
            with self._lock:
                store.append(record)
            self._spawn(run(record))
        if hang is not None:
            await self._sleep(hang[0])
        return JSONResponse(dict(record.json), status_code=201)

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self._stopping.is_set():
            await asyncio.sleep(0.05)

    async def _fetch_message(self, request: Request) -> JSONResponse:
        return self._fetch(request, self._messages)

    async def _fetch_call(self, request: Request) -> JSONResponse:
        return self._fetch(request, self._calls)

    def _fetch(self, request: Request, store: list[_Resource]) -> JSONResponse:
        if (refused := self._authorized(request)) is not None:
            return refused
        with self._lock:
            found = next((dict(r.json) for r in store if r.json["sid"] == request.path_params["sid"]), None)
        return JSONResponse(found) if found else error_json(404, 20404, _ERRORS[20404])

    # -- lists -----------------------------------------------------------------------------------

    def _list(self, request: Request, key: str, store: list[_Resource], date_filter: str) -> JSONResponse:
        query = request.query_params
        try:
            size = min(max(int(query.get("PageSize", "50")), 1), 1000)
            page = max(int(query.get("Page", "0")), 0)
            bounds = {op: _day_or_time(query[date_filter + op]) for op in ("", "<", ">") if date_filter + op in query}
        except ValueError:
            return error_json(400, 20001, "Invalid query parameter")
        with self._lock:
            matching = [dict(r.json) for r in reversed(store) if _matches(r, query, bounds)]  # newest first
        chunk = matching[page * size:(page + 1) * size]
        filters = {k: v for k, v in query.items() if k not in ("Page", "PageSize", "PageToken")}
        path = request.url.path

        def page_uri(number: int) -> str:
            token = {"PageToken": f"PA{uuid.uuid4().hex}"} if number > 0 else {}
            return f"{path}?{urlencode({**filters, 'PageSize': size, 'Page': number, **token})}"

        more = (page + 1) * size < len(matching)
        return JSONResponse({
            key: chunk, "page": page, "page_size": size, "start": page * size, "end": page * size + max(len(chunk) - 1, 0),
            "uri": page_uri(page), "first_page_uri": page_uri(0),
            "next_page_uri": page_uri(page + 1) if more else None,
            "previous_page_uri": page_uri(page - 1) if page > 0 else None,
        })

    # -- resources and their lives ---------------------------------------------------------------

    def _message_json(self, to: str, from_: str, body: str, whatsapp: bool) -> dict[str, Any]:
        sid, now = "SM" + uuid.uuid4().hex, datetime.now(UTC)
        uri = f"{API}/Accounts/{self.account_sid}/Messages/{sid}"
        return {
            "account_sid": self.account_sid, "api_version": "2010-04-01", "body": body,
            "date_created": rfc2822(now), "date_sent": None, "date_updated": rfc2822(now),
            "direction": "outbound-api", "error_code": None, "error_message": None, "from": from_,
            "messaging_service_sid": None, "num_media": "0", "num_segments": "1" if whatsapp else str(segments(body)),
            "price": None, "price_unit": "USD", "sid": sid, "status": "queued",
            "subresource_uris": {"media": f"{uri}/Media.json", "feedback": f"{uri}/Feedback.json"},
            "to": to, "uri": f"{uri}.json",
        }

    def _call_json(self, to: str, from_: str) -> dict[str, Any]:
        sid, now = "CA" + uuid.uuid4().hex, datetime.now(UTC)
        uri = f"{API}/Accounts/{self.account_sid}/Calls/{sid}"
        return {
            "account_sid": self.account_sid, "annotation": None, "answered_by": None, "api_version": "2010-04-01",
            "caller_name": None, "date_created": rfc2822(now), "date_updated": rfc2822(now), "direction": "outbound-api",
            "duration": None, "end_time": None, "forwarded_from": None, "from": from_, "from_formatted": from_,
            "group_sid": None, "parent_call_sid": None, "phone_number_sid": "PN" + uuid.uuid4().hex, "price": None,
            "price_unit": "USD", "queue_time": "0", "sid": sid, "start_time": None, "status": "queued",
            "subresource_uris": {"recordings": f"{uri}/Recordings.json", "notifications": f"{uri}/Notifications.json"},
            "to": to, "to_formatted": to, "trunk_sid": None, "uri": f"{uri}.json",
        }

    def _set(self, record: _Resource, **changes: Any) -> dict[str, Any]:
        with self._lock:
            record.json.update(changes, date_updated=rfc2822(datetime.now(UTC)))
            return dict(record.json)

    async def _run_message(self, record: _Resource) -> None:
        """queued -> sent -> delivered (or the configured failure), each state posted to StatusCallback."""
        final, error = self.message_outcome
        await asyncio.sleep(self.step_delay)
        record.sent = datetime.now(UTC)
        self._set(record, status="sent", date_sent=rfc2822(record.sent))
        await self._message_callback(record, "sent", None)
        await asyncio.sleep(self.step_delay)
        self._set(record, status=final, error_code=error, error_message=None)
        await self._message_callback(record, final, error)

    async def _message_callback(self, record: _Resource, status: str, error: int | None) -> None:
        message = record.json
        params = {
            "AccountSid": self.account_sid, "ApiVersion": "2010-04-01", "From": message["from"], "To": message["to"],
            "MessageSid": message["sid"], "SmsSid": message["sid"], "MessageStatus": status, "SmsStatus": status,
        }
        if message["to"].startswith("whatsapp:"):
            params["ChannelPrefix"] = "whatsapp"
        if error is not None:
            params["ErrorCode"] = str(error)
        await self._post_signed(record, record.status_callback, params)

    async def _run_call(self, record: _Resource) -> None:
        """queued -> initiated -> ringing -> in-progress (fetching Url's TwiML) -> completed, or the call
        ends busy/no-answer/failed after ringing; the subscribed events are posted to StatusCallback."""
        final, talked = self.call_outcome
        for status, event in (("initiated", "initiated"), ("ringing", "ringing")):
            await asyncio.sleep(self.step_delay)
            if status == "initiated":
                record.sent = datetime.now(UTC)
                self._set(record, status=status, start_time=rfc2822(record.sent))
            else:
                self._set(record, status=status)
            if event in record.events:
                await self._call_callback(record, status)
        await asyncio.sleep(self.step_delay)
        if final == "completed":
            self._set(record, status="in-progress")
            if "answered" in record.events:
                await self._call_callback(record, "in-progress")
            await self._fetch_twiml(record)
            await asyncio.sleep(self.step_delay)
        end = datetime.now(UTC)
        seconds = talked if final == "completed" else 0
        self._set(record, status=final, end_time=rfc2822(end), duration=str(seconds))
        if "completed" in record.events:
            await self._call_callback(record, final, {"CallDuration": str(seconds), "Duration": str(math.ceil(seconds / 60))})

    def _call_params(self, record: _Resource, status: str) -> dict[str, str]:
        call = record.json
        return {
            "AccountSid": self.account_sid, "ApiVersion": "2010-04-01", "CallSid": call["sid"], "CallStatus": status,
            "Called": call["to"], "Caller": call["from"], "Direction": "outbound-api", "From": call["from"], "To": call["to"],
        }

    async def _call_callback(self, record: _Resource, status: str, extra: dict[str, str] | None = None) -> None:
        params = {**self._call_params(record, status), "CallbackSource": "call-progress-events",
                  "SequenceNumber": str(len(record.callbacks)), "Timestamp": rfc2822(datetime.now(UTC)) or "", **(extra or {})}
        await self._post_signed(record, record.status_callback, params)

    async def _fetch_twiml(self, record: _Resource) -> None:
        if not record.url:
            return
        response = await self._post(record.url, self._call_params(record, "in-progress"))
        with self._lock:
            record.twiml = response.text if response is not None else None

    async def _post_signed(self, record: _Resource, url: str, params: dict[str, str]) -> None:
        if not url:
            return
        response = await self._post(url, params)
        with self._lock:
            record.callbacks.append({**params, "_url": url,
                                     "_response": str(response.status_code if response is not None else "unreachable")})

    async def _post(self, url: str, params: dict[str, str]) -> httpx.Response | None:
        """A webhook request as Twilio makes it: a form POST signed with the auth token over the exact URL."""
        headers = {"X-Twilio-Signature": sign(self.auth_token, url, params), "User-Agent": "TwilioProxy/1.1",
                   "I-Twilio-Idempotency-Token": str(uuid.uuid4())}
        assert self._client is not None, "the stand-in is not serving"
        try:
            return await self._client.post(url, data=params, headers=headers)
        except httpx.HTTPError:
            return None

    # -- traffic from customers, as Twilio delivers it (for the demo) -------------------------------

    def incoming_message(self, webhook_url: str, *, from_: str, to: str, body: str, profile_name: str = "") -> httpx.Response:
        """Post an inbound SMS (or WhatsApp, with whatsapp: addresses) to our messaging webhook."""
        sid = "SM" + uuid.uuid4().hex
        params = {"AccountSid": self.account_sid, "ApiVersion": "2010-04-01", "Body": body, "From": from_, "To": to,
                  "MessageSid": sid, "SmsMessageSid": sid, "SmsSid": sid, "SmsStatus": "received", "NumMedia": "0",
                  "NumSegments": str(segments(body))}
        if profile_name:
            params["ProfileName"] = profile_name
        return self._post_now(webhook_url, params)

    def incoming_call(self, webhook_url: str, *, from_: str, to: str) -> httpx.Response:
        """Post an incoming call to our voice webhook; the answer is its TwiML."""
        params = {"AccountSid": self.account_sid, "ApiVersion": "2010-04-01", "CallSid": "CA" + uuid.uuid4().hex,
                  "CallStatus": "ringing", "Called": to, "Caller": from_, "Direction": "inbound", "From": from_, "To": to}
        return self._post_now(webhook_url, params)

    def _post_now(self, url: str, params: dict[str, str]) -> httpx.Response:
        headers = {"X-Twilio-Signature": sign(self.auth_token, url, params), "User-Agent": "TwilioProxy/1.1"}
        return httpx.post(url, data=params, headers=headers, timeout=15)


def _day_or_time(value: str) -> tuple[datetime, bool]:
    """A date filter's value: (moment, whole day?) from "YYYY-MM-DD" or an ISO 8601 time."""
    if len(value) == 10:
        return datetime.fromisoformat(value).replace(tzinfo=UTC), True
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)), False


def _matches(record: _Resource, query: Any, bounds: dict[str, tuple[datetime, bool]]) -> bool:
    item = record.json
    for name, key in (("To", "to"), ("From", "from"), ("Status", "status")):
        if name in query and item.get(key) != query[name]:
            return False
    if bounds and record.sent is None:  # not sent (started) yet: no date to filter on
        return False
    for op, (moment, whole_day) in bounds.items():
        assert record.sent is not None
        if op == ">" and record.sent < moment:  # on or after
            return False
        if op == "<" and record.sent > moment:  # on or before
            return False
        if op == "" and not (moment <= record.sent < moment + (timedelta(days=1) if whole_day else timedelta(seconds=1))):
            return False
    return True
