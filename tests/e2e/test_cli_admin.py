"""`agentdesk admin …` as an admin uses it: agents, teams, tokens, compaction; declared config on `serve`.

Most tests call `main()` in this process (fast); the ones about stdout discipline and `serve` run real
processes, as tests/e2e/test_cli.py does.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from conftest import get_once_up
from sqlmodel import select

from agentdesk.cli import main
from agentdesk.domain.clock import utcnow
from agentdesk.server.auth import agent_for_token, integration_for_token
from agentdesk.server.db import make_engine, session
from agentdesk.server.models import Agent, ApiToken, Change, Team

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'server.sqlite3'}"
    monkeypatch.setenv("AGENTDESK_DATABASE__URL", url)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return url


@pytest.fixture
def cli(db_url, capsys):
    """Run `agentdesk ARGS…` in-process: (exit status, stdout, stderr)."""

    def run(*args: str, ok: bool = True) -> tuple[int, str, str]:
        status = main(list(args))
        out, err = capsys.readouterr()
        if ok:
            assert status == 0, err
        return status, out, err

    return run


@pytest.fixture
def db(db_url):
    engine = make_engine(db_url)
    yield lambda: session(engine)
    engine.dispose()


def table(out: str) -> list[dict[str, str]]:
    """Parse an aligned table, checking that every cell starts at its header's column."""
    header, *rows = out.rstrip("\n").splitlines()
    names = header.split()
    starts = [header.index(name) for name in names]
    parsed = []
    for row in rows:
        for start in starts[1:]:
            assert row[start - 2 : start] == "  " or row[start - 1] == " ", f"misaligned: {row!r}"
        cells = [row[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        parsed.append(dict(zip(names, cells, strict=True)))
    return parsed


def error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("agentdesk: "), err
    assert "Traceback" not in err
    return lines[0]


def test_agent_commands(cli, db):
    cli("admin", "team", "add", "Billing")
    cli("admin", "team", "add", "Support")
    _, _, err = cli(
        "admin", "agent", "add", "--name", "Lee Park", "--email", "Lee@Example.com", "--team", "Billing", "--team", "Support",
        "--skill", "Spanish", "--skill", "refunds", "--capacity", "email=4", "--capacity", "*=2", "--role", "supervisor",
    )
    assert err.startswith("Added agent Lee Park <lee@example.com>")
    cli("admin", "agent", "add", "--name", "Bo", "--email", "bo@example.com")

    _, out, _ = cli("admin", "agent", "list")
    rows = {row["EMAIL"]: row for row in table(out)}
    assert list(rows) == ["bo@example.com", "lee@example.com"]
    lee = rows["lee@example.com"]
    assert (lee["NAME"], lee["ROLE"], lee["ENABLED"], lee["TEAMS"]) == ("Lee Park", "supervisor", "yes", "Billing,Support")
    assert (lee["SKILLS"], lee["CAPACITY"]) == ("spanish,refunds", "email=4,*=2") and len(lee["ID"]) == 32
    assert rows["bo@example.com"]["TEAMS"] == ""

    cli("admin", "agent", "skills", "bo@example.com", "french", "billing")
    cli("admin", "agent", "capacity", "bo@example.com", "sms=1")
    cli("admin", "agent", "role", "bo@example.com", "admin")
    cli("admin", "agent", "join", "bo@example.com", "Support")
    cli("admin", "agent", "leave", "lee@example.com", "Billing")
    _, _, err = cli("admin", "agent", "disable", "lee@example.com")
    assert err.strip() == "Disabled agent lee@example.com"
    rows = {row["EMAIL"]: row for row in table(cli("admin", "agent", "list")[1])}
    assert rows["bo@example.com"]["SKILLS"] == "french,billing" and rows["bo@example.com"]["CAPACITY"] == "sms=1"
    assert rows["bo@example.com"]["ROLE"] == "admin" and rows["bo@example.com"]["TEAMS"] == "Support"
    assert rows["lee@example.com"]["TEAMS"] == "Support" and rows["lee@example.com"]["ENABLED"] == "no"

    cli("admin", "agent", "enable", "lee@example.com")
    cli("admin", "agent", "skills", "bo@example.com")  # none given: cleared
    cli("admin", "agent", "capacity", "bo@example.com")  # none given: back to the default
    with db() as s:
        bo = s.exec(select(Agent).where(Agent.email == "bo@example.com")).one()
        assert (bo.skills, bo.capacity) == ([], {})
        assert s.exec(select(Agent).where(Agent.email == "lee@example.com")).one().active is True
        # Every change reached the change log, so desks see it.
        assert len(s.exec(select(Change).where(Change.entity == "agents", Change.entity_id == bo.id)).all()) == 6


def test_team_commands(cli, db):
    cli("admin", "team", "add", "Support")
    cli("admin", "team", "add", "Billing", "--routing", "queue", "--timezone", "Europe/London")
    cli("admin", "agent", "add", "--name", "Lee", "--email", "lee@example.com", "--team", "Billing")
    rows = table(cli("admin", "team", "list")[1])
    assert [(r["NAME"], r["ENABLED"], r["ROUTING"], r["TIMEZONE"], r["MEMBERS"]) for r in rows] == [
        ("Billing", "yes", "queue", "Europe/London", "1"),
        ("Support", "yes", "round_robin", "UTC", "0"),
    ]
    _, _, err = cli("admin", "team", "disable", "Billing")
    assert err.strip() == "Disabled team Billing"
    assert table(cli("admin", "team", "list")[1])[0]["ENABLED"] == "no"
    status, _, err = cli("admin", "team", "disable", "Billing", ok=False)
    assert status == 1 and error_line(err) == "agentdesk: Team 'Billing' is already disabled."
    cli("admin", "team", "enable", "Billing")
    with db() as s:
        assert s.exec(select(Team).where(Team.name == "Billing")).one().active is True


def test_token_commands(cli, db):
    cli("admin", "team", "add", "Billing")
    cli("admin", "agent", "add", "--name", "Lee", "--email", "lee@example.com", "--team", "Billing")
    _, out, err = cli("admin", "token", "issue", "lee@example.com")
    agent_token = out.strip()
    assert out == agent_token + "\n" and agent_token.startswith("adk_")
    assert "shown only this once" in err
    _, out, _ = cli("admin", "token", "issue", "--integration", "Acme CRM")
    machine = out.strip()
    assert out == machine + "\n" and machine.startswith("adk_") and machine != agent_token
    with db() as s:
        assert agent_for_token(s, agent_token).email == "lee@example.com"
        assert integration_for_token(s, machine).name == "Acme CRM"
        assert agent_for_token(s, machine) is None and integration_for_token(s, agent_token) is None

    _, out, _ = cli("admin", "token", "list")
    rows = table(out)
    assert [(r["KIND"], r["FOR"], r["ENDS"], r["REVOKED"]) for r in rows] == [
        ("agent", "lee@example.com", "…" + agent_token[-4:], "-"),
        ("integration", "Acme CRM", "…" + machine[-4:], "-"),
    ]
    for secret in (agent_token, machine):
        assert secret not in out and hashlib.sha256(secret.encode()).hexdigest() not in out

    _, _, err = cli("admin", "token", "revoke", rows[1]["ID"])
    assert err.strip() == f"Revoked token {rows[1]['ID']} (…{machine[-4:]})"
    assert table(cli("admin", "token", "list")[1])[1]["REVOKED"].endswith("UTC")
    with db() as s:
        assert integration_for_token(s, machine) is None
    status, _, err = cli("admin", "token", "revoke", rows[1]["ID"], ok=False)
    assert status == 1 and "already revoked" in error_line(err)

    for args in ((), ("lee@example.com", "--integration", "X")):
        status, out, err = cli("admin", "token", "issue", *args, ok=False)
        assert status == 1 and out == "" and "EMAIL or --integration NAME" in error_line(err)


def test_compact_removes_old_changes_and_says_so(cli, db):
    cli("admin", "team", "add", "Billing")
    cli("admin", "team", "add", "Support")
    cli("admin", "agent", "add", "--name", "Lee", "--email", "lee@example.com", "--team", "Billing")
    with db() as s:
        seqs = sorted(s.exec(select(Change.seq)).all())
        assert len(seqs) == 4
        s.execute(sa.update(Change).where(Change.seq <= seqs[1]).values(created_at=utcnow() - timedelta(days=10)))
        s.commit()
    _, out, _ = cli("admin", "compact", "--keep-days", "7")
    assert out.strip() == f"Removed 2 changes older than 7 days; desks behind change {seqs[1]} will bootstrap again."
    with db() as s:
        assert sorted(s.exec(select(Change.seq)).all()) == seqs[2:]
    _, out, _ = cli("admin", "compact", "--keep-days", "7")
    assert out.startswith("Removed 0 changes")
    status, _, err = cli("admin", "compact", "--keep-days", "-1", ok=False)
    assert status == 1 and error_line(err) == "agentdesk: --keep-days must be 0 or more, got -1"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("admin", "agent", "disable", "nobody@example.com"), "No agent with email or id 'nobody@example.com'"),
        (("admin", "agent", "join", "lee@example.com", "Nope"), "No team named 'Nope'"),
        (("admin", "agent", "join", "lee@example.com", "Billing"), "lee@example.com is already in team 'Billing'."),
        (("admin", "agent", "leave", "lee@example.com", "Support"), "lee@example.com is not in team 'Support'."),
        (("admin", "agent", "capacity", "lee@example.com", "fax=2"), "Unknown channel 'fax' in capacity"),
        (("admin", "agent", "capacity", "lee@example.com", "email"), "capacity: expected CHANNEL=N"),
        (("admin", "agent", "skills", "lee@example.com", "two words"), "A skill is one word"),
        (("admin", "agent", "add", "--name", "X", "--email", "lee@example.com"), "An agent with email lee@example.com already exists."),
        (("admin", "agent", "disable", "ada@example.com"), "ada@example.com is the last enabled admin"),
        (("admin", "team", "enable", "Nope"), "No team named 'Nope'"),
        (("admin", "team", "add", "Ops", "--timezone", "Mars/Base"), "Unknown time zone 'Mars/Base'"),
        (("admin", "token", "revoke", "0123456789abcdef"), "No token with id '0123456789abcdef'"),
        (("admin", "token", "issue", "nobody@example.com"), "No agent with email or id 'nobody@example.com'"),
    ],
)
def test_admin_errors_are_one_line(cli, args, message):
    cli("admin", "team", "add", "Billing")
    cli("admin", "team", "add", "Support")
    cli("admin", "agent", "add", "--name", "Lee", "--email", "lee@example.com", "--team", "Billing")
    cli("admin", "agent", "add", "--name", "Ada", "--email", "ada@example.com", "--role", "admin")
    status, out, err = cli(*args, ok=False)
    assert status == 1 and out == ""
    assert error_line(err).startswith(f"agentdesk: {message}")


