"""The whole path of an email reply with Cc: typed in the desk (Pilot), synced to a real server on loopback, sent
by its delivery worker through our relay sender to a real SMTP relay (aiosmtpd), its status back in the timeline."""

from __future__ import annotations

import time

import pytest
from server.mail_support import (  # tests/server, a namespace package
    Relay,
    RelayHandler,
    mail_desk,
    smtp_send,
)

from agentdesk.config import Settings
from agentdesk.desk import build_desk
from agentdesk.tui.widgets.timeline import Timeline


@pytest.fixture
def relay():
    running = Relay(RelayHandler())
    yield running
    running.close()


async def wait_until(pilot, predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        await pilot.pause(0.05)


async def test_a_reply_with_cc_and_subject_leaves_the_desk_as_one_email(db_engine, relay, tmp_path):
    with mail_desk(db_engine, relay_host="127.0.0.1", relay_port=relay.port, relay_security="none", relay_timeout=2.0) as desk:
        raw = (b"From: Lena Park <lena@customer.test>\r\nTo: Support <support@example.com>\r\nSubject: Broken charger\r\n"
               b"Message-ID: <l1@customer.test>\r\nDate: Tue, 10 Mar 2026 09:00:00 +0000\r\n\r\nIt sparks when I plug it in.\r\n")
        assert smtp_send(desk.smtp_port, raw)[0] == 250
        app = build_desk(Settings(sync={"poll_interval": 0.2}), desk.url, desk.world.tokens["alice@example.com"], tmp_path)
        async with app.run_test(size=(160, 45)) as pilot:
            await wait_until(pilot, lambda: app.open_row is not None)
            for _ in range(6):  # to Lena's conversation, as the agent would
                if (app.open_state or {}).get("subject") == "Broken charger":
                    break
                await pilot.press("j")
            assert app.open_state["subject"] == "Broken charger"
            await pilot.press("r", *"Please stop using it; a new one is on its way.")
            assert app.query_one("#subject").value == "Re: Broken charger"
            app.query_one("#cc").focus()
            await pilot.press(*"safety@customer.test")
            await pilot.press("ctrl+o", "ctrl+s")  # the quote key is the composer's: it works from the Cc field too
            await wait_until(pilot, lambda: len(relay.handler.received) == 1)
            got = relay.handler.received[0]
            assert got.rcpt_tos == ["lena@customer.test", "safety@customer.test"]
            assert str(got.message["Cc"]) == "safety@customer.test" and str(got.message["Subject"]) == "Re: Broken charger"
            body = got.message.get_content().replace("\r\n", "\n")
            assert body.startswith("Please stop using it; a new one is on its way.\n\nOn ")
            assert "Lena Park wrote:\n> It sparks when I plug it in.\n" in body
            timeline = app.query_one(Timeline)
            await wait_until(pilot, lambda: any("✓ sent" in "".join(segment.text for segment in line) for line in timeline._lines))
