"""Real-time processing at the till: calculate, confirm (or hold, then confirm or void),
refund in full or in part, and cancel. One purchase is one database transaction."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

from kopilka.clock import Clock
from kopilka.domain.coupons.codes import personal_code
from kopilka.domain.errors import (
    BusinessRuleViolation,
    Conflict,
    ErrorCollector,
    FieldError,
    Forbidden,
    KopilkaError,
    NotFound,
    ValidationFailed,
)
from kopilka.domain.ledger.expiry import expires_at as policy_expiry
from kopilka.domain.ledger.model import AccountKind, TxnKind
from kopilka.domain.members.card_numbers import is_valid_number
from kopilka.domain.members.phones import InvalidPhone, normalize_phone
from kopilka.domain.members.qr_tokens import InvalidQrToken, verify_token
from kopilka.domain.rules.conditions import category_path
from kopilka.domain.rules.document import POINTS_EFFECTS, CompiledProgram, CompiledRule
from kopilka.domain.rules.engine import Evaluation, evaluate
from kopilka.domain.rules.facts import Context, Line, MemberFacts
from kopilka.domain.rules.money import QTY_STEP, line_amount
from kopilka.ids import new_id
from kopilka.services.context import Actor, Role, Tenant, load_tenant
from kopilka.services.families import SpendGate, refund_holder, spend_gate
from kopilka.services.idempotency import request_hash
from kopilka.services.ledger import EXPIRING_SOON_DAYS, balance_view
from kopilka.services.ledger_book import MemberBook
from kopilka.services.ledger_ops import (
    Shortfall,
    capture_hold,
    proportional,
    refund_spend,
    release_hold,
    reverse_credit,
)
from kopilka.services.ports import UnitOfWork, UnitOfWorkFactory
from kopilka.services.programs import ProgramService
from kopilka.services.purchase_hooks import PurchaseHook

MAX_LINES = 1000
MAX_QTY = Decimal(1_000_000)
MAX_PRICE = 10**11  # a billion roubles per unit is surely a typo
# Per receipt, in minor units and in points: far beyond any real purchase, far within the
# database's 64-bit amounts (a thousand lines of MAX_PRICE x MAX_QTY would overflow them).
MAX_TOTAL = 10**15
MAX_POINTS = 10**15
CANCEL_KEY = "cancel:"  # refund keys of cancellations; not for clients' refunds
FUTURE_SLACK = timedelta(minutes=5)  # tills' clocks drift, either way
FLAGS = frozenset({"no_discount", "no_points"})


@dataclass(frozen=True)
class LineInput:
    sku: str
    qty: Decimal
    price: int
    name: str | None = None
    category: str | None = None
    brand: str | None = None
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class MemberRef:
    card: str | None = None
    phone: str | None = None
    id: uuid.UUID | None = None
    qr: str | None = None


@dataclass(frozen=True)
class GiftCardUse:
    number: str
    pin: str | None = None
    amount: int | None = None  # minor units; None: as much as the card and receipt allow


@dataclass(frozen=True)
class ReceiptInput:
    lines: tuple[LineInput, ...]
    member: MemberRef | None = None
    redeem_points: int | Literal["max"] | None = None
    coupons: tuple[str, ...] = ()
    gift_cards: tuple[GiftCardUse, ...] = ()
    payment_method: str | None = None
    channel: str = "store"
    occurred_at: datetime | None = None
    outlet: str | None = None

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the request, for the natural idempotency key: values, not how
        they were spelled (2, 2.0 and "2.000" are one quantity), and no outlet (a receipt
        number is its outlet's own, so whether the till key implied the outlet or the body
        named it, a retry finds the same receipt)."""
        found = self.legacy_fingerprint()
        found["lines"] = [
            [line[0], canonical_qty(li.qty), *line[2:]]
            for line, li in zip(found["lines"], self.lines, strict=True)
        ]
        del found["outlet"]
        return found

    def legacy_fingerprint(self) -> dict[str, Any]:
        """The fingerprint as receipts confirmed before it was canonical store it (the
        quantity as spelled, the outlet as named): still accepted, so that a till's retry
        across the upgrade replays instead of being refused."""
        return {
            "lines": [
                [li.sku, str(li.qty), li.price, li.category, li.brand, sorted(li.flags)]
                for li in self.lines
            ],
            "member": self.member.__dict__ if self.member else None,
            "redeem": self.redeem_points,
            "coupons": sorted(self.coupons),
            # The PIN is left out: the fingerprint is stored with the receipt.
            **(
                {"gift_cards": [[g.number, g.amount] for g in self.gift_cards]}
                if self.gift_cards
                else {}
            ),
            "payment": self.payment_method,
            "channel": self.channel,
            "occurred_at": self.occurred_at.isoformat() if self.occurred_at else None,
            "outlet": self.outlet,
        }


def canonical_qty(qty: Decimal) -> str:
    """One spelling per quantity: 2, 2.0, "2.000" and 2E+0 are all "2"."""
    return format(qty.normalize(), "f")


def _refund_digest(lines: list[tuple[int, Decimal]] | None, spell: Callable[[Decimal], str]) -> str:
    """The refund's natural-key digest, its quantities written by ``spell``."""
    body = {"lines": [[n, spell(q)] for n, q in lines or []], "full": lines is None}
    return request_hash("refund", body)


@dataclass
class Evaluated:
    tenant: Tenant
    outlet: dict[str, Any]
    member: dict[str, Any] | None
    programs: list[CompiledProgram]
    evaluation: Evaluation
    occurred_at: datetime
    source_lines: list[Line] = field(default_factory=list)
    balance: Any = None
    books: dict[str, MemberBook] = field(default_factory=dict)
    context: Context | None = None
    # Confirming (the receipt will be written), not just calculating.
    writing: bool = False
    # The member's spendable points by currency, as evaluated (for hooks that re-evaluate).
    balances: dict[str, int] = field(default_factory=dict)
    # What the mechanics' hooks add to the answer (e.g. "stamps", "tier").
    extras: dict[str, Any] = field(default_factory=dict)


class _NumberTaken(Exception):
    """The outlet already has a receipt with this number (the confirm rolled back)."""


