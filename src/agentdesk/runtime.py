"""Process-wide tuning shared by the desk and the server."""

from __future__ import annotations

import gc

_FROZEN: set[str] = set()  # the gc.freeze stages done in this process


def freeze_once(stage: str) -> None:
    """gc.freeze() once per stage and process: what a long-lived process built at start-up lives as long as it
    does, so no full collection need walk it again (they came due every few seconds under load and took tens
    to hundreds of ms). Once only: a process that starts many desks or servers (a test run) would otherwise
    freeze each earlier one's garbage for good."""
    if stage not in _FROZEN:
        _FROZEN.add(stage)
        gc.freeze()
