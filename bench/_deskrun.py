"""The desk bench's child process: runs the desk (or the bare floor app) on a pseudo-terminal and reports times.

    python bench/_deskrun.py {floor|desk|interact} REPORT.json [CACHE] [--profile FILE]

Started by bench/desk_bench.py with its stdin/stdout on a pty (the real Textual LinuxDriver, real terminal
output). All times are time.monotonic() (CLOCK_MONOTONIC, shared by every process on the machine), so the parent
subtracts its own just-before-spawn reading to get "since process start".

  * a frame = one App._display call that wrote a screen update to the terminal (`frames`);
  * first_paint = the first frame after which the target is on screen: for the floor app its one Static's text,
    for the desk the name of the queue's first row's customer inside the `#queue` widget's region;
  * interactive = when the app's event handler acts on a key (an unbound F20) sent at first paint — it reaches the
    app's key bindings — i.e. when the app has worked through everything queued before it (and anything it does with
    input first) and would act on a real keypress;
  * interact mode then sends key sequences (driver.send_message, the path real keys take after parsing) and,
    for each, records the press time and every frame until the app is quiet (see timed_press).
"""

from __future__ import annotations

import time

T_MAIN = time.monotonic()

import asyncio  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

BENCH = Path(__file__).resolve().parent
SRC = BENCH.parent / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

FLOOR_TEXT = "agentdesk bench floor"


def memory() -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak) of this process, in MB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def screen_lines(app) -> list[str]:  # noqa: ANN001
    strips = app.screen._compositor.render_strips()
    return ["".join(segment.text for segment in strip) for strip in strips]


def text_in_widget(app, selector: str, needle: str) -> bool:  # noqa: ANN001
    """Is `needle` painted inside the widget's region (False while the widget is absent or not laid out)?"""
    try:
        region = app.query_one(selector).region
    except Exception:
        return False
    if not region.height:
        return False
    lines = screen_lines(app)[region.y:region.y + region.height]
    return any(needle in line[region.x:region.x + region.width] for line in lines)


