"""Errors the domain and services raise; each carries a stable ``code`` the API exposes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FieldError:
    """One problem with one input field; ``path`` is a list of keys and indexes."""

    path: tuple[str | int, ...]
    message: str
    code: str = "invalid"


class KopilkaError(Exception):
    """Base of every expected error; maps to an RFC 9457 problem."""

    status: int = 400
    code: str = "bad_request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        errors: list[FieldError] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.errors = errors or []
        self.extra = extra or {}


class NotFound(KopilkaError):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(KopilkaError):
    status = 409
    code = "conflict"
    title = "Conflict"


class ValidationFailed(KopilkaError):
    status = 422
    code = "validation_failed"
    title = "Validation failed"


class BusinessRuleViolation(KopilkaError):
    """The request is well-formed but the business state forbids it (e.g. not enough points)."""

    status = 422
    code = "rule_violation"
    title = "Not allowed"


class Forbidden(KopilkaError):
    status = 403
    code = "forbidden"
    title = "Forbidden"


class Unauthorized(KopilkaError):
    status = 401
    code = "unauthorized"
    title = "Unauthorized"


class InsufficientPoints(BusinessRuleViolation):
    code = "insufficient_points"
    title = "Not enough points"


@dataclass
class ErrorCollector:
    """Collects field errors so a request reports all of them at once."""

    errors: list[FieldError] = field(default_factory=list)

    def add(self, path: tuple[str | int, ...], message: str, code: str = "invalid") -> None:
        self.errors.append(FieldError(path, message, code))

    def raise_if_any(self, detail: str = "The request has invalid fields.") -> None:
        if self.errors:
            raise ValidationFailed(detail, errors=list(self.errors))
