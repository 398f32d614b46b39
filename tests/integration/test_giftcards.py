"""Gift cards on both databases: the life cycle (sale, activation, payment at the till,
refunds, expiry, reissue, holds), the liability kept exact through all of it, the clock's
job run twice, the brute-force limits, and concurrent spending of one card."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from kopilka.adapters.db.mechanics.giftcards import gift_card_attempts, gift_cards
from kopilka.adapters.db.tables import accounts, ledger_transactions, lots, postings
from kopilka.bootstrap import Container
from kopilka.domain.errors import Conflict, KopilkaError, NotFound, ValidationFailed
from kopilka.domain.giftcards.logic import RateLimited
from kopilka.domain.giftcards.settings import EnquiryLimits, GiftCardPolicy
from kopilka.domain.ledger.expiry import NeverExpires
from kopilka.domain.ledger.model import AccountKind
from kopilka.services.context import Actor, Role
from kopilka.services.giftcards import GiftCardIssued, SaleInput, verify_gift_cards
from kopilka.services.purchases import GiftCardUse, LineInput, MemberRef, ReceiptInput
from kopilka.services.verify import verify_ledger
from kopilka.testing import FakeClock
from tests.conftest import Merchant, make_merchant

BONUS: dict[str, Any] = {
    "type": "bonus",
    "pending_days": 0,
    "redemption": {"point_value": 100, "max_percent": 50},
    "rules": [{"id": "base", "effects": [{"points_percent": 5}]}],
}


# ---- helpers ---------------------------------------------------------------------------------
def sell(
    c: Container,
    m: Merchant,
    amount: int,
    *,
    number: str | None = None,
    key: str | None = None,
    sale_number: str | None = None,
) -> GiftCardIssued:
    sale = SaleInput("OUT-1", sale_number or f"SALE-{uuid.uuid4().hex[:8]}", c.clock.now())
    return c.giftcards.issue(m.actor, amount, sale, number=number, idempotency_key=key)


def live_card(c: Container, m: Merchant, amount: int) -> GiftCardIssued:
    card = sell(c, m, amount)
    c.giftcards.activate(m.actor, card.number, "OUT-1")
    return card


def receipt(
    *prices: int, cards: tuple[GiftCardUse, ...] = (), member: str | None = None, **extra: Any
) -> ReceiptInput:
    return ReceiptInput(
        lines=tuple(
            LineInput(sku=f"SKU-{i}", qty=Decimal(1), price=p) for i, p in enumerate(prices)
        ),
        gift_cards=cards,
        member=MemberRef(id=uuid.UUID(member)) if member else None,
        outlet="OUT-1",
        **extra,
    )


def pay(c: Container, m: Merchant, number: str, request: ReceiptInput, **kw: Any) -> Any:
    return c.purchases.confirm(m.actor, request, number, **kw)


def _calculate(c: Container, m: Merchant, _number: str, request: ReceiptInput) -> Any:
    return c.purchases.calculate(m.actor, request)


def card_balance(c: Container, m: Merchant, number: str) -> int:
    return c.giftcards.details(m.actor, number).balance


def system_total(c: Container, tenant_id: uuid.UUID, kind: AccountKind, currency: str) -> int:
    """The sum of postings on one of the tenant's own accounts (never cached)."""
    with c.engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(postings.c.amount), 0))
                .select_from(postings.join(accounts, accounts.c.id == postings.c.account_id))
                .where(
                    accounts.c.tenant_id == tenant_id,
                    accounts.c.owner == "tenant",
                    accounts.c.kind == str(kind),
                    accounts.c.currency == currency,
                )
            ).scalar_one()
        )


