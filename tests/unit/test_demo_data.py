"""The demo-data generator: deterministic, internally consistent, and shaped like a real contact center's day.

Generation time for the default size (seed 7; 300 customers, 1,300 conversations, 5,422 interactions), measured on
the shared 2-core dev container: CPU time (process_time, 30 runs) min 0.12 s, median 0.14 s; wall time median
0.13-0.21 s depending on machine load. GC on/off makes no difference.
Not asserted (timing on shared CI is noise); re-measure with
    PYTHONPATH=src python -c "import time; from agentdesk.demo.data import generate; t=time.perf_counter(); generate(); print(time.perf_counter()-t)"
"""

from __future__ import annotations

import re
import uuid
from collections import Counter, defaultdict
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import pytest

from agentdesk.demo.data import (
    CHANNELS,
    DEMO_AGENT_EMAIL,
    DEMO_AGENT_NAME,
    PRIORITIES,
    STATUSES,
    DemoData,
    generate,
)

NOW = datetime(2026, 11, 5, 14, 30, 12, tzinfo=UTC)
HEX32 = re.compile(r"^[0-9a-f]{32}$")
E164 = re.compile(r"^\+[1-9]\d{7,14}$")

KEYS = {
    "teams": {"id", "name"},
    "agents": {"id", "name", "email", "role", "created_at"},
    "agent_teams": {"agent_id", "team_id"},
    "customers": {"id", "display_name", "first_name", "tags", "notes", "language", "created_at", "updated_at"},
    "identities": {"id", "customer_id", "kind", "address"},
    "conversations": {
        "id", "customer_id", "channel", "status", "priority", "assignee_id", "team_id", "subject", "sla_due",
        "snooze_until", "created_at", "updated_at", "last_message_at", "version",
    },
    "interactions": {
        "id", "conversation_id", "customer_id", "channel", "direction", "author_id", "text", "subject", "meta",
        "delivery_status", "occurred_at",
    },
}


@pytest.fixture(scope="module")
def data() -> DemoData:
    return generate(7, NOW)


@pytest.fixture(scope="module")
def by_conv(data: DemoData) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for row in data.interactions:
        out[row["conversation_id"]].append(row)
    return out


def tables(data: DemoData) -> dict[str, list[dict]]:
    return {name: getattr(data, name) for name in KEYS}


# ---- determinism ----------------------------------------------------------------------------------------------


def test_same_seed_and_now_give_identical_data(data: DemoData) -> None:
    again = generate(7, NOW)
    assert asdict(again) == asdict(data)


def test_other_seed_or_other_now_differs(data: DemoData) -> None:
    other = generate(8, NOW)
    assert other.demo_agent_id != data.demo_agent_id
    assert {c["id"] for c in other.conversations}.isdisjoint({c["id"] for c in data.conversations})
    assert [i["text"] for i in other.interactions[:200]] != [i["text"] for i in data.interactions[:200]]
    later = generate(7, NOW + timedelta(days=3))
    # same story, shifted: ids equal, times moved by exactly the shift
    assert later.conversations[0]["id"] == data.conversations[0]["id"]
    assert later.conversations[0]["created_at"] - data.conversations[0]["created_at"] == timedelta(days=3)


def test_default_now_is_the_current_time() -> None:
    before = datetime.now(UTC)
    d = generate(3)
    after = datetime.now(UTC)
    latest = max(i["occurred_at"] for i in d.interactions)
    assert before - timedelta(days=1) < latest <= after


def test_naive_now_is_rejected() -> None:
    with pytest.raises(ValueError):
        generate(7, datetime(2026, 11, 5, 12, 0))


# ---- shape ----------------------------------------------------------------------------------------------------


def test_rows_have_exactly_the_table_columns(data: DemoData) -> None:
    for name, rows in tables(data).items():
        for row in rows:
            assert set(row) == KEYS[name], (name, set(row) ^ KEYS[name])


