"""The configuration layer: schema, TOML loader with precise messages, env overrides, example file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from agentdesk import paths
from agentdesk.config import (
    DEFAULT_KEYMAP,
    ConfigError,
    KeyLocator,
    Problem,
    Settings,
    check_file,
    load_settings,
    parse_key_list,
)
from agentdesk.config.models import SECTION_MODELS

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config.example.toml"


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def problems(path: Path | None, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={} if env is None else env)
    lines = str(info.value).splitlines()
    assert lines == [str(p) for p in info.value.problems]
    return lines


# --------------------------------------------------------------------------------------------
# Good files


def test_good_file_is_loaded_with_types_and_keymap_merged(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [desk]
        server_url = "https://desk.example.com/"
        bell_on_assignment = false

        [sync]
        poll_interval = 2     # an int is fine for a float
        page_size = 250

        [keymap]
        "reply.send" = "f2,ctrl+enter"

        [server]
        host = "0.0.0.0"
        port = 9000

        [database]
        url = "postgresql+psycopg://agentdesk@db/agentdesk"

        [identity]
        default_region = "GB"
        """,
    )
    settings = load_settings(path, env={})
    assert settings.desk.server_url == "https://desk.example.com"  # trailing slash dropped
    assert settings.desk.bell_on_assignment is False
    assert settings.desk.theme == "textual-dark"  # untouched keys keep defaults
    assert settings.sync.poll_interval == 2.0 and isinstance(settings.sync.poll_interval, float)
    assert settings.sync.page_size == 250
    assert settings.sync.request_timeout == 10.0
    assert (settings.server.host, settings.server.port) == ("0.0.0.0", 9000)
    assert settings.public_url() == "http://0.0.0.0:9000"
    assert settings.database_url() == "postgresql+psycopg://agentdesk@db/agentdesk"
    assert settings.identity.default_region == "GB"

    bindings = {spec.id: spec for spec in settings.keymap_bindings()}
    assert [spec.id for spec in settings.keymap_bindings()] == [spec.id for spec in DEFAULT_KEYMAP]
    default_send = next(spec for spec in DEFAULT_KEYMAP if spec.id == "reply.send")
    assert bindings["reply.send"].keys == "f2,ctrl+enter"
    assert bindings["reply.send"].action == default_send.action  # only keys change
    for spec in DEFAULT_KEYMAP:
        if spec.id != "reply.send":
            assert bindings[spec.id] == spec


def test_no_file_means_defaults() -> None:
    settings = load_settings(None, env={})
    for section, model in SECTION_MODELS.items():
        if model is not None:
            assert getattr(settings, section) == model(), section
    assert settings.server.port == 8765
    assert settings.keymap == {}
    assert settings.keymap_bindings() == list(DEFAULT_KEYMAP)


def test_resolved_paths_use_the_platform_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    platform_dir = tmp_path / "platform" / "agentdesk"
    monkeypatch.setattr(paths.platformdirs, "user_data_dir", lambda *a, **k: str(platform_dir))
    settings = load_settings(None, env={})
    assert not platform_dir.exists()
    assert settings.database_url() == f"sqlite:///{(platform_dir / 'server.sqlite3').as_posix()}"
    assert platform_dir.is_dir()  # created so SQLite can create the file
    assert settings.data_dir() == platform_dir
    assert settings.public_url() == "http://127.0.0.1:8765"

    own = tmp_path / "own"
    settings = load_settings(write(tmp_path, f'[desk]\ndata_dir = "{own.as_posix()}"\n'), env={})
    assert settings.data_dir() == own and own.is_dir()
    assert paths.data_dir(str(own)) == own


def test_config_file_default_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(paths.platformdirs, "user_config_dir", lambda *a, **k: str(tmp_path / "cfg"))
    assert paths.config_file() == tmp_path / "cfg" / "config.toml"
    assert not (tmp_path / "cfg").exists()  # never created behind the admin's back


# --------------------------------------------------------------------------------------------
# The example file cannot rot


def _uncommented_example() -> str:
    """The example with commented-out settings ("# key = value") switched on."""
    out = []
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        candidate = line[2:] if line.startswith("# ") else None
        if candidate is not None and re.match(r'^("[^"]+"|[A-Za-z0-9_]+) = ', candidate):
            try:
                tomllib.loads(candidate)
            except tomllib.TOMLDecodeError:
                pass
            else:
                line = candidate
        out.append(line)
    return "\n".join(out) + "\n"


def test_example_file_validates_and_equals_the_defaults() -> None:
    assert check_file(EXAMPLE) == []
    assert load_settings(EXAMPLE, env={}) == load_settings(None, env={})


