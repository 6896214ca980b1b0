"""Load and validate the TOML config, turning every failure into one clear line per problem.

    config.toml:12: [sync] poll_interval: expected a number greater than 0, got -3
    config.toml:4: [desk] sever_url: unknown key (did you mean "server_url"?)
    AGENTDESK_SERVER__PORT: expected an integer from 0 to 65535, got 'abc'

``load_settings`` never raises anything but ``ConfigError``; nothing here prints a traceback.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel, ValidationError
from pydantic_settings import SettingsError

from agentdesk.config import models
from agentdesk.config.models import ENV_NESTED_DELIMITER, ENV_PREFIX, SECTION_MODELS, MappingEnvSource, Settings, show_value

PathPart = str | int


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the configuration.

    ``source`` is the file as given, or the environment variable's name; ``line`` is 1-based
    (None when unknown); ``path`` is the key path, e.g. ("sync", "poll_interval").
    """

    source: str
    message: str
    line: int | None = None
    path: tuple[PathPart, ...] = ()
    where: str = ""  # rendered path: '[sync] poll_interval', '[sevrer]', '' for whole-file problems

    def __str__(self) -> str:
        head = self.source if self.line is None else f"{self.source}:{self.line}"
        return f"{head}: {self.where}: {self.message}" if self.where else f"{head}: {self.message}"


class ConfigError(Exception):
    """The configuration is unusable; ``problems`` says why, ``str()`` gives one line per problem."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)


# --------------------------------------------------------------------------------------------
# Public API


def load_settings(path: Path | str | None, *, env: Mapping[str, str] | None = None) -> Settings:
    """Read ``path`` (TOML; None = no file, defaults only), apply ``AGENTDESK_*`` variables, validate.

    ``env`` replaces ``os.environ`` as the source of overrides (pass ``{}`` to ignore the
    environment). Raises ``ConfigError`` listing every problem found; never anything else.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    try:
        return _load(path, environ)
    except ConfigError:
        raise
    except Exception as exc:  # a bug here must still not become a traceback on the agent's screen
        source = str(path) if path is not None else "configuration"
        raise ConfigError([Problem(source, f"could not be loaded ({type(exc).__name__}: {exc})")]) from exc


def check_file(path: Path | str) -> list[str]:
    """Problems with one config file as printable lines (empty list = OK). Ignores the environment."""
    try:
        load_settings(path, env={})
    except ConfigError as exc:
        return [str(problem) for problem in exc.problems]
    return []


# --------------------------------------------------------------------------------------------
# Reading and parsing


_TOML_POS_RE = re.compile(r"^(?P<msg>.*?)\s*\(at line (?P<line>\d+), column (?P<col>\d+)\)$", re.S)


def _read(path: Path, label: str) -> tuple[dict[str, Any], str]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError([Problem(label, "file not found")]) from None
    except IsADirectoryError:
        raise ConfigError([Problem(label, "is a directory, not a file")]) from None
    except PermissionError:
        raise ConfigError([Problem(label, "cannot read file (permission denied)")]) from None
    except OSError as exc:
        raise ConfigError([Problem(label, f"cannot read file ({exc.strerror or exc})")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        byte = raw[exc.start : exc.start + 1].hex()
        raise ConfigError([Problem(label, f"file is not UTF-8 (byte 0x{byte}); save it as UTF-8", line)]) from None
    text = text.removeprefix("\ufeff")  # tolerate a byte-order mark from Windows editors
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_syntax_problem(exc, label)]) from None
    return data, text


def _syntax_problem(exc: tomllib.TOMLDecodeError, label: str) -> Problem:
    message = str(exc)
    line = getattr(exc, "lineno", None)  # Python 3.14+
    col = getattr(exc, "colno", None)
    if (match := _TOML_POS_RE.match(message)) is not None:
        message = match["msg"]
        line, col = int(match["line"]), int(match["col"])
    elif hasattr(exc, "msg") and line is not None:
        message = exc.msg
    if col is not None:
        message = f"{message} (at column {col})"
    return Problem(label, f"TOML syntax error: {message}", line)


