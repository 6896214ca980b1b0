"""Web chat: the widget page (`GET /chat`) and its websocket (`/chat/ws?session=<id>`).

Who the visitor is. The widget makes a random 128-bit session id (32 hex digits) and keeps it in localStorage,
so a reload or a network blip resumes the same chat. That id is a bearer secret: whoever holds it reads the
transcript and writes as the visitor. Conversations, identities and external ids are copied into every agent's
local cache, so the server stores only `session_key(id)`, a SHA-256 digest of it:
- the customer is resolved by the chat identity `visitor:<key>`, and the conversation is threaded by
  `thread_key=<key>`: one session is one identity and one conversation (DESIGN §4), whatever happens to the
  socket; external ids are `chat:<key>:<client_id>`, so a message the widget sends again is stored once;
- the pre-chat email or phone number is a claim nobody verified. Resolving the visitor by it would let anyone
  who types maria@example.com write onto Maria's timeline as Maria. So it is stored on every message as
  metadata (`prechat`, `email`, `phone`), where the agent sees it and where `ingest` turns a match with a known
  customer into a MergeSuggestion the agent accepts or dismisses (never a silent merge). An unknown address is
  not added as an identity either: the real owner's first email would otherwise land on a stranger's record.

Protocol (JSON text frames). Client -> server:
  {"type": "hello", "name", "email"?, "phone"?}   pre-chat: a name and at least an email or a phone number
  {"type": "message", "text", "client_id"}        client_id makes a resent message idempotent
  {"type": "typing"}                              accepted and ignored (see below)
Server -> client:
  {"type": "history", "messages": [...], "prechat_required": bool}   on connect and after a hello (a full
                                                 replacement of what the widget shows)
  {"type": "message", "id", "from": "agent"|"visitor", "author", "text", "at", "client_id"?}
  {"type": "typing", "author"}                    an agent is typing (their first name)
  {"type": "error", "reason", "message", "client_id"?}   reason: a stable code; message: for people
A bad frame (garbage JSON, too long, too fast, no pre-chat yet) gets an error event and the socket stays open;
a client that keeps flooding after being told is closed with 1008. A page on another origin is refused at the
handshake (close code 1008 before accept, which uvicorn answers with HTTP 403): the Origin's host must be the
host the socket was opened to, the configured public_url, or one of `[channels.chat] allowed_origins`. A client
that sends no Origin (not a browser) is let in: Origin checks protect browsers, and the chat is public anyway.

Live push across server processes. Agents' replies are written by the sync API, perhaps by another process;
the only thing all processes share is the database. So one `ChatRelay` per process subscribes to the live-event
hub (events.py), which polls the change log. On each poke it reads the change log's new entries (seqs commit
in order, see changes.py) for the conversations that have a visitor connected here, and hands new chat messages
(never notes) to their sockets; an agent reply carried to an open socket moves from `sent` to `delivered` through
the change log, so the agent's desk shows it. Typing signals of those conversations' teams arrive through the
same subscription and are forwarded with the agent's first name. The visitor's own typing is not forwarded:
Signal rows belong to agents (a foreign key), and announcing a visitor would need a schema change.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import json
import logging
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from fastapi import APIRouter, WebSocket
from fastapi.responses import HTMLResponse, Response
from sqlmodel import select
from starlette.concurrency import run_in_threadpool

from agentdesk.domain.clock import to_iso
from agentdesk.domain.identity import AddressError, normalize_email, normalize_phone
from agentdesk.server.changes import begin_write, record_upsert
from agentdesk.server.db import session as open_session
from agentdesk.server.inbound import Inbound, InboundError, ingest
from agentdesk.server.limits import TokenBuckets
from agentdesk.server.models import Agent, Change, Conversation, Interaction
from agentdesk.server.routing import NoTeam

if TYPE_CHECKING:
    from agentdesk.config import Settings
    from agentdesk.server.events import Hub, Subscriber

log = logging.getLogger("agentdesk.webchat")

MAX_TEXT = 5_000  # characters of one message
MAX_FRAME = 64 * 1024  # characters of one frame, checked before parsing (5,000 characters escaped as \uXXXX fit)
MAX_NAME = 100
RATE, BURST = 10.0, 10  # frames per second per session (every process counts its own)
FLOOD_CLOSE = 50  # frames refused in a row for speed before the socket is closed
HISTORY_LIMIT = 500  # newest messages sent on connect
OUTBOX_SIZE = 1_000  # events waiting for one slow socket before it is closed (its widget reconnects)
CHANGE_PAGE = 5_000  # change-log seqs the relay reads per query

SESSION_ID = re.compile(r"^[0-9a-f]{32}$")
CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
RELAY_AGENT = "webchat-relay"  # the relay's name among the hub's subscribers (not an agent row)
_STATIC = "static"
_ASSETS = {"chat.js": "text/javascript; charset=utf-8", "chat.css": "text/css; charset=utf-8"}


def session_key(session_id: str) -> str:
    """What the database knows of a session id (see the module docstring): 128 bits of its SHA-256."""
    return hashlib.sha256(f"agentdesk-chat:{session_id}".encode()).hexdigest()[:32]


def chat_address(key: str) -> str:
    return f"visitor:{key}"


# --- origins ------------------------------------------------------------------------------------------------------


def _netloc(origin: str) -> str | None:
    """host[:port] of an origin like "https://www.example.com", lower-cased, default port dropped."""
    try:
        parts = urlsplit(origin.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not host:
        return None
    default = {"http": 80, "https": 443}[parts.scheme]
    host = f"[{host}]" if ":" in host else host
    return host if port in (None, default) else f"{host}:{port}"


def _normal_origin(origin: str) -> str | None:
    netloc = _netloc(origin)
    return None if netloc is None else f"{urlsplit(origin.strip()).scheme}://{netloc}"


def origin_allowed(origin: str, host: str | None, allowed: list[str], public_url: str = "") -> bool:
    """May a page of `origin` open the chat socket that was opened to `host` (the Host header)?"""
    if origin.strip() in allowed:  # e.g. "null", if an admin really wants sandboxed pages
        return True
    normal = _normal_origin(origin)
    if normal is None:
        return False
    if normal in {_normal_origin(item) for item in allowed} or (public_url and normal == _normal_origin(public_url)):
        return True
    own = _netloc(f"http://{host}") if host else None
    return own is not None and _netloc(origin) in (own, own.removesuffix(":80"))


def frame_ancestors(allowed: list[str], public_url: str) -> str:
    """The pages that may show the widget in a frame: its own origin and the allowed ones."""
    sources = ["'self'"] + [o for o in (_normal_origin(item) for item in [*allowed, public_url] if item) if o]
    return " ".join(dict.fromkeys(sources))


# --- pre-chat ------------------------------------------------------------------------------------------------------


class PrechatError(ValueError):
    def __init__(self, message: str, field_name: str) -> None:
        super().__init__(message)
        self.field = field_name


def parse_prechat(data: dict[str, Any], default_region: str) -> dict[str, str]:
    """{"name", "email"?, "phone"?} normalised, or PrechatError naming the field to fix."""
    name, email, phone = (data.get(key) for key in ("name", "email", "phone"))
    if not isinstance(name, str) or not name.strip():
        raise PrechatError("Please tell us your name.", "name")
    if len(name) > MAX_NAME:
        raise PrechatError(f"Your name is longer than {MAX_NAME} characters.", "name")
    found = {"name": " ".join(name.split())}
    for key, value, normalize in (("email", email, normalize_email), ("phone", phone, lambda raw: normalize_phone(raw, default_region))):
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if not isinstance(value, str):
            raise PrechatError(f"The {key} must be text.", key)
        try:
            found[key] = normalize(value)
        except AddressError as exc:
            raise PrechatError(str(exc)[0].upper() + str(exc)[1:] + ".", key) from None
    if "email" not in found and "phone" not in found:
        raise PrechatError("Please give an email address or a phone number, so we can get back to you.", "email")
    return found


# --- database side (run in worker threads) -----------------------------------------------------------------------


@dataclass(frozen=True)
class Outgoing:
    """An event for one socket; `deliver`: agent replies that become `delivered` once it is sent."""

    event: dict[str, Any]
    deliver: tuple[str, ...] = ()


def _messages() -> Any:
    """Chat messages a visitor may see (inbound and outbound on the chat channel; never notes), with authors."""
    return (
        select(Interaction, Agent.name)
        .join(Agent, Agent.id == Interaction.author_id, isouter=True)  # type: ignore[arg-type]
        .where(Interaction.channel == "chat", Interaction.direction.in_(("inbound", "outbound")))  # type: ignore[attr-defined]
    )


def _first_name(name: str | None) -> str:
    return name.split()[0] if name and name.split() else "Agent"


def message_event(row: Interaction, agent_name: str | None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "message", "id": row.id, "text": row.text, "at": to_iso(row.occurred_at)}
    if row.direction == "inbound":
        prechat = (row.meta or {}).get("prechat")
        event.update({"from": "visitor", "author": str(prechat.get("name", "")) if isinstance(prechat, dict) else ""})
        client_id = (row.meta or {}).get("client_id")
        if client_id:
            event["client_id"] = client_id
    else:
        event.update({"from": "agent", "author": _first_name(agent_name)})
    return event


def _undelivered(row: Interaction) -> bool:
    return row.direction == "outbound" and row.delivery_status == "sent"


@dataclass(frozen=True)
class Room:
    """The conversation of a session, as a socket needs it."""

    conversation_id: str
    team_id: str
    prechat: dict[str, str] | None  # what the visitor last introduced themselves with


def find_room(engine: sa.Engine, key: str) -> Room | None:
    with open_session(engine) as db:
        conversation = db.exec(
            select(Conversation).where(Conversation.channel == "chat", Conversation.thread_key == key).order_by(Conversation.created_at)  # type: ignore[arg-type]
        ).first()
        if conversation is None:
            return None
        latest = db.exec(
            select(Interaction.meta)
            .where(Interaction.conversation_id == conversation.id, Interaction.channel == "chat", Interaction.direction == "inbound")
            .order_by(Interaction.occurred_at.desc())  # type: ignore[attr-defined]
            .limit(1)
        ).first()
        prechat = (latest or {}).get("prechat")
        return Room(conversation.id, conversation.team_id, prechat if isinstance(prechat, dict) else None)


def read_messages(engine: sa.Engine, conversation_id: str) -> list[Outgoing]:
    """The newest HISTORY_LIMIT chat messages of a conversation, oldest first."""
    with open_session(engine) as db:
        query = _messages().where(Interaction.conversation_id == conversation_id)
        newest = query.order_by(Interaction.occurred_at.desc(), Interaction.id.desc()).limit(HISTORY_LIMIT)  # type: ignore[attr-defined]
        rows = list(reversed(db.exec(newest).all()))
    return [Outgoing(message_event(row, name), (row.id,) if _undelivered(row) else ()) for row, name in rows]


def read_history(engine: sa.Engine, conversation_id: str | None, prechat_required: bool) -> Outgoing:
    messages = read_messages(engine, conversation_id) if conversation_id is not None else []
    return Outgoing(
        {"type": "history", "messages": [m.event for m in messages], "prechat_required": prechat_required},
        tuple(interaction_id for m in messages for interaction_id in m.deliver),
    )


def store_message(engine: sa.Engine, item: Inbound, default_region: str) -> tuple[Outgoing, Room]:
    """Ingest one visitor message (once per client id); its echo for the socket and the conversation it is in."""
    with open_session(engine) as db:
        result = ingest(db, item, default_region=default_region)
        row, name = db.exec(_messages().where(Interaction.id == result.interaction_id)).one()
        team_id = db.exec(select(Conversation.team_id).where(Conversation.id == result.conversation_id)).one()
    return Outgoing(message_event(row, name)), Room(result.conversation_id, team_id, item.metadata.get("prechat"))


def mark_delivered(engine: sa.Engine, interaction_ids: tuple[str, ...]) -> None:
    """Agent replies that reached a visitor's socket: sent -> delivered, through the change log."""
    with open_session(engine) as db:
        begin_write(db)  # first, so the status read below stays true until commit
        for interaction_id in interaction_ids:
            row = db.get(Interaction, interaction_id, populate_existing=True)
            if row is not None and row.delivery_status == "sent":
                row.delivery_status = "delivered"
                record_upsert(db, row)
        db.commit()


