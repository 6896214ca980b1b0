"""The command palette's desk commands: the actions that apply right now, and transfer targets.

Titles can hold agent and team names, so they are shown as plain `Content`, never parsed as markup
(Textual's own SystemCommand titles are); help texts are the desk's own words only.
"""

from __future__ import annotations

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content


class DeskCommands(Provider):
    async def discover(self) -> Hits:
        for title, help_text, callback in self.app.palette_commands(targets=False):  # type: ignore[attr-defined]
            yield DiscoveryHit(Content(title), callback, text=title, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self.app.palette_commands(targets=True):  # type: ignore[attr-defined]
            if (score := matcher.match(title)) > 0:
                yield Hit(score, Content(title), callback, text=title, help=help_text)
