"""RFC 9457 problem details: every error has a stable ``code`` and, for 422, field paths."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kopilka.domain.errors import KopilkaError

PROBLEM_TYPE = "urn:kopilka:problem:{code}"
log = structlog.get_logger("kopilka.api")

_PYDANTIC_CODES = {
    "missing": "required",
    "extra_forbidden": "unknown_field",
    "json_invalid": "malformed_json",
}


class MalformedBody(KopilkaError):
    """A body that cannot be parsed at all: 400, where 422 means parsed but invalid."""

    status = 400
    code = "malformed_json"
    title = "Malformed body"


def problem(
    request: Request,
    status: int,
    code: str,
    title: str,
    detail: str,
    errors: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE.format(code=code),
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "instance": request.url.path,
        "request_id": getattr(request.state, "request_id", None),
    }
    if errors:
        body["errors"] = errors
    if extra:
        body.update({k: v for k, v in extra.items() if k not in body})
    headers = {}
    retry_after = (extra or {}).get("retry_after")
    if isinstance(retry_after, int) and not isinstance(retry_after, bool):
        headers["Retry-After"] = str(max(retry_after, 0))  # 429s and retryable 409s
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(
        body, status_code=status, media_type="application/problem+json", headers=headers
    )


def _field_path(loc: tuple[Any, ...]) -> list[str | int]:
    # FastAPI prefixes the location (body/query/path/header); keep it, it tells where.
    return [part for part in loc if part != "__root__"]


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(KopilkaError)
    async def _kopilka_error(request: Request, exc: KopilkaError) -> JSONResponse:
        errors = [{"path": list(e.path), "message": e.message, "code": e.code} for e in exc.errors]
        return problem(request, exc.status, exc.code, exc.title, exc.detail, errors, exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        malformed = False
        for err in exc.errors():
            kind = str(err.get("type", "invalid"))
            if kind == "json_invalid":
                malformed = True
            errors.append(
                {
                    "path": _field_path(tuple(err.get("loc", ()))),
                    "message": str(err.get("msg", "Invalid value")),
                    "code": _PYDANTIC_CODES.get(kind, kind),
                }
            )
        if malformed:
            return problem(
                request,
                400,
                "malformed_json",
                "Malformed JSON",
                "The request body is not valid JSON.",
                errors,
            )
        return problem(
            request,
            422,
            "validation_failed",
            "Validation failed",
            "The request has invalid fields.",
            errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {
            404: "not_found",
            405: "method_not_allowed",
            401: "unauthorized",
            403: "forbidden",
        }.get(exc.status_code, "http_error")
        return problem(request, exc.status_code, code, str(exc.detail), str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error", path=request.url.path)
        return internal_error(request)


def internal_error(request: Request) -> JSONResponse:
    """The 500 answer: no details, only the request id to find the log line by."""
    return problem(
        request,
        500,
        "internal_error",
        "Internal error",
        "Something went wrong on our side; the request id helps us find it.",
    )
