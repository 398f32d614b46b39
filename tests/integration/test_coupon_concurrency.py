"""Coupons raced by many tills on PostgreSQL: a single-use code confirmed by 32 tills at the
same moment is redeemed exactly once; a code with 5 uses, exactly 5 times; a per-member
limit of a public code without a total holds for one member at 32 tills.

In the first two, every till is held until all 32 have looked the coupon up and found it
usable, so each race is decided where it must be: by the conditional update at
confirmation."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest

from kopilka.bootstrap import Container
from kopilka.domain.coupons.terms import BatchInput, PromoCodeInput
from kopilka.domain.errors import KopilkaError
from kopilka.services.purchases import LineInput, MemberRef, ReceiptInput
from kopilka.services.verify import verify_ledger
from tests.conftest import Merchant
from tests.e2e.helpers import count
from tests.integration.test_purchase_concurrency import race

pytestmark = pytest.mark.postgres_only

TILLS = 32
PROGRAM: dict[str, Any] = {
    "type": "bonus",
    "rules": [{"id": "base", "effects": [{"points_percent": 5}]}],
}


def receipt(code: str, member_id: uuid.UUID | None = None) -> ReceiptInput:
    return ReceiptInput(
        lines=(LineInput(sku="TV", qty=Decimal(1), price=100_000),),
        member=MemberRef(id=member_id) if member_id else None,
        coupons=(code,),
        outlet="OUT-1",
    )


@pytest.fixture
def synchronised(container: Container, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every till waits, once it has found the coupon usable, until all of them have."""
    hook = container.coupons.hook
    original = hook.extra_rules
    barrier = threading.Barrier(TILLS, timeout=60)

    def extra_rules(*args: Any, **kwargs: Any) -> Sequence[Any]:
        rules = original(*args, **kwargs)
        barrier.wait()
        return rules

    monkeypatch.setattr(hook, "extra_rules", extra_rules)


def outcomes(results: list[dict[str, Any] | KopilkaError], code: str) -> tuple[int, set[str]]:
    """How many receipts got the coupon, and the codes of the refusals."""
    won = 0
    refused: set[str] = set()
    for result in results:
        if isinstance(result, KopilkaError):
            refused.add(result.code)
            continue
        entry = result["coupons"][0]
        assert entry["code"] == code
        if entry["status"] == "applied":
            won += 1
        else:
            refused.add(entry["reason"])
    return won, refused


@pytest.mark.usefixtures("synchronised")
def test_a_single_use_code_raced_by_32_tills_is_redeemed_once(
    container: Container, merchant: Merchant
) -> None:
    actor = merchant.actor
    container.programs.publish(actor, "main", PROGRAM)
    batch = container.coupons.create_batch(
        actor,
        BatchInput.model_validate(
            {"code": "race", "count": 1, "benefit": {"discount_percent": 50}}
        ),
    )
    with container.uow_factory(write=False) as uow:
        from kopilka.adapters.db.mechanics.coupons import CouponStore

        code = CouponStore(uow).batch_codes(merchant.tenant_id, batch.id, None, 1)[0]["code"]

    def till(i: int) -> dict[str, Any]:
        return container.purchases.confirm(actor, receipt(code), f"RACE-{i}")

    results = race(TILLS, till)
    assert len(results) == TILLS
    won, refused = outcomes(results, code)
    assert won == 1
    # The 31 others get a clear 409 and write nothing: the till calculates again.
    assert refused == {"coupon_already_used"}
    assert count(container.engine, "receipts") == 1
    assert count(container.engine, "coupon_redemptions") == 1
    state = container.coupons.get(actor, code)
    assert (state.status, state.uses_left) == ("used", 0)
    assert state.redemptions is not None
    assert len(state.redemptions) == 1
    assert verify_ledger(container.uow_factory).ok


@pytest.mark.usefixtures("synchronised")
def test_a_code_with_five_uses_is_redeemed_five_times(
    container: Container, merchant: Merchant
) -> None:
    actor = merchant.actor
    container.programs.publish(actor, "main", PROGRAM)
    container.coupons.create_promo(
        actor,
        PromoCodeInput.model_validate(
            {"code": "FIVE", "max_uses": 5, "benefit": {"discount_amount": 1000}}
        ),
    )

    def till(i: int) -> dict[str, Any]:
        return container.purchases.confirm(actor, receipt("FIVE"), f"FIVE-{i}")

    won, refused = outcomes(race(TILLS, till), "FIVE")
    assert won == 5
    assert refused == {"coupon_already_used"}
    assert count(container.engine, "receipts") == 5
    assert count(container.engine, "coupon_redemptions") == 5
    assert container.coupons.get(actor, "FIVE").uses_left == 0


def test_a_per_member_limit_holds_at_32_tills(container: Container, merchant: Merchant) -> None:
    actor = merchant.actor
    container.programs.publish(actor, "main", PROGRAM)
    container.coupons.create_promo(
        actor,
        PromoCodeInput.model_validate(
            {"code": "ONEEACH", "per_member": 1, "benefit": {"discount_percent": 10}}
        ),
    )
    member_id = container.members.enroll(actor, {"name": "Eager"}).id

    def till(i: int) -> dict[str, Any]:
        return container.purchases.confirm(actor, receipt("ONEEACH", member_id), f"ONE-{i}")

    won, refused = outcomes(race(TILLS, till), "ONEEACH")
    assert won == 1
    # One member's receipts take turns on the member's accounts already (so they cannot be
    # held at the look-up like the others): most see the limit reached at evaluation.
    assert refused <= {"coupon_member_limit_reached", "member_limit_reached"}
    # Nobody else is limited by it: the code has no total.
    other = container.members.enroll(actor, {"name": "Other"}).id
    late = container.purchases.confirm(actor, receipt("ONEEACH", other), "ONE-OTHER")
    assert late["coupons"][0]["status"] == "applied"
    assert container.coupons.get(actor, "ONEEACH").uses_left is None
    assert verify_ledger(container.uow_factory).ok
