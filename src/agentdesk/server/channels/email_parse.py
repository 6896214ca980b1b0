"""Inbound email: raw RFC 5322 bytes (from SMTP or IMAP) made into an `inbound.Inbound`.

Real mail is messy, and none of it may crash the server or be half-stored: headers arrive RFC 2047-encoded,
raw 8-bit, or broken; bodies in charsets that are missing, unknown or wrong; HTML with scripts; attachments
nested in several layers. Everything here decodes with replacement rather than failing, and only a message
with no header section or no readable sender is refused (`EmailParseError`), so the sending MTA tells its
user. Pure code: no database, no sockets.

What an `Inbound` gets: the sender's address and display name, Subject, Message-ID as external id,
In-Reply-To/References as threading keys, Date as occurred_at, the readable text (HTML-only mail converted),
and in metadata the attachments (names, sizes, types; never their bytes), where quoted history starts
(`quote_at`, so the desk can fold it), and why a message counts as an auto-reply or bounce.
"""

from __future__ import annotations

import codecs
import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

from agentdesk.domain.identity import AddressError, normalize_email
from agentdesk.server.channels.html_text import html_to_text
from agentdesk.server.inbound import Inbound

log = logging.getLogger("agentdesk.email")

MAX_ID = 998  # Interaction.external_id's length
MAX_LISTED = 50  # attachments, recipients and references kept in metadata
_MSGID = re.compile(r"<([^<>]{1,990})>")
_NOT_PRINTABLE = re.compile(r"[\x00\ud800-\udfff]")  # NUL (PostgreSQL refuses it) and lone surrogates
_ADDRESS_LIKE = re.compile(r"[^\s<>\"'(),;:@]+@[^\s<>\"'(),;:@]+")
_AUTO_PRECEDENCE = {"bulk", "junk", "list", "auto_reply"}
_DAEMONS = {"mailer-daemon", "postmaster"}


class EmailParseError(ValueError):
    """A message that cannot be taken at all; the text is the reason given to the sending server."""


@dataclass
class Bounce:
    """What a delivery report (DSN) says about a message we sent."""

    original_ids: list[str]  # the Message-IDs of the messages it reports on
    failed: bool  # a final failure (a "delayed" report is not one)
    diagnostic: str


@dataclass
class ParsedEmail:
    inbound: Inbound
    bounce: Bounce | None = None  # set for a delivery report about messages it names


MAX_BODY_CHARS = 100_000  # as much as an agent's reply may have


def parse_email(raw: bytes, *, envelope_from: str | None = None, now: datetime | None = None) -> ParsedEmail:
    """Parse one message. `envelope_from`: the SMTP MAIL FROM ("" = the null sender of bounces; None = unknown)."""
    try:
        return _parse(raw, envelope_from, now)
    except EmailParseError:
        raise
    except RecursionError:
        raise EmailParseError("The message's parts are nested too deeply.") from None
    except Exception as exc:  # a case this module does not handle yet: the same every retry, so refuse it now
        log.exception("email could not be parsed")
        raise EmailParseError(f"The message could not be read ({type(exc).__name__}).") from None


def _parse(raw: bytes, envelope_from: str | None, now: datetime | None) -> ParsedEmail:
    if not raw.strip():
        raise EmailParseError("The message is empty.")
    try:
        msg = BytesParser(policy=policy.default).parsebytes(raw)
    except Exception as exc:  # the parser is lenient; this guards against a bug on a pathological input
        raise EmailParseError(f"The message could not be parsed ({type(exc).__name__}).") from None
    if _has_no_header_section(msg):
        raise EmailParseError("The message has no header section.")
    address, name = _sender(msg, envelope_from)
    now = now or datetime.now(UTC)
    text, html_only = _body_text(msg)
    full_length = len(text)
    text = text[:MAX_BODY_CHARS]  # every desk of the team caches and shows it: a 25 MB body would stall them all
    subject = _one_line(header(msg, "Subject"))[:MAX_ID] or None
    message_id = _message_id(msg) or _stand_in_id(msg, address, text)
    auto = auto_reply_reason(msg, address, envelope_from)
    meta: dict[str, Any] = {
        "message_id": message_id,
        "to": _addresses(msg, "To"),
        "cc": _addresses(msg, "Cc"),
        "attachments": attachments(msg),
    }
    if reply_to := _addresses(msg, "Reply-To"):
        meta["reply_to"] = reply_to
    if html_only:
        meta["html_only"] = True
    if full_length > MAX_BODY_CHARS:
        meta["truncated_from"] = full_length
    if (at := quote_start(text)) is not None:
        meta["quote_at"] = at
    if auto:
        meta["auto_reply"] = auto
    inbound = Inbound(
        channel="email", address=address, name=name, text=text, subject=subject, external_id=message_id,
        occurred_at=_date(msg, now), metadata=meta, references=_references(msg), auto_reply=auto is not None,
    )
    return ParsedEmail(inbound, bounce=_bounce(msg, address, subject))