def _load(path: Path | str | None, environ: Mapping[str, str]) -> Settings:
    label = str(path) if path is not None else ""
    data: dict[str, Any] = {}
    text = ""
    if path is not None:
        data, text = _read(Path(path), label)

    problems: list[Problem] = []
    while True:
        try:
            env_data = MappingEnvSource(Settings, environ)()
            break
        except SettingsError as exc:
            # A section variable that is not JSON: report it, drop it, and carry on with the rest.
            problem = _env_parse_problem(exc, environ)
            problems.append(problem)
            if problem.source not in environ:
                environ, env_data = {}, {}
                break
            environ = {name: value for name, value in environ.items() if name != problem.source}

    file_token = models._FILE_DATA.set(data)
    env_token = models._ENVIRON.set(environ)
    try:
        return Settings() if not problems else _validate_only(problems)
    except ValidationError as exc:
        locator = KeyLocator(text)
        found = [_problem(error, data, env_data, environ, label, locator) for error in exc.errors()]
        # File problems in line order, then the environment's; drop repeats (one bad key can fail twice).
        found.sort(key=lambda p: (p.source != label, p.line or 0))
        for problem in found:
            if problem not in problems:
                problems.append(problem)
        raise ConfigError(problems) from None
    finally:
        models._ENVIRON.reset(env_token)
        models._FILE_DATA.reset(file_token)


def _validate_only(problems: list[Problem]) -> Settings:
    Settings()  # raises ValidationError for the file's problems, if any
    raise ConfigError(problems)


def _env_parse_problem(exc: SettingsError, environ: Mapping[str, str]) -> Problem:
    match = re.search(r'field "([^"]+)"', str(exc))
    name = match[1] if match else ""
    var = _find_env_var(environ, (name,)) if name else None
    value = environ.get(var) if var else None
    if var is None:
        return Problem("environment", f"cannot parse {ENV_PREFIX}* variables ({exc})")
    return Problem(var, f"expected a JSON object, got {show_value(value)}")


# --------------------------------------------------------------------------------------------
# Turning pydantic errors into plain English


def _problem(
    error: Mapping[str, Any],
    data: Mapping[str, Any],
    env_data: Mapping[str, Any],
    environ: Mapping[str, str],
    label: str,
    locator: KeyLocator,
) -> Problem:
    loc = tuple(error["loc"])
    is_key = bool(loc) and loc[-1] == "[key]"
    path = tuple(part for part in loc if part != "[key]")
    # The environment overrides the file, so a value present in both came from the environment,
    # unless the error is about a whole table both contributed to: blame the file then.
    from_env = bool(path) and _has_path(env_data, path)
    if from_env and _has_path(data, path) and isinstance(_get_path(env_data, path), Mapping):
        from_env = False
    if from_env:
        var = _find_env_var(environ, path) or ENV_PREFIX + ENV_NESTED_DELIMITER.join(map(str, path)).upper()
        depth = len(var[len(ENV_PREFIX) :].split(ENV_NESTED_DELIMITER))
        rest = path[depth:]
        if not rest and var in environ and not is_key:
            error = {**error, "input": environ[var]}  # show what was typed, not what JSON made of it
        message = _message(error, path, env=True)
        return Problem(var, message, None, path, _render_path(rest, data, as_section=False) if rest else "")
    message = _message(error, path, env=False)
    if path[:1] == ("keymap",) and len(path) == 2 and isinstance(_get_path(data, path) if _has_path(data, path) else None, dict):
        inner = next(iter(_get_path(data, path)), "…")
        message = f'binding ids contain a dot, so quote them: "{path[1]}.{inner}" = "…"'
    line = locator.line_for(path) if label else None
    source = label or "configuration"
    return Problem(source, message, line, path, _render_path(path, data))


def _message(error: Mapping[str, Any], path: tuple[PathPart, ...], *, env: bool) -> str:
    kind = error["type"]
    value = error.get("input")
    got = f", got {show_value(value)}"
    ctx = error.get("ctx") or {}

    if kind == "extra_forbidden":
        return _unknown_key_message(path, value, env=env)
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    if kind == "missing":
        return "missing required key"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return "expected an integer" + got
    if kind in ("float_type", "float_parsing"):
        return "expected a number" + got
    if kind == "finite_number":
        return "expected a finite number" + got
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return "expected " + _expected_number(path, integer=isinstance(value, int)) + got
    if kind in ("bool_type", "bool_parsing"):
        return "expected true or false" + got
    if kind in ("string_type", "string_unicode"):
        return "expected a string" + (" of comma-separated key names" if path[:1] == ("keymap",) else "") + got
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        what = "a JSON object" if env else "a table"
        if not env and len(path) == 1:
            what = f"a table ([{path[0]}] section)"
        return f"expected {what}{got}"
    if kind == "string_too_short":
        return "expected a non-empty string" + got
    message = str(error.get("msg", "invalid value"))
    message = message[:1].lower() + message[1:]
    return f"{message}{got}"


