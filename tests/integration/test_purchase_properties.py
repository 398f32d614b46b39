"""Properties of purchases and refunds over random receipts, on SQLite and PostgreSQL.

A discount card and a bonus program are in force together; receipts have random lines
(weighed goods, free items, lines excluded from discounts and points) and pay a random part
with points. Then:

* undoing a purchase in full (a full refund, or a same-day cancel), whether it was confirmed
  at once or held first, puts the member's balance and every ledger account back as they were;
* any sequence of partial refunds never takes back more points than were earned nor gives
  back more than were spent, line by line, and once everything is refunded the refunds add
  up exactly to the receipt: points spent, points earned and money paid;
* as time passes between purchases (points pending, then active, then expired), the till's
  balance, read from only the lots it needs, equals the one built from every lot, and the
  ledger stays whole.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kopilka.bootstrap import Container
from kopilka.domain.errors import BusinessRuleViolation
from kopilka.services.context import Actor, load_tenant
from kopilka.services.ledger import balance_view
from kopilka.services.purchases import LineInput, MemberRef, ReceiptInput
from kopilka.services.verify import verify_ledger
from kopilka.testing import FakeClock
from tests.conftest import Merchant

PROPERTY_SETTINGS = settings(
    max_examples=15,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
CARD: dict[str, Any] = {
    "type": "discount",
    "rules": [
        {
            "id": "card",
            "lines": {"not": {"category": "tobacco"}},
            "effects": [{"discount_percent": 7}],
        }
    ],
}
BONUS: dict[str, Any] = {
    "type": "bonus",
    "refund_shortfall": "cash",
    "pending_days": 0,
    "redemption": {"point_value": 100, "max_percent": 60},
    "rules": [
        {"id": "base", "effects": [{"points_percent": 5}]},
        {
            "id": "coffee",
            "lines": {"category": "drinks/coffee"},
            "effects": [{"points_per_unit": 2}],
        },
        {"id": "big", "when": {"amount_gte": 100000}, "effects": [{"points_fixed": 25}]},
    ],
}
CATEGORIES = ("drinks/coffee", "food", "tobacco", "")

quantities = st.one_of(
    st.integers(1, 6).map(Decimal),
    st.integers(1, 5000).map(lambda n: Decimal(n) / 1000),  # weighed goods
)
lines_strategy = st.lists(
    st.builds(
        lambda sku, qty, price, category, flags: LineInput(
            sku=f"SKU-{sku}", qty=qty, price=price, category=category or None, flags=tuple(flags)
        ),
        st.integers(0, 9),
        quantities,
        st.one_of(st.just(0), st.integers(1, 60000)),
        st.sampled_from(CATEGORIES),
        st.sets(st.sampled_from(["no_discount", "no_points"])).map(sorted),
    ),
    min_size=1,
    max_size=6,
)


@pytest.fixture
def shop(container: Container, merchant: Merchant) -> Merchant:
    container.programs.publish(merchant.actor, "card", CARD)
    container.programs.publish(merchant.actor, "bonus", BONUS)
    return merchant


def new_member(container: Container, actor: Actor, points: int) -> uuid.UUID:
    member_id = container.members.enroll(actor, {"name": "Prop"}, issue_virtual_card=False).id
    if points:
        container.ledger.accrue(actor, member_id, points)
    return member_id


def receipt(member_id: uuid.UUID, lines: list[LineInput], redeem: int | None) -> ReceiptInput:
    return ReceiptInput(
        lines=tuple(lines), member=MemberRef(id=member_id), redeem_points=redeem, outlet="OUT-1"
    )


def account_balances(container: Container, tenant_id: uuid.UUID) -> dict[Any, int]:
    """Every account of the tenant (members' and the tenant's own) by id."""
    with container.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT id, balance FROM accounts WHERE tenant_id = :t"),
            {"t": tenant_id if container.engine.dialect.name == "postgresql" else tenant_id.hex},
        ).all()
    return {str(r.id): int(r.balance) for r in rows}


def available(container: Container, actor: Actor, member_id: uuid.UUID) -> int:
    return container.ledger.balance(actor, member_id).available


def buy(
    container: Container,
    actor: Actor,
    member_id: uuid.UUID,
    lines: list[LineInput],
    fraction: float,
    hold: bool,
) -> dict[str, Any]:
    """Confirm (or hold and confirm) a receipt paying ``fraction`` of what points may pay."""
    most = container.purchases.calculate(actor, receipt(member_id, lines, None))["max_redeemable"]
    redeem = int(most * fraction) or None
    number = uuid.uuid4().hex
    result = container.purchases.confirm(
        actor, receipt(member_id, lines, redeem), number, hold=hold
    )
    if hold:
        result = container.purchases.confirm_held(actor, uuid.UUID(result["receipt"]["id"]))
    assert result["totals"]["points_redeemed"] == (redeem or 0)
    return result


def assert_ledger_ok(container: Container, tenant_id: uuid.UUID) -> None:
    report = verify_ledger(container.uow_factory, tenant_id)
    assert report.ok, report.checks


@PROPERTY_SETTINGS
@given(
    lines=lines_strategy,
    start=st.integers(0, 3000),
    fraction=st.floats(0, 1),
    hold=st.booleans(),
    undo=st.sampled_from(["refund", "cancel"]),
)
def test_undoing_a_purchase_restores_every_account(
    container: Container,
    shop: Merchant,
    lines: list[LineInput],
    start: int,
    fraction: float,
    hold: bool,
    undo: str,
) -> None:
    actor = shop.actor
    member_id = new_member(container, actor, start)
    before = account_balances(container, shop.tenant_id)
    result = buy(container, actor, member_id, lines, fraction, hold)
    receipt_id = uuid.UUID(result["receipt"]["id"])
    totals = result["totals"]
    assert available(container, actor, member_id) == (
        start - totals["points_redeemed"] + totals["points_earned"]
    )
    if undo == "refund":
        back = container.purchases.refund(actor, receipt_id, "full", None)
        assert back["points_returned"] == totals["points_redeemed"]
        assert back["points_taken_back"] == totals["points_earned"]
        assert back["shortfall_points"] == 0
        assert back["money_to_return"] == totals["pay"]
    else:
        assert container.purchases.cancel(actor, receipt_id)["receipt"]["status"] == "cancelled"
    after = account_balances(container, shop.tenant_id)
    # Accounts opened by the purchase (a first purchase opens some) are back at zero.
    assert after == {**dict.fromkeys(after, 0), **before}
    assert available(container, actor, member_id) == start
    assert_ledger_ok(container, shop.tenant_id)


@PROPERTY_SETTINGS
@given(
    lines=lines_strategy,
    start=st.integers(0, 3000),
    fraction=st.floats(0, 1),
    hold=st.booleans(),
    spend=st.floats(0, 1),
    data=st.data(),
)
def test_partial_refunds_never_exceed_the_receipt_and_add_up(
    container: Container,
    shop: Merchant,
    lines: list[LineInput],
    start: int,
    fraction: float,
    hold: bool,
    spend: float,
    data: st.DataObject,
) -> None:
    actor = shop.actor
    member_id = new_member(container, actor, start)
    result = buy(container, actor, member_id, lines, fraction, hold)
    receipt_id = uuid.UUID(result["receipt"]["id"])
    totals = result["totals"]
    # The member may spend some of the points meanwhile: what cannot be taken back then
    # is a shortfall (this program settles it in cash), never a negative balance.
    spent_meanwhile = int(available(container, actor, member_id) * spend)
    if spent_meanwhile:
        container.ledger.redeem(actor, member_id, spent_meanwhile)
    bought = {li["line"]: li for li in result["lines"]}
    left = {n: Decimal(li["qty"]) for n, li in bought.items()}
    returned: dict[int, int] = dict.fromkeys(bought, 0)
    taken: dict[int, int] = dict.fromkeys(bought, 0)
    money: dict[int, int] = dict.fromkeys(bought, 0)
    refunds = []
    for step in range(data.draw(st.integers(0, 4), label="partial refunds")):
        open_lines = sorted(n for n, qty in left.items() if qty > 0)
        if not open_lines:
            break
        chosen = data.draw(
            st.lists(st.sampled_from(open_lines), min_size=1, max_size=3, unique=True),
            label="lines",
        )
        asked = []
        for n in chosen:
            thousandths = data.draw(st.integers(1, int(left[n] * 1000)), label=f"qty {n}")
            asked.append((n, Decimal(thousandths) / 1000))
        back = container.purchases.refund(actor, receipt_id, f"part-{step}", asked)
        refunds.append(back)
        for n, qty in asked:
            left[n] -= qty
        for line in back["lines"]:
            n = line["line"]
            returned[n] += line["points_returned"]
            taken[n] += sum(line["points_taken_back"].values())
            money[n] += line["money"]
            # Never more than the line spent, earned or cost.
            assert 0 <= returned[n] <= bought[n]["points_spent"]
            assert 0 <= taken[n] <= bought[n]["points_earned"]
            assert 0 <= money[n] <= bought[n]["pay"]
        assert available(container, actor, member_id) >= 0
    if any(qty > 0 for qty in left.values()):
        refunds.append(container.purchases.refund(actor, receipt_id, "rest", None))
    else:
        with pytest.raises(BusinessRuleViolation) as nothing:
            container.purchases.refund(actor, receipt_id, "rest", None)
        assert nothing.value.code == "nothing_to_refund"
    # Everything is refunded: the refunds add up to the receipt exactly.
    assert sum(r["points_returned"] for r in refunds) == totals["points_redeemed"]
    assert (
        sum(r["points_taken_back"] + r["shortfall_points"] for r in refunds)
        == (totals["points_earned"])
    )
    assert sum(r["money_refunded_before_shortfall"] for r in refunds) == totals["pay"]
    shortfall = sum(r["shortfall_points"] for r in refunds)
    assert sum(r["shortfall_money"] for r in refunds) == shortfall * 100
    assert shortfall <= spent_meanwhile
    final = available(container, actor, member_id)
    assert final == start - spent_meanwhile + shortfall
    assert final >= 0
    if not spent_meanwhile:
        assert shortfall == 0
    assert_ledger_ok(container, shop.tenant_id)


# ---- time passing: pending points mature and expire between purchases ---------------------
TIMED: dict[str, Any] = {
    **BONUS,
    "pending_days": 2,
    "expiry": {"kind": "rolling", "days": 6},
}
steps_strategy = st.lists(
    st.tuples(
        st.integers(0, 96),  # hours the clock moves first
        lines_strategy,
        st.one_of(st.none(), st.floats(0, 1)),  # share of what points may pay
        st.booleans(),  # then refund the purchase before this one in full
    ),
    min_size=1,
    max_size=6,
)


@pytest.fixture
def timed_shop(container: Container, merchant: Merchant) -> Merchant:
    container.programs.publish(merchant.actor, "bonus", TIMED)
    return merchant


def every_lot_balance(container: Container, shop: Merchant, member_id: uuid.UUID) -> Any:
    """The member's balance built from every open lot, one by one: the oracle for the till's
    reads, which take only the lots they need."""
    with container.uow_factory(write=False) as uow:
        tenant = load_tenant(uow, shop.tenant_id)
        ledger = uow.ledger
        return balance_view(
            tenant,
            member_id,
            "points",
            ledger.lock_member_accounts(shop.tenant_id, member_id, "points", lock=False),
            ledger.open_lots(shop.tenant_id, member_id, "points"),
            container.clock.now(),
        ).to_json()


@PROPERTY_SETTINGS
@given(start=st.integers(0, 3000), steps=steps_strategy)
def test_purchases_as_time_passes_keep_every_balance_true(
    container: Container, clock: FakeClock, timed_shop: Merchant, start: int, steps: list[Any]
) -> None:
    """Points wait 2 days and last 6; between purchases the clock moves, so purchases settle
    what has matured or expired while reading only the lots they need. The till's balance
    always equals the one built from every lot, and the ledger stays whole."""
    c, shop = container, timed_shop
    actor = shop.actor
    member_id = new_member(c, actor, start)
    previous: str | None = None
    for hours, lines, share, refund_previous in steps:
        clock.advance(hours=hours)
        quote = c.purchases.calculate(actor, receipt(member_id, lines, None))
        assert quote["balance"] == every_lot_balance(c, shop, member_id)
        redeem = int(quote["max_redeemable"] * share) or None if share is not None else None
        bought = c.purchases.confirm(actor, receipt(member_id, lines, redeem), uuid.uuid4().hex)
        assert bought["totals"]["points_redeemed"] == (redeem or 0)
        assert bought["balance"]["available"] == every_lot_balance(c, shop, member_id)["available"]
        if refund_previous and previous is not None:
            c.purchases.refund(actor, uuid.UUID(previous), f"back-{previous}", None)
        previous = bought["receipt"]["id"]
    assert c.ledger.balance(actor, member_id).to_json() == every_lot_balance(c, shop, member_id)
    assert_ledger_ok(c, shop.tenant_id)
