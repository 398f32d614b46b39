"""Programs as versioned documents, and the product catalogue the rules need."""

from __future__ import annotations

from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Body, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from kopilka.adapters.documents.yaml_text import load_yaml
from kopilka.api.auth import ADMIN, ANY_ROLE, container
from kopilka.api.deps import DEFAULT_LIMIT, Limit
from kopilka.api.problems import MalformedBody
from kopilka.api.schemas import Flag, Moment
from kopilka.api.strict_json import StrictJsonRoute, strict_loads
from kopilka.bootstrap import Container
from kopilka.domain.errors import FieldError, ValidationFailed
from kopilka.services.catalog import ProductInput
from kopilka.services.context import Actor
from kopilka.services.programs import ProgramVersionView

router = APIRouter(route_class=StrictJsonRoute, tags=["programs"])
MAX_DOCUMENT_BYTES = 1_000_000


class ProgramPublish(BaseModel):
    model_config = ConfigDict(extra="forbid")
    document: dict[str, Any]
    starts_at: Moment | None = None
    ends_at: Moment | None = None


class ValidationReport(BaseModel):
    valid: bool
    errors: list[dict[str, Any]]


class ProductIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    name: Annotated[str, StringConstraints(max_length=300)] | None = None
    category: Annotated[str, StringConstraints(max_length=300)] | None = None
    brand: Annotated[str, StringConstraints(max_length=200)] | None = None
    tags: list[Annotated[str, StringConstraints(max_length=64)]] = Field(
        default_factory=list, max_length=50
    )
    attributes: dict[str, Any] = Field(default_factory=dict, max_length=100)
    price: Annotated[int, Field(ge=0, le=10**11, strict=True)] | None = None
    min_price: Annotated[int, Field(ge=0, le=10**11, strict=True)] | None = None
    no_discount: Flag = False
    no_points: Flag = False


class ProductsUpsert(BaseModel):
    model_config = ConfigDict(extra="forbid")
    products: list[ProductIn] = Field(min_length=1, max_length=10_000)


class ProductOut(BaseModel):
    sku: str
    name: str | None
    category: str | None
    brand: str | None
    tags: list[str]
    attributes: dict[str, Any]
    price: int | None
    min_price: int | None
    no_discount: bool
    no_points: bool


class ProductPage(BaseModel):
    items: list[ProductOut]
    next_cursor: str | None


class UpsertResult(BaseModel):
    upserted: int


async def _document_body(request: Request) -> Any:
    """JSON, or YAML when the Content-Type says so."""
    raw = await request.body()
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise ValidationFailed("The document is larger than 1 MB.", code="document_too_large")
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
    is_yaml = kind in ("application/yaml", "application/x-yaml", "text/yaml")
    try:
        if is_yaml:
            return load_yaml(raw.decode("utf-8"))
        return strict_loads(raw)
    except (ValueError, yaml.YAMLError, UnicodeDecodeError, RecursionError) as exc:
        # 400 like any other unparsable body (422 is for parsed but invalid fields).
        raise MalformedBody(
            "The body is not valid YAML." if is_yaml else "The request body is not valid JSON.",
            code="malformed_document" if is_yaml else "malformed_json",
        ) from exc


def _publish_body(data: Any) -> ProgramPublish:
    try:
        return ProgramPublish.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(
            "The request has invalid fields.",
            errors=[
                FieldError(
                    tuple(e["loc"]),
                    e["msg"],
                    "unknown_field" if e["type"] == "extra_forbidden" else e["type"],
                )
                for e in exc.errors()
            ],
        ) from exc


_PUBLISH_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": ProgramPublish.model_json_schema()},
            "application/yaml": {"schema": ProgramPublish.model_json_schema()},
        },
    }
}


@router.put(
    "/v1/programs/{code}",
    response_model=ProgramVersionView,
    operation_id="publishProgram",
    openapi_extra=_PUBLISH_SCHEMA,
)
async def publish_program(
    code: str, request: Request, actor: Actor = Depends(ADMIN), c: Container = Depends(container)
) -> ProgramVersionView:
    """Publish a new immutable version of a program (JSON or YAML body)."""
    body = _publish_body(await _document_body(request))
    return c.programs.publish(
        actor, code, body.document, starts_at=body.starts_at, ends_at=body.ends_at
    )


# Validation answers any body that parses with a report (a bare document is taken too), so
# the document promises no shape: an invalid one is a 200 with valid: false, not a 422.
_ANY_DOCUMENT = {"anyOf": [ProgramPublish.model_json_schema(), {}]}
_VALIDATE_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _ANY_DOCUMENT},
            "application/yaml": {"schema": _ANY_DOCUMENT},
        },
    }
}


@router.post(
    "/v1/programs/{code}/validate",
    response_model=ValidationReport,
    operation_id="validateProgram",
    openapi_extra=_VALIDATE_SCHEMA,
)
async def validate_program(
    code: str, request: Request, actor: Actor = Depends(ADMIN), c: Container = Depends(container)
) -> ValidationReport:
    """Check a document without publishing: every error with its path."""
    data = await _document_body(request)
    document = data.get("document", data) if isinstance(data, dict) else data
    errors = c.programs.validate(document)
    return ValidationReport(valid=not errors, errors=errors)


@router.get("/v1/programs", response_model=list[ProgramVersionView], operation_id="listPrograms")
def list_programs(
    actor: Actor = Depends(ANY_ROLE), c: Container = Depends(container)
) -> list[ProgramVersionView]:
    """Every version of every program, with its schedule."""
    return c.programs.versions(actor)


@router.get("/v1/programs/{code}", response_model=ProgramVersionView, operation_id="getProgram")
def get_program(
    code: str,
    version: int | None = Query(default=None, ge=1, le=1_000_000),
    in_force: bool = Query(default=False, description="the version the till uses now"),
    actor: Actor = Depends(ANY_ROLE),
    c: Container = Depends(container),
) -> ProgramVersionView:
    """A version by number, the one in force now (``in_force=true``; 404
    ``program_not_in_force`` when none is), or else the latest published, which may be
    scheduled for later or over (``in_force`` in the answer tells)."""
    return c.programs.get(actor, code, version, in_force=in_force)


@router.put("/v1/products", response_model=UpsertResult, operation_id="upsertProducts")
def upsert_products(
    body: ProductsUpsert = Body(...),
    actor: Actor = Depends(ADMIN),
    c: Container = Depends(container),
) -> UpsertResult:
    """Insert or update products by SKU (up to 10,000 per call)."""
    items = [
        ProductInput(
            sku=p.sku,
            name=p.name,
            category=p.category,
            brand=p.brand,
            tags=tuple(p.tags),
            attributes=p.attributes,
            price=p.price,
            min_price=p.min_price,
            no_discount=p.no_discount,
            no_points=p.no_points,
        )
        for p in body.products
    ]
    return UpsertResult(upserted=c.catalog.upsert(actor, items))


@router.get("/v1/products", response_model=ProductPage, operation_id="listProducts")
def list_products(
    cursor: str | None = Query(default=None, max_length=64),
    limit: Limit = DEFAULT_LIMIT,
    actor: Actor = Depends(ANY_ROLE),
    c: Container = Depends(container),
) -> ProductPage:
    rows = c.catalog.list_products(actor, cursor, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return ProductPage(
        items=[ProductOut.model_validate(r) for r in rows],
        next_cursor=rows[-1]["sku"] if more and rows else None,
    )