def test_example_file_documents_every_key_with_a_comment() -> None:
    text = _uncommented_example()
    located = KeyLocator(text).lines
    rows = text.splitlines()
    missing = []

    def check(section: tuple[str, ...], model: type | None) -> None:
        name = ".".join(section)
        if section not in located:
            missing.append(f"[{name}]")
            return
        keys = model.model_fields if model is not None else [spec.id for spec in DEFAULT_KEYMAP]
        for key in keys:
            inner = model.model_fields[key].annotation if model is not None else None
            if isinstance(inner, type) and issubclass(inner, BaseModel):  # a sub-table such as [channels.email]
                check((*section, key), inner)
                continue
            line = located.get((*section, key))
            if line is None:
                missing.append(f"[{name}] {key}")
            elif model is not None:
                assert rows[line - 2].startswith("# "), f"[{name}] {key} needs a one-line comment above it"

    for section, model in SECTION_MODELS.items():
        check((section,), model)
    assert not missing, f"config.example.toml does not document: {', '.join(missing)}"


def test_example_file_commented_settings_are_valid_and_keymap_lists_the_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, _uncommented_example())
    settings = load_settings(path, env={})
    assert settings.keymap == {spec.id: spec.keys for spec in DEFAULT_KEYMAP}, "update [keymap] in config.example.toml"
    assert settings.desk.data_dir == "" and settings.database.url == "" and settings.server.public_url == ""


# --------------------------------------------------------------------------------------------
# Each kind of error: file name, exact line, key, plain English


def test_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [desk]
        theme = "textual-dark"

        [sync]
        page_size = 10
        # a comment
        poll_int 5
        """,
    )
    assert problems(path) == [f"{path}:7: TOML syntax error: Expected '=' after a key in a key/value pair (at column 10)"]


def test_unknown_key_gets_a_suggestion(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        # agent desk
        [desk]
        theme = "textual-dark"
        sever_url = "http://x"
        """,
    )
    assert problems(path) == [f'{path}:4: [desk] sever_url: unknown key (did you mean "server_url"?)']


