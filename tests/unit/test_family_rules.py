"""The pure rules of families: the leaving member's share under each split rule, who put
what into a pool, the lots a payout comes from, the month of the transfer limits, and the
document sections refused with their paths."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kopilka.domain.families.rules import (
    PoolEntry,
    contributions,
    leave_share,
    month_start,
    payout_takes,
)
from kopilka.domain.families.settings import DonationSettings
from kopilka.domain.ledger.lots import Lot, LotStatus
from kopilka.domain.rules.document import validate_document

NOW = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)


def ids(n: int) -> list[uuid.UUID]:
    return [uuid.UUID(int=i + 1) for i in range(n)]


# ---- the split rules ---------------------------------------------------------------------
def test_none_leaves_everything_with_the_family() -> None:
    assert leave_share("none", 500, 1000, 800, 3) == 0


def test_equal_share_is_the_pool_over_the_members_rounded_down() -> None:
    assert leave_share("equal_share", 0, 0, 100, 3) == 33
    assert leave_share("equal_share", 0, 0, 0, 3) == 0


def test_contributed_is_what_was_put_in_minus_a_share_of_what_left() -> None:
    # Nothing has left the pool: the member takes what they put in.
    assert leave_share("contributed", 150, 400, 400, 2) == 150
    # A quarter of what was put in was spent: the member bears a quarter of their part.
    assert leave_share("contributed", 150, 400, 300, 2) == 112
    # Points put in by members who left earlier stay with the pool, never to the leaver.
    assert leave_share("contributed", 150, 400, 900, 2) == 150
    assert leave_share("contributed", 0, 400, 400, 2) == 0
    assert leave_share("contributed", 10, 0, 400, 2) == 0
    assert leave_share("contributed", 10, 10, -5, 2) == 0


@given(
    stakes=st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=8),
    pool=st.integers(min_value=0, max_value=10**10),
    rule=st.sampled_from(["none", "contributed", "equal_share"]),
)
def test_members_leaving_one_by_one_never_take_more_than_the_pool(
    stakes: list[int], pool: int, rule: Any
) -> None:
    left = pool
    members = list(stakes)
    while members:
        share = leave_share(rule, members[0], sum(members), left, len(members))
        assert 0 <= share <= max(left, 0)
        if rule == "contributed":
            assert share <= members[0]
        left -= share
        members.pop(0)
    assert left >= 0


# ---- contributions -----------------------------------------------------------------------
def test_contributions_count_each_members_credits_after_joining() -> None:
    owner, kid, gone = ids(3)
    early, mark_kid, later = uuid.UUID(int=10), uuid.UUID(int=20), uuid.UUID(int=30)
    entries = [
        PoolEntry(early, "accrual", 100, {}),  # the owner's, before the kid joined
        PoolEntry(uuid.UUID(int=15), "accrual", 7, {"family_member": str(kid)}),  # too early
        PoolEntry(later, "accrual", 50, {"family_member": str(kid)}),
        PoolEntry(uuid.UUID(int=31), "reversal", 20, {"family_member": str(kid)}),
        PoolEntry(uuid.UUID(int=32), "bonus", 30, {}),
        PoolEntry(uuid.UUID(int=33), "redemption", 80, {"family_member": str(kid)}),
        PoolEntry(uuid.UUID(int=34), "transfer", 40, {"family_member": str(kid)}),
        PoolEntry(
            uuid.UUID(int=35),
            "transfer",
            25,
            {"family_member": str(kid), "direction": "in"},
        ),
        PoolEntry(
            uuid.UUID(int=36),
            "transfer",
            60,
            {"family_member": str(kid), "family_move": "join"},
        ),
        PoolEntry(uuid.UUID(int=37), "adjustment", -5, {}),
        PoolEntry(uuid.UUID(int=38), "accrual", 9, {"family_member": str(gone)}),
    ]
    since = {owner: uuid.UUID(int=1), kid: mark_kid}
    found = contributions(entries, owner, since, {owner: 10, kid: 60})
    assert found == {owner: 10 + 100 + 30 - 5, kid: 60 + 50 - 20 + 25}


def test_contributions_never_go_negative() -> None:
    owner, kid = ids(2)
    entries = [PoolEntry(uuid.UUID(int=9), "reversal", 50, {"family_member": str(kid)})]
    found = contributions(entries, owner, {owner: uuid.UUID(int=1), kid: uuid.UUID(int=2)}, {})
    assert found == {owner: 0, kid: 0}


# ---- payouts -----------------------------------------------------------------------------
def lot(n: int, remaining: int, status: LotStatus, days: int | None, available: int = -1) -> Lot:
    return Lot(
        id=uuid.UUID(int=n),
        amount=remaining,
        remaining=remaining,
        status=status,
        available_at=NOW + timedelta(days=available),
        expires_at=NOW + timedelta(days=days) if days is not None else None,
    )


def test_payouts_take_spendable_points_soonest_expiring_first_then_pending() -> None:
    lots = [
        lot(1, 50, LotStatus.ACTIVE, None),
        lot(2, 30, LotStatus.ACTIVE, 5),
        lot(3, 20, LotStatus.PENDING, 40, available=3),
        lot(4, 10, LotStatus.PENDING, 40, available=1),
        lot(5, 99, LotStatus.ACTIVE, -1),  # expired: not the pool's any more
        lot(6, 0, LotStatus.ACTIVE, 9),
    ]
    takes, short = payout_takes(lots, 95, NOW)
    assert [(t.lot_id.int, t.amount) for t in takes] == [(2, 30), (1, 50), (4, 10), (3, 5)]
    assert short == 0
    assert payout_takes(lots, 200, NOW)[1] == 200 - 110
    assert payout_takes(lots, 0, NOW) == ([], 0)


# ---- the calendar month ------------------------------------------------------------------
def test_the_month_starts_at_local_midnight() -> None:
    moscow = "Europe/Moscow"
    assert month_start(datetime(2026, 1, 31, 20, 59, tzinfo=UTC), moscow) == datetime(
        2025, 12, 31, 21, 0, tzinfo=UTC
    )
    assert month_start(datetime(2026, 1, 31, 21, 0, tzinfo=UTC), moscow) == datetime(
        2026, 1, 31, 21, 0, tzinfo=UTC
    )
    assert month_start(NOW, "UTC") == datetime(2026, 1, 1, tzinfo=UTC)


# ---- the document sections ---------------------------------------------------------------
BASE: dict[str, Any] = {"type": "bonus", "rules": []}


@pytest.mark.parametrize(
    ("sections", "path"),
    [
        ({"family": {"max_members": 1}}, ["family", "max_members"]),
        ({"family": {"max_members": "5"}}, ["family", "max_members"]),
        ({"family": {"leave_split": "half"}}, ["family", "leave_split"]),
        ({"family": {"pets": True}}, ["family", "pets"]),
        ({"transfers": {"min_points": 0}}, ["transfers", "min_points"]),
        (
            {"transfers": {"min_points": 100, "max_points_per_transfer": 50}},
            ["transfers", "max_points_per_transfer"],
        ),
        (
            {"transfers": {"min_points": 100, "max_points_per_month": 50}},
            ["transfers", "max_points_per_month"],
        ),
        ({"donations": {"charities": []}}, ["donations", "charities"]),
        ({"donations": {}}, ["donations", "charities"]),
        (
            {"donations": {"charities": [{"code": "Bad Code", "name": "x"}]}},
            ["donations", "charities", 0, "code"],
        ),
        (
            {"donations": {"charities": [{"code": "a", "name": {"de": "x"}}]}},
            ["donations", "charities", 0, "name", "de"],
        ),
        (
            {"donations": {"charities": [{"code": "a", "name": "x"}, {"code": "a", "name": "y"}]}},
            ["donations", "charities"],
        ),
    ],
)
def test_bad_sections_are_refused_with_their_path(
    sections: dict[str, Any], path: list[str | int]
) -> None:
    errors = validate_document({**BASE, **sections})
    assert path in [e["path"] for e in errors], errors


def test_good_sections_pass_and_names_fill_both_languages() -> None:
    document = {
        **BASE,
        "family": {"max_members": 6, "leave_split": "none", "invitation_days": 3},
        "transfers": {"min_points": 10, "max_points_per_transfer": 100},
        "donations": {"charities": [{"code": "fund", "name": {"ru": "Фонд"}}]},
    }
    assert validate_document(document) == []
    settings = DonationSettings.model_validate(document["donations"])
    charity = settings.charity("fund")
    assert charity is not None
    assert charity.names == {"ru": "Фонд", "en": "Фонд"}
    assert settings.charity("nope") is None
