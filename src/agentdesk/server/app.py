"""The FastAPI app factory."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import FastAPI



def create_app(engine: sa.Engine) -> FastAPI:
    """The app over a database whose schema is current (see `db.migrate`)."""
    from agentdesk.server.routes import health, sync

    app = FastAPI(title="agentdesk", version="0.1.0")
    app.state.engine = engine
    app.include_router(health.router)
    app.include_router(sync.router)
    return app
