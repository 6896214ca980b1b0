"""The composer, driven by Pilot over a cache-only desk (tests/tui/fixed_desk.py: Zoë's SMS conversation first in
the queue, Grace's email second): the SMS counter, note mode, email subject/Cc/quote, canned responses, drafts."""

from __future__ import annotations

import json
import re

import pytest
from fixed_desk import ME, build_cache, fixed_environment, frozen_clock
from textual.widgets import Select
from textual.widgets._select import SelectOverlay

from agentdesk.config.models import CannedDecl
from agentdesk.tui.app import AgentDesk
from agentdesk.tui.screens.pick import PickModal
from agentdesk.tui.widgets.composer import Composer

SIZE = (160, 45)
CANNED = [
    CannedDecl(name="refund", title="Refund issued",
               text="Hi {{ customer.first_name }}, your refund for {{ conversation.subject }} is on its way.\n{{ agent.name }}"),
    CannedDecl(name="refund-late", text="Sorry {{ customer.name }}, the refund is late."),
    CannedDecl(name="hello", text="Hello {{ customer.email }}!"),
    CannedDecl(name="sms-only", text="Reply STOP to opt out.", channels=["sms"]),
    CannedDecl(name="broken", text="Hi {{ customer.nickname }}"),
]


@pytest.fixture
def app(tmp_path):
    with fixed_environment():
        yield AgentDesk(build_cache(tmp_path / "cache.sqlite3"), ME, engine=None, clock=frozen_clock, canned=CANNED)


def screen_text(app) -> str:
    return "\n".join("".join(segment.text for segment in strip) for strip in app.screen._compositor.render_strips())


def composer(app) -> Composer:
    return app.query_one(Composer)


def notices(app) -> list[str]:
    return [str(n.message) for n in app._notifications]


async def open_conversation(pilot, conversation_id: str) -> None:
    """Walk the queue like an agent until the conversation is open, then start writing."""
    app = pilot.app
    await pilot.pause()
    for _ in range(10):
        if app.open_row is not None and app.open_row.id == conversation_id:
            break
        await pilot.press("j")
    assert app.open_row.id == conversation_id
    await pilot.press("r")


async def test_the_sms_counter_follows_typing(app):
    async with app.run_test(size=SIZE) as pilot:
        await open_conversation(pilot, "c-zoe-sms")
        assert composer(app).channel == "sms"
        await pilot.press(*"Refund done")
        assert "11 chars · GSM-7 · 1 segment" in screen_text(app)
        composer(app).reply.insert(" €")
        await pilot.pause()
        assert "13 chars · GSM-7 · 1 segment" in screen_text(app)  # € counts 2 units, still one part
        composer(app).reply.insert("x" * 147)  # 160 chars, 161 units: two parts
        await pilot.pause()
        assert "160 chars · GSM-7 · 2 segments" in screen_text(app)
        composer(app).reply.load_text("Thanks 👍")
        await pilot.pause()
        assert "8 chars · UCS-2 · 1 segment" in screen_text(app)


async def test_switching_channel_keeps_the_text_and_moves_the_draft(app):
    async with app.run_test(size=SIZE) as pilot:
        await open_conversation(pilot, "c-zoe-sms")
        await pilot.press(*"Let me check")
        app._stash_draft()
        select = app.query_one("#channel")
        assert [value for _, value in select._options if isinstance(value, str)] == ["email", "sms"]  # Zoë has both
        select.value = "email"
        await pilot.pause()
        assert composer(app).text == "Let me check" and composer(app).channel == "email"
        assert "chars ·" not in screen_text(app)  # no SMS counter on email
        assert app.cache.latest_draft("c-zoe-sms") == ("email", "Let me check")
        assert app.cache.db.execute("SELECT count(*) FROM drafts").fetchone()[0] == 1