def test_key_in_the_wrong_section_is_pointed_home(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nport = 1\n\n[database]\nserver_url = "x"\n')
    assert problems(path) == [f"{path}:5: [database] server_url: unknown key (it belongs in [desk])"]


def test_unknown_section_gets_a_suggestion(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [desk]
        theme = "textual-dark"

        [sycn]
        poll_interval = 1.0
        """,
    )
    assert problems(path) == [f"{path}:4: [sycn]: unknown section (did you mean [sync]?)"]


def test_top_level_key_is_pointed_at_its_section(tmp_path: Path) -> None:
    path = write(tmp_path, '# top\nport = 9000\n[server]\nhost = "h"\n')
    assert problems(path) == [f"{path}:2: port: unknown top-level key (did you mean [server] port?)"]


def test_wrong_type(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [server]
        host = "0.0.0.0"
        port = "eighty"
        max_body_bytes = true

        [desk]
        bell_on_assignment = "maybe"
        theme = 7
        """,
    )
    assert problems(path) == [
        f"{path}:3: [server] port: expected an integer, got 'eighty'",
        f"{path}:4: [server] max_body_bytes: expected an integer, got true",
        f"{path}:7: [desk] bell_on_assignment: expected true or false, got 'maybe'",
        f"{path}:8: [desk] theme: expected a string, got 7",
    ]


def test_section_that_is_not_a_table(tmp_path: Path) -> None:
    path = write(tmp_path, 'sync = 5\n')
    assert problems(path) == [f"{path}:1: [sync]: expected a table ([sync] section), got 5"]


def test_out_of_range(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [sync]
        page_size = 0
        request_timeout = 3
        poll_interval = -3

        [server]
        port = 70000
        """,
    )
    assert problems(path) == [
        f"{path}:2: [sync] page_size: expected an integer from 1 to 10000, got 0",
        f"{path}:4: [sync] poll_interval: expected a number greater than 0, got -3",
        f"{path}:7: [server] port: expected an integer from 0 to 65535, got 70000",
    ]


def test_bad_values_with_their_own_rules(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [desk]
        server_url = "localhost:8765"
        [identity]
        default_region = "us"
        [database]
        url = "server.sqlite3"
        """,
    )
    lines = problems(path)
    assert lines[0].startswith(f"{path}:2: [desk] server_url: expected an http:// or https:// URL")
    assert lines[0].endswith("got 'localhost:8765'")
    assert lines[1] == (
        f"{path}:4: [identity] default_region: expected a two-letter upper-case ISO 3166 country code "
        "like \"US\", got 'us' (did you mean \"US\"?)"
    )
    assert lines[2].startswith(f"{path}:6: [database] url: expected a database URL")
    assert len(lines) == 3


def test_bad_keymap_id(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [keymap]
        "reply.send" = "ctrl+s"
        "reply.sned" = "f2"
        """,
    )
    assert problems(path) == [f'{path}:3: [keymap] "reply.sned": unknown binding id (did you mean "reply.send"?)']


def test_unquoted_dotted_keymap_id_is_explained(tmp_path: Path) -> None:
    path = write(tmp_path, '[keymap]\nreply.send = "f2"\n')
    assert problems(path) == [f'{path}:2: [keymap] reply: binding ids contain a dot, so quote them: "reply.send" = "…"']


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ("ctrl+entr", 'unknown key "entr" in "ctrl+entr" (did you mean "enter"?)'),
        ("f2,esc", 'unknown key "esc" in "esc" in "f2,esc" (did you mean "escape"?)'),
        ("Ctrl+S", 'key names are lower-case, got "Ctrl+S" (did you mean "ctrl+s"?)'),
        ("ctrl+s, f2", 'key names have no spaces, got " f2" in "ctrl+s, f2" (write "space" for the space bar)'),
        ("", 'expected comma-separated key names like "ctrl+s,f2", got ""'),
        ("ctrl+s,", 'empty key name in "ctrl+s,"; separate keys with single commas, like "ctrl+s,f2"'),
        ("shift+ctrl+up", 'modifiers go in the order alt+ctrl+meta+shift+super, got "shift+ctrl+up" (write "ctrl+shift+up")'),
        ("cmd+s", 'unknown modifier "cmd" in "cmd+s" (did you mean "super"?); modifiers are alt, ctrl, meta, shift, super'),
        ("ctrl+/", 'with a modifier, name the character: write "ctrl+slash", got "ctrl+/"'),
        ("ctrl", '"ctrl" is only modifiers; add a key, like "ctrl+s"'),
        ("+", 'write "plus" for the + key, got "+"'),
    ],
)
def test_bad_key_names(tmp_path: Path, keys: str, expected: str) -> None:
    path = write(tmp_path, f'# keys\n\n[keymap]\n"reply.focus" = "r"\n"reply.send" = "{keys}"\n')
    assert problems(path) == [f'{path}:5: [keymap] "reply.send": {expected}']


@pytest.mark.parametrize(
    "keys",
    ["ctrl+s,ctrl+enter", "f24", "G", "?", "question_mark", "ctrl+slash", "alt+ctrl+shift+pagedown", "space", "super+1"],
)
def test_good_key_names(keys: str) -> None:
    assert parse_key_list(keys)
    assert Settings(keymap={"reply.send": keys}).keymap["reply.send"] == keys


def test_every_problem_is_reported_at_once_in_line_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [server]
        port = -1
        [desk]
        sever_url = "http://x"
        [keymap]
        "nope" = "x"
        """,
    )
    lines = problems(path)
    assert [line.split(":")[1] for line in lines] == ["2", "4", "6"]


def test_long_values_are_truncated(tmp_path: Path) -> None:
    path = write(tmp_path, f'[desk]\ntheme = {list(range(100))}\n')
    (line,) = problems(path)
    got = line.split(", got ", 1)[1]
    assert len(got) == 60 and got.endswith("...")


# --------------------------------------------------------------------------------------------
# File-level failures


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    assert problems(path) == [f"{path}: file not found"]
    assert check_file(path) == [f"{path}: file not found"]


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'[desk]\ntheme = "caf\xe9"\n')
    assert problems(path) == [f"{path}:2: file is not UTF-8 (byte 0xe9); save it as UTF-8"]


