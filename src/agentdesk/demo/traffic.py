"""Live traffic for `agentdesk demo`: customers write, text, call and chat while the agent works.

It runs in the demo server's process, on its own thread, and comes in from outside by the real channel paths,
as the world would: email by SMTP to the listener, SMS, WhatsApp and calls as Twilio-signed webhook posts, web
chat over the widget's websocket. Every few seconds (a random gap around `interval`) one event happens; the
first few go round every kind once, so each channel shows up early. Customers also answer the agent: a reply
that reaches the demo's mail sink or the Twilio stand-in (outside.py) sometimes gets an out-of-office note or
an answer back, and a chat visitor stays a while and answers live.

Who: mostly customers of the seeded day (their addresses, names and languages, so traffic lands on their
timelines), sometimes someone new. What: the seeded day's text pools (data.py). Every choice is drawn from
one `Random(seed)`, so the same --seed tells the same story (the agent's own replies aside). A failure is
logged to the server log and the simulator carries on; it never takes the server down.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import random
import smtplib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import formataddr, formatdate
from functools import partial
from typing import TYPE_CHECKING, Any

from agentdesk.demo import data
from agentdesk.demo.outside import MAILBOX, SMS_NUMBER, WHATSAPP_NUMBER

if TYPE_CHECKING:
    import sqlalchemy as sa

    from agentdesk.demo.outside import Mail, OutsideWorld

log = logging.getLogger("agentdesk.demo.traffic")

DEFAULT_INTERVAL = 13.0  # seconds between events on average (gaps are 0.5x to 1.5x this)
NEW_PEOPLE = 0.2  # share of events from someone the seeded day has never seen
MAX_VISITORS = 3  # chat visitors connected at once
TICK = 0.25  # the longest the loop sleeps, so stop() is quick
KINDS = {  # event kind -> weight
    "email": 22, "email_answer": 10, "out_of_office": 3, "sms": 16, "whatsapp": 13, "call": 16, "chat": 20,
}
ANSWER_EMAIL, OUT_OF_OFFICE_EMAIL, ANSWER_TEXT = 0.35, 0.2, 0.4  # chances a customer reacts to a reply
_OUT_OF_OFFICE = {
    "en": ("Automatic reply: {subject}", "Thank you for your email. I am out of the office until {eta} with limited "
                                         "access to email, and will reply when I am back.\n\n{first}"),
    "de": ("Abwesenheitsnotiz: {subject}", "Vielen Dank für Ihre Nachricht. Ich bin bis zum {eta} nicht im Büro und "
                                           "lese meine E-Mails nur eingeschränkt.\n\n{first}"),
    "fr": ("Réponse automatique : {subject}", "Merci pour votre message. Je suis absent(e) jusqu'au {eta} avec un "
                                              "accès limité à mes e-mails.\n\n{first}"),
    "es": ("Respuesta automática: {subject}", "Gracias por su mensaje. Estoy fuera de la oficina hasta el {eta} con "
                                              "acceso limitado al correo.\n\n{first}"),
}
_STAFF_FIRST = tuple(name.split()[0] for name, _, role, _ in data._AGENTS if role != "admin")
_COUNTRY_BY_PREFIX = (("+44", "GB"), ("+61", "AU"), ("+49", "DE"), ("+33", "FR"), ("+34", "ES"), ("+1", "US"))
_COUNTRY_BY_LANG = {"de": "DE", "fr": "FR", "es": "ES"}


# --------------------------------------------------------------------------------------------------------------
# People and what they write


@dataclass
class Person:
    """Someone who gets in touch: a seeded customer (customer_id set) or someone new."""

    name: str
    first: str
    lang: str = "en"
    email: str | None = None
    phone: str | None = None
    whatsapp: bool = False
    customer_id: str | None = None
    open_on: set[str] = field(default_factory=set)  # channels with a conversation of theirs still open
    detail: str | None = None  # what they will say when the agent first asks about their latest issue

    @property
    def country(self) -> str:
        if self.phone:
            return next((c for prefix, c in _COUNTRY_BY_PREFIX if self.phone.startswith(prefix)), "US")
        return _COUNTRY_BY_LANG.get(self.lang, "US")


@dataclass
class Thread:
    """An email conversation the customer can answer: the message they answer and the thread before it."""

    person: Person
    subject: str
    message_id: str
    references: tuple[str, ...]


@dataclass(frozen=True)
class Issue:
    """A new problem, told the ways each channel tells it."""

    subject: str
    short: str  # an SMS, a chat line, what a caller says
    paragraph: str  # an email's body
    detail: str  # the answer to the agent's first question about it
    vars: dict[str, Any]


class _Vars(dict[str, Any]):
    def __missing__(self, key: str) -> str:  # a template naming something we did not make up reads on
        return ""


class Texts:
    """What people write, from the seeded day's pools, in the person's language."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    @staticmethod
    def lang(person: Person) -> dict[str, Any]:
        return data._LANG.get(person.lang, data._EN)

    def pick(self, options: Any, v: dict[str, Any]) -> str:
        return str(self.rng.choice(options)).format_map(v)

    def vars(self, person: Person) -> _Vars:
        rng, lang, country = self.rng, self.lang(person), person.country
        symbol = {"US": "${:.2f}", "AU": "A${:.2f}", "GB": "£{:.2f}"}.get(country)

        def money(lo: float, hi: float) -> str:
            value = round(rng.uniform(lo, hi)) - 0.01
            return symbol.format(value) if symbol else f"{value:.2f} €".replace(".", ",")

        def day(moment: datetime) -> str:
            return lang["date"].format(d=moment.day, month=lang["month"][moment.month - 1],
                                       mon=data._EN["mon"][moment.month - 1])

        today = datetime.now(UTC)
        charged, eta = today - timedelta(days=rng.randint(1, 9)), today + timedelta(days=rng.randint(2, 12))
        plan = rng.choice(data._PLANS)
        team = rng.choice(data._TEAMS)
        return _Vars(
            first=person.first, name=person.name, amount=money(25, 160), amount2=money(30, 90), credit=money(5, 30),
            order=f"#{rng.randrange(100000, 999999)}", invoice=f"INV-{today.year}-{rng.randrange(10**5, 10**6)}",
            ticket=f"#{rng.randrange(1000, 9999)}", incident=f"INC-{rng.randrange(10000, 99999)}",
            tracking=f"1Z{rng.getrandbits(40):010X}", plan=plan, plan_new=data._UPGRADES[plan],
            last4=f"{rng.randrange(10000):04d}", phone_tail=(person.phone or "00")[-2:], date=day(charged),
            eta=day(eta), month=lang["month"][charged.month - 1], days=rng.randint(3, 14),
            router=rng.choice(data._ROUTERS), city=rng.choice(data._CITIES[country]),
            street=rng.choice(data._STREETS[country]).format(n=rng.randint(2, 220)),
            account=f"AC-{rng.randrange(10**6, 10**7)}", travel=rng.choice(data._TRAVEL), supervisor="Priya Raman",
            prev_agent=rng.choice(_STAFF_FIRST), escalation=rng.choice(data._ESCALATION[team]), team=team,
            when=lang["yesterday"], agent=data.DEMO_AGENT_NAME.split()[0], company="Hollis & Reed LLP",
        )

    def issue(self, person: Person) -> Issue:
        """A new problem of theirs; they will give its detail when the agent asks (Person.detail)."""
        topic = self.rng.choices(data._TOPICS, cum_weights=data._TOPIC_CUM)[0]
        v = self.vars(person)
        v["phrase"] = self.pick(topic.phrase, v)
        lang = self.lang(person)
        if lang is data._EN:
            issue = Issue(self.pick(topic.subject, v), self.pick(topic.short, v), self.pick(topic.open, v),
                          self.pick(topic.info, v), v)
        else:
            subject, shorts = lang["topics"][topic.key]
            short = self.pick(shorts, v)
            issue = Issue(subject.format_map(v), short, short, self.pick(lang["info"], v), v)
        person.detail = issue.detail
        return issue

    def email(self, person: Person, paragraph: str, v: dict[str, Any], *, greet: bool = True) -> str:
        lang = self.lang(person)
        body = f"{paragraph}\n\n{self.pick(lang['signoff_in'], v)}"
        return f"{self.pick(lang['greet_in'], v)}\n\n{body}" if greet else body

    def text(self, short: str) -> str:
        """A short line as people type it on a phone."""
        if short.endswith(("?", ".", "!")):
            return short
        return short + self.rng.choice((".", "!", "", " :(", "..."))

    def follow_up(self, person: Person, v: dict[str, Any]) -> str:
        """More on a conversation that is still open: a nudge, a 'still broken', a thanks."""
        key = self.rng.choice(("nudge", "still", "thanks", "ok"))
        return self.pick(self.lang(person)[key], v)

    def answer(self, person: Person, v: dict[str, Any]) -> str:
        """What a customer says back to an agent's reply: the detail of their issue the first time (the agent
        asked about it), then mostly thanks."""
        if person.detail:
            detail, person.detail = person.detail, None
            return detail
        key = self.rng.choices(("thanks", "still", "ok"), (6, 3, 1))[0]
        return self.pick(self.lang(person)[key], v)

    def voicemail(self, person: Person, v: dict[str, Any]) -> str:
        lang = self.lang(person)
        return "Voicemail: " + lang["vm_in"].format_map(v)

    def out_of_office(self, person: Person, subject: str, v: dict[str, Any]) -> tuple[str, str]:
        head, body = _OUT_OF_OFFICE.get(person.lang, _OUT_OF_OFFICE["en"])
        return head.format_map({"subject": subject}), body.format_map(v)


