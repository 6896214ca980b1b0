"""Where agentdesk keeps things on this machine (platformdirs locations).

Light on purpose: stdlib + platformdirs only, it is on the startup path. Directories for data are
created on demand; the config directory is not (only an admin writes a config file there).
Tests isolate the machine by pointing ``XDG_DATA_HOME`` / ``XDG_CONFIG_HOME`` (or the platform
equivalents) at temporary directories, or by passing explicit overrides.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "agentdesk"
CONFIG_FILENAME = "config.toml"
SERVER_DB_FILENAME = "server.sqlite3"


def data_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The data directory, created if missing.

    ``override`` (e.g. ``[desk] data_dir`` from the config; ``~`` is expanded) wins when it is
    non-empty; otherwise the platform's user data dir for "agentdesk"
    (``~/.local/share/agentdesk`` on Linux).
    """
    if override is not None and str(override) != "":
        path = Path(override).expanduser()
    else:
        path = Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def config_dir() -> Path:
    """The platform's user config dir for "agentdesk" (not created)."""
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def config_file() -> Path:
    """The default config file path (``~/.config/agentdesk/config.toml`` on Linux); may not exist."""
    return config_dir() / CONFIG_FILENAME


def default_server_db_url() -> str:
    """``sqlite:///<platform data dir>/server.sqlite3`` (the data dir is created so SQLite can create the file)."""
    return f"sqlite:///{(data_dir() / SERVER_DB_FILENAME).as_posix()}"
