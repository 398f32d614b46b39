"""Request ids on every response, problem+json for every error, the OpenAPI document."""

from __future__ import annotations

import re

import pytest
import structlog.testing
from fastapi.testclient import TestClient

from tests.e2e.helpers import Pair, assert_problem, ok
from tests.e2e.routes import ROUTES

HEX_ID = re.compile(r"^[0-9a-f]{32}$")


def test_every_kind_of_response_carries_a_request_id(pair: Pair) -> None:
    client, a = pair.client, pair.a
    h = a.merchant.headers()
    responses = [
        client.get("/healthz"),
        client.get("/openapi.json"),
        client.get("/docs"),
        client.get(f"/v1/members/{a.member_id}", headers=h),  # 200
        client.get("/v1/members"),  # 401
        client.get("/v1/tenant", headers=a.merchant.headers("pos")),  # 403
        client.get("/v1/members/01900000-0000-7000-8000-000000000000", headers=h),  # 404
        client.get("/v1/nowhere", headers=h),  # 404 from the router
        client.delete("/v1/members", headers=h),  # 405
        client.get("/v1/members", headers=h, params={"limit": 0}),  # 422
        client.post(
            "/v1/members", headers={**h, "Content-Type": "application/json"}, content=b"{"
        ),  # 400
    ]
    for r in responses:
        assert HEX_ID.match(r.headers["x-request-id"]), (r.url, r.headers)
    assert len({r.headers["x-request-id"] for r in responses}) == len(responses)
    for r in responses[4:]:
        assert_problem(r, r.status_code)  # problem+json whose request_id is the header's


def test_unknown_routes_and_methods_are_problems(pair: Pair) -> None:
    h = pair.a.merchant.headers()
    assert_problem(pair.client.get("/v1/nowhere", headers=h), 404, "not_found")
    assert_problem(pair.client.delete("/v1/members", headers=h), 405, "method_not_allowed")


@pytest.mark.parametrize("incoming", ["abc-123", "req.42:retry_1", "A" * 64])
def test_a_safe_incoming_request_id_is_echoed(pair: Pair, incoming: str) -> None:
    r = pair.client.get("/healthz", headers={"X-Request-Id": incoming})
    assert r.headers["x-request-id"] == incoming
    r = pair.client.get("/v1/members", headers={"X-Request-Id": incoming})
    assert assert_problem(r, 401)["request_id"] == incoming


@pytest.mark.parametrize(
    "incoming", ["", "has space", "A" * 65, "<script>", "id\u00e9", "a/b", "x;drop"]
)
def test_an_unsafe_incoming_request_id_is_replaced(pair: Pair, incoming: str) -> None:
    r = pair.client.get("/v1/members", headers={"X-Request-Id": incoming.encode()})
    body = assert_problem(r, 401)
    assert HEX_ID.match(r.headers["x-request-id"])
    assert body["request_id"] == r.headers["x-request-id"]


def test_an_unexpected_error_is_a_bare_500_problem_with_the_request_id(
    client: TestClient,
) -> None:
    def boom() -> None:
        raise RuntimeError("secret internals")

    client.app.add_api_route("/boom", boom, methods=["GET"])  # type: ignore[attr-defined]
    # Captured, not rendered: the console renderer's traceback with locals takes seconds.
    with structlog.testing.capture_logs() as logs:
        r = client.get("/boom", headers={"X-Request-Id": "trace-500"})
    assert any(e["event"] == "unhandled_error" for e in logs), logs
    body = assert_problem(r, 500, "internal_error")
    assert r.headers["x-request-id"] == "trace-500" == body["request_id"]
    assert "secret" not in r.text
    assert "Traceback" not in r.text


def test_openapi_operations_have_unique_ids(pair: Pair) -> None:
    schema = ok(pair.client.get("/openapi.json"))
    operations = [
        (path, method, op) for path, item in schema["paths"].items() for method, op in item.items()
    ]
    ids = [op.get("operationId") for _, _, op in operations]
    assert all(ids), [(p, m) for p, m, op in operations if not op.get("operationId")]
    assert len(ids) == len(set(ids))
    assert set(ids) == set(ROUTES)
    for path, method, op in operations:
        route = ROUTES[op["operationId"]]
        assert (route.method, route.path) == (method.upper(), path)
        if route.roles:  # the document tells clients a key is needed
            assert op.get("security"), op["operationId"]


def test_openapi_documents_every_error_as_a_problem(pair: Pair) -> None:
    """Each operation documents its 4xx answers as application/problem+json (FastAPI's own
    422, ``{"detail": [...]}`` as application/json, is never sent)."""
    schema = ok(pair.client.get("/openapi.json"))
    problem = {"schema": {"$ref": "#/components/schemas/Problem"}}
    for path, item in schema["paths"].items():
        for method, op in item.items():
            errors = {s: r for s, r in op["responses"].items() if s.startswith("4")}
            assert {"422", "4XX"} <= set(errors), (method, path, op["responses"])
            for status, response in errors.items():
                assert response["content"] == {"application/problem+json": problem}, (
                    method,
                    path,
                    status,
                )
    components = schema["components"]["schemas"]
    assert "HTTPValidationError" not in components
    assert {"code", "status", "request_id", "errors"} <= set(components["Problem"]["properties"])
    # The answer it documents is the one sent.
    r = pair.client.get("/v1/members", headers=pair.a.merchant.headers(), params={"limit": 0})
    body = assert_problem(r, 422, "validation_failed")
    assert body["errors"][0]["path"] == ["query", "limit"]


def test_docs_pages_answer(pair: Pair) -> None:
    r = pair.client.get("/docs")
    assert r.status_code == 200
    assert "text/html" in r.headers["content-type"]
    assert "/openapi.json" in r.text
    assert pair.client.get("/redoc").status_code == 200
