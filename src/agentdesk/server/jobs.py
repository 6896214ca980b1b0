"""Periodic server jobs: wake snoozed conversations, record SLA breaches, return unanswered conversations.

Every server process runs them; they are idempotent (a breach is recorded once, a woken conversation is no
longer snoozed), so several processes on one database only repeat a cheap query.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool

from agentdesk.domain.clock import utcnow
from agentdesk.server import routing, sla
from agentdesk.server.db import session as open_session
from agentdesk.server.mutations import wake_snoozed

log = logging.getLogger("agentdesk.jobs")


@dataclass(frozen=True)
class JobsConfig:
    interval: float = 30.0  # seconds between runs
    return_grace: timedelta = timedelta(minutes=5)  # away/offline this long: unanswered conversations go back


def run_once(engine: sa.Engine, now: datetime, config: JobsConfig) -> dict[str, int]:
    """One pass of every job, each in its own transaction, so one failing does not stop the others."""
    jobs = {
        "woken": lambda db: wake_snoozed(db, now),
        "breaches": lambda db: sla.sweep_breaches(db, now),
        "returned": lambda db: routing.return_unanswered(db, now, config.return_grace),
    }
    done: dict[str, int] = {}
    for name, job in jobs.items():
        try:
            with open_session(engine) as db:
                done[name] = job(db)
        except sa.exc.SQLAlchemyError as exc:  # e.g. two processes recording one breach: the next pass settles it
            log.warning("job %s failed: %s", name, type(exc).__name__)
    return done


async def run_forever(engine: sa.Engine, config: JobsConfig) -> None:
    """Run the jobs every `config.interval` seconds until cancelled (the app's lifespan owns this task)."""
    while True:
        done = await run_in_threadpool(run_once, engine, utcnow(), config)
        if any(done.values()):
            log.info("jobs: %s", ", ".join(f"{k} {v}" for k, v in done.items() if v))
        await asyncio.sleep(config.interval)
