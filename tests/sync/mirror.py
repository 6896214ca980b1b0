"""What a cache mirrors of the server, comparable: to check that a cache that lived through faults equals a
fresh bootstrap of the same agent's scope."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from agentdesk.store.cache import Cache
from agentdesk.store.schema import MIRROR_TABLES
from agentdesk.sync.client import SyncClient
from agentdesk.sync.engine import SyncEngine


def _comparable(value: Any) -> Any:
    """JSON columns arrive as text from a bootstrap and re-encoded from a pull: compare what they hold."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.dumps(json.loads(value), sort_keys=True)
        except ValueError:
            return value
    return value


def mirror(db: sqlite3.Connection) -> dict[str, list[tuple]]:
    """Every mirrored table's rows, in key order."""
    return {
        table: [tuple(map(_comparable, row)) for row in db.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY id")]
        for table, columns in MIRROR_TABLES.items()
    }


def server_view(url: str, token: str, path: Path) -> dict[str, list[tuple]]:
    """The agent's scope as a brand-new cache bootstraps it (straight from the server, no faults between)."""
    cache, client = Cache(path), SyncClient(url, token)
    try:
        SyncEngine(path, client, live=False).sync_once(cache)
        return mirror(cache.db)
    finally:
        client.close()
        cache.close()


def differences(mine: dict[str, list[tuple]], theirs: dict[str, list[tuple]]) -> dict[str, dict[str, list[tuple]]]:
    """Per table, the rows only the cache has and the rows only the server has (empty: equal)."""
    diff = {}
    for table in MIRROR_TABLES:
        extra, missing = set(mine[table]) - set(theirs[table]), set(theirs[table]) - set(mine[table])
        if extra or missing:
            diff[table] = {"cache only": sorted(extra, key=str), "server only": sorted(missing, key=str)}
    return diff