def test_ids_are_unique_uuid4_hex(data: DemoData) -> None:
    seen: set[str] = set()
    for name, rows in tables(data).items():
        if name == "agent_teams":
            continue
        for row in rows:
            assert HEX32.match(row["id"]), row["id"]
            assert uuid.UUID(row["id"]).version == 4
            seen.add(row["id"])
    total = sum(len(rows) for name, rows in tables(data).items() if name != "agent_teams")
    assert len(seen) == total


def test_datetimes_are_aware_utc_and_not_in_the_future(data: DemoData) -> None:
    for name, rows in tables(data).items():
        for row in rows:
            for key, value in row.items():
                if isinstance(value, datetime):
                    assert value.utcoffset() == timedelta(0), (name, key)
                    if key not in ("sla_due", "snooze_until"):
                        assert value <= NOW, (name, key, value)


def test_counts(data: DemoData) -> None:
    counts = data.counts()
    assert {t["name"] for t in data.teams} >= {"Billing", "Technical Support"}
    assert 2 <= counts["teams"] <= 3
    assert counts["agents"] >= 4
    assert counts["customers"] >= 220
    assert counts["conversations"] >= 1000
    assert counts["interactions"] >= 5000


@pytest.mark.parametrize("seed", [1, 2, 99])
def test_counts_hold_for_other_seeds(seed: int) -> None:
    d = generate(seed, NOW)
    assert len(d.customers) >= 220 and len(d.conversations) >= 1000 and len(d.interactions) >= 5000
    mine = [c for c in d.conversations if c["assignee_id"] == d.demo_agent_id and c["status"] in ("open", "pending")]
    assert len(mine) >= 40


# ---- people ---------------------------------------------------------------------------------------------------


def test_demo_agent_is_first_and_in_both_teams(data: DemoData) -> None:
    alex = data.agents[0]
    assert alex["id"] == data.demo_agent_id
    assert (alex["name"], alex["email"], alex["role"]) == (DEMO_AGENT_NAME, DEMO_AGENT_EMAIL, "agent")
    team_ids = {t["id"]: t["name"] for t in data.teams}
    alex_teams = {team_ids[at["team_id"]] for at in data.agent_teams if at["agent_id"] == alex["id"]}
    assert alex_teams >= {"Billing", "Technical Support"}


def test_staff_roles_and_memberships(data: DemoData) -> None:
    roles = Counter(a["role"] for a in data.agents)
    assert roles["supervisor"] >= 1 and set(roles) <= {"agent", "supervisor", "admin"}
    assert len({a["email"] for a in data.agents}) == len(data.agents)
    memberships = Counter(at["agent_id"] for at in data.agent_teams)
    assert all(1 <= memberships[a["id"]] <= 3 for a in data.agents)
    assert len({(at["agent_id"], at["team_id"]) for at in data.agent_teams}) == len(data.agent_teams)


def test_customers_look_international(data: DemoData) -> None:
    langs = Counter(c["language"] for c in data.customers)
    assert langs["en"] > len(data.customers) / 2
    assert {"es", "fr", "de"} <= set(langs)
    accented = [c for c in data.customers if not c["display_name"].isascii()]
    assert len(accented) >= 20
    assert len({c["display_name"] for c in data.customers}) > 0.8 * len(data.customers)
    tags = Counter(t for c in data.customers for t in c["tags"])
    assert {"vip", "churn-risk", "new", "enterprise"} <= set(tags)
    assert any(c["notes"] for c in data.customers) and any(not c["notes"] for c in data.customers)
    for c in data.customers:
        assert c["display_name"].startswith(c["first_name"])
        assert c["created_at"] <= c["updated_at"] <= NOW


def test_new_tag_means_recently_created(data: DemoData) -> None:
    for c in data.customers:
        if "new" in c["tags"]:
            assert NOW - c["created_at"] < timedelta(days=30)