@dataclass
class Changed:
    messages: list[tuple[str, Outgoing]] = field(default_factory=list)  # conversation id, its message
    teams: dict[str, str] = field(default_factory=dict)  # conversation id -> team id, for those that changed


def read_changed(engine: sa.Engine, after: int, upto: int, watched: set[str]) -> Changed:
    """Chat messages and team moves of the `watched` conversations recorded in the change log in (after, upto]."""
    changed = Changed()
    with open_session(engine) as db:
        message_ids: set[str] = set()
        conversations: set[str] = set()
        for start in range(after, upto, CHANGE_PAGE):
            entries = db.exec(
                select(Change.entity, Change.entity_id, Change.conversation_id).where(
                    Change.seq > start, Change.seq <= min(upto, start + CHANGE_PAGE),  # type: ignore[operator]
                    Change.entity.in_(("interactions", "conversations")),  # type: ignore[attr-defined]
                )
            ).all()
            for entity, entity_id, conversation_id in entries:
                if conversation_id in watched:
                    (message_ids if entity == "interactions" else conversations).add(entity_id)
        if message_ids:
            query = _messages().where(Interaction.id.in_(message_ids)).order_by(Interaction.occurred_at, Interaction.id)  # type: ignore[attr-defined]
            for row, name in db.exec(query):
                deliver = (row.id,) if _undelivered(row) else ()
                changed.messages.append((row.conversation_id, Outgoing(message_event(row, name), deliver)))
        if conversations:
            query = select(Conversation.id, Conversation.team_id).where(Conversation.id.in_(conversations))  # type: ignore[attr-defined]
            changed.teams = dict(db.exec(query).all())
    return changed