# --------------------------------------------------------------------------------------------------------------
# The seeded day, as the simulator needs it


@dataclass
class Crowd:
    """Everyone who may get in touch, and the email threads waiting on a customer's answer."""

    people: list[Person]
    threads: list[Thread]
    by_email: dict[str, Person] = field(default_factory=dict)
    by_phone: dict[str, Person] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for person in self.people:
            self.index(person)

    def index(self, person: Person) -> None:
        if person.email:
            self.by_email[person.email] = person
        if person.phone:
            self.by_phone[person.phone] = person


def load_crowd(engine: sa.Engine) -> Crowd:
    """The seeded customers with their addresses and open channels, and the email threads where the agent
    wrote last (in a stable order, so a seed picks the same people)."""
    import sqlalchemy as sa

    from agentdesk.server.models import Conversation, Customer, Identity, Interaction

    with engine.connect() as conn:
        people = {row.id: Person(row.display_name, row.first_name or row.display_name.split()[0], row.language or "en",
                                 customer_id=row.id)
                  for row in conn.execute(sa.select(Customer.id, Customer.display_name, Customer.first_name,
                                                    Customer.language).where(Customer.merged_into.is_(None))  # type: ignore[union-attr]
                                          .order_by(Customer.id))}
        for customer_id, kind, address in conn.execute(
                sa.select(Identity.customer_id, Identity.kind, Identity.address).order_by(Identity.customer_id, Identity.address)):
            person = people.get(customer_id)
            if person is not None and kind in ("email", "phone") and getattr(person, kind) is None:
                setattr(person, kind, address)
        for customer_id, channel, status in conn.execute(
                sa.select(Conversation.customer_id, Conversation.channel, Conversation.status).order_by(Conversation.id)):
            person = people.get(customer_id)
            if person is not None:
                person.whatsapp = person.whatsapp or channel == "whatsapp"
                if status in ("open", "pending"):
                    person.open_on.add(channel)
        last: dict[str, Any] = {}
        for row in conn.execute(
                sa.select(Interaction.conversation_id, Interaction.customer_id, Interaction.direction, Interaction.subject,
                          Interaction.meta)
                .join(Conversation, Conversation.id == Interaction.conversation_id)  # type: ignore[arg-type]
                .where(Interaction.channel == "email", Interaction.direction != "note",
                       Conversation.status.in_(("open", "pending")))  # type: ignore[attr-defined]
                .order_by(Interaction.conversation_id, Interaction.occurred_at)):
            last[row.conversation_id] = row
    threads = []
    for row in last.values():
        meta, person = row.meta or {}, people.get(row.customer_id)
        if row.direction == "outbound" and person is not None and person.email and meta.get("message_id"):
            references = tuple(meta.get("references") or ()) + (meta["message_id"],)
            threads.append(Thread(person, row.subject or "", meta["message_id"], references))
    return Crowd(list(people.values()), threads)