def test_identities(data: DemoData) -> None:
    assert len({(i["kind"], i["address"]) for i in data.identities}) == len(data.identities)
    kinds = Counter(i["kind"] for i in data.identities)
    assert set(kinds) == {"phone", "email", "chat"}  # WhatsApp uses the phone identity
    for ident in data.identities:
        address = ident["address"]
        if ident["kind"] == "phone":
            assert E164.match(address), address
        elif ident["kind"] == "email":
            assert address == address.lower() and address.isascii()
            assert re.match(r"^[a-z0-9._+-]+@[a-z0-9.-]+\.[a-z]+$", address), address
        else:
            assert re.match(r"^chat:visitor-[0-9a-f]{4,}$", address), address
    per_customer: dict[str, set[str]] = defaultdict(set)
    for ident in data.identities:
        per_customer[ident["customer_id"]].add(ident["kind"])
    both = sum({"phone", "email"} <= kinds for kinds in per_customer.values())
    assert both >= 0.7 * len(data.customers)
    assert all(per_customer[c["id"]] for c in data.customers)


def test_customers_are_created_before_they_get_in_touch(data: DemoData) -> None:
    created = {c["id"]: c["created_at"] for c in data.customers}
    for conv in data.conversations:
        assert created[conv["customer_id"]] <= conv["created_at"]


# ---- referential integrity ------------------------------------------------------------------------------------


def test_every_foreign_id_exists(data: DemoData) -> None:
    teams = {t["id"] for t in data.teams}
    agents = {a["id"] for a in data.agents}
    customers = {c["id"] for c in data.customers}
    convs = {c["id"]: c for c in data.conversations}
    assert data.demo_agent_id in agents
    for at in data.agent_teams:
        assert at["agent_id"] in agents and at["team_id"] in teams
    for ident in data.identities:
        assert ident["customer_id"] in customers
    for conv in data.conversations:
        assert conv["customer_id"] in customers and conv["team_id"] in teams
        assert conv["assignee_id"] is None or conv["assignee_id"] in agents
    for row in data.interactions:
        conv = convs[row["conversation_id"]]
        assert row["customer_id"] == conv["customer_id"]
        assert row["channel"] == conv["channel"]
        assert row["author_id"] is None or row["author_id"] in agents


def test_assignees_belong_to_the_conversation_team(data: DemoData) -> None:
    members = {(at["agent_id"], at["team_id"]) for at in data.agent_teams}
    for conv in data.conversations:
        if conv["assignee_id"]:
            assert (conv["assignee_id"], conv["team_id"]) in members


def test_channels_match_the_customer_identities(data: DemoData) -> None:
    kinds: dict[str, set[str]] = defaultdict(set)
    for ident in data.identities:
        kinds[ident["customer_id"]].add(ident["kind"])
    needs = {"email": "email", "phone": "phone", "sms": "phone", "whatsapp": "phone", "chat": "chat"}
    for conv in data.conversations:
        assert needs[conv["channel"]] in kinds[conv["customer_id"]], conv["channel"]


# ---- conversations --------------------------------------------------------------------------------------------


def test_all_statuses_priorities_and_channels_present(data: DemoData) -> None:
    assert {c["status"] for c in data.conversations} == set(STATUSES)
    assert {c["priority"] for c in data.conversations} == set(PRIORITIES)
    assert {c["channel"] for c in data.conversations} == set(CHANNELS)
    assert {i["channel"] for i in data.interactions} == set(CHANNELS)
    assert {i["direction"] for i in data.interactions} == {"inbound", "outbound", "note"}
    assert all(c["version"] == 1 for c in data.conversations)


def test_status_mix(data: DemoData) -> None:
    share = {k: v / len(data.conversations) for k, v in Counter(c["status"] for c in data.conversations).items()}
    assert 0.28 <= share["open"] <= 0.42
    assert 0.10 <= share["pending"] <= 0.20
    assert 0.04 <= share["snoozed"] <= 0.12
    assert 0.35 <= share["closed"] <= 0.55


