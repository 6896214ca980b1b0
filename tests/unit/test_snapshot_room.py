"""The server's snapshot files never count twice on the same free room of their temp directory."""

from __future__ import annotations

from collections import namedtuple

import pytest

from agentdesk.server import snapshot
from agentdesk.server.snapshot import KEEP_FREE, NoRoom

MB = 1 << 20
Usage = namedtuple("Usage", "total used free")  # shutil.disk_usage's answer


def test_snapshots_written_at_once_share_the_free_room_and_give_it_back(tmp_path, monkeypatch):
    monkeypatch.setattr(snapshot.shutil, "disk_usage", lambda path: Usage(1 << 40, 0, KEEP_FREE + 100 * MB))
    room = snapshot._Room()
    with room.held(tmp_path, 60 * MB):
        with pytest.raises(NoRoom, match="less than the 60 MB"):
            with room.held(tmp_path, 60 * MB):
                pass
        with room.held(tmp_path, 40 * MB):
            pass
    with room.held(tmp_path, 100 * MB):  # the first one's room is given back once it is written
        with pytest.raises(NoRoom):
            with room.held(tmp_path, 1):
                pass
    assert room.promised == 0
