"""Balanced postings and the in-memory ledger plan (pure, no database)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kopilka.domain.ledger.lots import LotStatus
from kopilka.domain.ledger.model import (
    MEMBER_ACCOUNT_KINDS,
    TENANT_ACCOUNT_KINDS,
    AccountKind,
    Posting,
    UnbalancedTransaction,
    check_balanced,
    transfer,
)
from kopilka.domain.ledger.plan import AccountState, LedgerPlan, NewTransaction

A, B, C = (uuid.UUID(int=i) for i in (1, 2, 3))
NOW = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)


# ---- check_balanced ----------------------------------------------------------------------
def test_balanced_postings_pass_through_as_a_list() -> None:
    postings = (p for p in [Posting(A, -100), Posting(B, 60), Posting(C, 40)])
    assert check_balanced(postings) == [Posting(A, -100), Posting(B, 60), Posting(C, 40)]


@pytest.mark.parametrize(
    ("postings", "message"),
    [
        ([], "at least two"),
        ([Posting(A, 0)], "at least two"),
        ([Posting(A, -5), Posting(B, 4)], "sum to zero"),
        ([Posting(A, 0), Posting(B, 0)], "non-zero int"),
        ([Posting(A, -5), Posting(B, 5), Posting(C, 0)], "non-zero int"),
        ([Posting(A, -1.0), Posting(B, 1.0)], "non-zero int"),  # type: ignore[arg-type]
        ([Posting(A, True), Posting(B, -1)], "non-zero int"),
    ],
)
def test_unbalanced_or_malformed_postings_are_refused(
    postings: list[Posting], message: str
) -> None:
    with pytest.raises(UnbalancedTransaction, match=message):
        check_balanced(postings)


@given(st.lists(st.integers(min_value=-(10**12), max_value=10**12).filter(bool), min_size=1))
def test_any_postings_closed_by_their_negated_sum_balance(amounts: list[int]) -> None:
    total = sum(amounts)
    postings = [Posting(uuid.uuid4(), a) for a in amounts]
    if total:
        postings.append(Posting(uuid.uuid4(), -total))
    if len(postings) < 2:
        with pytest.raises(UnbalancedTransaction):
            check_balanced(postings)
    else:
        assert sum(p.amount for p in check_balanced(postings)) == 0


def test_transfer_moves_a_positive_amount() -> None:
    assert transfer(A, B, 7) == [Posting(A, -7), Posting(B, 7)]
    for bad in (0, -3):
        with pytest.raises(UnbalancedTransaction):
            transfer(A, B, bad)


def test_account_kinds_are_split_between_members_and_tenant() -> None:
    assert MEMBER_ACCOUNT_KINDS.isdisjoint(TENANT_ACCOUNT_KINDS)
    assert set(AccountKind) == MEMBER_ACCOUNT_KINDS | TENANT_ACCOUNT_KINDS
    assert AccountKind.WALLET.is_member_account
    assert not AccountKind.ISSUED.is_member_account


# ---- the plan ----------------------------------------------------------------------------
def _txn(kind: str = "accrual", amount: int = 1) -> NewTransaction:
    return NewTransaction(
        id=uuid.uuid4(),
        kind=kind,
        member_id=A,
        currency="points",
        amount=amount,
        actor="test",
        source_type="api",
        source_id=None,
        occurred_at=NOW,
    )


def _plan(wallet: int = 0, *, allow_debt: bool = False) -> tuple[LedgerPlan, AccountState]:
    plan = LedgerPlan()
    account = AccountState(A, AccountKind.WALLET, wallet, allow_debt)
    plan.accounts[A] = account
    return plan, account


def test_plan_tracks_member_balances_and_leaves_tenant_accounts_uncached() -> None:
    plan, wallet = _plan(10)
    txn = plan.add_transaction(_txn(), [Posting(B, -25), Posting(A, 25)])
    assert wallet.balance == 35
    assert [(p.account_id, p.amount, p.balance_after) for p in plan.postings] == [
        (B, -25, None),
        (A, 25, 35),
    ]
    assert plan.transactions == [txn]


def test_plan_refuses_a_negative_balance_unless_debt_is_allowed() -> None:
    plan, _ = _plan(10)
    with pytest.raises(UnbalancedTransaction, match="negative"):
        plan.add_transaction(_txn(), [Posting(A, -11), Posting(B, 11)])
    plan, wallet = _plan(10, allow_debt=True)
    plan.add_transaction(_txn(), [Posting(A, -11), Posting(B, 11)])
    assert wallet.balance == -1


def test_plan_refuses_unbalanced_transactions() -> None:
    plan, wallet = _plan(10)
    with pytest.raises(UnbalancedTransaction):
        plan.add_transaction(_txn(), [Posting(A, -5), Posting(B, 4)])
    assert wallet.balance == 10
    assert plan.transactions == []


def test_plan_lots_stay_within_zero_and_their_amount() -> None:
    plan, _ = _plan()
    source = _txn()
    lot_id = plan.create_lot(
        member_id=A,
        currency="points",
        amount=100,
        remaining=100,
        status=LotStatus.ACTIVE,
        available_at=NOW,
        expires_at=NOW + timedelta(days=30),
        source_txn_id=source.id,
    )
    spend = _txn("redemption", 40)
    plan.change_lot(lot_id, -40, txn_id=spend.id, origin_id=spend.id)
    assert plan.lot(lot_id).remaining == 60
    assert plan.new_lots[lot_id].remaining == 60  # a new lot is written with its final state
    assert plan.changed_lots == {}
    with pytest.raises(UnbalancedTransaction):
        plan.change_lot(lot_id, -61, txn_id=spend.id, origin_id=spend.id)
    with pytest.raises(UnbalancedTransaction):
        plan.change_lot(lot_id, 41, txn_id=spend.id, origin_id=spend.id)
    plan.change_lot(lot_id, 0, txn_id=spend.id, origin_id=spend.id, status=LotStatus.EXPIRED)
    assert plan.new_lots[lot_id].status is LotStatus.EXPIRED
    # Zero changes record no movement; the one real change does.
    assert [(m.lot_id, m.amount, m.origin_id) for m in plan.movements] == [(lot_id, -40, spend.id)]


def test_plan_records_changes_to_existing_lots() -> None:
    from kopilka.domain.ledger.lots import Lot

    plan, _ = _plan()
    existing = Lot(C, 50, 20, LotStatus.PENDING, NOW, None)
    plan.lots[C] = existing
    plan.set_lot_status(C, LotStatus.ACTIVE)
    assert plan.changed_lots == {C: (20, LotStatus.ACTIVE)}
    origin = uuid.uuid4()
    plan.change_lot(C, 30, txn_id=origin, origin_id=origin)
    assert plan.changed_lots == {C: (50, LotStatus.ACTIVE)}
    assert plan.spendable_lots(NOW) == [plan.lot(C)]
