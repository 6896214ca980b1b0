"""Configuration for desk and server: schema, TOML loader with precise errors, key bindings.

    from agentdesk.config import load_settings, ConfigError
    settings = load_settings(path)          # env AGENTDESK_* > file > defaults

The names below load on first use (PEP 562): the desk imports `agentdesk.config.keymap` before its first
frame, and that must not pull in pydantic (~0.2 s) with this package.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_WHERE = {
    "BINDING_IDS": "keymap", "DEFAULT_KEYMAP": "keymap", "KeySpec": "keymap",
    "ConfigError": "loader", "KeyLocator": "loader", "Problem": "loader", "check_file": "loader", "load_settings": "loader",
    "DatabaseConfig": "models", "DeskConfig": "models", "IdentityConfig": "models", "ServerConfig": "models",
    "Settings": "models", "SyncConfig": "models",
    "parse_key_list": "keynames",
}  # fmt: skip

__all__ = [  # = _WHERE's keys, spelled out for linters and type checkers
    "BINDING_IDS", "DEFAULT_KEYMAP", "ConfigError", "DatabaseConfig", "DeskConfig", "IdentityConfig", "KeyLocator",
    "KeySpec", "Problem", "ServerConfig", "Settings", "SyncConfig", "check_file", "load_settings", "parse_key_list",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


if TYPE_CHECKING:
    from agentdesk.config.keymap import BINDING_IDS, DEFAULT_KEYMAP, KeySpec
    from agentdesk.config.keynames import parse_key_list
    from agentdesk.config.loader import ConfigError, KeyLocator, Problem, check_file, load_settings
    from agentdesk.config.models import DatabaseConfig, DeskConfig, IdentityConfig, ServerConfig, Settings, SyncConfig
