"""Change-log compaction: drop old changes; a cursor older than what is left must bootstrap again."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlmodel import Session

from agentdesk.domain.clock import utcnow
from agentdesk.server.models import Change, ServerState

HORIZON_KEY = "change_log_horizon"


def horizon(session: Session) -> int:
    """The highest seq removed by compaction: a pull from below it cannot be answered (0 = nothing removed)."""
    state = session.get(ServerState, HORIZON_KEY)
    return int(state.value) if state else 0


def compact(session: Session, keep: timedelta) -> tuple[int, int]:
    """Remove changes older than `keep`; return (changes removed, the new horizon)."""
    cutoff = utcnow() - keep
    newest_old = session.execute(sa.select(sa.func.max(Change.seq)).where(Change.created_at < cutoff)).scalar()
    if newest_old is None:
        return 0, horizon(session)
    removed = session.execute(sa.delete(Change).where(Change.seq <= newest_old)).rowcount
    state = session.get(ServerState, HORIZON_KEY) or ServerState(key=HORIZON_KEY, value="0")
    state.value = str(max(int(state.value), newest_old))
    session.add(state)
    session.commit()
    return removed, int(state.value)
