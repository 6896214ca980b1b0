"""Key names in Textual's spelling, checked without importing Textual (or pydantic: the desk's start-up reads
these before its first frame), and the message helpers the config errors share."""

from __future__ import annotations

import difflib
import string
import unicodedata
from typing import Any


def show_value(value: Any, limit: int = 60) -> str:
    """A value as it appears in messages: repr (TOML spelling for booleans), at most ``limit`` chars."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def did_you_mean(word: str, candidates: list[str] | set[str] | frozenset[str], fmt: str = '"{}"') -> str:
    match = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.6)
    return f" (did you mean {fmt.format(match[0])}?)" if match else ""


# --------------------------------------------------------------------------------------------
# Key names (Textual's spelling), validated without importing Textual


MODIFIERS: tuple[str, ...] = ("alt", "ctrl", "meta", "shift", "super")  # Textual sorts them like this
_MODIFIER_ALIASES = {"control": "ctrl", "option": "alt", "opt": "alt", "cmd": "super", "command": "super", "win": "super"}

# Same renames Textual applies to Unicode character names (textual.keys.KEY_NAME_REPLACEMENTS).
_CHAR_NAME_REPLACEMENTS = {
    "solidus": "slash",
    "reverse_solidus": "backslash",
    "commercial_at": "at",
    "hyphen_minus": "minus",
    "plus_sign": "plus",
    "low_line": "underscore",
}


def _char_key_name(ch: str) -> str:
    """Textual's key name for a single character ("?" -> "question_mark"); letters/digits unchanged."""
    if ch.isalnum():
        return ch
    try:
        name = unicodedata.name(ch).lower().replace("-", "_").replace(" ", "_")
    except ValueError:
        return ch
    return _CHAR_NAME_REPLACEMENTS.get(name, name)


_PUNCTUATION_NAMES = {_char_key_name(ch): ch for ch in string.punctuation}
NAMED_KEYS: frozenset[str] = frozenset(
    {
        "enter", "escape", "tab", "space", "backspace", "delete", "insert",
        "up", "down", "left", "right", "home", "end", "pageup", "pagedown",
        *(f"f{n}" for n in range(1, 25)),
        *_PUNCTUATION_NAMES,
    }
)  # fmt: skip
_KEY_ALIASES = {
    "return": "enter", "esc": "escape", "del": "delete", "ins": "insert", "bs": "backspace",
    "pgup": "pageup", "pgdn": "pagedown", "page_up": "pageup", "page_down": "pagedown",
    "arrowup": "up", "arrowdown": "down", "arrowleft": "left", "arrowright": "right",
}  # fmt: skip


def _check_key(key: str, whole: str) -> str:
    """Validate one key ("ctrl+s"); returns its normalized form for conflict checks."""
    where = f' in "{whole}"' if key != whole else ""
    if key == "":
        raise ValueError(f'empty key name{where}; separate keys with single commas, like "ctrl+s,f2"')
    if any(ch.isspace() for ch in key):
        raise ValueError(f'key names have no spaces, got "{key}"{where} (write "space" for the space bar)')
    if key == "+" or key.endswith("++"):
        raise ValueError(f'write "plus" for the + key, got "{key}"{where}')
    *mods, name = key.split("+")
    if len(key) > 1 and key != key.lower() and not (len(name) == 1 and not mods):
        raise ValueError(f'key names are lower-case, got "{key}"{where} (did you mean "{key.lower()}"?)')
    for mod in mods:
        if mod not in MODIFIERS:
            if mod == "":
                raise ValueError(f'empty modifier in "{key}"{where}')
            hint = f' (did you mean "{_MODIFIER_ALIASES[mod]}"?)' if mod in _MODIFIER_ALIASES else did_you_mean(mod, MODIFIERS)
            raise ValueError(
                f'unknown modifier "{mod}" in "{key}"{where}{hint}; modifiers are {", ".join(MODIFIERS)}'
            )
    if len(set(mods)) != len(mods):
        raise ValueError(f'repeated modifier in "{key}"{where}')
    if mods != sorted(mods):
        fixed = "+".join([*sorted(mods), name])
        raise ValueError(
            f'modifiers go in the order {"+".join(MODIFIERS)}, got "{key}"{where} (write "{fixed}")'
        )
    if name in MODIFIERS:
        raise ValueError(f'"{key}"{where} is only modifiers; add a key, like "{key}+s"')
    if len(name) == 1:
        if not name.isprintable():
            raise ValueError(f"expected a printable character or a key name, got {show_value(key)}{where}")
        if mods and not name.isalnum():
            # Textual only translates a lone character ("?"); with a modifier it must be the name.
            raise ValueError(
                f'with a modifier, name the character: write "{"+".join([*mods, _char_key_name(name)])}", got "{key}"{where}'
            )
        return "+".join([*mods, _char_key_name(name)])
    if name not in NAMED_KEYS:
        if name in _KEY_ALIASES:
            hint = f' (did you mean "{_KEY_ALIASES[name]}"?)'
        else:
            hint = did_you_mean(name, NAMED_KEYS)
        raise ValueError(f'unknown key "{name}" in "{key}"{where}{hint}')
    return key


def parse_key_list(value: str) -> list[str]:
    """Validate a comma-separated list of Textual key names; return the normalized keys.

    Raises ``ValueError`` with a plain-English message for anything Textual would not match.
    """
    if value == "":
        raise ValueError('expected comma-separated key names like "ctrl+s,f2", got ""')
    return [_check_key(key, value) for key in value.split(",")]
