"""Opening the desk: find the account and its cache, start the sync engine, run the TUI."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: `agentdesk demo` imports this before it starts its server
    from collections.abc import Callable

    from agentdesk.config import Settings
    from agentdesk.store.cache import Identity
    from agentdesk.sync.client import SyncClient
    from agentdesk.sync.engine import SyncEngine, SyncStatus
    from agentdesk.tui.app import AgentDesk



class DeskError(Exception):
    """Why the desk cannot open, in words for the agent."""


def find_token(server_url: str, data_dir: Path) -> str:
    """AGENTDESK_TOKEN wins; otherwise the token `agentdesk login` stored (keyring or opted-in file)."""
    from agentdesk.sync.credentials import CredentialError, load_token

    try:
        return load_token(server_url, data_dir)
    except CredentialError as exc:
        raise DeskError(str(exc)) from exc


def to_stderr(message: str) -> None:
    print(f"agentdesk: {message}", file=sys.stderr, flush=True)


def open_engine(
    settings: Settings, server_url: str, token: str, data_dir: Path, warn: Callable[[str], None] = to_stderr,
) -> tuple[SyncEngine, Identity]:
    """The sync engine for this server and token's cache, and the agent it belongs to. The cache is checked
    here, once per process (store/integrity.py); `warn` tells the agent when it had to be rebuilt."""
    from agentdesk.store.integrity import open_checked
    from agentdesk.sync.account import NoAccount, resolve_account
    from agentdesk.sync.client import AuthRejected, ServerUnavailable, SyncClient
    from agentdesk.sync.engine import SyncEngine

    try:
        client = SyncClient(server_url, token, timeout=settings.sync.request_timeout)
    except ServerUnavailable as exc:
        raise DeskError(str(exc)) from exc
    try:
        account, me = resolve_account(server_url, token, data_dir, client)
        cache, damage = open_checked(account.cache_path)
        if damage:
            warn(damage)
        if me is None and cache.identity() is None:  # a rebuilt cache that lost it: ask the server, if it answers
            me = _me_if_reachable(client)
    except (NoAccount, AuthRejected) as exc:
        client.close()
        raise DeskError(str(exc)) from exc
    if me is not None:
        cache.set_identity(me)
    identity = cache.identity()
    cache.close()
    if identity is None:
        client.close()
        raise DeskError(f"The cache at {account.cache_path} has no agent identity yet; connect to the server once.")
    engine = SyncEngine(
        account.cache_path, client, page_size=settings.sync.page_size, poll_interval=settings.sync.poll_interval
    )
    return engine, identity


def _me_if_reachable(client: SyncClient) -> dict | None:
    from agentdesk.sync.client import ServerUnavailable

    try:
        return client.me()
    except ServerUnavailable:
        return None  # the desk is refused below, in words


def build_desk(settings: Settings, server_url: str, token: str, data_dir: Path) -> AgentDesk:
    """The desk app for this server and token, with its sync engine, ready to run."""
    from agentdesk.tui.app import AgentDesk

    notices: list[str] = []  # shown once the desk is up (a rebuilt cache, say)
    engine, identity = open_engine(settings, server_url, token, data_dir, warn=notices.append)
    keymap = {spec.id: spec.keys for spec in settings.keymap_bindings()}
    return AgentDesk(
        engine.cache_path, identity, engine=engine, keymap=keymap, theme=settings.desk.theme,
        bell_on_assignment=settings.desk.bell_on_assignment, canned=settings.canned, notices=notices,
    )


def run_desk(settings: Settings, server_url: str, token: str, data_dir: Path) -> None:
    build_desk(settings, server_url, token, data_dir).run()


def sync_once(settings: Settings, server_url: str, token: str, data_dir: Path) -> dict[str, object]:
    """One headless sync round (for scripts and cache warming); a one-line DeskError when it cannot."""
    from agentdesk.store.cache import Cache
    from agentdesk.sync.client import AuthRejected, ServerUnavailable

    engine, identity = open_engine(settings, server_url, token, data_dir)
    cache = Cache(engine.cache_path)
    try:
        engine.sync_once(cache)
    except (ServerUnavailable, AuthRejected) as exc:
        raise DeskError(str(exc)) from exc
    finally:
        engine.client.close()
    if engine.checkpointed is not None:
        engine.checkpointed.result()  # (it logs its own failure)
    report = {
        "agent": identity.agent_name,
        "cache": str(engine.cache_path),
        "conversations": cache.db.execute("SELECT count(*) FROM conversations").fetchone()[0],
        "interactions": cache.db.execute("SELECT count(*) FROM interactions").fetchone()[0],
        "queue": cache.queue_count(identity),
        "outbox": cache.outbox_count(),
        "notices": engine.status.notices,
    }
    cache.close()
    return report


def sync_forever(settings: Settings, server_url: str, token: str, data_dir: Path, report: Callable[[SyncStatus], None]) -> None:
    """Keep the cache in step without the desk, reporting each round, until interrupted."""
    engine, _identity = open_engine(settings, server_url, token, data_dir)
    engine.on_status = report
    engine.run()


def queue_message(
    settings: Settings, server_url: str, token: str, data_dir: Path, conversation_id: str, text: str, *,
    channel: str | None = None, note: bool = False,
) -> str:
    """Queue a reply or note through the outbox (works offline); it goes out on the next sync."""
    from agentdesk.store.cache import Cache

    engine, identity = open_engine(settings, server_url, token, data_dir)
    engine.client.close()
    cache = Cache(engine.cache_path)
    try:
        conversation = cache.conversation(conversation_id)
        if conversation is None:
            raise DeskError(f"No conversation {conversation_id} in the cache; run `agentdesk sync --once` first.")
        cache.queue_interaction(identity, conversation_id, channel or conversation["channel"], text, note=note)
        return f"{'Note' if note else 'Reply'} queued ({cache.outbox_count()} waiting); it goes out on the next sync."
    finally:
        cache.close()
