"""The configuration schema: one ``Settings`` for both the desk (client) and the server.

Each program reads its own sections; an admin may keep them in one file or two. Every model
forbids unknown keys. Values come from, highest priority first: keyword arguments to
``Settings(...)``, ``AGENTDESK_*`` environment variables (``AGENTDESK_SERVER__PORT=9000``), the
TOML file handed to ``agentdesk.config.load_settings``, then the defaults below.

Validators raise ``ValueError`` with a complete plain-English message ("expected …, got …");
the loader shows it verbatim next to the file, line and key.

Never import textual, sqlalchemy, fastapi or httpx here: this is on the startup path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from agentdesk import paths
from agentdesk.config.keymap import BINDING_IDS, DEFAULT_KEYMAP, KeySpec
from agentdesk.config.keynames import did_you_mean, parse_key_list, show_value  # noqa: F401 - parse_key_list re-exported
from agentdesk.domain.business_hours import DAY_NAMES, Calendar

ENV_PREFIX = "AGENTDESK_"
ENV_NESTED_DELIMITER = "__"


# --------------------------------------------------------------------------------------------
# Shared helpers (show_value, did_you_mean and the key names live in keynames.py: the desk reads them at start-up)


def _reject_bool(expected: str) -> BeforeValidator:
    # pydantic's lax mode turns true/false into 1/0 for numbers; in a config file that is a mistake.
    def check(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"expected {expected}, got {show_value(value)}")
        return value

    return BeforeValidator(check)


def _http_url(value: str) -> str:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f'expected an http:// or https:// URL like "http://127.0.0.1:8765", got {show_value(value)}')
    return value.rstrip("/")


def _optional_http_url(value: str) -> str:
    return value if value == "" else _http_url(value)


def _host(value: str) -> str:
    if not value or any(ch.isspace() for ch in value) or "://" in value or "/" in value:
        raise ValueError(f'expected a host name or IP address like "127.0.0.1", got {show_value(value)}')
    return value


def _non_empty(value: str) -> str:
    if value.strip() == "":
        raise ValueError(f"expected a non-empty string, got {show_value(value)}")
    return value


_DB_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def _database_url(value: str) -> str:
    if value != "" and not _DB_URL_RE.match(value):
        raise ValueError(
            'expected a database URL like "sqlite:///path/server.sqlite3" or '
            f'"postgresql+psycopg://user@host/agentdesk", got {show_value(value)}'
        )
    return value


def _region(value: str) -> str:
    if len(value) == 2 and value.isascii() and value.isalpha() and value.isupper():
        return value
    hint = ""
    if len(value) == 2 and value.isascii() and value.isalpha():
        hint = f' (did you mean "{value.upper()}"?)'
    raise ValueError(f"expected a two-letter upper-case ISO 3166 country code like \"US\", got {show_value(value)}{hint}")


NonEmptyStr = Annotated[str, AfterValidator(_non_empty)]
PositiveFloat = Annotated[float, _reject_bool("a number"), Field(gt=0, allow_inf_nan=False)]




def _key_list(value: str) -> str:
    parse_key_list(value)
    return value


def _binding_id(value: str) -> str:
    if value not in BINDING_IDS:
        hint = did_you_mean(value, BINDING_IDS)
        if not hint:
            hint = f"; known ids: {', '.join(sorted(BINDING_IDS))}"
        raise ValueError(f"unknown binding id{hint}")
    return value


BindingId = Annotated[str, AfterValidator(_binding_id)]
KeyList = Annotated[str, AfterValidator(_key_list)]


# --------------------------------------------------------------------------------------------
# Sections


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Textual's built-in themes and the desk's own (tui/themes.py); a test keeps this list equal to what the app offers.
THEME_NAMES: tuple[str, ...] = (
    "agentdesk-high-contrast", "ansi-dark", "ansi-light", "atom-one-dark", "atom-one-light", "catppuccin-frappe",
    "catppuccin-latte", "catppuccin-macchiato", "catppuccin-mocha", "dracula", "flexoki", "gruvbox", "monokai", "nord",
    "rose-pine", "rose-pine-dawn", "rose-pine-moon", "solarized-dark", "solarized-light", "textual-dark",
    "textual-light", "tokyo-night",
)


def _theme(value: str) -> str:
    if value not in THEME_NAMES:
        raise ValueError(f"unknown theme {show_value(value)}{did_you_mean(value, THEME_NAMES)}; themes are {', '.join(THEME_NAMES)}")
    return value


class DeskConfig(_Section):
    """``[desk]``: the agent's terminal client."""

    server_url: Annotated[str, AfterValidator(_http_url)] = "http://127.0.0.1:8765"
    data_dir: str = ""  # "" = platform data dir
    theme: Annotated[str, AfterValidator(_theme)] = "textual-dark"
    bell_on_assignment: bool = True


