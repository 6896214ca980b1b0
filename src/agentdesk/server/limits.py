"""Request limits as pure ASGI middleware: a body size cap (413) and a per-token rate limit (429).

BodyLimit refuses a request whose Content-Length is over the cap before reading a byte of it, and counts
the bytes actually received, so a chunked body (no Content-Length) or a lying one cannot get past it.

RateLimit keeps a token bucket per API token, keyed by the token's SHA-256 (the token itself is never kept)
and held in this process's memory: with several server processes each enforces its own share. Requests
without a bearer token are not counted here (they are refused by authentication, or are webhooks that
carry their providers' signatures).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from fastapi import HTTPException

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]
ASGIApp = Callable[[Scope, Receive, Send], Any]


async def _send_json(send: Send, status: int, detail: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
    })
    await send({"type": "http.response.body", "body": body})


class BodyTooLarge(HTTPException):
    """Raised from `receive` when the streamed body passes the cap; FastAPI answers it as a 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large_message(limit))


def too_large_message(limit: int) -> str:
    return f"Request body too large; the limit is {limit:,} bytes."


class BodyLimit:
    """413 for a request body over `max_bytes`, by declared length or by bytes received."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_json(send, 400, "Malformed Content-Length header.")
                    return
                if declared > limit:
                    await _send_json(send, 413, too_large_message(limit), [(b"connection", b"close")])
                    return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            # Raised where no exception handler answered it (e.g. a body read by middleware or a raw endpoint).
            if not started:
                await _send_json(send, 413, too_large_message(limit), [(b"connection", b"close")])


class TokenBuckets:
    """Token buckets keyed by a string, at most `max_keys` of them (the least recently used go first)."""

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def take(self, key: str) -> float:
        """Spend one token for `key`: 0.0 when allowed, else the seconds until one is available."""
        now = self.clock()
        tokens, at = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait


def bearer_token(scope: Scope) -> str | None:
    """The token of the request's (first) Authorization header if it is a bearer token: what the auth
    dependencies (FastAPI's HTTPBearer) read."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


class RateLimit:
    """429 with Retry-After once a token has spent its burst faster than `rate` requests a second."""

    def __init__(self, app: ASGIApp, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.buckets = TokenBuckets(rate, burst, clock=clock)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = bearer_token(scope) if scope["type"] in ("http", "websocket") else None
        if token is not None:
            wait = self.buckets.take(hashlib.sha256(token.encode()).hexdigest())
            if wait > 0:
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008, "reason": "Too many requests"})
                    return
                seconds = max(1, math.ceil(wait))
                await _send_json(
                    send, 429, f"Too many requests for this token; retry in {seconds} s.", [(b"retry-after", str(seconds).encode())]
                )
                return
        await self.app(scope, receive, send)
