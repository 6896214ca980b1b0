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
        run_demo(lambda: _settings(args), args.demo_dir, seed=args.seed)


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


def cmd_admin(args: argparse.Namespace) -> None:
    from agentdesk.server.admin import AdminError, add_agent, add_team, issue_agent_token
    from agentdesk.server.db import make_engine, session

    engine = _engine(_settings(args), make_engine)
    try:
        with session(engine) as db:
            if args.admin_command == "team":
                team = add_team(db, args.name)
                print(f"Added team {team.name} ({team.id})", file=sys.stderr)
            elif args.admin_command == "agent":
                agent = add_agent(db, args.name, args.email, args.team, args.role)
                print(f"Added agent {agent.name} <{agent.email}> ({agent.id})", file=sys.stderr)
            else:
                print(issue_agent_token(db, args.email))
    except AdminError as exc:
        raise CommandError(str(exc)) from exc


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
    team = admin_commands.add_parser("team", help="teams").add_subparsers(dest="verb", required=True)
    team.add_parser("add", help="add a team").add_argument("name")
    agent = admin_commands.add_parser("agent", help="agents").add_subparsers(dest="verb", required=True)
    agent_add = agent.add_parser("add", help="add an agent")
    agent_add.add_argument("--name", required=True)
    agent_add.add_argument("--email", required=True)
    agent_add.add_argument("--team", help="team name")
    agent_add.add_argument("--role", default="agent", choices=("agent", "supervisor", "admin"))
    token = admin_commands.add_parser("token", help="API tokens").add_subparsers(dest="verb", required=True)
    token.add_parser("issue", help="issue a token; prints it as the only line on stdout").add_argument("email")
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