def _unknown_key_message(path: tuple[PathPart, ...], value: Any, *, env: bool) -> str:
    name = str(path[-1])
    parent = path[:-1]
    if env:
        candidates = _field_names(parent)
        match = difflib.get_close_matches(name, candidates, n=1)
        hint = f" (did you mean {ENV_PREFIX}{ENV_NESTED_DELIMITER.join([*map(str, parent), match[0]]).upper()}?)" if match else ""
        return f"unknown setting{hint}"
    if not parent:
        if isinstance(value, dict):
            match = difflib.get_close_matches(name, list(SECTION_MODELS), n=1)
            hint = f" (did you mean [{match[0]}]?)" if match else f"; sections are {', '.join(f'[{s}]' for s in SECTION_MODELS)}"
            return f"unknown section{hint}"
        # A key outside any section: maybe it belongs in one.
        matches = [
            (section, key)
            for section, model in SECTION_MODELS.items()
            if model is not None
            for key in difflib.get_close_matches(name, list(model.model_fields), n=1)
        ]
        if matches:
            best = difflib.get_close_matches(name, [key for _, key in matches], n=1)[0]
            section = next(section for section, key in matches if key == best)
            return f"unknown top-level key (did you mean [{section}] {best}?)"
        return "unknown top-level key; settings go in a section such as [desk]"
    match = difflib.get_close_matches(name, _field_names(parent), n=1)
    hint = f' (did you mean "{match[0]}"?)' if match else ""
    if not hint and len(parent) == 1:
        homes = [f"[{s}]" for s, m in SECTION_MODELS.items() if m is not None and name in m.model_fields]
        if homes:
            hint = f" (it belongs in {' or '.join(homes)})"
    return f"unknown key{hint}"