async def test_note_mode_is_distinct_and_sends_a_note(app):
    async with app.run_test(size=SIZE) as pilot:
        await open_conversation(pilot, "c-zoe-sms")
        await pilot.press("escape", "n")  # from outside the composer: note mode, and into the composer
        assert composer(app).has_class("-note") and app.focused is composer(app).reply
        assert "Internal note" in screen_text(app) and "chars ·" not in screen_text(app)
        await pilot.press("ctrl+n")  # inside: back to a reply
        assert not composer(app).has_class("-note") and "Internal note" not in screen_text(app)
        await pilot.press("ctrl+n", *"Second charge is a bank error")
        await pilot.press("ctrl+s")
        [row] = app.cache.outbox()
        assert row["kind"] == "note" and row["args"]["text"] == "Second charge is a bank error"
        direction, status = app.cache.db.execute(
            "SELECT direction, delivery_status FROM interactions WHERE id = ?", (row["entity_id"],)).fetchone()
        assert (direction, status) == ("note", None)
        assert composer(app).text == "" and composer(app).has_class("-note")
        assert "Note saved for your team." in notices(app)


async def test_a_note_draft_comes_back_in_note_mode(app):
    async with app.run_test(size=SIZE) as pilot:
        await open_conversation(pilot, "c-zoe-sms")
        await pilot.press("ctrl+n", *"half a note", "escape", "j")
        assert app.open_row.id != "c-zoe-sms" and not composer(app).has_class("-note") and composer(app).text == ""
        await pilot.press("k")
        assert composer(app).has_class("-note") and composer(app).text == "half a note"
        assert app.cache.latest_draft("c-zoe-sms") == ("note", "half a note")


async def test_an_email_reply_has_subject_to_cc_and_a_quote(app):
    async with app.run_test(size=SIZE) as pilot:
        await open_conversation(pilot, "c-grace-mail")
        text = screen_text(app)
        assert "grace@example.org" in text  # To, shown
        assert app.query_one("#subject").value == "Re: Invoice copy for October"
        await pilot.press(*"Attached.")
        await pilot.press("ctrl+o")
        quoted = composer(app).text
        assert re.search(r"^Attached\.\n\nOn Mon, 23 Nov 2026 at 09:30, Grace Anderson wrote:\n> Hello,\n>\n> Could you", quoted)
        assert quoted.endswith("> Best regards,\n> Grace Anderson")
        await pilot.press("ctrl+o")  # again: the quote goes, the reply stays
        assert composer(app).text == "Attached."
        await pilot.press("ctrl+o")
        app.query_one("#cc").focus()
        await pilot.press(*"boss@example.org, Accounts@Example.org")
        app.query_one("#subject").value = "Your October invoice"
        await pilot.press("ctrl+s")
        [row] = app.cache.outbox()
        assert row["kind"] == "reply"
        args = row["args"]
        assert (args["channel"], args["subject"], args["cc"]) == ("email", "Your October invoice", ["boss@example.org", "accounts@example.org"])
        assert args["text"].startswith("Attached.\n\nOn Mon, 23 Nov 2026 at 09:30, Grace Anderson wrote:\n> Hello,")
        meta, status = app.cache.db.execute("SELECT meta, delivery_status FROM interactions WHERE id = ?", (row["entity_id"],)).fetchone()
        assert json.loads(meta)["cc"] == ["boss@example.org", "accounts@example.org"] and status == "queued"
        assert app.query_one("#cc").value == "" and app.query_one("#subject").value == "Re: Invoice copy for October"


async def test_an_edited_subject_and_cc_stay_with_their_conversation(app):
    async with app.run_test(size=SIZE) as pilot:
        await open_conversation(pilot, "c-grace-mail")
        await pilot.press(*"Attached.")
        app.query_one("#cc").value = "boss@example.org"
        app.query_one("#subject").value = "Your October invoice"
        await pilot.press("escape", "k")  # to another conversation: its own, prefilled fields
        assert app.open_row.id != "c-grace-mail" and app.query_one("#cc").value == ""
        await pilot.press("j")  # and back: the text from the draft, Subject and Cc as the agent left them
        assert app.open_row.id == "c-grace-mail" and composer(app).text == "Attached."
        assert (app.query_one("#subject").value, app.query_one("#cc").value) == ("Your October invoice", "boss@example.org")
        await pilot.press("r", "ctrl+s")
        assert app.cache.outbox()[0]["args"]["cc"] == ["boss@example.org"]


