"""The `agentdesk` command line. Heavy modules are imported inside each command, never at the top."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from agentdesk import __version__


class CommandError(Exception):
    """A failure with a message for the user and an exit status; printed without a traceback."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def _settings(args: argparse.Namespace):  # noqa: ANN202 - Settings is imported lazily
    from agentdesk.config import ConfigError, load_settings
    from agentdesk.paths import config_file

    default = config_file()
    try:
        return load_settings(args.config or (default if default.exists() else None))
    except ConfigError as exc:
        raise CommandError(str(exc), 2) from exc


def _desk_args(args: argparse.Namespace) -> tuple:
    """Settings, server URL, token and data dir: what every command acting as the agent needs."""
    from agentdesk.desk import find_token
    from agentdesk.paths import data_dir

    settings = _settings(args)
    server_url = args.server or settings.desk.server_url
    where = data_dir(args.data_dir) if args.data_dir else settings.data_dir()
    return settings, server_url, find_token(server_url, where), where


def cmd_login(args: argparse.Namespace) -> None:
    """Ask for the token (or read it from stdin), check it with the server, keep it, read it back."""
    import getpass

    from agentdesk.paths import data_dir
    from agentdesk.sync.client import AuthRejected, ServerUnavailable, SyncClient
    from agentdesk.sync.credentials import CredentialError, store_token

    settings = _settings(args)
    server_url = args.server or settings.desk.server_url
    where = data_dir(args.data_dir) if args.data_dir else settings.data_dir()
    token = (getpass.getpass(f"API token for {server_url}: ") if sys.stdin.isatty() else sys.stdin.readline()).strip()
    if not token:
        raise CommandError("No token given; paste the token your admin issued (agentdesk admin token issue EMAIL).")
    try:
        client = SyncClient(server_url, token, timeout=settings.sync.request_timeout)
        try:
            me = client.me()
        finally:
            client.close()
        place = store_token(server_url, token, where, file_store=args.file_store)
    except (ServerUnavailable, AuthRejected, CredentialError) as exc:
        raise CommandError(str(exc)) from exc
    print(f"Logged in to {server_url} as {me['name']} <{me['email']}>; the token is kept in {place}.", file=sys.stderr)


@contextmanager
def _desk_errors() -> Iterator[None]:
    """A desk-side failure (no token, unreachable server, unknown conversation…) as one line."""
    from agentdesk.desk import DeskError

    try:
        yield
    except DeskError as exc:
        raise CommandError(str(exc)) from exc


def cmd_desk(args: argparse.Namespace) -> None:
    from agentdesk.desk import run_desk

    with _desk_errors():
        run_desk(*_desk_args(args))


def cmd_sync(args: argparse.Namespace) -> None:
    import json

    from agentdesk.desk import sync_forever, sync_once

    with _desk_errors():
        if not args.once:
            sync_forever(*_desk_args(args), lambda status: print(_status_line(status), flush=True))
            return
        report = sync_once(*_desk_args(args))
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"{report['agent']}: {report['conversations']:,} conversations, {report['interactions']:,} interactions, "
            f"{report['queue']:,} in the queue, {report['outbox']} waiting to send"
        )
        for notice in report["notices"]:  # type: ignore[attr-defined]
            print(notice, file=sys.stderr)


def cmd_message(args: argparse.Namespace) -> None:
    from agentdesk.desk import queue_message

    if not args.text.strip():
        raise CommandError("--text is empty; there is nothing to send.")
    with _desk_errors():
        print(queue_message(
            *_desk_args(args), args.conversation_id, args.text,
            channel=getattr(args, "channel", None), note=args.command == "note",
        ))


def _status_line(status) -> str:  # noqa: ANN001 - SyncStatus is imported lazily
    state = "online" if status.online else f"offline ({status.error})"
    loading = f", loading {status.bootstrapping}" if status.bootstrapping else ""
    return f"{state}, {status.outbox} waiting to send{loading}"