def _model_at(path: tuple[PathPart, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = Settings
    for part in path:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return None
        annotation = model.model_fields[part].annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return model


def _field_names(path: tuple[PathPart, ...]) -> list[str]:
    model = _model_at(path)
    return list(model.model_fields) if model is not None else []


def _expected_number(path: tuple[PathPart, ...], *, integer: bool) -> str:
    """'an integer from 0 to 65535', 'a number greater than 0', … from the field's constraints."""
    model = _model_at(path[:-1])
    info = model.model_fields.get(str(path[-1])) if model is not None and path else None
    if info is not None and info.annotation in (int, float):
        integer = info.annotation is int
    noun = "an integer" if integer else "a number"
    lower = upper = None
    lower_strict = upper_strict = False
    for meta in info.metadata if info is not None else ():
        if isinstance(meta, Ge):
            lower = meta.ge
        elif isinstance(meta, Gt):
            lower, lower_strict = meta.gt, True
        elif isinstance(meta, Le):
            upper = meta.le
        elif isinstance(meta, Lt):
            upper, upper_strict = meta.lt, True
    if lower is not None and upper is not None and not lower_strict and not upper_strict:
        return f"{noun} from {lower} to {upper}"
    parts = []
    if lower is not None:
        parts.append(f"greater than {lower}" if lower_strict else f"at least {lower}")
    if upper is not None:
        parts.append(f"less than {upper}" if upper_strict else f"at most {upper}")
    return f"{noun} {' and '.join(parts)}" if parts else noun


# --------------------------------------------------------------------------------------------
# Paths, provenance and environment variables


_BARE_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def _render_key(part: PathPart) -> str:
    text = str(part)
    return text if _BARE_KEY_RE.match(text) else '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _render_path(path: tuple[PathPart, ...], data: Mapping[str, Any], as_section: bool = True) -> str:
    """('sync', 'poll_interval') -> '[sync] poll_interval'; ('sevrer',) -> '[sevrer]'."""
    if not path:
        return ""
    if not as_section:
        return ".".join(_render_key(p) for p in path)
    head, rest = path[0], path[1:]
    is_table = isinstance(head, str) and (head in SECTION_MODELS or isinstance(data.get(head), dict))
    if not is_table:
        return ".".join(_render_key(p) for p in path)
    section = f"[{_render_key(head)}]"
    return f"{section} {'.'.join(_render_key(p) for p in rest)}" if rest else section


def _has_path(data: Any, path: tuple[PathPart, ...]) -> bool:
    for part in path:
        if isinstance(data, Mapping) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return False
    return True


def _get_path(data: Any, path: tuple[PathPart, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


def _find_env_var(environ: Mapping[str, str], path: tuple[PathPart, ...]) -> str | None:
    """The variable that supplied ``path``: the most specific AGENTDESK_A__B… present (any case)."""
    by_upper = {name.upper(): name for name in environ}
    for depth in range(len(path), 0, -1):
        candidate = ENV_PREFIX + ENV_NESTED_DELIMITER.join(str(p) for p in path[:depth])
        if candidate.upper() in by_upper:
            return by_upper[candidate.upper()]
    return None


# --------------------------------------------------------------------------------------------
# Line numbers: tomllib reports none for keys, so scan the text for headers and `key =` lines.


@dataclass
class _ScanState:
    depth: int = 0  # open [ / { in a value
    multiline: str | None = None  # '"""' or "'''" while inside a multi-line string


@dataclass
class KeyLocator:
    """Maps key paths to the 1-based line that defines them, for error messages.

    Understands ``[table]`` and ``[[array]]`` headers, bare/quoted/dotted keys, comments, and
    values spanning lines (multi-line strings and arrays), so text inside them is not mistaken
    for keys. Only meant for text tomllib has already accepted.
    """

    text: str
    lines: dict[tuple[PathPart, ...], int] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self._scan()

    def line_for(self, path: tuple[PathPart, ...]) -> int | None:
        """The line of ``path``, else of its nearest enclosing key or section header, else None."""
        for depth in range(len(path), 0, -1):
            if (line := self.lines.get(tuple(path[:depth]))) is not None:
                return line
        return None

    def _record(self, path: tuple[PathPart, ...], line: int) -> None:
        for depth in range(1, len(path) + 1):
            self.lines.setdefault(tuple(path[:depth]), line)

    def _scan(self) -> None:
        rows = self.text.split("\n")
        table: tuple[PathPart, ...] = ()
        array_index: dict[tuple[PathPart, ...], int] = {}
        number = 0
        while number < len(rows):
            row = rows[number].rstrip("\r")
            stripped = row.strip()
            lineno = number + 1
            if not stripped or stripped.startswith("#"):
                pass
            elif stripped.startswith("[["):
                end = _find_unquoted(stripped, "]", 2)
                key = _parse_key(stripped[2:end]) if end >= 0 else None
                if key is not None:
                    index = array_index.get(key, -1) + 1
                    array_index[key] = index
                    table = (*key, index)
                    self._record(table, lineno)
            elif stripped.startswith("["):
                end = _find_unquoted(stripped, "]", 1)
                key = _parse_key(stripped[1:end]) if end >= 0 else None
                if key is not None:
                    table = key
                    self._record(table, lineno)
            else:
                eq = _find_unquoted(stripped, "=", 0)
                key = _parse_key(stripped[:eq]) if eq >= 0 else None
                if key is not None:
                    self._record((*table, *key), lineno)
                    number = _skip_value(rows, number, stripped[eq + 1 :])
            number += 1


def _find_unquoted(text: str, char: str, start: int) -> int:
    """Index of ``char`` in ``text`` from ``start``, ignoring quoted parts; -1 if absent."""
    i = start
    while i < len(text):
        c = text[i]
        if c == char:
            return i
        if c == '"':
            i += 1
            while i < len(text) and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif c == "'":
            i = text.find("'", i + 1)
            if i < 0:
                return -1
        i += 1
    return -1


def _parse_key(text: str) -> tuple[str, ...] | None:
    """A TOML key ('a', '"reply.send"', 'sync.poll_interval') as a path; tomllib does the unquoting."""
    text = text.strip()
    if not text:
        return None
    try:
        node: Any = tomllib.loads(f"{text} = 0")
    except tomllib.TOMLDecodeError:
        return None
    path: list[str] = []
    while isinstance(node, dict) and len(node) == 1:
        (name, node), = node.items()
        path.append(name)
    return tuple(path) if path else None


def _skip_value(rows: list[str], number: int, rest: str) -> int:
    """Scan a value starting in ``rest`` (of row ``number``); return the row where it ends."""
    state = _ScanState()
    _scan_chunk(rest, state)
    while (state.depth > 0 or state.multiline) and number + 1 < len(rows):
        number += 1
        _scan_chunk(rows[number].rstrip("\r"), state)
    return number


def _scan_chunk(text: str, state: _ScanState) -> None:
    i = 0
    while i < len(text):
        if state.multiline is not None:
            if state.multiline == '"""' and text[i] == "\\":
                i += 2
                continue
            if text.startswith(state.multiline, i):
                # A closing delimiter may be followed by up to two more quotes that belong to the string.
                i += 3
                while i < len(text) and text[i] == state.multiline[0]:
                    i += 1
                state.multiline = None
                continue
            i += 1
            continue
        c = text[i]
        if c == "#":
            return
        if text.startswith('"""', i) or text.startswith("'''", i):
            state.multiline = text[i : i + 3]
            i += 3
            continue
        if c == '"':
            i += 1
            while i < len(text) and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif c == "'":
            end = text.find("'", i + 1)
            i = len(text) if end < 0 else end
        elif c in "[{":
            state.depth += 1
        elif c in "]}":
            state.depth -= 1
        i += 1