def test_time_windows(data: DemoData) -> None:
    opened = [NOW - c["created_at"] for c in data.conversations if c["status"] == "open"]
    assert max(opened) <= timedelta(days=4)
    assert sum(age <= timedelta(days=3) for age in opened) >= 0.95 * len(opened)
    closed = [NOW - c["created_at"] for c in data.conversations if c["status"] == "closed"]
    assert max(closed) >= timedelta(days=80) and min(closed) <= timedelta(days=2)
    assert max(closed) <= timedelta(days=92)


def test_sla(data: DemoData) -> None:
    for c in data.conversations:
        if c["status"] in ("open", "pending"):
            assert c["sla_due"] is not None and c["sla_due"] > c["created_at"]
        else:
            assert c["sla_due"] is None
    open_ = [c for c in data.conversations if c["status"] == "open"]
    breached = [c for c in open_ if c["sla_due"] < NOW]
    assert 0.10 <= len(breached) / len(open_) <= 0.15


def test_snoozed(data: DemoData) -> None:
    for c in data.conversations:
        if c["status"] == "snoozed":
            assert c["snooze_until"] is not None and c["snooze_until"] > NOW
        else:
            assert c["snooze_until"] is None
    assert sum(c["status"] == "snoozed" for c in data.conversations) >= 40


def test_demo_agent_queue(data: DemoData) -> None:
    active = [c for c in data.conversations if c["status"] in ("open", "pending")]
    mine = [c for c in active if c["assignee_id"] == data.demo_agent_id]
    assert 40 <= len(mine) <= 80
    alex_teams = {at["team_id"] for at in data.agent_teams if at["agent_id"] == data.demo_agent_id}
    unassigned = [c for c in active if c["assignee_id"] is None and c["team_id"] in alex_teams]
    assert 60 <= len(unassigned) <= 100
    assert all(c["assignee_id"] for c in data.conversations if c["status"] in ("snoozed", "closed"))
    assert {c["team_id"] for c in mine} == alex_teams


def test_emails_always_have_a_subject(data: DemoData) -> None:
    for c in data.conversations:
        if c["channel"] == "email":
            assert c["subject"]
    others = [c["subject"] for c in data.conversations if c["channel"] != "email"]
    assert None in others and any(others)


def test_many_customers_use_several_channels(data: DemoData) -> None:
    channels: dict[str, set[str]] = defaultdict(set)
    for c in data.conversations:
        channels[c["customer_id"]].add(c["channel"])
    assert sum(len(chs) >= 2 for chs in channels.values()) >= 100


def test_follow_ups_refer_to_the_earlier_contact(data: DemoData) -> None:
    first_texts = [msgs[0]["text"] for msgs in _by_conv(data).values() if msgs[0]["direction"] == "inbound"]
    followups = [t for t in first_texts if re.search(r"I (emailed|called|texted|chatted|messaged|spoke|was on the chat)", t)]
    assert len(followups) >= 50


# ---- interactions ---------------------------------------------------------------------------------------------


def _by_conv(data: DemoData) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for row in data.interactions:
        out[row["conversation_id"]].append(row)
    return out


def test_timeline_is_chronological_and_last_message_at_matches(data: DemoData, by_conv: dict) -> None:
    for conv in data.conversations:
        msgs = by_conv[conv["id"]]
        assert msgs, conv["id"]
        times = [m["occurred_at"] for m in msgs]
        assert times == sorted(times) and len(set(times)) == len(times)
        assert times[0] == conv["created_at"]
        assert conv["last_message_at"] == times[-1]
        assert conv["last_message_at"] <= conv["updated_at"] <= NOW


