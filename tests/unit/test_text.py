from agentdesk.domain.text import clean, clean_line, safe_text

HOSTILE = [
    "\x1b]52;c;cm0gLXJmIH4=\x07",
    "\x1b[2J",
    "\x9b2J",
    "\x1b]8;;http://evil.example\x1b\\click me\x1b]8;;\x1b\\",
]


def test_clean_leaves_no_control_bytes():
    for payload in HOSTILE:
        out = clean(payload)
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in out), repr(out)


def test_escape_is_shown_as_visible_picture():
    assert clean("\x1b[2J") == "\u241b[2J"
    assert clean("a\x9bb") == "a<9B>b"
    assert clean("bell\x07") == "bell\u2407"


def test_newlines_and_tabs_survive_but_bidi_is_dropped():
    assert clean("line1\nline2\tend") == "line1\nline2\tend"
    assert clean("abc\u202edef\u2066x\u200b") == "abcdefx"


def test_markup_is_kept_literally():
    text = safe_text("[@click=app.quit]x[/]")
    assert text.plain == "[@click=app.quit]x[/]"
    assert not text.spans


def test_clean_line_folds_and_limits():
    assert clean_line("  hello\n\n  world  ") == "hello world"
    assert clean_line("abcdefghij", limit=5) == "abcd…"
    assert clean(None) == ""


def test_reply_channels_answer_a_call_by_sms_and_a_chat_only_in_its_chat():
    from agentdesk.tui.choices import reply_channels

    assert reply_channels(["email", "sms", "whatsapp", "chat", "phone"], "email") == ["email", "sms", "whatsapp"]
    assert reply_channels(["email", "chat"], "chat") == ["email", "chat"]
    assert reply_channels([], "phone") == ["sms"]
