"""The FastAPI app factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import asyncio
from datetime import timedelta

import sqlalchemy as sa
from fastapi import FastAPI

from agentdesk.runtime import freeze_once
from agentdesk.server.events import Hub
from agentdesk.server.jobs import JobsConfig
from agentdesk.server.jobs import run_forever as run_jobs
from agentdesk.server.pull_pages import SharedPages

if TYPE_CHECKING:
    from agentdesk.config import Settings


def create_app(engine: sa.Engine, *, hub: Hub | None = None, settings: Settings | None = None) -> FastAPI:
    """The app over a database whose schema is current (see `db.migrate`); `hub`: live events' options.

    `settings` (default: built-in defaults) give the request limits; when given, the teams, SLA policies and
    routing rules they declare are applied to the database first (see server/declared.py).
    """
    from agentdesk.server.routes import admin as admin_routes
    from agentdesk.server.routes import events, health, inbound, records, sync

    from agentdesk.config import Settings
    from agentdesk.server import channels, delivery

    hub = hub if hub is not None else Hub(engine)
    config = settings if settings is not None else Settings()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await hub.start()  # the live-event poller of this process
        tasks = [
            asyncio.create_task(run_jobs(engine, _jobs_config(settings)), name="agentdesk-jobs"),
            asyncio.create_task(delivery.run_forever(engine, channels.senders(config)), name="agentdesk-delivery"),
        ]
        _app.state.channels = channels.ChannelContext(engine, config, hub)  # .listening: the ports listeners bound
        stops = await channels.start_listeners(_app.state.channels)
        freeze_once("server")  # full collections then skip what start-up built (they were the push p99's spikes)
        try:
            yield
        finally:
            for stop in reversed(stops):
                await stop()
            for task in tasks:
                task.cancel()
            await hub.stop()

    app = FastAPI(title="agentdesk", version="0.1.0", lifespan=lifespan)
    app.state.engine = engine
    app.state.hub = hub
    app.state.pull_pages = SharedPages(hub)
    app.state.pull_pages.watch(engine)  # for the engine's life, lifespan or not: a page must never outlive a commit
    app.include_router(inbound.router)  # first: a request is matched against routes in order (issue 6: the busiest)
    app.include_router(events.router)
    app.include_router(health.router)
    app.include_router(sync.router)
    app.include_router(admin_routes.router)
    app.include_router(records.router)
    channel_routers = channels.routers(config)
    for router in channel_routers:
        app.include_router(router)
    # Webhooks a channel serves without FastAPI's routing (issue 6), by routes/inbound.InboundFastPath.
    app.state.fast_paths = {path: answer for router in channel_routers for path, answer in getattr(router, "fast_paths", {}).items()}
    _configure(app, engine, settings)
    return app


def _configure(app: FastAPI, engine: sa.Engine, settings: Settings | None) -> None:
    """Apply declared config, then wrap the app in the body-size and per-token rate limits (server/limits.py)."""
    from agentdesk.config import ServerConfig
    from agentdesk.server.limits import BodyLimit, RateLimit
    from agentdesk.server.routes.inbound import InboundFastPath
    from agentdesk.server.routes.sync import PushFastPath

    if settings is not None:
        from agentdesk.server.db import session as open_session
        from agentdesk.server.declared import apply_declared

        with open_session(engine) as db:
            app.state.declared = apply_declared(db, settings)  # rows changed per kind, for the start banner
    server = settings.server if settings is not None else ServerConfig()
    app.state.settings = settings
    app.add_middleware(InboundFastPath)  # innermost: inside the limits (issue 6: the busiest request)
    app.add_middleware(PushFastPath)  # also inside the limits (issue 3: a push for every desk action)
    app.add_middleware(BodyLimit, max_bytes=server.max_body_bytes)
    app.add_middleware(RateLimit, rate=server.rate_limit_per_second, burst=server.rate_limit_burst)  # outermost: cheapest refusal first


def _jobs_config(settings: Settings | None) -> JobsConfig:
    if settings is None:
        return JobsConfig()
    return JobsConfig(return_grace=timedelta(minutes=settings.routing.return_after_minutes))
