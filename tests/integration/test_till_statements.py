"""The SQL a member's purchase costs beyond the core statements, on both databases: the
family and the referral read with the member, the purchase count only for rules that need
it, the privileges only for a tenant that has a privilege reward. And, for each lookup
skipped, that the answer is still right when the mechanic is configured."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy import event

from kopilka.bootstrap import Container
from kopilka.domain.campaigns.definition import CampaignCreate
from kopilka.domain.ledger.model import AccountKind, TxnKind
from kopilka.domain.rewards.definition import RewardDefinition
from kopilka.domain.rules.facts import MemberFacts
from kopilka.services import rewards as rewards_service
from kopilka.services.context import Tenant, load_tenant
from kopilka.services.ledger import EXPIRING_SOON_DAYS, balance_view
from kopilka.services.ledger_book import MemberBook
from kopilka.services.ports import UnitOfWork
from kopilka.services.purchase_hooks import PurchaseHook
from kopilka.services.purchases import LineInput, MemberRef, ReceiptInput
from kopilka.services.rewards import RedeemInput
from kopilka.services.verify import verify_ledger
from kopilka.testing import FakeClock
from tests.conftest import Merchant

BASE = {"id": "base", "effects": [{"points_percent": 10}]}
PRICE = 100_000  # 1000 ₽: the base rule earns 100 points (10%, a point is 1 ₽)


def publish(c: Container, m: Merchant, *rules: dict[str, Any], **sections: Any) -> None:
    document = {
        "type": "bonus",
        "redemption": {"point_value": 100, "max_percent": 100},
        "rules": [BASE, *rules],
        **sections,
    }
    c.programs.publish(m.actor, "main", document)


def enrol(c: Container, m: Merchant, points: int = 0, **context: Any) -> uuid.UUID:
    member = c.members.enroll(m.actor, {}, context=context).id
    if points:
        c.ledger.accrue(m.actor, member, points)
    return member


def basket(member: uuid.UUID, price: int = PRICE, redeem: int | None = None) -> ReceiptInput:
    return ReceiptInput(
        lines=(LineInput(sku="TEA", qty=Decimal(1), price=price),),
        member=MemberRef(id=member),
        redeem_points=redeem,
        outlet="OUT-1",
    )


def buy(c: Container, m: Merchant, member: uuid.UUID, number: str, **kw: Any) -> Any:
    return c.purchases.confirm(m.actor, basket(member, **kw), number)


def rule_ids(answer: dict[str, Any]) -> set[str]:
    return {a["rule_id"] for a in answer["applied"]}


@contextmanager
def statements(c: Container) -> Iterator[list[str]]:
    """The SQL statements the engine sends inside the block."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(c.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(c.engine, "before_cursor_execute", record)


def on(seen: list[str], table: str) -> int:
    """How many of the statements name ``table``."""
    pattern = re.compile(rf"\b{table}\b")
    return sum(1 for s in seen if pattern.search(s))


def counts(seen: list[str]) -> int:
    """How many statements count the member's purchases."""
    return sum(1 for s in seen if "count(" in s.lower() and re.search(r"\breceipts\b", s))


def assert_ledger_ok(c: Container) -> None:
    report = verify_ledger(c.uow_factory)
    assert report.ok, {k: v for k, v in report.checks.items() if v}


