"""Referrals on both databases, driven by the clock: attribution at enrolment, rewards on the
first purchase or at enrolment, pending through the return window, voided by a refund of the
first purchase inside it (and kept after it), the monthly cap, fingerprints, self-referral,
and the job that writes down finished windows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from kopilka.adapters.db.mechanics.awards import mechanic_awards
from kopilka.adapters.db.mechanics.referrals import member_fingerprints, referral_codes, referrals
from kopilka.bootstrap import Container
from kopilka.domain.errors import BusinessRuleViolation, ValidationFailed
from kopilka.services.purchases import LineInput, MemberRef, ReceiptInput
from kopilka.services.verify import verify_ledger
from kopilka.testing import FakeClock
from tests.conftest import Merchant, make_merchant

REFERRAL: dict[str, Any] = {
    "referrer": {"points": 500},
    "referee": {"points": 300},
    "trigger": "first_purchase",
    "min_purchase": 100_000,  # 1 000 roubles
    "pending_days": 14,
    "monthly_cap": 3,
    "share_url": "https://example.ru/join?ref={code}",
}


def publish(c: Container, m: Merchant, **changes: Any) -> None:
    document = {"type": "bonus", "pending_days": 0, "referral": {**REFERRAL, **changes}}
    c.programs.publish(m.actor, "main", document)


def enrol(c: Container, m: Merchant, code: str | None = None, **profile: Any) -> uuid.UUID:
    fingerprints = profile.pop("fingerprints", None)
    context = {"referral_code": code, "fingerprints": fingerprints}
    return c.members.enroll(m.actor, profile, context=context).id


def code_of(c: Container, m: Merchant, member_id: uuid.UUID) -> str:
    code = c.referrals.summary(m.actor, member_id).code
    assert code is not None
    return code


def buy(c: Container, m: Merchant, member_id: uuid.UUID, number: str, price: int) -> uuid.UUID:
    request = ReceiptInput(
        lines=(
            LineInput(sku="A", qty=Decimal(1), price=price // 2),
            LineInput(sku="B", qty=Decimal(1), price=price - price // 2),
        ),
        member=MemberRef(id=member_id),
        outlet="OUT-1",
    )
    return uuid.UUID(c.purchases.confirm(m.actor, request, number)["receipt"]["id"])


def points(c: Container, m: Merchant, member_id: uuid.UUID) -> tuple[int, int]:
    """(available, pending)."""
    view = c.ledger.balance(m.actor, member_id)
    return view.available, view.pending


def referral_row(c: Container, referee: uuid.UUID) -> dict[str, Any]:
    with c.engine.connect() as conn:
        row = conn.execute(sa.select(referrals).where(referrals.c.referee_id == referee)).one()
    return dict(row._mapping)


def rows(c: Container, table: sa.Table) -> int:
    with c.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def assert_ledger_ok(c: Container) -> None:
    report = verify_ledger(c.uow_factory)
    assert report.ok, {k: v for k, v in report.checks.items() if v}


@pytest.fixture
def shop(container: Container) -> Merchant:
    merchant = make_merchant(container, "Referral Coffee")
    publish(container, merchant)
    return merchant


def test_a_refund_of_the_first_purchase_in_the_window_voids_both_rewards(
    container: Container, shop: Merchant, clock: FakeClock
) -> None:
    c = container
    referrer = enrol(c, shop, phone="+79160000001")
    friend = enrol(c, shop, code_of(c, shop, referrer), phone="+79160000002")
    assert referral_row(c, friend)["status"] == "awaiting_purchase"
    receipt = buy(c, shop, friend, "R-1", 150_000)
    row = referral_row(c, friend)
    assert (row["status"], row["receipt_id"]) == ("pending", receipt)
    assert (row["referrer_points"], row["referee_points"]) == (500, 300)
    assert row["pending_until"] == clock.now() + timedelta(days=14)
    assert points(c, shop, referrer) == (0, 500)  # pending: not spendable in the window
    assert points(c, shop, friend) == (0, 300)

    clock.advance(days=10)
    answer = c.purchases.refund(shop.actor, receipt, "back", None)
    assert answer["referral"]["status"] == "voided"
    assert answer["referral"]["points_taken_back"] == 800
    row = referral_row(c, friend)
    assert (row["status"], row["reason"]) == ("voided", "first_purchase_refunded")
    assert row["voided_at"] == clock.now()
    assert points(c, shop, referrer) == (0, 0)
    assert points(c, shop, friend) == (0, 0)
    with c.engine.connect() as conn:
        statuses = conn.execute(sa.select(mechanic_awards.c.status)).scalars().all()
    assert sorted(statuses) == ["voided", "voided"]
    # The window passing, and the job, bring nothing back; a new purchase earns nothing.
    clock.advance(days=30)
    c.jobs.run()
    buy(c, shop, friend, "R-2", 200_000)
    assert referral_row(c, friend)["status"] == "voided"
    assert points(c, shop, referrer) == (0, 0)
    assert_ledger_ok(c)


def test_a_refund_after_the_window_keeps_the_rewards(
    container: Container, shop: Merchant, clock: FakeClock
) -> None:
    c = container
    referrer = enrol(c, shop)
    friend = enrol(c, shop, code_of(c, shop, referrer))
    receipt = buy(c, shop, friend, "R-1", 100_000)
    clock.advance(days=14)
    assert points(c, shop, referrer) == (500, 0)
    summary = c.referrals.summary(shop.actor, referrer)
    assert (summary.counts.rewarded, summary.counts.pending) == (1, 0)  # before the job too
    assert c.jobs.run().steps["referral_rewards_settled"] == 1
    assert c.jobs.run().steps["referral_rewards_settled"] == 0  # run twice: nothing more
    answer = c.purchases.refund(shop.actor, receipt, "late", None)
    assert "referral" not in answer
    assert referral_row(c, friend)["status"] == "rewarded"
    assert points(c, shop, referrer) == (500, 0)
    assert points(c, shop, friend) == (300, 0)
    assert_ledger_ok(c)


def test_a_partial_refund_voids_only_below_the_threshold(
    container: Container, shop: Merchant, clock: FakeClock
) -> None:
    c = container
    referrer = enrol(c, shop)
    friend = enrol(c, shop, code_of(c, shop, referrer))
    receipt = buy(c, shop, friend, "R-1", 300_000)  # lines of 1 500 and 1 500 roubles
    clock.advance(days=1)
    kept = c.purchases.refund(shop.actor, receipt, "half", [(0, Decimal(1))])
    assert "referral" not in kept  # 1 500 roubles still paid: over the threshold
    assert referral_row(c, friend)["status"] == "pending"
    gone = c.purchases.refund(shop.actor, receipt, "more", [(1, Decimal("0.5"))])
    assert gone["referral"]["status"] == "voided"  # 750 roubles left: below
    assert points(c, shop, referrer) == (0, 0)
    assert_ledger_ok(c)


def test_only_a_purchase_reaching_the_threshold_rewards(
    container: Container, shop: Merchant
) -> None:
    c = container
    referrer = enrol(c, shop)
    friend = enrol(c, shop, code_of(c, shop, referrer))
    buy(c, shop, friend, "R-1", 99_999)
    assert referral_row(c, friend)["status"] == "awaiting_purchase"
    assert points(c, shop, referrer) == (0, 0)
    second = buy(c, shop, friend, "R-2", 100_000)
    row = referral_row(c, friend)
    assert (row["status"], row["receipt_id"]) == ("pending", second)
    assert points(c, shop, referrer) == (0, 500)
    buy(c, shop, friend, "R-3", 500_000)  # later purchases: nothing more
    assert points(c, shop, referrer) == (0, 500)


def test_a_held_receipt_rewards_when_it_is_confirmed(container: Container, shop: Merchant) -> None:
    c = container
    referrer = enrol(c, shop)
    friend = enrol(c, shop, code_of(c, shop, referrer))
    request = ReceiptInput(
        lines=(LineInput(sku="A", qty=Decimal(1), price=120_000),),
        member=MemberRef(id=friend),
        outlet="OUT-1",
    )
    held = c.purchases.confirm(shop.actor, request, "H-1", hold=True)
    assert referral_row(c, friend)["status"] == "awaiting_purchase"
    answer = c.purchases.confirm_held(shop.actor, uuid.UUID(held["receipt"]["id"]))
    assert answer["referral"]["status"] == "pending"
    assert points(c, shop, friend) == (0, 300)


def test_rewards_at_enrolment(container: Container, shop: Merchant, clock: FakeClock) -> None:
    c = container
    publish(
        c,
        shop,
        trigger="enrolment",
        min_purchase=0,
        pending_days=0,
        referrer={"points": 200, "label": {"ru": "Друг в клубе", "en": "Friend joined"}},
        referee=None,
    )
    referrer = enrol(c, shop)
    friend = enrol(c, shop, code_of(c, shop, referrer))
    row = referral_row(c, friend)
    assert (row["status"], row["referrer_points"], row["referee_points"]) == ("rewarded", 200, 0)
    assert points(c, shop, referrer) == (200, 0)
    assert points(c, shop, friend) == (0, 0)
    [bonus] = c.ledger.history(shop.actor, referrer, None, 10)
    assert bonus.description == {
        "ru": "Друг в клубе: 200 баллов",
        "en": "Friend joined: 200 points",
    }


def test_the_monthly_cap_counts_per_calendar_month_in_the_tenant_zone(
    container: Container, shop: Merchant, clock: FakeClock
) -> None:
    c = container
    clock.set(datetime(2026, 3, 31, 20, 0, tzinfo=UTC))  # 23:00 in Moscow, March 31
    referrer = enrol(c, shop)
    code = code_of(c, shop, referrer)
    friends = [enrol(c, shop, code) for _ in range(4)]
    assert [referral_row(c, f)["status"] for f in friends] == [
        "awaiting_purchase",
        "awaiting_purchase",
        "awaiting_purchase",
        "capped",
    ]
    assert referral_row(c, friends[3])["reason"] == "monthly_cap"
    buy(c, shop, friends[3], "R-capped", 200_000)  # a capped referral never earns
    assert points(c, shop, referrer) == (0, 0)
    clock.advance(hours=1)  # 00:00 on April 1 in Moscow (21:00 UTC): a new month
    april = enrol(c, shop, code)
    assert referral_row(c, april)["status"] == "awaiting_purchase"
    counts = c.referrals.summary(shop.actor, referrer).counts
    assert (counts.referred, counts.awaiting_purchase, counts.capped) == (5, 4, 1)


def test_a_shared_fingerprint_links_but_blocks_the_rewards(
    container: Container, shop: Merchant
) -> None:
    c = container
    referrer = enrol(c, shop, fingerprints={"device": "Phone-1", "ip": "10.0.0.1"})
    code = code_of(c, shop, referrer)
    # Case and spaces do not make a device another one.
    twin = enrol(c, shop, code, fingerprints={"device": " phone-1 ", "ip": "10.0.0.9"})
    other = enrol(c, shop, code, fingerprints={"ip": "10.0.0.9", "browser": "Phone-1"})
    row = referral_row(c, twin)
    assert (row["status"], row["reason"]) == ("blocked", "shared_fingerprint")
    assert {f["kind"] for f in row["fingerprints"]} == {"device", "ip"}
    assert "phone-1" not in str(row["fingerprints"]).lower()  # only digests are kept
    buy(c, shop, twin, "R-1", 200_000)
    assert points(c, shop, referrer) == (0, 0)
    # Another kind with the same value is not the same fingerprint.
    assert referral_row(c, other)["status"] == "awaiting_purchase"
    assert rows(c, member_fingerprints) == 6


def test_fingerprints_of_a_referral_count_for_the_next_one(
    container: Container, shop: Merchant
) -> None:
    """The referrer was itself referred from a device: a friend on that device is blocked."""
    c = container
    first = enrol(c, shop)
    referrer = enrol(c, shop, code_of(c, shop, first), fingerprints={"device": "D-7"})
    friend = enrol(c, shop, code_of(c, shop, referrer), fingerprints={"device": "D-7"})
    assert referral_row(c, friend)["status"] == "blocked"


def test_self_referral_by_email_variant_is_refused_and_writes_nothing(
    container: Container, shop: Merchant
) -> None:
    c = container
    referrer = enrol(c, shop, email="ivan.petrov@gmail.com")
    code = code_of(c, shop, referrer)
    before = rows(c, referrals)
    with pytest.raises(BusinessRuleViolation) as refused:
        enrol(c, shop, code, email="IvanPetrov+bonus@googlemail.com")
    assert refused.value.code == "self_referral"
    assert [e.path for e in refused.value.errors] == [("referral_code",)]
    assert rows(c, referrals) == before
    assert c.members.search(shop.actor, {"email": "ivanpetrov+bonus@googlemail.com"}, None, 5) == []


def test_unknown_and_other_tenants_codes_are_refused(container: Container, shop: Merchant) -> None:
    c = container
    rival = make_merchant(c, "Rival")
    publish(c, rival)
    their_code = code_of(c, rival, enrol(c, rival))
    members_before = len(c.members.search(shop.actor, {}, None, 100))
    for code in (their_code, "ZZZZZZZZ", "not a code at all", "0OIL1111"):
        with pytest.raises(ValidationFailed) as refused:
            enrol(c, shop, code, name="Newcomer")
        assert refused.value.code == "unknown_referral_code"
        assert [(e.path, e.code) for e in refused.value.errors] == [
            (("referral_code",), "unknown_referral_code")
        ]
    assert len(c.members.search(shop.actor, {}, None, 100)) == members_before


def test_codes_are_found_in_any_case_and_through_the_share_link(
    container: Container, shop: Merchant
) -> None:
    c = container
    referrer = enrol(c, shop)
    summary = c.referrals.summary(shop.actor, referrer)
    assert summary.code is not None
    assert len(summary.code) == 8
    assert summary.share_url == f"https://example.ru/join?ref={summary.code}"
    code = summary.code
    spaced = f"{code[:4].lower()}-{code[4:].lower()}"
    for given in (code.lower(), spaced, summary.share_url, f"https://example.ru/x/{code}"):
        friend = enrol(c, shop, given)
        assert referral_row(c, friend)["referrer_id"] == referrer
    assert c.referrals.summary(shop.actor, referrer).code == code  # stable


def test_without_a_referral_program_the_link_is_kept_but_earns_nothing(
    container: Container, merchant: Merchant
) -> None:
    c = container
    referrer = enrol(c, merchant)
    summary = c.referrals.summary(merchant.actor, referrer)
    assert (summary.share_url, summary.offer, summary.program) == (None, None, None)
    assert summary.code is not None
    friend = enrol(c, merchant, summary.code)
    row = referral_row(c, friend)
    assert (row["status"], row["reason"]) == ("inactive", "no_referral_program")


def test_terms_are_those_the_friend_joined_under(container: Container, shop: Merchant) -> None:
    c = container
    referrer = enrol(c, shop)
    friend = enrol(c, shop, code_of(c, shop, referrer))
    publish(c, shop, referrer={"points": 9999}, min_purchase=0)  # a new version
    buy(c, shop, friend, "R-1", 50_000)  # under the old threshold
    assert referral_row(c, friend)["status"] == "awaiting_purchase"
    buy(c, shop, friend, "R-2", 100_000)
    assert points(c, shop, referrer) == (0, 500)


def test_a_blocked_referrer_brings_friends_without_rewards(
    container: Container, shop: Merchant
) -> None:
    c = container
    referrer = enrol(c, shop)
    code = code_of(c, shop, referrer)
    c.members.set_blocked(shop.actor, referrer, True, "fraud check")
    friend = enrol(c, shop, code)
    row = referral_row(c, friend)
    assert (row["status"], row["reason"]) == ("blocked", "referrer_blocked")


def test_a_merged_referrers_code_brings_friends_to_the_survivor(
    container: Container, shop: Merchant
) -> None:
    c = container
    survivor = enrol(c, shop)
    duplicate = enrol(c, shop)
    code = code_of(c, shop, duplicate)
    c.members.merge(shop.actor, survivor, duplicate)
    friend = enrol(c, shop, code)
    assert referral_row(c, friend)["referrer_id"] == survivor
    buy(c, shop, friend, "R-1", 100_000)
    assert points(c, shop, survivor) == (0, 500)


def test_an_erased_members_code_is_dead(container: Container, shop: Merchant) -> None:
    c = container
    gone = enrol(c, shop)
    code = code_of(c, shop, gone)
    c.members.erase(shop.actor, gone)
    with pytest.raises(ValidationFailed) as refused:
        enrol(c, shop, code)
    assert refused.value.code == "unknown_referral_code"


def test_members_without_a_code_get_one_on_first_request(
    container: Container, shop: Merchant
) -> None:
    c = container
    member = enrol(c, shop)
    with c.engine.begin() as conn:  # as for a member imported before referrals existed
        conn.execute(sa.text("DELETE FROM referral_codes"))
    first = c.referrals.summary(shop.actor, member).code
    assert first is not None
    assert c.referrals.summary(shop.actor, member).code == first
    assert rows(c, referral_codes) == 1