# --------------------------------------------------------------------------------------------------------------
# The simulator


@dataclass(order=True)
class _Due:
    at: float
    seq: int
    what: str = field(compare=False)
    action: Callable[[], None] = field(compare=False)


class Traffic:
    """The simulator: `start()` after the app is up (it waits for the SMTP listener), `stop()` at exit."""

    def __init__(self, engine: sa.Engine, *, base_url: str, smtp_address: Callable[[], tuple[str, int] | None],
                 world: OutsideWorld, seed: int = 7, interval: float = DEFAULT_INTERVAL) -> None:
        self.engine = engine
        self.base_url = base_url.rstrip("/")
        self.smtp_address = smtp_address
        self.world = world
        self.interval = interval
        self.rng = random.Random(seed)
        self.texts = Texts(self.rng)
        self.stopping = threading.Event()
        self.crowd: Crowd | None = None
        self.visitors: set[threading.Thread] = set()
        self._due: list[_Due] = []
        self._seq = itertools.count()
        self._tour: list[str] = []  # kinds still to show once, at the start
        self._texts_seen = 0  # the stand-in's messages already looked at
        self._thread = threading.Thread(target=self.run, daemon=True, name="demo-traffic")
        self._http: Any = None
        self._newcomers: Any = None

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self.stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- the loop ------------------------------------------------------------------------------------------

    def run(self) -> None:
        import httpx

        try:
            smtp = self._wait_for_smtp()
            self.crowd = load_crowd(self.engine)
        except Exception:
            log.exception("could not start; the demo goes on without new traffic")
            return
        if smtp is None:
            return
        self._tour = self.rng.sample(list(KINDS), len(KINDS))
        log.info("%d customers may get in touch, every %g s on average", len(self.crowd.people), self.interval)
        with httpx.Client(timeout=10.0) as self._http:
            next_event = time.monotonic() + self.gap() * 0.5
            while not self.stopping.is_set():
                now = time.monotonic()
                while self._due and self._due[0].at <= now and not self.stopping.is_set():
                    due = heapq.heappop(self._due)
                    self._safely(due.what, due.action)
                self._safely("reacting to replies", self._react)
                if now >= next_event:
                    kind = self.next_kind()
                    self._safely(f"{kind.replace('_', ' ')} event", partial(self.act, kind))
                    next_event = now + self.gap()
                wait = min([TICK, next_event - now] + [d.at - now for d in self._due[:1]])
                self.stopping.wait(max(wait, 0.01))

    def _wait_for_smtp(self) -> tuple[str, int] | None:
        deadline = time.monotonic() + 30
        while (found := self.smtp_address()) is None:
            if time.monotonic() > deadline:
                raise RuntimeError("the SMTP listener did not start")
            if self.stopping.wait(0.05):
                return None
        return found

    def _safely(self, what: str, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception as exc:  # the demo goes on: say what failed, in the server log
            if self.stopping.is_set():
                return
            log.warning("%s failed: %s: %s", what, type(exc).__name__, exc)

    def gap(self) -> float:
        return self.interval * self.rng.uniform(0.5, 1.5)

    def later(self, delay: float, what: str, action: Callable[[], None]) -> None:
        heapq.heappush(self._due, _Due(time.monotonic() + delay, next(self._seq), what, action))

    def hex(self, digits: int) -> str:
        return f"{self.rng.getrandbits(4 * digits):0{digits}x}"

    # -- choosing ------------------------------------------------------------------------------------------

    def next_kind(self) -> str:
        """Each kind once at first (in a random order), then by weight."""
        kind = self._tour.pop() if self._tour else self.rng.choices(list(KINDS), list(KINDS.values()))[0]
        if kind == "chat" and len(self.visitors) >= MAX_VISITORS:
            return "sms"
        if kind in ("email_answer", "out_of_office") and not self.crowd.threads:  # type: ignore[union-attr]
            return "email"
        return kind

    def act(self, kind: str) -> None:
        {"email": self.email, "email_answer": self.email_answer, "out_of_office": self.out_of_office,
         "sms": lambda: self.text_message("sms"), "whatsapp": lambda: self.text_message("whatsapp"),
         "call": self.call, "chat": self.chat}[kind]()

    def someone(self, needs: str) -> Person:
        """A seeded customer with an email / phone / whatsapp, or (sometimes) someone new."""
        crowd = self.crowd
        assert crowd is not None
        if self.rng.random() >= NEW_PEOPLE:
            pool = [p for p in crowd.people if (p.whatsapp and p.phone if needs == "whatsapp" else getattr(p, needs))]
            if pool:
                return self.rng.choice(pool)
        person = self.newcomer()
        crowd.people.append(person)
        crowd.index(person)
        return person

    def newcomer(self) -> Person:
        """Someone new, made the way the seeded day makes its customers (its name pools and number ranges)."""
        crowd = self.crowd
        assert crowd is not None
        if self._newcomers is None:
            self._newcomers = data._Generator(self.rng.getrandbits(32), datetime.now(UTC))
            self._newcomers.used.update(("phone", phone) for phone in crowd.by_phone)
        country, lang, first, last = self._newcomers.person()
        phone = self._newcomers.phone_number(country)
        self._newcomers.used.add(("phone", phone))
        local = ".".join("".join(ch for ch in data._ascii(part).lower() if ch.isalnum()) for part in (first, last))
        email = f"{local}@{self.rng.choice(data._EMAIL_DOMAINS)}"
        while email in crowd.by_email:
            email = f"{local}{self.rng.randrange(2, 999)}@{email.rpartition('@')[2]}"
        return Person(f"{first} {last}", first, lang, email=email, phone=phone, whatsapp=self.rng.random() < 0.5)

    # -- email ---------------------------------------------------------------------------------------------

    def email(self) -> None:
        person = self.someone("email")
        issue = self.texts.issue(person)
        self.send_email(person, issue.subject, self.texts.email(person, issue.paragraph, issue.vars))
        person.open_on.add("email")
        log.info("email from %s", "a new customer" if person.customer_id is None else person.name)

    def email_answer(self) -> None:
        """A customer answers an agent's email of the seeded day (In-Reply-To threads it)."""
        thread = self.crowd.threads.pop(self.rng.randrange(len(self.crowd.threads)))  # type: ignore[union-attr]
        self.answer_email(thread)

    def out_of_office(self) -> None:
        thread = self.crowd.threads.pop(self.rng.randrange(len(self.crowd.threads)))  # type: ignore[union-attr]
        self.auto_reply(thread)

    def answer_email(self, thread: Thread) -> None:
        person = thread.person
        v = self.texts.vars(person)
        body = self.texts.email(person, self.texts.answer(person, v), v, greet=False)
        subject = thread.subject if thread.subject.lower().startswith("re:") else f"Re: {thread.subject}"
        self.send_email(person, subject, body, thread=thread)
        log.info("%s answered an email", person.name)

    def auto_reply(self, thread: Thread) -> None:
        person = thread.person
        subject, body = self.texts.out_of_office(person, thread.subject, self.texts.vars(person))
        self.send_email(person, subject, body, thread=thread, auto=True)
        log.info("out-of-office reply from %s", person.name)

    def send_email(self, person: Person, subject: str, body: str, *, thread: Thread | None = None, auto: bool = False) -> None:
        assert person.email
        host, port = self.smtp_address() or ("127.0.0.1", 0)
        msg = EmailMessage()
        msg["From"] = formataddr((person.name, person.email))
        msg["To"] = formataddr((f"{data.COMPANY} Support", MAILBOX))
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=True)
        msg["Message-ID"] = f"<{self.hex(24)}@{person.email.rpartition('@')[2]}>"
        if thread is not None:
            msg["In-Reply-To"] = thread.message_id
            msg["References"] = " ".join(thread.references[-10:])
        if auto:
            msg["Auto-Submitted"] = "auto-replied"
        msg.set_content(body)
        with smtplib.SMTP(host, port, timeout=10) as smtp:
            smtp.send_message(msg, from_addr=person.email, to_addrs=[MAILBOX])

    # -- Twilio: SMS, WhatsApp, calls ----------------------------------------------------------------------

    def text_message(self, channel: str) -> None:
        person = self.someone("whatsapp" if channel == "whatsapp" else "phone")
        if channel in person.open_on and self.rng.random() < 0.6:
            body = self.texts.follow_up(person, self.texts.vars(person))
        else:
            body = self.texts.text(self.texts.issue(person).short)
        self.send_text(person, channel, body)
        person.open_on.add(channel)
        log.info("%s from %s", "WhatsApp message" if channel == "whatsapp" else "SMS",
                 "a new customer" if person.customer_id is None else person.name)

    def send_text(self, person: Person, channel: str, body: str) -> None:
        assert person.phone
        prefix = "whatsapp:" if channel == "whatsapp" else ""
        sid = "SM" + self.hex(32)
        params = {"AccountSid": self.world.account_sid, "ApiVersion": "2010-04-01", "Body": body,
                  "From": prefix + person.phone, "To": prefix + (WHATSAPP_NUMBER if prefix else SMS_NUMBER),
                  "MessageSid": sid, "SmsMessageSid": sid, "SmsSid": sid, "SmsStatus": "received", "NumMedia": "0",
                  "NumSegments": "1"}
        if prefix:
            params |= {"ProfileName": person.first, "WaId": person.phone.lstrip("+")}
        self.twilio_post("/webhooks/twilio/messaging", params)

    def call(self) -> None:
        """A call nobody could take: ringing, then a voicemail (or a hang-up), its recording and transcript."""
        person = self.someone("phone")
        assert person.phone
        call_sid, recording_sid = "CA" + self.hex(32), "RE" + self.hex(32)
        base = {"AccountSid": self.world.account_sid, "ApiVersion": "2010-04-01", "CallSid": call_sid,
                "Called": SMS_NUMBER, "Caller": person.phone, "Direction": "inbound", "From": person.phone, "To": SMS_NUMBER}
        self.twilio_post("/webhooks/twilio/voice", base | {"CallStatus": "ringing"})
        person.open_on.add("phone")
        log.info("call from %s", "a new caller" if person.customer_id is None else person.name)
        hold = min(self.interval, 20.0) * self.rng.uniform(0.3, 0.6)  # how long the caller seems to talk
        if self.rng.random() < 0.2:  # hung up at the greeting
            ended = base | {"CallStatus": "completed", "CallDuration": str(self.rng.randint(4, 12))}
            self.later(hold * 0.5, "a call's status", lambda: self.twilio_post("/webhooks/twilio/voice/status", ended))
            return
        transcript = self.texts.voicemail(person, self.texts.issue(person).vars)
        seconds = self.rng.randint(25, 95)
        recording = {"RecordingSid": recording_sid, "RecordingDuration": str(seconds - 12),
                     "RecordingUrl": f"https://api.twilio.com/2010-04-01/Accounts/{self.world.account_sid}/Recordings/{recording_sid}"}
        self.later(hold, "a call's recording", lambda: self.twilio_post(
            "/webhooks/twilio/recording", base | recording | {"RecordingStatus": "completed", "CallStatus": "completed"}))
        self.later(hold, "a call's status", lambda: self.twilio_post(
            "/webhooks/twilio/voice/status", base | {"CallStatus": "completed", "CallDuration": str(seconds)}))
        self.later(hold * 1.5, "a call's transcript", lambda: self.twilio_post(
            "/webhooks/twilio/transcription", base | recording | {
                "TranscriptionSid": "TR" + call_sid[2:], "TranscriptionStatus": "completed", "TranscriptionText": transcript,
                "TranscriptionUrl": f"https://api.twilio.com/2010-04-01/Accounts/{self.world.account_sid}"
                                    f"/Transcriptions/TR{call_sid[2:]}"}))

    def twilio_post(self, path: str, params: dict[str, str]) -> None:
        """A webhook as Twilio makes it: a form post signed over our public URL (twilio_standin.sign)."""
        from agentdesk.demo.twilio_standin import sign

        url = self.base_url + path
        headers = {"X-Twilio-Signature": sign(self.world.auth_token, url, params), "User-Agent": "TwilioProxy/1.1"}
        response = self._http.post(url, data=params, headers=headers)
        if response.status_code >= 400:
            raise RuntimeError(f"{path} answered {response.status_code}: {response.text[:200]}")

    # -- web chat ------------------------------------------------------------------------------------------

    def chat(self) -> None:
        person = self.someone("email" if self.rng.random() < 0.7 else "phone")
        issue = self.texts.issue(person)
        lang, v = self.texts.lang(person), issue.vars
        hello = self.rng.choice(lang["chat_open"])
        first_line = hello + (data._lower_first(issue.short) if hello.endswith(", ") else issue.short)
        lines = [first_line] + ([self.texts.pick(lang["nudge"], v)] if self.rng.random() < 0.5 else [])
        contact = {"email": person.email} if person.email else {"phone": person.phone}
        answers = [self.texts.answer(person, v), self.texts.pick(lang["thanks"], v)]
        visitor = Visitor(
            url=f"{self.base_url.replace('http://', 'ws://')}/chat/ws?session={self.hex(32)}",
            prechat={"name": person.name, **contact}, lines=lines, answers=answers,
            pause=min(self.interval, 20.0) * self.rng.uniform(0.4, 0.8),
            stay=min(max(self.interval * self.rng.uniform(8, 15), 5.0), 240.0),
            ids=[self.hex(16) for _ in range(len(lines) + len(answers))], stopping=self.stopping,
        )
        thread = threading.Thread(target=self._visit, args=(visitor, person.name), daemon=True, name="demo-chat-visitor")
        self.visitors.add(thread)
        thread.start()
        log.info("chat visitor %s", person.name)

    def _visit(self, visitor: Visitor, name: str) -> None:
        try:
            visitor.run()
        except Exception as exc:
            if not self.stopping.is_set():
                log.warning("chat visitor %s failed: %s: %s", name, type(exc).__name__, exc)
        finally:
            self.visitors.discard(threading.current_thread())

    # -- customers answering the agent ---------------------------------------------------------------------

    def _react(self) -> None:
        while not self.world.mail.received.empty():
            self._on_email(self.world.mail.received.get_nowait())
        if self.world.twilio is not None:
            messages = self.world.twilio.messages()
            for message in messages[self._texts_seen:]:
                self._on_text(message)
            self._texts_seen = len(messages)

    def _on_email(self, mail: Mail) -> None:
        person = self.crowd.by_email.get(mail.to) if self.crowd else None
        if person is None or not mail.message_id:
            return
        thread = Thread(person, mail.subject, mail.message_id, mail.references + (mail.message_id,))
        roll = self.rng.random()
        if roll < OUT_OF_OFFICE_EMAIL:
            self.later(self.interval * self.rng.uniform(0.2, 0.5), "an out-of-office reply", lambda: self.auto_reply(thread))
        elif roll < OUT_OF_OFFICE_EMAIL + ANSWER_EMAIL:
            self.later(self.interval * self.rng.uniform(1, 4), "an email answer", lambda: self.answer_email(thread))

    def _on_text(self, message: dict[str, Any]) -> None:
        to = str(message.get("to", ""))
        channel = "whatsapp" if to.startswith("whatsapp:") else "sms"
        person = self.crowd.by_phone.get(to.removeprefix("whatsapp:")) if self.crowd else None
        if person is None or self.rng.random() >= ANSWER_TEXT:
            return
        body = self.texts.answer(person, self.texts.vars(person))

        def answer() -> None:
            self.send_text(person, channel, body)
            log.info("%s answered by %s", person.name, "WhatsApp" if channel == "whatsapp" else "SMS")

        self.later(self.interval * self.rng.uniform(1, 4), "a text answer", answer)


