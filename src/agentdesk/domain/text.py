"""The one sanitiser for untrusted text (DESIGN §6).

Every string that came from outside — customer names, message bodies, subjects, file names, even agent
names — passes through `clean` (or `safe_text`, which wraps it in a Rich `Text`) before it reaches a
widget. The result is inert: no escape sequence reaches the terminal, and because widgets get `Text`
objects (never markup strings), no `[@click=…]` or `[/]` in a message is ever interpreted.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # rich is only needed by safe_text; keep this module import-light
    from rich.text import Text

# Bidi embeddings/overrides/isolates and zero-width characters: invisible, and able to reorder or hide
# what the agent reads (Trojan-Source style), so they are dropped.
_INVISIBLE = "\u061c\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2060\u2066\u2067\u2068\u2069\ufeff"


@lru_cache(maxsize=1)
def _table() -> dict[int, str]:
    table: dict[int, str] = {}
    for code in range(0x20):
        if chr(code) not in "\n\t":
            table[code] = chr(0x2400 + code)  # Unicode "control pictures": ␛ for ESC, ␇ for BEL…
    table[0x7F] = "\u2421"  # ␡
    for code in range(0x80, 0xA0):  # C1 controls (CSI 0x9b, OSC 0x9d…): shown as their code
        table[code] = f"<{code:02X}>"
    for ch in _INVISIBLE:
        table[ord(ch)] = ""
    return table


_SPACES = re.compile(r"\s+")


def clean(text: object) -> str:
    """Untrusted text made inert: controls visible, invisible reorderers dropped, newlines kept."""
    if text is None:
        return ""
    return str(text).translate(_table())


def clean_line(text: object, limit: int | None = None) -> str:
    """`clean`, folded onto one line (for previews and table cells), optionally cut to `limit` chars."""
    line = _SPACES.sub(" ", clean(text)).strip()
    if limit is not None and len(line) > limit:
        line = line[: max(limit - 1, 0)] + "…"
    return line


def safe_text(text: object, style: str = "", *, one_line: bool = False, limit: int | None = None) -> "Text":
    """A Rich `Text` holding sanitised untrusted text; widgets never parse it as markup."""
    from rich.text import Text

    body = clean_line(text, limit) if one_line else clean(text)
    return Text(body, style=style, no_wrap=one_line, end="")


_REPLY_PREFIX = re.compile(r"^\s*re\s*:", re.IGNORECASE)


def reply_subject(subject: object) -> str:
    """ "Re: <subject>" without piling up prefixes; one line (a subject from outside may hold line breaks)."""
    text = " ".join(str(subject or "").split())
    if not text:
        return "Re: your message"
    return text if _REPLY_PREFIX.match(text) else f"Re: {text}"
