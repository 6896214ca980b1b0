"""The HTTP side of sync: one thin client over the server's sync API."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:  # imported where used: the desk imports this module before its first frame (httpx ~60 ms)
    import httpx

log = logging.getLogger(__name__)


class ServerUnavailable(Exception):
    """The server could not be reached or did not answer sensibly; the desk keeps working offline."""


class AuthRejected(Exception):
    """The server refused the token."""


class RequestRejected(ServerUnavailable):
    """The server understood the request and refused it (4xx): repeating it unchanged will not help."""


class ResetRequired(Exception):
    """The cache is older than the server's change history (compacted): it must bootstrap again."""


class SyncClient:
    def __init__(self, server_url: str, token: str, timeout: float = 10.0) -> None:
        self.base_url = server_url.rstrip("/")
        try:
            parts = urlsplit(self.base_url)
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError as exc:
            raise ServerUnavailable(f"{server_url!r} is not a usable server URL ({exc})") from exc
        if any(c.isspace() or not c.isprintable() for c in server_url):  # urlsplit drops tabs and newlines
            raise ServerUnavailable(f"{server_url!r} is not a usable server URL (it holds a space or a control character)")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ServerUnavailable(f"{server_url!r} is not a usable server URL (it needs http:// or https:// and a host)")
        self._headers = {"Authorization": f"Bearer {token}", "User-Agent": "agentdesk"}
        self._timeout = timeout
        self._http: httpx.Client | None = None
        self._http_made = threading.Lock()

    @property
    def http(self) -> httpx.Client:
        """Made on first use, normally in the sync thread: building it (httpx's import, its TLS context: ~100 ms)
        is no part of the desk's first frame."""
        with self._http_made:
            if self._http is None:
                self._http = self._client(self._timeout)
            return self._http

    def _client(self, timeout: float | httpx.Timeout) -> httpx.Client:
        import httpx

        try:
            return httpx.Client(base_url=self.base_url, headers=self._headers, timeout=timeout)
        except (httpx.InvalidURL, ValueError) as exc:
            raise ServerUnavailable(f"{self.base_url!r} is not a usable server URL ({exc})") from exc

    def close(self) -> None:
        with self._http_made:
            if self._http is not None:
                self._http.close()

    def live_http(self, read_timeout: float = 45.0) -> httpx.Client:
        """A client of its own for the live stream: the stream holds its connection for hours, and ending it at
        stop must not disturb a sync request in flight. `read_timeout` (> the server's 15 s heartbeat) notices
        a server that vanished without closing the connection."""
        import httpx

        return self._client(httpx.Timeout(self._timeout, read=read_timeout))

    def _call(self, method: str, path: str, *, http: httpx.Client | None = None, **kw: Any) -> Any:
        response = self._send(method, path, http=http, **kw)
        return None if response.status_code == 204 else self.decode(response.content)

    def _send(self, method: str, path: str, *, http: httpx.Client | None = None, **kw: Any) -> httpx.Response:
        """The server's answer to a request, if it is a success (else the matching exception)."""
        import httpx

        try:
            response = (http or self.http).request(method, path, **kw)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise ServerUnavailable(f"{self.base_url} unreachable ({type(exc).__name__})") from exc
        self._raise_for(response, method, path)
        return response

    def _raise_for(self, response: httpx.Response, method: str, path: str) -> None:
        """The matching exception for an answer that is not a success."""
        if response.status_code == 401:
            raise AuthRejected("The server refused the API token (401). Check AGENTDESK_TOKEN or run `agentdesk login`.")
        if response.status_code == 410:
            raise ResetRequired(_detail(response))
        if response.status_code >= 400:
            error = RequestRejected if response.status_code < 500 and response.status_code != 429 else ServerUnavailable
            raise error(f"{method} {path} answered {response.status_code}: {response.text[:200]}")

    def decode(self, body: bytes) -> Any:
        import orjson

        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ServerUnavailable(f"{self.base_url} is not an agentdesk server (its answer is not JSON)") from exc

    def me(self) -> dict[str, Any]:
        return self._call("GET", "/api/v1/me")

    def bootstrap_page(self, entity: str, after: str, limit: int, columns: Sequence[str]) -> tuple[bytes, str | None]:
        """A page of `entity` with these `columns` (and the page key's), undecoded (see `decode`), and the key
        the next page starts after (None after the last), which the server also sends as a header so that the
        next request need not wait for this page's decoding. A server without that header: read in the body."""
        params = {"entity": entity, "after": after, "limit": limit, "columns": ",".join(columns)}
        response = self._send("GET", "/api/v1/sync/bootstrap", params=params)
        if (next_after := response.headers.get("Agentdesk-Next-After")) is None:
            return response.content, self.decode(response.content)["next_after"]
        return response.content, unquote(next_after) or None

    def snapshot(self, path: Path, columns: Mapping[str, Sequence[str]]) -> tuple[str, int] | None:
        """The rows this agent may see of the entities in `columns` (these columns of each), as one SQLite file
        written to `path`, and the cursor to pull from after it with the change-log position it stands for (of
        two snapshots, the older's cursor is where to pull from); None from a server that makes no snapshot
        (404), or fails to (5xx): the pages load the rows then, and work wherever the server does."""
        import httpx

        params = {"entities": ",".join(columns), **{entity: ",".join(names) for entity, names in columns.items()}}
        try:
            with self.http.stream("GET", "/api/v1/sync/snapshot", params=params, timeout=httpx.Timeout(self._timeout, read=120)) as response:
                if response.status_code == 404:
                    return None
                if response.status_code >= 500:
                    response.read()
                    log.warning("%s answered %s to a snapshot request: loading the pages", self.base_url, response.status_code)
                    return None
                if response.status_code != 200:
                    response.read()
                    self._raise_for(response, "GET", "/api/v1/sync/snapshot")
                with path.open("wb") as file:
                    for block in response.iter_bytes(1 << 20):
                        file.write(block)
                cursor, head = response.headers.get("Agentdesk-Cursor"), response.headers.get("Agentdesk-Head", "")
        except httpx.HTTPError as exc:
            raise ServerUnavailable(f"{self.base_url} unreachable ({type(exc).__name__})") from exc
        if not cursor or not head.isdigit():
            raise ServerUnavailable(f"{self.base_url} sent a snapshot without its cursor")
        return cursor, int(head)

    def pull(self, cursor: str, limit: int) -> dict[str, Any]:
        return self.decode(self.pull_page(cursor, limit))

    def pull_page(self, cursor: str, limit: int) -> bytes:
        """A pull answer, undecoded (see `decode`): the engine fetches the next page in a thread of its own."""
        return self._send("GET", "/api/v1/sync/pull", params={"cursor": cursor, "limit": limit}).content

    def push(self, mutations: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self._call("POST", "/api/v1/sync/push", json={"mutations": mutations})["results"]

    # Presence (sync/presence.py posts these from a thread of its own, hence `http`: that thread's client).

    def set_presence(self, status: str, viewing: str | None, *, http: httpx.Client | None = None, timeout: float | None = None) -> dict[str, Any]:
        extra = {"timeout": timeout} if timeout is not None else {}
        return self._call("POST", "/api/v1/presence", http=http, json={"status": status, "viewing": viewing}, **extra)

    def typing(self, conversation_id: str, *, http: httpx.Client | None = None) -> None:
        self._call("POST", "/api/v1/typing", http=http, json={"conversation_id": conversation_id})


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    return detail.get("message", str(detail)) if isinstance(detail, dict) else str(detail or response.text[:200])