@dataclass
class Visitor:
    """One web-chat visitor, on its own thread: introduces themselves, writes, waits, answers the agent."""

    url: str
    prechat: dict[str, Any]
    lines: list[str]
    answers: list[str]  # one for each of the agent's first messages: the detail asked for, then thanks
    pause: float  # between the visitor's own lines, and before an answer
    stay: float  # how long they keep the widget open
    ids: list[str]  # client ids for the messages, drawn up front (deterministic)
    stopping: threading.Event

    def run(self) -> None:
        from websockets.exceptions import ConnectionClosed
        from websockets.sync.client import connect

        try:
            with connect(self.url, open_timeout=5, close_timeout=1) as ws:
                self._expect(ws, "history")
                ws.send(json.dumps({"type": "hello", **self.prechat}))
                self._expect(ws, "history")
                for i, line in enumerate(self.lines):
                    if i:
                        self._listen(ws, self.pause)
                    self._say(ws, line)
                self._listen(ws, self.stay)
        except ConnectionClosed:
            return  # the server went away (the demo is closing) or closed the chat

    def _say(self, ws: Any, text: str) -> None:
        ws.send(json.dumps({"type": "message", "text": text, "client_id": self.ids.pop(0)}))

    def _expect(self, ws: Any, kind: str) -> dict[str, Any]:
        event = json.loads(ws.recv(timeout=10))
        if event.get("type") != kind:
            raise RuntimeError(f"expected a {kind} event, got {event.get('type')!r} ({event.get('reason', '')})")
        return event

    def _listen(self, ws: Any, seconds: float) -> None:
        """Read what comes for `seconds`; an agent's message gets the visitor's next answer a moment later."""
        deadline = time.monotonic() + seconds
        answer_at: float | None = None
        while not self.stopping.is_set():
            now = time.monotonic()
            if answer_at is not None and now >= answer_at:
                self._say(ws, self.answers.pop(0))
                answer_at = None
                deadline = max(deadline, now + self.pause * 4)  # stay for the agent's next message
            if now >= deadline and answer_at is None:
                return
            try:
                event = json.loads(ws.recv(timeout=min(TICK * 2, max(deadline - now, 0.01))))
            except TimeoutError:
                continue
            if event.get("type") == "message" and event.get("from") == "agent" and self.answers and answer_at is None:
                answer_at = time.monotonic() + self.pause