def test_first_interaction_is_the_customer_except_call_backs(data: DemoData, by_conv: dict) -> None:
    callbacks = 0
    for conv in data.conversations:
        first = by_conv[conv["id"]][0]
        if first["direction"] == "inbound":
            continue
        assert conv["channel"] == "phone" and first["direction"] == "outbound", conv["channel"]
        assert first["meta"]["call_direction"] == "outbound"
        callbacks += 1
    assert callbacks >= 5


def test_authors_and_delivery_status(data: DemoData) -> None:
    statuses = Counter()
    for row in data.interactions:
        if row["direction"] == "inbound":
            assert row["author_id"] is None and row["delivery_status"] is None
        elif row["direction"] == "note":
            assert row["author_id"] and row["delivery_status"] is None and row["text"]
        else:
            assert row["author_id"] and row["delivery_status"] in ("sent", "delivered", "failed")
            statuses[row["delivery_status"]] += 1
    assert statuses.most_common(1)[0][0] == "delivered"
    assert statuses["sent"] and statuses["failed"]


def test_status_matches_who_spoke_last(data: DemoData, by_conv: dict) -> None:
    """Pending waits on the customer (we spoke last); open mostly waits on us."""
    last_dir = {c["id"]: [m for m in by_conv[c["id"]] if m["direction"] != "note"][-1]["direction"] for c in data.conversations}
    pending = [c for c in data.conversations if c["status"] == "pending"]
    assert all(last_dir[c["id"]] == "outbound" for c in pending)
    open_ = [c for c in data.conversations if c["status"] == "open" and c["channel"] != "phone"]
    assert sum(last_dir[c["id"]] == "inbound" for c in open_) >= 0.9 * len(open_)


def test_unassigned_open_conversations_are_mostly_untouched(data: DemoData, by_conv: dict) -> None:
    unassigned = [c for c in data.conversations if c["assignee_id"] is None]
    untouched = [c for c in unassigned if all(m["direction"] == "inbound" for m in by_conv[c["id"]])]
    assert len(untouched) >= 0.6 * len(unassigned)


def test_email_threads(data: DemoData, by_conv: dict) -> None:
    chains = 0
    for conv in data.conversations:
        if conv["channel"] != "email":
            continue
        mails = [m for m in by_conv[conv["id"]] if m["direction"] != "note"]
        assert mails[0]["direction"] == "inbound" and mails[0]["subject"] == conv["subject"]
        assert mails[0]["meta"]["in_reply_to"] is None and mails[0]["meta"]["references"] == []
        for prev, mail in zip(mails, mails[1:]):
            meta = mail["meta"]
            assert mail["subject"] == f"Re: {conv['subject']}"
            assert meta["in_reply_to"] == prev["meta"]["message_id"]
            assert meta["references"][-1] == prev["meta"]["message_id"]
            assert "\n> " in mail["text"]
            assert re.search(r"(wrote:|escribió:|a écrit :|schrieb .*:)\n> ", mail["text"])
        for mail in mails:
            meta = mail["meta"]
            assert re.match(r"^<[0-9a-f]+@[a-z0-9.-]+>$", meta["message_id"])
            assert set(meta) >= {"message_id", "in_reply_to", "references", "from", "to", "cc"}
            assert isinstance(meta["to"], list) and isinstance(meta["cc"], list)
            if mail["direction"] == "inbound":
                assert meta["from"].endswith(meta["message_id"].split("@")[1][:-1])
        if len(mails) >= 3:
            chains += 1
    assert chains >= 100


def test_english_reply_quotes_the_previous_message(data: DemoData, by_conv: dict) -> None:
    header = re.compile(r"^On (Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} [A-Z][a-z]{2} \d{4} at \d\d:\d\d, .+ <\S+@\S+> wrote:$", re.M)
    checked = 0
    for conv in data.conversations:
        mails = [m for m in by_conv[conv["id"]] if m["channel"] == "email" and m["direction"] == "outbound"]
        for mail in mails[1:] if mails else []:
            match = header.search(mail["text"])
            assert match, mail["text"][:300]
            checked += 1
    assert checked >= 100