class Probe:
    """What the child measured; written as JSON when the app exits."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.t: dict[str, float | None] = {"main": T_MAIN, "first_paint": None, "interactive": None, "ready": None}
        self.cpu: dict[str, float] = {}  # this process's CPU seconds (all threads) so far: less load-dependent
        self.frames: list[float] = []
        self.memory: dict[str, dict[str, float]] = {}
        self.keys: list[dict] = []
        self.checks: dict[str, object] = {}
        self.error: str | None = None


def probed(base: type, probe: Probe, target: tuple[str, str], after_interactive) -> type:  # noqa: ANN001
    """`base` (an App class) with hooks that record frames, first paint, readiness and the first key."""
    from textual import events

    class Probed(base):
        def _display(self, screen, renderable) -> None:  # noqa: ANN001
            super()._display(screen, renderable)
            if renderable is None or self._batch_count or not self._running:
                return
            now, cpu = time.monotonic(), time.process_time()  # before the check below, which renders the screen again
            probe.frames.append(now)
            if probe.t["first_paint"] is None and text_in_widget(self, *target):
                probe.t["first_paint"] = now
                probe.cpu["first_paint"] = cpu
                probe.memory["first_paint"] = memory()
                self._driver.send_message(events.Key("f20", None))

        async def _ready(self) -> None:
            probe.t["ready"] = time.monotonic()
            await super()._ready()

        async def _check_bindings(self, key: str, priority: bool = False) -> bool:
            # where the app's own event handler acts on a key (after anything the app does with input first)
            if key == "f20" and probe.t["interactive"] is None:
                probe.t["interactive"] = time.monotonic()
                probe.cpu["interactive"] = time.process_time()
                probe.memory["interactive"] = memory()
                self.call_later(after_interactive, self)
                return True
            return await super()._check_bindings(key, priority)

    css = getattr(base, "CSS_PATH", None)  # relative to the module defining the class: keep it pointing there
    if css:
        import inspect

        home = Path(inspect.getfile(base)).parent
        Probed.CSS_PATH = [str(home / c) for c in ([css] if isinstance(css, (str, Path)) else css)]
    return Probed


# ------------------------------------------------------------------------------------------- interact


def quiet(app) -> bool:  # noqa: ANN001
    """Nothing left to do for the last key: no message waiting in any pump, no worker running, no repaint due."""
    from textual.worker import WorkerState

    if getattr(app, "open_pending", False):  # the queue's highlight moved; its conversation opens after that frame
        return False
    screen = app.screen
    if screen._dirty_widgets or screen._layout_required or screen._repaint_required or screen._scroll_required:
        return False
    if any(w.state in (WorkerState.PENDING, WorkerState.RUNNING) for w in app.workers):
        return False
    return all(pump._message_queue.empty() for pump in (app, *screen.walk_children(with_self=True)))


KEY_CHARS = {"enter": "\r", "escape": "\x1b", "tab": "\t"}


TAP_GAP = 0.1  # s between the starts of two taps at least: a fast typist's 10 keys a second
HELD_KEY_DELAY = 0.3  # s from a key going down to its first repeat (terminals wait 250-500 ms)
HELD_KEY_REPEAT = 0.03  # s between a held key's repeats (a terminal's usual auto-repeat rate, ~33 a second)


def send_key(app, key: str) -> float:  # noqa: ANN001
    """`key` sent as the driver does after parsing real input; the press time."""
    from textual import events

    t0 = time.monotonic()
    app._driver.send_message(events.Key(key, KEY_CHARS.get(key, key if len(key) == 1 else None)))
    return t0


async def until_quiet(app) -> float:  # noqa: ANN001
    """When everything the keys set off is done (quiet twice, 2 ms apart)."""
    deadline = time.monotonic() + 10
    await asyncio.sleep(0)
    while time.monotonic() < deadline:
        if quiet(app):
            await asyncio.sleep(0.002)
            if quiet(app):
                break
        await asyncio.sleep(0.001)
    return time.monotonic()


async def timed_press(app, probe: Probe, phase: str, key: str) -> None:  # noqa: ANN001
    """Tap `key`; when everything it set off is done, keep the press time and the frames drawn since. The last of
    them is what the agent ends up seeing; frames after the quiet point (the status clock's tick) are not the
    key's. The next tap comes TAP_GAP after this one at the soonest (closer, the desk takes them for a held key)."""
    n0, cpu0 = len(probe.frames), time.process_time()
    t0 = send_key(app, key)
    t_quiet = await until_quiet(app)
    frames = [f for f in probe.frames[n0:] if f <= t_quiet]
    cpu = time.process_time() - cpu0  # this process's CPU for the key (all threads): less load-dependent
    probe.keys.append({"phase": phase, "key": key, "t0": t0, "frames": frames, "quiet": t_quiet, "cpu": cpu})
    await asyncio.sleep(max(0.01, t0 + TAP_GAP - time.monotonic()))  # a breath between keys, as typing has


async def held_key(app, probe: Probe, phase: str, key: str, repeats: int) -> None:  # noqa: ANN001
    """Hold `key` down as a terminal does: a press, its first repeat HELD_KEY_DELAY later, then one every
    HELD_KEY_REPEAT, then let go. The presses come from a thread of their own, as the driver's input thread
    sends them, so a slow handler does not hold the next one back. A press's repaint is the first frame drawn
    after it (a press with none fails the figure); the release's, the last frame before the app is quiet."""
    n0, cpu0 = len(probe.frames), time.process_time()

    def hold() -> list[float]:
        starts: list[float] = []
        for gap in [HELD_KEY_DELAY] + [HELD_KEY_REPEAT] * (repeats - 1):
            if starts:
                time.sleep(max(0.0, starts[-1] + gap - time.monotonic()))
            starts.append(send_key(app, key))
        return starts

    starts = await asyncio.to_thread(hold)
    t_quiet = await until_quiet(app)
    cpu = (time.process_time() - cpu0) / repeats
    frames = [f for f in probe.frames[n0:] if f <= t_quiet]
    for t0 in starts:
        after = [f for f in frames if f >= t0]
        mine = after if t0 == starts[-1] else after[:1]
        probe.keys.append({"phase": phase, "key": key, "t0": t0, "frames": mine, "quiet": t_quiet, "cpu": cpu})
    await asyncio.sleep(TAP_GAP)


def interact_script(manifest: dict):  # noqa: ANN201
    heavy, first = manifest["heavy_customer"]["name"], manifest["first_customer"]["name"]

    async def script(app, probe: Probe) -> None:  # noqa: ANN001
        press = lambda phase, key: timed_press(app, probe, phase, key)  # noqa: E731
        try:
            await asyncio.sleep(0.3)  # let start-up work (timers, late loads) finish
            probe.checks["row0_on_screen"] = any(first in line for line in screen_lines(app))
            await press("timeline_open", "j")  # row 1: the 10k-interaction customer
            probe.checks["heavy_on_screen"] = any(heavy in line for line in screen_lines(app))
            await press("timeline_reopen", "enter")  # opens it again and focuses the timeline
            probe.checks["focused_after_enter"] = type(app.focused).__name__ if app.focused else None
            for key in ["up"] * 30 + ["pageup"] * 20 + ["down"] * 10 + ["pagedown"] * 10 + ["home", "end"] * 2:
                await press("timeline_scroll", key)
            await press("focus", "escape")
            probe.checks["focused_after_escape"] = type(app.focused).__name__ if app.focused else None
            for key in ["k"] + ["j"] * 60 + ["k"] * 20:
                await press("queue_move", key)
            for key in ["pagedown"] * 10 + ["pageup"] * 5:
                await press("queue_page", key)
            await press("queue_end", "end")
            for key in ["k"] * 10 + ["j"] * 5:
                await press("queue_deep_move", key)
            await held_key(app, probe, "queue_held", "k", 20)
            await press("queue_home", "home")
            probe.memory["end"] = memory()
        except Exception as exc:  # noqa: BLE001 - reported, not raised: the parent needs the figures so far
            import traceback

            probe.error = "".join(traceback.format_exception(exc))[-3000:]
        app.exit()

    return script


# ------------------------------------------------------------------------------------------- main


def main() -> None:
    mode, report = sys.argv[1], Path(sys.argv[2])
    probe = Probe(mode)
    profile_to = sys.argv[sys.argv.index("--profile") + 1] if "--profile" in sys.argv else None
    profiler = None
    if profile_to:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    tasks: list[asyncio.Task] = []
    if mode == "floor":
        from textual.app import App
        from textual.widgets import Static

        class Floor(App[None]):
            def compose(self):  # noqa: ANN202
                yield Static(FLOOR_TEXT)

        probe.t["imported"] = time.monotonic()
        app = probed(Floor, probe, ("Static", FLOOR_TEXT), lambda a: a.exit())()
    else:
        cache_path = Path(sys.argv[3])
        manifest = json.loads(Path(sys.argv[4]).read_text())
        from agentdesk.store.cache import Identity
        from agentdesk.tui.app import AgentDesk

        probe.t["imported"] = time.monotonic()
        me = manifest["me"]
        script = interact_script(manifest)

        def after_interactive(app) -> None:  # noqa: ANN001
            if mode == "desk":
                app.exit()
            else:
                tasks.append(asyncio.get_running_loop().create_task(script(app, probe)))

        target = ("#queue", manifest["first_customer"]["name"])
        app = probed(AgentDesk, probe, target, after_interactive)(cache_path, Identity(me["id"], me["name"], tuple(me["team_ids"])), engine=None)
    probe.t["constructed"] = time.monotonic()
    try:
        app.run()
    except Exception as exc:  # noqa: BLE001
        probe.error = repr(exc)
    probe.t["exited"] = time.monotonic()
    probe.memory.setdefault("exit", memory())
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile_to)
    report.write_text(json.dumps(vars(probe)))


if __name__ == "__main__":
    main()