# ------------------------------------------------------------------------------------------------
# Headers


def clean(text: str) -> str:
    """Text safe to store anywhere: no NUL, no lone surrogates (from undecodable bytes)."""
    return _NOT_PRINTABLE.sub("\ufffd", text)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _header_object(msg: Message, name: str, index: int = 0) -> Any:
    """The `name` header (the first, or the index-th), decoded (RFC 2047, raw UTF-8 or Windows-1252 bytes);
    None when absent."""
    raws = [value for key, value in msg.raw_items() if key.lower() == name.lower()]
    if len(raws) <= index:
        return None
    raw = re.sub(r"\r?\n", "", str(raws[index]))
    if not raw.isascii():  # 8-bit bytes in a header: RFC 6532 UTF-8, or a client that ignored RFC 2047
        raw = decode_bytes(raw.encode("utf-8", "surrogateescape"), None)
    try:
        return policy.default.header_factory(name, raw)
    except Exception:  # a header the policy's parser chokes on: its plain text is still worth keeping
        return raw


def header(msg: Message, name: str) -> str:
    """A header's decoded text, "" when absent; never raises."""
    value = _header_object(msg, name)
    if value is None:
        return ""
    try:
        return clean(str(value))
    except Exception:
        return ""


def _address_list(msg: Message, name: str, *, salvage: bool = False) -> list[tuple[str, str]]:
    """(display name, address) pairs of an address header, however broken. `salvage`: also every header of
    that name, and anything shaped like an address in them (for a sender hidden in a mangled From)."""
    found: list[tuple[str, str]] = []
    for index in range(len(msg.get_all(name) or []) if salvage else 1):
        value = _header_object(msg, name, index)
        if value is None:
            break
        try:
            found += [(str(a.display_name), str(a.addr_spec)) for a in value.addresses]
        except Exception:
            found += getaddresses([str(value)])
        if salvage:
            found += [("", address) for address in _ADDRESS_LIKE.findall(str(value))]
    return [(clean(n).strip(), clean(a).strip()) for n, a in found if "@" in a]


def _addresses(msg: Message, name: str) -> list[str]:
    return [address for _, address in _address_list(msg, name)][:MAX_LISTED]


def _sender(msg: Message, envelope_from: str | None) -> tuple[str, str | None]:
    """(address, display name) of whoever wrote it: From, else Sender, else the envelope."""
    candidates = [*_address_list(msg, "From", salvage=True), *_address_list(msg, "Sender", salvage=True)]
    if envelope_from:
        candidates.append(("", envelope_from))
    if not candidates:
        raise EmailParseError("The message has no sender address (From).")
    problem = ""
    for name, address in candidates:
        try:
            return normalize_email(address), (_one_line(name)[:200] or None)
        except AddressError as exc:
            problem = problem or str(exc)
    raise EmailParseError(f"The sender address is not valid: {problem}.")


def _has_no_header_section(msg: Message) -> bool:
    """Garbage without a blank line still "parses": its first line becomes a bogus header. Mail has a From."""
    return not any(key.lower() in ("from", "sender", "message-id", "date", "subject") for key in msg)


def message_ids(text: str) -> list[str]:
    """The <…> ids in a Message-ID, In-Reply-To or References value, without whitespace inside."""
    return ["<" + "".join(found.split()) + ">" for found in _MSGID.findall(text or "")]


def _message_id(msg: Message) -> str | None:
    found = message_ids(header(msg, "Message-ID"))
    return found[0] if found else None


def _stand_in_id(msg: Message, address: str, text: str) -> str:
    """For mail without a Message-ID: one derived from its content, so a retried delivery is still one message."""
    seed = "\n".join([address, header(msg, "Date"), header(msg, "Subject"), text])
    return f"<{hashlib.sha256(seed.encode('utf-8', 'replace')).hexdigest()[:40]}@no-message-id.agentdesk.invalid>"


