"""Schema-driven fuzzing of the whole HTTP API with schemathesis.

Every operation of the published OpenAPI document gets requests generated from it, valid and
invalid, sent in process to the real app with a real key, on a tenant that has data (the path
names its real member, card, program... or a random one). Every answer must:

- never be a server error;
- if it is a 4xx, be an RFC 9457 problem with a stable ``code`` (and, for
  ``validation_failed``, the path of every invalid field), and have written nothing;
- conform to the document: a documented status, content type and body; an invalid request is
  refused.

Hypothesis is derandomized: every run sends the same requests (a failure prints the one
that failed as a curl command). The world is built once per worker and database and the
operations a worker runs share it, so what an earlier operation wrote may differ with how
xdist hands out the tests; the checks hold in any state, and the operations that would spoil
the world for the others act on resources of their own.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from schemathesis import Case, CheckContext, CheckFunction, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi import checks as openapi_checks
from schemathesis.specs.openapi.schemas import OpenApiSchema

from kopilka.adapters.db.tables import metadata, tenants
from kopilka.api.app import create_app
from kopilka.api.openapi import PROBLEM_MEDIA_TYPE
from tests.conftest import BACKENDS, Merchant, make_merchant
from tests.e2e.helpers import (
    PROBLEM_KEYS,
    World,
    backend_engine,
    build_world,
    enrol,
    fresh_container,
)
from tests.e2e.routes import ROUTES

# Examples per operation and generation mode. Breadth over depth: 138 operations x 2 modes x
# 2 databases must stay a small part of `make test`. On a developer's machine,
# KOPILKA_FUZZ_EXAMPLES=200 hunts deeper and KOPILKA_FUZZ_SEED=<n> elsewhere.
EXAMPLES = int(os.environ.get("KOPILKA_FUZZ_EXAMPLES", "6"))
SEED = os.environ.get("KOPILKA_FUZZ_SEED")
# Balance enquiries count every attempt, refused ones included, against brute-forcing card
# numbers and PINs: that row is written on purpose.
COUNTED_WHEN_REFUSED = {"gift_card_attempts"}
CODE = re.compile(r"^[a-z][a-z0-9_]*$")
# The keys are sent by the test, not generated: a random X-Api-Key would only ever get a 401.
# Nor NUL characters: every route refuses them before anything else (test_bad_input.py).
CONFIG = schemathesis.Config.from_dict(
    {"generation": {"with-security-parameters": False, "allow-x00": False}}
)
# Operations that would spoil the world for the ones run after them act on resources of their
# own: with the shared member erased, or the tenant's card scheme changed, most later requests
# would get the same refusal. The tenant-wide settings change on a second tenant.
OWN_MEMBER = {"eraseMember": "erasable", "blockMember": "blockable"}
OWN_CARD = {"blockCard", "replaceCard"}
OTHER_TENANT = {"updateTenant", "setGiftCardPolicy"}


AnyCase = Case[Any]


@dataclass
class Fuzz:
    """One database with a tenant's world, the app serving it and its published schema."""

    engine: sa.Engine
    merchant: Merchant
    world: World
    spare: dict[str, str]  # members and a card for OWN_MEMBER and OWN_CARD
    other_tenant: Merchant
    schema: OpenApiSchema


_FUZZ: dict[str, Fuzz] = {}


def _still_there(fuzz: Fuzz) -> bool:
    with fuzz.engine.connect() as conn:
        found = set(conn.execute(sa.select(tenants.c.id)).scalars())
    return found == {fuzz.merchant.tenant_id, fuzz.other_tenant.tenant_id}


@pytest.fixture(params=BACKENDS)
def fuzz(request: pytest.FixtureRequest) -> Fuzz:
    """A tenant with data of every kind, built once per worker and database; built again
    when another test has emptied the database (fuzzed writes keep adding to it)."""
    engine = backend_engine(request)
    found = _FUZZ.get(request.param)
    if found is None or not _still_there(found):
        container = fresh_container(engine)
        app = create_app(container)
        merchant = make_merchant(container, "Fuzz One")
        with TestClient(app, raise_server_exceptions=False) as client:
            world = build_world(client, merchant, serial_base=1000, phone="+79161234567")
            spare = {name: enrol(client, merchant, name=name)["id"] for name in OWN_MEMBER.values()}
            spare["card"] = enrol(client, merchant, name="card")["cards"][0]["number"]
        other = make_merchant(container, "Fuzz Two")
        schema = schemathesis.openapi.from_dict(app.openapi(), config=CONFIG)
        schema.app = app
        found = _FUZZ[request.param] = Fuzz(engine, merchant, world, spare, other, schema)
    return found


_ROW_SQL: dict[str, str] = {}
_COUNTED = [t.name for t in metadata.sorted_tables if t.name not in COUNTED_WHEN_REFUSED]


