"""The demo's server process: a fresh database full of a realistic day, served on a free loopback port, with
its channels configured for real and live traffic coming in.

Started by `agentdesk demo` as `python -m agentdesk.demo.server`; prints `PORT <n>` once it can serve,
and exits when its parent closes our stdin.

Channels: `[server] public_url` is our own http://127.0.0.1:PORT (the socket is bound first to learn it);
email comes in on an SMTP listener (any free port) and replies leave through a relay, the demo's mail sink;
SMS, WhatsApp and callbacks go out through a Twilio stand-in that posts signed status callbacks back; the chat
widget is at /chat. The traffic simulator (traffic.py) drives those paths unless --no-traffic is given.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentdesk.config import Settings
    from agentdesk.demo.outside import OutsideWorld
    from agentdesk.demo.traffic import Traffic

log = logging.getLogger("agentdesk.demo")

DB_NAME = "server.sqlite3"
WARMUP = 1.5  # seconds the mail sink, the Twilio stand-in and the traffic wait, so the desk loads first
SLA_MINUTES = {"chat": 5, "phone": 10, "sms": 10, "whatsapp": 10, "email": 15}  # first and next response
# Technical topics go to Technical Support; the rest to the first team by name (Billing).
TECH_KEYWORDS = ("router", "wifi", "internet", "outage", "mobile data", "esim", "verification code", "password",
                 "slow", "locked out", "speed")


def fresh_database(data_dir: Path) -> str:
    data_dir.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        (data_dir / f"{DB_NAME}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{data_dir / DB_NAME}"


def interval(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0.05 <= seconds <= 3600:
        raise argparse.ArgumentTypeError(f"expected seconds between 0.05 and 3600, not {text!r}")
    return seconds


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from agentdesk.demo.traffic import DEFAULT_INTERVAL

    parser = argparse.ArgumentParser(prog="agentdesk-demo-server")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-traffic", dest="traffic", action="store_false", help="no simulated customers")
    parser.add_argument("--traffic-interval", type=interval, default=DEFAULT_INTERVAL, metavar="SECONDS")
    return parser.parse_args(argv)


def demo_settings(port: int, channels: dict[str, object]) -> Settings:
    """Our own URL as the public one (Twilio signs for it), the channels, routing by topic, and round-the-clock
    teams with short first-response targets, so new traffic sorts near the top of the queue at any hour."""
    from agentdesk.config import Settings
    from agentdesk.demo.data import _TEAMS

    always = {day: "00:00-24:00" for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    teams = [{"name": name, "hours": always} for name in _TEAMS]
    policies = [{"channel": channel, "first_response": minutes, "next_response": minutes}
                for channel, minutes in SLA_MINUTES.items()]
    rules = [{"keyword": word, "team": "Technical Support"} for word in TECH_KEYWORDS]
    return Settings(server={"public_url": f"http://127.0.0.1:{port}"}, channels=channels, teams=teams,
                    sla={"policies": policies}, routing={"rules": rules})


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    token = os.environ.pop("AGENTDESK_DEMO_TOKEN")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)

    from agentdesk.demo.data import generate
    from agentdesk.demo.outside import OutsideWorld
    from agentdesk.demo.seed import seed_demo
    from agentdesk.server.app import create_app
    from agentdesk.server.db import create_schema, make_engine
    from agentdesk.server.run import bind, serve

    engine = make_engine(fresh_database(args.data_dir))
    create_schema(engine)
    seed_demo(engine, generate(args.seed), token)  # first: the routing rules name its teams
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    world = OutsideWorld()  # its sockets are bound now and served once the desk has loaded
    app = create_app(engine, settings=demo_settings(port, world.channels()))
    print(f"PORT {port}", flush=True)
    log.info("chat widget: http://127.0.0.1:%d/chat", port)

    traffic = None
    if args.traffic:
        from agentdesk.demo.traffic import Traffic

        def smtp_address() -> tuple[str, int] | None:
            context = getattr(app.state, "channels", None)  # set once the app has started
            return context.listening.get("smtp") if context is not None else None

        traffic = Traffic(engine, base_url=f"http://127.0.0.1:{port}", smtp_address=smtp_address, world=world,
                          seed=args.seed, interval=args.traffic_interval)
    closing = threading.Event()
    warmup = min(WARMUP, args.traffic_interval) if traffic else WARMUP
    threading.Thread(target=start_later, args=(world, traffic, warmup, closing), daemon=True, name="demo-start").start()

    def on_exit() -> None:
        closing.set()
        if traffic is not None:
            traffic.stopping.set()

    try:
        serve(app, sock, exit_on_stdin_eof=True, log_level="warning", on_stdin_eof=on_exit)
    finally:
        closing.set()
        if traffic is not None:
            traffic.stop()
        world.stop()


def start_later(world: OutsideWorld, traffic: Traffic | None, warmup: float, closing: threading.Event) -> None:
    """The outside world and the traffic, once the desk has had its first load (they would slow it)."""
    if closing.wait(warmup):
        return
    try:
        world.start()
    except Exception as exc:
        log.error("the demo's mail sink or Twilio stand-in did not start (replies stay in the outbox): %s", exc)
    if traffic is not None and not closing.is_set():
        traffic.start()


if __name__ == "__main__":
    main(sys.argv[1:])
