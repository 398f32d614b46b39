"""API key authentication and role checks, as FastAPI dependencies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from kopilka.bootstrap import Container
from kopilka.domain.errors import Forbidden, Unauthorized
from kopilka.services.context import Actor, Role

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer kp_…")
_header = APIKeyHeader(name="X-Api-Key", auto_error=False, description="X-Api-Key: kp_…")


# The dependencies are ``async``: FastAPI runs a plain ``def`` dependency in a worker thread,
# and each hand-off to a thread and back costs more CPU than these do. Only a key that is
# not cached (or whose last-used time is due) goes to a thread, for the database.
async def container(request: Request) -> Container:
    found: Container = request.app.state.container
    return found


async def current_actor(
    request: Request,
    bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
    header_key: str | None = Depends(_header),
) -> Actor:
    raw = bearer.credentials if bearer else header_key
    if not raw:
        raise Unauthorized("Send an API key: Authorization: Bearer <key>.", code="missing_api_key")
    tenants = (await container(request)).tenants
    actor = tenants.authenticate_cached(raw)
    if actor is None:
        actor = await run_in_threadpool(tenants.authenticate, raw)
    request.state.actor = actor
    return actor


def require(*roles: Role) -> Callable[[Actor], Awaitable[Actor]]:
    """A dependency admitting only ``roles``."""

    async def check(actor: Actor = Depends(current_actor)) -> Actor:
        if actor.role not in roles:
            allowed = ", ".join(r.value for r in roles)
            raise Forbidden(f"This needs a key with role {allowed}.", code="role_not_allowed")
        return actor

    return check


ANY_ROLE = require(Role.ADMIN, Role.POS, Role.READONLY)
ADMIN = require(Role.ADMIN)
TILL = require(Role.ADMIN, Role.POS)