class SyncConfig(_Section):
    """``[sync]``: how the desk talks to the server."""

    poll_interval: PositiveFloat = 5.0
    page_size: Annotated[int, _reject_bool("an integer"), Field(ge=1, le=10_000)] = 5000  # sync/engine.py PULL_PAGE
    request_timeout: PositiveFloat = 10.0


class ServerConfig(_Section):
    """``[server]``: where the server listens."""

    host: Annotated[str, AfterValidator(_host)] = "127.0.0.1"
    port: Annotated[int, _reject_bool("an integer"), Field(ge=0, le=65_535)] = 8765
    public_url: Annotated[str, AfterValidator(_optional_http_url)] = ""  # "" = http://host:port
    max_body_bytes: Annotated[int, _reject_bool("an integer"), Field(ge=1)] = 1_048_576
    rate_limit_per_second: PositiveFloat = 50.0  # per API token, refilled continuously
    rate_limit_burst: Annotated[int, _reject_bool("an integer"), Field(ge=1)] = 200  # requests a token may make at once


class DatabaseConfig(_Section):
    """``[database]``: the server's database."""

    url: Annotated[str, AfterValidator(_database_url)] = ""  # "" = sqlite in the platform data dir
    echo: bool = False


class IdentityConfig(_Section):
    """``[identity]``: how contacts are recognised across channels."""

    default_region: Annotated[str, AfterValidator(_region)] = "US"


# --------------------------------------------------------------------------------------------
# Declared server data: teams, SLA policies, routing rules (applied on start by server/declared.py)

CHANNELS: tuple[str, ...] = ("email", "sms", "whatsapp", "chat", "phone")
PRIORITIES: tuple[str, ...] = ("low", "normal", "high", "urgent")
TEAM_ROUTING: tuple[str, ...] = ("round_robin", "queue")


def _choice(choices: tuple[str, ...]) -> AfterValidator:
    def check(value: str) -> str:
        if value not in choices:
            hint = did_you_mean(value, choices)
            raise ValueError(f"expected one of {', '.join(choices)}, got {show_value(value)}{hint}")
        return value

    return AfterValidator(check)


def _timezone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        hint = did_you_mean(value, available_timezones())
        raise ValueError(f'expected an IANA time zone such as "Europe/London", got {show_value(value)}{hint}') from None
    return value


