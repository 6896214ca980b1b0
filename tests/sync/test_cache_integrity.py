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
    integrity.release_lock(cache_file(tmp_path / "desk"))  # as if those commands had run in processes of their own
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


def varint(data: bytes, at: int) -> tuple[int, int]:
    """SQLite's variable-length integer at `at`: (its value, where the next field starts)."""
    value = 0
    for n in range(8):
        value = (value << 7) | (data[at + n] & 0x7F)
        if data[at + n] < 0x80:
            return value, at + n + 1
    return (value << 8) | data[at + 8], at + 9


def leaves_of(path: Path, table: str) -> list[tuple[int, set[int]]]:
    """Where each leaf page of a table (under an interior root) starts in the file, with the rowids it holds."""
    root, size = page_of(path, table)
    data = path.read_bytes()
    assert data[root] == 0x05  # the root is an interior page over leaves
    cells = int.from_bytes(data[root + 3:root + 5], "big")
    pointers = [int.from_bytes(data[root + 12 + 2 * i:root + 14 + 2 * i], "big") for i in range(cells)]
    children = [int.from_bytes(data[root + at:root + at + 4], "big") for at in pointers]
    children.append(int.from_bytes(data[root + 8:root + 12], "big"))  # the right-most child
    leaves = []
    for child in children:
        page = data[(child - 1) * size:child * size]
        assert page[0] == 0x0D  # a table leaf
        cells = int.from_bytes(page[3:5], "big")
        starts = [int.from_bytes(page[8 + 2 * i:10 + 2 * i], "big") for i in range(cells)]
        leaves.append(((child - 1) * size, {varint(page, varint(page, at)[1])[0] for at in starts}))
    return leaves


@pytest.mark.parametrize("smashed", [[1], [1, 3], [0, -1], [2, 4, 5]], ids=["one", "two apart", "first and last", "three"])
def test_a_damaged_outbox_page_costs_only_the_replies_on_it(tmp_path, smashed):
    path = tmp_path / "cache.sqlite3"
    a_cache_with_many_queued_replies(path)
    leaves = leaves_of(path, "outbox")
    _root, size = page_of(path, "outbox")
    lost: set[int] = set()
    for leaf in smashed:
        offset, rowids = leaves[leaf]
        smash(path, offset, size)
        lost |= rowids
    assert 0 < len(lost) < 100

    cache, message = integrity.open_checked(path)
    seqs = [seq for (seq,) in cache.db.execute("SELECT seq FROM outbox ORDER BY seq")]
    assert seqs == sorted(set(range(1, 401)) - lost)  # exactly the smashed pages' rows are gone
    texts = [json.loads(args)["text"] for (args,) in cache.db.execute("SELECT args FROM outbox ORDER BY seq")]
    assert texts == [f"reply {seq - 1} " + "x" * 200 for seq in seqs]
    assert f"Kept {len(seqs)} queued items and 1 draft." in message
    assert "Some queued items could not be read back" in message
    assert cache.identity() == ME and cache.state("cursor") is None and cache.state("bootstrapped") is None
    cache.close()


def test_a_cache_another_process_uses_is_not_rebuilt_under_it(tmp_path):
    path = tmp_path / "cache.sqlite3"
    a_cache_with_many_queued_replies(path)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    other = subprocess.Popen(  # another desk: opens the cache, then keeps it until told to stop
        [sys.executable, "-c", "import sys; from agentdesk.store import integrity as i; i.open_checked(sys.argv[1]);"
         " print('open', flush=True); sys.stdin.read()", str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert other.stdout.readline() == "open\n"
        [(offset, rowids), *_] = leaves_of(path, "outbox")
        smash(path, offset, page_of(path, "outbox")[1])
        damaged = path.read_bytes()
        cache, message = integrity.open_checked(path)
        cache.close()
        assert message is not None and message.startswith("The local cache is damaged (")
        assert "close every other agentdesk window or command using it and start again" in message
        assert path.read_bytes() == damaged and not list(tmp_path.glob("*.corrupt-*"))
        assert integrity.damage_marker(path).read_text() in message
    finally:
        other.communicate("", timeout=30)
    integrity.release_lock(path)  # as if this were a new process

    cache, message = integrity.open_checked(path)  # alone now: rebuilt
    assert message is not None and message.startswith("The local cache was damaged (")
    assert f"Kept {400 - len(rowids)} queued items" in message and not integrity.damage_marker(path).exists()
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


def test_a_marker_left_beside_a_removed_cache_is_dropped(tmp_path):
    path = tmp_path / "cache.sqlite3"
    integrity.damage_marker(path).write_text("integrity check: something")
    cache, message = integrity.open_checked(path)
    assert message is None and cache.outbox_count() == 0 and not integrity.damage_marker(path).exists()
    cache.close()


def test_an_empty_marker_means_check_again(tmp_path, monkeypatch):
    monkeypatch.setattr(integrity, "FULL_CHECK_BYTES", 0)  # every file counts as big: only the marker says "all"
    path = tmp_path / "cache.sqlite3"
    a_cache_with_many_queued_replies(path, replies=5)
    integrity.damage_marker(path).write_text("")  # a crash while it was written
    cache, message = integrity.open_checked(path)
    assert message is None and not integrity.damage_marker(path).exists()  # sound: the marker goes
    cache.close()

    cache = Cache(path)
    with cache.write() as db:
        cache.upsert_rows(db, "interactions", ["id", "text"], [(f"i{n}", "y" * 500) for n in range(200)])
    cache.close()
    smash(path, *page_of(path, "interactions"))  # a mirror page: the check on open of a big file misses it
    integrity.damage_marker(path).write_text("")
    cache, message = integrity.open_checked(path)
    assert message is not None and "Kept 5 queued items and 1 draft." in message
    assert not integrity.damage_marker(path).exists() and integrity.find_damage(path) is None
    cache.close()