# ---- no mechanics configured: the lookups are gone ---------------------------------------
def test_a_plain_confirm_asks_nothing_of_the_mechanics(
    container: Container, merchant: Merchant
) -> None:
    c, m = container, merchant
    publish(c, m)
    member = enrol(c, m, points=500)  # a balance: no re-check of the family after locking
    buy(c, m, member, "R-1")
    with statements(c) as seen:
        answer = buy(c, m, member, "R-2", redeem=100)
    assert answer["totals"]["points_redeemed"] == 100
    assert on(seen, "family_members") == 1  # was 2 (spend_gate, then the ledger book)
    assert counts(seen) == 0  # no rule needs the purchase count
    assert on(seen, "reward_orders") == 0  # the tenant has no privilege reward
    assert on(seen, "rewards") == 0  # ... which is known from the process cache
    assert on(seen, "referrals") == 1  # every purchase (see referrals.py)...
    # ... in the member's read, with the family: no statement of their own.
    member_read = [s for s in seen if re.search(r"\bfamily_members\b", s)]
    assert on(member_read, "referrals") == on(member_read, "members") == 1
    if c.engine.dialect.name == "postgresql":
        # The member, the accounts, the lots, the ledger's write, the receipt's write: no
        # lock or look-up of the receipt number first (its insert claims it), no products
        # (cached while the catalogue is unchanged).
        assert len(seen) == 5, seen
        assert "ON CONFLICT" in seen[-1]
    with statements(c) as seen:
        quote = c.purchases.calculate(m.actor, basket(member))
    assert (on(seen, "family_members"), counts(seen), on(seen, "reward_orders")) == (1, 0, 0)
    # 500, +100 earned on R-1, -100 spent and +90 earned on R-2: the book read in one go.
    assert quote["balance"]["available"] == 500 + 100 - 100 + 90
    if c.engine.dialect.name == "postgresql":
        # The member (with family and referral), then its accounts and open lots together:
        # nothing is locked, so one statement's snapshot serves both.
        assert len(seen) == 2, seen
        assert on(seen[1:], "accounts") == on(seen[1:], "lots") == 1
        # ... and no transaction around them (no BEGIN and COMMIT round trips), while a
        # confirm's statements share one.
        assert in_transaction(c, lambda: c.purchases.calculate(m.actor, basket(member))) == [
            False,
            False,
        ]
        assert set(in_transaction(c, lambda: buy(c, m, member, "R-3"))[1:]) == {True}
    assert_ledger_ok(c)


def in_transaction(c: Container, work: Any) -> list[bool]:
    """For each statement ``work`` sends (PostgreSQL): whether a transaction was open
    before it ran (psycopg sends BEGIN with a transaction's first statement)."""
    open_before: list[bool] = []

    def record(_conn: Any, cursor: Any, *_args: Any) -> None:
        status = cursor.connection.info.transaction_status
        open_before.append(status != psycopg.pq.TransactionStatus.IDLE)

    event.listen(c.engine, "before_cursor_execute", record)
    try:
        work()
    finally:
        event.remove(c.engine, "before_cursor_execute", record)
    return open_before


# ---- families: one lookup, and the pool still pays ---------------------------------------
def test_a_family_member_pays_from_the_pool_with_one_lookup(
    container: Container, merchant: Merchant
) -> None:
    c, m = container, merchant
    publish(c, m)
    owner, kid = enrol(c, m, points=300), enrol(c, m, points=200)
    c.families.create(m.actor, owner, "Ивановы")
    c.families.join(m.actor, kid, c.families.invite(m.actor, owner).code)
    with statements(c) as seen:
        paid = buy(c, m, kid, "R-1", redeem=450)
    assert on(seen, "family_members") == 1
    assert paid["totals"]["points_redeemed"] == 450
    assert paid["family"] == {"family_id": str(owner), "can_spend": True}
    # 50 left in the pool, plus the 10% the receipt earned (on 1000 - 450 = 550 ₽ paid).
    assert c.ledger.balance(m.actor, owner).available == 50 + 55
    assert c.ledger.balance(m.actor, kid).available == 50 + 55
    # The owner forbids paying: the till sees the pool, the kid cannot pay with it.
    c.families.set_can_spend(m.actor, kid, False)
    quote = c.purchases.calculate(m.actor, basket(kid))
    assert quote["family"]["can_spend"] is False
    assert quote["max_redeemable"] == 0
    assert_ledger_ok(c)


# ---- the purchase count: only for rules that read it -------------------------------------
def test_an_nth_purchase_rule_still_fires(container: Container, merchant: Merchant) -> None:
    c, m = container, merchant
    publish(
        c,
        m,
        {"id": "third", "when": {"nth_purchase": 3}, "effects": [{"points_fixed": 100}]},
        {"id": "welcome", "when": {"first_purchase": True}, "effects": [{"points_fixed": 7}]},
    )
    member = enrol(c, m)
    answers = []
    for i in range(4):
        with statements(c) as seen:
            answers.append(buy(c, m, member, f"R-{i}"))
        assert counts(seen) == 1  # a rule needs it: counted once
    assert [rule_ids(a) for a in answers] == [
        {"base", "welcome"},
        {"base"},
        {"base", "third"},
        {"base"},
    ]
    assert answers[2]["totals"]["points_earned"] == 100 + 100
    # A calculation counts too: a newcomer's first purchase is welcomed.
    newcomer = enrol(c, m)
    with statements(c) as seen:
        quote = c.purchases.calculate(m.actor, basket(newcomer))
    assert counts(seen) == 1
    assert rule_ids(quote) == {"base", "welcome"}


