"""Teams, SLA policies and routing rules declared in the server TOML, applied when the server starts.

Idempotent: a restart with the same file writes nothing.
- ``[[teams]]``: created or updated by name (time zone, hours, holidays, routing). Teams the file does not
  name are left alone, and an admin's enable/disable is kept.
- ``[[sla.policies]]``: upserted by (channel, priority). When the file declares any, they are the whole
  set and stored policies it does not declare are removed; with none declared, stored ones are kept.
- ``[[routing.rules]]``: the declared list, in order, becomes the rule table (same rule as policies).

Team changes go through the change log, so desks see them. Several processes starting at once on
PostgreSQL apply one after the other (the change-log writer lock, taken first).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlmodel import Session, select

from agentdesk.server.auth import new_id
from agentdesk.server.changes import begin_write, record_upsert
from agentdesk.server.models import RoutingRule, SlaPolicy, Team

if TYPE_CHECKING:
    from agentdesk.config import Settings


class DeclaredError(ValueError):
    """The declared configuration cannot be applied to this database (e.g. a rule names an unknown team)."""


def apply_declared(session: Session, settings: Settings) -> dict[str, int]:
    """Apply the file's teams, SLA policies and routing rules; commit; return how many rows each changed."""
    begin_write(session)
    counts = {"teams": _teams(session, settings), "sla_policies": _policies(session, settings)}
    counts["routing_rules"] = _rules(session, settings)
    session.commit()
    return counts


def _teams(session: Session, settings: Settings) -> int:
    changed = 0
    for declared in settings.teams:
        team = session.exec(select(Team).where(Team.name == declared.name)).first()
        wanted = {
            "timezone": declared.timezone,
            "hours": dict(declared.hours),
            "holidays": list(declared.holidays),
            "routing": declared.routing,
        }
        if team is None:
            team = Team(id=new_id(), name=declared.name, **wanted)
        elif all(getattr(team, key) == value for key, value in wanted.items()):
            continue
        else:
            for key, value in wanted.items():
                setattr(team, key, value)
        record_upsert(session, team)
        changed += 1
    session.flush()
    return changed


def _policies(session: Session, settings: Settings) -> int:
    declared = settings.sla.policies
    if not declared:
        return 0
    stored = {(p.channel, p.priority): p for p in session.exec(select(SlaPolicy))}
    changed = 0
    for policy in declared:
        wanted = {
            "first_response_minutes": policy.first_response,
            "next_response_minutes": policy.next_response,
            "resolution_minutes": policy.resolution,
        }
        row = stored.pop((policy.channel, policy.priority), None)
        if row is not None and all(getattr(row, key) == value for key, value in wanted.items()):
            continue
        if row is None:
            row = SlaPolicy(id=new_id(), channel=policy.channel, priority=policy.priority)
        for key, value in wanted.items():
            setattr(row, key, value)
        session.add(row)
        changed += 1
    for row in stored.values():  # no longer declared
        session.delete(row)
        changed += 1
    session.flush()
    return changed


def _rules(session: Session, settings: Settings) -> int:
    declared = settings.routing.rules
    if not declared:
        return 0
    team_ids: list[str] = []
    for number, rule in enumerate(declared, 1):
        team = session.exec(select(Team).where(Team.name == rule.team)).first()
        if team is None:
            raise DeclaredError(
                f"[[routing.rules]] number {number} sends to team {rule.team!r}, which does not exist; "
                f"declare it under [[teams]] or add it with: agentdesk admin team add {rule.team!r}"
            )
        team_ids.append(team.id)
    wanted = [(position, rule.channel, rule.keyword, team_id) for position, (rule, team_id) in enumerate(zip(declared, team_ids, strict=True))]
    stored = list(session.exec(select(RoutingRule).order_by(RoutingRule.position, RoutingRule.id)))  # type: ignore[arg-type]
    if [(r.position, r.channel, r.keyword, r.team_id) for r in stored] == wanted:
        return 0
    for row in stored:
        session.delete(row)
    session.flush()
    for position, channel, keyword, team_id in wanted:
        session.add(RoutingRule(id=new_id(), position=position, channel=channel, keyword=keyword, team_id=team_id))
    session.flush()
    return len(stored) + len(wanted)
