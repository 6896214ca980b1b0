"""A fault-injecting TCP proxy on loopback, between sync clients and a real server.

It forwards bytes both ways and, on command from the test's thread:
- `drop()` closes every open connection at once;
- `refuse = True` closes each new connection as soon as it is accepted;
- `stall_next(match)` forwards the next request whose bytes contain `match` but holds its answer back
  (the client waits until its timeout): the server has applied a push whose answer never arrives;
- `cut_next(match, after=n)` forwards only the first `n` bytes of that request's answer, then closes
  the connection (0: the server "disconnected without sending a response");
- `retarget(port)` sends new connections to another upstream port (a restarted server).
`heal()` undoes all of it. `fired` counts the armed faults that have hit a request, so a test can check
its fault really happened rather than trusting its timing; `requests` lists the request lines it saw.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass


@dataclass
class _Fault:
    match: bytes  # bytes of the request that triggers it, e.g. b"POST /api/v1/sync/push"
    cut_after: int | None  # None: stall the answer; n: forward n bytes of it, then close
    skip: int = 0  # let this many matching requests through first


class _Link:
    """One client connection and its upstream: what its answer direction must do."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.writers = (client, upstream)
        self.answer_fault: _Fault | None = None
        self.answered = 0  # bytes of the faulted answer forwarded so far

    def close(self) -> None:
        for writer in self.writers:
            writer.transport.abort()  # at once, unflushed bytes and all: the network went away

    def hang_up(self) -> None:
        """End the answer here: the client gets what was written, then the end of the stream."""
        client, upstream = self.writers
        client.close()
        upstream.transport.abort()


class FaultProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.refuse = False
        self.fired = 0
        self.requests: list[str] = []  # "GET /api/v1/sync/pull?cursor=…", in the order they came
        self._faults: list[_Fault] = []
        self._links: set[_Link] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self.port = 0

    # --- control, from the test's thread -----------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._call(self._close())  # on the proxy's loop: asyncio's server is not thread-safe
            self.drop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def retarget(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port

    def drop(self) -> None:
        """Close every open connection now (idle keep-alive ones included)."""
        self._call(self._drop_all())

    def stall_next(self, match: bytes, *, skip: int = 0) -> None:
        self._faults.append(_Fault(match, None, skip))

    def cut_next(self, match: bytes, *, after: int = 0, skip: int = 0) -> None:
        self._faults.append(_Fault(match, after, skip))

    def heal(self) -> None:
        """No faults armed, new connections welcome, stalled ones closed (their clients retry)."""
        self.refuse = False
        self._faults.clear()
        self._call(self._drop_faulted())

    async def _close(self) -> None:
        assert self._server is not None
        self._server.close()

    def _call(self, coroutine):  # noqa: ANN001, ANN202 - run on the proxy's loop and wait for the result
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    async def _drop_all(self) -> None:
        for link in list(self._links):
            link.close()

    async def _drop_faulted(self) -> None:
        for link in list(self._links):
            if link.answer_fault is not None:
                link.close()

    # --- the proxy, on its loop ----------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refuse:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:  # the server is down: so is the connection
            writer.transport.abort()
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        try:
            await asyncio.gather(self._requests(link, reader, up_writer), self._answers(link, up_reader, writer))
        finally:
            self._links.discard(link)
            link.close()

    def _arm(self, link: _Link, chunk: bytes) -> None:
        """The first armed fault this request matches now governs its answer."""
        for fault in self._faults:
            if fault.match in chunk:
                if fault.skip:
                    fault.skip -= 1
                    return
                self._faults.remove(fault)
                link.answer_fault, link.answered = fault, 0
                self.fired += 1
                return

    async def _requests(self, link: _Link, reader: asyncio.StreamReader, upstream: asyncio.StreamWriter) -> None:
        while chunk := await _read(reader):
            if chunk.startswith((b"GET ", b"POST ")):  # a request's head (small: it comes in one read)
                self.requests.append(chunk.split(b" HTTP/", 1)[0].decode("latin-1"))
            if link.answer_fault is None:
                self._arm(link, chunk)
            upstream.write(chunk)
            await upstream.drain()
        link.close()  # the client hung up: so does the upstream

    async def _answers(self, link: _Link, upstream: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        while chunk := await _read(upstream):
            fault = link.answer_fault
            if fault is not None:
                if fault.cut_after is None:
                    continue  # stalled: the answer goes nowhere, the client waits
                chunk = chunk[: max(0, fault.cut_after - link.answered)]
                link.answered += len(chunk)
                if link.answered >= fault.cut_after:
                    client.write(chunk)
                    link.hang_up()
                    return
            client.write(chunk)
            await client.drain()
        link.close()


async def _read(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.read(65536)
    except (ConnectionError, OSError):
        return b""

