"""The HTTP side of sync: one thin client over the server's sync API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: the desk imports this module before its first frame (httpx ~60 ms)
    import httpx


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
        import httpx

        try:
            self.http = httpx.Client(
                base_url=server_url.rstrip("/"),
                headers={"Authorization": f"Bearer {token}", "User-Agent": "agentdesk"},
                timeout=timeout,
            )
        except (httpx.InvalidURL, ValueError) as exc:
            raise ServerUnavailable(f"{server_url!r} is not a usable server URL ({exc})") from exc

    def close(self) -> None:
        self.http.close()

    def live_http(self, read_timeout: float = 45.0) -> httpx.Client:
        """A client of its own for the live stream: the stream holds its connection for hours, and ending it at
        stop must not disturb a sync request in flight. `read_timeout` (> the server's 15 s heartbeat) notices
        a server that vanished without closing the connection."""
        import httpx

        return httpx.Client(
            base_url=self.http.base_url,
            headers=self.http.headers,
            timeout=httpx.Timeout(self.http.timeout.connect, read=read_timeout),
        )

    def _call(self, method: str, path: str, *, http: httpx.Client | None = None, **kw: Any) -> Any:
        import httpx

        try:
            response = (http or self.http).request(method, path, **kw)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise ServerUnavailable(f"{self.http.base_url} unreachable ({type(exc).__name__})") from exc
        if response.status_code == 401:
            raise AuthRejected("The server refused the API token (401). Check AGENTDESK_TOKEN or run `agentdesk login`.")
        if response.status_code == 410:
            raise ResetRequired(_detail(response))
        if response.status_code >= 400:
            error = RequestRejected if response.status_code < 500 and response.status_code != 429 else ServerUnavailable
            raise error(f"{method} {path} answered {response.status_code}: {response.text[:200]}")
        if response.status_code == 204:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise ServerUnavailable(f"{self.http.base_url} is not an agentdesk server (its answer is not JSON)") from exc

    def me(self) -> dict[str, Any]:
        return self._call("GET", "/api/v1/me")

    def bootstrap_page(self, entity: str, after: str, limit: int) -> dict[str, Any]:
        return self._call("GET", "/api/v1/sync/bootstrap", params={"entity": entity, "after": after, "limit": limit})

    def pull(self, cursor: str, limit: int) -> dict[str, Any]:
        return self._call("GET", "/api/v1/sync/pull", params={"cursor": cursor, "limit": limit})

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
