"""`agentdesk sync` for scripts: a real server, a real cache, the CLI entry point in-process."""

from __future__ import annotations

import json
import time

from agentdesk.cli import main


def test_sync_once_warms_the_cache_and_reports_json(live_server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AGENTDESK_TOKEN", live_server.world.tokens["alice@example.com"])
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert main(["--server", live_server.url, "--data-dir", str(tmp_path), "sync", "--once", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["agent"] == "Alice Ward"
    assert report["conversations"] == 2 and report["queue"] == 2 and report["outbox"] == 0


def test_sync_once_waits_for_the_bootstraps_checkpoint(live_server, tmp_path, monkeypatch):
    """The desk goes on while the bootstrap's WAL is copied into the file; a script's run ends after it, so the
    next start does not read a large WAL back."""
    from agentdesk.store.cache import checkpoint

    done: list[float] = []

    def slow_checkpoint(path):
        time.sleep(0.3)
        checkpoint(path)
        done.append(time.monotonic())

    monkeypatch.setattr("agentdesk.sync.engine.checkpoint", slow_checkpoint)
    monkeypatch.setenv("AGENTDESK_TOKEN", live_server.world.tokens["alice@example.com"])
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert main(["--server", live_server.url, "--data-dir", str(tmp_path), "sync", "--once"]) == 0
    assert len(done) == 1


def test_sync_once_against_a_dead_server_fails_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AGENTDESK_TOKEN", "adk_whatever")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("AGENTDESK_SYNC__REQUEST_TIMEOUT", "0.5")
    assert main(["--server", "http://127.0.0.1:9", "--data-dir", str(tmp_path), "sync", "--once"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("agentdesk: Cannot reach http://127.0.0.1:9 and there is no cache for this token yet")


def test_reply_and_note_queue_offline_and_deliver_once_on_the_next_sync(live_server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AGENTDESK_TOKEN", live_server.world.tokens["alice@example.com"])
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    base = ["--server", live_server.url, "--data-dir", str(tmp_path)]
    conversation = live_server.world.conversations["maria-sms"]
    assert main([*base, "sync", "--once"]) == 0
    assert main([*base, "reply", conversation, "--text", "Scripted hello"]) == 0
    assert main([*base, "note", conversation, "--text", "Scripted note"]) == 0
    assert "queued (2 waiting)" in capsys.readouterr().out
    assert live_server.interactions("Scripted hello") == []  # nothing left before the sync
    assert main([*base, "sync", "--once"]) == 0
    assert main([*base, "sync", "--once"]) == 0
    [reply] = live_server.interactions("Scripted hello")
    [note] = live_server.interactions("Scripted note")
    assert (reply.channel, reply.direction, note.direction) == ("sms", "outbound", "note")
    assert main([*base, "reply", "nope", "--text", "x"]) == 1
    assert "No conversation nope" in capsys.readouterr().err