def _hours(value: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for day, span in value.items():
        name = day.lower()
        if name not in DAY_NAMES:
            hint = did_you_mean(name, DAY_NAMES)
            raise ValueError(f"unknown day {show_value(day)}{hint}; days are {', '.join(DAY_NAMES)}")
        try:
            Calendar.from_config("UTC", {name: span})
        except ValueError as exc:
            raise ValueError(f"{name}: {str(exc).split(': ', 1)[-1]}") from None
        out[name] = span.strip()
    return out


def _holiday(value: Any) -> str:
    if isinstance(value, date) and not isinstance(value, datetime):  # a bare TOML date
        return value.isoformat()
    if isinstance(value, str):
        try:
            Calendar.from_config("UTC", {"mon": "00:00-24:00"}, [value])
            return value
        except ValueError:
            pass
    raise ValueError(f"expected a date like 2026-12-25 or \"2026-12-25\", got {show_value(value)}")


def _minutes(value: float) -> float:
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError(f"expected a number of minutes greater than 0, got {show_value(value)}")
    return value


Channel = Annotated[str, _choice(CHANNELS)]
Priority = Annotated[str, _choice(PRIORITIES)]
Minutes = Annotated[float, _reject_bool("a number of minutes"), AfterValidator(_minutes)]


class TeamDecl(_Section):
    """One ``[[teams]]`` entry: a team, created or updated by name when the server starts."""

    name: NonEmptyStr
    timezone: Annotated[str, AfterValidator(_timezone)] = "UTC"
    hours: Annotated[dict[str, str], AfterValidator(_hours)] = Field(default_factory=dict)  # {} = Mon-Fri 09:00-17:00 (server/sla.py)
    holidays: list[Annotated[str, BeforeValidator(_holiday)]] = Field(default_factory=list)
    routing: Annotated[str, _choice(TEAM_ROUTING)] = "round_robin"


class SlaPolicyDecl(_Section):
    """One ``[[sla.policies]]`` entry: targets in business minutes for a channel and priority (absent = any)."""

    channel: Channel | None = None
    priority: Priority | None = None
    first_response: Minutes | None = None
    next_response: Minutes | None = None
    resolution: Minutes | None = None

    @model_validator(mode="after")
    def _has_a_target(self) -> SlaPolicyDecl:
        if self.first_response is None and self.next_response is None and self.resolution is None:
            raise ValueError("a policy needs at least one of first_response, next_response, resolution (minutes)")
        return self


class SlaConfig(_Section):
    """``[sla]``: SLA policies, the most specific matching policy wins."""

    policies: list[SlaPolicyDecl] = Field(default_factory=list)  # [[sla.policies]]

    @field_validator("policies")
    @classmethod
    def _one_policy_per_key(cls, policies: list[SlaPolicyDecl]) -> list[SlaPolicyDecl]:
        first: dict[tuple[str | None, str | None], int] = {}
        for number, policy in enumerate(policies, 1):
            key = (policy.channel, policy.priority)
            if key in first:
                raise ValueError(
                    f"[[sla.policies]] number {number} has the same channel ({policy.channel or 'any'}) and priority "
                    f"({policy.priority or 'any'}) as number {first[key]}; merge them"
                )
            first[key] = number
        return policies


class RoutingRuleDecl(_Section):
    """One ``[[routing.rules]]`` entry: new conversations matching it go to `team` (first match wins)."""

    channel: Channel | None = None
    keyword: NonEmptyStr | None = None  # case-insensitive, in the subject or first message
    team: NonEmptyStr


class RoutingConfig(_Section):
    """``[routing]``: rules that pick a new conversation's team, in order."""

    rules: list[RoutingRuleDecl] = Field(default_factory=list)  # [[routing.rules]]
    return_after_minutes: PositiveFloat = 5.0  # an agent away/offline this long: their unanswered conversations go back


# --------------------------------------------------------------------------------------------
# Channels (server): the real protocols traffic arrives and leaves by (server/channels/)

Port = Annotated[int, _reject_bool("an integer"), Field(ge=0, le=65_535)]


class EmailChannelConfig(_Section):
    """``[channels.email]``: an SMTP listener for inbound mail, IMAP polling, and a relay for replies."""

    enabled: bool = False  # listen for SMTP (and poll IMAP when imap_host is set)
    address: str = "support@example.com"  # our address: replies come from it, inbound mail is sent to it
    from_name: str = "Support"  # display name on replies
    signature: str = "{agent_name}\nSupport team"  # appended to every email reply; {agent_name} is the replying agent
    smtp_host: Annotated[str, AfterValidator(_host)] = "127.0.0.1"  # where the SMTP listener binds
    smtp_port: Port = 2525  # 0 = any free port
    max_message_bytes: Annotated[int, _reject_bool("an integer"), Field(ge=1024)] = 26_214_400
    imap_host: str = ""  # "" = no IMAP polling
    imap_port: Port = 993
    imap_username: str = ""
    imap_password: str = ""
    imap_folder: str = "INBOX"
    imap_poll_seconds: PositiveFloat = 60.0
    relay_host: str = ""  # "" = replies wait in the outbox until a relay is configured
    relay_port: Port = 587
    relay_security: Annotated[str, _choice(("starttls", "tls", "none"))] = "starttls"
    relay_username: str = ""
    relay_password: str = ""
    relay_timeout: PositiveFloat = 30.0


class TwilioChannelConfig(_Section):
    """``[channels.twilio]``: SMS, WhatsApp and voice through Twilio (webhooks in, REST API out)."""

    enabled: bool = False  # accept Twilio webhooks and send SMS/WhatsApp replies through the REST API
    account_sid: str = ""
    auth_token: str = ""  # checks X-Twilio-Signature on every webhook; better set by environment variable
    api_base_url: Annotated[str, AfterValidator(_http_url)] = "https://api.twilio.com"
    sms_from: str = ""  # our number for SMS replies and outbound calls, E.164
    whatsapp_from: str = ""  # our WhatsApp sender, E.164 (without the "whatsapp:" prefix)
    request_timeout: PositiveFloat = 15.0


def _origin(value: str) -> str:
    """A web origin: scheme and host (and port), nothing after; it goes into the chat page's CSP header."""
    origin = _http_url(value)  # a trailing "/" is dropped
    parts = urlsplit(origin)
    if any(ch.isspace() for ch in value) or parts.path or parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(f'expected an origin like "https://www.example.com" (no path), got {show_value(value)}')
    return origin


class ChatChannelConfig(_Section):
    """``[channels.chat]``: the web chat widget served at /chat."""

    enabled: bool = True
    title: str = "Chat with us"  # heading of the chat widget
    allowed_origins: list[Annotated[str, AfterValidator(_origin)]] = Field(default_factory=list)  # pages that may open the chat websocket; [] = same origin only


class ChannelsConfig(_Section):
    """``[channels.*]``: the channels the server speaks."""

    email: EmailChannelConfig = Field(default_factory=EmailChannelConfig)
    twilio: TwilioChannelConfig = Field(default_factory=TwilioChannelConfig)
    chat: ChatChannelConfig = Field(default_factory=ChatChannelConfig)


# --------------------------------------------------------------------------------------------
# Canned responses (desk): [[canned]] templates the agent inserts with ::name or ctrl+t


def _canned_name(value: str) -> str:
    from agentdesk.domain.canned import NAME_PATTERN

    if not re.fullmatch(NAME_PATTERN, value):
        raise ValueError(f"expected a name of letters, digits, _ . or - (typed as ::name), got {show_value(value)}")
    return value


def _canned_template(value: str) -> str:
    from agentdesk.domain.canned import check_template

    _non_empty(value)
    check_template(value)  # a syntax error is reported here, with its line, not when an agent uses it
    return value


class CannedDecl(_Section):
    """One ``[[canned]]`` entry: a reply template, rendered with the customer's, conversation's and agent's details."""

    name: Annotated[str, AfterValidator(_canned_name)]
    text: Annotated[str, AfterValidator(_canned_template)]
    title: str = ""  # shown in the picker next to the name
    channels: list[Channel] = Field(default_factory=list)  # [] = offered on every channel


SECTION_MODELS: dict[str, type[BaseModel] | None] = {
    "desk": DeskConfig,
    "sync": SyncConfig,
    "keymap": None,  # a table of binding id -> keys, not a model
    "server": ServerConfig,
    "database": DatabaseConfig,
    "identity": IdentityConfig,
    "sla": SlaConfig,
    "routing": RoutingConfig,
    "channels": ChannelsConfig,
}


# --------------------------------------------------------------------------------------------
# Sources: env > file > defaults. The loader hands over the file's data and (optionally) an
# environment mapping through these context variables, so the one `Settings()` code path
# validates every source together and pydantic reports every problem at once.

_FILE_DATA: ContextVar[Mapping[str, Any] | None] = ContextVar("agentdesk_config_file_data", default=None)
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("agentdesk_config_environ", default=None)


class MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' env source, reading a given mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str] | None = None) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        environ = self._environ
        if environ is None:
            environ = _ENVIRON.get()
        if environ is None:
            environ = os.environ
        # Settings are case-insensitive (pydantic-settings' default): match on lower-cased names.
        return {key.lower(): value for key, value in environ.items()}


class FileDataSource(PydanticBaseSettingsSource):
    """The parsed TOML file's data (set by the loader), passed through unchanged."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover - unused
        data = _FILE_DATA.get() or {}
        return data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_FILE_DATA.get() or {})


# --------------------------------------------------------------------------------------------
# Settings


class Settings(BaseSettings):
    """All configuration for desk and server. Build it with ``agentdesk.config.load_settings``.

    ``Settings()`` alone gives defaults overridden by ``AGENTDESK_*`` environment variables;
    keyword arguments (handy in tests) override both.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        extra="forbid",
        case_sensitive=False,
    )

    desk: DeskConfig = Field(default_factory=DeskConfig)
    sync: SyncConfig = Field(default_factory=SyncConfig)
    keymap: dict[BindingId, KeyList] = Field(default_factory=dict)
    server: ServerConfig = Field(default_factory=ServerConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    teams: list[TeamDecl] = Field(default_factory=list)  # [[teams]]
    sla: SlaConfig = Field(default_factory=SlaConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    channels: ChannelsConfig = Field(default_factory=ChannelsConfig)
    canned: list[CannedDecl] = Field(default_factory=list)  # [[canned]]

    @field_validator("canned")
    @classmethod
    def _one_canned_per_name(cls, canned: list[CannedDecl]) -> list[CannedDecl]:
        first: dict[str, int] = {}
        for number, entry in enumerate(canned, 1):
            if entry.name.lower() in first:
                raise ValueError(
                    f"[[canned]] number {number} is named {entry.name!r} like number {first[entry.name.lower()]}; "
                    "names must differ (ignoring case)"
                )
            first[entry.name.lower()] = number
        return canned

    @field_validator("teams")
    @classmethod
    def _one_declaration_per_team(cls, teams: list[TeamDecl]) -> list[TeamDecl]:
        first: dict[str, int] = {}
        for number, team in enumerate(teams, 1):
            if team.name in first:
                raise ValueError(
                    f"[[teams]] number {number} declares {team.name!r} again (first in number {first[team.name]}); "
                    "declare each team once"
                )
            first[team.name] = number
        return teams

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # No .env files or secrets dirs: the TOML file and the environment are the whole story.
        return (init_settings, MappingEnvSource(settings_cls), FileDataSource(settings_cls))

    # -- resolved values ---------------------------------------------------------------------

    def keymap_bindings(self) -> list[KeySpec]:
        """DEFAULT_KEYMAP with ``[keymap]`` overrides applied (only ``keys`` changes), in default order."""
        return [replace(spec, keys=self.keymap[spec.id]) if spec.id in self.keymap else spec for spec in DEFAULT_KEYMAP]

    def data_dir(self) -> Path:
        """The desk's data directory (``[desk] data_dir`` or the platform data dir), created if missing."""
        return paths.data_dir(self.desk.data_dir or None)

    def database_url(self) -> str:
        """``[database] url``, or ``sqlite:///<platform data dir>/server.sqlite3`` when empty."""
        return self.database.url or paths.default_server_db_url()

    def public_url(self) -> str:
        """``[server] public_url``, or ``http://host:port`` when empty (IPv6 hosts bracketed)."""
        if self.server.public_url:
            return self.server.public_url
        host = self.server.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.server.port}"
