"""The desk's footer: Textual's, rebuilt only when the keys it shows change."""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer


def shown_keys(screen: Screen) -> tuple:
    """What the footer shows for `screen` now: each shown binding's key, action, text and whether it applies (and
    the command palette's key, shown apart)."""
    palette = screen.app.COMMAND_PALETTE_BINDING
    return tuple(
        (binding.key, binding.action, binding.description, binding.group, enabled, tooltip)
        for key, (_, binding, enabled, tooltip) in screen.active_bindings.items()
        if binding.show or key == palette
    )


class DeskFooter(Footer):
    """Textual's Footer rebuilds all its keys whenever the bindings may have changed — on every focus change (enter,
    escape, tab): three relayouts of the screen, ~50 ms. Moving focus between the queue, the timeline and the
    composer mostly leaves the same keys on show: then nothing is rebuilt."""

    _shown: tuple | None = None  # the keys of the last rebuild

    def bindings_changed(self, screen: Screen) -> None:
        if not (self.is_attached and screen is self.screen and screen.app.app_focus):
            super().bindings_changed(screen)  # (Textual's: marks the bindings ready, rebuilds nothing)
            return
        shown = shown_keys(screen)
        if shown != self._shown:
            self._shown = shown
            super().bindings_changed(screen)
