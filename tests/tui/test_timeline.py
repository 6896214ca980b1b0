"""The merged timeline over a cache-only desk: windowed loading, conversation jumps, expand, reveal, live updates,
and how each channel shows (email headers and folded quotes, calls, grouped chats, SMS status, notes)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from agentdesk.domain.clock import to_iso
from agentdesk.store.cache import Cache, Identity
from agentdesk.tui.app import AgentDesk
from agentdesk.tui.widgets.timeline import MAX_ITEMS, MAX_LAID, WINDOW, Timeline

ME = Identity("me", "Me", ("billing",))
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SIZE = (160, 45)
# The customer's conversations; the bulk history cycles through them in runs of RUN interactions.
CONVERSATIONS = [
    ("c-mail", "email", "Refund for March", "open"),
    ("c-chat", "chat", None, "closed"),
    ("c-phone", "phone", None, "pending"),
    ("c-sms", "sms", None, "closed"),
]
RUN = 5


def at(minutes: float) -> str:
    return to_iso(START + timedelta(minutes=minutes))


def message(n: int) -> str:
    return f"history message {n:05d}"


def insert(db, rows: list[tuple]) -> None:
    db.executemany(
        "INSERT INTO interactions (id, conversation_id, customer_id, channel, direction, author_id, text, subject, meta,"
        " delivery_status, occurred_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


def history(count: int, customer: str = "cu1", prefix: str = "h") -> list[tuple]:
    """`count` plain interactions, one a minute, in runs of RUN per conversation (inbound and outbound)."""
    rows = []
    for n in range(count):
        conversation, channel, _, _ = CONVERSATIONS[(n // RUN) % len(CONVERSATIONS)]
        inbound = n % 2 == 0
        rows.append((
            f"{prefix}{n:05d}", conversation if customer == "cu1" else f"{customer}-c", customer, channel,
            "inbound" if inbound else "outbound", None if inbound else "me", message(n), None, "{}",
            None if inbound else "delivered", at(n),
        ))  # fmt: skip
    return rows


def make_cache(path, count: int) -> Cache:
    cache = Cache(path)
    db = cache.db
    db.execute("INSERT INTO teams (id, name, active) VALUES ('billing', 'Billing', 1)")
    db.execute("INSERT INTO agents (id, name, active) VALUES ('me', 'Me', 1)")
    db.execute("INSERT INTO customers (id, display_name) VALUES ('cu1', 'Ada Lovelace'), ('cu2', 'Bob Other')")
    for conversation, channel, subject, status in CONVERSATIONS:
        db.execute(
            "INSERT INTO conversations (id, customer_id, channel, status, priority, assignee_id, team_id, subject, tags,"
            " last_message_at, sla_due) VALUES (?, 'cu1', ?, ?, 'normal', 'me', 'billing', ?, '[]', ?, ?)",
            (conversation, channel, "open" if conversation == "c-mail" else status, subject, at(count), at(count + 60)),
        )
    db.execute(
        "INSERT INTO conversations (id, customer_id, channel, status, priority, team_id, tags)"
        " VALUES ('cu2-c', 'cu2', 'email', 'closed', 'normal', 'billing', '[]')"
    )
    insert(db, history(count))
    insert(db, history(3, customer="cu2", prefix="other"))
    cache.finish_bootstrap("test")
    return cache


def desk(tmp_path, count: int) -> AgentDesk:
    make_cache(tmp_path / "cache.sqlite3", count).close()
    return AgentDesk(tmp_path / "cache.sqlite3", ME, engine=None)


def screen_text(app) -> str:
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(segment.text for segment in strip) for strip in strips)


def timeline_rows(app) -> list[str]:
    """The timeline's visible lines, as the agent sees them."""
    timeline = app.query_one(Timeline)
    return [timeline.render_line(y).text for y in range(timeline.scrollable_content_region.height)]


def shaded_rows(app) -> list[str]:
    """Visible lines painted with a background of their own: the marked boundary, a revealed interaction."""
    timeline = app.query_one(Timeline)
    base = timeline.rich_style.bgcolor
    rows = [timeline.render_line(y) for y in range(timeline.scrollable_content_region.height)]
    return [row.text for row in rows if any(segment.style and segment.style.bgcolor != base for segment in row)]


def visible_messages(app) -> list[int]:
    return [int(row.split("history message ")[1][:5]) for row in timeline_rows(app) if "history message " in row]


async def opened(pilot) -> Timeline:
    await pilot.pause()
    timeline = pilot.app.query_one(Timeline)
    timeline.focus()
    await pilot.pause()
    return timeline


# --- windows ------------------------------------------------------------------------------------------------


