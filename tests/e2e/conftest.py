"""Fixtures for the HTTP end-to-end tests: a quicker database reset, and two tenants with
resources of every kind."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from kopilka.adapters.db.tables import tenants
from kopilka.api.app import create_app
from tests.conftest import BACKENDS, Merchant, make_merchant
from tests.e2e.helpers import (
    Pair,
    World,
    backend_engine,
    build_world,
    delete_all,
    fresh_container,
    writes,
)


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest) -> Engine:
    """Like the suite-wide ``engine`` (SQLite, then PostgreSQL), emptied with DELETE."""
    if request.param == "postgresql":
        eng: Engine = request.getfixturevalue("pg_engine")
    else:
        if request.node.get_closest_marker("postgres_only"):
            pytest.skip("PostgreSQL only")
        eng = request.getfixturevalue("sqlite_engine")
    delete_all(eng)
    return eng


@pytest.fixture
def world(client: TestClient, merchant: Merchant) -> World:
    """Tenant A's resources."""
    return build_world(client, merchant, serial_base=1000, phone="+79161234567")


@pytest.fixture
def other_world(client: TestClient, other_merchant: Merchant) -> World:
    """Tenant B's resources (card serials, phone, program code and SKU of its own)."""
    return build_world(client, other_merchant, serial_base=5000, phone="+79167654321")


_PAIRS: dict[str, Pair] = {}


def _still_there(pair: Pair) -> bool:
    with pair.engine.connect() as conn:
        found = set(conn.execute(sa.select(tenants.c.id)).scalars())
    return found == {pair.a.merchant.tenant_id, pair.b.merchant.tenant_id}


@pytest.fixture(params=BACKENDS)
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    """Tenants A and B with every kind of resource, built once per worker and database.

    For tests whose requests are refused or only read: building two worlds for each of a
    few hundred such tests would take most of the suite's time. The pair is rebuilt when
    another test has emptied the database, or when a test wrote anything to it.
    """
    engine = backend_engine(request)
    found = _PAIRS.get(request.param)
    if found is None or not _still_there(found):
        container = fresh_container(engine)
        client = TestClient(create_app(container), raise_server_exceptions=False)
        a = build_world(
            client, make_merchant(container, "Coffee One"), serial_base=1000, phone="+79161234567"
        )
        b = build_world(
            client, make_merchant(container, "Rival Two"), serial_base=5000, phone="+79167654321"
        )
        found = _PAIRS[request.param] = Pair(client, engine, a, b, writes(engine))
    yield found
    if writes(engine) != found.rows:
        _PAIRS.pop(request.param, None)