def assert_books_exact(c: Container, m: Merchant, expected: int) -> None:
    """The liability is ``expected``, equals every card's balance summed, reconciles with
    what was loaded, spent, refunded and expired, and with the tenant's money accounts;
    the ledger checks pass."""
    view = c.giftcards.liability(m.actor)
    assert view.outstanding == expected
    assert view.balanced, view
    assert view.outstanding == view.loaded - view.spent + view.refunded - view.expired
    with c.engine.connect() as conn:
        wallets = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(accounts.c.balance), 0))
            .select_from(gift_cards.join(accounts, accounts.c.id == gift_cards.c.wallet_account_id))
            .where(gift_cards.c.tenant_id == m.tenant_id)
        ).scalar_one()
    assert wallets == expected
    # Double entry: the money issued minus what came back to the tenant is what cards hold.
    issued = -system_total(c, m.tenant_id, AccountKind.ISSUED, "RUB")
    redeemed = system_total(c, m.tenant_id, AccountKind.REDEEMED, "RUB")
    expired = system_total(c, m.tenant_id, AccountKind.EXPIRED, "RUB")
    assert issued - redeemed - expired == expected
    assert (issued, redeemed, expired) == (view.loaded, view.spent - view.refunded, view.expired)
    assert_verified(c)


def assert_verified(c: Container) -> None:
    # ``ledger verify`` runs the gift cards' own checks beside the members' ones.
    report = verify_ledger(c.uow_factory)
    assert "gift_card_wallet_differs_from_lots" in report.checks
    assert {k: v for k, v in report.checks.items() if v} == {}
    assert not any(verify_gift_cards(c.uow_factory).values())


