"""Which cache belongs to this server and agent: remembered from the last time, else asked of /me.

A known token opens its cache at once, without waiting on the network (the sync engine checks the
identity in the background); only a token seen for the first time needs the server.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from agentdesk.sync.client import ServerUnavailable, SyncClient


@dataclass(frozen=True)
class Account:
    server_url: str
    agent_id: str
    cache_path: Path


class NoAccount(Exception):
    """Neither the server nor an earlier session could tell who this token belongs to."""


def _server_slug(server_url: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", server_url.split("://", 1)[-1]).strip("_") or "server"


def _fingerprint(server_url: str, token: str) -> str:
    # Never the token itself: only a hash, to recognise it offline.
    return hashlib.sha256(f"{server_url}\0{token}".encode()).hexdigest()[:24]


def _read_known(path: Path) -> dict[str, str]:
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):  # missing or damaged: we only lose the offline shortcut
        return {}
    return known if isinstance(known, dict) else {}


def _write_known(path: Path, known: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".accounts-")
    with os.fdopen(fd, "w") as out:
        json.dump(known, out, indent=1)
    os.replace(tmp, path)


def resolve_account(server_url: str, token: str, data_dir: Path, client: SyncClient) -> tuple[Account, dict | None]:
    """The account and, when the server was asked, its /me document (to store in the cache)."""
    known_file = data_dir / "accounts.json"
    known = _read_known(known_file)
    key = _fingerprint(server_url, token)
    me = None
    if key in known:
        agent_id = known[key]
    else:
        try:
            me = client.me()
        except ServerUnavailable as exc:
            raise NoAccount(f"Cannot reach {server_url} and there is no cache for this token yet: {exc}") from exc
        agent_id = known[key] = me["id"]
        _write_known(known_file, known)
    cache_path = data_dir / "caches" / _server_slug(server_url) / f"{agent_id}.sqlite3"
    return Account(server_url, agent_id, cache_path), me
