"""A Hypothesis state machine over the sync engine (issue 4, item 10; DESIGN §9).

Random interleavings of the agent's desk actions (through the cache's real action API), sync rounds through a
fault-injecting proxy, dropped connections, refused connections, answers cut or stalled after the server
acted, server restarts (same database, new process-equivalent), client restarts (the cache reopened from its
file; also right after a push reached the server, its outbox rows left `sending`), and colleagues acting on the
same conversations on the server (taking them first, moving them out of the agent's teams and back). After the
faults heal and a final sync:
- the cache equals a fresh bootstrap of the agent's scope;
- every reply and note is on the server exactly once, or was rejected and the agent was told;
- the agent was told of exactly the refusals the server made (a `duplicate` answer is no refusal);
- the outbox is empty.
One server serves every example (each example has its own cache and its own texts).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test
from sqlmodel import select

from agentdesk.server.admin import add_agent
from agentdesk.server.app import create_app
from agentdesk.server.auth import issue_token
from agentdesk.server.db import session
from agentdesk.server.models import Interaction, Mutation
from agentdesk.store.cache import Cache
from agentdesk.store.customers import queue_retag
from agentdesk.sync.client import ServerUnavailable, SyncClient
from agentdesk.sync.engine import SyncEngine
from conftest import World, build_world, start_uvicorn
from faultproxy import FaultProxy
from mirror import differences, mirror, server_view

ALICE = "alice@example.com"
TIMEOUT = 0.5  # seconds per request while faults may stall answers (a slow answer is one more fault)
SETTLE = 60.0  # seconds the healed client may take to catch up at the end
# A sync round's fault: none; no connection at all; the idle connections dropped; or the round's first push or
# pull reaches the server, which acts on it, and its answer is cut short (after some bytes) or held back
# until the client gives up.
FAULTS = {"none", "offline", "drop", "cut push", "stall push", "cut pull", "stall pull"}
ANSWERS = {"push": b"POST /api/v1/sync/push", "pull": b"GET /api/v1/sync/pull", "bootstrap": b"GET /api/v1/sync/bootstrap"}
CONVERSATIONS = st.sampled_from(["maria-email", "maria-sms"])  # Alice's (Billing); colleagues move them about


def _retag(kind: str, tag: str) -> Callable[[dict, str], tuple[str, dict, dict]]:
    def action(conversation: dict, _me: str) -> tuple[str, dict, dict]:
        tags = [t for t in json.loads(conversation["tags"] or "[]") if t != tag] + ([tag] if kind == "tag" else [])
        return kind, {"tag": tag}, {"tags": tags}

    return action


# The desk's conversation actions: (the conversation's cached row, Alice's id) -> (kind, args, optimistic changes).
DESK_ACTIONS: dict[str, Callable[[dict, str], tuple[str, dict, dict]]] = {
    "open": lambda c, me: ("set_status", {"status": "open"}, {"status": "open", "snooze_until": None}),
    "pending": lambda c, me: ("set_status", {"status": "pending"}, {"status": "pending", "snooze_until": None}),
    "close": lambda c, me: ("set_status", {"status": "closed"}, {"status": "closed", "snooze_until": None}),
    "assign to me": lambda c, me: ("assign", {"agent_id": me}, {"assignee_id": me}),
    "unassign": lambda c, me: ("unassign", {}, {"assignee_id": None}),
    "urgent": lambda c, me: ("set_priority", {"priority": "urgent"}, {"priority": "urgent"}),
    "low": lambda c, me: ("set_priority", {"priority": "low"}, {"priority": "low"}),
    "tag vip": _retag("tag", "vip"),
    "untag vip": _retag("untag", "vip"),
}

# What colleagues do on the server: world -> (who, kind, args besides the conversation id).
COLLEAGUE_ACTIONS: dict[str, Callable[[World], tuple[str, str, dict]]] = {
    "carol takes it": lambda w: ("carol@example.com", "assign", {"agent_id": w.agents["carol@example.com"]}),
    "carol closes it": lambda w: ("carol@example.com", "set_status", {"status": "closed"}),
    "carol tags it vip": lambda w: ("carol@example.com", "tag", {"tag": "vip"}),
    "carol moves it to Support": lambda w: ("carol@example.com", "transfer", {"to_team_id": w.teams["Support"]}),
    "bob sends it back": lambda w: ("bob@example.com", "transfer", {"to_team_id": w.teams["Billing"]}),
}


class Killed(BaseException):
    """The client process ends here (no handler of the engine's runs)."""


@dataclass
class Rig:
    """What outlives one example: the database, the server (restarted now and then) and the proxy before it."""

    db: sa.Engine
    world: World
    root: Path
    url: str = ""
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None
    proxy: FaultProxy | None = None
    examples: int = 0
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))  # for colleagues

    def start_server(self) -> None:
        self.url, self.server, self.thread = start_uvicorn(create_app(self.db))
        port = int(self.url.rsplit(":", 1)[1])
        if self.proxy is None:
            self.proxy = FaultProxy(port).start()
        self.proxy.retarget(port)

    def stop_server(self) -> None:
        assert self.server is not None and self.thread is not None
        self.server.should_exit = True
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "the server did not stop"

    def push_as(self, email: str, kind: str, args: dict) -> None:
        """A colleague acts on the server directly (whatever it answers: a refusal is part of the game)."""
        mutation = {"id": uuid.uuid4().hex, "kind": kind, "args": args}
        headers = {"Authorization": f"Bearer {self.world.tokens[email]}"}
        self.http.post(f"{self.url}/api/v1/sync/push", json={"mutations": [mutation]}, headers=headers).raise_for_status()


