"""HTML mail bodies made into readable plain text (for HTML-only messages).

Paragraphs and headings become blank-line separated blocks, <br> a line break, list items "- " lines,
blockquotes "> " lines (so quoted history is recognised like a plain-text reply's), links "text (url)".
Scripts, styles, the <head> and comments disappear; nothing of the markup survives, and the result is
stored and shown as untrusted plain text like any other body (DESIGN §6).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_HIDDEN = {"script", "style", "head", "title", "template", "noscript", "svg", "object", "iframe"}
_PARAGRAPH = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "dl", "pre", "hr", "blockquote", "address", "figure"}
_LINE = {"div", "tr", "li", "dt", "dd", "section", "article", "header", "footer", "main", "nav", "aside", "center", "form", "caption"}
_VOID = {"br", "hr", "img", "input", "meta", "link", "area", "base", "col", "embed", "source", "track", "wbr"}
_MAX_OPEN_LINKS = 8
_SHOWN_SCHEMES = ("http://", "https://", "mailto:", "ftp://", "tel:")
_SPACES = re.compile(r"[ \t\r\n\f\v\u00a0]+")  # collapsed outside <pre>; a no-break space counts too


class _Converter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = [""]
        self.breaks = 0  # line breaks owed before the next text (2 = a blank line)
        self.started = False  # any text yet (breaks before the first text are dropped)
        self.hidden = 0  # depth inside <script>, <style>, …
        self.quote = 0  # depth inside <blockquote>
        self.pre = 0
        self.links: list[tuple[str | None, int]] = []  # (href, pieces in `self.anchor` when the link opened)
        self.anchor: list[str] = []  # the text pieces of the open links

    # -- structure

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":  # </head> is optional: the body ends a head left open
            self.hidden = 0
        if tag in _HIDDEN:
            if tag not in _VOID:
                self.hidden += 1
            return
        if self.hidden:
            return
        if tag == "br":
            self._break(1, force=True)
        elif tag in _PARAGRAPH:
            self._break(2)
        elif tag in _LINE:
            self._break(1)
        if tag == "blockquote":
            self.quote += 1
        elif tag == "pre":
            self.pre += 1
        elif tag == "li":
            self._text("- ")
        elif tag in ("td", "th"):
            self._text(" ")
        elif tag == "hr":
            self._text("———")
            self._break(2)
        elif tag == "a" and len(self.links) < _MAX_OPEN_LINKS:  # unclosed links nest: bounded, so work stays linear
            self.links.append((dict(attrs).get("href"), len(self.anchor)))
        elif tag == "img":
            alt = (dict(attrs).get("alt") or "").strip()
            if alt:
                self._text(f"[{alt}]")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self.hidden = max(0, self.hidden - 1)
            return
        if self.hidden:
            return
        if tag == "a" and self.links:
            self._close_link()
        elif tag == "blockquote":
            self._break(2)
            self.quote = max(0, self.quote - 1)
        elif tag == "pre":
            self.pre = max(0, self.pre - 1)
            self._break(2)
        elif tag in _PARAGRAPH:
            self._break(2)
        elif tag in _LINE:
            self._break(1)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:  # <script/> opens nothing
            return
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self._text(data)

    # -- output

    def _break(self, count: int, *, force: bool = False) -> None:
        """Owe `count` line breaks; <br> always counts, blocks only separate text that exists."""
        self.breaks = min(self.breaks + 1, 2) if force else max(self.breaks, count)

    def _text(self, data: str) -> None:
        if not self.pre:
            data = _SPACES.sub(" ", data)
            if not self.lines[-1].strip(" >") or self.breaks:
                data = data.lstrip(" ")
        if not data:
            return
        if self.breaks and self.started:
            for _ in range(self.breaks):
                self.lines.append("")
        self.breaks = 0
        self.started = self.started or bool(data.strip())
        for index, part in enumerate(data.split("\n")):
            if index:
                self.lines.append("")
            if not self.lines[-1]:
                self.lines[-1] = "> " * self.quote
            self.lines[-1] += part
        if self.links:
            self.anchor.append(data)

    def _close_link(self) -> None:
        href, start = self.links.pop()
        text = "".join(self.anchor[start:]).strip()
        if not self.links:
            self.anchor.clear()
        href = (href or "").strip()
        if not href.lower().startswith(_SHOWN_SCHEMES):  # javascript:, data:, relative links say nothing useful
            return
        bare = href[7:] if href.lower().startswith("mailto:") else href
        if text in (href, bare) or text.rstrip("/") == href.rstrip("/"):
            return
        self._text(f" ({href})" if text else href)

    def result(self) -> str:
        lines = [line.rstrip() for line in self.lines]
        text = "\n".join(lines)
        text = re.sub(r"\n(?:[ >]*\n){2,}", "\n\n", text)  # at most one blank line in a row
        return text.strip("\n")


def html_to_text(html: str) -> str:
    """Readable plain text of an HTML body; never raises on malformed markup."""
    converter = _Converter()
    try:
        converter.feed(html)
        converter.close()
    except Exception:  # html.parser is lenient; this is a last guard so one odd body cannot drop a message
        pass
    return converter.result()