# ---------------------------------------------------------------------------------------------- real processes


def agentdesk(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "agentdesk", *args], capture_output=True, text=True, env=env, timeout=60)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "AGENTDESK_DATABASE__URL": f"sqlite:///{tmp_path / 'server.sqlite3'}",
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }


def test_an_integration_token_is_the_only_line_on_stdout(env):
    issued = agentdesk("admin", "token", "issue", "--integration", "Acme IVR", env=env)
    assert len(issued.stdout.splitlines()) == 1 and issued.stdout.startswith("adk_")
    assert "Acme IVR" in issued.stderr and issued.stdout.strip() not in issued.stderr
    listed = agentdesk("admin", "token", "list", env=env)
    assert "Acme IVR" in listed.stdout and issued.stdout.strip() not in listed.stdout


def test_serve_applies_the_declared_teams_and_limits(env, tmp_path):
    config = tmp_path / "server.toml"
    config.write_text(
        "[server]\nrate_limit_burst = 3\nrate_limit_per_second = 0.1\n\n"
        '[[teams]]\nname = "Nights"\ntimezone = "Europe/Paris"\nhours = { mon = "22:00-24:00", tue = "00:00-06:00" }\n\n'
        '[[routing.rules]]\nchannel = "sms"\nteam = "Nights"\n'
    )
    agentdesk("admin", "agent", "add", "--name", "Ada", "--email", "ada@example.com", "--role", "admin", env=env)
    token = agentdesk("admin", "token", "issue", "ada@example.com", env=env).stdout.strip()
    server = subprocess.Popen(
        [sys.executable, "-m", "agentdesk", "--config", str(config), "serve", "--port", "0"],
        env=env, stderr=subprocess.PIPE, text=True,
    )
    try:
        banner = server.stderr.readline()
        url = banner.split()[3]
        assert server.stderr.readline().strip() == "Applied declared configuration: 1 teams, 1 routing rules"
        teams = get_once_up(f"{url}/api/v1/admin/teams", {"Authorization": f"Bearer {token}"})
        assert [(t["name"], t["timezone"], t["hours"]) for t in teams.json()] == [
            ("Nights", "Europe/Paris", {"mon": "22:00-24:00", "tue": "00:00-06:00"})
        ]
        statuses = [httpx.get(f"{url}/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]  # the file's burst of 3, one already spent on the team list
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_serve_refuses_a_rule_for_an_unknown_team_in_one_line(env, tmp_path):
    config = tmp_path / "server.toml"
    config.write_text('[[routing.rules]]\nkeyword = "refund"\nteam = "Refunds"\n')
    result = agentdesk("--config", str(config), "serve", "--port", "0", env=env, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"agentdesk: {config}: [[routing.rules]] number 1 sends to team 'Refunds', which does not exist; "
        "declare it under [[teams]] or add it with: agentdesk admin team add 'Refunds'"
    )


def test_serve_reports_a_bad_hours_string_with_file_and_line(env, tmp_path):
    config = tmp_path / "server.toml"
    config.write_text('[[teams]]\nname = "Billing"\nhours = { mon = "9am-5pm" }\n')
    result = agentdesk("--config", str(config), "serve", "--port", "0", env=env, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{config}:3: teams.0.hours: mon: expected 'HH:MM-HH:MM'" in result.stderr


def test_tokens_are_hashed_at_rest(env, tmp_path):
    token = agentdesk("admin", "token", "issue", "--integration", "Acme", env=env).stdout.strip()
    engine = make_engine(env["AGENTDESK_DATABASE__URL"])
    try:
        with session(engine) as s:
            (row,) = s.exec(select(ApiToken)).all()
            assert row.token_hash == hashlib.sha256(token.encode()).hexdigest() and row.hint == token[-4:]
    finally:
        engine.dispose()
    raw = (tmp_path / "server.sqlite3").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("server.sqlite3-*")
    )
    assert token.encode() not in raw
