"""Configuration for desk and server: schema, TOML loader with precise errors, key bindings.

Light imports only (pydantic, pydantic-settings, platformdirs, stdlib): this is on the startup path.

    from agentdesk.config import load_settings, ConfigError
    settings = load_settings(path)          # env AGENTDESK_* > file > defaults
"""

from agentdesk.config.keymap import BINDING_IDS, DEFAULT_KEYMAP, KeySpec
from agentdesk.config.loader import ConfigError, KeyLocator, Problem, check_file, load_settings
from agentdesk.config.models import (
    DatabaseConfig,
    DeskConfig,
    IdentityConfig,
    ServerConfig,
    Settings,
    SyncConfig,
    parse_key_list,
)

__all__ = [
    "BINDING_IDS",
    "DEFAULT_KEYMAP",
    "ConfigError",
    "DatabaseConfig",
    "DeskConfig",
    "IdentityConfig",
    "KeyLocator",
    "KeySpec",
    "Problem",
    "ServerConfig",
    "Settings",
    "SyncConfig",
    "check_file",
    "load_settings",
    "parse_key_list",
]
