"""Looks: the desk's own themes, and ANSI colours that stay readable on light backgrounds.

The desk styles text with the terminal's named colours ("green", "red", "yellow", "dim"…, see render.py);
Textual maps them to RGB through an ANSI palette chosen by the theme's darkness. Textual's light palette
(Alabaster) puts yellow and green at under 3:1 on a light surface, so light themes get a darker palette here.
The names a config file may choose are config/models.py DESK_THEMES (kept equal to what the app registers
by tests/tui/test_themes.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.terminal_theme import TerminalTheme
from textual.theme import Theme

if TYPE_CHECKING:
    from textual.app import App

HIGH_CONTRAST_NAME = "agentdesk-high-contrast"

BLACK, WHITE, YELLOW, CYAN = "#000000", "#FFFFFF", "#FFFF00", "#00FFFF"

HIGH_CONTRAST = Theme(
    name=HIGH_CONTRAST_NAME,
    primary=YELLOW,
    secondary=CYAN,
    accent=YELLOW,
    warning=YELLOW,
    error="#FF6060",
    success="#00FF00",
    foreground=WHITE,
    background=BLACK,
    surface=BLACK,
    panel="#202020",
    boost="#1A1A1A",
    dark=True,
    text_alpha=1.0,  # muted text stays white: contrast comes from weight and colour, never from fading
    variables={
        # the cursor (lists, options, tables): black on yellow, bold, whether focused or not
        "block-cursor-background": YELLOW,
        "block-cursor-foreground": BLACK,
        "block-cursor-text-style": "bold",
        "block-cursor-blurred-background": WHITE,
        "block-cursor-blurred-foreground": BLACK,
        "block-cursor-blurred-text-style": "bold",
        "block-hover-background": "#333333",
        "input-cursor-background": YELLOW,
        "input-cursor-foreground": BLACK,
        "input-selection-background": "#0000C0",
        "input-selection-foreground": WHITE,
        "border": YELLOW,
        "border-blurred": WHITE,
        "text-muted": WHITE,
        "foreground-muted": WHITE,
        "footer-background": BLACK,
        "footer-key-foreground": YELLOW,
        "footer-description-foreground": WHITE,
        "scrollbar": WHITE,
        "scrollbar-hover": YELLOW,
        "scrollbar-active": YELLOW,
        "scrollbar-background": "#202020",
        "link-color": CYAN,
    },
)

DESK_THEMES = (HIGH_CONTRAST,)


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16)


# Named colours darkened until each reads at 4.5:1 or better on a #D8D8D8 surface (textual-light's).
READABLE_LIGHT_ANSI = TerminalTheme(
    _rgb("#F7F7F7"),
    _rgb("#000000"),
    [_rgb(c) for c in ("#000000", "#A3261E", "#1E6B00", "#6E5200", "#2A4FA8", "#7A3E9D", "#005E80", "#F7F7F7", "#5A5A5A")],
    [_rgb(c) for c in ("#B3261E", "#1E6B00", "#6E5200", "#2A4FA8", "#8E2F8E", "#005E80", "#F7F7F7")],
)


# On the high-contrast theme's black: pure, bright colours (7:1 or better on black; 4.5:1 or better on its navy
# queue cursor, dimmed text included).
HIGH_CONTRAST_ANSI = TerminalTheme(
    _rgb("#000000"),
    _rgb("#FFFFFF"),
    [_rgb(c) for c in ("#000000", "#FF7070", "#00FF00", "#FFFF00", "#80A0FF", "#FF80FF", "#00FFFF", "#FFFFFF", "#C0C0C0")],
    [_rgb(c) for c in ("#FF9090", "#80FF80", "#FFFF80", "#A0C0FF", "#FFA0FF", "#80FFFF", "#FFFFFF")],
)


def install(app: App) -> None:
    """Register the desk's themes and the readable light palette; call before setting `app.theme`."""
    for theme in DESK_THEMES:
        app.register_theme(theme)
    # set_reactive: the app is not running yet; setting app.theme next refreshes the colour filter with it
    app.set_reactive(type(app).ansi_theme_light, READABLE_LIGHT_ANSI)


def follow_theme(app: App) -> None:
    """Once the app runs: named colours from the high-contrast palette while that theme is on (Textual picks one
    palette for every dark theme, so it is swapped as the theme changes)."""
    dark_palette = app.ansi_theme_dark

    def choose(_theme: object = None) -> None:
        wanted = HIGH_CONTRAST_ANSI if app.theme == HIGH_CONTRAST_NAME else dark_palette
        if app.ansi_theme_dark is not wanted:
            app.ansi_theme_dark = wanted  # Textual recolours everything on the next refresh

    choose()
    app.theme_changed_signal.subscribe(app, choose, immediate=True)
