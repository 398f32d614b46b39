"""A member merge keeps the tiers, life-cycle awards, event caps and referrals of the
duplicate on the survivor (both databases), never resets a once-only or capped reward, and
leaves another tenant's rows alone."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from kopilka.adapters.db.mechanics.awards import mechanic_awards
from kopilka.adapters.db.mechanics.referrals import member_fingerprints, referral_codes, referrals
from kopilka.adapters.db.mechanics.tiers import member_tiers, tier_history, tier_qualification
from kopilka.bootstrap import Container
from kopilka.services.purchases import LineInput, MemberRef, ReceiptInput
from kopilka.testing import FakeClock
from tests.conftest import Merchant, make_merchant
from tests.integration import test_referrals as ref
from tests.integration import test_tiers as tiers

TENANT_TABLES = (
    member_tiers,
    tier_qualification,
    tier_history,
    mechanic_awards,
    referral_codes,
    referrals,
    member_fingerprints,
)


def hooked(c: Container) -> None:
    """The mechanics' hooks are registered (bootstrap does; add them if it does not)."""
    for hook in (c.tiers.member_hook, c.lifecycle.member_hook, c.referrals.member_hook):
        if hook not in c.members.hooks:
            c.members.hooks.append(hook)


def rows_of(c: Container, tenant_id: uuid.UUID) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of this module's tables that belongs to the tenant."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    with c.engine.connect() as conn:
        for table in TENANT_TABLES:
            rows = conn.execute(sa.select(table).where(table.c.tenant_id == tenant_id)).all()
            found[table.name] = sorted((tuple(str(v) for v in r) for r in rows), key=str)
    return found


def awards(c: Container, member: uuid.UUID) -> list[tuple[str, str]]:
    a = mechanic_awards.c
    with c.engine.connect() as conn:
        rows = conn.execute(
            sa.select(a.mechanic, a.award_key)
            .where(a.member_id == member, a.status == "granted")
            .order_by(a.award_key)
        ).all()
    return [(r.mechanic, r.award_key) for r in rows]


def qualification(c: Container, member: uuid.UUID) -> dict[Any, int]:
    q = tier_qualification.c
    with c.engine.connect() as conn:
        rows = conn.execute(sa.select(q.day, q.spent).where(q.member_id == member)).all()
    return {r.day: int(r.spent) for r in rows}


def buy(c: Container, m: Merchant, member: uuid.UUID, number: str, price: int) -> uuid.UUID:
    request = ReceiptInput(
        lines=(LineInput("LATTE", Decimal(1), price),), member=MemberRef(id=member), outlet="OUT-1"
    )
    return uuid.UUID(c.purchases.confirm(m.actor, request, number)["receipt"]["id"])


