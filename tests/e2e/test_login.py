"""`agentdesk login`: a checked token kept in the keyring (or an opted-in 0600 file), never elsewhere."""

from __future__ import annotations

import io
import stat

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail

from agentdesk.cli import main
from agentdesk.desk import DeskError, find_token


class MemoryKeyring(KeyringBackend):
    """A real keyring backend, kept in memory (this machine has no Secret Service)."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.secrets.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.secrets[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.secrets.pop((service, username), None)


@pytest.fixture
def no_env_token(monkeypatch):
    monkeypatch.delenv("AGENTDESK_TOKEN", raising=False)


@pytest.fixture
def backend(request):
    previous = keyring.get_keyring()
    chosen = request.param()
    keyring.set_keyring(chosen)
    yield chosen
    keyring.set_keyring(previous)


def login(monkeypatch, url: str, data_dir, token: str, *extra: str) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(token + "\n"))
    return main(["--server", url, "--data-dir", str(data_dir), "login", *extra])


@pytest.mark.parametrize("backend", [MemoryKeyring], indirect=True)
def test_login_checks_and_keeps_the_token_in_the_keyring(live_server, tmp_path, monkeypatch, capsys, backend, no_env_token):
    token = live_server.world.tokens["alice@example.com"]
    assert login(monkeypatch, live_server.url, tmp_path, token) == 0
    assert "Alice Ward" in capsys.readouterr().err
    assert backend.secrets == {("agentdesk", live_server.url): token}
    assert find_token(live_server.url, tmp_path) == token
    assert not any(token in p.read_text(errors="ignore") for p in tmp_path.rglob("*") if p.is_file())


@pytest.mark.parametrize("backend", [MemoryKeyring], indirect=True)
def test_a_refused_token_is_not_kept(live_server, tmp_path, monkeypatch, capsys, backend, no_env_token):
    assert login(monkeypatch, live_server.url, tmp_path, "adk_wrong") == 1
    assert "refused the API token" in capsys.readouterr().err
    assert backend.secrets == {}


@pytest.mark.parametrize("backend", [fail.Keyring], indirect=True)
def test_without_a_keyring_the_options_are_named_and_the_file_store_is_private(live_server, tmp_path, monkeypatch, capsys, backend, no_env_token):
    token = live_server.world.tokens["bob@example.com"]
    assert login(monkeypatch, live_server.url, tmp_path, token) == 1
    err = capsys.readouterr().err
    assert "AGENTDESK_TOKEN" in err and "--file-store" in err and "Traceback" not in err
    with pytest.raises(DeskError, match="agentdesk login"):
        find_token(live_server.url, tmp_path)
    assert login(monkeypatch, live_server.url, tmp_path, token, "--file-store") == 0
    stored = tmp_path / "credentials.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert find_token(live_server.url, tmp_path) == token
    monkeypatch.setenv("AGENTDESK_TOKEN", "adk_from_env")
    assert find_token(live_server.url, tmp_path) == "adk_from_env"  # the environment wins