async def test_only_the_newest_window_is_read_and_only_a_screenful_laid_out(tmp_path):
    app = desk(tmp_path, 1000)
    async with app.run_test(size=SIZE) as pilot:
        timeline = await opened(pilot)
        assert len(timeline.items) == WINDOW and timeline.has_older and not timeline.has_newer
        assert timeline.items[-1].text == message(999) and timeline.items[0].text == message(1000 - WINDOW)
        height = timeline.scrollable_content_region.height
        assert timeline.hi == WINDOW and timeline.hi - timeline.lo < 40 and len(timeline._lines) < 3 * height
        assert max(visible_messages(app)) == 999  # the newest is on screen...
        assert timeline_rows(app)[-1].strip()  # ...at the bottom: the last line of the view is not empty
        assert "Bob Other" not in screen_text(app) and "other" not in {i.id[:5] for i in timeline.items}


async def scroll_until(pilot, direction: int, done, limit: int = 200) -> None:
    """Scroll to the top (-1) or bottom (1) of what is laid out, again and again, until `done()`."""
    timeline = pilot.app.query_one(Timeline)
    for _ in range(limit):
        if done():
            return
        timeline.scroll_to(y=0 if direction < 0 else timeline.max_scroll_y, animate=False)
        await pilot.pause()
        assert len(timeline.items) <= MAX_ITEMS and timeline.hi - timeline.lo <= MAX_LAID  # bounded all the way
    raise AssertionError(f"{limit} scrolls did not get there")


async def test_scrolling_up_lays_out_and_loads_older_and_the_view_stays_put(tmp_path):
    app = desk(tmp_path, 700)
    async with app.run_test(size=SIZE) as pilot:
        timeline = await opened(pilot)
        laid = timeline.lo
        timeline.scroll_to(y=0, animate=False)  # to the top of what is laid out: more is laid out above
        await pilot.pause()
        shown = visible_messages(app)
        assert timeline.lo < laid and timeline.scroll_offset.y > 0
        assert shown[0] == 700 - WINDOW + laid  # still where the agent was, not at the new top
        await scroll_until(pilot, -1, lambda: len(timeline.items) > WINDOW)  # the next window is read
        assert len(timeline.items) == 2 * WINDOW and timeline.has_older
        await scroll_until(pilot, -1, lambda: 0 in visible_messages(app))  # back to the very first
        assert timeline.has_newer and not timeline.has_older and timeline.lo == 0
        await scroll_until(pilot, 1, lambda: timeline.items[-1].text == message(699))  # down: newer ones load
        await pilot.press("end")  # End: the newest, at once
        await pilot.pause()
        assert 699 in visible_messages(app) and not timeline.has_newer and timeline.hi == len(timeline.items)


# --- jumps between conversations ----------------------------------------------------------------------------


