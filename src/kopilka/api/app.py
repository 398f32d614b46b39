"""The FastAPI application factory."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable

import structlog
from fastapi import FastAPI, Request, Response

from kopilka import __version__
from kopilka.api.problems import install_problem_handlers
from kopilka.api.routers import admin, cards, ledger, members, programs, purchases
from kopilka.bootstrap import Container

log = structlog.get_logger("kopilka.http")
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def create_app(container: Container) -> FastAPI:
    """Build the HTTP API around an already bootstrapped container."""
    app = FastAPI(
        title="Kopilka API",
        version=__version__,
        description="Loyalty programs, members, cards and a points ledger.",
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    app.state.container = container
    install_problem_handlers(app)

    @app.middleware("http")
    async def request_id(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        incoming = request.headers.get("x-request-id", "")
        rid = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.state.request_id = rid
        structlog.contextvars.bind_contextvars(request_id=rid)
        started = time.perf_counter()
        try:
            response = await call_next(request)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")
        response.headers["X-Request-Id"] = rid
        log.info("request", request_id=rid, method=request.method, path=request.url.path,
                 status=response.status_code,
                 ms=round((time.perf_counter() - started) * 1000, 2))
        return response

    @app.get("/healthz", operation_id="health", tags=["meta"])
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    for router in (members.router, cards.router, ledger.router, admin.router, programs.router,
                   purchases.router):
        app.include_router(router)
    return app