def cmd_demo(args: argparse.Namespace) -> None:
    from agentdesk.demo.launcher import run_demo

    with _desk_errors():  # DemoError is a DeskError
        run_demo(lambda: _settings(args), args.demo_dir, seed=args.seed, traffic=args.traffic,
                 traffic_interval=args.traffic_interval)


def _demo_interval(text: str) -> float:
    from agentdesk.demo.server import interval  # the demo server checks it the same way

    return interval(text)


def cmd_serve(args: argparse.Namespace) -> None:
    settings = _settings(args)
    host = args.host or settings.server.host
    port = settings.server.port if args.port is None else args.port

    from agentdesk.server.app import create_app
    from agentdesk.server.db import make_engine
    from agentdesk.server.run import bind, serve

    engine = _engine(settings, make_engine)
    if args.migrate_only:
        print(f"Database schema is current ({engine.url!r})", file=sys.stderr)
        return
    from agentdesk.paths import config_file
    from agentdesk.server.declared import DeclaredError

    try:
        app = create_app(engine, settings=settings)
    except DeclaredError as exc:
        raise CommandError(f"{args.config or config_file()}: {exc}", 2) from exc
    try:
        sock = bind(host, port)
    except OSError as exc:
        raise CommandError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    print(f"agentdesk server on http://{host}:{sock.getsockname()[1]} (database {engine.url!r})", file=sys.stderr)
    if changed := {kind: n for kind, n in app.state.declared.items() if n}:
        print("Applied declared configuration: " + ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in changed.items()), file=sys.stderr)
    serve(app, sock)


def _engine(settings, make_engine: Callable):  # noqa: ANN001, ANN202
    """The server database, its schema created or upgraded to the newest migration."""
    import sqlalchemy as sa

    from agentdesk.server.db import migrate

    url = settings.database_url()
    try:
        engine = make_engine(url, echo=settings.database.echo)
        migrate(engine)
    except (sa.exc.SQLAlchemyError, OSError, ModuleNotFoundError) as exc:
        raise CommandError(f"Cannot open the database {url!r}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}") from exc
    return engine


