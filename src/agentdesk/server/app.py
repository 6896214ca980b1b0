"""The FastAPI app factory."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import FastAPI

from agentdesk.server.db import create_schema


def create_app(engine: sa.Engine) -> FastAPI:
    from agentdesk.server.routes import health, sync

    create_schema(engine)
    app = FastAPI(title="agentdesk", version="0.1.0")
    app.state.engine = engine
    app.include_router(health.router)
    app.include_router(sync.router)
    return app
