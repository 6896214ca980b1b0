"""Sizes and looks: the desk at 80x24 and on big terminals, the themes a config file may name, and text that stays
readable in the high-contrast and light themes (measured as WCAG contrast on what the screen really shows)."""

from __future__ import annotations

import textwrap

import pytest
from fixed_desk import fixed_desk, fixed_environment, whole
from rich.color import Color
from textual.widgets import Footer, TextArea

from agentdesk.config import ConfigError, load_settings
from agentdesk.config.models import THEME_NAMES
from agentdesk.tui import themes
from agentdesk.tui.widgets.timeline import Timeline

BOX_DRAWING = set(range(0x2500, 0x25A0))  # borders, bars, scrollbars: lines, not words


@pytest.fixture
def desk(tmp_path):
    with fixed_environment():
        yield lambda theme=None: fixed_desk(tmp_path, theme)


def screen_text(app) -> str:
    return "\n".join("".join(s.text for s in strip) for strip in app.screen._compositor.render_strips())


def luminance(rgb) -> float:
    def channel(value: int) -> float:
        value /= 255
        return value / 12.92 if value <= 0.03928 else ((value + 0.055) / 1.055) ** 2.4

    red, green, blue = rgb
    return 0.2126 * channel(red) + 0.7152 * channel(green) + 0.0722 * channel(blue)


def contrast(fg, bg) -> float:
    light, dark = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def least_readable(app, limit: float, region=None) -> list[tuple[float, str]]:
    """Words on screen (or in `region`) whose colour, after Textual's own colour filters, is below `limit` against
    their background."""
    poor = []
    strips = app.screen._compositor.render_strips()
    if region is not None:  # a modal: what is behind it is faded on purpose
        strips = [strip.crop(region.x, region.right) for strip in strips[region.y : region.bottom]]
    for strip in strips:
        for segment in strip:
            words = "".join(ch for ch in segment.text if not ch.isspace() and ord(ch) not in BOX_DRAWING)
            style = segment.style
            if words and style is not None and style.color is not None and style.bgcolor is not None:
                ratio = contrast(style.color.get_truecolor(), style.bgcolor.get_truecolor())
                if ratio < limit:
                    poor.append((round(ratio, 2), words))
    return poor


# --- sizes ------------------------------------------------------------------------------------------


async def test_breakpoint_classes_follow_the_terminal(desk):
    app = desk()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert {"-narrow", "-short"} <= app.screen.classes
        await pilot.resize_terminal(160, 45)
        await pilot.pause()
        assert {"-medium", "-tall"} <= app.screen.classes and "-narrow" not in app.screen.classes
        await pilot.resize_terminal(240, 60)
        await pilot.pause()
        assert "-wide" in app.screen.classes


async def test_80x24_keeps_queue_timeline_composer_and_footer_in_view(desk):
    app = desk()
    async with app.run_test(size=(80, 24)) as pilot:
        await whole(app, pilot)
        queue, conversation = app.query_one("#queue-pane").region, app.query_one("#conversation-pane").region
        timeline, reply = app.query_one(Timeline).region, app.query_one("#composer TextArea", TextArea).region
        assert queue.width <= 32 and conversation.width >= 46  # the conversation gets the room
        assert timeline.height >= 12, "the composer must not eat the timeline"
        assert reply.height >= 3 and reply.bottom <= app.query_one(Footer).region.y
        text = screen_text(app)
        assert "Zoë White" in text and "Grace Anderson" in text  # the queue shows its rows
        assert "Thanks. Any news?" in text  # the newest message of the open conversation
        assert "Quit" in text.splitlines()[-1] and "Reply" in text.splitlines()[-1]  # the footer
        await pilot.press("r")
        assert app.query_one("#composer TextArea", TextArea).region.height >= 4  # room to write once focused


async def test_160x45_has_the_full_composer(desk):
    app = desk()
    async with app.run_test(size=(160, 45)) as pilot:
        await whole(app, pilot)
        assert app.query_one("#composer TextArea", TextArea).region.height >= 6
        assert app.query_one("#queue-pane").region.width >= 50