@pytest.fixture
def rig(db_engine: sa.Engine, tmp_path: Path) -> Iterator[Rig]:
    world = build_world(db_engine)
    with session(db_engine) as db:  # a colleague in Alice's team, to take her conversations first
        carol = add_agent(db, "Carol Diaz", "carol@example.com", "Billing")
        world.agents[carol.email], world.tokens[carol.email] = carol.id, issue_token(db, carol)
        db.commit()
    rig = Rig(db_engine, world, tmp_path)
    rig.start_server()
    yield rig
    rig.stop_server()
    rig.http.close()
    assert rig.proxy is not None
    rig.proxy.stop()


class DeskUnderFaults(RuleBasedStateMachine):
    def __init__(self, rig: Rig) -> None:
        super().__init__()
        rig.examples += 1
        self.rig, self.proxy, self.world = rig, rig.proxy, rig.world
        self.name = f"example{rig.examples}"
        self.path = rig.root / f"{self.name}.sqlite3"
        self.sent: list[str] = []  # texts of the replies and notes queued
        self.notices: list[str] = []  # what the agent was told
        self.refused_before = self.refused_on_server()
        self.open_client(TIMEOUT)

    # --- the client ----------------------------------------------------------------------------------

    def open_client(self, timeout: float) -> None:
        self.cache = Cache(self.path)
        client = SyncClient(self.proxy.url, self.world.tokens[ALICE], timeout=timeout)
        self.engine = SyncEngine(self.path, client, live=False, on_status=lambda status: self.notices.extend(status.notices))

    def close_client(self) -> None:
        """As abrupt as a kill can be in-process: no goodbye, whatever was in flight stays as it was."""
        self.engine.client.close()
        self.cache.close()

    @initialize(cut_after=st.sampled_from([None, 0, 300, 5000]), skip=st.integers(0, 8))
    def bootstrap(self, cut_after: int | None, skip: int) -> None:
        """Both conversations back in Alice's team; then her first bootstrap, one of its answers perhaps cut
        (the bootstrap resumes from its last committed page)."""
        for label in self.world.conversations:
            if label.startswith("maria"):
                self.rig.push_as("bob@example.com", "transfer", {"conversation_id": self.world.conversations[label], "to_team_id": self.world.teams["Billing"]})
        if cut_after is not None:
            self.proxy.cut_next(ANSWERS["bootstrap"], after=cut_after, skip=skip)
        for _attempt in range(20):
            self.sync()
            if self.cache.state("bootstrapped") == "1":
                return
        raise AssertionError("the bootstrap never finished")

    def sync(self) -> None:
        try:
            self.engine.sync_once(self.cache)
        except ServerUnavailable:
            pass  # offline: the next round catches up

    @rule(fault=st.sampled_from(sorted(FAULTS)), after=st.sampled_from([0, 40, 200, 2000]))
    def sync_round(self, fault: str, after: int) -> None:
        """One sync round, perhaps under a fault (see FAULTS)."""
        self.proxy.refuse = fault == "offline"
        if fault == "drop":
            self.proxy.drop()  # the idle keep-alive connections die under the client
        elif fault != "offline" and fault != "none":
            how, answer = fault.split()
            if how == "stall":
                self.proxy.stall_next(ANSWERS[answer])
            else:
                self.proxy.cut_next(ANSWERS[answer], after=after)
        self.sync()
        self.proxy.heal()

    @rule()
    def restart_client(self) -> None:
        self.close_client()
        self.open_client(TIMEOUT)

    @rule()
    def killed_mid_push(self) -> None:
        """The client dies once its push has reached the server, before it reads the answer: its outbox rows
        stay `sending` (as after a SIGKILL, which tests/sync/test_crash.py does for real); then it restarts."""
        push = self.engine.client.push

        def push_then_die(mutations: list[dict]) -> list[dict]:
            push(mutations)
            raise Killed

        self.engine.client.push = push_then_die  # type: ignore[method-assign]
        try:
            self.sync()
        except Killed:
            pass
        self.restart_client()

    # --- the agent at the desk ------------------------------------------------------------------------

    def conversation(self, label: str) -> dict | None:
        """The conversation as the cache has it (None once a colleague moved it out of Alice's teams)."""
        return self.cache.conversation(self.world.conversations[label])

    @rule(label=CONVERSATIONS, note=st.booleans())
    def reply(self, label: str, note: bool) -> None:
        if (conversation := self.conversation(label)) is not None:
            text = f"{self.name} message {len(self.sent)}"
            self.cache.queue_interaction(self.cache.identity(), conversation["id"], conversation["channel"], text, note=note)
            self.sent.append(text)

    @rule(label=CONVERSATIONS, action=st.sampled_from(sorted(DESK_ACTIONS)))
    def change_conversation(self, label: str, action: str) -> None:
        """What the desk's keys do (tui/app.py): the optimistic change and its mutation, in one transaction."""
        if (conversation := self.conversation(label)) is not None:
            kind, args, changes = DESK_ACTIONS[action](conversation, self.world.agents[ALICE])
            self.cache.queue_conversation_change(conversation["id"], kind, args, changes)

    @rule(tag=st.sampled_from(["vip", "late-payer"]), add=st.booleans())
    def tag_customer(self, tag: str, add: bool) -> None:
        if (customer := self.cache.customer(self.world.customers["maria"])) is not None:
            queue_retag(self.cache, customer["id"], "tag" if add else "untag", tag, json.loads(customer["tags"] or "[]"))

    # --- colleagues, on the server --------------------------------------------------------------------

    @rule(label=CONVERSATIONS, action=st.sampled_from(sorted(COLLEAGUE_ACTIONS)))
    def colleague_acts(self, label: str, action: str) -> None:
        """Carol takes a conversation or changes it first (Alice's change may then be refused), moves it out
        of Alice's teams, or Bob sends it back."""
        email, kind, args = COLLEAGUE_ACTIONS[action](self.world)
        self.rig.push_as(email, kind, {"conversation_id": self.world.conversations[label], **args})

    # --- the network and the server -------------------------------------------------------------------

    @rule()
    def restart_server(self) -> None:
        self.rig.stop_server()
        self.rig.start_server()

    # --- the end of each example --------------------------------------------------------------------

    def teardown(self) -> None:
        try:
            self.heal_and_settle()
            self.check_nothing_lost_or_doubled()
            view = server_view(self.rig.url, self.world.tokens[ALICE], self.rig.root / f"{self.name}-fresh.sqlite3")
            assert differences(mirror(self.cache.db), view) == {}, "the cache differs from the server"
        finally:
            self.close_client()

    def heal_and_settle(self) -> None:
        self.proxy.heal()
        self.close_client()
        self.open_client(timeout=10.0)  # no fault now; a busy machine is not one either
        deadline = time.monotonic() + SETTLE
        while True:
            try:
                self.engine.sync_once(self.cache)
                break
            except ServerUnavailable as exc:
                assert time.monotonic() < deadline, f"the healed client cannot sync: {exc}"
                time.sleep(0.1)
        assert self.cache.outbox() == [], "the outbox did not empty"
        self.notices += self.cache.take_notices()

    def refused_on_server(self) -> int:
        """How many of Alice's mutations the server has refused, ever."""
        query = select(sa.func.count()).where(Mutation.agent_id == self.world.agents[ALICE], Mutation.status == "rejected")
        with session(self.rig.db) as db:
            return db.exec(query).one()

    def check_nothing_lost_or_doubled(self) -> None:
        with session(self.rig.db) as db:
            found = Counter(db.exec(select(Interaction.text).where(Interaction.text.in_(self.sent))))  # type: ignore[union-attr]
        doubled = [text for text, count in found.items() if count > 1]
        assert doubled == [], f"delivered more than once: {doubled}"
        refused = [n for n in self.notices if n.startswith(("Not sent:", "Note not saved:"))]
        assert len(self.sent) - len(found) == len(refused), (
            f"{len(self.sent)} queued, {len(found)} on the server, {len(refused)} refusals reported: {self.notices}"
        )
        assert self.refused_on_server() - self.refused_before == len(self.notices), (
            f"the agent was told of other refusals than the server made: {self.notices}"
        )


def test_random_faults_end_with_the_cache_equal_to_the_server_and_each_reply_sent_once(rig: Rig) -> None:
    run_state_machine_as_test(
        lambda: DeskUnderFaults(rig),
        settings=settings(max_examples=10, stateful_step_count=40, deadline=None, database=None),
    )