class PurchaseService:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        programs: ProgramService,
        hooks: Sequence[PurchaseHook] = (),
    ) -> None:
        self.uow_factory = uow_factory
        self.clock = clock
        self.programs = programs
        self.hooks: list[PurchaseHook] = list(hooks)

    # ---- calculate ---------------------------------------------------------------------
    def calculate(self, actor: Actor, request: ReceiptInput) -> dict[str, Any]:
        """What the till would get if it confirmed now; writes nothing (and locks
        nothing: its reads need no transaction)."""
        with self.uow_factory(write=False, autocommit=True) as uow:
            found = self._evaluate(uow, actor, request, lock=False)
            return _response(found, receipt=None)

    # ---- confirm -----------------------------------------------------------------------
    def confirm(
        self,
        actor: Actor,
        request: ReceiptInput,
        receipt_number: str,
        *,
        hold: bool = False,
        hold_ttl_seconds: int | None = None,
    ) -> dict[str, Any]:
        """Write the receipt, its lines and the ledger at once. Idempotent on outlet +
        receipt number: the same body replays, another body is refused.

        The number is claimed by the receipt's own insert, last in the transaction (the
        outlet's numbers are a unique key), not by a lock and a look-up before the work:
        two statements fewer on every purchase. A twin in flight makes the insert wait for
        it, then this transaction rolls back and replays the twin's answer; a number
        already used is found only when the insert, or an error, says so."""
        if not receipt_number or len(receipt_number) > 64:
            raise ValidationFailed(
                "receipt_number: 1 to 64 characters.", code="invalid_receipt_number"
            )
        digest = request_hash("purchase", {**request.fingerprint(), "hold": hold})
        try:
            return self._confirm_new(
                actor, request, receipt_number, digest, hold=hold, hold_ttl_seconds=hold_ttl_seconds
            )
        except (_NumberTaken, KopilkaError) as refused:
            # A retry must replay even if it would be refused now (the card blocked since,
            # the points spent): a receipt with this number wins over the error.
            answer = self._replay(actor, request, receipt_number, digest, hold)
            if answer is not None:
                return answer
            if isinstance(refused, _NumberTaken):  # its twin is gone again: rare, retryable
                raise Conflict(
                    "This receipt is being processed; retry in a moment.",
                    code="idempotency_in_progress",
                ) from None
            raise

    def _confirm_new(
        self,
        actor: Actor,
        request: ReceiptInput,
        receipt_number: str,
        digest: str,
        *,
        hold: bool,
        hold_ttl_seconds: int | None,
    ) -> dict[str, Any]:
        """Confirm a receipt whose number is new; ``_NumberTaken`` (nothing written) if
        the insert finds it taken."""
        with self.uow_factory(write=True) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            outlet = self._outlet(uow, actor, request.outlet)
            found = self._evaluate(uow, actor, request, lock=True, tenant=tenant, outlet=outlet)
            now = self.clock.now()
            receipt_id = new_id()
            ledger = self._write_ledger(
                uow, found, receipt_id, hold=hold, hold_ttl=hold_ttl_seconds
            )
            status = "held" if hold else "confirmed"
            hold_expires = (
                now + timedelta(seconds=hold_ttl_seconds or tenant.hold_ttl_seconds)
                if hold
                else None
            )
            coupons = (
                []
                if hold or found.member is None
                else self._issue_coupons(
                    uow, tenant.id, found.member["id"], found.evaluation.coupons, receipt_id, now
                )
            )
            result = _response(
                found,
                receipt={
                    "id": str(receipt_id),
                    "receipt_number": receipt_number,
                    "status": status,
                    "hold_expires_at": hold_expires.isoformat() if hold_expires else None,
                },
            )
            result["coupons_issued"] = coupons
            row, lines = self._rows(
                found,
                receipt_id,
                receipt_number,
                status,
                digest,
                result,
                ledger,
                hold_expires,
                request,
                now,
            )
            if not hold:
                for hook in self._hooks_for(found.member is not None):
                    result.update(hook.on_confirmed(uow, tenant, actor, row, lines, now))
            if not uow.commerce.insert_receipt_if_new(row, lines):
                raise _NumberTaken  # the unit of work rolls back everything above
            uow.commit()
            return {**result, "refunds": []}  # the shape a replay (``_view``) has

    def _replay(
        self,
        actor: Actor,
        request: ReceiptInput,
        receipt_number: str,
        digest: str,
        hold: bool,
    ) -> dict[str, Any] | None:
        """The stored answer of the outlet's receipt with this number, if there is one
        (``receipt_number_reused`` if it was registered with another body: its stored
        digest is neither ``digest`` nor the request's legacy one)."""
        with self.uow_factory(write=False) as uow:
            try:
                outlet = self._outlet(uow, actor, request.outlet)
            except KopilkaError:
                return None
            existing = uow.commerce.receipt_by_number(actor.tenant_id, outlet["id"], receipt_number)
            if existing is None:
                return None
            stored = existing["request_hash"]
            if stored != digest and stored != request_hash(
                "purchase", {**request.legacy_fingerprint(), "hold": hold}
            ):
                raise Conflict(
                    f"Receipt {receipt_number} was already registered at this outlet with "
                    "other contents.",
                    code="receipt_number_reused",
                )
            return self._view(uow, existing)

    def confirm_held(self, actor: Actor, receipt_id: uuid.UUID) -> dict[str, Any]:
        """Spend the held points and earn; repeating it replays the answer."""
        with self.uow_factory(write=True) as uow:
            receipt = self._receipt(uow, actor, receipt_id, lock=True)
            if receipt["status"] == "confirmed":
                return self._view(uow, receipt)
            if receipt["status"] != "held":
                raise Conflict(
                    f"The receipt is {receipt['status']}.", code=f"receipt_{receipt['status']}"
                )
            now = self.clock.now()
            if receipt["hold_expires_at"] is not None and receipt["hold_expires_at"] <= now:
                self._void_in(uow, actor, receipt, expired=True)
                uow.commit()
                raise Conflict(
                    "The hold expired and the receipt was voided.", code="receipt_hold_expired"
                )
            tenant = load_tenant(uow, actor.tenant_id)
            ledger = dict(receipt["ledger"])
            result = dict(receipt["result"])
            if receipt["member_id"] is not None:
                books: dict[str, MemberBook] = {}
                if receipt["hold_id"] is not None:
                    hold = uow.ledger.get_hold(tenant.id, receipt["hold_id"], lock=True)
                    assert hold is not None
                    book = self._book(
                        uow, tenant, actor, receipt["member_id"], hold.currency, books, now
                    )
                    txns = capture_hold(book, hold, hold.amount, str(receipt["id"]))
                    uow.ledger.close_hold(tenant.id, hold.id, "captured", hold.amount, now)
                    ledger["capture"] = str(txns[0].id)
                programs = {
                    code: self.programs.compiled(uow, tenant.id, code, version)
                    for code, version in receipt["programs"].items()
                }
                earned = {p: int(v) for p, v in result["points_earned_by_program"].items()}
                ledger["accruals"] = self._accrue(
                    uow,
                    tenant,
                    actor,
                    receipt["member_id"],
                    receipt["id"],
                    programs,
                    earned,
                    books,
                    now,
                    receipt["occurred_at"],
                    ledger.get("rules") or {},
                )
                for book in books.values():
                    uow.ledger.apply(tenant.id, book.plan, now)
                result["coupons_issued"] = self._issue_coupons(
                    uow,
                    tenant.id,
                    receipt["member_id"],
                    ledger.get("coupons") or [],
                    receipt["id"],
                    now,
                )
            result["receipt"] = {**result["receipt"], "status": "confirmed"}
            hooks = self._hooks_for(receipt["member_id"] is not None)
            if hooks:
                stored_lines = uow.commerce.receipt_lines(tenant.id, receipt["id"])
                confirmed = {**receipt, "status": "confirmed", "closed_at": now}
                for hook in hooks:
                    result.update(
                        hook.on_confirmed(uow, tenant, actor, confirmed, stored_lines, now)
                    )
            uow.commerce.update_receipt(
                tenant.id,
                receipt["id"],
                {"status": "confirmed", "ledger": ledger, "result": result, "closed_at": now},
            )
            uow.commit()
            return {**result, "refunds": []}  # the shape a replay (``_view``) has

    def void(self, actor: Actor, receipt_id: uuid.UUID) -> dict[str, Any]:
        """Give back the held points; the receipt never happened."""
        with self.uow_factory(write=True) as uow:
            receipt = self._receipt(uow, actor, receipt_id, lock=True)
            if receipt["status"] == "voided":
                return self._view(uow, receipt)
            if receipt["status"] != "held":
                raise Conflict(
                    f"Only a held receipt can be voided; this one is {receipt['status']}.",
                    code=f"receipt_{receipt['status']}",
                )
            result = self._void_in(uow, actor, receipt, expired=False)
            uow.commit()
            return {**result, "refunds": []}  # the shape a replay (``_view``) has

    def void_expired(self, now: datetime, tenant_id: uuid.UUID | None = None) -> int:
        """Void held receipts whose hold timed out (the jobs runner calls this)."""
        count = 0
        with self.uow_factory(write=False) as uow:
            stale = uow.commerce.stale_held_receipts(now, 1000, tenant_id)
        for tenant, receipt_id in stale:
            actor = Actor(tenant_id=tenant, name="job:scheduler", role=Role.ADMIN)
            with self.uow_factory(write=True) as uow:
                receipt = uow.commerce.receipt(tenant, receipt_id, lock=True)
                if receipt is None or receipt["status"] != "held":
                    continue
                self._void_in(uow, actor, receipt, expired=True)
                uow.commit()
                count += 1
        return count

    def _void_in(
        self, uow: UnitOfWork, actor: Actor, receipt: dict[str, Any], expired: bool
    ) -> dict[str, Any]:
        now = self.clock.now()
        tenant = load_tenant(uow, actor.tenant_id)
        if receipt["hold_id"] is not None:
            hold = uow.ledger.get_hold(tenant.id, receipt["hold_id"], lock=True)
            if hold is not None and hold.status == "active":
                book = MemberBook(uow, tenant, hold.member_id, actor, now, currency=hold.currency)
                release_hold(book, hold, hold.amount, str(receipt["id"]), expired=expired)
                uow.ledger.close_hold(
                    tenant.id, hold.id, "expired" if expired else "released", 0, now
                )
                uow.ledger.apply(tenant.id, book.plan, now)
        result = dict(receipt["result"])
        result["receipt"] = {**result["receipt"], "status": "voided"}
        uow.commerce.update_receipt(
            tenant.id, receipt["id"], {"status": "voided", "result": result, "closed_at": now}
        )
        return result

    # ---- refunds and cancel ------------------------------------------------------------
    def refund(
        self,
        actor: Actor,
        receipt_id: uuid.UUID,
        refund_key: str,
        lines: list[tuple[int, Decimal]] | None,
    ) -> dict[str, Any]:
        """Refund the whole receipt or some lines; earned points are taken back and spent
        points given back, in proportion. Idempotent on ``refund_key``."""
        if refund_key.startswith(CANCEL_KEY):
            raise ValidationFailed(
                f"Refund keys starting with {CANCEL_KEY!r} are reserved.",
                code="refund_key_reserved",
            )
        digest = _refund_digest(lines, canonical_qty)
        with self.uow_factory(write=True) as uow:
            receipt = self._receipt(uow, actor, receipt_id, lock=True)
            previous = uow.commerce.refund_by_key(actor.tenant_id, receipt["id"], refund_key)
            if previous is not None:
                # Refunds stored before quantities were canonical hold them as spelled.
                if previous["request_hash"] not in (digest, _refund_digest(lines, str)):
                    raise ValidationFailed(
                        "This refund key was used for another refund.",
                        code="idempotency_key_reused",
                    )
                stored: dict[str, Any] = previous["result"]
                return stored
            if receipt["status"] != "confirmed":
                raise Conflict(
                    f"The receipt is {receipt['status']}; only a confirmed receipt "
                    "can be refunded.",
                    code=f"receipt_{receipt['status']}",
                )
            result = self._refund_in(uow, actor, receipt, lines, refund_key, digest, "refund")
            uow.commit()
            return result

    def cancel(self, actor: Actor, receipt_id: uuid.UUID) -> dict[str, Any]:
        """Undo a receipt confirmed by mistake, on the day it was made, in full."""
        with self.uow_factory(write=True) as uow:
            receipt = self._receipt(uow, actor, receipt_id, lock=True)
            if receipt["status"] == "cancelled":
                return self._view(uow, receipt)
            if receipt["status"] != "confirmed":
                raise Conflict(
                    f"The receipt is {receipt['status']}.", code=f"receipt_{receipt['status']}"
                )
            if receipt["result"].get("imported"):
                raise Conflict(
                    "An imported receipt cannot be cancelled; refund it instead.",
                    code="receipt_imported",
                )
            tenant = load_tenant(uow, actor.tenant_id)
            tz = ZoneInfo(tenant.timezone)
            # Confirmed when closed: a held receipt is confirmed later than it was created.
            confirmed_at = receipt["closed_at"] or receipt["created_at"]
            if confirmed_at.astimezone(tz).date() != self.clock.now().astimezone(tz).date():
                raise Conflict(
                    "A receipt can be cancelled only on the day it was confirmed; "
                    "refund it instead.",
                    code="cancel_window_passed",
                )
            remaining = [
                (line["line_no"], line["qty"] - line["refunded_qty"])
                for line in uow.commerce.receipt_lines(tenant.id, receipt["id"])
                if line["qty"] > line["refunded_qty"]
            ]
            if not remaining:
                # Refunds have given everything back already: a cancel would move nothing
                # and only relabel the receipt, hiding its refunds behind "cancelled".
                raise Conflict(
                    "The receipt has been refunded in full; there is nothing left to cancel.",
                    code="receipt_refunded",
                )
            self._refund_in(
                uow,
                actor,
                receipt,
                remaining,
                f"{CANCEL_KEY}{receipt['id']}",
                "cancel",
                "cancel",
            )
            now = self.clock.now()
            result = dict(receipt["result"])
            result["receipt"] = {**result["receipt"], "status": "cancelled"}
            uow.commerce.update_receipt(
                tenant.id,
                receipt["id"],
                {"status": "cancelled", "result": result, "closed_at": now},
            )
            view = self._view(uow, {**receipt, "status": "cancelled", "result": result})
            uow.commit()
            return view

    def _refund_in(
        self,
        uow: UnitOfWork,
        actor: Actor,
        receipt: dict[str, Any],
        lines: list[tuple[int, Decimal]] | None,
        key: str,
        digest: str,
        kind: str,
    ) -> dict[str, Any]:
        tenant = load_tenant(uow, actor.tenant_id)
        now = self.clock.now()
        stored = {
            line["line_no"]: line for line in uow.commerce.receipt_lines(tenant.id, receipt["id"])
        }
        wanted: dict[int, Decimal] = {}
        errors = ErrorCollector()
        # A full refund takes what is left of each line; lines already refunded are skipped,
        # so refunding a fully refunded receipt again is "nothing to refund".
        for i, (line_no, qty) in enumerate(
            lines
            if lines is not None
            else [
                (n, li["qty"] - li["refunded_qty"])
                for n, li in stored.items()
                if li["qty"] > li["refunded_qty"]
            ]
        ):
            line = stored.get(line_no)
            if line is None:
                errors.add(
                    ("lines", i, "line"), f"No line {line_no} on this receipt.", "unknown_line"
                )
                continue
            left = line["qty"] - line["refunded_qty"] - wanted.get(line_no, Decimal(0))
            if qty <= 0 or qty > left:
                errors.add(
                    ("lines", i, "qty"),
                    f"Between 0 and {left} can still be refunded.",
                    "refund_exceeds_purchase",
                )
                continue
            wanted[line_no] = wanted.get(line_no, Decimal(0)) + qty
        errors.raise_if_any("The refund does not fit the receipt.")
        if not wanted:
            raise BusinessRuleViolation(
                "Nothing is left to refund on this receipt.", code="nothing_to_refund"
            )
        spent_back = 0
        money_back = 0
        taken_back: dict[str, int] = {}
        line_results = []
        for line_no, qty in sorted(wanted.items()):
            line = stored[line_no]
            before, after = line["refunded_qty"], line["refunded_qty"] + qty
            whole = line["qty"]
            spent = proportional(line["points_spent"], after, whole) - proportional(
                line["points_spent"], before, whole
            )
            paid = line["amount"] - line["discount"] - line["points_money"]
            money = proportional(paid, after, whole) - proportional(paid, before, whole)
            earned_line: dict[str, int] = {}
            for program, points in (line["points_earned"] or {}).items():
                delta = proportional(int(points), after, whole) - proportional(
                    int(points), before, whole
                )
                if delta:
                    earned_line[program] = delta
                    taken_back[program] = taken_back.get(program, 0) + delta
            spent_back += spent
            money_back += money
            line_results.append(
                {
                    "line": line_no,
                    "qty": canonical_qty(qty),
                    "money": money,
                    "points_returned": spent,
                    "points_taken_back": earned_line,
                }
            )
        shortfall_points = 0
        shortfall_money = 0
        ledger = receipt["ledger"] or {}
        made: list[str] = []
        if receipt["member_id"] is not None and (spent_back or taken_back):
            books: dict[str, MemberBook] = {}
            programs = {
                code: self.programs.compiled(uow, tenant.id, code, version)
                for code, version in receipt["programs"].items()
            }
            spend_txn_id = ledger.get("capture") or ledger.get("redemption")
            if spent_back and spend_txn_id:
                original = uow.ledger.get_transaction(tenant.id, uuid.UUID(spend_txn_id))
                assert original is not None
                book = self._book(  # slot:families - on the holder of the original
                    uow,
                    tenant,
                    actor,
                    refund_holder(uow, receipt, original),
                    original.currency,
                    books,
                    now,
                )
                made.append(
                    str(
                        refund_spend(
                            book,
                            original,
                            spent_back,
                            source_type="receipt",
                            source_id=str(receipt["id"]),
                        ).id
                    )
                )
            for program_code, points in sorted(taken_back.items()):
                txn_id = (ledger.get("accruals") or {}).get(program_code)
                if not txn_id:
                    continue
                original = uow.ledger.get_transaction(tenant.id, uuid.UUID(txn_id))
                assert original is not None
                program = programs[program_code]
                book = self._book(  # slot:families - on the holder of the original
                    uow,
                    tenant,
                    actor,
                    refund_holder(uow, receipt, original),
                    original.currency,
                    books,
                    now,
                )
                policy = (
                    Shortfall.DEBT
                    if program.settings.refund_shortfall == "debt"
                    else (Shortfall.CAP)
                )
                reversal = reverse_credit(
                    book,
                    original,
                    points,
                    policy,
                    source_type="receipt",
                    source_id=str(receipt["id"]),
                    debt_allowed=True,
                )
                if reversal.txn is not None:
                    made.append(str(reversal.txn.id))
                shortfall_points += reversal.shortfall
                shortfall_money += reversal.shortfall * program.settings.redemption.point_value
            for book in books.values():
                uow.ledger.apply(tenant.id, book.plan, now)
        uow.commerce.set_refunded_qty(
            tenant.id, receipt["id"], {n: stored[n]["refunded_qty"] + q for n, q in wanted.items()}
        )
        refund_id = new_id()
        result = {
            "id": str(refund_id),
            "receipt_id": str(receipt["id"]),
            "kind": kind,
            "lines": line_results,
            "money_to_return": max(0, money_back - shortfall_money),
            "money_refunded_before_shortfall": money_back,
            "points_returned": spent_back,
            "points_taken_back": sum(taken_back.values()) - shortfall_points,
            "shortfall_points": shortfall_points,
            "shortfall_money": shortfall_money,
            "transactions": made,
            "created_at": now.isoformat(),
        }
        for hook in self._hooks_for(receipt["member_id"] is not None):
            result.update(hook.on_refunded(uow, tenant, actor, receipt, result, now))
        uow.commerce.insert_refund(
            {
                "id": refund_id,
                "tenant_id": tenant.id,
                "receipt_id": receipt["id"],
                "refund_key": key,
                "request_hash": digest,
                "kind": kind,
                "result": result,
                "created_at": now,
            }
        )
        return result

    # ---- reads -------------------------------------------------------------------------
    def get(self, actor: Actor, receipt_id: uuid.UUID) -> dict[str, Any]:
        with self.uow_factory(write=False) as uow:
            return self._view(uow, self._receipt(uow, actor, receipt_id))

    def member_purchases(
        self, actor: Actor, member_id: uuid.UUID, before: uuid.UUID | None, limit: int
    ) -> list[dict[str, Any]]:
        with self.uow_factory(write=False) as uow:
            if uow.directory.member(actor.tenant_id, member_id) is None:
                raise NotFound("Member not found.", code="member_not_found")
            ids = [member_id, *uow.directory.merged_into(actor.tenant_id, member_id)]
            rows = uow.commerce.member_receipts(actor.tenant_id, ids, before, limit)
            return [_summary(r) for r in rows]

    def _view(self, uow: UnitOfWork, receipt: dict[str, Any]) -> dict[str, Any]:
        result = dict(receipt["result"])
        result["receipt"] = {**result.get("receipt", {}), "status": receipt["status"]}
        result["refunds"] = (
            [r["result"] for r in uow.commerce.refunds_of(receipt["tenant_id"], receipt["id"])]
            if "tenant_id" in receipt
            else []
        )
        return result

    def _receipt(
        self, uow: UnitOfWork, actor: Actor, receipt_id: uuid.UUID, lock: bool = False
    ) -> dict[str, Any]:
        receipt = uow.commerce.receipt(actor.tenant_id, receipt_id, lock=lock)
        if receipt is None:
            raise NotFound("Receipt not found.", code="receipt_not_found")
        return receipt

    # ---- evaluation --------------------------------------------------------------------
    def _outlet(self, uow: UnitOfWork, actor: Actor, code: str | None) -> dict[str, Any]:
        """The receipt's outlet (from the directory's per-process cache, see ttl_cache)."""
        if actor.role is Role.POS:
            assert actor.outlet_id is not None
            outlet = uow.directory.outlet(actor.tenant_id, actor.outlet_id)
            if code is not None and (outlet is None or outlet["code"] != code):
                raise Forbidden(
                    "A till key works for its own outlet only.", code="outlet_not_allowed"
                )
        else:
            if not code:
                raise ValidationFailed(
                    "Name the outlet (its code) when not using a till key.", code="outlet_required"
                )
            outlet = uow.directory.outlet_by_code(actor.tenant_id, code)
        if outlet is None:
            raise ValidationFailed(f"Unknown outlet {code!r}.", code="unknown_outlet")
        return outlet

    def _member(self, uow: UnitOfWork, tenant: Tenant, ref: MemberRef) -> dict[str, Any]:
        given = [v for v in (ref.card, ref.phone, ref.id, ref.qr) if v]
        if len(given) != 1:
            raise ValidationFailed(
                "Identify the member by exactly one of card, phone, id, qr.",
                code="member_ref_invalid",
            )
        member = None
        number = ref.card
        if ref.qr:
            try:
                number = verify_token(
                    tenant.qr_secret, ref.qr, self.clock.now().timestamp(), tenant.qr_window_seconds
                )
            except InvalidQrToken as exc:
                raise ValidationFailed(
                    f"QR code not accepted: {exc}.", code="invalid_qr_token"
                ) from exc
        if number:
            if not is_valid_number(tenant.card_scheme, number):
                raise ValidationFailed(
                    "Wrong card number or check digit.", code="invalid_card_number"
                )
            # The card and its member in one statement; the checks are in the same order.
            card, member = uow.directory.card_with_member(tenant.id, number)
            if card is None or card["member_id"] is None:
                raise NotFound("Card not found.", code="card_not_found")
            if card["status"] != "active":
                raise BusinessRuleViolation(
                    f"The card is {card['status']}.", code=f"card_{card['status']}"
                )
        elif ref.phone:
            try:
                phone = normalize_phone(ref.phone, tenant.phone_region)
            except InvalidPhone as exc:
                raise ValidationFailed("Invalid phone number.", code="invalid_phone") from exc
            member = uow.directory.member_by(tenant.id, "phone", phone)
        elif ref.id:
            member = uow.directory.member_for_till(tenant.id, ref.id)
        if member is None:
            raise NotFound("Member not found.", code="member_not_found")
        if member["status"] != "active":
            raise BusinessRuleViolation(
                f"The member is {member['status']}: no earning or spending.",
                code=f"member_{member['status']}",
            )
        return member

    def _lines(self, uow: UnitOfWork, tenant: Tenant, request: ReceiptInput) -> list[Line]:
        errors = ErrorCollector()
        if not request.lines:
            errors.add(("lines",), "A receipt needs at least one line.", "lines_required")
        if len(request.lines) > MAX_LINES:
            errors.add(("lines",), f"At most {MAX_LINES} lines.", "too_many_lines")
        errors.raise_if_any("The receipt is not valid.")
        catalogue = uow.commerce.products_by_sku(
            tenant.id, [li.sku for li in request.lines], tenant.catalogue_version
        )
        lines: list[Line] = []
        for i, item in enumerate(request.lines):
            if item.qty <= 0 or item.qty > MAX_QTY or item.qty != item.qty.quantize(QTY_STEP):
                errors.add(
                    ("lines", i, "qty"),
                    "A positive quantity with at most 3 decimals.",
                    "invalid_qty",
                )
            if item.price < 0 or item.price > MAX_PRICE:
                errors.add(
                    ("lines", i, "price"),
                    "A price per unit in minor units, 0 or more.",
                    "invalid_price",
                )
            for flag in item.flags:
                if flag not in FLAGS:
                    errors.add(("lines", i, "flags"), f"Unknown flag {flag!r}.", "unknown_flag")
            if errors.errors:
                continue
            product = catalogue.get(item.sku) or {}
            category = item.category or product.get("category") or ""
            flags = set(item.flags)
            lines.append(
                Line(
                    index=i,
                    sku=item.sku,
                    qty=item.qty,
                    price=item.price,
                    amount=line_amount(item.price, item.qty),
                    name=item.name or product.get("name"),
                    category=category_path(category),
                    brand=item.brand or product.get("brand"),
                    tags=frozenset(product.get("tags") or ()),
                    attributes=product.get("attributes") or {},
                    no_discount="no_discount" in flags or bool(product.get("no_discount")),
                    no_points="no_points" in flags or bool(product.get("no_points")),
                    min_price=product.get("min_price"),
                )
            )
        if not errors.errors and sum(line.amount for line in lines) > MAX_TOTAL:
            errors.add(
                ("lines",),
                f"The receipt comes to more than {MAX_TOTAL} minor units.",
                "receipt_total_too_large",
            )
        errors.raise_if_any("The receipt is not valid.")
        return lines

    def _evaluate(
        self,
        uow: UnitOfWork,
        actor: Actor,
        request: ReceiptInput,
        *,
        lock: bool,
        tenant: Tenant | None = None,
        outlet: dict[str, Any] | None = None,
    ) -> Evaluated:
        tenant = tenant or load_tenant(uow, actor.tenant_id)
        outlet = outlet or self._outlet(uow, actor, request.outlet)
        now = self.clock.now()
        occurred = request.occurred_at or now
        if occurred > now + FUTURE_SLACK:
            raise ValidationFailed("occurred_at is in the future.", code="occurred_in_future")
        if occurred < now - timedelta(days=tenant.backdate_days) - FUTURE_SLACK:
            raise ValidationFailed(
                f"occurred_at is more than {tenant.backdate_days} days ago: load older "
                "receipts with `kopilka import receipts`.",
                code="occurred_too_long_ago",
                errors=[FieldError(("occurred_at",), "Too long ago.", "occurred_too_long_ago")],
            )
        if request.channel not in ("store", "online", "app"):
            raise ValidationFailed("channel: store, online or app.", code="invalid_channel")
        lines = self._lines(uow, tenant, request)
        member = self._member(uow, tenant, request.member) if request.member else None
        programs = self.programs.in_force(uow, tenant.id, occurred)
        balances: dict[str, int] = {}
        books: dict[str, MemberBook] = {}
        balance = None
        facts = None
        family: SpendGate | None = None  # slot:families:spend - the pool, may they spend it
        if member is not None:
            family = spend_gate(uow, tenant.id, member["id"], request.redeem_points)
            currencies = {p.currency for p in programs} or {tenant.points_currency}
            # The books open where spend_gate found the points: one family lookup, not two.
            with family.known(uow, tenant.id, member["id"]):
                for currency in sorted(currencies):
                    if lock:
                        # Most purchases pay no points: their book skips the open lots.
                        book = self._book(
                            uow,
                            tenant,
                            actor,
                            member["id"],
                            currency,
                            books,
                            now,
                            spends=bool(request.redeem_points),
                        )
                        book.settle()
                        balances[currency] = max(book.wallet.balance, 0)
                    else:
                        accounts, lots, lasting = uow.ledger.read_member_balance(
                            tenant.id,
                            family.holder,
                            currency,
                            now + timedelta(days=EXPIRING_SOON_DAYS),
                        )
                        view = balance_view(
                            tenant, member["id"], currency, accounts, lots, now, lasting=lasting
                        )
                        balances[currency] = view.available
                        if currency == tenant.points_currency:
                            balance = view
            facts = self.member_facts(
                uow, tenant, member, balances.get(tenant.points_currency, 0), now, purchases=False
            )
            if not family.can_spend:  # slot:families:spend - sees the pool, cannot pay with it
                balances = dict.fromkeys(balances, 0)
        programs = self._with_extra_rules(uow, tenant, member, facts, request, occurred, programs)
        closed = [p for p in programs if p.settings.members_of_club]
        if closed:  # a closed program applies only to its club's members
            clubs = facts.clubs if facts is not None else frozenset()
            programs = [
                p
                for p in programs
                if not p.settings.members_of_club or p.settings.members_of_club in clubs
            ]
        if (
            member is not None
            and facts is not None
            and not facts.purchases_known
            and any(p.needs_purchase_count for p in programs)
        ):
            # Counted only now that the rules are known (hooks add some): most programs have
            # no first/nth-purchase rule, and the count is a query per receipt.
            facts = replace(
                facts,
                purchases_before=uow.commerce.count_member_purchases(tenant.id, member["id"]),
                purchases_known=True,
            )
        local = occurred.astimezone(ZoneInfo(outlet["timezone"]))
        ctx = Context(
            occurred_at=occurred,
            local_time=local,
            tenant_today=occurred.astimezone(ZoneInfo(tenant.timezone)).date(),
            outlet_code=outlet["code"],
            outlet_tags=frozenset(outlet["tags"] or ()),
            region=outlet["region"],
            channel=request.channel,
            payment_method=request.payment_method,
            coupons=frozenset(c.strip().upper() for c in request.coupons),
            member=facts,
        )
        evaluation = evaluate(
            programs,
            lines,
            ctx,
            redeem=request.redeem_points,
            balances=balances,
            currency=tenant.currency,
        )
        if member is None:
            # Nobody to credit: an anonymous receipt earns nothing, and must not say it did
            # (nor its refunds claim to take points back).
            for line_result in evaluation.lines:
                line_result.points_earned = {}
            evaluation.earned_by_program = {code: 0 for code in evaluation.earned_by_program}
            evaluation.applied = [a for a in evaluation.applied if a.kind not in POINTS_EFFECTS]
        found = Evaluated(
            tenant,
            outlet,
            member,
            list(programs),
            evaluation,
            occurred,
            source_lines=lines,
            balance=balance,
            books=books,
            context=ctx,
            writing=lock,
            balances=balances,
        )
        if family is not None and family.family_id is not None:  # slot:families:spend
            found.extras["family"] = family.answer()
        if member is not None and self.hooks:
            for hook in self.hooks:
                revised = hook.revise(uow, found)
                if revised is not None:
                    # E.g. the receipt that reaches Gold earns at Gold, if the program says so.
                    found.context = replace(ctx, member=revised)
                    found.evaluation = evaluate(
                        programs,
                        lines,
                        found.context,
                        redeem=request.redeem_points,
                        balances=balances,
                        currency=tenant.currency,
                    )
                    break
        for hook in self._hooks_for(member is not None):
            hook.adjust(uow, found, request)
        for hook in self._hooks_for(member is not None):
            found.extras.update(hook.extras(uow, found))
        if any(points > MAX_POINTS for points in found.evaluation.earned_by_program.values()):
            raise BusinessRuleViolation(
                f"The programs would award more than {MAX_POINTS} points for this receipt.",
                code="points_too_large",
            )
        return found

    def _with_extra_rules(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        member: dict[str, Any] | None,
        facts: MemberFacts | None,
        request: ReceiptInput,
        moment: datetime,
        programs: Sequence[CompiledProgram],
    ) -> list[CompiledProgram]:
        """Programs with the rules hooks add for this receipt (coupons, campaigns) merged
        into the program each names; points they give are that program's points."""
        extra: dict[str, list[CompiledRule]] = {}
        for hook in self._hooks_for(member is not None):
            for code, rule in hook.extra_rules(
                uow, tenant, member, facts, request, moment, programs
            ):
                extra.setdefault(code, []).append(rule)
        if not extra:
            return list(programs)
        return [
            replace(
                p,
                rules=tuple(sorted((*p.rules, *extra[p.code]), key=lambda r: (r.priority, r.id))),
            )
            if p.code in extra
            else p
            for p in programs
        ]

    def _hooks_for(self, member: bool) -> list[PurchaseHook]:
        """The hooks to run: all for a member's receipt, else those that also want
        anonymous receipts (coupons, gift cards)."""
        return self.hooks if member else [h for h in self.hooks if h.anonymous_too]

    def member_facts(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        member: dict[str, Any],
        balance: int,
        now: datetime,
        *,
        purchases: bool = True,
    ) -> MemberFacts:
        """What the rules know of a member (tier, clubs, segments...), as the till sees it;
        other features (e.g. the reward catalogue's visibility) ask the same question.

        ``purchases=False`` leaves the purchase count out (``purchases_known=False``) unless
        a hook needs it: the caller counts it when a rule does (see ``_evaluate``)."""
        if purchases or any(hook.needs_purchase_count for hook in self.hooks):
            facts = _member_facts(
                member, uow.commerce.count_member_purchases(tenant.id, member["id"]), balance
            )
        else:
            facts = replace(_member_facts(member, 0, balance), purchases_known=False)
        for hook in self.hooks:
            facts = hook.member_facts(uow, tenant, member, facts, now)
        return facts

    def _book(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        member_id: uuid.UUID,
        currency: str,
        books: dict[str, MemberBook],
        now: datetime,
        *,
        spends: bool = True,
    ) -> MemberBook:
        if currency not in books:
            books[currency] = MemberBook(
                uow, tenant, member_id, actor, now, currency=currency, spends=spends
            )
        return books[currency]

    # ---- writing -----------------------------------------------------------------------
    def _write_ledger(
        self,
        uow: UnitOfWork,
        found: Evaluated,
        receipt_id: uuid.UUID,
        *,
        hold: bool,
        hold_ttl: int | None,
    ) -> dict[str, Any]:
        ledger: dict[str, Any] = {"accruals": {}}
        member = found.member
        if member is None:
            return ledger
        ev = found.evaluation
        tenant = found.tenant
        now = self.clock.now()
        if ev.points_redeemed and ev.points_program:
            program = next(p for p in found.programs if p.code == ev.points_program)
            book = found.books[program.currency]
            if hold:
                hold_id = new_id()
                txn = book.new_txn(
                    TxnKind.HOLD,
                    ev.points_redeemed,
                    source_type="receipt",
                    source_id=str(receipt_id),
                )
                book.take(txn, ev.points_redeemed, book.hold_account.id)
                uow.ledger.insert_hold(
                    {
                        "id": hold_id,
                        "tenant_id": tenant.id,
                        "member_id": book.member_id,  # the holder (a family's pool)
                        "currency": program.currency,
                        "amount": ev.points_redeemed,
                        "captured": 0,
                        "status": "active",
                        "reference": f"receipt:{receipt_id}",
                        "expires_at": now + timedelta(seconds=hold_ttl or tenant.hold_ttl_seconds),
                        "hold_transaction_id": txn.id,
                        "created_at": now,
                        "closed_at": None,
                    }
                )
                ledger["hold"] = str(hold_id)
                ledger["hold_transaction"] = str(txn.id)
            else:
                txn = book.new_txn(
                    TxnKind.REDEMPTION,
                    ev.points_redeemed,
                    source_type="receipt",
                    source_id=str(receipt_id),
                    params={"program": program.code, "version": program.version},
                )
                book.take(txn, ev.points_redeemed, book.system[AccountKind.REDEEMED])
                ledger["redemption"] = str(txn.id)
        if not hold:
            ledger["accruals"] = self._accrue_in_books(found, receipt_id, now)
        else:  # kept for confirm_held: its accruals name their rules, its coupons are issued
            ledger["rules"] = ev.rules_by_program
            ledger["coupons"] = ev.coupons
        for book in found.books.values():
            uow.ledger.apply(tenant.id, book.plan, now)
        return ledger

    def _accrue_in_books(
        self, found: Evaluated, receipt_id: uuid.UUID, now: datetime
    ) -> dict[str, str]:
        made: dict[str, str] = {}
        ev = found.evaluation
        for program in found.programs:
            points = ev.earned_by_program.get(program.code, 0)
            if points <= 0:
                continue
            book = found.books[program.currency]
            made[program.code] = str(
                _credit(
                    book,
                    program,
                    points,
                    receipt_id,
                    ev.rules_by_program.get(program.code, []),
                    now,
                    found.occurred_at,
                ).id
            )
        return made

    def _accrue(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        member_id: uuid.UUID,
        receipt_id: uuid.UUID,
        programs: dict[str, CompiledProgram],
        earned: dict[str, int],
        books: dict[str, MemberBook],
        now: datetime,
        occurred_at: datetime,
        rules: dict[str, list[str]],
    ) -> dict[str, str]:
        made: dict[str, str] = {}
        for code, points in sorted(earned.items()):
            if points <= 0 or code not in programs:
                continue
            program = programs[code]
            book = self._book(uow, tenant, actor, member_id, program.currency, books, now)
            made[code] = str(
                _credit(book, program, points, receipt_id, rules.get(code, []), now, occurred_at).id
            )
        return made

    def _issue_coupons(
        self,
        uow: UnitOfWork,
        tenant_id: uuid.UUID,
        member_id: uuid.UUID,
        coupons: list[dict[str, Any]],
        receipt_id: uuid.UUID,
        now: datetime,
    ) -> list[dict[str, Any]]:
        issued = []
        for coupon in coupons:
            code = personal_code()
            row = {
                "id": new_id(),
                "tenant_id": tenant_id,
                "code": code,
                "member_id": member_id,
                "benefit": coupon["benefit"],
                "min_basket": coupon.get("min_basket", 0),
                "valid_from": now,
                "valid_until": now + timedelta(days=int(coupon["valid_days"])),
                "uses_left": 1,
                "status": "active",
                "source_type": "receipt",
                "source_id": str(receipt_id),
                "created_at": now,
            }
            uow.commerce.insert_coupon(row)
            issued.append(
                {
                    "code": code,
                    "benefit": coupon["benefit"],
                    "valid_until": row["valid_until"].isoformat(),
                    "rule_id": coupon["rule_id"],
                    "program": coupon["program"],
                }
            )
        return issued

    def _rows(
        self,
        found: Evaluated,
        receipt_id: uuid.UUID,
        number: str,
        status: str,
        digest: str,
        result: dict[str, Any],
        ledger: dict[str, Any],
        hold_expires: datetime | None,
        request: ReceiptInput,
        now: datetime,
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The receipt's row and its lines' rows, as stored."""
        ev = found.evaluation
        tenant_id = found.tenant.id
        return (
            {
                "id": receipt_id,
                "tenant_id": tenant_id,
                "outlet_id": found.outlet["id"],
                "receipt_number": number,
                "member_id": found.member["id"] if found.member else None,
                "status": status,
                "channel": request.channel,
                "payment_method": request.payment_method,
                "occurred_at": found.occurred_at,
                "request_hash": digest,
                "programs": {p.code: p.version for p in found.programs},
                "total_amount": ev.total_amount,
                "total_discount": ev.total_discount,
                "points_redeemed": ev.points_redeemed,
                "points_money": ev.total_points_money,
                "total_pay": ev.total_pay,
                "points_earned": result["totals"]["points_earned"],
                "result": result,
                "hold_id": uuid.UUID(ledger["hold"]) if ledger.get("hold") else None,
                "hold_expires_at": hold_expires,
                "ledger": ledger,
                "created_at": now,
                "closed_at": None if status == "held" else now,
            },
            [
                {
                    "tenant_id": tenant_id,
                    "receipt_id": receipt_id,
                    "line_no": line.index,
                    "sku": line.sku,
                    "category": "/".join(src.category) or None,
                    "qty": line.qty,
                    "price": line.price,
                    "amount": line.amount,
                    "discount": line.discount,
                    "points_spent": line.points_spent,
                    "points_money": line.points_money,
                    "points_earned": line.points_earned,
                    "refunded_qty": Decimal(0),
                }
                for line, src in zip(ev.lines, found.source_lines, strict=True)
            ],
        )


def _credit(
    book: MemberBook,
    program: CompiledProgram,
    points: int,
    receipt_id: uuid.UUID,
    rules: list[str],
    now: datetime,
    occurred_at: datetime,
) -> Any:
    settings = program.settings
    txn = book.new_txn(
        TxnKind.ACCRUAL,
        points,
        source_type="receipt",
        source_id=str(receipt_id),
        params={
            "program": program.code,
            "version": program.version,
            "rules": rules,
            "reason": program.name.get("ru"),
        },
    )
    book.credit(
        txn,
        points,
        AccountKind.ISSUED,
        pending_days=settings.pending_days,
        expires_at=policy_expiry(settings.expiry, occurred_at, book.tenant.timezone),
    )
    return txn


def _member_facts(member: dict[str, Any], purchases: int, balance: int) -> MemberFacts:
    attrs = member["attributes"] or {}
    segments = attrs.get("segments") or []
    tags = attrs.get("tags") or []
    clubs = attrs.get("clubs") or []
    return MemberFacts(
        id=str(member["id"]),
        tier=attrs.get("tier"),
        segments=frozenset(segments if isinstance(segments, list) else [segments]),
        tags=frozenset(tags if isinstance(tags, list) else [tags]),
        attributes=attrs,
        purchases_before=purchases,
        birthday=(member["birth_month"], member["birth_day"]) if member["birth_month"] else None,
        balance=balance,
        clubs=frozenset(clubs if isinstance(clubs, list) else [clubs]),
    )


def _response(found: Evaluated, receipt: dict[str, Any] | None) -> dict[str, Any]:
    ev = found.evaluation
    primary = ev.points_program
    lines = []
    for line in ev.lines:
        lines.append(
            {
                "line": line.index,
                "sku": line.sku,
                "qty": canonical_qty(line.qty),
                "price": line.price,
                "amount": line.amount,
                "discount": line.discount,
                "points_spent": line.points_spent,
                "points_money": line.points_money,
                "pay": line.pay,
                "points_earned": sum(line.points_earned.values()),
                "points_earned_by_program": line.points_earned,
            }
        )
    totals = {
        "amount": ev.total_amount,
        "discount": ev.total_discount,
        "points_redeemed": ev.points_redeemed,
        "points_money": ev.total_points_money,
        "pay": ev.total_pay,
        "points_earned": sum(ev.earned_by_program.values()),
    }
    balance = None
    if found.member is not None:
        if found.balance is not None:
            balance = found.balance.to_json()
        elif found.books:
            book = found.books.get(found.tenant.points_currency)
            if book is not None:
                balance = {"available": max(book.wallet.balance, 0), "currency": book.currency}
    return {
        "receipt": receipt or {"id": None, "status": "calculated"},
        "outlet": found.outlet["code"],
        "member_id": str(found.member["id"]) if found.member else None,
        "occurred_at": found.occurred_at.isoformat(),
        "currency": found.tenant.currency,
        "programs": [{"code": p.code, "version": p.version} for p in found.programs],
        "lines": lines,
        "totals": totals,
        "points_earned_by_program": ev.earned_by_program,
        "points_program": primary,
        "point_value": ev.point_value,
        "max_redeemable": ev.max_redeemable,
        "balance": balance,
        "applied": [
            {
                "program": a.program,
                "rule_id": a.rule_id,
                "rule_name": a.rule_name,
                "effect": a.kind,
                "lines": a.lines,
                "discount": a.discount,
                "points": a.points,
                "explanation": a.explanation,
            }
            for a in ev.applied
        ],
        "not_applied": [
            {
                "program": n.program,
                "rule_id": n.rule_id,
                "rule_name": n.rule_name,
                "missing": {"kind": n.kind, "value": n.missing},
                "explanation": n.explanation,
            }
            for n in ev.not_applied
        ],
        "gifts": ev.gifts,
        "coupons_issued": [],
        **found.extras,
    }


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "receipt_number": row["receipt_number"],
        "status": row["status"],
        "occurred_at": row["occurred_at"].isoformat(),
        "total_amount": row["total_amount"],
        "total_discount": row["total_discount"],
        "points_redeemed": row["points_redeemed"],
        "total_pay": row["total_pay"],
        "points_earned": row["points_earned"],
    }
