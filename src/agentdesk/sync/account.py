"""Which cache belongs to this server and agent — found online via /me, offline from the last time."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from agentdesk.sync.client import ServerUnavailable, SyncClient


@dataclass(frozen=True)
class Account:
    server_url: str
    agent_id: str
    cache_path: Path
    online: bool


class NoAccount(Exception):
    """Neither the server nor an earlier session could tell who this token belongs to."""


def _server_slug(server_url: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", server_url.split("://", 1)[-1]).strip("_") or "server"


def _fingerprint(server_url: str, token: str) -> str:
    # Never the token itself: only a hash, to recognise it offline.
    return hashlib.sha256(f"{server_url}\0{token}".encode()).hexdigest()[:24]


def resolve_account(server_url: str, token: str, data_dir: Path, client: SyncClient) -> tuple[Account, dict | None]:
    """The account and, when the server answered, its /me document (to store in the cache)."""
    known_file = data_dir / "accounts.json"
    known: dict[str, str] = json.loads(known_file.read_text()) if known_file.exists() else {}
    key = _fingerprint(server_url, token)
    try:
        me = client.me()
    except ServerUnavailable as exc:
        if key not in known:
            raise NoAccount(f"Cannot reach {server_url} and there is no cache for this token yet: {exc}") from exc
        agent_id, me, online = known[key], None, False
    else:
        agent_id, online = me["id"], True
        if known.get(key) != agent_id:
            known[key] = agent_id
            data_dir.mkdir(parents=True, exist_ok=True)
            known_file.write_text(json.dumps(known, indent=1))
    cache_path = data_dir / "caches" / _server_slug(server_url) / f"{agent_id}.sqlite3"
    return Account(server_url, agent_id, cache_path, online), me