async def test_an_email_to_a_customer_with_no_address_is_refused_before_it_leaves(app):
    async with app.run_test(size=SIZE) as pilot:
        await open_conversation(pilot, "c-grace-mail")
        app.cache.db.execute("DELETE FROM identities WHERE kind = 'email'")
        await pilot.press("escape", "k", "j", "r", *"Attached.", "ctrl+s")
        assert app.cache.outbox_count() == 0 and composer(app).text == "Attached."
        assert any("no email address on file" in n for n in notices(app))


async def test_a_bad_cc_sends_nothing_and_says_why(app):
    async with app.run_test(size=SIZE) as pilot:
        await open_conversation(pilot, "c-grace-mail")
        await pilot.press(*"Attached.")
        app.query_one("#cc").value = "boss at example"
        await pilot.press("ctrl+s")
        assert app.cache.outbox_count() == 0 and composer(app).text == "Attached."
        assert any("not a valid email address" in n for n in notices(app))


async def test_quoting_needs_an_email_conversation(app):
    async with app.run_test(size=SIZE) as pilot:
        await open_conversation(pilot, "c-zoe-sms")
        await pilot.press("ctrl+o")
        assert composer(app).text == "" and any("Nothing to quote" in n for n in notices(app))


async def test_double_colon_name_then_space_or_tab_inserts_the_canned_response(app):
    async with app.run_test(size=SIZE) as pilot:
        await open_conversation(pilot, "c-grace-mail")
        await pilot.press(*"::refund", "space")
        expected = "Hi Grace, your refund for Invoice copy for October is on its way.\nAlex Morgan"
        assert composer(app).text == expected
        composer(app).reply.clear()
        await pilot.press(*"Dear customer. ::hel", "tab")  # a unique prefix completes with tab
        assert composer(app).text == "Dear customer. Hello grace@example.org!"
        assert app.focused is composer(app).reply  # tab did not move focus or switch queue tabs
        composer(app).reply.clear()
        await pilot.press(*"::nothing", "space", *"a::refund", "space")  # unknown names and mid-word stay text
        assert composer(app).text == "::nothing a::refund "
        composer(app).reply.clear()
        await pilot.press(*"::sms-only", "space")  # offered on SMS only
        assert composer(app).text == "::sms-only "


async def test_an_ambiguous_prefix_opens_the_picker(app):
    async with app.run_test(size=SIZE) as pilot:
        await open_conversation(pilot, "c-grace-mail")
        await pilot.press(*"::ref", "tab")
        assert isinstance(app.screen, PickModal)
        assert [value.name for _, value in app.screen.choices] == ["refund", "refund-late"]
        await pilot.press("down", "enter")
        assert composer(app).text == "Sorry Grace Anderson, the refund is late."


async def test_the_picker_inserts_at_the_cursor(app):
    async with app.run_test(size=SIZE) as pilot:
        await open_conversation(pilot, "c-zoe-sms")
        await pilot.press(*"Hi. ", "ctrl+t")
        assert isinstance(app.screen, PickModal)
        names = [value.name for _, value in app.screen.choices]
        assert names == ["refund", "refund-late", "hello", "sms-only", "broken"]
        assert "refund — Refund issued" in screen_text(app)
        await pilot.press("up", "up", "enter")  # the list wraps: sms-only, second from the end
        assert composer(app).text == "Hi. Reply STOP to opt out."
        assert app.focused is composer(app).reply


