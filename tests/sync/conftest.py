"""Fixtures of the sync tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from faultproxy import FaultProxy


@pytest.fixture
def proxy(live_server) -> Iterator[FaultProxy]:
    """A fault-injecting TCP proxy in front of the live server (tests/sync/faultproxy.py)."""
    proxy = FaultProxy(int(live_server.url.rsplit(":", 1)[1])).start()
    yield proxy
    proxy.stop()
