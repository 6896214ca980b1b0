"""The search query language (store/search.py): words become quoted FTS5 tokens, filters bound values."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from agentdesk.domain.clock import to_iso
from agentdesk.store.search import parse_query, parse_when, search, snippet

NOW = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)
HOSTILE = ['"', "*", "NEAR(", "OR", "-", "'; DROP TABLE interactions; --", 'a" OR "b', "refund) OR (x", "^x", "col:x",
           "NOT", "AND", "\x00", "{text}: x", "\\", "%_"]


def test_words_become_quoted_tokens_joined_by_and():
    q = parse_query("Refund please")
    assert q.match == '"Refund" AND "please"' and q.words == ("Refund", "please") and not q.problems


def test_an_address_is_one_phrase_and_a_quoted_phrase_stays_whole():
    assert parse_query("ana@example.com").match == '"ana example com"'
    assert parse_query('"late parcel" refund').match == '"late parcel" AND "refund"'


def test_only_the_word_being_typed_is_a_prefix_and_only_from_three_letters():
    assert parse_query("refund par", typing=True).match == '"refund" AND "par"*'
    assert parse_query("refund pa", typing=True).match == '"refund" AND "pa"'
    assert parse_query("refund par ", typing=True).match == '"refund" AND "par"'  # a space ends the word
    assert parse_query("par").match == '"par"'  # not typing (the bench, an API caller): exact words
    assert parse_query("refu*").match == '"refu"*'  # asked for explicitly


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_reaches_fts5_only_as_quoted_letters_and_digits(text):
    q = parse_query(text, typing=True)
    for term in (q.match or "").split(" AND "):
        if term:
            body = term.rstrip("*")
            assert body.startswith('"') and body.endswith('"') and '"' not in body[1:-1]
            assert all(ch.isalnum() or ch == " " for ch in body[1:-1])


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_runs_as_a_search_without_error(text):
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE interactions (id, conversation_id, customer_id, channel, direction, author_id, text,"
               " subject, delivery_status, occurred_at)")
    db.execute("CREATE TABLE customers (id, display_name, tags, merged_into, updated_at)")
    db.execute("CREATE TABLE identities (id, customer_id, kind, address)")
    db.execute("CREATE TABLE conversations (id, customer_id, channel, status, tags, last_message_at)")
    db.execute("CREATE TABLE agents (id, name)")
    for table, cols in (("interactions", "text, subject"), ("customers", "display_name"), ("identities", "address")):
        db.execute(f"CREATE VIRTUAL TABLE {table}_fts USING fts5({cols}, content='{table}', content_rowid='rowid')")
    db.execute("INSERT INTO interactions (id, text, occurred_at) VALUES ('i1', 'near or not drop table x', '2026')")
    db.execute("INSERT INTO interactions_fts (interactions_fts) VALUES ('rebuild')")
    results = search(db, text, typing=True)
    assert isinstance(results, list)
    assert db.execute("SELECT count(*) FROM interactions").fetchone()[0] == 1


def test_filters_are_parsed_and_values_listed():
    q = parse_query("parcel channel:sms,email status:open from:+1415 tag:VIP is:note", now=NOW)
    assert q.match == '"parcel"'
    assert q.channels == ("sms", "email") and q.statuses == ("open",) and q.senders == ("+1415",)
    assert q.tags == ("vip",) and q.kinds == ("note",) and not q.problems


def test_a_filter_alone_is_a_search_and_an_unknown_prefix_is_words():
    assert parse_query("tag:vip").filtered and parse_query("tag:vip").match is None
    assert parse_query("re: invoice").match == '"re" AND "invoice"'
    assert parse_query("10:30").match == '"10 30"'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("channel:fax", "channel:fax — not a channel: use email, sms, whatsapp, chat, phone"),
        ("status:lost", "status:lost — not a status"),
        ("is:spam", "is:spam — not a kind of message"),
        ("before:notadate", "before:notadate — not a date"),
        ("after:2026-13-45", "after:2026-13-45 — not a date"),
        ("channel:", "channel: needs a value"),
        ("after:0001", "after:0001 — not a date"),  # year 1 cannot become UTC in a zone ahead of it
        ("before:0001-01", "before:0001-01 — not a date"),
    ],
)
def test_a_bad_filter_gives_a_message_not_an_exception(text, message):
    q = parse_query(text, now=NOW)
    assert q.problems and q.problems[0].startswith(message)
    assert not search(sqlite3.connect(":memory:"), text)  # no hits, no exception, even without an index
    assert search(sqlite3.connect(":memory:"), text).problems == q.problems


def test_dates_start_at_local_midnight_and_ages_count_back_from_now():
    local = NOW.astimezone()
    assert parse_when("2026-10-01", NOW) == datetime(2026, 10, 1, tzinfo=local.tzinfo)
    assert parse_when("2026-10", NOW) == datetime(2026, 10, 1, tzinfo=local.tzinfo)
    assert parse_when("7d", NOW) == local - timedelta(days=7)
    assert parse_when("yesterday", NOW) == local.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    q = parse_query("after:2026-10-01 before:7d x", now=NOW)
    assert q.after == to_iso(datetime(2026, 10, 1, tzinfo=local.tzinfo)) and q.before == to_iso(NOW - timedelta(days=7))


def test_a_snippet_is_cut_around_the_match_and_highlights_it():
    text = "word " * 60 + "the REFUNDED parcel " + "tail " * 60
    shown, spans = snippet(text, ["refund"], width=80)
    assert shown.startswith("…") and shown.endswith("…") and len(shown) == 80
    [(start, end)] = spans
    assert shown[start:end] == "REFUNDED"


def test_a_snippet_is_cleaned_before_its_spans_are_found():
    shown, spans = snippet("\x1b[2J pay \x9b now\nrefund", ["refund"])
    assert "\x1b" not in shown and "\x9b" not in shown and "\n" not in shown
    assert [shown[a:b] for a, b in spans] == ["refund"]
