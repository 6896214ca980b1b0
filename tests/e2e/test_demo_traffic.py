"""The demo comes alive: its server process takes simulated traffic through the real channel paths (SMTP,
Twilio-signed webhooks, the chat websocket), and the agent's replies really leave (mail sink, Twilio stand-in)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentdesk.cli import build_parser
from agentdesk.demo.launcher import _server_command

REPO = Path(__file__).resolve().parents[2]
TOKEN = "adk_demo_traffic_test"


@dataclass
class Demo:
    url: str
    db_path: Path
    log_path: Path

    def rows(self, sql: str, *params: Any) -> list[tuple]:
        db = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5)
        try:
            return db.execute(sql, params).fetchall()
        finally:
            db.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def demo_server(tmp_path: Path, *args: str) -> Iterator[Demo]:
    env = {**os.environ, "AGENTDESK_DEMO_TOKEN": TOKEN, "PYTHONPATH": str(REPO / "src")}
    log_path = tmp_path / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agentdesk.demo.server", "--data-dir", str(tmp_path), *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, env=env,
        )
    try:
        line = proc.stdout.readline()
        assert line.startswith("PORT "), log_path.read_text()
        yield Demo(f"http://127.0.0.1:{int(line.split()[1])}", tmp_path / "server.sqlite3", log_path)
    finally:
        proc.stdin.close()  # as when `agentdesk demo` exits
        assert proc.wait(timeout=10) == 0, log_path.read_text()


def wait_for(what: str, check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.1)


# What each path leaves on an interaction; the seeded day's rows carry none of these.
_NEW = {
    "email": "{t}channel = 'email' AND json_extract({t}meta, '$.source') = 'smtp'",
    "sms": "{t}channel = 'sms' AND json_extract({t}meta, '$.provider') = 'twilio'",
    "whatsapp": "{t}channel = 'whatsapp' AND json_extract({t}meta, '$.provider') = 'twilio'",
    "phone": "{t}channel = 'phone' AND json_extract({t}meta, '$.provider') = 'twilio'",
    "chat": "{t}channel = 'chat' AND json_extract({t}meta, '$.prechat') IS NOT NULL",
}


def new(kind: str, table: str = "") -> str:
    """SQL: an inbound interaction of `kind` that came through its channel path (of `table`, when given)."""
    t = f"{table}." if table else ""
    return f"{t}direction = 'inbound' AND " + _NEW[kind].format(t=t)


ANY_NEW = "(" + ") OR (".join(new(kind) for kind in _NEW) + ")"


def test_traffic_arrives_through_every_channel_path_onto_existing_timelines(tmp_path):
    with demo_server(tmp_path, "--traffic-interval", "0.15") as demo:
        def every_path() -> bool:
            return all(demo.rows(f"SELECT 1 FROM interaction WHERE {new(kind)}") for kind in _NEW)

        wait_for("traffic on every channel", every_path)
        # A call: rung in, then completed with its duration, recording and voicemail transcript.
        call = wait_for("a call with its voicemail transcript", lambda: demo.rows(
            f"SELECT text, json_extract(meta, '$.call_status'), json_extract(meta, '$.duration_s'), "
            f"json_extract(meta, '$.recording_url') FROM interaction WHERE {new('phone')} AND text LIKE 'Voicemail: %'"))
        _, status, duration, recording = call[0]
        assert status == "completed" and duration > 0 and recording.startswith("https://")
        # An answer threaded by In-Reply-To into a seeded email conversation, and an out-of-office reply
        # that does not reopen the conversation it lands in.
        threaded = wait_for("an answer in a seeded email thread", lambda: demo.rows(
            f"SELECT i.conversation_id FROM interaction i WHERE {new('email', 'i')} AND EXISTS ("
            "SELECT 1 FROM interaction o WHERE o.conversation_id = i.conversation_id AND o.direction = 'outbound' "
            "AND o.occurred_at < i.occurred_at)"))
        assert threaded
        auto = wait_for("an out-of-office reply", lambda: demo.rows(
            f"SELECT c.status, (SELECT count(*) FROM interaction o WHERE o.conversation_id = c.id) FROM interaction i "
            f"JOIN conversation c ON c.id = i.conversation_id WHERE {new('email', 'i')} "
            "AND json_extract(i.meta, '$.auto_reply') IS NOT NULL"))
        assert auto[0][1] > 1  # in the thread it answers, not a conversation of its own
        # Mostly the seeded day's customers: new traffic lands on timelines that already have a story.
        customers = demo.rows(f"SELECT DISTINCT customer_id FROM interaction WHERE {ANY_NEW}")
        seeded = [c for (c,) in customers if demo.rows(
            f"SELECT 1 FROM interaction WHERE customer_id = ? AND NOT ({ANY_NEW})", c)]
        assert len(seeded) >= len(customers) / 2, (len(seeded), len(customers))
        # A chat visitor who named a known customer's address: a merge suggestion, never a silent merge.
        assert demo.rows("SELECT count(*) FROM merge_suggestion")[0][0] >= 1
    log = demo.log()
    assert "chat widget: http://127.0.0.1:" in log
    assert not any(level in log for level in ("WARNING", "ERROR", "Traceback")), log


def push_reply(demo: Demo, conversation_id: str, channel: str, text: str) -> str:
    interaction_id = uuid.uuid4().hex
    mutation = {"id": uuid.uuid4().hex, "kind": "reply", "args": {
        "conversation_id": conversation_id, "interaction_id": interaction_id, "channel": channel, "text": text}}
    response = httpx.post(f"{demo.url}/api/v1/sync/push", json={"mutations": [mutation]},
                          headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert response.json()["results"][0]["status"] == "applied", response.text
    return interaction_id


def open_conversation(demo: Demo, channel: str) -> str:
    kind = "email" if channel == "email" else "phone"
    return demo.rows(
        "SELECT c.id FROM conversation c WHERE c.channel = ? AND c.status = 'open' AND EXISTS ("
        "SELECT 1 FROM identity i WHERE i.customer_id = c.customer_id AND i.kind = ?) ORDER BY c.id LIMIT 1",
        channel, kind)[0][0]


def test_replies_leave_for_real_and_no_traffic_means_none(tmp_path):
    with demo_server(tmp_path, "--no-traffic", "--traffic-interval", "0.1") as demo:
        email = push_reply(demo, open_conversation(demo, "email"), "email", "Your refund was issued today.")
        sms = push_reply(demo, open_conversation(demo, "sms"), "sms", "Fixed, please restart the router.")

        def status(interaction_id: str) -> tuple[str, str | None]:
            return demo.rows("SELECT i.delivery_status, d.provider_id FROM interaction i JOIN delivery d "
                             "ON d.interaction_id = i.id WHERE i.id = ?", interaction_id)[0]

        # Email: through the relay (the demo's mail sink) and "sent", with the Message-ID it went out with.
        sent = wait_for("the email reply sent", lambda: (s := status(email))[0] == "sent" and s)
        assert sent[1] == f"<{email}@demo.agentdesk.test>"
        # SMS: through the Twilio stand-in, then "delivered" by its signed status callback.
        delivered = wait_for("the SMS reply delivered", lambda: (s := status(sms))[0] == "delivered" and s)
        assert delivered[1].startswith("SM")
        # Seconds have passed: at 0.1 s a gap, traffic (were it on) would have sent dozens of events by now.
        assert demo.rows(f"SELECT count(*) FROM interaction WHERE {ANY_NEW}") == [(0,)]
    assert "traffic" not in demo.log()


def test_the_demo_command_passes_its_traffic_flags_to_the_server():
    args = build_parser().parse_args(["demo", "--no-traffic"])
    assert args.traffic is False
    args = build_parser().parse_args(["demo", "--traffic-interval", "4.5"])
    assert (args.traffic, args.traffic_interval) == (True, 4.5)
    assert "--no-traffic" in _server_command(Path("/d"), 7, False, None)
    assert _server_command(Path("/d"), 7, True, 4.5)[-2:] == ["--traffic-interval", "4.5"]
    assert "--traffic-interval" not in _server_command(Path("/d"), 7, True, None)


@pytest.mark.parametrize("bad", ["0", "-3", "soon", "nan"])
def test_a_bad_traffic_interval_is_refused_with_a_reason(bad, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--traffic-interval", bad])
    assert "--traffic-interval: expected seconds between 0.05 and 3600" in capsys.readouterr().err


def test_a_failing_channel_is_logged_and_the_simulator_carries_on(tmp_path, caplog):
    """Every path refused (nothing listens where the simulator sends): each failure is one log line, and the
    simulator keeps going rather than dying (or taking its server down)."""
    import logging
    import socket

    from agentdesk.demo.data import generate
    from agentdesk.demo.outside import OutsideWorld
    from agentdesk.demo.seed import seed_demo
    from agentdesk.demo.traffic import KINDS, Traffic
    from agentdesk.server.db import create_schema, make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'server.sqlite3'}")
    create_schema(engine)
    seed_demo(engine, generate(7), TOKEN)
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        dead = closed.getsockname()[1]
    caplog.set_level(logging.INFO, logger="agentdesk.demo.traffic")
    world = OutsideWorld()
    traffic = Traffic(engine, base_url=f"http://127.0.0.1:{dead}", smtp_address=lambda: ("127.0.0.1", dead),
                      world=world, interval=0.05)
    traffic.start()
    try:
        wait_for("every kind of event to fail", lambda: sum("event failed" in r.getMessage() or "visitor" in r.getMessage()
                                                           for r in caplog.records if r.levelno == logging.WARNING) >= len(KINDS))
        assert traffic._thread.is_alive()
    finally:
        traffic.stop()
        world.stop()
    assert not traffic._thread.is_alive()
    failures = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in failures)  # a line each, no traceback
    assert any("ConnectError" in r.getMessage() for r in failures)  # Twilio webhooks
    assert any("ConnectionRefusedError" in r.getMessage() for r in failures)  # SMTP, the chat websocket
