"""The demo's server process: seeded, reachable with its token, gone when its parent lets go."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from agentdesk.store.cache import Cache
from agentdesk.sync.client import SyncClient
from agentdesk.sync.engine import SyncEngine

REPO = Path(__file__).resolve().parents[2]


def test_demo_server_serves_a_full_day_and_exits_with_its_parent(tmp_path):
    env = {**os.environ, "AGENTDESK_DEMO_TOKEN": "adk_demo_test", "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentdesk.demo.server", "--data-dir", str(tmp_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )
    try:
        port = int(proc.stdout.readline().split()[1])
        client = SyncClient(f"http://127.0.0.1:{port}", "adk_demo_test")
        assert client.me()["name"] == "Alex Morgan"
        cache = Cache(tmp_path / "cache.sqlite3")
        SyncEngine(cache.path, client).sync_once(cache)
        count = lambda sql: cache.db.execute(sql).fetchone()[0]  # noqa: E731
        assert count("SELECT count(DISTINCT team_id) FROM agent_teams") >= 2
        assert count("SELECT count(*) FROM agents") >= 3
        assert count("SELECT count(*) FROM customers") >= 200
        assert count("SELECT count(*) FROM conversations") >= 1000
        assert count("SELECT count(*) FROM interactions") >= 5000
        assert count("SELECT count(DISTINCT channel) FROM interactions") == 5
        assert count("SELECT count(DISTINCT status) FROM conversations") == 4
    finally:
        proc.stdin.close()  # as when `agentdesk demo` exits, however it exits
        assert proc.wait(timeout=10) == 0
