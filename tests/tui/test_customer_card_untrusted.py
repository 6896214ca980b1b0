"""Hostile text on the customer card — names, identities, tags, notes, language, merge suggestions and their
reasons, the merge search and its confirmation — renders as visible literal text, never as markup or escapes."""

from __future__ import annotations

import json
import time

import pytest

from agentdesk.domain.text import clean_line
from agentdesk.store import customers
from agentdesk.store.cache import Cache, Identity
from agentdesk.tui.app import AgentDesk
from agentdesk.tui.screens.customer import CustomerScreen, CustomerSearchModal
from agentdesk.tui.screens.pick import PickModal

ME = Identity("me", "Me", ("billing",))

# (payload, how it must show): every kind of hostile text DESIGN §6 names
PAYLOADS = [
    ("\x1b]52;c;cm0gLXJmIH4=\x07", "␛]52;c;cm0gLXJmIH4=␇"),  # OSC 52: write the agent's clipboard
    ("\x1b]8;;http://evil.test\x07link\x1b]8;;\x07", "␛]8;;http://evil.test␇link␛]8;;␇"),  # OSC 8 hyperlink
    ("\x1b[2J\x1b[10;10Hgotcha", "␛[2J␛[10;10Hgotcha"),  # CSI clear screen, cursor move
    ("\x9b31mred\x9d0;title", "<9B>31mred<9D>0;title"),  # C1 CSI and OSC
    ("abc\u202edcba\u2066x", "abcdcbax"),  # bidi override and isolate: dropped
    ("[@click=app.quit]x[/]", "[@click=app.quit]x[/]"),
    ("[ @click=app.quit]x[/]", "[ @click=app.quit]x[/]"),
    ("ok [/] bye", "ok [/] bye"),
]


def hostile_cache(path, payload: str) -> Cache:
    """A customer whose every field is `payload`, with an open conversation in my queue, and a look-alike the
    server suggests merging (name and reason `payload` too)."""
    cache = Cache(path)
    db = cache.db
    for customer_id in ("cu1", "cu2"):
        db.execute(
            "INSERT INTO customers (id, display_name, tags, notes, language) VALUES (?, ?, ?, ?, ?)",
            (customer_id, payload, json.dumps([payload, "vip"]), payload, payload),
        )
    db.execute("INSERT INTO identities (id, customer_id, kind, address) VALUES ('i1', 'cu1', 'email', ?)", (payload,))
    db.execute("INSERT INTO identities (id, customer_id, kind, address) VALUES ('i2', 'cu1', ?, '+15550001')", (payload,))
    db.execute("INSERT INTO identities (id, customer_id, kind, address) VALUES ('i3', 'cu2', 'phone', '+447000123')")
    db.execute(
        "INSERT INTO conversations (id, customer_id, channel, status, priority, team_id, subject, tags, last_message_at)"
        " VALUES ('c1', 'cu1', 'email', 'open', 'normal', 'billing', 'hello', '[]', '2026-11-23T09:00:00.000Z')"
    )
    for index, meta in enumerate(({"csat": "5"}, {"csat": 9}, {"csat": payload})):  # none is a 1-5 integer
        db.execute(
            "INSERT INTO interactions (id, conversation_id, customer_id, channel, direction, text, meta, occurred_at)"
            " VALUES (?, 'c1', 'cu1', 'email', 'inbound', ?, ?, ?)",
            (f"m{index}", payload, json.dumps(meta), f"2026-11-23T09:0{index}:00.000Z"),
        )
    db.execute(
        "INSERT INTO merge_suggestions (id, customer_id, other_id, reason, status, created_at)"
        " VALUES ('s1', 'cu2', 'cu1', ?, 'open', '2026-11-23T09:00:00.000Z')",
        (payload,),
    )
    return cache


