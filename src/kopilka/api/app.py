"""The FastAPI application factory."""

from __future__ import annotations

from fastapi import FastAPI

from kopilka import __version__
from kopilka.api.middleware import RequestContextMiddleware
from kopilka.api.openapi import problem_openapi
from kopilka.api.problems import install_problem_handlers
from kopilka.api.routers import admin, cards, explain, ledger, members, programs, purchases
from kopilka.api.routers.campaigns import router as campaigns_router
from kopilka.api.routers.clubs import router as clubs_router
from kopilka.api.routers.coupons import router as coupons_router
from kopilka.api.routers.draws import router as draws_router
from kopilka.api.routers.events import router as events_router
from kopilka.api.routers.families import router as families_router
from kopilka.api.routers.giftcards import router as giftcards_router
from kopilka.api.routers.referrals import router as referrals_router
from kopilka.api.routers.rewards import router as rewards_router
from kopilka.api.routers.stamps import router as stamps_router
from kopilka.api.routers.tiers import router as tiers_router
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
    app.openapi = problem_openapi(app)  # type: ignore[method-assign]

    app.add_middleware(RequestContextMiddleware)

    @app.get("/healthz", operation_id="health", tags=["meta"])
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    # Routes are matched in order, one by one: the till's come first, as most requests are
    # theirs (no other router has a path under /v1/purchases).
    for router in (
        purchases.router,
        members.router,
        cards.router,
        ledger.router,
        admin.router,
        programs.router,
        explain.router,
        # slot:tiers:router
        tiers_router,
        # slot:lifecycle:router
        events_router,
        # slot:referrals:router
        referrals_router,
        # slot:stamps:router
        stamps_router,
        # slot:families:router
        families_router,
        # slot:clubs:router
        clubs_router,
        # slot:rewards:router
        rewards_router,
        # slot:coupons:router
        coupons_router,
        # slot:giftcards:router
        giftcards_router,
        # slot:campaigns:router
        campaigns_router,
        # slot:draws:router
        draws_router,
    ):
        app.include_router(router)
    return app