def test_phone_metadata(data: DemoData) -> None:
    calls = [i for i in data.interactions if i["channel"] == "phone" and i["direction"] != "note"]
    assert len(calls) >= 200
    dispositions = Counter()
    for call in calls:
        meta = call["meta"]
        assert meta["call_direction"] == call["direction"]
        assert isinstance(meta["duration_s"], int) and meta["duration_s"] >= 0
        assert call["occurred_at"] + timedelta(seconds=meta["duration_s"]) <= NOW
        dispositions[meta["disposition"]] += 1
        assert isinstance(meta["transcript"], str)
        if meta["disposition"] not in ("no-answer",):
            assert meta["transcript"].startswith(("Customer:", "Agent:", "Voicemail:"))
        assert call["text"] and "\n" not in call["text"]
    assert {"resolved", "callback-requested", "voicemail", "no-answer", "escalated"} <= set(dispositions)


def test_chat_sessions(data: DemoData, by_conv: dict) -> None:
    closed = 0
    for conv in data.conversations:
        if conv["channel"] != "chat":
            continue
        msgs = [m for m in by_conv[conv["id"]] if m["direction"] != "note"]
        assert len({m["meta"]["session_id"] for m in msgs}) == 1
        assert msgs[-1]["occurred_at"] - msgs[0]["occurred_at"] <= timedelta(hours=1)
        if conv["status"] == "closed":
            closed += 1
            assert 4 <= len(msgs) <= 12
            directions = [m["direction"] for m in msgs]
            assert all(a != b for a, b in zip(directions, directions[1:])), directions
    assert closed >= 30


def test_sms_and_whatsapp_meta(data: DemoData) -> None:
    texts = [i for i in data.interactions if i["channel"] in ("sms", "whatsapp") and i["direction"] != "note"]
    assert len(texts) >= 500
    for row in texts:
        assert isinstance(row["meta"]["segments"], int) and row["meta"]["segments"] >= 1
        if row["direction"] == "outbound":
            assert re.match(r"^SM[0-9a-f]{32}$", row["meta"]["provider_sid"])
        else:
            assert "provider_sid" not in row["meta"]
    assert any(row["meta"]["segments"] > 1 for row in texts)


def test_notes_are_internal_remarks(data: DemoData) -> None:
    notes = [i for i in data.interactions if i["direction"] == "note"]
    assert len(notes) >= 150
    assert all(n["meta"] == {} and n["subject"] is None for n in notes)
    assert any("Refund approved by supervisor" in n["text"] for n in notes)


def test_texts_are_varied_filled_in_and_on_topic(data: DemoData) -> None:
    texts = [i["text"] for i in data.interactions]
    assert not any(re.search(r"\{[a-z_0-9]+\}", t) for t in texts), "unformatted template variable"
    inbound = {i["text"] for i in data.interactions if i["direction"] == "inbound"}
    assert len(inbound) >= 1500
    blob = "\n".join(texts).lower()
    for topic in ("refund", "charged", "password", "outage", "router", "order", "upgrade", "cancel", "thank"):
        assert topic in blob, topic


def test_some_customers_write_in_their_language(data: DemoData, by_conv: dict) -> None:
    lang = {c["id"]: c["language"] for c in data.customers}
    markers = {"es": re.compile(r"[¿¡ñ]|\b(gracias|factura|pedido)\b", re.I),
               "fr": re.compile(r"\b(bonjour|merci|facture|commande)\b", re.I),
               "de": re.compile(r"\b(hallo|danke|rechnung|bestellung)\b", re.I)}
    found = Counter()
    for row in data.interactions:
        code = lang[row["customer_id"]]
        if code in markers and row["direction"] == "inbound" and row["channel"] != "phone":
            if markers[code].search(row["text"]):
                found[code] += 1
    assert all(found[code] >= 5 for code in markers), found
