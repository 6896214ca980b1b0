"""The layers stay honest (DESIGN §3): pure layers never import the TUI, the server never the client."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "agentdesk"

FORBIDDEN = {
    "domain": ("textual", "sqlalchemy", "sqlmodel", "fastapi", "httpx", "agentdesk.store", "agentdesk.server", "agentdesk.tui"),
    "config": ("textual", "sqlalchemy", "sqlmodel", "fastapi", "httpx", "agentdesk.tui", "agentdesk.server"),
    "store": ("textual", "sqlalchemy", "sqlmodel", "fastapi", "agentdesk.tui", "agentdesk.server", "agentdesk.sync"),
    "sync": ("textual", "sqlalchemy", "sqlmodel", "fastapi", "agentdesk.tui", "agentdesk.server"),
    "server": ("textual", "agentdesk.tui", "agentdesk.store", "agentdesk.sync"),
}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports(layer):
    files = list((SRC / layer).rglob("*.py"))
    assert files
    bad = [
        f"{path.relative_to(SRC)} imports {name}"
        for path in files
        for name in imported_modules(path)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[layer])
    ]
    assert bad == []