def agent_name(engine: sa.Engine, agent_id: str) -> str:
    with open_session(engine) as db:
        agent = db.get(Agent, agent_id)
        return _first_name(agent.name if agent else None)


# --- the relay: one per process ---------------------------------------------------------------------------------


def typing_signals(chunk: bytes) -> list[tuple[str, str]]:
    """(agent id, conversation id) of the `typing` events in a chunk of the hub's SSE bytes."""
    found = []
    for block in chunk.split(b"\n\n"):
        lines = block.split(b"\n")
        if b"event: typing" not in lines:
            continue
        for line in lines:
            if line.startswith(b"data: "):
                try:
                    data = json.loads(line[6:])
                    found.append((str(data["agent_id"]), str(data["conversation_id"])))
                except (ValueError, KeyError, TypeError):
                    log.warning("unreadable typing event from the hub")
    return found


class ChatRelay:
    """Hands new chat messages and agents' typing to the visitor sockets open in this process."""

    def __init__(self, engine: sa.Engine, hub: Hub) -> None:
        self.engine = engine
        self.hub = hub
        self.rooms: dict[str, set[VisitorSocket]] = {}  # conversation id -> its open sockets
        self.teams: dict[str, str] = {}  # conversation id -> team id (typing is fanned out by team)
        self.cursor = 0  # change-log seq read up to
        self._sub: Subscriber | None = None
        self._task: asyncio.Task[None] | None = None
        self._names: dict[str, str] = {}  # agent id -> first name

    def watch(self, visitor: VisitorSocket, room: Room) -> None:
        """Call before reading the room's history: what commits later reaches the socket through the relay."""
        self._ensure_running()
        self.rooms.setdefault(room.conversation_id, set()).add(visitor)
        self.teams[room.conversation_id] = room.team_id
        self._sync_teams()

    def unwatch(self, visitor: VisitorSocket, conversation_id: str) -> None:
        room = self.rooms.get(conversation_id)
        if room is not None:
            room.discard(visitor)
            if not room:
                del self.rooms[conversation_id]
                self.teams.pop(conversation_id, None)
                self._sync_teams()

    def _sync_teams(self) -> None:
        if self._sub is not None:
            self._sub.teams = frozenset(self.teams.values())

    def _ensure_running(self) -> None:
        if self._task is not None and not self._task.done():
            return
        if not self.hub.running:
            log.warning("the live-event hub is not running: agents' chat replies reach visitors when they reconnect")
            return
        self.cursor = self.hub.seq
        self._sub = self.hub.subscribe(RELAY_AGENT, frozenset(self.teams.values()), sent_seq=self.cursor)
        self._task = asyncio.get_running_loop().create_task(self._run(self._sub), name="agentdesk-webchat-relay")

    async def _run(self, sub: Subscriber) -> None:
        try:
            retry = False
            while not sub.closed:
                typing = [] if retry else await self._next(sub)
                if sub.closed:
                    return
                retry = False
                try:
                    await self._forward_typing(typing)
                    if self.hub.seq > self.cursor:
                        await self._refresh(self.hub.seq)
                        sub.sent_seq = self.cursor
                except Exception:
                    log.exception("chat relay could not read new messages; retrying")
                    retry = True
                    await asyncio.sleep(1.0)
        finally:
            self.hub.unsubscribe(sub)

    @staticmethod
    async def _next(sub: Subscriber) -> list[tuple[str, str]]:
        """Wait for the hub, then take all it queued: the typing signals (pokes and presence only wake us)."""
        typing: list[tuple[str, str]] = []
        for item in await sub.queue.take():
            if isinstance(item, bytes):
                typing.extend(typing_signals(item))
        sub.poke_queued = False
        sub.lagged = False  # nothing here depends on the dropped presence events
        return typing

    async def _forward_typing(self, signals: list[tuple[str, str]]) -> None:
        for agent_id, conversation_id in signals:
            sockets = self.rooms.get(conversation_id)
            if not sockets:
                continue
            if agent_id not in self._names:
                self._names[agent_id] = await run_in_threadpool(agent_name, self.engine, agent_id)
            for visitor in list(sockets):
                visitor.offer(Outgoing({"type": "typing", "author": self._names[agent_id]}))

    async def _refresh(self, upto: int) -> None:
        if not self.rooms:  # nobody to tell: skip the read
            self.cursor = upto
            return
        changed = await run_in_threadpool(read_changed, self.engine, self.cursor, upto, set(self.rooms))
        self.cursor = upto
        for conversation_id, team_id in changed.teams.items():
            if conversation_id in self.teams:
                self.teams[conversation_id] = team_id  # transferred: its new team's typing is wanted
        self._sync_teams()
        for conversation_id, outgoing in changed.messages:
            for visitor in list(self.rooms.get(conversation_id, ())):
                visitor.offer(outgoing)


