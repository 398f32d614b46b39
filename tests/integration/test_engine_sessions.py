"""PostgreSQL sessions run in UTC, keeping any options the URL already sets."""

from __future__ import annotations

from datetime import UTC

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from kopilka.adapters.db.engine import create_db_engine
from kopilka.adapters.db.tables import lots


def test_sessions_run_in_utc_and_timestamps_come_back_as_pythons_utc(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW timezone").scalar_one() == "UTC"
        now = conn.exec_driver_sql("SELECT now()").scalar_one()
        # UtcDateTime passes these through without a conversion (the hot read of lots).
        assert now.tzinfo is UTC
        typed = conn.execute(sa.select(sa.cast(sa.func.now(), lots.c.created_at.type))).scalar()
        assert typed is not None
        assert typed.tzinfo is UTC


def test_options_in_the_url_are_kept(pg_engine: Engine) -> None:
    url = pg_engine.url.update_query_dict({"options": "-c statement_timeout=4321"})
    engine = create_db_engine(url.render_as_string(hide_password=False), pool_size=1)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar_one() == "4321ms"
            assert conn.exec_driver_sql("SHOW timezone").scalar_one() == "UTC"
    finally:
        engine.dispose()
