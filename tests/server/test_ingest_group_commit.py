"""The fast inbound path (issue 6): group commit, batches, and the caches in front of the database.

Every test runs on SQLite and, when AGENTDESK_TEST_POSTGRES_URL is set, on PostgreSQL (conftest.py).
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from agentdesk.server import inbound
from agentdesk.server.admin import revoke_token
from agentdesk.server.auth import issue_integration_token
from agentdesk.server.db import session
from agentdesk.server.inbound import Inbound, InboundError, ingest, ingest_many, submit
from agentdesk.server.models import Change, Conversation, Customer, Identity, Interaction, Team
from agentdesk.server.routing import NoTeam
from conftest import build_world


@pytest.fixture
def world(db_engine):
    return build_world(db_engine)


def sms(n: int, *, number: int | None = None, external_id: str | None = None, text: str = "") -> Inbound:
    return Inbound(channel="sms", address=f"+1415556{(n if number is None else number):04d}", text=text or f"message {n}",
                   external_id=external_id if external_id is not None else f"SM-{n}")


def stored(engine, **where) -> list[Interaction]:
    with session(engine) as db:
        return list(db.exec(select(Interaction).where(*(getattr(Interaction, k) == v for k, v in where.items()))))


def many(engine, items: list[Inbound], **kw) -> list:
    with session(engine) as db:
        return ingest_many(db, items, **kw)


async def submit_all(engine, items: list[Inbound]) -> list:
    return await asyncio.gather(*(submit(engine, item) for item in items), return_exceptions=True)


def test_concurrent_submits_lose_and_double_nothing(db_engine, world):
    """200 messages from 40 senders (20 of them new), each sent twice at once: every one stored once, both
    callers of a pair told the same ids, one of them that it was a duplicate."""
    items = [sms(n, number=n % 40) for n in range(200)]
    results = asyncio.run(submit_all(db_engine, [*items, *items]))
    assert not [r for r in results if isinstance(r, BaseException)]
    firsts, seconds = results[:200], results[200:]
    for first, second in zip(firsts, seconds, strict=True):
        assert (first.interaction_id, first.conversation_id, first.customer_id) == (
            second.interaction_id, second.conversation_id, second.customer_id)
        assert sorted([first.duplicate, second.duplicate]) == [False, True]
    rows = stored(db_engine, channel="sms")
    mine = [row for row in rows if (row.external_id or "").startswith("SM-")]
    assert Counter(row.external_id for row in mine) == Counter(f"SM-{n}" for n in range(200))
    with session(db_engine) as db:
        for number in range(40):  # one customer and one open conversation per number
            identity = db.exec(select(Identity).where(Identity.address == f"+1415556{number:04d}")).one()
            conversations = {row.conversation_id for row in mine if row.customer_id == identity.customer_id}
            assert len(conversations) == 1
        # The change log holds each new interaction exactly once.
        logged = Counter(db.exec(select(Change.entity_id).where(Change.entity == "interactions")).all())
        assert all(logged[row.id] == 1 for row in mine)


def test_the_same_message_from_a_thread_and_from_group_commit_is_stored_once(db_engine, world):
    """A channel adapter calling ingest() in a worker thread races the group-commit writer."""
    item = sms(1, number=900, external_id="SM-race")
    results = []
    barrier = threading.Barrier(3)  # two ingest threads and the event loop

    def by_ingest() -> None:
        barrier.wait(timeout=10)
        with session(db_engine) as db:
            results.append(ingest(db, item))

    async def by_submit() -> None:
        await asyncio.to_thread(barrier.wait, 10)
        results.extend(await asyncio.gather(*(submit(db_engine, item) for _ in range(3))))

    threads = [threading.Thread(target=by_ingest) for _ in range(2)]
    for thread in threads:
        thread.start()
    asyncio.run(by_submit())
    for thread in threads:
        thread.join()
    assert len(results) == 5
    assert len({r.interaction_id for r in results}) == 1
    assert sum(not r.duplicate for r in results) == 1
    assert len(stored(db_engine, external_id="SM-race")) == 1


def test_a_refused_item_leaves_the_others_of_its_batch_stored(db_engine, world):
    items = [sms(1), Inbound(channel="sms", address="+1 555", text="bad number"), Inbound(channel="fax", address="x"), sms(2)]
    outcomes = many(db_engine, items)
    assert isinstance(outcomes[1], InboundError) and isinstance(outcomes[2], InboundError)
    assert not outcomes[0].duplicate and not outcomes[3].duplicate
    assert {row.external_id for row in stored(db_engine, channel="sms")} >= {"SM-1", "SM-2"}


def test_no_team_refuses_new_conversations_only(db_engine, world):
    with session(db_engine) as db:
        ingest(db, sms(1, number=10))  # an open conversation for +14155560010
        for team in db.exec(select(Team)):
            team.active = False
            db.add(team)
        db.commit()
    outcomes = many(db_engine, [sms(2, number=10), sms(3, number=11)])
    assert isinstance(outcomes[1], NoTeam)  # a new sender needs a new conversation: nowhere to route it
    assert not isinstance(outcomes[0], Exception)  # the known sender joins their open conversation
    assert [row.external_id for row in stored(db_engine, external_id="SM-2")] == ["SM-2"]
    assert stored(db_engine, external_id="SM-3") == []


def test_a_database_error_on_one_item_is_retried_without_losing_the_others(db_engine, world, monkeypatch):
    """The first item fails once with an IntegrityError (as when another process won a race): the batch is
    rolled back and stored again item by item; everything ends up stored, once. An item that fails every
    time is dropped with its error and the rest are still stored."""
    real_store = inbound._store
    failures = Counter()

    def flaky(batch, prepared):
        external_id = prepared.item.external_id
        if external_id == "SM-flaky" and failures[external_id] < 1 or external_id == "SM-broken":
            failures[external_id] += 1
            raise IntegrityError("INSERT", {}, Exception("simulated"))
        return real_store(batch, prepared)

    monkeypatch.setattr(inbound, "_store", flaky)
    items = [sms(1, external_id="SM-flaky"), sms(2), sms(3, external_id="SM-broken"), sms(4)]
    outcomes = many(db_engine, items, attempts=3)
    assert isinstance(outcomes[2], IntegrityError)
    assert [isinstance(o, Exception) for o in outcomes] == [False, False, True, False]
    assert failures["SM-flaky"] == 1  # it failed the batch at once; item by item it went through
    assert failures["SM-broken"] == 3  # item by item, three attempts
    for external_id in ("SM-flaky", "SM-2", "SM-4"):
        assert len(stored(db_engine, external_id=external_id)) == 1
    assert stored(db_engine, external_id="SM-broken") == []


def test_a_batch_sees_its_own_writes(db_engine, world):
    """Two messages of one new sender in one batch: one customer, one conversation; an email answering a
    message of the same batch threads into its conversation; a repeated id within the batch is a duplicate."""
    mail = Inbound(channel="email", address="new@example.org", subject="Hello", text="first", external_id="<a@x>")
    reply = Inbound(channel="email", address="new@example.org", subject="other", text="second", external_id="<b@x>",
                    references=["<a@x>"])
    outcomes = many(db_engine, [sms(1, number=500), sms(2, number=500), mail, reply, sms(1, number=500)])
    first, second, m1, m2, again = outcomes
    assert first.customer_id == second.customer_id and first.conversation_id == second.conversation_id
    assert m1.conversation_id == m2.conversation_id and m1.customer_id == m2.customer_id
    assert again.duplicate and again.interaction_id == first.interaction_id
    with session(db_engine) as db:
        conversation = db.get(Conversation, first.conversation_id)
        assert conversation.version == 3  # created, then one more message
        assert db.exec(select(sa.func.count()).select_from(Customer).where(Customer.id == first.customer_id)).one() == 1


def test_an_integration_token_revoked_in_this_process_is_refused_at_once(live_server):
    with session(live_server.engine) as db:
        token = issue_integration_token(db, "crm")
        db.commit()
    body = {"channel": "sms", "address": "+14155550123", "text": "hi"}
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.post(f"{live_server.url}/api/v1/interactions/inbound", json=body, headers=headers).status_code == 201
    with session(live_server.engine) as db:  # now cached; an admin revokes it
        from agentdesk.server.models import ApiToken

        row = db.exec(select(ApiToken).where(ApiToken.name == "crm")).one()
        revoke_token(db, row.id)
    refused = httpx.post(f"{live_server.url}/api/v1/interactions/inbound", json=body, headers=headers)
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]


def test_concurrent_http_deliveries_of_one_message_make_one_interaction(live_server):
    with session(live_server.engine) as db:
        token = issue_integration_token(db, "crm")
        db.commit()
    body = {"channel": "whatsapp", "address": "whatsapp:+14155550777", "text": "twice", "external_id": "wamid-1"}

    async def post_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=live_server.url, headers={"Authorization": f"Bearer {token}"}) as client:
            return await asyncio.gather(*(client.post("/api/v1/interactions/inbound", json=body) for _ in range(8)))

    responses = asyncio.run(post_all())
    assert sorted(r.status_code for r in responses) == [200] * 7 + [201]
    assert len({r.json()["interaction_id"] for r in responses}) == 1
    assert len(live_server.interactions("twice")) == 1


def test_a_long_message_is_prepared_off_the_event_loop_and_still_finds_contacts(db_engine, world):
    """A long text's contact scan runs in a thread (it can take a second); what it finds is the same: a known
    customer's email address in it becomes a merge suggestion."""
    from agentdesk.server.models import MergeSuggestion

    loop_thread = threading.get_ident()
    scanned_in: list[int] = []
    scan = inbound.contacts_in_text

    def recording_scan(*args, **kw):
        scanned_in.append(threading.get_ident())
        return scan(*args, **kw)

    inbound.contacts_in_text = recording_scan
    try:
        text = "Order 1182 " * 300 + "\nYou can also reach me at maria@customer.test"
        result = asyncio.run(submit(db_engine, sms(1, text=text)))
        asyncio.run(submit(db_engine, sms(2, text="short one, order 7")))
    finally:
        inbound.contacts_in_text = scan
    assert scanned_in[0] != loop_thread and scanned_in[1] == loop_thread  # long: a thread; short: inline
    with session(db_engine) as db:
        suggestions = list(db.exec(select(MergeSuggestion)))
    assert {s.customer_id for s in suggestions} | {s.other_id for s in suggestions} == {result.customer_id, world.customers["maria"]}