# --- one socket ------------------------------------------------------------------------------------------------------


class VisitorSocket:
    """One open widget: reads the visitor's frames; one writer task sends everything, in order, once."""

    def __init__(self, socket: WebSocket, key: str, engine: sa.Engine, relay: ChatRelay, limits: TokenBuckets, region: str) -> None:
        self.socket = socket
        self.key = key
        self.engine = engine
        self.relay = relay
        self.limits = limits
        self.region = region
        self.room: Room | None = None
        self.prechat: dict[str, str] | None = None
        self.outbox: asyncio.Queue[Outgoing | None] = asyncio.Queue(OUTBOX_SIZE)
        self.sent: set[str] = set()  # message ids this socket has carried
        self.overflowed = False
        self.refused_in_a_row = 0

    def offer(self, outgoing: Outgoing) -> None:
        try:
            self.outbox.put_nowait(outgoing)
        except asyncio.QueueFull:
            self.overflowed = True  # the writer closes the socket; the widget reconnects and gets the history

    async def run(self) -> None:
        try:
            self.room = await run_in_threadpool(find_room, self.engine, self.key)
            if self.room is not None:
                self.prechat = self.room.prechat
                self.relay.watch(self, self.room)
            await self.send_history()
        except Exception:
            log.exception("could not open a chat session")
            await self._close(1011, "Chat unavailable; try again")
            if self.room is not None:
                self.relay.unwatch(self, self.room.conversation_id)
            return
        writer = asyncio.get_running_loop().create_task(self._write())
        try:
            await self._read()
        finally:
            if self.room is not None:
                self.relay.unwatch(self, self.room.conversation_id)
            writer.cancel()

    async def send_history(self) -> None:
        conversation_id = self.room.conversation_id if self.room else None
        self.offer(await run_in_threadpool(read_history, self.engine, conversation_id, self.prechat is None))

    def error(self, reason: str, message: str, **extra: Any) -> None:
        self.offer(Outgoing({"type": "error", "reason": reason, "message": message, **extra}))

    # writing

    async def _write(self) -> None:
        while True:
            outgoing = await self.outbox.get()
            if self.overflowed:
                log.info("chat socket closed: it fell %d events behind", OUTBOX_SIZE)
                await self._close(1013, "Too far behind; reconnect")
                return
            if outgoing is None or not await self._send(outgoing):
                return
            if outgoing.deliver:
                try:
                    await run_in_threadpool(mark_delivered, self.engine, outgoing.deliver)
                except Exception:
                    log.exception("could not mark chat replies delivered")

    async def _send(self, outgoing: Outgoing) -> bool:
        event = outgoing.event
        if event["type"] == "message":
            if event["id"] in self.sent:
                return True
            self.sent.add(event["id"])
        elif event["type"] == "history":
            self.sent.update(message["id"] for message in event["messages"])
        try:
            await self.socket.send_text(json.dumps(event, ensure_ascii=False))
        except Exception:  # the socket went away; its reader sees the disconnect
            return False
        return True

    async def _close(self, code: int, reason: str) -> None:
        try:
            await self.socket.close(code, reason)
        except Exception:
            pass  # already closed

    # reading

    async def _read(self) -> None:
        while True:
            frame = await self.socket.receive()
            if frame["type"] == "websocket.disconnect":
                return
            text = frame.get("text")
            if text is None:
                self.error("bad_message", "Send JSON text frames, not binary ones.")
                continue
            if not self._within_rate():
                if self.refused_in_a_row > FLOOD_CLOSE:
                    log.info("chat socket closed: it kept sending faster than %s frames a second", RATE)
                    self.offer(None)
                    await self._close(1008, "Too many messages")
                    return
                self.error("rate_limited", f"Too many messages; at most {RATE:g} a second. Wait a moment and send again.",
                           **_client_id_of(text))
                continue
            if len(text) > MAX_FRAME:
                self.error("too_long", f"That message is too long; the limit is {MAX_TEXT:,} characters.")
                continue
            await self._handle(text)

    def _within_rate(self) -> bool:
        if self.limits.take(self.key) > 0:
            self.refused_in_a_row += 1
            return False
        self.refused_in_a_row = 0
        return True

    async def _handle(self, text: str) -> None:
        try:
            data = json.loads(text)
        except ValueError:
            self.error("bad_json", "That frame is not JSON.")
            return
        kind = data.get("type") if isinstance(data, dict) else None
        handler = {"hello": self._hello, "message": self._message, "typing": self._typing}.get(kind) if isinstance(kind, str) else None
        if handler is None:
            self.error("bad_message", 'Expected a JSON object whose "type" is "hello", "message" or "typing".')
            return
        try:
            await handler(data)
        except Exception:  # a database hiccup: say so, keep the socket
            log.exception("chat frame of type %s failed", kind)
            self.error("unavailable", "Something went wrong on our side. Please try again.", **_client_id_of(text))

    async def _hello(self, data: dict[str, Any]) -> None:
        try:
            self.prechat = parse_prechat(data, self.region)
        except PrechatError as exc:
            self.error("invalid_prechat", str(exc), field=exc.field)
            return
        await self.send_history()

    async def _typing(self, data: dict[str, Any]) -> None:
        """Nothing to do: agents are not told (see the module docstring)."""

    async def _message(self, data: dict[str, Any]) -> None:
        client_id, text = data.get("client_id"), data.get("text")
        if not isinstance(client_id, str) or not CLIENT_ID.match(client_id):
            self.error("bad_message", "Each message needs a client_id of 1 to 64 letters, digits, '-' or '_'.")
            return
        if not isinstance(text, str) or not text.strip():
            self.error("bad_message", "A message needs some text.", client_id=client_id)
            return
        if len(text) > MAX_TEXT:
            self.error("too_long", f"That message is too long; the limit is {MAX_TEXT:,} characters.", client_id=client_id)
            return
        if self.prechat is None:
            self.error("prechat_required", "Tell us your name and an email address or phone number first.", client_id=client_id)
            return
        try:
            echo, room = await run_in_threadpool(store_message, self.engine, self._inbound(text, client_id), self.region)
        except (NoTeam, InboundError) as exc:
            log.error("chat message refused: %s", exc)
            self.error("unavailable", "The chat cannot take messages right now. Please try again later.", client_id=client_id)
            return
        except Exception:
            log.exception("could not store a chat message")
            self.error("unavailable", "Your message could not be saved. Please send it again.", client_id=client_id)
            return
        self.offer(echo)
        if self.room is None:  # the first message opened the conversation: follow it, and catch up on it
            self.room = room
            self.relay.watch(self, room)
            for outgoing in await run_in_threadpool(read_messages, self.engine, room.conversation_id):
                self.offer(outgoing)  # what another tab or an agent wrote before the watch began (the rest is skipped)

    def _inbound(self, text: str, client_id: str) -> Inbound:
        prechat = self.prechat or {}
        contacts = {key: prechat[key] for key in ("email", "phone") if key in prechat}
        return Inbound(
            channel="chat", address=chat_address(self.key), name=prechat.get("name"), text=text, thread_key=self.key,
            external_id=f"chat:{self.key}:{client_id}", metadata={"prechat": prechat, **contacts, "client_id": client_id},
        )


