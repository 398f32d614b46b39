"""Group commit of the ledger's fast path (adapters/db/pg_ledger.CallPool): concurrent
writes of one process share a pipeline and a commit, each keeps its own answer, and one
call's failure never becomes its neighbours'."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from functools import partial
from typing import Any

import httpx
import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from kopilka.adapters.db.pg_ledger import CallPool, _Call, _encode
from kopilka.adapters.db.tables import ledger_transactions, tenants
from kopilka.api.app import create_app
from kopilka.bootstrap import Container, bootstrap
from kopilka.domain.errors import InsufficientPoints
from kopilka.domain.ledger.model import AccountKind
from kopilka.services.verify import verify_ledger
from kopilka.services.views import OperationResult
from kopilka.settings import Settings
from kopilka.testing import FakeClock
from tests.conftest import Merchant, empty_tables, make_merchant
from tests.integration.test_concurrency import run_together

START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def grouped(engine: Engine, clock: FakeClock, batch_max: int) -> Container:
    empty_tables(engine)
    clock.set(START)
    settings = Settings(
        database_url=engine.url.render_as_string(hide_password=False),
        ledger_group_commit=batch_max,
    )
    return bootstrap(settings, clock=clock, engine=engine)


def call_pool(c: Container) -> CallPool:
    functions = c.uow_factory.ledger_functions()
    assert functions is not None
    return functions.pool


def balance(c: Container, m: Merchant, member: uuid.UUID) -> int:
    return c.ledger.balance(m.actor, member).available


def transactions(c: Container) -> int:
    with c.engine.connect() as conn:
        return int(
            conn.execute(sa.select(sa.func.count()).select_from(ledger_transactions)).scalar_one()
        )


def spend_arguments(c: Container, shop: Merchant, member: uuid.UUID, key: str) -> dict[str, Any]:
    """A redemption of 10 points as ``PgLedgerFunctions.redemption_call`` takes it (the
    tenant's redeemed account must be cached: spend once through the service first)."""
    tenant = shop.actor.tenant_id
    with c.engine.connect() as conn:
        currency = str(
            conn.execute(
                sa.select(tenants.c.points_currency).where(tenants.c.id == tenant)
            ).scalar_one()
        )
    functions = c.uow_factory.ledger_functions()
    assert functions is not None
    counter = functions.cached_account(tenant, AccountKind.REDEEMED, currency)
    assert counter is not None
    return {
        "tenant_id": tenant,
        "member_id": member,
        "currency": currency,
        "key": key,
        "request_hash": "hash-" + key,
        "now": START,
        "txn_id": uuid.uuid4(),
        "points": 10,
        "actor": "apikey:test",
        "source_type": "pos",
        "source_id": key,
        "reason": None,
        "params": {},
        "counter_account": counter,
        "timezone": "Europe/Moscow",
        "soon": START,
        "response": {"transactions": [{"postings": [{}]}], "balance": {}},
    }


@pytest.fixture
def pg(engine: Engine) -> Engine:
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only")
    return engine


def test_concurrent_writes_share_commits_and_each_gets_its_own_answer(
    pg: Engine, clock: FakeClock
) -> None:
    c = grouped(pg, clock, 32)
    shop = make_merchant(c, "Batch Shop")
    members = [c.members.enroll(shop.actor, {"phone": f"+7916300{i:04d}"}).id for i in range(8)]
    pool = call_pool(c)
    before = pool.batched_calls
    # 8 members x (accrual of 100, then 3 spends of 30 racing each other and the others)
    answers = run_together(
        [
            partial(c.ledger.accrue, shop.actor, member, 100, idempotency_key=f"a-{member}")
            for member in members
        ]
    )
    assert all(not isinstance(a, Exception) for a in answers)
    spends = run_together(
        [
            partial(c.ledger.redeem, shop.actor, member, 30, idempotency_key=f"r-{member}-{n}")
            for member in members
            for n in range(3)
        ]
    )
    assert all(not isinstance(s, Exception) for s in spends), spends
    for member in members:
        assert balance(c, shop, member) == 10
    # each answer is its own: the spender, the amount and the balance after it
    for spend in spends:
        txn = spend.transactions[0]
        assert txn.amount == 30
        assert txn.kind == "redemption"
    afters = sorted(
        (s.transactions[0].member_id, s.transactions[0].postings[0].balance_after) for s in spends
    )
    assert afters == sorted((m, b) for m in members for b in (70, 40, 10))
    assert pool.batched_calls > before  # some of them did share a commit
    assert verify_ledger(c.uow_factory).ok
    # replays of batched writes answer from the stored response
    again = c.ledger.redeem(shop.actor, members[0], 30, idempotency_key=f"r-{members[0]}-0")
    assert again.transactions[0].id in {s.transactions[0].id for s in spends}
    assert balance(c, shop, members[0]) == 10


def test_overspending_in_one_batch_fails_alone(pg: Engine, clock: FakeClock) -> None:
    """Five spends of 30 against 100 points, all at once: three succeed, two are refused,
    the balance is exact, whether or not they shared a batch."""
    c = grouped(pg, clock, 32)
    shop = make_merchant(c, "Tight Shop")
    member = c.members.enroll(shop.actor, {"phone": "+79163100000"}).id
    c.ledger.accrue(shop.actor, member, 100)
    outcomes = run_together(
        [
            partial(c.ledger.redeem, shop.actor, member, 30, idempotency_key=f"s-{n}")
            for n in range(5)
        ]
    )
    refused = [o for o in outcomes if isinstance(o, InsufficientPoints)]
    assert len(refused) == 2
    assert len(outcomes) - len(refused) == 3
    assert balance(c, shop, member) == 10
    assert verify_ledger(c.uow_factory).ok


def test_a_failing_statement_rolls_its_batch_back_and_the_rest_run_again(
    pg: Engine, clock: FakeClock
) -> None:
    """A call the server rejects (here a malformed id) aborts the pipeline's transaction:
    the pool runs every call of the batch again on its own, so the good ones are written
    exactly once and only the bad one gets the error."""
    c = grouped(pg, clock, 32)
    shop = make_merchant(c, "Retry Shop")
    member = c.members.enroll(shop.actor, {"phone": "+79163200000"}).id
    c.ledger.accrue(shop.actor, member, 100)
    c.ledger.redeem(shop.actor, member, 10)  # opens and caches the redeemed account
    pool = call_pool(c)
    functions = c.uow_factory.ledger_functions()
    assert functions is not None

    def spend(member_text: str, key: str) -> _Call:
        call = functions.redemption_call(**spend_arguments(c, shop, member, key))
        encoded = [_encode(p) for p in call.params]
        encoded[1] = member_text.encode()
        return _Call(call.sql, encoded, encoded[1] or b"")

    good, bad, also_good = (
        spend(str(member), "g1"),
        spend("not-a-uuid", "b1"),
        spend(str(member), "g2"),
    )
    before = (pool.batches_retried, transactions(c))
    held = pool._checkout()
    try:
        pool._run(held, [good, bad, also_good])
    finally:
        pool._checkin(held, True)
    assert pool.batches_retried == before[0] + 1
    assert bad.error is not None
    assert bad.row is None
    assert good.error is None
    assert good.row is not None
    assert good.row[0] == b"ok"
    assert also_good.error is None
    assert also_good.row is not None
    assert also_good.row[0] == b"ok"
    assert transactions(c) == before[1] + 2  # written once each, none twice
    assert balance(c, shop, member) == 70


def test_group_commit_off_runs_each_call_alone(pg: Engine, clock: FakeClock) -> None:
    c = grouped(pg, clock, 1)
    shop = make_merchant(c, "Alone Shop")
    members = [c.members.enroll(shop.actor, {"phone": f"+7916330{i:04d}"}).id for i in range(4)]
    pool = call_pool(c)
    before = pool.batched_calls
    answers = run_together([partial(c.ledger.accrue, shop.actor, m, 50) for m in members])
    assert all(not isinstance(a, Exception) for a in answers)
    assert pool.batched_calls == before
    assert [balance(c, shop, m) for m in members] == [50] * 4


# ---- on an event loop (LedgerService.accrue_async / redeem_async) ---------------------
def test_coroutines_of_one_loop_share_commits(pg: Engine, clock: FakeClock) -> None:
    c = grouped(pg, clock, 32)
    shop = make_merchant(c, "Loop Shop")
    members = [c.members.enroll(shop.actor, {"phone": f"+7916340{i:04d}"}).id for i in range(8)]
    c.ledger.accrue(shop.actor, members[0], 1)  # warms the tenant and account caches
    pool = call_pool(c)
    before = pool.batched_calls

    async def scenario() -> tuple[list[OperationResult], list[OperationResult | BaseException]]:
        credits = await asyncio.gather(
            *(c.ledger.accrue_async(shop.actor, m, 100, idempotency_key=f"la-{m}") for m in members)
        )
        spends = await asyncio.gather(
            *(
                c.ledger.redeem_async(shop.actor, m, 40, idempotency_key=f"lr-{m}-{n}")
                for m in members
                for n in range(3)
            ),
            return_exceptions=True,
        )
        return credits, spends

    credits, spends = asyncio.run(scenario())
    assert len(credits) == 8
    refused = [s for s in spends if isinstance(s, InsufficientPoints)]
    # 100 points (101 for the first member) cover two spends of 40 each
    assert len(refused) == 8
    assert all(isinstance(s, (OperationResult, InsufficientPoints)) for s in spends)
    assert [balance(c, shop, m) for m in members] == [21] + [20] * 7
    assert pool.batched_calls > before
    assert verify_ledger(c.uow_factory).ok


def test_a_loop_hands_the_python_path_to_a_thread(engine: Engine, clock: FakeClock) -> None:
    """Whatever the fast path declines (SQLite, explicit lot dates, a cold cache) runs the
    Python path in a worker thread, and the answer is the same kind of answer."""
    empty_tables(engine)
    clock.set(START)
    c = bootstrap(
        Settings(database_url=engine.url.render_as_string(hide_password=False)),
        clock=clock,
        engine=engine,
    )
    shop = make_merchant(c, "Thread Shop")
    member = c.members.enroll(shop.actor, {"phone": "+79163500000"}).id

    async def scenario() -> tuple[OperationResult, OperationResult, OperationResult]:
        first = await c.ledger.accrue_async(shop.actor, member, 50, idempotency_key="t1")
        dated = await c.ledger.accrue_async(
            shop.actor, member, 30, expires_at=datetime(2027, 1, 1, tzinfo=UTC)
        )
        spent = await c.ledger.redeem_async(shop.actor, member, 60, idempotency_key="t2")
        return first, dated, spent

    first, dated, spent = asyncio.run(scenario())
    assert [r.balance.available for r in (first, dated, spent) if r.balance] == [50, 80, 20]
    again = asyncio.run(c.ledger.redeem_async(shop.actor, member, 60, idempotency_key="t2"))
    assert again.transactions[0].id == spent.transactions[0].id
    assert balance(c, shop, member) == 20


def test_a_failing_call_on_a_loop_fails_alone(pg: Engine, clock: FakeClock) -> None:
    c = grouped(pg, clock, 32)
    shop = make_merchant(c, "Loop Retry Shop")
    member = c.members.enroll(shop.actor, {"phone": "+79163600000"}).id
    c.ledger.accrue(shop.actor, member, 100)
    c.ledger.redeem(shop.actor, member, 10)
    pool = call_pool(c)
    functions = c.uow_factory.ledger_functions()
    assert functions is not None
    good = functions.redemption_call(**spend_arguments(c, shop, member, "lg1"))
    bad = functions.redemption_call(**spend_arguments(c, shop, member, "lb1"))
    bad = bad._replace(params=(bad.params[0], "not-a-uuid", *bad.params[2:]))
    retried = pool.batches_retried

    async def scenario() -> list[Any]:
        return list(
            await asyncio.gather(
                functions.run_async(good), functions.run_async(bad), return_exceptions=True
            )
        )

    ok, failed = asyncio.run(scenario())
    assert ok[0] == "ok"
    assert isinstance(failed, psycopg.Error)
    assert pool.batches_retried == retried + 1
    assert balance(c, shop, member) == 80


def test_concurrent_http_writes_share_commits(engine: Engine, clock: FakeClock) -> None:
    """The accrual and redemption routes await the service on the event loop: requests in
    flight together share commits on PostgreSQL, and every answer is the request's own
    (on SQLite each runs the Python path in a worker thread)."""
    c = grouped(engine, clock, 32)
    shop = make_merchant(c, "Http Shop")
    members = [c.members.enroll(shop.actor, {"phone": f"+7916370{i:04d}"}).id for i in range(6)]
    functions = c.uow_factory.ledger_functions()
    before = functions.pool.batched_calls if functions else 0
    app = create_app(c)

    async def scenario() -> tuple[list[httpx.Response], list[httpx.Response]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://kopilka") as http:
            credits = await asyncio.gather(
                *(
                    http.post(
                        f"/v1/members/{m}/accruals",
                        json={"points": 100, "pending_days": 0},
                        headers=shop.headers("admin", **{"Idempotency-Key": f"ha-{m}"}),
                    )
                    for m in members
                )
            )
            spends = await asyncio.gather(
                *(
                    http.post(
                        f"/v1/members/{m}/redemptions",
                        json={"points": 30},
                        headers=shop.headers("pos", **{"Idempotency-Key": f"hr-{m}-{n}"}),
                    )
                    for m in members
                    for n in range(4)
                )
            )
        return credits, spends

    credits, spends = asyncio.run(scenario())
    assert [r.status_code for r in credits] == [201] * 6
    codes = sorted(r.status_code for r in spends)
    assert codes == [201] * 18 + [422] * 6  # three spends of 30 fit in 100, the fourth not
    assert all(r.json()["code"] == "insufficient_points" for r in spends if r.status_code == 422)
    for r in spends:
        if r.status_code == 201:
            posting = r.json()["transactions"][0]["postings"][0]
            assert posting["member_id"] == r.request.url.path.split("/")[3]
    assert [balance(c, shop, m) for m in members] == [10] * 6
    if functions is not None:
        assert functions.pool.batched_calls > before
    assert verify_ledger(c.uow_factory).ok


def test_a_cancelled_flush_fails_its_calls_and_reuses_no_connection(
    pg: Engine, clock: FakeClock
) -> None:
    """The loop shuts down (its flush task is cancelled) while the database holds a batch:
    the callers get an error that says the outcome is unknown, the connection is closed
    rather than reused with unread results, and the next call works."""
    c = grouped(pg, clock, 32)
    shop = make_merchant(c, "Cancel Shop")
    member = c.members.enroll(shop.actor, {"phone": "+79163800000"}).id
    c.ledger.accrue(shop.actor, member, 100)
    c.ledger.redeem(shop.actor, member, 10)
    functions = c.uow_factory.ledger_functions()
    assert functions is not None
    pool = call_pool(c)
    first = functions.redemption_call(**spend_arguments(c, shop, member, "cx1"))
    later = functions.redemption_call(**spend_arguments(c, shop, member, "cx2"))

    async def scenario(blocker: sa.Connection) -> Any:
        waiting = asyncio.ensure_future(functions.run_async(first))
        batcher = pool._batcher()
        for _ in range(100):  # until the batch is out and waits on the member's lock
            await asyncio.sleep(0.01)
            if batcher.flushing is not None:
                break
        await asyncio.sleep(0.1)
        assert batcher.flushing is not None
        batcher.flushing.cancel()
        with pytest.raises(psycopg.OperationalError, match="outcome is unknown"):
            await waiting
        blocker.rollback()  # the held batch may now run: its outcome is the server's
        return await functions.run_async(later)

    with pg.connect() as blocker:
        blocker.execute(
            sa.text("SELECT id FROM accounts WHERE member_id = :m FOR UPDATE"), {"m": member}
        )
        outcome = asyncio.run(scenario(blocker))
    assert outcome[0] == "ok"
    assert balance(c, shop, member) in (70, 80)  # the cancelled spend went through or not
    assert verify_ledger(c.uow_factory).ok


def test_a_cancelled_checkout_gives_its_connection_back(pg: Engine, clock: FakeClock) -> None:
    """A coroutine cancelled while a new connection opens in a thread: the thread's
    connection and its slot go back to the pool."""
    c = grouped(pg, clock, 32)
    pool = call_pool(c)
    pool.dispose()  # no idle connection: the checkout opens one in a thread

    async def scenario() -> None:
        checkout = asyncio.ensure_future(pool._checkout_async())
        await asyncio.sleep(0)  # it now waits for the thread
        checkout.cancel()
        with pytest.raises(asyncio.CancelledError):
            await checkout
        for _ in range(300):
            await asyncio.sleep(0.01)
            if pool._idle:
                break

    asyncio.run(scenario())
    assert len(pool._idle) == 1
    slots = [pool._slots.acquire(blocking=False) for _ in range(pool._size)]
    for _ in range(sum(slots)):
        pool._slots.release()
    assert all(slots)
