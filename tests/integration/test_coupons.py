"""The coupon service on SQLite and PostgreSQL: bulk generation (COPY or executemany) with
codes already taken drawn again, a code space too crowded refused whole, personal coupons
issued inside another feature's unit of work, and the CSV export streamed page by page."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from kopilka.adapters.db.mechanics.coupons import CouponStore
from kopilka.adapters.db.tables import coupons
from kopilka.bootstrap import Container
from kopilka.domain.coupons import codes as coupon_codes
from kopilka.domain.coupons.terms import BatchInput, PersonalCouponInput, PromoCodeInput
from kopilka.domain.errors import Conflict, ValidationFailed
from kopilka.services import coupons as coupon_service
from kopilka.services.context import load_tenant
from kopilka.testing import FakeClock
from tests.conftest import Merchant
from tests.e2e.helpers import count, writes


def batch(code: str, n: int, **fields: Any) -> BatchInput:
    return BatchInput.model_validate(
        {"code": code, "count": n, "benefit": {"discount_percent": 5}, **fields}
    )


def codes_of(container: Container, merchant: Merchant, batch_id: Any) -> list[str]:
    with container.uow_factory(write=False) as uow:
        rows = CouponStore(uow).batch_codes(merchant.tenant_id, batch_id, None, 10**6)
    return [r["code"] for r in rows]


def test_a_batch_of_five_thousand(container: Container, merchant: Merchant) -> None:
    made = container.coupons.create_batch(merchant.actor, batch("big", 5000, prefix="B-"))
    assert made.counts is not None
    assert made.counts.codes == 5000
    found = codes_of(container, merchant, made.id)
    assert len(set(found)) == 5000
    assert all(c.startswith("B-") and len(c) == 12 for c in found)
    with container.engine.connect() as conn:
        kinds = conn.execute(
            sa.select(coupons.c.kind, coupons.c.uses_left, coupons.c.terms, sa.func.count())
            .where(coupons.c.batch_id == made.id)
            .group_by(coupons.c.kind, coupons.c.uses_left, coupons.c.terms)
        ).all()
    assert [(k, u, t, n) for k, u, t, n in kinds] == [("batch", 1, None, 5000)]


def test_codes_already_taken_are_drawn_again(
    container: Container, merchant: Merchant, monkeypatch: pytest.MonkeyPatch
) -> None:
    actor = merchant.actor
    container.coupons.create_promo(
        actor, PromoCodeInput.model_validate({"code": "X2222", "benefit": {"gift": {"sku": "G"}}})
    )
    first = container.coupons.create_batch(actor, batch("first", 3, prefix="X", length=4))
    taken = codes_of(container, merchant, first.id)
    real = coupon_codes.generate
    calls: list[int] = []

    def generate(count: int, length: int, alphabet: str = "", prefix: str = "") -> list[str]:
        calls.append(count)
        if len(calls) == 1:  # the first draw clashes with codes already there
            return ["X2222", *taken, *real(count - 4, length, alphabet, prefix)]
        return real(count, length, alphabet, prefix)

    monkeypatch.setattr(coupon_codes, "generate", generate)
    made = container.coupons.create_batch(actor, batch("second", 10, prefix="X", length=4))
    assert made.counts is not None
    assert made.counts.codes == 10
    assert calls[0] == 10
    assert calls[1] == 4  # only the clashing ones are drawn again
    fresh = codes_of(container, merchant, made.id)
    assert len(set(fresh)) == 10
    assert not set(fresh) & {"X2222", *taken}
    assert count(container.engine, "coupons") == 1 + 3 + 10


def test_a_code_space_that_stays_full_is_refused_whole(
    container: Container, merchant: Merchant, monkeypatch: pytest.MonkeyPatch
) -> None:
    container.coupons.create_promo(
        merchant.actor,
        PromoCodeInput.model_validate({"code": "Z2222", "benefit": {"discount_percent": 1}}),
    )
    monkeypatch.setattr(coupon_codes, "generate", lambda *args, **kwargs: ["Z2222"])
    before = writes(container.engine)
    with pytest.raises(Conflict) as caught:
        container.coupons.create_batch(merchant.actor, batch("full", 1, prefix="Z", length=4))
    assert caught.value.code == "code_space_exhausted"
    assert writes(container.engine) == before


def test_personal_coupons_inside_another_features_transaction(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    member_id = container.members.enroll(merchant.actor, {"name": "Birthday"}).id
    terms = PersonalCouponInput.model_validate(
        {"benefit": {"discount_amount": 30_000}, "valid_days": 14, "min_basket": 100_000}
    )
    with container.uow_factory(write=True) as uow:
        tenant = load_tenant(uow, merchant.tenant_id)
        row = container.coupons.issue_in(
            uow, tenant, member_id, terms, terms, clock.now(), source=("campaign", "spring")
        )
        uow.commit()
    view = container.coupons.get(merchant.actor, row["code"].lower())
    assert (view.kind, view.member_id, view.source_type, view.source_id) == (
        "personal",
        member_id,
        "campaign",
        "spring",
    )
    assert view.valid_until == clock.now() + timedelta(days=14)
    listed = container.coupons.member_coupons(merchant.actor, member_id, None, 10)
    assert [c.code for c in listed] == [row["code"]]
    bad = PersonalCouponInput.model_validate({"benefit": {"discount_percent": 0}})
    with container.uow_factory(write=True) as uow:
        tenant = load_tenant(uow, merchant.tenant_id)
        with pytest.raises(ValidationFailed) as caught:
            container.coupons.issue_in(
                uow, tenant, member_id, bad, bad, clock.now(), source=("x", None)
            )
    assert [e.path for e in caught.value.errors] == [("benefit", "discount_percent")]


def test_the_csv_is_read_page_by_page(
    container: Container, merchant: Merchant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(coupon_service, "CSV_CHUNK", 7)
    made = container.coupons.create_batch(merchant.actor, batch("paged", 30))
    name, chunks = container.coupons.export_csv(merchant.actor, made.id)
    assert name == "coupons-paged.csv"
    parts: Iterator[str] = iter(chunks)
    header = next(parts)
    assert header == "code,status,uses_left,valid_from,valid_until\n"
    pages = list(parts)
    assert [len(p.splitlines()) for p in pages] == [7, 7, 7, 7, 2]
    rows = [line.split(",")[0] for line in itertools.chain(*(p.splitlines() for p in pages))]
    assert rows == sorted(codes_of(container, merchant, made.id))
