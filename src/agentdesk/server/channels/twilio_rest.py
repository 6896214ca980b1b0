"""A small client for the parts of Twilio's REST API (2010-04-01) the outbox uses: create and list
Messages and Calls. Form-encoded requests, JSON answers, HTTP basic auth with the account SID and token.

Every failure is sorted by what it means for exactly-once delivery (server/delivery.py):
- the request never left (connection refused, connect timeout): `SendFailed(permanent=False)`;
- Twilio answered 429 or 5xx: `SendFailed(permanent=False)`, retried later;
- Twilio refused it (any other 4xx, with its error JSON): `SendFailed(permanent=True)` with Twilio's reason;
- the request may have reached Twilio but no answer came back (read timeout, connection dropped):
  `OutcomeUnknown`, so the worker reconciles with `list_recent` instead of sending again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import date
from typing import Any

import httpx

from agentdesk.server.delivery import OutcomeUnknown, SendFailed

log = logging.getLogger("agentdesk.twilio")

API_VERSION = "2010-04-01"
MAX_PAGES = 20  # a reconcile reads at most this many pages (of 50) of one customer's recent traffic
_NEVER_LEFT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


class TwilioRest:
    def __init__(self, account_sid: str, auth_token: str, base_url: str, timeout: float) -> None:
        self.account_sid = account_sid
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url, auth=(account_sid, auth_token), timeout=timeout,
            headers={"Accept": "application/json", "User-Agent": "agentdesk"},
        )

    def close(self) -> None:
        self._http.close()

    def _path(self, resource: str) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}/{resource}.json"

    # -- writes: a failure says whether the request may have reached Twilio ---------------------------

    def create_message(self, *, to: str, from_: str, body: str, status_callback: str) -> dict[str, Any]:
        data = {"To": to, "From": from_, "Body": body, "StatusCallback": status_callback}
        return self._create("Messages", data, what="message")

    def create_call(self, *, to: str, from_: str, url: str, status_callback: str, events: tuple[str, ...]) -> dict[str, Any]:
        data = {"To": to, "From": from_, "Url": url, "Method": "POST", "StatusCallback": status_callback,
                "StatusCallbackMethod": "POST", "StatusCallbackEvent": list(events)}  # a list: repeated, as Twilio's clients send it
        return self._create("Calls", data, what="call")

    def _create(self, resource: str, data: dict[str, Any], *, what: str) -> dict[str, Any]:
        try:
            response = self._http.post(self._path(resource), data=data)
        except _NEVER_LEFT as exc:
            raise SendFailed(f"Cannot reach Twilio ({type(exc).__name__}); will retry.", permanent=False) from None
        except httpx.TransportError as exc:  # a timeout or a dropped connection after the request left
            raise OutcomeUnknown(f"no answer from Twilio ({type(exc).__name__})") from None
        if response.is_success:
            return _json(response, what)
        reason = refusal(response, what)
        if response.status_code == 429 or response.status_code >= 500:
            raise SendFailed(f"{reason}; will retry.", permanent=False)
        raise SendFailed(reason, permanent=True)

    # -- reads, for a reconcile: a failure means "cannot tell yet" ------------------------------------

    def list_recent(self, resource: str, filters: dict[str, str], since: date | None) -> Iterator[dict[str, Any]]:
        """The account's `resource` ("Messages" or "Calls") matching `filters`, newest first, following
        next_page_uri. `since`: only those sent (messages) or started (calls) on or after that UTC day."""
        params = dict(filters)
        if since is not None:
            params["DateSent>" if resource == "Messages" else "StartTime>"] = since.isoformat()
        params["PageSize"] = "50"
        key = resource.lower()
        url: str | None = self._path(resource)
        query: dict[str, str] | None = params
        for _ in range(MAX_PAGES):
            page = self._get(url, query, what=key)  # type: ignore[arg-type]
            yield from page.get(key) or []
            # The next page's URI carries its own query (and an empty params dict would erase it).
            url, query = page.get("next_page_uri"), None
            if not url:
                return
        log.warning("reconcile: stopped after %d pages of %s", MAX_PAGES, key)

    def _get(self, url: str, params: dict[str, str] | None, *, what: str) -> dict[str, Any]:
        try:
            response = self._http.get(url, params=params)
        except httpx.TransportError as exc:
            raise OutcomeUnknown(f"cannot ask Twilio now ({type(exc).__name__})") from None
        if response.is_success:
            return _json(response, what)
        reason = refusal(response, f"{what} list")
        if response.status_code == 429 or response.status_code >= 500:
            raise OutcomeUnknown(reason)
        raise SendFailed(f"Could not check with Twilio whether this left: {reason}. Check before sending again.", permanent=True)


def _json(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        # Twilio said yes but we cannot read its answer: it may hold the message, so reconcile.
        raise OutcomeUnknown(f"Twilio's answer about the {what} was not JSON (HTTP {response.status_code})")
    return body


def refusal(response: httpx.Response, what: str) -> str:
    """Twilio's error JSON ({"code", "message", "more_info", "status"}) as one sentence for the agent."""
    try:
        error = response.json()
    except ValueError:
        error = None
    if isinstance(error, dict) and error.get("message"):
        code = f" (error {error['code']})" if error.get("code") else ""
        return f"Twilio refused the {what}: {str(error['message'])[:300]}{code}"
    return f"Twilio refused the {what} (HTTP {response.status_code})"
