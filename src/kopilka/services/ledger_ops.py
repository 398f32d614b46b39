"""Ledger operations that only build a plan, for use cases that write several things in
one transaction (a purchase writes its receipt, a redemption and accruals together)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from kopilka.domain.errors import BusinessRuleViolation, InsufficientPoints
from kopilka.domain.ledger.lots import LotStatus, allocate
from kopilka.domain.ledger.model import AccountKind, Posting, TxnKind
from kopilka.domain.ledger.plan import NewTransaction
from kopilka.services.ledger_book import MemberBook


class Shortfall(StrEnum):
    """What to do when points to take back were already spent."""

    FAIL = "fail"  # refuse, telling how many are missing
    DEBT = "debt"  # take them anyway: the wallet goes negative
    CAP = "cap"  # take what is there and report the rest (the till deducts it in cash)


CREDIT_COUNTER = {
    TxnKind.ACCRUAL: AccountKind.ISSUED,
    TxnKind.OPENING_BALANCE: AccountKind.ISSUED,
    TxnKind.BONUS: AccountKind.ISSUED,
    TxnKind.ADJUSTMENT: AccountKind.ADJUSTMENT,
}


@dataclass(frozen=True)
class Reversal:
    txn: NewTransaction | None
    shortfall: int


def refund_spend(
    book: MemberBook,
    original: Any,
    amount: int,
    *,
    source_type: str,
    source_id: str | None,
    reason: str | None = None,
) -> NewTransaction:
    """Give back ``amount`` points of a redemption or capture, to the lots they came from."""
    counter = (
        AccountKind.ADJUSTMENT if original.kind == TxnKind.ADJUSTMENT else AccountKind.REDEEMED
    )
    origin = original.reverses_id if original.kind == TxnKind.CAPTURE else original.id
    txn = book.new_txn(
        TxnKind.REFUND,
        amount,
        source_type=source_type,
        source_id=source_id,
        reason=reason,
        reverses_id=original.id,
    )
    book.restore(txn, amount, book.system[counter], origin)
    return txn


def reverse_credit(
    book: MemberBook,
    original: Any,
    amount: int,
    policy: Shortfall,
    *,
    source_type: str,
    source_id: str | None,
    reason: str | None = None,
    debt_allowed: bool | None = None,
) -> Reversal:
    """Take back ``amount`` points of an accrual: from its own lot first, then from the
    member's other points, then by ``policy`` for what was already spent."""
    counter = CREDIT_COUNTER.get(TxnKind(original.kind), AccountKind.ISSUED)
    txn = book.new_txn(
        TxnKind.REVERSAL,
        amount,
        source_type=source_type,
        source_id=source_id,
        reason=reason,
        reverses_id=original.id,
    )
    from_pending = from_wallet = 0
    left = amount
    for lot in book.uow.ledger.lots_from_transaction(book.tenant.id, original.id):
        book.ensure_lots([lot.id])
        status = book.plan.lot(lot.id).status
        taken = book.take_back_lot(txn, lot.id, left)
        if status is LotStatus.PENDING:
            from_pending += taken
        else:
            from_wallet += taken
        left -= taken
    if left:
        spendable = max(book.wallet.balance - from_wallet, 0)
        wanted = min(left, spendable)
        if wanted:
            takes, short = allocate(book.plan.spendable_lots(book.now), wanted, book.now)
            for take in takes:
                book.plan.change_lot(take.lot_id, -take.amount, txn_id=txn.id, origin_id=txn.id)
            from_wallet += wanted - short
            left -= wanted - short
    shortfall = 0
    if left:
        if policy is Shortfall.FAIL:
            raise InsufficientPoints(
                f"{left} of the points to take back were already spent.",
                code="reversal_shortfall",
                extra={"shortfall": left},
            )
        if policy is Shortfall.DEBT:
            allowed = book.tenant.allow_debt if debt_allowed is None else debt_allowed
            if not allowed:
                raise BusinessRuleViolation(
                    "This tenant does not allow negative balances.",
                    code="debt_not_allowed",
                    extra={"shortfall": left},
                )
            if not book.wallet.allow_debt:
                book.uow.ledger.set_allow_debt(book.tenant.id, book.wallet.id, True)
                book.wallet.allow_debt = True
            from_wallet += left
        else:
            shortfall = left
            txn.amount = amount - left
            txn.params["shortfall"] = left
    total = from_wallet + from_pending
    if total == 0:
        return Reversal(None, shortfall)
    postings = []
    if from_wallet:
        postings.append(Posting(book.wallet.id, -from_wallet))
    if from_pending:
        postings.append(Posting(book.pending.id, -from_pending))
    postings.append(Posting(book.system[counter], total))
    book.plan.add_transaction(txn, postings)
    return Reversal(txn, shortfall)


def capture_hold(book: MemberBook, hold: Any, amount: int, source_id: str) -> list[NewTransaction]:
    """Spend ``amount`` of a hold; the rest goes back to the lots it came from."""
    made = []
    txn = book.new_txn(
        TxnKind.CAPTURE,
        amount,
        source_type="hold",
        source_id=source_id,
        reverses_id=hold.hold_transaction_id,
    )
    book.plan.add_transaction(
        txn,
        [
            Posting(book.hold_account.id, -amount),
            Posting(book.system[AccountKind.REDEEMED], amount),
        ],
    )
    made.append(txn)
    rest = hold.amount - amount
    if rest:
        made.append(release_hold(book, hold, rest, source_id))
    return made


def release_hold(
    book: MemberBook, hold: Any, amount: int, source_id: str, expired: bool = False
) -> NewTransaction:
    txn = book.new_txn(
        TxnKind.RELEASE,
        amount,
        source_type="hold",
        source_id=source_id,
        reverses_id=hold.hold_transaction_id,
        params={"expired": expired},
    )
    book.restore(txn, amount, book.hold_account.id, hold.hold_transaction_id)
    return txn


def proportional(total: int, part: Any, whole: Any) -> int:
    """floor(total × part / whole) for Decimal quantities; cumulative use keeps sums exact."""
    if whole == 0:
        return 0
    return int((total * part) // whole)