def _table(headers: list[str], rows: list[list[object]]) -> str:
    """An aligned plain-text table; every cell is made inert (names are untrusted text, DESIGN §6)."""
    from agentdesk.domain.text import clean_line

    cells = [headers, *[[clean_line("" if cell is None else cell, 60) for cell in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in cells)


def _when(value) -> str:  # noqa: ANN001 - datetime or None
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else ""


def _capacity_arg(text: str) -> tuple[str, int]:
    channel, sep, limit = text.partition("=")
    if not sep or not channel.strip() or not limit.strip().isdigit():
        raise CommandError(f"capacity: expected CHANNEL=N such as email=5 or '*=3', got {text!r}")
    return channel.strip(), int(limit)


def _print_agents(db) -> None:  # noqa: ANN001 - Session is imported lazily
    from agentdesk.server.admin import list_agents

    rows = [
        [i.agent.email, i.agent.name, i.agent.role, "yes" if i.agent.active else "no", ",".join(i.teams),
         ",".join(i.agent.skills), ",".join(f"{k}={v}" for k, v in i.agent.capacity.items()), i.agent.id]
        for i in list_agents(db)
    ]
    print(_table(["EMAIL", "NAME", "ROLE", "ENABLED", "TEAMS", "SKILLS", "CAPACITY", "ID"], rows))


def _print_teams(db) -> None:  # noqa: ANN001
    from agentdesk.server.admin import list_teams

    rows = [
        [i.team.name, "yes" if i.team.active else "no", i.team.routing, i.team.timezone, i.members, i.team.id]
        for i in list_teams(db)
    ]
    print(_table(["NAME", "ENABLED", "ROUTING", "TIMEZONE", "MEMBERS", "ID"], rows))


def _print_tokens(db) -> None:  # noqa: ANN001
    from agentdesk.server.admin import list_tokens

    rows = [
        [i.token.id, i.token.kind, i.agent_email or i.token.name, "…" + i.token.hint, _when(i.token.created_at),
         _when(i.token.revoked_at) or "-"]
        for i in list_tokens(db)
    ]
    print(_table(["ID", "KIND", "FOR", "ENDS", "CREATED", "REVOKED"], rows))


def _admin_agent(db, args: argparse.Namespace) -> None:  # noqa: ANN001
    from agentdesk.server import admin

    verb = args.verb
    if verb == "list":
        _print_agents(db)
        return
    if verb == "add":
        capacity = dict(_capacity_arg(text) for text in args.capacity or [])
        agent = admin.add_agent(db, args.name, args.email, role=args.role, teams=args.team or [], skills=args.skill or [],
                                capacity=capacity)
        print(f"Added agent {agent.name} <{agent.email}> ({agent.id})", file=sys.stderr)
        return
    if verb in ("disable", "enable"):
        agent = admin.set_agent_active(db, args.agent, verb == "enable")
        print(f"{verb.capitalize()}d agent {agent.email}", file=sys.stderr)
    elif verb == "skills":
        agent = admin.set_agent_skills(db, args.agent, args.skills)
        print(f"Skills of {agent.email}: {', '.join(agent.skills) or '(none)'}", file=sys.stderr)
    elif verb == "capacity":
        agent = admin.set_agent_capacity(db, args.agent, dict(_capacity_arg(text) for text in args.limits))
        limits = ", ".join(f"{k}={v}" for k, v in agent.capacity.items()) or "(the default)"
        print(f"Capacity of {agent.email}: {limits}", file=sys.stderr)
    elif verb == "role":
        agent = admin.set_agent_role(db, args.agent, args.role)
        print(f"{agent.email} is now {agent.role}", file=sys.stderr)
    elif verb == "join":
        admin.add_agent_to_team(db, args.agent, args.team)
        print(f"Added {args.agent} to team {args.team}", file=sys.stderr)
    else:  # leave
        admin.remove_agent_from_team(db, args.agent, args.team)
        print(f"Removed {args.agent} from team {args.team}", file=sys.stderr)


def _admin_team(db, args: argparse.Namespace) -> None:  # noqa: ANN001
    from agentdesk.server import admin

    if args.verb == "list":
        _print_teams(db)
    elif args.verb == "add":
        team = admin.add_team(db, args.name, routing=args.routing, timezone=args.timezone)
        print(f"Added team {team.name} ({team.id})", file=sys.stderr)
    else:
        team = admin.set_team_active(db, args.name, args.verb == "enable")
        print(f"{args.verb.capitalize()}d team {team.name}", file=sys.stderr)


def _admin_token(db, args: argparse.Namespace) -> None:  # noqa: ANN001
    from agentdesk.server import admin

    if args.verb == "list":
        _print_tokens(db)
    elif args.verb == "issue":
        if (args.email is None) == (args.integration is None):
            raise CommandError("token issue: give an agent's EMAIL or --integration NAME (one of them)")
        row, token = admin.issue(db, agent=args.email, integration=args.integration)
        print(token)  # the only line on stdout, so scripts can capture it
        owner = f"integration {row.name!r}" if row.kind == "integration" else args.email
        print(f"Issued a token for {owner} (id {row.id}); it is shown only this once.", file=sys.stderr)
    else:  # revoke
        row = admin.revoke_token(db, args.id)
        print(f"Revoked token {row.id} (…{row.hint})", file=sys.stderr)


def _admin_compact(db, args: argparse.Namespace) -> None:  # noqa: ANN001
    from datetime import timedelta

    from agentdesk.server.compaction import compact

    if args.keep_days < 0:
        raise CommandError(f"--keep-days must be 0 or more, got {args.keep_days}")
    removed, horizon = compact(db, timedelta(days=args.keep_days))
    if removed:
        print(f"Removed {removed:,} changes older than {args.keep_days} days; desks behind change {horizon:,} will bootstrap again.")
    else:
        print(f"Removed 0 changes: none is older than {args.keep_days} days (horizon stays at change {horizon:,}).")


def cmd_admin(args: argparse.Namespace) -> None:
    from agentdesk.server.admin import AdminError
    from agentdesk.server.db import make_engine, session

    engine = _engine(_settings(args), make_engine)
    run = {"agent": _admin_agent, "team": _admin_team, "token": _admin_token, "compact": _admin_compact}[args.admin_command]
    try:
        with session(engine) as db:
            run(db, args)
    except AdminError as exc:
        raise CommandError(str(exc)) from exc
    finally:
        engine.dispose()


def cmd_config_check(args: argparse.Namespace) -> None:
    from agentdesk.config import check_file

    problems = check_file(args.file)
    if problems:
        raise CommandError("\n".join(problems), 1)
    print(f"{args.file}: OK")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentdesk", description="The contact-center agent desk, in the terminal.")
    parser.add_argument("--version", action="version", version=f"agentdesk {__version__}")
    config = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand's option must not reset what was given before the subcommand
    config.add_argument("--config", type=Path, metavar="FILE", default=argparse.SUPPRESS, help="TOML configuration file")
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
    parser.add_argument("--server", metavar="URL", help="server to sync with (overrides desk.server_url)")
    parser.add_argument("--data-dir", metavar="DIR", help="where caches live (default: the platform data dir)")
    parser.set_defaults(func=cmd_desk)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser("demo", parents=[config], help="open the desk on a demo server with a realistic day")
    demo.add_argument(
        "--data-dir", dest="demo_dir", type=Path, metavar="DIR", help="where the demo keeps its files (default: <data dir>/demo)"
    )
    demo.add_argument("--seed", type=int, default=7, help="demo data seed (same seed, same day)")
    demo.add_argument("--no-traffic", dest="traffic", action="store_false",
                      help="no simulated customers writing, texting, calling and chatting while you work")
    demo.add_argument("--traffic-interval", type=_demo_interval, metavar="SECONDS",
                      help="average seconds between simulated customer events (default: 13)")
    demo.set_defaults(func=cmd_demo)

    login = commands.add_parser("login", parents=[config], help="check an API token with the server and keep it in the keyring")
    login.add_argument("--file-store", action="store_true", help="keep it in a file readable only by you (when there is no keyring)")
    login.set_defaults(func=cmd_login)

    sync = commands.add_parser("sync", parents=[config], help="keep the cache in step without the desk (for scripts and cache warming)")
    sync.add_argument("--once", action="store_true", help="one round, then exit (non-zero with a one-line reason when the server cannot be reached)")
    sync.add_argument("--json", action="store_true", help="with --once: print the result as one JSON object")
    sync.set_defaults(func=cmd_sync)

    for name, what in (("reply", "queue a reply to the customer"), ("note", "queue an internal note")):
        message = commands.add_parser(name, parents=[config], help=f"{what} (works offline; sent on the next sync)")
        message.add_argument("conversation_id")
        message.add_argument("--text", required=True)
        if name == "reply":
            message.add_argument("--channel", choices=("email", "sms", "whatsapp", "chat", "phone"), help="default: the conversation's")
        message.set_defaults(func=cmd_message)

    serve = commands.add_parser("serve", parents=[config], help="run the agentdesk server")
    serve.add_argument("--host", help="listen address (default from [server] host)")
    serve.add_argument("--port", type=int, help="listen port (default from [server] port)")
    serve.add_argument("--migrate-only", action="store_true", help="create or upgrade the database schema, then exit")
    serve.set_defaults(func=cmd_serve)

    admin = commands.add_parser("admin", parents=[config], help="manage teams, agents and tokens")
    admin_commands = admin.add_subparsers(dest="admin_command", metavar="WHAT", required=True)
    team = admin_commands.add_parser("team", help="teams").add_subparsers(dest="verb", metavar="VERB", required=True)
    team.add_parser("list", help="list teams as a table")
    team_add = team.add_parser("add", help="add a team")
    team_add.add_argument("name")
    team_add.add_argument("--routing", default="round_robin", choices=("round_robin", "queue"),
                          help="round_robin: hand new conversations to available agents in turn; queue: leave them in the queue")
    team_add.add_argument("--timezone", default="UTC", help="IANA time zone of the team's business hours (default UTC)")
    for verb, what in (("disable", "stop routing new conversations to a team"), ("enable", "route to a team again")):
        team.add_parser(verb, help=what).add_argument("name", help="team name or id")

    agent = admin_commands.add_parser("agent", help="agents").add_subparsers(dest="verb", metavar="VERB", required=True)
    agent.add_parser("list", help="list agents with teams, skills and capacity as a table")
    agent_add = agent.add_parser("add", help="add an agent")
    agent_add.add_argument("--name", required=True)
    agent_add.add_argument("--email", required=True)
    agent_add.add_argument("--team", action="append", metavar="TEAM", help="team name (repeat for several)")
    agent_add.add_argument("--role", default="agent", choices=("agent", "supervisor", "admin"))
    agent_add.add_argument("--skill", action="append", metavar="SKILL", help="a skill such as spanish (repeat for several)")
    agent_add.add_argument("--capacity", action="append", metavar="CHANNEL=N", help="open conversations at once, e.g. email=5 ('*' = any channel)")
    for verb, what in (("disable", "disable an agent: their tokens stop working and routing skips them"), ("enable", "enable an agent again")):
        agent.add_parser(verb, help=what).add_argument("agent", metavar="EMAIL", help="agent email or id")
    skills = agent.add_parser("skills", help="replace an agent's skills (none given: clear them)")
    skills.add_argument("agent", metavar="EMAIL")
    skills.add_argument("skills", nargs="*", metavar="SKILL")
    capacity = agent.add_parser("capacity", help="replace an agent's capacity per channel (none given: the default)")
    capacity.add_argument("agent", metavar="EMAIL")
    capacity.add_argument("limits", nargs="*", metavar="CHANNEL=N")
    role = agent.add_parser("role", help="change an agent's role")
    role.add_argument("agent", metavar="EMAIL")
    role.add_argument("role", choices=("agent", "supervisor", "admin"))
    for verb, what in (("join", "add an agent to a team"), ("leave", "remove an agent from a team")):
        membership = agent.add_parser(verb, help=what)
        membership.add_argument("agent", metavar="EMAIL")
        membership.add_argument("team", metavar="TEAM")

    token = admin_commands.add_parser("token", help="API tokens").add_subparsers(dest="verb", metavar="VERB", required=True)
    issue = token.add_parser("issue", help="issue a token; prints it as the only line on stdout (shown once)")
    issue.add_argument("email", nargs="?", help="the agent the token acts as")
    issue.add_argument("--integration", metavar="NAME", help="issue an integration token for the system NAME instead")
    token.add_parser("list", help="list tokens (never the tokens themselves)")
    token.add_parser("revoke", help="revoke a token at once").add_argument("id", help="token id (or a unique prefix of 6+ characters)")

    compact = admin_commands.add_parser("compact", help="drop old change-log entries (desks further behind re-bootstrap)")
    compact.add_argument("--keep-days", type=int, required=True, metavar="N", help="keep the last N days of changes")
    admin.set_defaults(func=cmd_admin)

    config_cmd = commands.add_parser("config", help="configuration tools")
    config_verbs = config_cmd.add_subparsers(dest="verb", required=True)
    check = config_verbs.add_parser("check", help="validate a TOML file and print precise errors")
    check.add_argument("file", type=Path)
    check.set_defaults(func=cmd_config_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except CommandError as exc:
        print(f"agentdesk: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        return 130
    return 0
