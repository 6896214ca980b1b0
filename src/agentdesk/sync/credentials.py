"""Where the desk keeps its API token: the system keyring, or (opted into) a 0600 file; AGENTDESK_TOKEN wins.

The token never goes into the TOML config, the SQLite cache or a log line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

KEYRING_SERVICE = "agentdesk"
FILE_STORE = "credentials.json"  # under the data dir, only with `agentdesk login --file-store`


class CredentialError(Exception):
    """No token, or nowhere to keep one; the message names the ways out."""


def _keyring():  # noqa: ANN202 - keyring is imported lazily (it is slow to import)
    import keyring
    from keyring.backends import fail

    backend = keyring.get_keyring()
    if isinstance(backend, fail.Keyring):
        raise CredentialError("no system keyring is available here (no Secret Service, Keychain or Credential Locker)")
    return keyring


def _file_path(data_dir: Path) -> Path:
    return data_dir / FILE_STORE


def _read_file(data_dir: Path) -> dict[str, str]:
    try:
        return json.loads(_file_path(data_dir).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CredentialError(f"cannot read {_file_path(data_dir)}: {exc}") from exc


def load_token(server_url: str, data_dir: Path) -> str:
    """AGENTDESK_TOKEN, else the keyring's token for this server, else the opted-in file's."""
    if token := os.environ.get("AGENTDESK_TOKEN", "").strip():
        return token
    try:
        token = _keyring().get_password(KEYRING_SERVICE, server_url) or ""
    except CredentialError:
        token = ""
    except Exception as exc:  # noqa: BLE001 - a locked or broken keyring backend
        raise CredentialError(f"the keyring could not be read ({type(exc).__name__}: {exc}); set AGENTDESK_TOKEN") from exc
    token = token or _read_file(data_dir).get(server_url, "")
    if not token:
        raise CredentialError(
            f"No API token for {server_url}: run `agentdesk login --server {server_url}` "
            "or set AGENTDESK_TOKEN to the token your admin issued."
        )
    return token


def store_token(server_url: str, token: str, data_dir: Path, *, file_store: bool = False) -> str:
    """Keep `token` for `server_url` and read it back; returns where it went."""
    if file_store:
        return _store_in_file(server_url, token, data_dir)
    try:
        keyring = _keyring()
        keyring.set_password(KEYRING_SERVICE, server_url, token)
        stored = keyring.get_password(KEYRING_SERVICE, server_url)
    except CredentialError as exc:
        raise CredentialError(
            f"Cannot store the token: {exc}. Either set AGENTDESK_TOKEN in the desk's environment, "
            f"or run `agentdesk login --file-store` to keep it in {_file_path(data_dir)} (readable by you only)."
        ) from exc
    except Exception as exc:  # noqa: BLE001 - a locked or broken keyring backend
        raise CredentialError(f"Cannot store the token in the keyring ({type(exc).__name__}: {exc}).") from exc
    if stored != token:
        raise CredentialError("The keyring accepted the token but gave back something else; it was not stored.")
    return "the system keyring"


def _store_in_file(server_url: str, token: str, data_dir: Path) -> str:
    path = _file_path(data_dir)
    tokens = {**_read_file(data_dir), server_url: token}
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.unlink(missing_ok=True)  # a leftover could carry looser permissions, or be a symlink
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others, not even briefly
    with os.fdopen(fd, "w") as out:
        json.dump(tokens, out)
    os.replace(temporary, path)
    if _read_file(data_dir).get(server_url) != token:
        raise CredentialError(f"{path} did not keep the token.")
    return str(path)
