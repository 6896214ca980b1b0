"""A damaged cache is found on open, moved aside and rebuilt from the server, keeping the queued work and the
drafts: real cache files damaged on disk, opened through the real entry points against a real server."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentdesk.cli import main
from agentdesk.config import Settings
from agentdesk.desk import build_desk
from agentdesk.store import integrity
from agentdesk.store.cache import Cache, Identity

REPO = Path(__file__).resolve().parents[2]
ME = Identity("a1", "Alice Ward", ("t1",))


def cache_file(data_dir: Path) -> Path:
    [path] = data_dir.glob("caches/*/*.sqlite3")
    return path


def page_of(path: Path, table: str) -> tuple[int, int]:
    """Where a table's root page starts in the file, and the page size (the WAL folded in first)."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    root = db.execute("SELECT rootpage FROM sqlite_schema WHERE name = ?", (table,)).fetchone()[0]
    size = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    return (root - 1) * size, size


def smash(path: Path, offset: int, length: int) -> None:
    with open(path, "r+b") as file:
        file.seek(offset)
        file.write(b"\xa5" * length)


def damage(path: Path, how: str) -> None:
    if how == "mirror page":  # a page in the middle of the file that holds only server data
        smash(path, *page_of(path, "interactions"))
    elif how == "garbage header":
        page_of(path, "outbox")  # folds the WAL in
        smash(path, 0, 100)
    elif how == "truncated":
        page_of(path, "outbox")
        os.truncate(path, path.stat().st_size // 3)


@pytest.fixture
def agent(live_server, tmp_path, monkeypatch):
    """Alice's command line against the live server, with a warm cache holding a queued reply and a draft."""
    monkeypatch.setenv("AGENTDESK_TOKEN", live_server.world.tokens["alice@example.com"])
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    base = ["--server", live_server.url, "--data-dir", str(tmp_path / "desk")]
    sms, email = live_server.world.conversations["maria-sms"], live_server.world.conversations["maria-email"]
    assert main([*base, "sync", "--once"]) == 0
    assert main([*base, "reply", sms, "--text", "Kept through the damage"]) == 0
    cache = Cache(cache_file(tmp_path / "desk"))
    cache.save_draft(email, "email", "half a thought")
    cache.close()
    return base, cache_file(tmp_path / "desk"), email


def test_a_damaged_cache_is_rebuilt_by_agentdesk_sync_and_the_queued_reply_goes_out_once(live_server, agent, tmp_path):
    base, path, email = agent
    damage(path, "mirror page")
    damaged = path.read_bytes()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    run = subprocess.run(
        [sys.executable, "-m", "agentdesk", *base, "sync", "--once", "--json"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )
    assert run.returncode == 0, run.stderr
    [line] = run.stderr.splitlines()  # one line, no traceback
    assert line.startswith("agentdesk: The local cache was damaged (") and "rebuilt from the server" in line
    assert "Kept 1 queued item and 1 draft." in line and "could not be read back" not in line
    [aside] = path.parent.glob(f"{path.name}.corrupt-*[0-9]")
    assert str(aside) in line and aside.read_bytes() == damaged
    report = json.loads(run.stdout)
    assert report["conversations"] == 2 and report["outbox"] == 0  # the mirror is back, the reply went out

    assert main([*base, "sync", "--once"]) == 0  # nothing is sent twice
    assert len(live_server.interactions("Kept through the damage")) == 1
    cache = Cache(path)
    assert cache.latest_draft(email) == ("email", "half a thought")
    assert cache.state("bootstrapped") == "1" and cache.identity().agent_name == "Alice Ward"
    assert integrity.find_damage(path) is None
    cache.close()


@pytest.mark.parametrize("how", ["garbage header", "truncated"])
def test_a_file_that_cannot_be_read_is_replaced_and_the_agent_told_what_may_be_lost(live_server, agent, how, capsys):
    base, path, _email = agent
    damage(path, how)
    capsys.readouterr()
    assert main([*base, "sync", "--once", "--json"]) == 0
    err = capsys.readouterr()
    [line] = err.err.splitlines()
    assert line.startswith("agentdesk: The local cache was damaged (")
    assert "Some queued items and drafts could not be read back and may be lost: check what was sent." in line
    assert json.loads(err.out)["conversations"] == 2  # rebuilt from the server, who the agent is included
    assert len(list(path.parent.glob(f"{path.name}.corrupt-*"))) >= 1


async def test_the_desk_says_so_when_it_opens_on_a_rebuilt_cache(live_server, agent, tmp_path):
    _base, path, email = agent
    damage(path, "mirror page")
    app = build_desk(Settings(), live_server.url, live_server.world.tokens["alice@example.com"], tmp_path / "desk")
    async with app.run_test(size=(160, 45)) as pilot:
        deadline = time.monotonic() + 10
        while not (shown := [str(n.message) for n in app._notifications if "cache" in str(n.message)]):
            assert time.monotonic() < deadline, "no notice"
            await pilot.pause(0.05)
        [notice] = shown
        assert notice.startswith("The local cache was damaged (") and "Kept 1 queued item and 1 draft." in notice
        assert app.cache.latest_draft(email) == ("email", "half a thought")


def a_cache_with_many_queued_replies(path: Path, replies: int = 400) -> None:
    cache = Cache(path)
    cache.set_identity({"id": ME.agent_id, "name": ME.agent_name, "team_ids": list(ME.team_ids)})
    with cache.write() as db:
        cache.upsert_rows(db, "conversations", ["id", "customer_id", "channel", "status"], [("c1", "u1", "sms", "open")])
    for n in range(replies):
        cache.queue_interaction(ME, "c1", "sms", f"reply {n} " + "x" * 200)
    cache.save_draft("c1", "sms", "still here")
    cache.finish_bootstrap("cursor-1")
    cache.close()


def test_a_damaged_outbox_page_costs_only_the_replies_on_it(tmp_path):
    path = tmp_path / "cache.sqlite3"
    a_cache_with_many_queued_replies(path)
    root, size = page_of(path, "outbox")
    with open(path, "rb") as file:  # the outbox's root is an interior page: take its second child, a leaf
        file.seek(root)
        page = file.read(size)
    assert page[0] == 0x05
    cell = int.from_bytes(page[14:16], "big")
    smash(path, (int.from_bytes(page[cell:cell + 4], "big") - 1) * size, size)

    cache, message = integrity.open_checked(path)
    texts = [json.loads(row[0])["text"] for row in cache.db.execute("SELECT args FROM outbox ORDER BY seq")]
    assert 300 < len(texts) < 400  # one leaf's worth lost, the rest (before and after it) kept, in order
    assert texts[0] == "reply 0 " + "x" * 200 and texts[-1] == "reply 399 " + "x" * 200
    assert texts == sorted(texts, key=lambda text: int(text.split()[1]))
    assert f"Kept {len(texts)} queued items and 1 draft." in message
    assert "Some queued items could not be read back" in message
    assert cache.identity() == ME and cache.state("cursor") is None and cache.state("bootstrapped") is None
    cache.close()


def test_a_big_cache_is_checked_in_full_in_the_background_and_rebuilt_at_the_next_open(tmp_path, monkeypatch):
    monkeypatch.setattr(integrity, "FULL_CHECK_BYTES", 0)  # every file counts as big
    path = tmp_path / "cache.sqlite3"
    a_cache_with_many_queued_replies(path, replies=5)
    cache = Cache(path)
    with cache.write() as db:
        cache.upsert_rows(db, "interactions", ["id", "text"], [(f"i{n}", "y" * 500) for n in range(200)])
    cache.close()
    smash(path, *page_of(path, "interactions"))

    cache, message = integrity.open_checked(path)  # the schema and the local tables are sound: it opens
    assert message is None
    deadline = time.monotonic() + 20
    while not integrity.damage_marker(path).exists():
        assert time.monotonic() < deadline, "the background check found nothing"
        time.sleep(0.02)
    deadline = time.monotonic() + 5
    while not (notices := cache.take_notices()):  # the marker is written just before the notice
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert notices[0].startswith("The local cache is damaged (") and "restart agentdesk" in notices[0]
    cache.close()

    cache, message = integrity.open_checked(path)
    assert message is not None and "Kept 5 queued items and 1 draft." in message
    assert not integrity.damage_marker(path).exists() and cache.outbox_count() == 5
    cache.close()
