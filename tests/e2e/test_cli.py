"""The command line as an admin uses it: real processes, real database, real server port."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import get_once_up

REPO = Path(__file__).resolve().parents[2]


def agentdesk(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "agentdesk", *args], capture_output=True, text=True, env=env, timeout=60
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    src = str(REPO / "src")
    return {
        **os.environ,
        "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "AGENTDESK_DATABASE__URL": f"sqlite:///{tmp_path / 'server.sqlite3'}",
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }


def test_admin_commands_then_serve_accepts_the_issued_token(env, tmp_path):
    agentdesk("admin", "team", "add", "Billing", env=env)
    agentdesk("admin", "agent", "add", "--name", "Lee Park", "--email", "Lee@Example.com", "--team", "Billing", env=env)
    issued = agentdesk("admin", "token", "issue", "lee@example.com", env=env)
    lines = issued.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("adk_")

    server = subprocess.Popen(
        [sys.executable, "-m", "agentdesk", "serve", "--port", "0"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        banner = server.stderr.readline()  # "agentdesk server on http://127.0.0.1:PORT (…)"
        url = banner.split()[3]
        me = get_once_up(f"{url}/api/v1/me", {"Authorization": f"Bearer {lines[0]}"})
        assert me.status_code == 200 and me.json()["name"] == "Lee Park"
        assert httpx.get(f"{url}/api/v1/me", headers={"Authorization": "Bearer wrong"}).status_code == 401
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_admin_errors_are_one_clear_line(env):
    agentdesk("admin", "team", "add", "Billing", env=env)
    duplicate = agentdesk("admin", "team", "add", "Billing", env=env, check=False)
    assert duplicate.returncode == 1 and duplicate.stderr.strip() == "agentdesk: Team 'Billing' already exists."
    missing = agentdesk("admin", "agent", "add", "--name", "X", "--email", "x@example.com", "--team", "Nope", env=env, check=False)
    assert missing.returncode == 1 and "No team named 'Nope'" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_serve_reports_a_bad_database_url_without_a_traceback(env):
    env = {**env, "AGENTDESK_DATABASE__URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"}
    result = agentdesk("serve", "--port", "0", env=env, check=False)
    assert result.returncode == 1
    assert "Cannot open the database" in result.stderr and "Traceback" not in result.stderr


def test_config_check_on_good_and_bad_files(env, tmp_path):
    good = agentdesk("config", "check", str(REPO / "config.example.toml"), env=env)
    assert good.stdout.strip().endswith("config.example.toml: OK")
    bad = tmp_path / "bad.toml"
    bad.write_text('[sync]\npoll_interval = -3\n\n[desk]\nsever_url = "http://x"\n')
    result = agentdesk("config", "check", str(bad), env=env, check=False)
    assert result.returncode == 1
    assert f"{bad}:2: [sync] poll_interval" in result.stderr
    assert f'{bad}:5: [desk] sever_url: unknown key (did you mean "server_url"?)' in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_config_file_stops_the_desk_with_the_problem(env, tmp_path):
    bad = tmp_path / "desk.toml"
    bad.write_text("[desk\n")
    result = agentdesk("--config", str(bad), env=env, check=False)
    assert result.returncode == 2
    assert str(bad) in result.stderr and "TOML syntax error" in result.stderr and "Traceback" not in result.stderr


def test_the_desk_without_a_token_says_how_to_get_one(env):
    env = {k: v for k, v in env.items() if k != "AGENTDESK_TOKEN"} | {"PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}
    result = agentdesk("--server", "http://127.0.0.1:9", env=env, check=False)
    assert result.returncode == 1
    assert "AGENTDESK_TOKEN" in result.stderr and "Traceback" not in result.stderr


def test_demo_refuses_a_folder_it_did_not_make(env, tmp_path):
    precious = tmp_path / "real" / "server.sqlite3"
    precious.parent.mkdir()
    precious.write_text("the center's data")
    result = agentdesk("demo", "--data-dir", str(precious.parent), env=env, check=False)
    assert result.returncode == 1 and "not a demo folder" in result.stderr
    assert precious.read_text() == "the center's data"
