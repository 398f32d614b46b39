"""The embedded database's in-process write queue (adapters/db/engine.py): writers wait on
a Python lock instead of sleeping in SQLite's busy handler, and always hand it on."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from kopilka.adapters.db import engine as engine_module
from kopilka.adapters.db.engine import DatabaseBusy, create_db_engine
from kopilka.adapters.db.unit_of_work import SqlUnitOfWorkFactory


@pytest.fixture
def factory(tmp_path: Path) -> SqlUnitOfWorkFactory:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'lock.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (n INTEGER NOT NULL)")
    return SqlUnitOfWorkFactory(engine)


def _write(factory: SqlUnitOfWorkFactory, n: int, *, commit: bool = True) -> None:
    with factory(write=True) as uow:
        uow.execute(sa.text("INSERT INTO t (n) VALUES (:n)"), {"n": n})
        if commit:
            uow.commit()


def _fail_midway(factory: SqlUnitOfWorkFactory) -> None:
    with factory(write=True) as uow:
        uow.execute(sa.text("INSERT INTO t (n) VALUES (3)"))
        raise RuntimeError("boom")


def _count(factory: SqlUnitOfWorkFactory) -> int:
    with factory(write=False) as uow:
        return int(uow.execute(sa.text("SELECT count(*) FROM t")).scalar_one())


def test_the_slot_is_handed_on_after_commit_rollback_and_error(
    factory: SqlUnitOfWorkFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "WRITE_LOCK_TIMEOUT_SECONDS", 0.5)
    _write(factory, 1)
    _write(factory, 2, commit=False)  # rolled back
    with pytest.raises(RuntimeError):
        _fail_midway(factory)
    _write(factory, 4)  # would wait 0.5 s and fail if any of the above kept the slot
    assert _count(factory) == 2


def test_a_second_writer_waits_for_the_first_and_times_out_cleanly(
    factory: SqlUnitOfWorkFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "WRITE_LOCK_TIMEOUT_SECONDS", 0.3)
    with factory(write=True) as first:
        first.execute(sa.text("INSERT INTO t (n) VALUES (1)"))
        errors: list[BaseException] = []

        def second() -> None:
            try:
                _write(factory, 2)
            except BaseException as exc:  # recorded for the assertion
                errors.append(exc)

        thread = threading.Thread(target=second)
        thread.start()
        thread.join()
        assert len(errors) == 1
        assert isinstance(errors[0], DatabaseBusy)
        first.commit()
    _write(factory, 3)  # the failed waiter left nothing held
    assert _count(factory) == 2


def test_readers_do_not_queue_behind_a_writer(factory: SqlUnitOfWorkFactory) -> None:
    with factory(write=True) as writer:
        writer.execute(sa.text("INSERT INTO t (n) VALUES (1)"))
        started = time.monotonic()
        assert _count(factory) == 0  # WAL: the reader sees the last commit at once
        assert time.monotonic() - started < 1.0
        writer.commit()
    assert _count(factory) == 1


def test_many_threads_write_without_busy_errors(factory: SqlUnitOfWorkFactory) -> None:
    errors: list[BaseException] = []

    def worker(base: int) -> None:
        try:
            for i in range(25):
                _write(factory, base + i)
        except BaseException as exc:  # recorded for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k * 100,)) for k in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert _count(factory) == 16 * 25