def test_directory_instead_of_file(tmp_path: Path) -> None:
    assert problems(tmp_path) == [f"{tmp_path}: is a directory, not a file"]


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # chmod 0 does not stop root (CI runs as root), so the refusal is simulated at the read itself.
    path = write(tmp_path, "[desk]\n")

    def refuse(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    assert problems(path) == [f"{path}: cannot read file (permission denied)"]


def test_check_file_ok_and_bad(tmp_path: Path) -> None:
    good = write(tmp_path, "[server]\nport = 1\n", "good.toml")
    bad = write(tmp_path, "[server]\nport = -1\n", "bad.toml")
    assert check_file(good) == []
    assert check_file(bad) == [f"{bad}:2: [server] port: expected an integer from 0 to 65535, got -1"]


def test_check_file_ignores_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTDESK_SERVER__PORT", "abc")
    assert check_file(write(tmp_path, "[server]\nport = 1\n")) == []


# --------------------------------------------------------------------------------------------
# Environment overrides


def test_env_beats_file_and_file_beats_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nhost = "10.0.0.1"\nport = 1234\n[database]\nurl = "sqlite:///file.db"\n')
    settings = load_settings(
        path, env={"AGENTDESK_SERVER__PORT": "9000", "agentdesk_database__url": "sqlite:///env.db", "HOME": "/x"}
    )
    assert settings.server.port == 9000  # env
    assert settings.server.host == "10.0.0.1"  # file, same section
    assert settings.database.url == "sqlite:///env.db"  # env names are case-insensitive
    assert settings.server.max_body_bytes == 1_048_576  # default
    assert load_settings(path, env={}).server.port == 1234


def test_env_override_hides_a_bad_file_value(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = -5\n")
    assert load_settings(path, env={"AGENTDESK_SERVER__PORT": "80"}).server.port == 80


def test_env_bad_value_names_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 1234\n")
    assert problems(path, {"AGENTDESK_SERVER__PORT": "abc"}) == ["AGENTDESK_SERVER__PORT: expected an integer, got 'abc'"]
    assert problems(None, {"AGENTDESK_SYNC__POLL_INTERVAL": "-1"}) == [
        "AGENTDESK_SYNC__POLL_INTERVAL: expected a number greater than 0, got '-1'"
    ]


def test_env_unknown_setting_and_bad_json(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = -1\n")
    assert problems(path, {"AGENTDESK_SERVER__PROT": "1", "AGENTDESK_DESK": "{oops"}) == [
        "AGENTDESK_DESK: expected a JSON object, got '{oops'",
        f"{path}:2: [server] port: expected an integer from 0 to 65535, got -1",
        "AGENTDESK_SERVER__PROT: unknown setting (did you mean AGENTDESK_SERVER__PORT?)",
    ]


def test_env_whole_section_as_json() -> None:
    settings = load_settings(None, env={"AGENTDESK_KEYMAP": '{"reply.send": "f2"}'})
    assert settings.keymap == {"reply.send": "f2"}
    assert problems(None, {"AGENTDESK_SYNC": '{"page_size": 0}'}) == [
        "AGENTDESK_SYNC: page_size: expected an integer from 1 to 10000, got 0"
    ]


def test_unrelated_agentdesk_variables_are_ignored() -> None:
    assert load_settings(None, env={"AGENTDESK_TOKEN": "secret", "AGENTDESK_CONFIG": "x"}).server.port == 8765


def test_settings_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AGENTDESK_SYNC__PAGE_SIZE", "42")
    assert Settings().sync.page_size == 42
    assert load_settings(write(tmp_path, "[sync]\npage_size = 7\n")).sync.page_size == 42
    assert Settings(sync={"page_size": 3}).sync.page_size == 3  # explicit keyword arguments win


# --------------------------------------------------------------------------------------------
# Only ConfigError escapes; messages; the locator; light imports


def test_only_config_error_escapes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agentdesk.config import loader

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(loader, "KeyLocator", boom)
    path = write(tmp_path, "[server]\nport = -1\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert str(info.value) == f"{path}: could not be loaded (RuntimeError: kaboom)"


def test_problem_formatting() -> None:
    assert str(Problem("c.toml", "file not found")) == "c.toml: file not found"
    assert str(Problem("c.toml", "bad", 3, ("a", "b"), "[a] b")) == "c.toml:3: [a] b: bad"
    assert str(ConfigError([Problem("a", "x"), Problem("b", "y")])) == "a: x\nb: y"


def test_locator_understands_toml_layout() -> None:
    text = textwrap.dedent(
        '''\
        top = 1
        sync.page_size = 2          # dotted key at top level
        [ "desk" ]                  # quoted header
        theme = """
        not_a_key = 3
        [not_a_header]
        """
        list = [
          "x = 1",  # a comment ]
          "y",
        ]
        'literal.key' = 'a#b'
        server_url = "h"
        [[arr]]
        a = 1
        [[arr]]
        a = 2
        [keymap]
        "reply.send" = "f2"
        '''
    )
    tomllib.loads(text)  # the fixture must be valid TOML
    locator = KeyLocator(text)
    assert locator.line_for(("top",)) == 1
    assert locator.line_for(("sync", "page_size")) == 2
    assert locator.line_for(("sync",)) == 2
    assert locator.line_for(("desk",)) == 3
    assert locator.line_for(("desk", "theme")) == 4
    assert locator.line_for(("desk", "not_a_key")) == 3  # inside a string: falls back to the header
    assert ("not_a_header",) not in locator.lines
    assert locator.line_for(("desk", "list")) == 8
    assert locator.line_for(("desk", "literal.key")) == 12
    assert locator.line_for(("desk", "server_url")) == 13
    assert locator.line_for(("arr", 1, "a")) == 17
    assert locator.line_for(("keymap", "reply.send")) == 19
    assert locator.line_for(("keymap", "nope")) == 18
    assert locator.line_for(("nothing",)) is None


def test_config_package_imports_stay_light() -> None:
    code = (
        "import sys, agentdesk.config, agentdesk.paths\n"
        "heavy = [m for m in ('textual', 'sqlalchemy', 'sqlmodel', 'fastapi', 'httpx') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == ""
