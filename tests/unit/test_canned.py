"""Canned responses: the [[canned]] config entries and their sandboxed rendering."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from agentdesk.config import Settings
from agentdesk.config.loader import ConfigError, load_settings
from agentdesk.config.models import CannedDecl
from agentdesk.domain.canned import (
    CannedError,
    available,
    matching,
    render,
    token_before,
    variables,
)

VALUES = variables(
    customer_name="María López", email="maria@customer.test", phone="+14155550100",
    subject="Order 9001", channel="email", conversation_id="c1", agent_name="Alice Ward",
)


def canned(text: str, name: str = "t", channels: list[str] | None = None) -> CannedDecl:
    # Not validated: a template the config would refuse must still fail cleanly at render time.
    return CannedDecl.model_construct(name=name, text=text, title="", channels=channels or [])


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# --- rendering -------------------------------------------------------------------------------------


def test_every_variable_renders():
    text = ("{{ customer.name }}|{{ customer.first_name }}|{{ customer.email }}|{{ customer.phone }}|"
            "{{ conversation.subject }}|{{ conversation.channel }}|{{ conversation.id }}|{{ agent.name }}")
    assert render(canned(text), VALUES) == (
        "María López|María|maria@customer.test|+14155550100|Order 9001|email|c1|Alice Ward"
    )


def test_a_first_name_on_file_wins_and_missing_values_are_empty():
    values = variables(customer_name="Dr Ken Obi", first_name="Ken")
    assert render(canned("Hi {{ customer.first_name }}{{ customer.phone }}!"), values) == "Hi Ken!"


def test_an_unknown_variable_is_a_clear_error():
    with pytest.raises(CannedError) as caught:
        render(canned("Hi {{ customer.nickname }}", name="hello"), VALUES)
    assert "Canned response 'hello' uses an unknown variable" in str(caught.value)
    assert "nickname" in str(caught.value) and "customer.first_name" in str(caught.value)
    with pytest.raises(CannedError, match="unknown variable"):
        render(canned("{{ order_id }}"), VALUES)


def test_a_template_error_is_a_clear_error():
    with pytest.raises(CannedError, match=r"'bad' has a template error on line 2"):
        render(canned("Hi\n{{ customer.name ", name="bad"), VALUES)


def test_the_sandbox_refuses_python_internals():
    with pytest.raises(CannedError, match="may not|unknown variable|could not"):
        render(canned("{{ customer.__class__.__mro__[1].__subclasses__() }}"), VALUES)


def test_outside_values_are_cleaned_and_never_escaped_as_html():
    values = variables(customer_name="Eve\x1b[2J <b>&", subject="[@click=app.quit]x[/]")
    out = render(canned("{{ customer.name }} {{ conversation.subject }}"), values)
    assert out == "Eve␛[2J <b>& [@click=app.quit]x[/]"
    assert "\x1b" not in out


def test_the_result_is_cleaned_too():
    assert render(canned("a{{ '\\x07' }}b"), VALUES) == "a␇b"


# --- picking ---------------------------------------------------------------------------------------


def test_entries_are_offered_on_their_channels():
    entries = [canned("x", "any"), canned("x", "sms-only", ["sms"])]
    assert [c.name for c in available(entries, "email")] == ["any"]
    assert [c.name for c in available(entries, "sms")] == ["any", "sms-only"]


def test_the_token_being_typed():
    assert token_before("thanks ::refu") == "refu"
    assert token_before("::") == ""
    assert token_before("::refund") == "refund"
    assert token_before("a::refund") is None  # inside a word (a URL, C++ code) it is text
    assert token_before("::refund now") is None


def test_matching_prefers_an_exact_name():
    entries = [canned("x", "refund"), canned("x", "refund-late"), canned("x", "hello")]
    assert [c.name for c in matching(entries, "refund")] == ["refund"]
    assert [c.name for c in matching(entries, "REF")] == ["refund", "refund-late"]
    assert matching(entries, "zzz") == []


# --- configuration ---------------------------------------------------------------------------------


def test_canned_entries_load_from_the_client_toml(tmp_path):
    path = write(tmp_path, '''
        [[canned]]
        name = "refund"
        title = "Refund issued"
        channels = ["email", "sms"]
        text = """Hi {{ customer.first_name }},
        done."""

        [[canned]]
        name = "hello"
        text = "Hello!"
    ''')
    settings = load_settings(path, env={})
    assert [(c.name, c.title, c.channels) for c in settings.canned] == [("refund", "Refund issued", ["email", "sms"]), ("hello", "", [])]
    assert settings.canned[0].text == "Hi {{ customer.first_name }},\ndone."
    assert Settings().canned == []


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ('name = "x"\ntext = "{{ customer.name "', "template error on line 1"),
        ('name = "two words"\ntext = "x"', "typed as ::name"),
        ('name = "x"\ntext = "  "', "non-empty"),
        ('name = "x"\ntext = "x"\nchannels = ["fax"]', "expected one of email"),
        ('name = "x"\ntext = "x"\nshortcut = "y"', "unknown key"),
    ],
)
def test_bad_canned_entries_are_reported_with_their_line(tmp_path, entry, words):
    path = write(tmp_path, "[[canned]]\n" + entry + "\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    assert words in str(caught.value)
    assert "canned" in str(caught.value)


def test_canned_names_are_unique(tmp_path):
    path = write(tmp_path, '[[canned]]\nname = "Hi"\ntext = "a"\n[[canned]]\nname = "hi"\ntext = "b"\n')
    with pytest.raises(ConfigError, match="named 'hi' like number 1"):
        load_settings(path, env={})