def _references(msg: Message) -> list[str]:
    """Threading keys: In-Reply-To first, then References newest first (the order `ingest` tries them)."""
    ordered = message_ids(header(msg, "In-Reply-To")) + list(reversed(message_ids(header(msg, "References"))))
    return list(dict.fromkeys(ordered))[:MAX_LISTED]


def _date(msg: Message, now: datetime) -> datetime | None:
    """The Date header; a missing, unreadable or future one (a wrong clock) gives None (= received now)."""
    value = header(msg, "Date")
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when
    return None if when > now + timedelta(minutes=5) else when


# ------------------------------------------------------------------------------------------------
# Bodies


def _codec(charset: str | None) -> str | None:
    if not charset:
        return None
    try:
        name = codecs.lookup(charset.strip().strip('"').lower()).name
    except (LookupError, ValueError):
        return None
    return "cp1252" if name in ("iso8859-1", "ascii") else name  # what mail labelled so really is (as browsers do)


def _single_byte(codec: str) -> bool:
    return codec.startswith(("cp125", "iso8859", "koi8", "mac-", "cp437", "cp850", "cp866", "latin"))


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Bytes in a declared charset that may be missing, unknown or wrong: the best readable text, never an error.

    Valid UTF-8 with non-ASCII in it beats a declared single-byte charset (it is almost never a coincidence);
    otherwise the declared charset, then UTF-8, then Windows-1252 with replacement characters.
    """
    if data.isascii():
        return data.decode("ascii")
    codec = _codec(charset)
    order = ["utf-8", codec] if codec is None or _single_byte(codec) else [codec, "utf-8"]
    for candidate in order:
        if candidate:
            try:
                return data.decode(candidate)
            except (UnicodeDecodeError, LookupError):
                continue
    # Declared UTF-8 that is not: almost always Windows-1252 text mislabelled.
    return data.decode(codec if codec not in (None, "utf-8") else "cp1252", errors="replace")


def _part_text(part: Message) -> str:
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        payload = None
    if not isinstance(payload, bytes):
        return ""
    try:
        charset = part.get_content_charset()
    except Exception:
        charset = None
    return decode_bytes(payload, charset)


def _is_attachment(part: Message) -> bool:
    try:
        return part.get_content_disposition() == "attachment" or bool(part.get_filename())
    except Exception:
        return True


def _body_parts(part: Message, *, top: bool = False) -> list[Message]:
    """The parts that make up what the sender wrote, in order (one per alternative group)."""
    if _is_attachment(part):
        return []
    ctype = part.get_content_type()
    if part.get_content_maintype() == "multipart" and not part.is_multipart():
        return [part]  # declared multipart without a usable boundary: its raw body is still the text
    if part.is_multipart() and part.get_content_maintype() == "multipart":
        children = list(_children(part))
        subtype = part.get_content_subtype()
        if subtype == "alternative":
            for wanted in ("text/plain", "text/html"):
                for child in children:
                    if child.get_content_type() == wanted and not _is_attachment(child):
                        return [child]
            return next((found for child in children if (found := _body_parts(child))), [])
        if subtype in ("related", "report", "signed", "encrypted"):  # the first part is the content
            return _body_parts(children[0]) if children else []
        return [found for child in children for found in _body_parts(child)]
    if ctype in ("text/plain", "text/html") or (top and ctype.startswith("text/")):
        return [part]
    return []


def _children(part: Message) -> list[Message]:
    payload = part.get_payload()
    return [child for child in payload if isinstance(child, Message)] if isinstance(payload, list) else []


def _body_text(msg: Message) -> tuple[str, bool]:
    """(readable text, whether it came from HTML only)."""
    pieces, html_only = [], True
    for part in _body_parts(msg, top=True):
        content = _part_text(part)
        if part.get_content_type() == "text/html":
            content = html_to_text(content)
        else:
            html_only = False
        pieces.append(content.replace("\r\n", "\n").replace("\r", "\n").strip("\n"))
    text = clean("\n\n".join(piece for piece in pieces if piece.strip())).rstrip()
    return text, bool(pieces) and html_only


def attachments(msg: Message) -> list[dict[str, Any]]:
    """Every part that is not the text: [{name, size, content_type, inline}] (bytes are not kept)."""
    body = {id(part) for part in _body_parts(msg, top=True)}
    found: list[dict[str, Any]] = []

    def visit(part: Message, alternative_sibling: bool) -> None:
        ctype = part.get_content_type()
        if ctype in ("message/delivery-status", "text/rfc822-headers"):  # read by `_bounce`, not files
            return
        if part.get_content_maintype() == "multipart" and part.is_multipart():
            alternative = part.get_content_subtype() == "alternative"
            for child in _children(part):
                visit(child, alternative)
            return
        if id(part) in body or (alternative_sibling and ctype in ("text/plain", "text/html") and not _is_attachment(part)):
            return
        found.append(_attachment(part))

    visit(msg, False)
    return found[:MAX_LISTED]


def _attachment(part: Message) -> dict[str, Any]:
    try:
        name = part.get_filename()
    except Exception:
        name = None
    if part.get_content_type() == "message/rfc822":
        try:
            size = len(part.as_bytes())
        except Exception:
            size = 0
    else:
        try:
            payload = part.get_payload(decode=True)
        except Exception:
            payload = None
        size = len(payload) if isinstance(payload, bytes) else 0
    disposition = part.get_content_disposition()
    inline = disposition == "inline" or (disposition is None and bool(header(part, "Content-ID")))
    return {"name": clean(_one_line(str(name)))[:255] if name else None, "size": size,
            "content_type": part.get_content_type(), "inline": inline}


# ------------------------------------------------------------------------------------------------
# Quoted history


_ATTRIBUTION = re.compile(
    r"^\s*(On\b.{4,300}?\bwrote|Le\b.{4,300}?a\s+écrit|Am\b.{4,300}?schrieb.{0,200}?|El\b.{4,300}?escribió"
    r"|Il\b.{4,300}?ha\s+scritto|Op\b.{4,300}?geschreven)\s*:\s*$",
    re.IGNORECASE | re.DOTALL,
)
_ORIGINAL = re.compile(
    r"^\s*-{3,}\s*(Original Message|Ursprüngliche Nachricht|Message d'origine|Mensaje original|Messaggio originale)\s*-{3,}\s*$",
    re.IGNORECASE,
)
_RULE = re.compile(r"^\s*_{10,}\s*$")  # Outlook's line above the header block of the message answered
_FROM_LINE = re.compile(r"^\s*\*?(From|De|Von|Van|Da)\s*:\*?\s", re.IGNORECASE)
_SENT_LINE = re.compile(r"^\s*\*?(Sent|Date|Envoyé|Gesendet|Enviado|Verzonden|Inviato|Data)\s*:\*?\s", re.IGNORECASE)


def quote_start(text: str) -> int | None:
    """Where the quoted history at the end of a reply starts (a char offset into `text`), or None.

    Recognised: "On … wrote:" followed only by quoted lines, a trailing block of "> " lines, Outlook's
    "-----Original Message-----" and its "From: … Sent: …" header block. Inline answers between quoted lines
    are never folded: a ">" block counts only when nothing but quotes and blank lines follows it.
    """
    lines = text.split("\n")
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    tail = _Tail(lines)
    for index in range(len(lines)):
        if _starts_quote(lines, index, tail):
            at = offsets[index]
            return at if text[:at].strip() else None
    return None


class _Tail:
    """Answers "is everything from line i on quoted or blank (and not all blank)?" in constant time, so a
    huge message of ">" lines is not scanned once per line."""

    def __init__(self, lines: list[str]) -> None:
        self.last_text = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
        self.quoted_from = len(lines)
        while self.quoted_from > 0 and _quoted_or_blank(lines[self.quoted_from - 1]):
            self.quoted_from -= 1

    def only_quotes(self, index: int) -> bool:
        return self.quoted_from <= index <= self.last_text


def _quoted_or_blank(line: str) -> bool:
    return not line.strip() or line.lstrip().startswith(">")


def _starts_quote(lines: list[str], index: int, tail: _Tail) -> bool:
    line = lines[index]
    if _ORIGINAL.match(line):
        return True
    if _RULE.match(line):
        following = next((other for other in lines[index + 1:index + 3] if other.strip()), "")
        return bool(_FROM_LINE.match(following))
    if _FROM_LINE.match(line):
        return any(_SENT_LINE.match(other) for other in lines[index + 1:index + 4])
    if line.lstrip().startswith(">"):
        return tail.only_quotes(index)
    if line.lstrip()[:2].lower() in ("on", "le", "am", "el", "il", "op"):
        for span in (1, 2, 3):  # clients wrap a long attribution line
            if _ATTRIBUTION.match(" ".join(lines[index:index + span])):
                return tail.only_quotes(index + span)
    return False


# ------------------------------------------------------------------------------------------------
# Auto-replies and bounces


def auto_reply_reason(msg: Message, address: str, envelope_from: str | None) -> str | None:
    """Why this is machine-sent (RFC 3834 and common practice), or None for mail a person wrote."""
    if msg.get_content_type() == "multipart/report":
        return "bounce" if _report_type(msg) == "delivery-status" else "report"
    if address.split("@")[0] in _DAEMONS:
        return "bounce"
    if envelope_from == "" or header(msg, "Return-Path").strip() == "<>":  # the null sender: never answered
        return "bounce"
    submitted = header(msg, "Auto-Submitted").split(";")[0].strip().lower()
    if submitted and submitted != "no":
        return "auto-reply"
    if header(msg, "Precedence").strip().lower() in _AUTO_PRECEDENCE:
        return "auto-reply"
    if any(key.lower() in ("x-autoreply", "x-autorespond") for key in msg):
        return "auto-reply"
    return None


def _report_type(msg: Message) -> str:
    try:
        return str(msg.get_param("report-type") or "").lower()
    except Exception:
        return ""


def _bounce(msg: Message, address: str, subject: str | None) -> Bounce | None:
    """A delivery report's verdict and the ids of the messages it reports on; None for other mail."""
    if msg.get_content_type() == "multipart/report" and _report_type(msg) == "delivery-status":
        ids, actions, diagnostic = _report_fields(msg)
        return Bounce(ids, failed="failed" in actions, diagnostic=diagnostic) if ids else None
    if address.split("@")[0] in _DAEMONS:  # an old-style bounce: plain text quoting the original's headers
        ids = [i for i in message_ids(" ".join(re.findall(r"(?im)^\s*message-id:\s*(<[^>]*>)", _all_text(msg))))]
        delayed = re.search(r"delay|warning|will retry", subject or "", re.IGNORECASE)
        if ids:
            return Bounce(ids, failed=not delayed, diagnostic=_first_smtp_error(_all_text(msg)))
    return None