# ---- life cycle and liability ----------------------------------------------------------------
def test_partial_use_refund_and_expiry_keep_the_liability_exact(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    a, b = sell(c, m, 100000), sell(c, m, 50000)
    assert a.status == "issued"
    assert a.pin is not None
    assert len(a.pin) == 8
    view = c.giftcards.liability(m.actor)
    assert (view.outstanding, view.not_activated.cards, view.not_activated.amount) == (0, 2, 150000)
    for card in (a, b):
        active = c.giftcards.activate(m.actor, card.number, "OUT-1")
        assert (active.status, active.balance) == ("active", card.amount)
    assert active.valid_through == "2027-01-15"  # 365 days, the last local day included
    assert_books_exact(c, m, 150000)

    # 700 roubles paid in full by card A: it keeps 300.
    first = pay(c, m, "R-1", receipt(70000, cards=(GiftCardUse(a.number),)))
    assert first["payments"]["gift_cards"] == [
        {
            "number": "*" * 12 + a.number[-4:],
            "card_id": str(a.id),
            "amount": 70000,
            "balance_after": 30000,
        }
    ]
    assert (first["payments"]["to_pay"], first["payments"]["debited"]) == (0, True)
    assert_books_exact(c, m, 80000)

    # 700 more: A gives its last 300, B the 200 asked, 200 is left for the till.
    second = pay(
        c,
        m,
        "R-2",
        receipt(40000, 30000, cards=(GiftCardUse(a.number), GiftCardUse(b.number, amount=20000))),
    )
    assert [(g["amount"], g["balance_after"]) for g in second["payments"]["gift_cards"]] == [
        (30000, 0),
        (20000, 30000),
    ]
    assert (second["payments"]["gift_cards_total"], second["payments"]["to_pay"]) == (50000, 20000)
    assert_books_exact(c, m, 30000)

    # Refunds go back to the cards first, in the order they paid, never beyond what each paid.
    receipt_id = uuid.UUID(second["receipt"]["id"])
    back = c.purchases.refund(m.actor, receipt_id, "ref-1", [(1, Decimal(1))])
    assert back["money_to_return"] == 30000
    assert [(g["number"][-4:], g["amount"]) for g in back["payments"]["gift_cards"]] == [
        (a.number[-4:], 30000)
    ]
    assert back["payments"]["to_return"] == 0
    assert_books_exact(c, m, 60000)
    back = c.purchases.refund(m.actor, receipt_id, "ref-2", [(0, Decimal(1))])
    assert [(g["number"][-4:], g["amount"]) for g in back["payments"]["gift_cards"]] == [
        (b.number[-4:], 20000)
    ]
    assert back["payments"]["to_return"] == 20000  # the till's own tender
    assert (card_balance(c, m, a.number), card_balance(c, m, b.number)) == (30000, 50000)
    assert_books_exact(c, m, 80000)
    # A replayed refund gives nothing twice.
    assert c.purchases.refund(m.actor, receipt_id, "ref-2", [(0, Decimal(1))]) == back
    assert_books_exact(c, m, 80000)

    # A year on, the job expires what is left; running it again changes nothing.
    clock.set(clock.now() + timedelta(days=366))
    report = c.jobs.run()
    assert report.steps["gift_cards_expired"] == 2
    assert not report.errors
    after = c.giftcards.liability(m.actor)
    assert (after.expired, after.cards) == (80000, {"expired": 2})
    assert_books_exact(c, m, 0)
    snapshot = _ledger_rows(c)
    again = c.jobs.run()
    assert (again.steps["gift_cards_expired"], again.transactions) == (0, 0)
    assert _ledger_rows(c) == snapshot
    details = c.giftcards.details(m.actor, a.number)
    assert (details.status, details.balance) == ("expired", 0)
    assert [h.kind for h in details.history][:2] == ["expired", "expiry"]

    # Refunding the first receipt now: the card has expired, so the till pays it all out.
    late = c.purchases.refund(m.actor, uuid.UUID(first["receipt"]["id"]), "ref-3", None)
    assert late["payments"] == {
        "currency": "RUB",
        "gift_cards": [],
        "gift_cards_total": 0,
        "to_return": 70000,
    }
    assert_books_exact(c, m, 0)


def _ledger_rows(c: Container) -> tuple[int, ...]:
    with c.engine.connect() as conn:
        return tuple(
            int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
            for t in (ledger_transactions, postings, lots)
        )


def test_a_card_pays_beside_points_and_the_liabilities_stay_apart(
    container: Container, merchant: Merchant
) -> None:
    c, m = container, merchant
    c.programs.publish(m.actor, "main", BONUS)
    member = c.members.enroll(m.actor, {"phone": "+79161230000"}).id
    c.ledger.accrue(m.actor, member, 200, pending_days=0)
    card = live_card(c, m, 30000)
    answer = pay(
        c,
        m,
        "R-1",
        receipt(50000, cards=(GiftCardUse(card.number),), member=str(member), redeem_points=100),
    )
    # Points pay 100 roubles first; the card pays 300 of the 400 left.
    assert answer["totals"]["points_money"] == 10000
    assert answer["totals"]["pay"] == 40000
    assert answer["payments"]["gift_cards"][0]["amount"] == 30000
    assert answer["payments"]["to_pay"] == 10000
    assert (
        c.ledger.balance(m.actor, member, None).available == 100 + answer["totals"]["points_earned"]
    )
    assert_books_exact(c, m, 0)
    # The points liability is in points, the cards' in roubles: neither leaks into the other.
    assert system_total(c, m.tenant_id, AccountKind.ISSUED, "points") == -(
        200 + answer["totals"]["points_earned"]
    )
    assert system_total(c, m.tenant_id, AccountKind.REDEEMED, "RUB") == 30000
    # Cancelling the receipt the same day gives both back.
    c.purchases.cancel(m.actor, uuid.UUID(answer["receipt"]["id"]))
    assert card_balance(c, m, card.number) == 30000
    assert c.ledger.balance(m.actor, member, None).available == 200
    assert_books_exact(c, m, 30000)


def test_never_expiring_cards_need_no_job(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    c.giftcards.set_policy(m.actor, GiftCardPolicy(validity=NeverExpires()))
    card = live_card(c, m, 10000)
    details = c.giftcards.details(m.actor, card.number)
    assert (details.expires_at, details.valid_through) == (None, None)
    clock.advance(days=5000)
    assert c.jobs.run().steps["gift_cards_expired"] == 0
    assert card_balance(c, m, card.number) == 10000
    assert_books_exact(c, m, 10000)


def test_reissue_moves_the_balance_and_refunds_follow_it(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    old = live_card(c, m, 50000)
    bought = pay(c, m, "R-1", receipt(20000, cards=(GiftCardUse(old.number),)))
    c.giftcards.block(m.actor, old.number, "lost")
    clock.advance(days=10)
    new = c.giftcards.reissue(m.actor, old.number, reason="lost", idempotency_key="re-1")
    assert new.pin is not None
    assert new.number != old.number
    assert (new.status, new.balance, new.moved, new.replaces) == (
        "active",
        30000,
        30000,
        old.number,
    )
    assert new.valid_through == "2027-01-15"  # the old card's validity goes with the money
    replay = c.giftcards.reissue(m.actor, old.number, reason="lost", idempotency_key="re-1")
    assert (replay.number, replay.pin) == (new.number, None)  # the PIN is never stored
    with pytest.raises(Conflict) as refused:
        c.giftcards.reissue(m.actor, old.number)
    assert refused.value.code == "gift_card_replaced"
    gone = c.giftcards.details(m.actor, old.number)
    assert (gone.status, gone.balance, gone.replaced_by) == ("replaced", 0, new.number)
    assert [h.kind for h in gone.history][:2] == ["replaced", "moved_out"]
    assert_books_exact(c, m, 30000)
    # The old card cannot pay any more.
    with pytest.raises(ValidationFailed) as bad:
        c.purchases.calculate(m.actor, receipt(100, cards=(GiftCardUse(old.number),)))
    assert bad.value.code == "gift_card_replaced"
    assert [e.path for e in bad.value.errors] == [("gift_cards", 0, "number")]
    # A refund of what the old card paid lands on the new one.
    back = c.purchases.refund(m.actor, uuid.UUID(bought["receipt"]["id"]), "ref-1", None)
    assert back["payments"]["gift_cards"] == [
        {
            "number": "*" * 12 + new.number[-4:],
            "card_id": str(new.id),
            "amount": 20000,
            "balance_after": 50000,
        }
    ]
    assert card_balance(c, m, new.number) == 50000
    assert [h.kind for h in c.giftcards.details(m.actor, new.number).history][:3] == [
        "moved_in",
        "reissued",
        "moved_in",
    ]
    assert_books_exact(c, m, 50000)
    # And the new card spends it, with the same expiry.
    pay(c, m, "R-2", receipt(50000, cards=(GiftCardUse(new.number, pin=new.pin),)))
    assert_books_exact(c, m, 0)


def test_a_card_not_yet_activated_is_reissued_unactivated(
    container: Container, merchant: Merchant
) -> None:
    c, m = container, merchant
    old = sell(c, m, 20000)
    new = c.giftcards.reissue(m.actor, old.number)
    assert (new.status, new.balance, new.amount, new.moved) == ("issued", 0, 20000, 0)
    assert c.giftcards.activate(m.actor, new.number, None).balance == 20000
    assert_books_exact(c, m, 20000)


# ---- holds -----------------------------------------------------------------------------------
def test_a_held_receipt_debits_on_confirmation_and_void_leaves_the_card(
    container: Container, merchant: Merchant
) -> None:
    c, m = container, merchant
    card = live_card(c, m, 30000)
    held = pay(c, m, "H-1", receipt(20000, cards=(GiftCardUse(card.number),)), hold=True)
    assert held["payments"]["debited"] is False
    assert card_balance(c, m, card.number) == 30000  # only planned
    voided = c.purchases.void(m.actor, uuid.UUID(held["receipt"]["id"]))
    assert voided["receipt"]["status"] == "voided"
    assert card_balance(c, m, card.number) == 30000
    held = pay(c, m, "H-2", receipt(20000, cards=(GiftCardUse(card.number),)), hold=True)
    done = c.purchases.confirm_held(m.actor, uuid.UUID(held["receipt"]["id"]))
    assert done["payments"]["debited"] is True
    assert done["payments"]["gift_cards"][0]["balance_after"] == 10000
    assert card_balance(c, m, card.number) == 10000
    assert_books_exact(c, m, 10000)


def test_a_hold_whose_card_was_spent_meanwhile_is_refused(
    container: Container, merchant: Merchant
) -> None:
    c, m = container, merchant
    card = live_card(c, m, 30000)
    held = pay(c, m, "H-1", receipt(20000, cards=(GiftCardUse(card.number),)), hold=True)
    pay(c, m, "R-1", receipt(15000, cards=(GiftCardUse(card.number),)))
    with pytest.raises(Conflict) as refused:
        c.purchases.confirm_held(m.actor, uuid.UUID(held["receipt"]["id"]))
    assert refused.value.code == "gift_card_balance_changed"
    assert refused.value.extra["available"] == 15000
    assert c.purchases.get(m.actor, uuid.UUID(held["receipt"]["id"]))["receipt"]["status"] == "held"
    assert card_balance(c, m, card.number) == 15000
    # A card blocked after the hold refuses the capture too.
    held = pay(c, m, "H-2", receipt(5000, cards=(GiftCardUse(card.number),)), hold=True)
    c.giftcards.block(m.actor, card.number)
    with pytest.raises(Conflict) as refused:
        c.purchases.confirm_held(m.actor, uuid.UUID(held["receipt"]["id"]))
    assert refused.value.code == "gift_card_blocked"
    assert_books_exact(c, m, 15000)


# ---- checks at the till ----------------------------------------------------------------------
def test_cards_that_cannot_pay_are_refused_with_their_paths_and_nothing_is_written(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    good = live_card(c, m, 10000)
    waiting = sell(c, m, 10000)
    blocked = live_card(c, m, 10000)
    c.giftcards.block(m.actor, blocked.number)
    empty = live_card(c, m, 10000)
    pay(c, m, "R-0", receipt(10000, cards=(GiftCardUse(empty.number),)))
    other = live_card(c, make_merchant(c, "Rival"), 10000)
    malformed = good.number[:-1] + str((int(good.number[-1]) + 1) % 10)
    cases = [
        (malformed, "invalid_gift_card_number"),
        ("12345", "invalid_gift_card_number"),
        ("9000000000000001", "gift_card_not_found"),
        (other.number, "gift_card_not_found"),  # another tenant's card is unknown here
        (waiting.number, "gift_card_not_activated"),
        (blocked.number, "gift_card_blocked"),
        (empty.number, "gift_card_empty"),
        (good.number, "duplicate_gift_card"),
    ]
    uses = (GiftCardUse(good.number), *(GiftCardUse(n) for n, _ in cases))
    before = _ledger_rows(c)
    for confirm in (False, True):
        run = pay if confirm else _calculate
        with pytest.raises(ValidationFailed) as refused:
            run(c, m, "R-1", receipt(5000, cards=uses))
        assert [(e.path, e.code) for e in refused.value.errors] == [
            (("gift_cards", i + 1, "number"), code) for i, (_, code) in enumerate(cases)
        ]
        assert refused.value.code == "invalid_gift_card_number"
    assert _ledger_rows(c) == before
    # Online, the PIN is needed; a wrong one is refused on its own path.
    online = receipt(5000, cards=(GiftCardUse(good.number),), channel="online")
    with pytest.raises(ValidationFailed) as refused:
        c.purchases.calculate(m.actor, online)
    assert [(e.path, e.code) for e in refused.value.errors] == [
        (("gift_cards", 0, "pin"), "gift_card_pin_required")
    ]
    wrong = "0" * 8 if good.pin != "0" * 8 else "1" * 8
    with pytest.raises(ValidationFailed) as refused:
        c.purchases.calculate(
            m.actor, receipt(5000, cards=(GiftCardUse(good.number, pin=wrong),), channel="online")
        )
    assert refused.value.code == "gift_card_pin_invalid"
    right = c.purchases.calculate(
        m.actor, receipt(5000, cards=(GiftCardUse(good.number, pin=good.pin),), channel="online")
    )
    assert right["payments"]["gift_cards"][0]["amount"] == 5000
    # Past its validity (before the job has run) the card is expired at once.
    clock.advance(days=400)
    with pytest.raises(ValidationFailed) as refused:
        c.purchases.calculate(m.actor, receipt(5000, cards=(GiftCardUse(good.number),)))
    assert refused.value.code == "gift_card_expired"


def test_wrong_pins_at_the_till_lock_the_card_for_the_window(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    c.giftcards.set_policy(
        m.actor,
        GiftCardPolicy(enquiry_limits=EnquiryLimits(wrong_pins_per_card=2, window_seconds=600)),
    )
    card = live_card(c, m, 10000)
    wrong = "0" * 8 if card.pin != "0" * 8 else "1" * 8

    def online(pin: str) -> ReceiptInput:
        return receipt(1000, cards=(GiftCardUse(card.number, pin=pin),), channel="online")

    for _ in range(2):
        with pytest.raises(ValidationFailed):
            c.purchases.calculate(m.actor, online(wrong))
    with pytest.raises(RateLimited) as limited:
        c.purchases.calculate(m.actor, online(card.pin or ""))  # even the right PIN waits
    assert 1 <= limited.value.retry_after <= 600
    clock.advance(seconds=limited.value.retry_after)
    assert c.purchases.calculate(m.actor, online(card.pin or ""))["payments"]["to_pay"] == 0


# ---- balance enquiries -----------------------------------------------------------------------
def test_balance_enquiries_are_limited_per_card_and_per_key(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    c.giftcards.set_policy(
        m.actor,
        GiftCardPolicy(
            enquiry_limits=EnquiryLimits(
                window_seconds=60, per_card=3, per_key=5, wrong_pins_per_card=2
            )
        ),
    )
    clock.set(clock.now().replace(second=0))
    card, spare = live_card(c, m, 12345), live_card(c, m, 100)
    answer = c.giftcards.balance(m.actor, card.number)
    assert (answer.balance, answer.status, answer.number) == (
        12345,
        "active",
        "*" * 12 + card.number[-4:],
    )
    assert answer.message["ru"] == "На карте 123,45\u00a0₽, действует до 2027-01-15 включительно"
    assert answer.message["en"] == "123,45\u00a0₽ on the card, valid through 2027-01-15"
    c.giftcards.balance(m.actor, card.number)
    c.giftcards.balance(m.actor, card.number)
    with pytest.raises(RateLimited) as limited:
        c.giftcards.balance(m.actor, card.number)  # the 4th for this card in the minute
    assert limited.value.retry_after == 60
    # Another card still answers; then the key itself is spent (5 in the window)...
    c.giftcards.balance(m.actor, spare.number)
    with pytest.raises(RateLimited):
        c.giftcards.balance(m.actor, spare.number)
    # ... but another key is not, and a new window starts afresh.
    till = Actor(tenant_id=m.tenant_id, name="apikey:other", role=Role.POS)
    assert c.giftcards.balance(till, spare.number).balance == 100
    clock.advance(seconds=60)
    assert c.giftcards.balance(m.actor, card.number).balance == 12345
    # Unknown and malformed numbers count against the key too.
    for bad, error in (("9000000000000001", NotFound), ("123", ValidationFailed)):
        with pytest.raises(error):
            c.giftcards.balance(till, bad)
    # Online, the PIN is needed; wrong PINs lock the card's PIN for the window.
    with pytest.raises(ValidationFailed) as refused:
        c.giftcards.balance(till, spare.number, channel="online")
    assert refused.value.code == "gift_card_pin_required"
    wrong = "0" * 8 if spare.pin != "0" * 8 else "1" * 8
    clock.advance(seconds=60)
    for _ in range(2):
        with pytest.raises(ValidationFailed) as refused:
            c.giftcards.balance(till, spare.number, pin=wrong, channel="online")
        assert refused.value.code == "gift_card_pin_invalid"
    with pytest.raises(RateLimited):
        c.giftcards.balance(till, spare.number, pin=spare.pin, channel="online")
    # Old windows are pruned by the job.
    clock.advance(days=3)
    assert c.jobs.run().steps["gift_card_attempts_pruned"] > 0
    with c.engine.connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(gift_card_attempts)).scalar_one()
            == 0
        )


# ---- life cycle edges ------------------------------------------------------------------------
def test_issue_activate_block_are_idempotent_and_guarded(
    container: Container, merchant: Merchant
) -> None:
    c, m = container, merchant
    first = sell(c, m, 10000, key="sale-1", sale_number="S-1")
    replay = sell(c, m, 10000, key="sale-1", sale_number="S-1")
    assert replay.pin is None
    assert replay.model_copy(update={"pin": first.pin}) == first
    with pytest.raises(Conflict) as taken:
        sell(c, m, 10000, number=first.number)
    assert taken.value.code == "gift_card_number_taken"
    with pytest.raises(ValidationFailed) as bad:
        sell(c, m, 10**9)
    assert [(e.path, e.code) for e in bad.value.errors] == [(("amount",), "amount_out_of_range")]
    own = sell(c, m, 10000, number="4000000000000002")
    assert own.number == "4000000000000002"
    active = c.giftcards.activate(m.actor, first.number, "OUT-1")
    assert c.giftcards.activate(m.actor, first.number, "OUT-1") == active  # again: no change
    assert_books_exact(c, m, 10000)
    blocked = c.giftcards.block(m.actor, first.number, "dispute")
    assert (blocked.status, blocked.blocked_reason) == ("blocked", "dispute")
    assert c.giftcards.block(m.actor, first.number, "dispute") == blocked
    with pytest.raises(Conflict) as refused:
        c.giftcards.activate(m.actor, first.number)
    assert refused.value.code == "gift_card_blocked"
    assert c.giftcards.unblock(m.actor, first.number).status == "active"
    assert c.giftcards.unblock(m.actor, own.number).status == "issued"
    with pytest.raises(NotFound):
        c.giftcards.details(m.actor, "9000000000000001")
    # The history tells what happened, in both languages.
    history = c.giftcards.details(m.actor, first.number).history
    assert [h.kind for h in history] == ["unblocked", "blocked", "activated", "issued"]
    assert history[2].description == {
        "ru": "Карта активирована, зачислено 100\u00a0₽",
        "en": "Card activated, 100\u00a0₽ loaded",
    }


def test_one_card_spent_by_tills_at_once_never_goes_negative(
    container: Container, merchant: Merchant
) -> None:
    """Three tills ask 70 roubles each of a 100-rouble card: what they are given adds up to
    what the card lost, it never goes below zero, a stale plan is refused (409)."""
    c, m = container, merchant
    card = live_card(c, m, 10000)
    paid: list[int] = []
    refused: list[str] = []
    lock = threading.Lock()

    def spend(number: str) -> None:
        request = receipt(7000, cards=(GiftCardUse(card.number, amount=7000),))
        try:
            answer = pay(c, m, number, request)
        except KopilkaError as exc:
            with lock:
                refused.append(exc.code)
            return
        with lock:
            paid.append(answer["payments"]["gift_cards"][0]["amount"])

    threads = [threading.Thread(target=spend, args=(f"R-{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(paid) + len(refused) == 3
    assert set(refused) <= {"gift_card_balance_changed", "gift_card_empty"}, refused
    left = card_balance(c, m, card.number)
    assert sum(paid) + left == 10000
    assert left == 0 or "gift_card_balance_changed" in refused
    assert_books_exact(c, m, left)
