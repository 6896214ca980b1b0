"""How an SMS is billed: its encoding and how many segments it takes (GSM 03.38 / 3GPP TS 23.038). Pure code.

A text made only of GSM-7 characters travels 7-bit: 160 units in one message, 153 per part once it is split
(each part carries a header). Characters of the GSM-7 extension table (€ [ ] { } ~ ^ | \\ and form feed) take
two units (an escape and the character). A single character outside GSM-7 switches the whole message to
UCS-2: 70 UTF-16 units in one message, 67 per part, and a character beyond the BMP (most emoji) takes two.
A character is never split between two parts, so a part may hold one unit less than its maximum.
"""

from __future__ import annotations

from dataclasses import dataclass

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

SINGLE = {"GSM-7": 160, "UCS-2": 70}  # units in a message sent whole
PART = {"GSM-7": 153, "UCS-2": 67}  # units in each part of a split message


@dataclass(frozen=True)
class SmsCount:
    chars: int  # characters as the agent sees them (code points)
    encoding: str  # "GSM-7" or "UCS-2"
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int  # messages the carrier bills (0 for an empty text)

    def describe(self) -> str:
        """The composer's line: "42 chars · GSM-7 · 1 segment"."""
        chars = f"{self.chars} char{'' if self.chars == 1 else 's'}"
        return f"{chars} · {self.encoding} · {self.segments} segment{'' if self.segments == 1 else 's'}"


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def unit_costs(text: str, encoding: str) -> list[int]:
    """Units each character takes in `encoding`."""
    if encoding == "GSM-7":
        return [2 if ch in GSM7_EXTENSION else 1 for ch in text]
    return [2 if ord(ch) > 0xFFFF else 1 for ch in text]  # a surrogate pair in UTF-16


def count(text: str) -> SmsCount:
    encoding = "GSM-7" if is_gsm7(text) else "UCS-2"
    costs = unit_costs(text, encoding)
    units = sum(costs)
    return SmsCount(chars=len(text), encoding=encoding, units=units, segments=_segments(costs, encoding))


def _segments(costs: list[int], encoding: str) -> int:
    if not costs:
        return 0
    if sum(costs) <= SINGLE[encoding]:
        return 1
    parts, used = 1, 0
    for cost in costs:
        if used + cost > PART[encoding]:  # this character opens the next part, whole
            parts, used = parts + 1, 0
        used += cost
    return parts