async def wait_until(pilot, predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        await pilot.pause(0.05)


def screen_lines(app) -> list[str]:
    strips = app.screen._compositor.render_strips()
    for strip in strips:
        for segment in strip:
            assert "\x1b" not in segment.text and not any(0x80 <= ord(c) < 0xA0 for c in segment.text), repr(segment.text)
    return ["".join(segment.text for segment in strip) for strip in strips]


async def click_across(pilot, app) -> None:
    """Click along the card's hostile lines (title, identities, tags, language): a [@click=…] that became
    markup would fire. (The suggestion row is a real button: clicking it opens the merge confirmation.)"""
    screen = app.screen
    for widget in (screen.query_one("#card-title"), screen.query_one("#card-facts")):
        region = widget.region
        for y in range(region.y, min(region.bottom, region.y + 5)):
            for x in range(region.x + 16, region.x + 60, 14):
                await pilot.click(offset=(x, y))
    assert app.is_running


@pytest.mark.parametrize(("payload", "visible"), PAYLOADS, ids=[v for _, v in PAYLOADS])
async def test_hostile_customer_fields_render_literally_on_the_card(tmp_path, payload, visible):
    hostile_cache(tmp_path / "cache.sqlite3", payload).close()
    app = AgentDesk(tmp_path / "cache.sqlite3", ME, engine=None)
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.press("c")
        assert isinstance(app.screen, CustomerScreen)
        lines = screen_lines(app)
        text = "\n".join(lines)
        assert f"Customer  {visible}" in text  # title
        assert f"✉ Email  {visible}" in text  # an identity's address
        assert f"• {clean_line(payload, 12)}  +15550001" in text  # an identity of an unknown kind, its name cut short
        assert f"#{visible} #vip" in text  # tags
        assert f"{visible}  {visible}" in text  # the suggestion: the other customer's name, then the reason
        assert any("Last CSAT" in line and "—" in line for line in lines)  # no valid score among the metas
        assert visible in app.screen.query_one("#notes").text  # notes, cleaned before they reach the editor
        if "@click" in payload:  # only markup that names an action could fire (~4 s of clicking per payload)
            await click_across(pilot, app)
        assert isinstance(app.screen, CustomerScreen)
        await pilot.press("m")  # the suggestion is highlighted: the confirmation names both customers
        assert isinstance(app.screen, PickModal)
        screen_lines(app)  # no escape reaches the screen; the heading, wrapped there, read whole:
        assert f"Merge {visible} into {visible}?" in str(app.screen.query_one("#pick-heading").render())
        await pilot.press("escape")
        await pilot.press("down", "m", *"447000")  # the search: a hostile name next to the address it matched
        assert isinstance(app.screen, CustomerSearchModal)
        await wait_until(pilot, lambda: app.screen.matches)  # the search runs once typing pauses
        assert f"{visible}  +447000123" in "\n".join(screen_lines(app))
        await pilot.press("enter")
        assert isinstance(app.screen, PickModal)
        await pilot.press("enter")
        assert isinstance(app.screen, CustomerScreen)
        assert f"Merged {visible} into this customer" in "\n".join(screen_lines(app))
        for notification in app._notifications:
            assert "\x1b" not in str(notification.message) and not any(0x80 <= ord(c) < 0xA0 for c in str(notification.message))
        assert app.is_running
    outbox = Cache(tmp_path / "cache.sqlite3").outbox()
    assert [row["kind"] for row in outbox] == ["merge_customers"]
    assert outbox[0]["args"]["source_id"] == "cu2" and outbox[0]["args"]["target_id"] == "cu1"


def test_card_facts_stay_a_handful_of_indexed_queries_on_a_big_customer(tmp_path):
    """10k interactions: the card reads them through LIMITed or aggregated index lookups, never row by row."""
    from agentdesk.store.cache import _run_script
    from agentdesk.store.schema import INDEXES

    cache = hostile_cache(tmp_path / "cache.sqlite3", "Big Customer")
    cache.db.executemany(
        "INSERT INTO interactions (id, conversation_id, customer_id, channel, direction, text, meta, occurred_at)"
        " VALUES (?, 'c1', 'cu1', 'sms', 'inbound', 'hi', ?, ?)",
        ((f"x{n}", json.dumps({"segments": 1, "csat": 4} if n == 5 else {"segments": 1}), f"2026-10-{1 + n // 1000:02d}T00:00:{n % 60:02d}.{n:03d}Z") for n in range(10_000)),
    )
    with cache.write() as db:
        _run_script(db, INDEXES)
    plans = []
    cache.db.set_trace_callback(lambda sql: plans.append(sql))
    card = customers.card(cache, "cu1")
    cache.db.set_trace_callback(None)
    assert card is not None and card.last_csat == 4 and card.conversations == 1
    assert len(plans) <= 8, plans
    for sql in plans:
        detail = " ".join(row[3] for row in cache.db.execute("EXPLAIN QUERY PLAN " + sql, ("cu1",) * sql.count("?")))
        assert "SCAN interactions" not in detail and "SCAN conversations" not in detail, (sql, detail)
