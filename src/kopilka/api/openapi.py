"""The published OpenAPI document tells the truth about errors: every operation may answer a
4xx, and every error is an RFC 9457 ``application/problem+json`` body (see ``problems.py``).

FastAPI documents only its own 422 (``HTTPValidationError``, ``{"detail": [...]}`` as
``application/json``), which this API never sends. Clients generated from the document (and
schema-driven fuzzers) then reject every real error answer as undocumented.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

PROBLEM_MEDIA_TYPE = "application/problem+json"
_REF = "#/components/schemas/{model}"
_FASTAPI_422 = {"HTTPValidationError", "ValidationError"}
_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options", "trace"})


class ProblemFieldError(BaseModel):
    """One invalid input: where (``["body", "lines", 0, "qty"]``), what, and a stable code."""

    path: list[str | int]
    message: str
    code: str


class Problem(BaseModel):
    """An RFC 9457 problem. ``code`` is stable (snake_case) and what clients branch on; some
    problems add members of their own (e.g. ``retry_after``)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["urn:kopilka:problem:member_not_found"])
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$", examples=["member_not_found"])
    instance: str
    request_id: str | None
    errors: list[ProblemFieldError] = Field(
        default_factory=list,
        description="For validation_failed: every invalid field, with its path.",
    )


def _problem_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": _REF.format(model="Problem")}}},
    }


_ERRORS = {
    "422": "Invalid input (code validation_failed, each field in errors), or a business rule "
    "refused the request",
    "4XX": "Refused (bad JSON, no or wrong key, not found, conflict...): a problem whose code "
    "says why",
}


def document_problems(schema: dict[str, Any]) -> None:
    """Give every operation its problem+json error answers, in place."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    problem = Problem.model_json_schema(ref_template=_REF)
    components.update(problem.pop("$defs", {}))
    components["Problem"] = problem
    for item in schema.get("paths", {}).values():
        for method, operation in item.items():
            if method not in _METHODS:
                continue
            responses = operation.setdefault("responses", {})
            for status, description in _ERRORS.items():
                responses[status] = _problem_response(description)
            for status, response in responses.items():
                # An error declared by a route (e.g. a 429) has no body schema of its own.
                if status.startswith("4") and "content" not in response:
                    response.update(_problem_response(response.get("description", "Refused")))
    for name in _FASTAPI_422:
        components.pop(name, None)


def problem_openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """``app.openapi`` with the problem answers documented (built once, then cached)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document_problems(generate())  # FastAPI caches it in app.openapi_schema
        assert app.openapi_schema is not None
        return app.openapi_schema

    return openapi
