"""`agentdesk demo`: a demo server as a child process, and the desk logged in to it."""

from __future__ import annotations

import os
import queue
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from agentdesk.desk import DeskError

if TYPE_CHECKING:
    from textual.app import App

    from agentdesk.config import Settings

STARTUP_TIMEOUT = 60.0
MARKER = ".agentdesk-demo"  # the demo wipes its folder's database: only ever one it made itself


class DemoError(DeskError):
    """The demo could not start; the message says why."""


def _read_port(proc: subprocess.Popen[str], log_path: Path) -> int:
    """The `PORT n` line the demo server prints once it can serve."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()  # type: ignore[union-attr]
    try:
        line = lines.get(timeout=STARTUP_TIMEOUT)
    except queue.Empty:
        line = ""
    if not line.startswith("PORT "):
        raise DemoError(f"The demo server did not start; its log is {log_path}:\n{_tail(log_path)}")
    return int(line.split()[1])


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.stdin:
        proc.stdin.close()  # the server exits on EOF
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _server_command(data_dir: Path, seed: int, traffic: bool, traffic_interval: float | None) -> list[str]:
    command = [sys.executable, "-m", "agentdesk.demo.server", "--data-dir", str(data_dir), "--seed", str(seed)]
    if not traffic:
        command.append("--no-traffic")
    elif traffic_interval is not None:
        command += ["--traffic-interval", str(traffic_interval)]
    return command


def _announce(app: App[None], port: int, traffic: bool) -> None:
    """Once the desk runs, tell the agent where the chat widget is (from a thread: the app is not running yet)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not app.is_running:
        if time.monotonic() > deadline:
            return
        time.sleep(0.05)
    live = "Customers are getting in touch live (agentdesk demo --no-traffic turns it off). " if traffic else ""
    try:
        app.call_from_thread(app.notify, f"{live}Chat with yourself at http://127.0.0.1:{port}/chat",
                             title="Demo", timeout=20, markup=False)
    except RuntimeError:  # the desk closed meanwhile
        pass


def run_demo(load_settings: Callable[[], Settings], data_dir: Path | None, seed: int = 7, *, traffic: bool = True,
             traffic_interval: float | None = None) -> None:
    """Settings are loaded once the server is on its way: its start-up is the long pole."""
    from agentdesk.paths import data_dir as default_data_dir

    data_dir = (data_dir or default_data_dir() / "demo").expanduser().resolve()
    if data_dir.is_dir() and any(data_dir.iterdir()) and not (data_dir / MARKER).exists():
        raise DemoError(f"{data_dir} is not empty and not a demo folder; give --data-dir an empty or new folder.")
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / MARKER).touch()
    shutil.rmtree(data_dir / "desk", ignore_errors=True)  # a fresh demo: a fresh cache too
    token = "adk_demo_" + secrets.token_urlsafe(24)
    log_path = data_dir / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            _server_command(data_dir, seed, traffic, traffic_interval),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env={**os.environ, "AGENTDESK_DEMO_TOKEN": token},
        )
    try:
        settings = load_settings()
        import agentdesk.tui.app  # noqa: F401  (warm the heavy import while the server starts)
        from agentdesk.desk import build_desk

        port = _read_port(proc, log_path)
        app = build_desk(settings, f"http://127.0.0.1:{port}", token, data_dir / "desk")
        threading.Thread(target=_announce, args=(app, port, traffic), daemon=True, name="demo-announce").start()
        app.run()
    finally:
        _stop(proc)
