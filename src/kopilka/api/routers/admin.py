"""The merchant's own set-up: tenant settings, outlets, API keys."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, status

from kopilka.api.auth import ADMIN, container
from kopilka.api.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    OutletCreate,
    OutletOut,
    TenantOut,
    TenantPatch,
)
from kopilka.api.strict_json import StrictJsonRoute
from kopilka.bootstrap import Container
from kopilka.services.context import Actor, Role

router = APIRouter(route_class=StrictJsonRoute, tags=["admin"])


@router.get("/v1/tenant", response_model=TenantOut, operation_id="getTenant")
def get_tenant(actor: Actor = Depends(ADMIN), c: Container = Depends(container)) -> TenantOut:
    return TenantOut.model_validate(c.tenants.get_tenant(actor))


@router.patch("/v1/tenant", response_model=TenantOut, operation_id="updateTenant")
def update_tenant(
    body: TenantPatch, actor: Actor = Depends(ADMIN), c: Container = Depends(container)
) -> TenantOut:
    values = body.model_dump(exclude_unset=True)
    values = {k: v for k, v in values.items() if v is not None}
    return TenantOut.model_validate(c.tenants.update_tenant(actor, values))


@router.get("/v1/outlets", response_model=list[OutletOut], operation_id="listOutlets")
def list_outlets(
    actor: Actor = Depends(ADMIN), c: Container = Depends(container)
) -> list[OutletOut]:
    return [OutletOut.model_validate(r) for r in c.tenants.list_outlets(actor)]


@router.post(
    "/v1/outlets",
    status_code=status.HTTP_201_CREATED,
    response_model=OutletOut,
    operation_id="createOutlet",
)
def create_outlet(
    body: OutletCreate, actor: Actor = Depends(ADMIN), c: Container = Depends(container)
) -> OutletOut:
    row = c.tenants.create_outlet(
        actor, body.code, name=body.name, timezone=body.timezone, region=body.region, tags=body.tags
    )
    return OutletOut.model_validate(row)


@router.get("/v1/api-keys", response_model=list[ApiKeyOut], operation_id="listApiKeys")
def list_keys(actor: Actor = Depends(ADMIN), c: Container = Depends(container)) -> list[ApiKeyOut]:
    return [ApiKeyOut.model_validate(r) for r in c.tenants.list_api_keys(actor)]


@router.post(
    "/v1/api-keys",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyCreated,
    operation_id="createApiKey",
)
def create_key(
    body: ApiKeyCreate, actor: Actor = Depends(ADMIN), c: Container = Depends(container)
) -> ApiKeyCreated:
    issued = c.tenants.create_api_key(
        actor, Role(body.role), outlet_code=body.outlet, name=body.name
    )
    rows = {r["id"]: r for r in c.tenants.list_api_keys(actor)}
    return ApiKeyCreated.model_validate({**rows[issued.id], "key": issued.key})


@router.delete("/v1/api-keys/{api_key_id}", response_model=ApiKeyOut, operation_id="revokeApiKey")
def revoke_key(
    api_key_id: uuid.UUID, actor: Actor = Depends(ADMIN), c: Container = Depends(container)
) -> ApiKeyOut:
    return ApiKeyOut.model_validate(c.tenants.revoke_api_key(actor, api_key_id))
