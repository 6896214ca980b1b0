"""`agentdesk demo`: a demo server as a child process, and the desk logged in to it."""

from __future__ import annotations

import os
import queue
import secrets
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from agentdesk.desk import DeskError

if TYPE_CHECKING:
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


def run_demo(load_settings: Callable[[], Settings], data_dir: Path | None, seed: int = 7) -> None:
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
            [sys.executable, "-m", "agentdesk.demo.server", "--data-dir", str(data_dir), "--seed", str(seed)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env={**os.environ, "AGENTDESK_DEMO_TOKEN": token},
        )
    try:
        settings = load_settings()
        import agentdesk.tui.app  # noqa: F401  (warm the heavy import while the server starts)
        from agentdesk.desk import run_desk

        port = _read_port(proc, log_path)
        run_desk(settings, f"http://127.0.0.1:{port}", token, data_dir / "desk")
    finally:
        _stop(proc)