def _report_fields(msg: Message) -> tuple[list[str], set[str], str]:
    ids: list[str] = []
    actions: set[str] = set()
    diagnostics: list[str] = []
    for part in _walk(msg):
        ctype = part.get_content_type()
        if ctype == "message/delivery-status":
            for block in _children(part):
                if action := header(block, "Action").strip().lower():
                    actions.add(action)
                if diagnostic := _one_line(header(block, "Diagnostic-Code")):
                    diagnostics.append(re.sub(r"^\s*smtp\s*;\s*", "", diagnostic, flags=re.IGNORECASE))
                elif status := header(block, "Status").strip():
                    diagnostics.append(f"status {status}")
                for name in ("Original-Message-ID", "X-Original-Message-ID"):
                    ids += message_ids(header(block, name))
        elif ctype == "message/rfc822":
            inner = _children(part)
            if inner:
                ids += message_ids(header(inner[0], "Message-ID"))
        elif ctype == "text/rfc822-headers":
            try:
                headers = BytesParser(policy=policy.default).parsebytes(part.get_payload(decode=True) or b"", headersonly=True)
                ids += message_ids(header(headers, "Message-ID"))
            except Exception:
                pass
    return list(dict.fromkeys(ids)), actions, ("; ".join(dict.fromkeys(diagnostics)) or "no reason given")[:500]


def _walk(part: Message) -> list[Message]:
    """All parts, without descending into attached messages (their parts are not this message's)."""
    found = [part]
    if part.get_content_maintype() == "multipart":
        for child in _children(part):
            found += _walk(child)
    return found


def _all_text(msg: Message) -> str:
    return "\n".join(_part_text(part) for part in _walk(msg) if part.get_content_maintype() == "text")


def _first_smtp_error(text: str) -> str:
    found = re.search(r"\b[45]\d\d[ -][^\n]{0,300}", text)
    return found.group(0).strip() if found else "the recipient's mail server returned it as undeliverable"