# --- themes -------------------------------------------------------------------------------------------


def test_the_config_offers_exactly_the_apps_themes(desk):
    assert sorted(THEME_NAMES) == sorted(desk().available_themes)
    assert themes.HIGH_CONTRAST_NAME in THEME_NAMES


def test_an_unknown_theme_is_a_config_error_naming_the_themes(tmp_path):
    path = tmp_path / "desk.toml"
    path.write_text(textwrap.dedent('[desk]\ntheme = "high-contrast"\n'), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    [line] = str(info.value).splitlines()
    assert line.startswith(f"{path}:2: [desk] theme: unknown theme 'high-contrast'")
    assert "textual-dark, textual-light" in line and "agentdesk-high-contrast" in line
    assert load_settings(None, env={"AGENTDESK_DESK__THEME": "agentdesk-high-contrast"}).desk.theme == "agentdesk-high-contrast"


@pytest.mark.parametrize("keys", [(), ("question_mark",)], ids=["main", "help"])
async def test_high_contrast_text_reads_at_4_5_to_1(desk, keys):
    app = desk(themes.HIGH_CONTRAST_NAME)
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause()
        await pilot.press(*keys)
        await pilot.pause()
        assert app.ansi_theme is themes.HIGH_CONTRAST_ANSI
        region = app.screen.children[0].region if keys else None  # the help box
        assert least_readable(app, 4.5, region) == []
        assert "Quit" in screen_text(app)


async def test_switching_away_from_high_contrast_restores_the_dark_palette(desk):
    app = desk(themes.HIGH_CONTRAST_NAME)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert app.ansi_theme is themes.HIGH_CONTRAST_ANSI
        app.theme = "nord"
        await pilot.pause()
        assert app.ansi_theme is not themes.HIGH_CONTRAST_ANSI and app.ansi_theme is app.ansi_theme_dark


@pytest.mark.parametrize("name", ["red", "green", "yellow", "blue", "magenta", "cyan", "bright_red", "bright_green"])
def test_named_colours_read_on_a_light_surface(name):
    rgb = Color.parse(name).get_truecolor(themes.READABLE_LIGHT_ANSI)
    assert contrast(rgb, (0xD8, 0xD8, 0xD8)) >= 4.5  # textual-light's surface


async def test_light_theme_text_is_readable(desk):
    app = desk("textual-light")
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause()
        assert app.ansi_theme is themes.READABLE_LIGHT_ANSI
        # dim text is faded on purpose (Textual blends it halfway to the background), so the bar is lower than AA
        assert least_readable(app, 2.5) == []


# --- live updates ------------------------------------------------------------------------------------------


async def test_a_live_update_leaves_the_composer_and_focus_alone(desk):
    """A sync change (here: a new inbound SMS on the open conversation) repaints the timeline and queue but does
    not reload the composer: the half-written reply, its cursor, the channel and the focus stay."""
    from fixed_desk import at

    app = desk()
    async with app.run_test(size=(120, 40)) as pilot:
        await whole(app, pilot)
        await pilot.press("r")
        reply = app.query_one("#composer TextArea", TextArea)
        reply.insert("Half a reply")
        channel = app.query_one("#composer Select").value
        cursor = reply.cursor_location
        app.cache.db.execute(
            "INSERT INTO interactions (id, conversation_id, customer_id, channel, direction, text, meta, occurred_at)"
            " VALUES ('i-new', 'c-zoe-sms', 'cu-zoe', 'sms', 'inbound', 'One more thing: also the roaming fee.', '{}', ?)",
            (at(minutes=-1),),
        )
        app.refresh_data()
        await pilot.pause()
        assert "One more thing: also the roaming fee." in screen_text(app)
        assert reply.text == "Half a reply" and reply.cursor_location == cursor
        assert app.focused is reply and app.query_one("#composer Select").value == channel