def test_a_campaigns_first_purchase_rule_still_fires(
    container: Container, merchant: Merchant
) -> None:
    """Rules a hook adds (a campaign's) are known only after the member's facts: the count
    is taken then."""
    c, m = container, merchant
    publish(c, m)
    body = CampaignCreate.model_validate(
        {
            "code": "hello",
            "name": {"ru": "Привет", "en": "Hello"},
            "schedule": {"start": "2026-01-01", "end": "2026-02-01"},
            "rules": [
                {"id": "first", "when": {"first_purchase": True}, "effects": [{"points_fixed": 77}]}
            ],
        }
    )
    c.campaigns.create(m.actor, body)
    c.campaigns.transition(m.actor, "hello", "schedule")
    member = enrol(c, m)
    with statements(c) as seen:
        first = buy(c, m, member, "R-1")
    assert counts(seen) == 1
    second = buy(c, m, member, "R-2")
    assert first["totals"]["points_earned"] == 100 + 77
    assert second["totals"]["points_earned"] == 100


def test_a_hook_that_reads_the_count_gets_it(container: Container, merchant: Merchant) -> None:
    c, m = container, merchant
    publish(c, m)
    seen_by_hook: list[int] = []

    class Counting(PurchaseHook):
        needs_purchase_count = True

        def member_facts(
            self,
            uow: UnitOfWork,
            tenant: Tenant,
            member: dict[str, Any],
            facts: MemberFacts,
            now: datetime,
        ) -> MemberFacts:
            assert facts.purchases_known
            seen_by_hook.append(facts.purchases_before)
            return facts

    member = enrol(c, m)
    buy(c, m, member, "R-1")
    c.purchases.hooks.append(Counting())
    buy(c, m, member, "R-2")
    c.purchases.calculate(m.actor, basket(member))
    assert seen_by_hook == [1, 2]


# ---- privileges: only for a tenant that has a privilege reward ---------------------------
PRIVILEGE = {
    "code": "DELIVERY",
    "kind": "privilege",
    "name": {"ru": "Доставка", "en": "Delivery"},
    "cost": 100,
    "privilege": {"duration_days": 30, "tag": "free_delivery"},
}
VIP = {"id": "vip", "when": {"member_tag": "free_delivery"}, "effects": [{"points_fixed": 50}]}


def test_a_privilege_still_applies(container: Container, merchant: Merchant) -> None:
    c, m = container, merchant
    publish(c, m, VIP)
    member = enrol(c, m, points=1000)
    with statements(c) as seen:
        before = buy(c, m, member, "R-1")  # the tenant has no privilege reward: cached so
    assert on(seen, "reward_orders") == 0
    assert "vip" not in rule_ids(before)
    # Created and ordered in this process: the next purchase looks the privileges up.
    c.rewards.create(m.actor, RewardDefinition.model_validate(PRIVILEGE))
    c.rewards.redeem(m.actor, member, RedeemInput(reward_code="DELIVERY"))
    with statements(c) as seen:
        after = buy(c, m, member, "R-2")
    assert on(seen, "reward_orders") == 1
    assert "vip" in rule_ids(after)
    other = enrol(c, m)  # a member without the privilege: looked up, none found
    assert "vip" not in rule_ids(buy(c, m, other, "R-3"))
    assert_ledger_ok(c)


