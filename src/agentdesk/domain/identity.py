"""Contact addresses in one canonical form, so identity resolution is an exact-match lookup (DESIGN §4).

Phone numbers become E.164 (`+14155550100`), email addresses are lower-cased, chat ids are kept as
given. SMS, WhatsApp and voice all resolve to the *phone* identity, so one person's texts, WhatsApp
messages and calls from one number reach one customer and one timeline.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from email.utils import getaddresses, parseaddr

import phonenumbers
from phonenumbers import (
    Leniency,
    NumberParseException,
    PhoneNumberFormat,
    ValidationResult,
)

# "whatsapp" stays a recognised kind because DESIGN §4 lists it (older rows may carry it), but
# `normalize_address` never produces it: WhatsApp numbers are phone numbers.
IDENTITY_KINDS = ("phone", "email", "chat", "whatsapp")

# channel (or identity kind) -> identity kind
CHANNEL_IDENTITY = {
    "phone": "phone",
    "sms": "phone",
    "whatsapp": "phone",
    "email": "email",
    "chat": "chat",
}

CHAT_MAX_LEN = 200
EMAIL_MAX_LEN = 254  # RFC 5321 path limit

_PHONE_PREFIX = re.compile(r"^\s*(?:whatsapp|tel|sms):", re.IGNORECASE)
_MAILTO = re.compile(r"^\s*mailto:", re.IGNORECASE)
# Deliberately loose: candidates only; `normalize_email` decides.
_EMAIL_IN_TEXT = re.compile(r"[\w.%+'-]+@[\w-]+(?:\.[\w-]+)+")
# A phone number a merge suggestion keeps has at least 4 digits (the shortest numbers of any region, e.g.
# Niue's, and "+49 12", are 4; tests/unit/test_identity.py checks every region): a text with fewer digits
# has none, and phonenumbers' matcher (the costly part of the scan) is not run on it.
MIN_PHONE_DIGITS = 4
_ENOUGH_DIGITS_FOR_A_PHONE = re.compile(r"\d(?:\D*\d){%d}" % (MIN_PHONE_DIGITS - 1))
_DOMAIN_LABEL = re.compile(r"^[^\W_](?:[\w-]*[^\W_])?$")

_PARSE_REASONS = {
    NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
    NumberParseException.NOT_A_NUMBER: "not a number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    NumberParseException.TOO_SHORT_NSN: "too short",
    NumberParseException.TOO_LONG: "too long",
}
_PHONE_REASONS = {
    ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
    ValidationResult.TOO_SHORT: "too short",
    ValidationResult.TOO_LONG: "too long",
    ValidationResult.INVALID_LENGTH: "wrong length for its country",
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "too short; include the area code",
}


class AddressError(ValueError):
    """A contact address that cannot be normalised; the message is fit to show an agent."""


def _shown(raw: object) -> str:
    """The offending input, quoted and cut short so a hostile or huge value cannot flood a message."""
    text = repr(raw)
    return text if len(text) <= 60 else text[:57] + "...'"


def _phone_error(raw: str, reason: str) -> AddressError:
    return AddressError(f"{_shown(raw)} is not a valid phone number ({reason})")


def normalize_phone(raw: str, default_region: str = "US", *, strict: bool = False) -> str:
    """E.164 form of `raw`; numbers without a `+` are read as dialled from `default_region`.

    A `whatsapp:`, `tel:` or `sms:` prefix is dropped. With `strict`, the number must also fall in an
    assigned range (use it for numbers an agent types in, where a typo is likelier than a new range).
    """
    text = _PHONE_PREFIX.sub("", raw or "", count=1).strip()
    if not text:
        raise _phone_error(raw, "empty")
    try:
        number = phonenumbers.parse(text, default_region)
    except NumberParseException as exc:
        if exc.error_type == NumberParseException.INVALID_COUNTRY_CODE and not text.startswith("+"):
            raise _phone_error(raw, "no country code; start it with +") from None
        raise _phone_error(raw, _PARSE_REASONS.get(exc.error_type, "unreadable")) from None
    # Length check only by default: metadata lags real allocations and rejects reserved fictional
    # ranges (Ofcom's 07700 900xxx, used by our demo data); a right-length unassigned number just matches nobody.
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason != ValidationResult.IS_POSSIBLE:
        raise _phone_error(raw, _PHONE_REASONS.get(reason, "impossible number"))
    if strict and not phonenumbers.is_valid_number(number):
        raise _phone_error(raw, "not in an assigned number range")
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def _email_error(raw: str, reason: str) -> AddressError:
    return AddressError(f"{_shown(raw)} is not a valid email address ({reason})")


def normalize_email(raw: str) -> str:
    """The bare address from `raw` (which may be `"Name" <a@b.com>` or `mailto:a@b.com`), lower-cased.

    The whole address is lower-cased, local part included: RFC 5321 lets a server treat `Jane@` and
    `jane@` as different mailboxes, but no mainstream provider does, and agents expect a case-blind match.
    """
    text = _MAILTO.sub("", raw or "", count=1).strip()
    if not text:
        raise _email_error(raw, "empty")
    if len(getaddresses([text])) > 1:  # "a@b.com, c@d.com"; parseaddr would quietly keep the first
        raise _email_error(raw, "more than one address" if "," in text else "needs exactly one @")
    address = parseaddr(text)[1].strip()
    if not address:
        raise _email_error(raw, "unreadable")
    if address not in text:  # parseaddr silently drops spaces: "jane@exa mple.com" -> "jane@example.com"
        raise _email_error(raw, "contains spaces")
    if address.count("@") != 1:
        raise _email_error(raw, "needs exactly one @")
    if len(address) > EMAIL_MAX_LEN:
        raise _email_error(raw, f"longer than {EMAIL_MAX_LEN} characters")
    if any(ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf") for ch in address):
        raise _email_error(raw, "contains spaces or control characters")
    local, domain = address.split("@")
    if not local:
        raise _email_error(raw, "nothing before the @")
    labels = domain.split(".")
    if len(labels) < 2 or not all(_DOMAIN_LABEL.match(label) for label in labels):
        raise _email_error(raw, "the domain must look like example.com")
    return address.lower()


def normalize_chat(raw: str) -> str:
    """A chat visitor id, stripped; it is an opaque key, so its case is kept."""
    text = (raw or "").strip()
    if not text:
        raise AddressError("a chat id cannot be empty")
    if len(text) > CHAT_MAX_LEN:
        raise AddressError(f"{_shown(raw)} is not a valid chat id (longer than {CHAT_MAX_LEN} characters)")
    # Cf too: invisible format characters would let two ids that look identical differ.
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in text):
        raise AddressError(f"{_shown(raw)} is not a valid chat id (contains control characters)")
    return text


def normalize_address(channel_or_kind: str, raw: str, default_region: str = "US") -> tuple[str, str]:
    """(identity kind, normalised address) for an address that arrived on a channel (or of a kind)."""
    kind = CHANNEL_IDENTITY.get(channel_or_kind)
    if kind is None:
        expected = ", ".join(CHANNEL_IDENTITY)
        raise AddressError(f"unknown channel {_shown(channel_or_kind)}; expected one of {expected}")
    if kind == "phone":
        return kind, normalize_phone(raw, default_region)
    if kind == "email":
        return kind, normalize_email(raw)
    return kind, normalize_chat(raw)


def _phones_in_text(text: str, default_region: str) -> list[tuple[int, int, str]]:
    found = []
    for match in phonenumbers.PhoneNumberMatcher(text, default_region, leniency=Leniency.POSSIBLE):
        number = match.number
        # POSSIBLE alone also matches order numbers, dates and post codes; a suggestion must be a
        # number in an assigned range, or one the writer spelled internationally (+44 7700 900123).
        if phonenumbers.is_valid_number(number) or match.raw_string.lstrip("(").startswith("+"):
            found.append((match.start, match.end, phonenumbers.format_number(number, PhoneNumberFormat.E164)))
    return found


def _email_or_none(candidate: str) -> str | None:
    try:
        return normalize_email(candidate)
    except AddressError:
        return None


# Remembered: a customer's signature names the same addresses in every message. Only candidates of an
# address's length are kept, so a hostile text cannot fill the cache with huge strings.
_remembered_email_or_none = functools.lru_cache(maxsize=4096)(_email_or_none)


def contacts_in_text(text: str, default_region: str = "US") -> list[tuple[str, str]]:
    """(kind, address) pairs for the phone numbers and email addresses in free text, for merge suggestions.

    Normalised, de-duplicated, in order of appearance. Digits inside an email address are not a phone.
    """
    text = text or ""
    emails: list[tuple[int, int, str]] = []
    for match in _EMAIL_IN_TEXT.finditer(text) if "@" in text else ():
        candidate = match.group()
        address = (_remembered_email_or_none if len(candidate) <= EMAIL_MAX_LEN else _email_or_none)(candidate)
        if address is not None:
            emails.append((match.start(), match.end(), address))
    hits = [(start, "email", address) for start, _end, address in emails]
    phones = _phones_in_text(text, default_region) if _ENOUGH_DIGITS_FOR_A_PHONE.search(text) else []
    for start, end, address in phones:
        if not any(start < e_end and e_start < end for e_start, e_end, _ in emails):
            hits.append((start, "phone", address))
    seen: set[tuple[str, str]] = set()
    result = []
    for _start, kind, address in sorted(hits):
        if (kind, address) not in seen:
            seen.add((kind, address))
            result.append((kind, address))
    return result
