"""The FastAPI application factory."""

from __future__ import annotations

from fastapi import FastAPI

from kopilka import __version__
from kopilka.api.middleware import RequestContextMiddleware
from kopilka.api.problems import install_problem_handlers
from kopilka.api.routers import admin, cards, explain, ledger, members, programs, purchases
from kopilka.bootstrap import Container


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

    app.add_middleware(RequestContextMiddleware)

    @app.get("/healthz", operation_id="health", tags=["meta"])
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    for router in (
        members.router,
        cards.router,
        ledger.router,
        admin.router,
        programs.router,
        purchases.router,
        explain.router,
        # slot:tiers:router
        # slot:lifecycle:router
        # slot:referrals:router
        # slot:stamps:router
        # slot:families:router
        # slot:clubs:router
        # slot:rewards:router
        # slot:coupons:router
        # slot:giftcards:router
        # slot:campaigns:router
        # slot:draws:router
    ):
        app.include_router(router)
    return app