def test_a_privilege_sold_by_another_process_is_seen_within_the_cache_ttl(
    container: Container, merchant: Merchant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process's first privilege reward reaches this process's tills when the cached
    "no" expires: the documented bound (the process cache's TTL)."""
    c, m = container, merchant
    publish(c, m, VIP)
    member = enrol(c, m, points=1000)
    c.rewards.create(m.actor, RewardDefinition.model_validate(PRIVILEGE))
    c.rewards.redeem(m.actor, member, RedeemInput(reward_code="DELIVERY"))
    # As if this process had cached "no privilege reward" just before another one sold it.
    monkeypatch.setattr(rewards_service, "_PRIVILEGE_TENANTS", set())
    key = ("reward_privileges", m.tenant_id)
    c.uow_factory.cache.put(key, False)
    assert "vip" not in rule_ids(buy(c, m, member, "R-1"))  # stale, within the TTL
    assert c.uow_factory.cache.ttl <= 5
    c.uow_factory.cache.drop(key)  # the TTL is over
    assert "vip" in rule_ids(buy(c, m, member, "R-2"))
    assert m.tenant_id in rewards_service._PRIVILEGE_TENANTS  # and known for good
    with statements(c) as seen:
        assert "vip" in rule_ids(buy(c, m, member, "R-3"))
    assert on(seen, "rewards") == 0


# ---- referrals: the reward still comes on the first qualifying purchase ---------------------
REFERRAL = {
    "referrer": {"points": 500},
    "referee": {"points": 300},
    "trigger": "first_purchase",
    "min_purchase": 100_000,
    "pending_days": 0,
}


def test_a_referral_reward_still_comes_on_the_first_qualifying_purchase(
    container: Container, merchant: Merchant
) -> None:
    c, m = container, merchant
    publish(c, m, referral=REFERRAL)
    referrer = enrol(c, m)
    buy(c, m, referrer, "R-0")  # looked up once: the referrer was not referred
    code = c.referrals.summary(m.actor, referrer).code
    friend = enrol(c, m, referral_code=code)
    # Too small to qualify: the referral still awaits, and is looked up again next time.
    small = buy(c, m, friend, "R-1", price=50_000)
    assert "referral" not in small
    with statements(c) as seen:
        first = buy(c, m, friend, "R-2", price=150_000)
    assert on(seen, "referrals") >= 1
    assert first["referral"]["status"] == "rewarded"
    assert (first["referral"]["referrer_points"], first["referral"]["referee_points"]) == (
        500,
        300,
    )
    assert c.ledger.balance(m.actor, referrer).available == 100 + 500
    assert "referral" not in buy(c, m, friend, "R-3", price=150_000)  # once only
    with statements(c) as seen:
        buy(c, m, referrer, "R-4")
    assert on(seen, "referrals") == 1  # looked up, and the referrer has none of their own
    with c.engine.connect() as conn:
        rewarded = conn.execute(
            sa.text("SELECT count(*) FROM referrals WHERE status = 'rewarded'")
        ).scalar_one()
    assert rewarded == 1
    assert_ledger_ok(c)


def test_a_held_receipt_confirmed_later_still_rewards_the_referral(
    container: Container, merchant: Merchant
) -> None:
    c, m = container, merchant
    publish(c, m, referral=REFERRAL)
    referrer = enrol(c, m)
    friend = enrol(c, m, referral_code=c.referrals.summary(m.actor, referrer).code)
    held = c.purchases.confirm(m.actor, basket(friend), "H-1", hold=True)
    assert "referral" not in held
    done = c.purchases.confirm_held(m.actor, uuid.UUID(held["receipt"]["id"]))
    assert done["referral"]["status"] == "rewarded"
    assert c.ledger.balance(m.actor, referrer).available == 500


# ---- open lots: a purchase that pays no points reads only the due ones ---------------------
def lot_reads(seen: list[str]) -> list[str]:
    """The statements that read a member's lots (the book's read, not the ledger's write)."""
    return [s for s in seen if re.search(r"\bFROM lots\b", s) and "is_open" in s]


def test_a_purchase_that_pays_no_points_reads_only_the_due_lots(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    # Earned points wait 10 days and last 30: every receipt leaves one open lot behind.
    c, m = container, merchant
    publish(c, m, pending_days=10, expiry={"kind": "rolling", "days": 30})
    member = enrol(c, m)
    buy(c, m, member, "R-0")  # lot A: 100 pending until day 10, expires day 30
    clock.advance(days=11)
    with statements(c) as seen:
        answer = buy(c, m, member, "R-1")  # lot B: pending until day 21, expires day 41
    # A was due: the purchase activated it, reading only the due lots.
    assert answer["balance"]["available"] == 100
    (read,) = lot_reads(seen)
    assert "expires_at <=" in read
    assert "available_at <=" in read
    for n in range(2, 6):  # lots C..F: more open lots the due read leaves out
        buy(c, m, member, f"R-{n}")
    clock.advance(days=25)  # day 36: A has expired, B..F have become spendable
    with statements(c) as seen:
        answer = buy(c, m, member, "R-6")
    assert answer["balance"]["available"] == 5 * 100
    (read,) = lot_reads(seen)
    assert "expires_at <=" in read
    assert c.ledger.balance(m.actor, member).available == 5 * 100
    # Paying with points reads every open lot, once, and burns the soonest to expire (B).
    with statements(c) as seen:
        paid = buy(c, m, member, "R-7", redeem=150)
    assert paid["totals"]["points_redeemed"] == 150
    (read,) = lot_reads(seen)
    assert "expires_at <=" not in read
    assert c.ledger.balance(m.actor, member).available == 5 * 100 - 150
    assert_ledger_ok(c)


def test_a_book_opened_not_to_spend_reads_the_open_lots_when_it_spends(
    container: Container, merchant: Merchant
) -> None:
    c, m = container, merchant
    publish(c, m)
    member = enrol(c, m)
    for n in range(3):
        buy(c, m, member, f"R-{n}")  # three lots of 100
    with c.uow_factory(write=True) as uow:
        tenant = load_tenant(uow, m.tenant_id)
        book = MemberBook(uow, tenant, member, m.actor, c.clock.now(), spends=False)
        assert book.plan.lots == {}  # nothing due
        txn = book.new_txn(TxnKind.REDEMPTION, 250, source_type="test")
        takes = book.take(txn, 250, book.system[AccountKind.REDEEMED])
        assert sum(t.amount for t in takes) == 250
        assert len(takes) == 3
        uow.ledger.apply(tenant.id, book.plan, c.clock.now())
        uow.commit()
    assert c.ledger.balance(m.actor, member).available == 50


def test_a_calculation_sums_the_lasting_lots_and_lists_the_rest(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    """A calculation (and the ledger's balance) reads the open lots a balance shows one by
    one (pending, expiring within the window) and only the sum of the others: the same
    balance as from every open lot."""
    c, m = container, merchant
    publish(c, m)
    member = enrol(c, m)
    start = clock.now()
    c.ledger.accrue(m.actor, member, 100)  # never expires
    c.ledger.accrue(m.actor, member, 200, expires_at=start + timedelta(days=90))
    c.ledger.accrue(m.actor, member, 40, expires_at=start + timedelta(days=10))
    c.ledger.accrue(m.actor, member, 25, available_at=start + timedelta(days=3))  # pending
    c.ledger.accrue(m.actor, member, 9, expires_at=start + timedelta(hours=1))
    clock.advance(hours=2)  # the 9 have expired; the clock's work has not run yet
    window_end = clock.now() + timedelta(days=EXPIRING_SOON_DAYS)
    c.ledger.accrue(m.actor, member, 7, expires_at=window_end)  # the window's last moment
    quote = c.purchases.calculate(m.actor, basket(member))
    assert quote["balance"] == c.ledger.balance(m.actor, member).to_json()
    # Both read the summed lots: the balance from every open lot, one by one, is the same.
    with c.uow_factory(write=False) as uow:
        tenant = load_tenant(uow, m.tenant_id)
        every_lot = balance_view(
            tenant,
            member,
            "points",
            uow.ledger.lock_member_accounts(m.tenant_id, member, "points", lock=False),
            uow.ledger.open_lots(m.tenant_id, member, "points"),
            clock.now(),
        )
    assert quote["balance"] == every_lot.to_json()
    assert quote["balance"]["available"] == 100 + 200 + 40 + 7
    assert quote["balance"]["pending"] == 25
    assert [e["amount"] for e in quote["balance"]["expiring_soon"]] == [40, 7]
    with c.uow_factory(write=False) as uow:
        accounts, shown, lasting = uow.ledger.read_member_balance(
            m.tenant_id, member, "points", window_end
        )
    assert sorted(lot.remaining for lot in shown) == [7, 9, 25, 40]
    assert lasting == 300
    assert accounts
