"""Composition root: `create_app(settings)` wires the store, routes and error handling."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

import fhir_server.ops.catalogue  # noqa: F401  (registers every $operation)
from fhir_server.api import authorize_pages, demo, errors, oauth
from fhir_server.api.fastpath import FastReadMiddleware
from fhir_server.api.middleware import RequestLogMiddleware, configure_logging
from fhir_server.api.routes import routes, started_at
from fhir_server.interactions import reindex
from fhir_server.model import validate as validation
from fhir_server.settings import Settings
from fhir_server.store.engine import make_engine
from fhir_server.store.protection import protection_for
from fhir_server.store.repository import Store


def create_app(settings: Settings | None = None, store: Store | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.log_level)
    validation.warm_up()

    @asynccontextmanager
    async def lifespan(application: FastAPI) -> AsyncIterator[None]:
        to_thread.current_default_thread_limiter().total_tokens = settings.worker_threads
        stop_jobs = reindex.start_worker(application.state.store)
        yield
        stop_jobs.set()

    app = FastAPI(title="FHIR R4 server", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.settings = settings
    if store is None:
        engine = make_engine(settings.database_url, settings.db_pool_size)
        store = Store(engine, protection_for(engine, settings))  # field encryption keys and fields
    app.state.store = store
    app.state.started_at = started_at()
    # The authorization server's routes go first: `[base]/.well-known/...` would otherwise match
    # the FHIR `[type]/[id]` shape.
    app.router.routes.extend(oauth.routes(settings.base_path) + authorize_pages.routes() + demo.routes())
    app.router.routes.extend(routes(settings.base_path))
    errors.install(app)

    @app.get("/healthz")
    async def healthz() -> Response:
        return JSONResponse({"status": "ok"})

    @app.get("/readyz")
    async def readyz(request: Request) -> Response:
        try:
            request.app.state.store.ping()
        except Exception:  # any failure to reach the database means not ready
            return JSONResponse({"status": "database unreachable"}, status_code=503)
        return JSONResponse({"status": "ready"})

    app.add_middleware(FastReadMiddleware, base_path=settings.base_path)
    app.add_middleware(RequestLogMiddleware)  # outermost: request ids and logs cover the fast path
    return app