def _rows(engine: sa.Engine) -> tuple[int, ...]:
    """Rows in each table (but those a refused request may write on purpose), in one query.

    Plain SQL, built once: building helpers.writes' statement anew costs more than running
    it, and this runs after every generated request."""
    sql = _ROW_SQL.get(engine.dialect.name)
    if sql is None:
        quote = engine.dialect.identifier_preparer.quote
        counts = ", ".join(f"(SELECT count(*) FROM {quote(name)})" for name in _COUNTED)
        sql = _ROW_SQL[engine.dialect.name] = f"SELECT {counts}"
    with engine.connect() as conn:
        return tuple(conn.exec_driver_sql(sql).one())


# Which of the world's codes a {code} names, by what comes before it in the path.
CODES = {
    "clubs": "club_code",
    "coupons": "coupon_code",
    "campaigns": "campaign_code",
    "draws": "draw_code",
}


def _real_path_values(fuzz: Fuzz, operation_id: str, path: str) -> dict[str, str]:
    """The world's resource for each path parameter of ``path``."""
    world = fuzz.world
    kind = re.search(r"/([a-z-]+)/{code}", path)
    key = CODES.get(kind.group(1), "") if kind else ""
    values = {
        "member_id": fuzz.spare.get(OWN_MEMBER.get(operation_id, ""), world.member_id),
        "hold_id": world.hold_id,
        "receipt_id": world.receipt_id,
        "transaction_id": world.transaction_id,
        "api_key_id": world.api_key_id,
        "number": world.extra["gift_card_number"]
        if path.startswith("/v1/gift-cards/")
        else fuzz.spare["card"]
        if operation_id in OWN_CARD
        else world.card_number,
        "code": world.extra.get(key, world.program_code),
        **world.extra,
    }
    return {name: values[name] for name in re.findall(r"{(\w+)}", path)}


# ---- checks beyond schemathesis' own -------------------------------------------------------
def _header(response: Response, name: str) -> str:
    for key, values in response.headers.items():
        if key.lower() == name:
            return values[0]
    return ""


def problem_shape(ctx: CheckContext, response: Response, case: AnyCase) -> bool | None:
    """A 4xx is an RFC 9457 problem with a stable code; a validation error names its fields."""
    if not 400 <= response.status_code < 500:
        return None
    assert _header(response, "content-type").startswith(PROBLEM_MEDIA_TYPE), response.headers
    body = json.loads(response.content)
    missing = [key for key in PROBLEM_KEYS if key not in body]
    assert not missing, f"problem without {missing}: {body}"
    assert body["status"] == response.status_code, body
    assert isinstance(body["code"], str), body
    assert CODE.match(body["code"]), body
    assert body["type"] == f"urn:kopilka:problem:{body['code']}", body
    assert body["request_id"] == _header(response, "x-request-id"), body
    if body["code"] == "validation_failed":
        assert body.get("errors"), f"validation_failed names no field: {body}"
        for error in body["errors"]:
            assert isinstance(error.get("path"), list), error
            assert all(isinstance(p, str | int) for p in error["path"]), error
            assert isinstance(error.get("message"), str), error
            assert error["message"], error
            assert isinstance(error.get("code"), str), error
            assert CODE.match(error["code"]), error
    return True


CHECKS: list[CheckFunction] = [
    not_a_server_error,
    problem_shape,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.negative_data_rejection,
]


def _cases(fuzz: Fuzz, operation_id: str) -> st.SearchStrategy[AnyCase]:
    """Valid and invalid requests, naming the world's resources or random ones."""
    operation = fuzz.schema.find_operation_by_id(operation_id)
    real = _real_path_values(fuzz, operation_id, operation.path)
    # The document's own examples (the till's receipt) are valid requests that go deep.
    strategies = operation.get_strategies_from_examples(path_parameters=real or None)
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        strategies.append(operation.as_strategy(mode))
        if real:
            strategies.append(operation.as_strategy(mode, path_parameters=real))
    return st.one_of(strategies)


@pytest.mark.parametrize("operation_id", list(ROUTES))
def test_fuzzed_requests_answer_as_documented(fuzz: Fuzz, operation_id: str) -> None:
    route = ROUTES[operation_id]
    # The till's routes take the till's key (its outlet is implied); the rest the admin's.
    role = "pos" if route.path.startswith("/v1/purchases") else "admin"
    tenant = fuzz.other_tenant if operation_id in OTHER_TENANT else fuzz.merchant
    headers = tenant.headers(role) if route.roles else {}
    last = [_rows(fuzz.engine)]

    @settings(
        max_examples=EXAMPLES * 2,
        derandomize=SEED is None,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=_cases(fuzz, operation_id))
    def check(case: AnyCase) -> None:
        response = case.call(headers=headers)
        now = _rows(fuzz.engine)
        if 400 <= response.status_code < 500:
            assert now == last[0], f"a refused request wrote rows: {case.as_curl_command()}"
        last[0] = now
        case.validate_response(response, checks=CHECKS, headers=headers)

    (seed(int(SEED))(check) if SEED else check)()


def test_every_operation_of_the_document_is_fuzzed(fuzz: Fuzz) -> None:
    """The parametrization (tests/e2e/routes.py) names every operation the app publishes."""
    paths = fuzz.schema.raw_schema["paths"]
    published = {op["operationId"] for item in paths.values() for op in item.values()}
    assert published == set(ROUTES)
