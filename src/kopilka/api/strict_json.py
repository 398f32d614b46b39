"""Request bodies parsed as strict JSON: ``NaN``, ``Infinity`` and numbers beyond a double's
range are refused as malformed (400 ``malformed_json``), like any other unparsable body.

Python's ``json`` accepts those spellings and turns ``1e400`` into infinity. Inside a free-form
JSON field (a member's or a product's attributes) such a value could not be stored:
PostgreSQL refused it (a 500) and SQLite kept ``null`` instead. Every router uses
``StrictJsonRoute``; ``tests/e2e/test_bad_input.py`` checks that no route is left out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError


class _NotJson(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _NotJson(f"{text} is out of range")
    return value


def strict_loads(raw: bytes | str) -> Any:
    """``json.loads`` without NaN or infinities; every failure is a ``JSONDecodeError``
    (too deep a nesting and an integer of over 4,300 digits included)."""
    try:
        return json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
    except json.JSONDecodeError:
        raise
    except (ValueError, RecursionError) as exc:
        text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
        message = str(exc) if isinstance(exc, _NotJson) else "too deep or too long a value"
        raise json.JSONDecodeError(message, text, 0) from exc


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = strict_loads(await self.body())
        return self._json


class StrictJsonRoute(APIRoute):
    """A route whose JSON body is parsed by ``strict_loads``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            # Same scope and channels: only the body's parsing changes.
            strict = StrictJsonRequest(request.scope, request.receive, request._send)
            return await handler(strict)

        return strict_handler


def exact_types(model: type[BaseModel]) -> Callable[[Request], Coroutine[Any, Any, None]]:
    """A dependency that reads the JSON body again with ``model`` in strict mode, for bodies
    stored as documents: FastAPI validates leniently, so ``"30"`` or ``true`` would pass as
    30 or 1 days. A failure is the same 422 as any other invalid body."""

    async def check(request: Request) -> None:
        try:
            model.model_validate_json(await request.body(), strict=True)
        except ValidationError as exc:
            raise RequestValidationError(
                [{**err, "loc": ("body", *err["loc"])} for err in exc.errors(include_url=False)]
            ) from None

    return check
