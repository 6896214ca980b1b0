"""Canned responses: the admin's `[[canned]]` templates, rendered for one conversation. Pure code.

Templates are Jinja2 in a sandbox (no attribute tricks reach Python internals) with StrictUndefined, so a
misspelt variable is an error the agent reads, never a silent blank. Variables come from outside (customer
names, subjects…) and are cleaned before they are rendered; the result is plain text for the composer.
jinja2 is imported on first use: the desk's startup never pays for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol

from agentdesk.domain.text import clean

if TYPE_CHECKING:
    from jinja2.sandbox import SandboxedEnvironment

NAME_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"
_TOKEN = re.compile(rf"(?:^|(?<=\s))::({NAME_PATTERN})?$")

# What a template may use; each group's keys are always present (empty when unknown).
VARIABLES: dict[str, tuple[str, ...]] = {
    "customer": ("name", "first_name", "email", "phone"),
    "conversation": ("subject", "channel", "id"),
    "agent": ("name",),
}


class CannedError(ValueError):
    """A template that cannot be used, in words for the agent (or the admin checking the config)."""


class Canned(Protocol):
    name: str
    text: str
    title: str
    channels: list[str]


@lru_cache(maxsize=1)
def _environment() -> SandboxedEnvironment:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    # Plain text for a terminal: no HTML escaping; keep the template's own trailing newline out.
    return SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)


def check_template(text: str) -> None:
    """Raise CannedError when `text` is not a valid template (the config loader calls this)."""
    from jinja2 import TemplateSyntaxError

    try:
        _environment().parse(text)
    except TemplateSyntaxError as exc:
        raise CannedError(f"template error on line {exc.lineno}: {exc.message}") from None


def variables(
    *, customer_name: object = "", first_name: object = "", email: object = "", phone: object = "",
    subject: object = "", channel: object = "", conversation_id: object = "", agent_name: object = "",
) -> dict[str, dict[str, str]]:
    """The template's variables, each value cleaned (they come from customers, the server and the cache)."""
    first = first_name or (str(customer_name).split()[0] if str(customer_name or "").split() else "")
    values = {
        "customer": {"name": customer_name, "first_name": first, "email": email, "phone": phone},
        "conversation": {"subject": subject, "channel": channel, "id": conversation_id},
        "agent": {"name": agent_name},
    }
    return {group: {key: clean(value or "") for key, value in items.items()} for group, items in values.items()}


def render(canned: Canned, values: Mapping[str, Mapping[str, str]]) -> str:
    """The canned response's text for these variables; CannedError says what is wrong with the template."""
    from jinja2 import TemplateError, TemplateSyntaxError, UndefinedError
    from jinja2.exceptions import SecurityError

    where = f"Canned response {canned.name!r}"
    try:
        return clean(_environment().from_string(canned.text).render(**values))
    except TemplateSyntaxError as exc:
        raise CannedError(f"{where} has a template error on line {exc.lineno}: {exc.message}") from None
    except UndefinedError as exc:
        known = ", ".join(f"{group}.{key}" for group, keys in VARIABLES.items() for key in keys)
        raise CannedError(f"{where} uses an unknown variable ({exc.message}); known: {known}") from None
    except SecurityError as exc:
        raise CannedError(f"{where} does something templates may not: {exc}") from None
    except (TemplateError, ArithmeticError, TypeError, ValueError, LookupError) as exc:
        raise CannedError(f"{where} could not be rendered: {exc}") from None


def available(entries: Iterable[Canned], channel: str) -> list[Canned]:
    """The responses offered on `channel` (an entry without channels is offered everywhere)."""
    return [c for c in entries if not c.channels or channel in c.channels]


def token_before(line: str) -> str | None:
    """The canned name being typed at the end of `line` ("see ::refu" -> "refu"; "::" -> ""), else None."""
    match = _TOKEN.search(line)
    return None if match is None else (match[1] or "")


def matching(entries: Iterable[Canned], prefix: str) -> list[Canned]:
    """Entries whose name is `prefix` exactly (that one alone), else those that start with it."""
    entries = list(entries)
    exact = [c for c in entries if c.name.lower() == prefix.lower()]
    return exact or [c for c in entries if c.name.lower().startswith(prefix.lower())]


def describe(canned: Canned) -> str:
    return f"{canned.name} — {canned.title}" if canned.title else canned.name

