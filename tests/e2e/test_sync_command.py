"""`agentdesk sync` for scripts: a real server, a real cache, the CLI entry point in-process."""

from __future__ import annotations

import json

from agentdesk.cli import main


def test_sync_once_warms_the_cache_and_reports_json(live_server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AGENTDESK_TOKEN", live_server.world.tokens["alice@example.com"])
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert main(["--server", live_server.url, "--data-dir", str(tmp_path), "sync", "--once", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["agent"] == "Alice Ward"
    assert report["conversations"] == 2 and report["queue"] == 2 and report["outbox"] == 0


def test_sync_once_against_a_dead_server_fails_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AGENTDESK_TOKEN", "adk_whatever")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("AGENTDESK_SYNC__REQUEST_TIMEOUT", "0.5")
    assert main(["--server", "http://127.0.0.1:9", "--data-dir", str(tmp_path), "sync", "--once"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("agentdesk: Cannot reach http://127.0.0.1:9 and there is no cache for this token yet")
