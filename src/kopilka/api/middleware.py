"""Request ids, timing, input guards and the last-resort 500, as plain ASGI middleware
(cheaper than a per-request task, and it sees every response, errors included)."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kopilka.api.guards import nul_character_errors
from kopilka.api.problems import internal_error, problem

log = structlog.get_logger("kopilka.http")
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The largest bodies are bulk upserts (10,000 products) and card batches.
MAX_BODY_BYTES = 16 * 2**20


class RequestContextMiddleware:
    """Gives every request an id (the caller's ``X-Request-Id`` when it is safe), puts it in
    the logs and on every response, reports the server-side duration as ``Server-Timing``,
    refuses NUL characters and bodies over MAX_BODY_BYTES (413), and turns an unexpected
    error into a problem+json 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        rid = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                elapsed = (time.perf_counter() - started) * 1000
                headers: list[Any] = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode()))
                headers.append((b"server-timing", f"app;dur={elapsed:.2f}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=rid)
        try:
            guarded = await self._guarded_receive(scope, receive, send_with_headers)
            if guarded is not None:
                await self.app(scope, guarded, send_with_headers)
        except Exception:
            log.exception("unhandled_error", path=scope.get("path"))
            if not response_started:
                response = internal_error(Request(scope))
                await response(scope, _no_body, send_with_headers)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")
            log.info(
                "request",
                request_id=rid,
                method=scope.get("method"),
                path=scope.get("path"),
                status=status,
                ms=round((time.perf_counter() - started) * 1000, 2),
            )

    async def _guarded_receive(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """Read the body once (it is small), refuse NUL characters, then replay it."""
        body = b""
        if scope.get("method") in _BODY_METHODS:
            more = True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > MAX_BODY_BYTES:  # refused before more of it is read
                    response = problem(
                        Request(scope),
                        413,
                        "body_too_large",
                        "Body too large",
                        f"The request body is larger than {MAX_BODY_BYTES // 2**20} MB.",
                    )
                    await response(scope, _no_body, send)
                    return None
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        request = Request(scope, replay)
        errors = await nul_character_errors(request)
        if errors:
            response = problem(
                request,
                422,
                "validation_failed",
                "Validation failed",
                "The request has invalid fields.",
                errors,
            )
            await response(scope, _no_body, send)
            return None
        sent = False
        return replay


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}