# ---- tiers ---------------------------------------------------------------------------------
def test_the_better_tier_stays_and_the_qualification_is_summed(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    hooked(c)
    clock.set(datetime(2026, 3, 1, 9, 0, tzinfo=UTC))
    tiers.publish(c, m)
    other = make_merchant(c, "Other")
    tiers.publish(c, other)
    outsider = tiers.enrol(c, other)
    tiers.buy(c, other, outsider, 45_000, "O-1")
    before = rows_of(c, other.tenant_id)

    survivor = tiers.enrol(c, m, phone="+79161110001")
    duplicate = tiers.enrol(c, m, phone="+79161110002")
    tiers.buy(c, m, survivor, 10_000, "S-1")
    tiers.buy(c, m, duplicate, 45_000, "D-1")  # Gold from 40 000 ₽
    assert (tiers.tier(c, m, survivor), tiers.tier(c, m, duplicate)) == ("silver", "gold")
    c.members.merge(m.actor, survivor, duplicate)

    assert tiers.tier(c, m, survivor) == "gold"
    status = c.tiers.status(m.actor, survivor)
    assert status.qualification.value == 5_500_000  # both profiles' money, one day summed
    assert qualification(c, duplicate) == {}
    assert list(qualification(c, survivor).values()) == [5_500_000]
    # The duplicate's path to Gold is the survivor's history now.
    assert tiers.reasons(c, m, survivor).count("upgraded") == 1
    with c.engine.connect() as conn:
        left = sum(
            conn.execute(
                sa.select(sa.func.count()).where(table.c.member_id == duplicate)
            ).scalar_one()
            for table in (member_tiers, tier_history)
        )
        audit = conn.execute(
            sa.text("SELECT count(*) FROM audit_log WHERE action = 'tier.merge'")
        ).scalar_one()
    assert left == 0
    assert audit == 1
    assert rows_of(c, other.tenant_id) == before


def test_two_halves_that_reach_a_higher_level_together_upgrade_at_once(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    hooked(c)
    clock.set(datetime(2026, 3, 1, 9, 0, tzinfo=UTC))
    tiers.publish(c, m)
    survivor = tiers.enrol(c, m, phone="+79161110003")
    duplicate = tiers.enrol(c, m, phone="+79161110004")
    tiers.buy(c, m, survivor, 60_000, "S-1")
    clock.set(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    tiers.buy(c, m, duplicate, 50_000, "D-1")
    assert (tiers.tier(c, m, survivor), tiers.tier(c, m, duplicate)) == ("gold", "gold")
    c.members.merge(m.actor, survivor, duplicate)
    assert tiers.tier(c, m, survivor) == "platinum"  # 110 000 ₽ in the year
    assert len(qualification(c, survivor)) == 2
    assert tiers.job(c) == 0  # nothing left for the night


# ---- life cycle ----------------------------------------------------------------------------
def lifecycle_program(c: Container, m: Merchant) -> None:
    c.programs.publish(
        m.actor,
        "main",
        {
            "type": "bonus",
            "rules": [{"id": "base", "effects": [{"points_percent": 5}]}],
            "lifecycle": {
                "welcome": {"points": 100},
                "birthday": {"points": 500, "days_after": 0},
            },
            "events": [{"name": "review_left", "points": 50, "caps": {"lifetime": 2}}],
        },
    )


def test_once_only_rewards_and_caps_count_both_profiles(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    hooked(c)
    clock.set(datetime(2026, 1, 10, 9, 0, tzinfo=UTC))
    lifecycle_program(c, m)
    other = make_merchant(c, "Other")
    lifecycle_program(c, other)
    outsider = c.members.enroll(other.actor, {"phone": "+79161110009"}).id
    c.lifecycle.events.record(other.actor, outsider, "o-1", "review_left", {})
    before = rows_of(c, other.tenant_id)

    survivor = c.members.enroll(m.actor, {"phone": "+79161110005", "birthday": "1990-03-10"}).id
    duplicate = c.members.enroll(m.actor, {"phone": "+79161110006", "birthday": "1990-01-16"}).id
    for i in range(2):
        c.lifecycle.events.record(m.actor, duplicate, f"ev-{i}", "review_left", {})
    clock.set(datetime(2026, 1, 16, 9, 0, tzinfo=UTC))
    assert c.lifecycle.run_birthdays(clock.now()) == 1  # the duplicate's
    c.members.merge(m.actor, survivor, duplicate)

    # Both had a welcome: the duplicate's is kept (re-keyed) so the person's history stays.
    assert awards(c, survivor) == [
        ("birthday", "birthday:2026"),
        ("event", "event:review_left:ev-0"),
        ("event", "event:review_left:ev-1"),
        ("welcome", "welcome"),
        ("welcome", f"welcome:merged:{duplicate.hex}"),
    ]
    assert awards(c, duplicate) == []
    # The lifetime cap was used up by the duplicate: the survivor's event earns nothing.
    view = c.lifecycle.events.record(m.actor, survivor, "ev-2", "review_left", {})
    assert (view.reward, view.capped) == (None, "lifetime")
    assert len(c.lifecycle.events.list(m.actor, survivor, None, 10)) == 3
    # The person had this year's birthday bonus: the survivor's birthday gives no second one.
    clock.set(datetime(2026, 3, 10, 9, 0, tzinfo=UTC))
    assert c.lifecycle.run_birthdays(clock.now()) == 0
    assert c.ledger.balance(m.actor, survivor).available == 100 + 100 + 500 + 2 * 50
    assert rows_of(c, other.tenant_id) == before


def test_a_refund_of_the_duplicates_first_purchase_still_takes_the_welcome_back(
    container: Container, merchant: Merchant
) -> None:
    c, m = container, merchant
    hooked(c)
    c.programs.publish(
        m.actor,
        "main",
        {"type": "bonus", "lifecycle": {"welcome": {"points": 200, "on": "first_purchase"}}},
    )
    survivor = c.members.enroll(m.actor, {"phone": "+79161110007"}).id
    duplicate = c.members.enroll(m.actor, {"phone": "+79161110008"}).id
    receipt = buy(c, m, duplicate, "D-1", 25_000)
    c.members.merge(m.actor, survivor, duplicate)
    assert awards(c, survivor) == [("welcome", "welcome")]
    assert "welcome" not in c.purchases.confirm(
        m.actor,
        ReceiptInput(
            lines=(LineInput("LATTE", Decimal(1), 25_000),),
            member=MemberRef(id=survivor),
            outlet="OUT-1",
        ),
        "S-1",
    )
    cancelled = c.purchases.cancel(m.actor, receipt)
    assert "welcome_taken_back" in cancelled["refunds"][0]
    assert awards(c, survivor) == []


# ---- referrals -----------------------------------------------------------------------------
def test_the_duplicates_friends_and_cap_are_the_survivors(
    container: Container, clock: FakeClock
) -> None:
    c = container
    hooked(c)
    shop = make_merchant(c, "Referral Coffee")
    ref.publish(c, shop)
    other = make_merchant(c, "Other")
    ref.publish(c, other)
    outsider = ref.enrol(c, other, phone="+79160000091")
    ref.enrol(c, other, ref.code_of(c, other, outsider), phone="+79160000092")
    before = rows_of(c, other.tenant_id)

    survivor = ref.enrol(c, shop, phone="+79160000001", fingerprints={"device": "S"})
    duplicate = ref.enrol(c, shop, phone="+79160000002", fingerprints={"device": "D"})
    dup_code = ref.code_of(c, shop, duplicate)
    friends = [ref.enrol(c, shop, dup_code, phone=f"+7916000001{i}") for i in range(3)]
    c.members.merge(shop.actor, survivor, duplicate)

    summary = c.referrals.summary(shop.actor, survivor)
    assert summary.counts.referred == 3
    assert {r.referee_id for r in c.referrals.referees(shop.actor, survivor, None, 10)} == set(
        friends
    )
    # The monthly cap (3) was used by the duplicate: the survivor's next friend is capped.
    late = ref.enrol(c, shop, ref.code_of(c, shop, survivor), phone="+79160000020")
    assert ref.referral_row(c, late)["status"] == "capped"
    # A friend with the duplicate's device is caught through the survivor.
    clock.advance(days=40)
    shared = ref.enrol(c, shop, dup_code, phone="+79160000022", fingerprints={"device": "D"})
    assert ref.referral_row(c, shared)["reason"] == "shared_fingerprint"
    # The friend's purchase rewards the survivor.
    ref.buy(c, shop, friends[0], "F-1", 150_000)
    assert ref.points(c, shop, survivor) == (0, 500)
    assert rows_of(c, other.tenant_id) == before


def test_a_survivor_takes_the_duplicates_code_when_it_has_none(container: Container) -> None:
    c = container
    hooked(c)
    shop = make_merchant(c, "Referral Coffee")
    ref.publish(c, shop)
    survivor = ref.enrol(c, shop, phone="+79160000031")
    duplicate = ref.enrol(c, shop, phone="+79160000032")
    dup_code = ref.code_of(c, shop, duplicate)
    with c.engine.begin() as conn:  # like a member loaded by an import: no code yet
        conn.execute(sa.delete(referral_codes).where(referral_codes.c.member_id == survivor))
    c.members.merge(shop.actor, survivor, duplicate)
    assert c.referrals.summary(shop.actor, survivor).code == dup_code


def test_an_inherited_referral_rewards_the_survivors_purchase_even_if_seen_settled(
    container: Container, clock: FakeClock
) -> None:
    c = container
    hooked(c)
    shop = make_merchant(c, "Referral Coffee")
    ref.publish(c, shop)
    referrer = ref.enrol(c, shop, phone="+79160000041")
    survivor = ref.enrol(c, shop, phone="+79160000042")
    ref.buy(c, shop, survivor, "S-0", 50_000)  # the till now remembers: no referral
    duplicate = ref.enrol(c, shop, ref.code_of(c, shop, referrer), phone="+79160000043")
    c.members.merge(shop.actor, survivor, duplicate)
    assert ref.referral_row(c, survivor)["status"] == "awaiting_purchase"
    receipt = ref.buy(c, shop, survivor, "S-1", 150_000)
    row = ref.referral_row(c, survivor)
    assert (row["status"], row["receipt_id"]) == ("pending", receipt)
    assert ref.points(c, shop, referrer) == (0, 500)
    # A refund inside the window takes both rewards back.
    c.purchases.refund(shop.actor, receipt, "back", None)
    assert ref.referral_row(c, survivor)["status"] == "voided"
    assert ref.points(c, shop, referrer) == (0, 0)


def test_a_refund_of_the_duplicates_rewarded_purchase_voids_the_moved_referral(
    container: Container,
) -> None:
    c = container
    hooked(c)
    shop = make_merchant(c, "Referral Coffee")
    ref.publish(c, shop)
    referrer = ref.enrol(c, shop, phone="+79160000051")
    survivor = ref.enrol(c, shop, phone="+79160000052")
    duplicate = ref.enrol(c, shop, ref.code_of(c, shop, referrer), phone="+79160000053")
    receipt = ref.buy(c, shop, duplicate, "D-1", 150_000)
    assert ref.referral_row(c, duplicate)["status"] == "pending"
    c.members.merge(shop.actor, survivor, duplicate)
    row = ref.referral_row(c, survivor)
    assert {a["member_id"] for a in row["awards"]} == {str(referrer), str(survivor)}
    assert awards(c, survivor) == [("referee", f"referral:{duplicate}")]
    c.purchases.refund(shop.actor, receipt, "back", None)
    assert ref.referral_row(c, survivor)["status"] == "voided"
    assert ref.points(c, shop, referrer) == (0, 0)
    assert awards(c, survivor) == []


def test_profiles_that_invited_each_other_are_not_rewarded_after_the_merge(
    container: Container,
) -> None:
    c = container
    hooked(c)
    shop = make_merchant(c, "Referral Coffee")
    ref.publish(c, shop)
    survivor = ref.enrol(c, shop, phone="+79160000061")
    duplicate = ref.enrol(c, shop, ref.code_of(c, shop, survivor), phone="+79160000062")
    c.members.merge(shop.actor, survivor, duplicate)
    row = ref.referral_row(c, survivor)
    assert (row["referrer_id"], row["status"], row["reason"]) == (
        survivor,
        "blocked",
        "self_referral",
    )
    ref.buy(c, shop, survivor, "S-1", 150_000)
    assert ref.points(c, shop, survivor)[1] == 0