async def test_braces_jump_between_conversation_boundaries(tmp_path):
    app = desk(tmp_path, 1000)
    async with app.run_test(size=SIZE) as pilot:
        timeline = await opened(pilot)
        assert shaded_rows(app) == []
        await pilot.press("{")  # the boundary of the newest conversation, in view already: marked
        # messages 995..999 are the last run: conversation (999 // 5) % 4 == 3, the SMS one
        [marked] = shaded_rows(app)
        assert marked.startswith("┌ conversation · ✆ SMS · closed") and 999 in visible_messages(app)
        await pilot.press("{")  # the one before (in view too, as the bottom of the timeline cannot scroll up)
        [marked] = shaded_rows(app)
        assert marked.startswith("┌ conversation · ☎ Phone · pending") and 990 in visible_messages(app)
        await pilot.press("{", "{")  # further back: its boundary scrolled to the top of the view
        assert timeline_rows(app)[0].startswith("┌ conversation · ✉ Email · Refund for March · open")
        assert shaded_rows(app) == [timeline_rows(app)[0]] and visible_messages(app)[0] == 980
        await pilot.press("}", "}")
        await pilot.press("}")
        assert shaded_rows(app)[0].startswith("┌ conversation · ✆ SMS · closed") and 995 in visible_messages(app)
        for _ in range(WINDOW // RUN + 1):  # past the start of the loaded window: older windows load
            await pilot.press("{")
        assert len(timeline.items) > WINDOW
        assert visible_messages(app)[0] == 995 - (WINDOW // RUN + 1) * RUN  # one run (conversation) a press
        assert shaded_rows(app) == [timeline_rows(app)[0]] and timeline_rows(app)[0].startswith("┌ conversation · ")


async def test_jump_at_the_very_start_stays(tmp_path):
    app = desk(tmp_path, 12)
    async with app.run_test(size=SIZE) as pilot:
        timeline = await opened(pilot)
        for _ in range(5):
            await pilot.press("{")
        assert timeline.jump(-1) is False
        [marked] = shaded_rows(app)
        assert marked.startswith("┌ conversation · ✉ Email · Refund for March · open") and 0 in visible_messages(app)


# --- expand: quoted email text and transcripts --------------------------------------------------------------

MAIL = "Yes, please refund it.\n\nAda"
QUOTED = "\n\nOn Mon, Support <support@example.com> wrote:\n> We can refund the March invoice."
TRANSCRIPT = " ".join(f"Customer: sentence number {n} of a long call about the router." for n in range(12)) + " FINAL WORDS"


def channel_rows(count: int) -> list[tuple]:
    mail_meta = {"quote_at": len(MAIL), "address": "ada@example.com", "to": ["support@example.com"], "cc": ["boss@example.com"]}
    call_meta = {"call_direction": "inbound", "duration_s": 185, "disposition": "resolved", "transcript": TRANSCRIPT}
    rows = [
        ("mail", "c-mail", "cu1", "email", "inbound", None, MAIL + QUOTED, "Re: Refund for March", json.dumps(mail_meta), None, at(count + 1)),
        ("call", "c-phone", "cu1", "phone", "inbound", None, "Voicemail", None, json.dumps(call_meta), None, at(count + 2)),
        ("chat1", "c-chat", "cu1", "chat", "inbound", None, "chat line one", None, "{}", None, at(count + 3)),
        ("chat2", "c-chat", "cu1", "chat", "inbound", None, "chat line two", None, "{}", None, at(count + 4)),
        ("chat3", "c-chat", "cu1", "chat", "outbound", "me", "agent answer", None, "{}", "delivered", at(count + 5)),
        ("note", "c-chat", "cu1", "chat", "note", "me", "check the refund policy", None, "{}", None, at(count + 6)),
        ("sms", "c-sms", "cu1", "sms", "outbound", "me", "Your refund is on its way", None, "{}", "failed", at(count + 7)),
    ]  # fmt: skip
    return rows


async def test_channels_show_their_facts_and_x_expands_quotes_and_transcripts(tmp_path):
    cache = make_cache(tmp_path / "cache.sqlite3", 20)
    insert(cache.db, channel_rows(20))
    cache.close()
    app = AgentDesk(tmp_path / "cache.sqlite3", ME, engine=None)
    async with app.run_test(size=SIZE) as pilot:
        await opened(pilot)
        text = "\n".join(timeline_rows(app))
        assert "Subject: Re: Refund for March" in text
        assert "From: ada@example.com  To: support@example.com  Cc: boss@example.com" in text
        assert "Yes, please refund it." in text and "We can refund the March invoice" not in text
        assert "… quoted text hidden · x shows it" in text
        assert "Inbound call · 3m · resolved" in text
        assert "sentence number 0" in text and "sentence number 4" not in text and "… x shows the full transcript" in text
        ours = text[text.index("┌ conversation · ✉ Email"):]
        assert ours.count("Ada Lovelace") == 3  # the email, the call, the first of the two chat lines: grouped
        assert "chat line two" in text
        assert "✗ failed" in text and "Your refund is on its way" in text
        note = [row for row in timeline_rows(app) if "check the refund policy" in row or "internal note" in row]
        assert len(note) == 2 and all(row.startswith("▌ ") for row in note)

        await pilot.press("x")
        text = "\n".join(timeline_rows(app))
        assert "We can refund the March invoice" in text and "FINAL WORDS" in text and "quoted text hidden" not in text
        assert "Your refund is on its way" in timeline_rows(app)[-1]  # still at the bottom
        await pilot.press("x")
        text = "\n".join(timeline_rows(app))
        assert "We can refund the March invoice" not in text and "… quoted text hidden · x shows it" in text


# --- reveal (for search) ------------------------------------------------------------------------------------


async def test_reveal_loads_back_to_an_old_interaction_and_highlights_it(tmp_path, monkeypatch):
    monkeypatch.setattr("agentdesk.tui.widgets.timeline.HIGHLIGHT_SECONDS", 60.0)  # still on when looked at, however slow the machine
    app = desk(tmp_path, 5000)
    async with app.run_test(size=SIZE) as pilot:
        timeline = await opened(pilot)
        assert timeline.reveal("h04650")  # within reach: windows load back to it
        await pilot.pause()
        assert 4650 in visible_messages(app) and timeline.items[-1].text == message(4999)
        assert [row for row in shaded_rows(app) if "history message" in row] == [f"       {message(4650)}".ljust(timeline.size.width - 2)]

        assert timeline.reveal("h00007")  # far back: a window around it
        await pilot.pause()
        assert 7 in visible_messages(app) and len(timeline.items) <= MAX_ITEMS and timeline.has_newer
        assert not timeline.reveal("other00001")  # another customer's
        assert not timeline.reveal("nope")
        await scroll_until(pilot, 1, lambda: timeline.items[-1].text > message(WINDOW))  # newer ones load below
        await pilot.press("end")
        await pilot.pause()
        assert 4999 in visible_messages(app) and not timeline.has_newer


async def test_the_highlight_fades(tmp_path, monkeypatch):
    monkeypatch.setattr("agentdesk.tui.widgets.timeline.HIGHLIGHT_SECONDS", 0.05)
    app = desk(tmp_path, 50)
    async with app.run_test(size=SIZE) as pilot:
        timeline = await opened(pilot)
        assert timeline.reveal("h00045")
        assert timeline.highlighted == "h00045"
        await pilot.pause(0.2)
        assert timeline.highlighted is None


async def test_a_theme_change_repaints_the_highlight_in_the_new_colours(tmp_path, monkeypatch):
    monkeypatch.setattr("agentdesk.tui.widgets.timeline.HIGHLIGHT_SECONDS", 30.0)
    app = desk(tmp_path, 50)
    async with app.run_test(size=SIZE) as pilot:
        timeline = await opened(pilot)
        assert timeline.reveal("h00045")
        await pilot.pause()

        def highlight_backgrounds() -> set:
            rows = [timeline.render_line(y) for y in range(timeline.scrollable_content_region.height)]
            return {s.style.bgcolor for row in rows if message(45) in row.text for s in row if s.style}

        before = highlight_backgrounds()
        app.register_theme(replace(app.current_theme, name="other-warning", warning="#ff00ff"))  # the same surface
        app.theme = "other-warning"
        await pilot.pause()
        expected = (timeline.rich_style + timeline.get_component_rich_style("timeline--highlight")).bgcolor
        assert highlight_backgrounds() == {expected} != before


# --- live updates -------------------------------------------------------------------------------------------


def arrive(app, index: int, count: int) -> None:
    """A new interaction lands in the cache (as the sync engine writes it, on its own connection)."""
    writer = Cache(app.cache.path)
    with writer.write() as db:
        insert(db, [(f"new{index}", "c-mail", "cu1", "email", "inbound", None, f"brand new {index}", None, "{}", None, at(count + index))])
    writer.close()
    app.refresh_open_timeline()


async def test_a_new_interaction_shows_at_the_bottom_while_the_agent_is_there(tmp_path):
    app = desk(tmp_path, 400)
    async with app.run_test(size=SIZE) as pilot:
        timeline = await opened(pilot)
        kept = {id(strip) for strip in timeline._lines}
        arrive(app, 1, 400)
        await pilot.pause()
        assert "brand new 1" in timeline_rows(app)[-2] + timeline_rows(app)[-1]
        assert len(kept & {id(strip) for strip in timeline._lines}) > len(timeline._lines) - 10  # not rebuilt


async def test_a_new_interaction_leaves_the_view_alone_while_the_agent_reads_history(tmp_path):
    app = desk(tmp_path, 400)
    async with app.run_test(size=SIZE) as pilot:
        timeline = await opened(pilot)
        timeline.scroll_to(y=timeline.scroll_offset.y - 60, animate=False)
        await pilot.pause()
        before = timeline_rows(app)
        arrive(app, 1, 400)
        arrive(app, 2, 400)
        await pilot.pause()
        assert timeline_rows(app) == before
        assert timeline.items[-1].text == "brand new 2"
        await pilot.press("end")
        await pilot.pause()
        assert "brand new 2" in "\n".join(timeline_rows(app))


# --- untrusted text on the timeline's own surfaces ------------------------------------------------------------

HOSTILE = "\x1b]52;c;cm0gLXJmIH4=\x07[@click=app.quit]x[/]\x9b2J"
SHOWN = "␛]52;c;cm0gLXJmIH4=␇[@click=app.quit]x[/]<9B>2J"


@pytest.mark.parametrize("field", ["subject", "from", "cc", "transcript"])
async def test_hostile_headers_subjects_and_transcripts_render_literally(tmp_path, field):
    cache = make_cache(tmp_path / "cache.sqlite3", 3)
    meta = {"address": HOSTILE if field == "from" else "a@b.c", "cc": [HOSTILE] if field == "cc" else []}
    channel = "phone" if field == "transcript" else "email"
    if field == "transcript":
        meta = {"call_direction": "inbound", "transcript": HOSTILE}
    cache.db.execute("UPDATE conversations SET subject = ? WHERE id = 'c-mail'", (HOSTILE if field == "subject" else "x",))
    insert(cache.db, [("evil", "c-mail", "cu1", channel, "inbound", None, "hi", None, json.dumps(meta), None, at(10))])
    cache.close()
    app = AgentDesk(tmp_path / "cache.sqlite3", ME, engine=None)
    async with app.run_test(size=SIZE) as pilot:
        await opened(pilot)
        text = "\n".join(timeline_rows(app))
        assert "\x1b" not in text and "\x9b" not in text and "\x07" not in text
        assert SHOWN in text
        assert app.is_running
