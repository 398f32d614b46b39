"""Shared fixtures: every database test runs on SQLite and on PostgreSQL.

PostgreSQL comes from ``KOPILKA_TEST_PG_URL`` (default: the local server). Each test
session (and each xdist worker) gets its own database, migrated once; tables are emptied
between tests. Without a reachable server the PostgreSQL half is skipped, unless
``CI=true``, where that is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine, make_url

import kopilka.adapters.db.mechanics  # noqa: F401 - registers the mechanics' tables
from kopilka.adapters.db.engine import create_db_engine
from kopilka.adapters.db.schema import upgrade
from kopilka.adapters.db.tables import metadata
from kopilka.api.app import create_app
from kopilka.bootstrap import Container, bootstrap
from kopilka.logging import configure_logging
from kopilka.services.context import Actor, Role
from kopilka.settings import Settings
from kopilka.testing import FakeClock

PG_URL = os.environ.get(
    "KOPILKA_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
BACKENDS = ("sqlite", "postgresql")


def _pg_reachable() -> str | None:
    try:
        engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # any failure to connect means "no PostgreSQL here"
        return str(exc).splitlines()[0]
    return None


def pytest_configure(config: pytest.Config) -> None:
    # JSON lines as in production (no rich tracebacks full of local variables), and quiet.
    configure_logging("WARNING", json_lines=True)


def pytest_sessionstart(session: pytest.Session) -> None:
    problem = _pg_reachable()
    session.config.stash[_PG_PROBLEM] = problem
    if problem and IN_CI:
        raise pytest.UsageError(f"CI=true needs PostgreSQL at {PG_URL}: {problem}")


_PG_PROBLEM = pytest.StashKey[str | None]()


def pytest_report_header(config: pytest.Config) -> str:
    problem = config.stash.get(_PG_PROBLEM, None)
    return f"postgresql: {'SKIPPED (' + problem + ')' if problem else PG_URL}"


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@contextmanager
def scratch_pg_database(prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for this test process (its URL), dropped after."""
    name = f"{prefix}_{_worker()}_{os.getpid()}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    problem = request.config.stash.get(_PG_PROBLEM, None)
    if problem:
        pytest.skip(f"PostgreSQL not reachable: {problem}")
    with scratch_pg_database("kopilka_test") as url:
        # 16 + 16 overflow, and 8 for the ledger's one-call writes (adapters/db/pg_ledger.py),
        # per test process: two xdist workers stay under PostgreSQL's default max_connections
        # of 100, even when both run a 32-till race at once.
        engine = create_db_engine(url, pool_size=16)
        upgrade(engine)
        yield engine
        engine.dispose()


@pytest.fixture(scope="session")
def sqlite_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    path = tmp_path_factory.mktemp("sqlite") / f"kopilka-{_worker()}.db"
    engine = create_db_engine(f"sqlite:///{path}")
    upgrade(engine)
    yield engine
    engine.dispose()


def empty_tables(engine: Engine) -> None:
    names = [t.name for t in reversed(metadata.sorted_tables)]
    # DELETE, not TRUNCATE: on the small tables of a test it is ~30x faster on PostgreSQL.
    with engine.begin() as conn:
        for name in names:
            conn.execute(sa.text(f"DELETE FROM {name}"))


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest) -> Engine:
    """An empty, migrated database: SQLite, then PostgreSQL."""
    if request.param == "postgresql":
        eng: Engine = request.getfixturevalue("pg_engine")
    else:
        if request.node.get_closest_marker("postgres_only"):
            pytest.skip("PostgreSQL only")
        eng = request.getfixturevalue("sqlite_engine")
    empty_tables(eng)
    return eng


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def container(engine: Engine, clock: FakeClock) -> Container:
    settings = Settings(database_url=engine.url.render_as_string(hide_password=False))
    return bootstrap(settings, clock=clock, engine=engine)


@dataclass
class Merchant:
    """A tenant with an outlet and keys of every role, ready for API calls."""

    name: str
    tenant_id: uuid.UUID
    actor: Actor
    outlet_code: str
    admin_key: str
    pos_key: str
    readonly_key: str

    def headers(self, role: str = "admin", **extra: str) -> dict[str, str]:
        key = {"admin": self.admin_key, "pos": self.pos_key, "readonly": self.readonly_key}[role]
        return {"Authorization": f"Bearer {key}", **extra}


def make_merchant(c: Container, name: str, **tenant_options: Any) -> Merchant:
    row = c.tenants.create_tenant(name, **tenant_options)
    actor = Actor(tenant_id=row["id"], name="test", role=Role.ADMIN)
    c.tenants.create_outlet(actor, "OUT-1", name="Outlet one")
    admin = c.tenants.create_api_key(actor, Role.ADMIN)
    pos = c.tenants.create_api_key(actor, Role.POS, outlet_code="OUT-1")
    readonly = c.tenants.create_api_key(actor, Role.READONLY)
    return Merchant(name, row["id"], actor, "OUT-1", admin.key, pos.key, readonly.key)


@pytest.fixture
def merchant(container: Container) -> Merchant:
    return make_merchant(container, "Coffee One")


@pytest.fixture
def other_merchant(container: Container) -> Merchant:
    return make_merchant(container, "Rival Two")


@pytest.fixture
def client(container: Container) -> Iterator[TestClient]:
    with TestClient(create_app(container), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
