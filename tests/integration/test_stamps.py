"""Stamp cards at the till and over time, on SQLite and PostgreSQL: a card filled day by
day, redeemed on the same receipt, then refunded; debt and forgiveness; held receipts;
coupon cards; expiry by the jobs run; admin corrections; and two tills racing for one full
card (PostgreSQL)."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from kopilka.adapters.db.mechanics.stamps import stamp_balances, stamp_movements
from kopilka.adapters.db.tables import coupons
from kopilka.bootstrap import Container
from kopilka.domain.errors import BusinessRuleViolation, KopilkaError, ValidationFailed
from kopilka.services.purchases import LineInput, MemberRef, ReceiptInput
from kopilka.services.verify import verify_ledger
from kopilka.testing import FakeClock
from tests.conftest import Merchant

COFFEE_CARD: dict[str, Any] = {
    "id": "coffee",
    "name": {"ru": "Кофейная карта", "en": "Coffee card"},
    "lines": {"category": "drinks/coffee"},
    "stamps": 6,
    "reward": {"free_item": {}},
    "expires_days": 30,
}
PROGRAM: dict[str, Any] = {
    "type": "bonus",
    "name": {"ru": "Бонусы", "en": "Bonus"},
    "redemption": {"point_value": 100, "max_percent": 50},
    "rules": [{"id": "base", "effects": [{"points_percent": 10}]}],
    "stamp_cards": [COFFEE_CARD],
}
LATTE = 30000
CAPPUCCINO = 25000


def latte(qty: int = 1) -> LineInput:
    return LineInput("LATTE", Decimal(qty), LATTE, category="drinks/coffee")


def cappuccino(qty: int = 1) -> LineInput:
    return LineInput("CAPPUCCINO", Decimal(qty), CAPPUCCINO, category="drinks/coffee")


def croissant() -> LineInput:
    return LineInput("CROISSANT", Decimal(1), 15000, category="bakery")


def receipt(member_id: uuid.UUID, *lines: LineInput, **fields: Any) -> ReceiptInput:
    return ReceiptInput(
        lines=tuple(lines), member=MemberRef(id=member_id), outlet="OUT-1", **fields
    )


def shop(container: Container, merchant: Merchant, document: dict[str, Any] = PROGRAM) -> uuid.UUID:
    container.programs.publish(merchant.actor, "main", document)
    return container.members.enroll(merchant.actor, {"name": "Anna"}).id


def card_of(answer: dict[str, Any], card: str = "coffee") -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in answer["stamps"] if c["card"] == card)
    return found


def stamps_view(container: Container, merchant: Merchant, member_id: uuid.UUID) -> dict[str, Any]:
    return card_of({"stamps": container.stamps.member_stamps(merchant.actor, member_id)["cards"]})


def table_rows(container: Container, table: sa.Table) -> int:
    with container.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def assert_ledger_ok(container: Container) -> None:
    report = verify_ledger(container.uow_factory)
    assert report.ok, report.checks


def test_a_card_is_filled_redeemed_and_refunded(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    actor = merchant.actor
    member = shop(container, merchant)
    receipts = []
    for day in range(1, 7):
        clock.advance(days=1)
        answer = container.purchases.confirm(
            actor, receipt(member, latte(), croissant()), f"D{day}"
        )
        stamps = card_of(answer)
        assert (stamps["earned"], stamps["balance_after"], stamps["to_go"]) == (1, day, 6 - day)
        assert stamps["reward_applied"] is None
        receipts.append(answer["receipt"]["id"])
    assert stamps["rewards_waiting"] == 1
    assert "бесплатный товар ждёт" in stamps["explanation"]["ru"]

    # Day 7: the full card makes the cheaper coffee free, on this very receipt.
    clock.advance(days=1)
    seventh = receipt(member, latte(), cappuccino())
    calculated = container.purchases.calculate(actor, seventh)
    stamps = card_of(calculated)
    assert (stamps["balance_before"], stamps["earned"], stamps["rewards"]) == (6, 1, 1)
    assert (stamps["balance_after"], stamps["to_go"]) == (1, 5)
    assert stamps["reward_applied"] == {
        "kind": "free_item",
        "items": 1,
        "discount": CAPPUCCINO,
        "lines": [1],
    }
    assert [line["discount"] for line in calculated["lines"]] == [0, CAPPUCCINO]
    assert calculated["totals"]["pay"] == LATTE
    assert calculated["totals"]["points_earned"] == 30  # 10% of 300 ₽ paid in money
    [free] = [a for a in calculated["applied"] if a["effect"] == "stamp_card_free_item"]
    assert (free["rule_id"], free["discount"], free["lines"]) == ("stamps:coffee", CAPPUCCINO, [1])
    assert free["explanation"]["ru"] == "Бесплатно по карте «Кофейная карта»: 1 товар — 250\u00a0₽"
    assert stamps_view(container, merchant, member)["balance"] == 6  # calculate wrote nothing

    confirmed = container.purchases.confirm(actor, seventh, "D7")
    assert card_of(confirmed)["balance_after"] == 1
    assert confirmed["totals"] == calculated["totals"]
    view = stamps_view(container, merchant, member)
    assert (view["balance"], view["to_go"], view["stamps_earned"]) == (1, 5, 7)
    assert (view["rewards_redeemed"], view["cards_filled"], view["debt"]) == (1, 1, 0)

    # The free cappuccino comes back: no money to return, the full card does.
    back = container.purchases.refund(
        actor, uuid.UUID(confirmed["receipt"]["id"]), "RF-1", [(1, Decimal(1))]
    )
    assert back["money_to_return"] == 0
    [effect] = back["stamps"]
    assert (effect["rewards_returned"], effect["stamps_removed"], effect["balance_after"]) == (
        1,
        0,
        7,
    )
    # Day 1's receipt comes back: its stamp goes.
    back = container.purchases.refund(actor, uuid.UUID(receipts[0]), "RF-2", None)
    assert card_of(back)["balance_after"] == 6
    # And the latte of day 7.
    back = container.purchases.refund(actor, uuid.UUID(confirmed["receipt"]["id"]), "RF-3", None)
    assert card_of(back)["stamps_removed"] == 1
    view = stamps_view(container, merchant, member)
    assert (view["balance"], view["stamps_earned"], view["rewards_redeemed"]) == (5, 5, 0)
    history = container.stamps.member_stamps(actor, member)["history"]
    assert [m["kind"] for m in history[:3]] == ["refund", "refund", "refund"]
    assert len(history) == 10
    assert history[-1]["description"]["ru"] == "Покупка: +1 штамп на карте «Кофейная карта»."
    assert "came back" in history[2]["description"]["en"]
    # Refunding again replays: nothing is taken twice.
    container.purchases.refund(actor, uuid.UUID(receipts[0]), "RF-2", None)
    assert stamps_view(container, merchant, member)["balance"] == 5
    assert_ledger_ok(container)


def test_seven_coffees_on_one_receipt(container: Container, merchant: Merchant) -> None:
    member = shop(container, merchant)
    answer = container.purchases.confirm(
        merchant.actor, receipt(member, latte(4), cappuccino(3)), "R"
    )
    stamps = card_of(answer)
    assert (stamps["earned"], stamps["rewards"], stamps["balance_after"]) == (6, 1, 0)
    assert answer["totals"]["discount"] == CAPPUCCINO
    assert [(li["line"], li["stamps"], li["free"]) for li in stamps["lines"]] == [
        (0, 4, 0),
        (1, 2, 1),
    ]
    # A partial refund of the cappuccinos: proportional and cumulative.
    receipt_id = uuid.UUID(answer["receipt"]["id"])
    removed = [
        card_of(container.purchases.refund(merchant.actor, receipt_id, f"P{i}", [(1, Decimal(1))]))
        for i in range(3)
    ]
    assert [(r["stamps_removed"], r["rewards_returned"]) for r in removed] == [
        (0, 0),
        (1, 0),
        (1, 1),
    ]


def test_a_refund_after_the_reward_leaves_a_debt_or_is_forgiven(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    actor = merchant.actor
    member = shop(container, merchant)
    first = container.purchases.confirm(actor, receipt(member, latte(6)), "A")
    assert card_of(first)["balance_after"] == 6
    clock.advance(hours=1)
    free = container.purchases.confirm(actor, receipt(member, latte()), "B")
    assert card_of(free)["rewards"] == 1
    clock.advance(hours=1)
    back = card_of(container.purchases.refund(actor, uuid.UUID(first["receipt"]["id"]), "R", None))
    assert (back["stamps_removed"], back["balance_after"], back["debt_after"]) == (6, 0, 6)
    assert back["to_go"] == 12
    # New stamps pay the debt first.
    answer = card_of(container.purchases.confirm(actor, receipt(member, latte(8)), "C"))
    assert (answer["earned"], answer["rewards"], answer["balance_after"], answer["debt_after"]) == (
        8,
        0,
        2,
        0,
    )

    forgiving = {**PROGRAM, "stamp_cards": [{**COFFEE_CARD, "refund_shortfall": "forgive"}]}
    container.programs.publish(actor, "main", forgiving)
    other = container.members.enroll(actor, {"name": "Boris"}).id
    first = container.purchases.confirm(actor, receipt(other, latte(6)), "D")
    container.purchases.confirm(actor, receipt(other, latte()), "E")
    back = card_of(container.purchases.refund(actor, uuid.UUID(first["receipt"]["id"]), "R", None))
    assert (back["balance_after"], back["debt_after"], back["forgiven"]) == (0, 0, 6)


def test_held_receipts_write_stamps_when_confirmed(
    container: Container, merchant: Merchant
) -> None:
    actor = merchant.actor
    member = shop(container, merchant)
    held = container.purchases.confirm(actor, receipt(member, latte(2)), "H1", hold=True)
    assert card_of(held)["balance_after"] == 2  # what confirming will do
    assert table_rows(container, stamp_movements) == 0
    done = container.purchases.confirm_held(actor, uuid.UUID(held["receipt"]["id"]))
    assert card_of(done)["balance_after"] == 2
    assert container.purchases.confirm_held(actor, uuid.UUID(held["receipt"]["id"]))["stamps"]
    voided = container.purchases.confirm(actor, receipt(member, latte(3)), "H2", hold=True)
    container.purchases.void(actor, uuid.UUID(voided["receipt"]["id"]))
    assert stamps_view(container, merchant, member)["balance"] == 2
    assert table_rows(container, stamp_movements) == 1


def test_a_held_free_item_is_honoured_even_if_the_card_was_spent_meanwhile(
    container: Container, merchant: Merchant
) -> None:
    actor = merchant.actor
    member = shop(container, merchant)
    container.purchases.confirm(actor, receipt(member, latte(6)), "FULL")
    held = container.purchases.confirm(actor, receipt(member, latte()), "H", hold=True)
    assert card_of(held)["rewards"] == 1
    container.purchases.confirm(actor, receipt(member, latte()), "OTHER-TILL")
    done = card_of(container.purchases.confirm_held(actor, uuid.UUID(held["receipt"]["id"])))
    assert (done["balance_after"], done["debt_after"]) == (0, 6)


def test_a_coupon_card_issues_coupons_as_it_fills(container: Container, merchant: Merchant) -> None:
    document = {
        **PROGRAM,
        "stamp_cards": [
            {
                **COFFEE_CARD,
                "stamps": 3,
                "reward": {"coupon": {"benefit": {"discount_percent": 50}, "valid_days": 10}},
            }
        ],
    }
    member = shop(container, merchant, document)
    calculated = card_of(container.purchases.calculate(merchant.actor, receipt(member, latte(7))))
    assert (calculated["coupons_to_issue"], calculated["balance_after"]) == (2, 1)
    assert calculated["reward_applied"] is None
    answer = container.purchases.confirm(merchant.actor, receipt(member, latte(7)), "R")
    stamps = card_of(answer)
    assert len(stamps["coupons_issued"]) == 2
    assert answer["totals"]["discount"] == 0
    with container.engine.connect() as conn:
        rows = conn.execute(sa.select(coupons).where(coupons.c.member_id == member)).all()
    assert {(r.source_type, r.uses_left, r.status) for r in rows} == {("stamps", 1, "active")}
    assert {r.code for r in rows} == {c["code"] for c in stamps["coupons_issued"]}
    view = stamps_view(container, merchant, member)
    assert (view["balance"], view["rewards_redeemed"], view["cards_filled"]) == (1, 2, 2)


def test_stamps_expire_after_the_quiet_days_and_the_job_writes_it_once(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    actor = merchant.actor
    member = shop(container, merchant)
    clock.set(datetime(2026, 1, 15, 9, 0, tzinfo=UTC))  # 12:00 in Moscow
    bought = container.purchases.confirm(actor, receipt(member, latte(2)), "R")
    view = stamps_view(container, merchant, member)
    # Valid for 30 local days after the last stamp: through 14 February, Moscow time.
    assert (view["valid_until"], view["expires_at"]) == ("2026-02-14", "2026-02-14T21:00:00+00:00")
    clock.set(datetime(2026, 2, 14, 20, 59, tzinfo=UTC))
    assert container.jobs.run().steps["stamps_expired"] == 0
    assert stamps_view(container, merchant, member)["balance"] == 2
    clock.set(datetime(2026, 2, 14, 21, 0, tzinfo=UTC))
    # Gone at once for the till, before the job has run.
    assert (
        card_of(container.purchases.calculate(actor, receipt(member, latte())))["balance_before"]
        == 0
    )
    assert container.jobs.run().steps["stamps_expired"] == 1
    assert container.jobs.run().steps["stamps_expired"] == 0
    clock.advance(days=3)
    assert container.jobs.run().steps["stamps_expired"] == 0
    history = container.stamps.member_stamps(actor, member)["history"]
    assert [m["kind"] for m in history] == ["expiry", "purchase"]
    assert history[0]["description"]["ru"].startswith("Сгорели 2 штампа")
    # Refunding the expired stamps' receipt owes nothing: they were not spent on a reward.
    back = card_of(container.purchases.refund(actor, uuid.UUID(bought["receipt"]["id"]), "R", None))
    assert (back["balance_after"], back["debt_after"], back["forgiven"]) == (0, 0, 2)


def test_admin_adjustments(container: Container, merchant: Merchant) -> None:
    actor = merchant.actor
    member = shop(container, merchant)
    added = container.stamps.adjust(
        actor, member, "coffee", 4, "Lost paper card", idempotency_key="k1"
    )
    assert added["card"]["balance"] == 4
    assert added["movement"]["description"]["ru"] == (
        "Корректировка карты «Кофейная карта»: +4 штампа — Lost paper card."
    )
    again = container.stamps.adjust(
        actor, member, "coffee", 4, "Lost paper card", idempotency_key="k1"
    )
    assert again == added
    assert stamps_view(container, merchant, member)["balance"] == 4
    with pytest.raises(ValidationFailed) as reused:
        container.stamps.adjust(actor, member, "coffee", 5, "x", idempotency_key="k1")
    assert reused.value.code == "idempotency_key_reused"
    with pytest.raises(BusinessRuleViolation) as short:
        container.stamps.adjust(actor, member, "coffee", -5, "typo")
    assert (short.value.code, short.value.extra) == ("stamps_insufficient", {"balance": 4})
    with pytest.raises(ValidationFailed) as unknown:
        container.stamps.adjust(actor, member, "tea", 1, "x")
    assert [(e.path, e.code) for e in unknown.value.errors] == [(("card",), "unknown_stamp_card")]
    with pytest.raises(KopilkaError) as nobody:
        container.stamps.adjust(actor, uuid.uuid4(), "coffee", 1, "x")
    assert nobody.value.code == "member_not_found"
    taken = container.stamps.adjust(actor, member, "coffee", -4, "typo")
    assert taken["card"]["balance"] == 0
    assert table_rows(container, stamp_balances) == 1


def test_cards_of_programs_no_longer_in_force_stay_visible(
    container: Container, merchant: Merchant
) -> None:
    actor = merchant.actor
    member = shop(container, merchant)
    container.purchases.confirm(actor, receipt(member, latte(2)), "R")
    container.programs.publish(actor, "main", {**PROGRAM, "stamp_cards": []})
    view = container.stamps.member_stamps(actor, member)
    [card] = view["cards"]
    assert (card["card"], card["active"], card["balance"], card["size"]) == (
        "coffee",
        False,
        2,
        None,
    )
    answer = container.purchases.confirm(actor, receipt(member, latte()), "R2")
    assert "stamps" not in answer


@pytest.mark.postgres_only
def test_two_tills_cannot_spend_one_full_card(container: Container, merchant: Merchant) -> None:
    actor = merchant.actor
    member = shop(container, merchant)
    container.purchases.confirm(actor, receipt(member, latte(6)), "FULL")
    tills = 5
    barrier = threading.Barrier(tills)
    answers: list[dict[str, Any]] = []
    crashes: list[BaseException] = []

    def till(i: int) -> None:
        barrier.wait()
        try:
            answers.append(container.purchases.confirm(actor, receipt(member, latte()), f"T{i}"))
        except BaseException as exc:  # a deadlock or a 500 would land here
            crashes.append(exc)

    threads = [threading.Thread(target=till, args=(i,)) for i in range(tills)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not crashes, crashes
    assert len(answers) == tills
    assert sum(card_of(a)["rewards"] for a in answers) == 1
    assert sum(a["totals"]["discount"] for a in answers) == LATTE
    assert stamps_view(container, merchant, member)["balance"] == tills - 1
    with container.engine.connect() as conn:
        moves = conn.execute(sa.select(stamp_movements.c.stamps)).scalars().all()
    assert sum(moves) == tills - 1


def test_a_cancelled_receipt_takes_its_stamps_and_gives_its_reward_back(
    container: Container, merchant: Merchant
) -> None:
    actor = merchant.actor
    member = shop(container, merchant)
    container.purchases.confirm(actor, receipt(member, latte(6)), "A")
    second = container.purchases.confirm(actor, receipt(member, latte(2)), "B")
    assert (card_of(second)["rewards"], card_of(second)["balance_after"]) == (1, 1)
    container.purchases.cancel(actor, uuid.UUID(second["receipt"]["id"]))
    assert stamps_view(container, merchant, member)["balance"] == 6


def test_points_paid_after_the_free_item(container: Container, merchant: Merchant) -> None:
    actor = merchant.actor
    member = shop(container, merchant)
    container.ledger.accrue(actor, member, 1000)
    container.purchases.confirm(actor, receipt(member, latte(6)), "FULL")
    basket = (latte(), cappuccino())
    answer = container.purchases.calculate(actor, receipt(member, *basket, redeem_points="max"))
    # Half of the 300 ₽ left to pay after the free cappuccino, at 1 ₽ a point.
    assert (answer["max_redeemable"], answer["totals"]["points_redeemed"]) == (150, 150)
    assert answer["totals"]["pay"] == 15000
    with pytest.raises(BusinessRuleViolation) as refused:
        container.purchases.calculate(actor, receipt(member, *basket, redeem_points=200))
    assert (refused.value.code, refused.value.extra) == (
        "redeem_exceeds_max",
        {"max_redeemable": 150},
    )
    assert_ledger_ok(container)