def _client_id_of(text: str) -> dict[str, str]:
    """The client_id of a refused frame, when it is readable cheaply, so the widget can send it again."""
    match = re.search(r'"client_id"\s*:\s*"([A-Za-z0-9_-]{1,64})"', text[:MAX_FRAME])
    return {"client_id": match.group(1)} if match else {}


# --- HTTP --------------------------------------------------------------------------------------------------------


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(_STATIC, name).read_text(encoding="utf-8")


class _HideSessionIds(logging.Filter):
    """uvicorn logs each websocket handshake with its query string; the session id in it is a visitor's
    secret (it reads and writes their chat), so it never reaches a log."""

    _SESSION = re.compile(r"(session=)[^&\s\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "session=" in message:
            record.msg, record.args = self._SESSION.sub(r"\1…", message), ()
        return True


def _hide_session_ids() -> None:
    for name in ("uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _HideSessionIds) for f in logger.filters):
            logger.addFilter(_HideSessionIds())


def router(settings: Settings) -> APIRouter:
    """The widget page, its script and style, and the websocket."""
    _hide_session_ids()
    config = settings.channels.chat
    public_url = settings.server.public_url
    region = settings.identity.default_region
    limits = TokenBuckets(RATE, BURST)
    page = _asset("chat.html").replace("{{TITLE}}", html.escape(config.title, quote=True))
    assets = {name: _asset(name) for name in _ASSETS}
    security = {
        "Content-Security-Policy": (
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
            f"base-uri 'none'; form-action 'none'; frame-ancestors {frame_ancestors(config.allowed_origins, public_url)}"
        ),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    api = APIRouter(tags=["chat"])

    @api.get("/chat", response_class=HTMLResponse, include_in_schema=False)
    def chat_page() -> HTMLResponse:
        return HTMLResponse(page, headers={**security, "Cache-Control": "no-cache"})

    @api.get("/chat/{name}", include_in_schema=False)
    def chat_asset(name: str) -> Response:
        if name not in _ASSETS:
            return Response("Not found", status_code=404, media_type="text/plain")
        return Response(assets[name], media_type=_ASSETS[name], headers={**security, "Cache-Control": "no-cache"})

    @api.websocket("/chat/ws")
    async def chat_socket(websocket: WebSocket) -> None:
        origin = websocket.headers.get("origin")
        if origin is not None and not origin_allowed(origin, websocket.headers.get("host"), config.allowed_origins, public_url):
            log.info("chat websocket refused: origin %r is not allowed", origin[:100])
            await websocket.close(code=1008)
            return
        await websocket.accept()
        session_id = websocket.query_params.get("session", "")
        if not SESSION_ID.match(session_id):
            await websocket.send_text(json.dumps({
                "type": "error", "reason": "bad_session", "message": "The session id must be 32 lower-case hex digits.",
            }))
            await websocket.close(1008, "Bad session id")
            return
        app = websocket.app
        relay = getattr(app.state, "chat_relay", None)
        if relay is None:
            relay = app.state.chat_relay = ChatRelay(app.state.engine, app.state.hub)
        await VisitorSocket(websocket, session_key(session_id), app.state.engine, relay, limits, region).run()

    return api
