"""API key authentication and role checks, as FastAPI dependencies."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from kopilka.bootstrap import Container
from kopilka.domain.errors import Forbidden, Unauthorized
from kopilka.services.context import Actor, Role

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer kp_…")
_header = APIKeyHeader(name="X-Api-Key", auto_error=False, description="X-Api-Key: kp_…")


def container(request: Request) -> Container:
    found: Container = request.app.state.container
    return found


def current_actor(
    request: Request,
    bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
    header_key: str | None = Depends(_header),
) -> Actor:
    raw = bearer.credentials if bearer else header_key
    if not raw:
        raise Unauthorized("Send an API key: Authorization: Bearer <key>.", code="missing_api_key")
    actor = container(request).tenants.authenticate(raw)
    request.state.actor = actor
    return actor


def require(*roles: Role) -> Callable[[Actor], Actor]:
    """A dependency admitting only ``roles``."""

    def check(actor: Actor = Depends(current_actor)) -> Actor:
        if actor.role not in roles:
            allowed = ", ".join(r.value for r in roles)
            raise Forbidden(f"This needs a key with role {allowed}.", code="role_not_allowed")
        return actor

    return check


ANY_ROLE = require(Role.ADMIN, Role.POS, Role.READONLY)
ADMIN = require(Role.ADMIN)
TILL = require(Role.ADMIN, Role.POS)