async def test_a_broken_template_inserts_nothing_and_says_why(app):
    async with app.run_test(size=SIZE) as pilot:
        await open_conversation(pilot, "c-grace-mail")
        await pilot.press(*"::broken", "tab")
        assert composer(app).text == "::broken"
        [message] = [n for n in notices(app) if "broken" in n]
        assert "Canned response 'broken' uses an unknown variable" in message and "nickname" in message


async def test_hostile_customer_text_reaches_the_composer_inert(app):
    hostile = "\x1b]52;c;cm0gLXJmIH4=\x07[@click=app.quit]x[/]"
    app.cache.db.execute("UPDATE customers SET display_name = ?, first_name = ? WHERE id = 'cu-grace'", (hostile, hostile))
    app.cache.db.execute("UPDATE identities SET address = ? WHERE customer_id = 'cu-grace' AND kind = 'email'", (hostile,))
    app.cache.db.execute("UPDATE interactions SET subject = ?, text = ? WHERE conversation_id = 'c-grace-mail'", (hostile, hostile))
    inert = "␛]52;c;cm0gLXJmIH4=␇[@click=app.quit]x[/]"
    async with app.run_test(size=SIZE) as pilot:
        await open_conversation(pilot, "c-grace-mail")
        await pilot.press(*"::refund", "space", "ctrl+o")
        assert app.is_running
        assert app.query_one("#subject").value == f"Re: {inert}"
        text = composer(app).text
        assert "\x1b" not in text and "\x07" not in text
        assert text.startswith(f"Hi {inert}, your refund for") and f"{inert} wrote:\n> {inert}" in text
        screen = screen_text(app)
        assert "\x1b" not in screen and inert in screen  # the To line


async def test_the_channel_list_follows_the_conversation_opened(app):
    """Each conversation offers its own customer's channels: Zoë has email and SMS, Grace email alone."""
    async with app.run_test(size=SIZE) as pilot:
        await open_conversation(pilot, "c-zoe-sms")
        await pilot.press("escape", "j")
        assert app.open_row.id == "c-grace-mail"
        select = app.query_one("#channel", Select)
        select.focus()
        await pilot.press("enter")  # the drop-down: Grace's one channel
        overlay = select.query_one(SelectOverlay)
        assert select.expanded and offered(overlay) == ["Channel", "✉ Email"]
        await pilot.press("escape", "escape", "k")
        assert app.open_row.id == "c-zoe-sms" and select.value == "sms" and "SMS" in screen_text(app)
        select.focus()
        await pilot.press("enter")  # Zoë's two, her conversation's own highlighted
        assert offered(overlay) == ["Channel", "✉ Email", "✆ SMS"] and overlay.highlighted == 2
        await pilot.press("up", "enter")
        assert select.value == "email" and composer(app).channel == "email" and not select.expanded


async def test_a_conversation_opened_under_the_open_channel_list_lists_its_own_channels(app):
    """A conversation that opens while the channel list is open (a sync moved the open one away): the list shows
    the new customer's channels at once, and a pick is the channel it shows."""
    async with app.run_test(size=SIZE) as pilot:
        await open_conversation(pilot, "c-zoe-sms")
        select = app.query_one("#channel", Select)
        select.focus()
        await pilot.press("enter")
        overlay = select.query_one(SelectOverlay)
        assert offered(overlay) == ["Channel", "✉ Email", "✆ SMS"]
        queue = app.query_one("#queue")
        app.open_conversation(next(queue.row(i) for i in range(5) if queue.row(i).id == "c-grace-mail"))
        await pilot.pause()
        assert select.expanded and offered(overlay) == ["Channel", "✉ Email"] and overlay.highlighted == 1
        await pilot.press("up", "down", "enter")
        assert select.value == "email" and composer(app).channel == "email" and not select.expanded


def offered(overlay: SelectOverlay) -> list[str]:
    return [str(overlay.get_option_at_index(index).prompt) for index in range(overlay.option_count)]
