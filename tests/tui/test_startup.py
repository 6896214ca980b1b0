"""Start-up: the first frame shows the queue and its first conversation; the composer and footer come right after
it (AgentDesk.finish_startup), and a key pressed in between is held until then, not lost or acted on too soon."""

from __future__ import annotations

import asyncio

from fixed_desk import fixed_desk, fixed_environment
from textual import events

from agentdesk.tui.app import AgentDesk


def screen_text(app) -> str:
    return "\n".join("".join(s.text for s in strip) for strip in app.screen._compositor.render_strips())


def held_desk(tmp_path, release: asyncio.Event) -> AgentDesk:
    """The desk, its start-up finishing only once `release` is set."""
    app = fixed_desk(tmp_path)
    finish = app.finish_startup

    async def held() -> None:
        await release.wait()
        await finish()

    app.finish_startup = held  # what on_mount schedules for after the first frame
    return app


async def until(condition, timeout: float = 10.0) -> bool:
    for _ in range(int(timeout / 0.02)):
        if condition():
            return True
        await asyncio.sleep(0.02)
    return condition()


async def test_a_key_before_the_desk_is_whole_is_acted_on_once_it_is(tmp_path):
    release = asyncio.Event()
    with fixed_environment():
        app = held_desk(tmp_path, release)
        async with app.run_test(size=(160, 45)) as pilot:
            assert await until(lambda: "Zoë White" in screen_text(app)), "the first frame shows the queue"
            assert "charged twice for November" in screen_text(app)  # and the first conversation's timeline
            assert app.open_row.id == "c-zoe-sms" and not app.query("#composer")  # the composer comes after
            queue = app.focused
            app.post_message(events.Key("r", "r"))  # reply: needs the composer
            await asyncio.sleep(0.1)
            assert app.focused is queue and not app.query("#composer")  # held, not acted on yet
            release.set()
            assert await until(lambda: bool(app.query("#composer")))
            await pilot.pause()
            assert await until(lambda: app.focused is app.composer.reply), "the held `r` went to the reply"
            assert app.composer.channel == "sms"  # loaded for the open conversation
