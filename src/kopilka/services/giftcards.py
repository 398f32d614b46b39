"""Gift cards and certificates: sold, activated at a till, paying for receipts (partly or
fully), refunded back to, enquired about, blocked, reissued when lost, and expired.

The value is money in the ledger: each card holds accounts in its currency (the tenant's
money currency, e.g. RUB in kopecks), apart from every points currency. Activation credits
one lot (``issued`` -> wallet) that expires with the card; paying takes from it
(wallet -> ``redeemed``); refunds give back to the lots paid from; expiry moves what is left
to ``expired``; a reissue moves the lots to the new card. The liability is what the cards'
wallets hold, reconciled with those movements.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from pydantic import BaseModel, Field

from kopilka.adapters.db.mechanics.giftcards import GiftCardStore
from kopilka.clock import Clock
from kopilka.domain.errors import (
    Conflict,
    ErrorCollector,
    FieldError,
    Forbidden,
    KopilkaError,
    NotFound,
    ValidationFailed,
)
from kopilka.domain.giftcards.logic import RateLimited, Window, refund_shares, split_payment
from kopilka.domain.giftcards.numbers import (
    generate_number,
    is_valid_number,
    mask,
    number_digest,
)
from kopilka.domain.giftcards.pins import hash_pin, new_pin, verify_pin
from kopilka.domain.giftcards.settings import GiftCardPolicy
from kopilka.domain.giftcards.texts import balance_message, describe
from kopilka.domain.ledger.expiry import expires_at as validity_end
from kopilka.domain.ledger.lots import LotStatus
from kopilka.domain.ledger.model import AccountKind, Posting, TxnKind
from kopilka.domain.ledger.plan import LedgerPlan, NewTransaction
from kopilka.ids import new_id
from kopilka.services.context import Actor, Role, Tenant, load_tenant
from kopilka.services.idempotency import remember, replay_or_claim, request_hash
from kopilka.services.ledger_book import MemberBook, last_day
from kopilka.services.ledger_ops import refund_spend
from kopilka.services.ports import UnitOfWork, UnitOfWorkFactory
from kopilka.services.purchase_hooks import PurchaseHook

if TYPE_CHECKING:
    from kopilka.services.purchases import Evaluated, GiftCardUse, ReceiptInput

SUBJECT = "gift_card"  # the audit log's subject type
JOB_ACTOR = "job:scheduler"
FUTURE_SLACK = timedelta(minutes=5)
NUMBER_TRIES = 20
ATTEMPTS_KEPT = timedelta(days=2)  # longer than the longest window (a day)
# The request's gift cards, from ``adjust`` (which sees the request) to ``extras`` (which
# runs after every hook has adjusted the evaluation, so the split sees the final total).
_PENDING = "_gift_card_uses"
# History: which ledger kinds and audit actions show, and as what.
_LEDGER_KINDS = {
    TxnKind.ACCRUAL: ("activated", 1),
    TxnKind.REDEMPTION: ("payment", -1),
    TxnKind.REFUND: ("refund", 1),
    TxnKind.EXPIRY: ("expiry", -1),
}
_AUDIT_KINDS = frozenset({"issued", "blocked", "unblocked", "replaced", "reissued", "expired"})


# ---- views ---------------------------------------------------------------------------------
class SaleView(BaseModel):
    outlet: str
    receipt_number: str
    sold_at: datetime


class GiftCardView(BaseModel):
    id: uuid.UUID
    number: str
    status: str = Field(description="issued, active, blocked, replaced or expired")
    currency: str
    amount: int = Field(description="Face value in minor units, loaded on activation")
    balance: int = Field(description="What the card can pay now, in minor units")
    expires_at: datetime | None
    valid_through: str | None = Field(description="The last local day the card can pay")
    activated_at: datetime | None
    sale: SaleView
    replaces: str | None = None
    replaced_by: str | None = None
    blocked_reason: str | None = None
    created_at: datetime


class GiftCardIssued(GiftCardView):
    pin: str | None = Field(
        description="The PIN for online use, shown once; null when the answer is replayed"
    )
    moved: int = Field(default=0, description="Reissue: the balance moved from the old card")


class HistoryEntry(BaseModel):
    at: datetime
    kind: str
    amount: int | None = Field(description="Signed money movement of the card, if any")
    description: dict[str, str]
    actor: str
    transaction_id: uuid.UUID | None = None
    receipt_id: str | None = None


class GiftCardDetails(GiftCardView):
    history: list[HistoryEntry]


class BalanceAnswer(BaseModel):
    number: str = Field(description="Masked")
    status: str
    balance: int
    currency: str
    valid_through: str | None
    message: dict[str, str]


class NotActivated(BaseModel):
    cards: int
    amount: int


class LiabilityView(BaseModel):
    as_of: datetime
    currency: str
    outstanding: int = Field(description="What the cards can still pay: the liability")
    loaded: int
    spent: int
    refunded: int
    expired: int
    moved: int = Field(description="Net of reissue transfers between cards (always 0)")
    balanced: bool = Field(description="outstanding = loaded - spent + refunded - expired")
    not_activated: NotActivated
    cards: dict[str, int]


@dataclass(frozen=True)
class SaleInput:
    outlet: str
    receipt_number: str
    sold_at: datetime


# ---- the service ---------------------------------------------------------------------------
class GiftCardService:
    def __init__(self, uow_factory: UnitOfWorkFactory, clock: Clock) -> None:
        self.uow_factory = uow_factory
        self.clock = clock
        self.hook = GiftCardHook(self)

    # ---- policy ------------------------------------------------------------------------
    def policy_in(self, uow: UnitOfWork, tenant_id: uuid.UUID) -> GiftCardPolicy:
        stored = GiftCardStore(uow).policy(tenant_id)
        return GiftCardPolicy.model_validate(stored) if stored else GiftCardPolicy()

    def get_policy(self, actor: Actor) -> GiftCardPolicy:
        with self.uow_factory(write=False) as uow:
            return self.policy_in(uow, actor.tenant_id)

    def set_policy(self, actor: Actor, policy: GiftCardPolicy) -> GiftCardPolicy:
        """Replace the policy (fields left out take their defaults); PUT twice = once."""
        with self.uow_factory(write=True) as uow:
            now = self.clock.now()
            data = policy.model_dump(mode="json")
            store = GiftCardStore(uow)
            if store.policy(actor.tenant_id) != data:
                store.save_policy(actor.tenant_id, data, now)
                uow.directory.audit(
                    actor.tenant_id,
                    actor.name,
                    "gift_card.policy",
                    "gift_card_policy",
                    actor.tenant_id,
                    data,
                    now,
                )
            uow.commit()
            return policy

    # ---- life cycle --------------------------------------------------------------------
    def issue(
        self,
        actor: Actor,
        amount: int,
        sale: SaleInput,
        *,
        number: str | None = None,
        idempotency_key: str | None = None,
    ) -> GiftCardIssued:
        """Record a sale: a new card, ``issued`` (not usable until activated), and its PIN,
        shown in this answer only."""
        digest = request_hash(
            "gift_card.issue",
            {"amount": amount, "number": number, "sale": sale.__dict__},
        )
        with self.uow_factory(write=True) as uow:
            stored = replay_or_claim(uow, actor.tenant_id, idempotency_key, digest)
            if stored is not None:
                return GiftCardIssued.model_validate(stored)
            tenant = load_tenant(uow, actor.tenant_id)
            now = self.clock.now()
            store = GiftCardStore(uow)
            policy = self.policy_in(uow, tenant.id)
            errors = ErrorCollector()
            if not policy.min_amount <= amount <= policy.max_amount:
                errors.add(
                    ("amount",),
                    f"Between {policy.min_amount} and {policy.max_amount} minor units.",
                    "amount_out_of_range",
                )
            if number is not None and not is_valid_number(number):
                errors.add(("number",), "Wrong gift card number or check digit.", _BAD_NUMBER)
            outlet = uow.directory.outlet_by_code(tenant.id, sale.outlet)
            if outlet is None:
                errors.add(("sale", "outlet"), f"Unknown outlet {sale.outlet!r}.", "unknown_outlet")
            if sale.sold_at > now + FUTURE_SLACK:
                errors.add(("sale", "sold_at"), "The sale is in the future.", "sold_in_future")
            errors.raise_if_any("The gift card cannot be issued.")
            assert outlet is not None
            number = self._free_number(store, tenant.id, number, policy)
            pin = new_pin()
            card_id = new_id()
            row = {
                "id": card_id,
                "tenant_id": tenant.id,
                "number": number,
                "status": "issued",
                "currency": tenant.currency,
                "amount": amount,
                "pin_hash": hash_pin(pin),
                "wallet_account_id": store.create_accounts(
                    tenant.id, card_id, tenant.currency, now
                ),
                "sale_outlet_id": outlet["id"],
                "sale_receipt_number": sale.receipt_number,
                "sold_at": sale.sold_at,
                "activated_at": None,
                "activated_outlet_id": None,
                "expires_at": None,
                "replaces_id": None,
                "replaced_by_id": None,
                "blocked_reason": None,
                "created_at": now,
                "updated_at": now,
            }
            _insert_card(store, row)
            self._audit(uow, actor, card_id, "issued", now, amount=amount, currency=row["currency"])
            view = self._view(uow, tenant, row, now)
            answer = GiftCardIssued(**view.model_dump(), pin=None)
            # The PIN never reaches the database, not even in the replayable answer.
            remember(uow, tenant.id, idempotency_key, digest, answer.model_dump(mode="json"), now)
            uow.commit()
            return answer.model_copy(update={"pin": pin})

    def activate(self, actor: Actor, number: str, outlet: str | None = None) -> GiftCardView:
        """Load the face value at a till: the card becomes ``active`` and starts its
        validity. Activating an active card again changes nothing."""
        with self.uow_factory(write=True) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            now = self.clock.now()
            store = GiftCardStore(uow)
            card = self._card(uow, tenant.id, number, lock=True)
            if card["status"] == "active":
                return self._view(uow, tenant, card, now)
            if card["status"] != "issued":
                raise _state_conflict(card, now, "activated")
            where = self._outlet(uow, actor, outlet)
            policy = self.policy_in(uow, tenant.id)
            until = validity_end(policy.validity, now, tenant.timezone)
            book = self._book(uow, tenant, actor, card, now)
            txn = book.new_txn(
                TxnKind.ACCRUAL,
                card["amount"],
                source_type=SUBJECT,
                source_id=str(card["id"]),
                params={"gift_card": "activation", "expires_on": last_day(until, tenant.timezone)},
            )
            _load(book, txn, card["amount"], until)
            uow.ledger.apply(tenant.id, book.plan, now)
            changes = {
                "status": "active",
                "activated_at": now,
                "activated_outlet_id": where["id"] if where else None,
                "expires_at": until,
                "updated_at": now,
            }
            store.update(tenant.id, card["id"], changes)
            self._audit(
                uow, actor, card["id"], "activated", now, outlet=where["code"] if where else None
            )
            view = self._view(uow, tenant, {**card, **changes}, now)
            uow.commit()
            return view

    def block(self, actor: Actor, number: str, reason: str | None = None) -> GiftCardView:
        """Freeze a card (lost, stolen, disputed): it cannot pay or be activated; its value
        stays. Blocking a blocked card changes nothing."""
        with self.uow_factory(write=True) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            now = self.clock.now()
            card = self._card(uow, tenant.id, number, lock=True)
            if card["status"] == "blocked":
                return self._view(uow, tenant, card, now)
            if card["status"] not in ("issued", "active") or _past_validity(card, now):
                raise _state_conflict(card, now, "blocked")
            changes = {"status": "blocked", "blocked_reason": reason, "updated_at": now}
            GiftCardStore(uow).update(tenant.id, card["id"], changes)
            self._audit(uow, actor, card["id"], "blocked", now, reason=reason)
            view = self._view(uow, tenant, {**card, **changes}, now)
            uow.commit()
            return view

    def unblock(self, actor: Actor, number: str) -> GiftCardView:
        """Back to ``active`` (or ``issued`` if it was never activated)."""
        with self.uow_factory(write=True) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            now = self.clock.now()
            card = self._card(uow, tenant.id, number, lock=True)
            if card["status"] in ("issued", "active"):
                return self._view(uow, tenant, card, now)
            if card["status"] != "blocked":
                raise _state_conflict(card, now, "unblocked")
            status = "active" if card["activated_at"] is not None else "issued"
            changes = {"status": status, "blocked_reason": None, "updated_at": now}
            GiftCardStore(uow).update(tenant.id, card["id"], changes)
            self._audit(uow, actor, card["id"], "unblocked", now)
            view = self._view(uow, tenant, {**card, **changes}, now)
            uow.commit()
            return view

    def reissue(
        self,
        actor: Actor,
        number: str,
        *,
        new_number: str | None = None,
        reason: str | None = None,
        idempotency_key: str | None = None,
    ) -> GiftCardIssued:
        """A lost card replaced: a new number and PIN carry the remaining balance (with
        its expiry); the old card becomes ``replaced`` and can no longer pay."""
        digest = request_hash(
            "gift_card.reissue", {"number": number, "new_number": new_number, "reason": reason}
        )
        with self.uow_factory(write=True) as uow:
            stored = replay_or_claim(uow, actor.tenant_id, idempotency_key, digest)
            if stored is not None:
                return GiftCardIssued.model_validate(stored)
            tenant = load_tenant(uow, actor.tenant_id)
            now = self.clock.now()
            store = GiftCardStore(uow)
            old = self._card(uow, tenant.id, number, lock=True)
            if old["status"] not in ("issued", "active", "blocked") or _past_validity(old, now):
                raise _state_conflict(old, now, "reissued")
            if new_number is not None and not is_valid_number(new_number):
                raise _bad_number(("new_number",))
            policy = self.policy_in(uow, tenant.id)
            fresh_number = self._free_number(store, tenant.id, new_number, policy, "new_number")
            pin = new_pin()
            new_card_id = new_id()
            activated = old["activated_at"] is not None
            row = {
                **old,
                "id": new_card_id,
                "number": fresh_number,
                "status": "active" if activated else "issued",
                "pin_hash": hash_pin(pin),
                "wallet_account_id": store.create_accounts(
                    tenant.id, new_card_id, old["currency"], now
                ),
                "activated_at": now if activated else None,
                "replaces_id": old["id"],
                "replaced_by_id": None,
                "blocked_reason": None,
                "created_at": now,
                "updated_at": now,
            }
            _insert_card(store, row)
            moved = 0
            if activated:
                source, target = self._pair(uow, tenant, actor, old, row, now)
                moved = _move_value(source, target, old, row)
                uow.ledger.apply(tenant.id, source.plan, now)
            store.update(
                tenant.id,
                old["id"],
                {"status": "replaced", "replaced_by_id": new_card_id, "updated_at": now},
            )
            self._audit(
                uow, actor, old["id"], "replaced", now, other_card=mask(fresh_number), reason=reason
            )
            self._audit(uow, actor, new_card_id, "reissued", now, other_card=mask(old["number"]))
            view = self._view(uow, tenant, row, now)
            answer = GiftCardIssued(**view.model_dump(), pin=None, moved=moved)
            remember(uow, tenant.id, idempotency_key, digest, answer.model_dump(mode="json"), now)
            uow.commit()
            return answer.model_copy(update={"pin": pin})

    # ---- reads -------------------------------------------------------------------------
    def balance(
        self, actor: Actor, number: str, *, pin: str | None = None, channel: str = "store"
    ) -> BalanceAnswer:
        """A balance enquiry, counted per API key and per card (and wrong PINs per card)
        in fixed windows; too many answer 429 until the window ends."""
        with self.uow_factory(write=True) as uow:
            try:
                answer = self._enquire(uow, actor, number, pin, channel)
            except KopilkaError:
                uow.commit()  # the attempt counts, whatever the answer
                raise
            uow.commit()
            return answer

    def _enquire(
        self, uow: UnitOfWork, actor: Actor, number: str, pin: str | None, channel: str
    ) -> BalanceAnswer:
        tenant = load_tenant(uow, actor.tenant_id)
        now = self.clock.now()
        store = GiftCardStore(uow)
        policy = self.policy_in(uow, tenant.id)
        limits = policy.enquiry_limits
        window = Window.at(now, limits.window_seconds)
        if store.bump(tenant.id, "key", actor.name[:128], window.start) > limits.per_key:
            raise RateLimited(
                "Too many balance enquiries with this key; try again later.",
                retry_after=window.retry_after(now),
            )
        if not is_valid_number(number):
            raise _bad_number(("number",))
        digest = number_digest(number)
        if store.bump(tenant.id, "card", digest, window.start) > limits.per_card:
            raise RateLimited(
                "Too many balance enquiries for this card; try again later.",
                retry_after=window.retry_after(now),
            )
        card = store.by_number(tenant.id, number)
        if card is None:
            raise NotFound("Gift card not found.", code="gift_card_not_found")
        if pin is None:
            if policy.pin_needed(channel):
                raise _pin_problem(("pin",), "The PIN is required here.", "gift_card_pin_required")
        elif not self._pin_ok(uow, tenant.id, card, pin, policy, now, count_in=uow):
            raise _pin_problem(("pin",), "Wrong PIN.", "gift_card_pin_invalid")
        view = self._view(uow, tenant, card, now)
        return BalanceAnswer(
            number=mask(card["number"]),
            status=view.status,
            balance=view.balance,
            currency=view.currency,
            valid_through=view.valid_through,
            message=balance_message(view.status, view.balance, view.currency, view.valid_through),
        )

    def details(self, actor: Actor, number: str) -> GiftCardDetails:
        """Status, balance and history (money movements and life-cycle events)."""
        with self.uow_factory(write=False) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            now = self.clock.now()
            card = self._card(uow, tenant.id, number)
            view = self._view(uow, tenant, card, now)
            return GiftCardDetails(**view.model_dump(), history=self._history(uow, tenant, card))

    def liability(self, actor: Actor) -> LiabilityView:
        """The money the tenant owes its gift card holders, from the ledger, with what made
        it: loaded on activation, spent, refunded, expired."""
        with self.uow_factory(write=False) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            store = GiftCardStore(uow)
            currency = tenant.currency
            outstanding = store.outstanding(tenant.id, currency)
            kinds = store.movements_by_kind(tenant.id, currency)
            loaded = kinds.get(TxnKind.ACCRUAL, 0)
            spent = -kinds.get(TxnKind.REDEMPTION, 0)
            refunded = kinds.get(TxnKind.REFUND, 0)
            expired = -kinds.get(TxnKind.EXPIRY, 0)
            moved = kinds.get(TxnKind.TRANSFER, 0)
            statuses = store.status_totals(tenant.id, currency)
            waiting = statuses.get("issued", (0, 0))
            return LiabilityView(
                as_of=self.clock.now(),
                currency=currency,
                outstanding=outstanding,
                loaded=loaded,
                spent=spent,
                refunded=refunded,
                expired=expired,
                moved=moved,
                balanced=outstanding == loaded - spent + refunded - expired + moved
                and sum(kinds.values()) == outstanding,
                not_activated=NotActivated(cards=waiting[0], amount=waiting[1]),
                cards={status: count for status, (count, _) in sorted(statuses.items())},
            )

    # ---- the clock's work --------------------------------------------------------------
    def expire_due(self, now: datetime, tenant_id: uuid.UUID | None = None) -> int:
        """Cards past their validity: what is left expires, the card becomes ``expired``.
        Each card in its own short transaction; a second run finds nothing to do."""
        done = 0
        seen: set[tuple[uuid.UUID, uuid.UUID]] = set()
        while True:
            with self.uow_factory(write=False) as uow:
                due = [
                    item
                    for item in GiftCardStore(uow).due_for_expiry(now, 500, tenant_id)
                    if item not in seen
                ]
            if not due:
                return done
            for item in due:
                seen.add(item)
                try:
                    done += self._expire(item[0], item[1], now)
                except KopilkaError:
                    continue  # one card's trouble must not stop the run

    def _expire(self, tenant_id: uuid.UUID, card_id: uuid.UUID, now: datetime) -> int:
        actor = Actor(tenant_id=tenant_id, name=JOB_ACTOR, role=Role.ADMIN)
        with self.uow_factory(write=True) as uow:
            tenant = load_tenant(uow, tenant_id)
            card = GiftCardStore(uow).get(tenant_id, card_id, lock=True)
            if card is None or card["status"] not in ("active", "blocked"):
                return 0
            if not _past_validity(card, now):
                return 0
            book = self._book(uow, tenant, actor, card, now)
            made = book.settle()  # the lots expire with the card: wallet -> expired
            uow.ledger.apply(tenant.id, book.plan, now)
            GiftCardStore(uow).update(tenant_id, card_id, {"status": "expired", "updated_at": now})
            self._audit(uow, actor, card_id, "expired", now, amount=sum(t.amount for t in made))
            uow.commit()
            return 1

    def prune_attempts(self, now: datetime, tenant_id: uuid.UUID | None = None) -> int:
        """Forget rate-limit windows long closed."""
        with self.uow_factory(write=True) as uow:
            gone = GiftCardStore(uow).prune_attempts(now - ATTEMPTS_KEPT, tenant_id)
            uow.commit()
            return gone

    # ---- at the till -------------------------------------------------------------------
    def till_split(
        self, uow: UnitOfWork, found: Evaluated, uses: Sequence[GiftCardUse], channel: str
    ) -> dict[str, Any]:
        """Check each card and split what is left to pay between them, in the order given."""
        tenant = found.tenant
        now = self.clock.now()
        store = GiftCardStore(uow)
        policy = self.policy_in(uow, tenant.id)
        errors = ErrorCollector()
        chosen: list[tuple[int, dict[str, Any], GiftCardUse]] = []
        balances: dict[uuid.UUID, int] = {}
        seen: set[str] = set()
        for i, use in enumerate(uses):
            where: tuple[str | int, ...] = ("gift_cards", i, "number")
            if not is_valid_number(use.number):
                errors.add(where, "Wrong gift card number or check digit.", _BAD_NUMBER)
                continue
            if use.number in seen:
                errors.add(where, "The same gift card is given twice.", "duplicate_gift_card")
                continue
            seen.add(use.number)
            card = store.by_number(tenant.id, use.number)
            if card is None:
                errors.add(where, "No gift card with this number.", "gift_card_not_found")
                continue
            refusal = _unusable(card, now, tenant.currency)
            if refusal is not None:
                errors.add(where, *refusal)
                continue
            pin_at = ("gift_cards", i, "pin")
            if use.pin is None:
                if policy.pin_needed(channel):
                    errors.add(pin_at, "The PIN is required here.", "gift_card_pin_required")
                    continue
            elif not self._pin_ok(
                uow, tenant.id, card, use.pin, policy, now, writing=found.writing
            ):
                errors.add(pin_at, "Wrong PIN.", "gift_card_pin_invalid")
                continue
            held = store.balances(tenant.id, [card["wallet_account_id"]])
            if held.get(card["wallet_account_id"], 0) <= 0:
                errors.add(where, "The gift card is empty.", "gift_card_empty")
                continue
            chosen.append((i, card, use))
            balances.update(held)
        if errors.errors:
            raise ValidationFailed(
                "A gift card cannot pay for this receipt.",
                code=errors.errors[0].code,
                errors=errors.errors,
            )
        to_pay = found.evaluation.total_pay
        amounts = split_payment(
            to_pay, [(use.amount, balances[card["wallet_account_id"]]) for _, card, use in chosen]
        )
        entries = [
            {
                "number": mask(card["number"]),
                "card_id": str(card["id"]),
                "amount": amount,
                "balance_after": balances[card["wallet_account_id"]] - amount,
            }
            for (_, card, _), amount in zip(chosen, amounts, strict=True)
        ]
        paid = sum(amounts)
        return {
            "payments": {
                "currency": tenant.currency,
                "gift_cards": entries,
                "gift_cards_total": paid,
                "to_pay": to_pay - paid,
                # Calculations and held receipts only plan the split; confirming debits.
                "debited": False,
            }
        }

    def debit(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        receipt: dict[str, Any],
        now: datetime,
    ) -> dict[str, Any]:
        """The receipt is confirmed: take the planned amounts from the cards, under their
        locks. A card that can no longer pay them fails the whole receipt (409)."""
        payments = (receipt.get("result") or {}).get("payments") or {}
        entries = [dict(e) for e in payments.get("gift_cards") or []]
        if not entries:
            return {}
        store = GiftCardStore(uow)
        for entry in sorted(entries, key=lambda e: str(e["card_id"])):  # lock order: by id
            amount = int(entry["amount"])
            if amount <= 0:
                continue
            card = store.get(tenant.id, uuid.UUID(str(entry["card_id"])), lock=True)
            if card is None:
                raise Conflict("The gift card is gone.", code="gift_card_not_found")
            refusal = _unusable(card, now, tenant.currency)
            if refusal is not None:
                raise Conflict(
                    f"Gift card {entry['number']}: {refusal[0]}",
                    code=refusal[1],
                    extra={"number": entry["number"]},
                )
            book = self._book(uow, tenant, actor, card, now)
            if book.wallet.balance < amount:
                raise Conflict(
                    f"Gift card {entry['number']} holds {book.wallet.balance} now, "
                    f"not the {amount} planned; calculate again.",
                    code="gift_card_balance_changed",
                    extra={
                        "number": entry["number"],
                        "available": book.wallet.balance,
                        "requested": amount,
                    },
                )
            txn = book.new_txn(
                TxnKind.REDEMPTION,
                amount,
                source_type="receipt",
                source_id=str(receipt["id"]),
                params={"gift_card": "payment", "receipt_number": receipt["receipt_number"]},
            )
            book.take(txn, amount, book.system[AccountKind.REDEEMED])
            uow.ledger.apply(tenant.id, book.plan, now)
            store.insert_payment(
                {
                    "id": new_id(),
                    "tenant_id": tenant.id,
                    "receipt_id": receipt["id"],
                    "card_id": card["id"],
                    "amount": amount,
                    "refunded": 0,
                    "transaction_id": txn.id,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            entry["balance_after"] = book.wallet.balance
        return {"payments": {**payments, "gift_cards": entries, "debited": True}}

    def credit_back(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        receipt: dict[str, Any],
        refund: dict[str, Any],
        now: datetime,
    ) -> dict[str, Any]:
        """Part of a receipt paid with gift cards is refunded: the money goes back to the
        cards first (in the order they paid, each up to what it paid and has not had back),
        the rest is the till's to return. A replaced card's share goes to its replacement;
        an expired card's share is returned by the till instead."""
        store = GiftCardStore(uow)
        rows = store.payments_of(tenant.id, receipt["id"], lock=True)
        if not rows:
            return {}
        money = int(refund.get("money_to_return") or 0)
        cards = {}
        for row in sorted(rows, key=lambda r: r["card_id"]):
            cards[row["card_id"]] = self._current(store, tenant.id, row["card_id"])
        shares = refund_shares(
            money,
            [
                (
                    row["amount"],
                    row["refunded"],
                    _unusable(cards[row["card_id"]][1], now, tenant.currency, refund=True) is None,
                )
                for row in rows
            ],
        )
        entries = []
        for row, share in zip(rows, shares, strict=True):
            if share <= 0:
                continue
            card, target = cards[row["card_id"]]
            original = uow.ledger.get_transaction(tenant.id, row["transaction_id"])
            assert original is not None
            source, receiver = self._pair(uow, tenant, actor, card, target, now)
            txn = refund_spend(
                source, original, share, source_type="receipt", source_id=str(receipt["id"])
            )
            txn.params.update({"gift_card": "refund", "receipt_number": receipt["receipt_number"]})
            if receiver is not source:
                _move_value(source, receiver, card, target)
            uow.ledger.apply(tenant.id, source.plan, now)
            store.set_refunded(tenant.id, row["id"], row["refunded"] + share, now)
            entries.append(
                {
                    "number": mask(target["number"]),
                    "card_id": str(target["id"]),
                    "amount": share,
                    "balance_after": receiver.wallet.balance,
                }
            )
        given = sum(shares)
        return {
            "payments": {
                "currency": tenant.currency,
                "gift_cards": entries,
                "gift_cards_total": given,
                "to_return": money - given,
            }
        }

    # ---- helpers -----------------------------------------------------------------------
    def _card(
        self, uow: UnitOfWork, tenant_id: uuid.UUID, number: str, *, lock: bool = False
    ) -> dict[str, Any]:
        if not is_valid_number(number):
            raise _bad_number(("number",))
        card = GiftCardStore(uow).by_number(tenant_id, number, lock=lock)
        if card is None:
            raise NotFound("Gift card not found.", code="gift_card_not_found")
        return card

    def _current(
        self, store: GiftCardStore, tenant_id: uuid.UUID, card_id: uuid.UUID
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the card, the card that holds its value now: itself, or its last replacement)."""
        card = store.get(tenant_id, card_id, lock=True)
        assert card is not None
        target = card
        for _ in range(100):  # a chain of replacements, bounded against a cycle
            if target["status"] != "replaced" or target["replaced_by_id"] is None:
                break
            successor = store.get(tenant_id, target["replaced_by_id"], lock=True)
            if successor is None:
                break
            target = successor
        return card, target

    def _free_number(
        self,
        store: GiftCardStore,
        tenant_id: uuid.UUID,
        wanted: str | None,
        policy: GiftCardPolicy,
        field: str = "number",
    ) -> str:
        if wanted is not None:
            if store.by_number(tenant_id, wanted) is not None:
                raise Conflict(
                    "A gift card with this number exists already.",
                    code="gift_card_number_taken",
                    extra={"field": field},
                )
            return wanted
        for _ in range(NUMBER_TRIES):
            candidate = generate_number(policy.number_prefix)
            if store.by_number(tenant_id, candidate) is None:
                return candidate
        raise Conflict("No free gift card number; try again.", code="gift_card_numbers_exhausted")

    def _outlet(self, uow: UnitOfWork, actor: Actor, code: str | None) -> dict[str, Any] | None:
        """Where the card is activated: a till key's own outlet, or the outlet named."""
        if actor.role is Role.POS:
            assert actor.outlet_id is not None
            own = uow.directory.outlet(actor.tenant_id, actor.outlet_id)
            if own is None or (code is not None and own["code"] != code):
                raise Forbidden(
                    "A till key works for its own outlet only.", code="outlet_not_allowed"
                )
            return own
        if code is None:
            return None
        outlet = uow.directory.outlet_by_code(actor.tenant_id, code)
        if outlet is None:
            raise ValidationFailed(
                f"Unknown outlet {code!r}.",
                code="unknown_outlet",
                errors=[FieldError(("outlet",), f"Unknown outlet {code!r}.", "unknown_outlet")],
            )
        return outlet

    def _book(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        card: dict[str, Any],
        now: datetime,
    ) -> MemberBook:
        """The card's ledger book, its accounts locked."""
        accounts = uow.ledger.lock_member_accounts(tenant.id, card["id"], card["currency"])
        return MemberBook(
            uow, tenant, card["id"], actor, now, currency=card["currency"], accounts=accounts
        )

    def _pair(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        card: dict[str, Any],
        target: dict[str, Any],
        now: datetime,
    ) -> tuple[MemberBook, MemberBook]:
        """Books of a card (its lots loaded) and of the card receiving its value, on one
        plan, the accounts of both locked in one ascending pass. The same book twice when
        the card keeps its value."""
        if target["id"] == card["id"]:
            book = self._book(uow, tenant, actor, card, now)
            return book, book
        locked = uow.ledger.lock_many_member_accounts(
            tenant.id, [card["id"], target["id"]], card["currency"]
        )
        plan = LedgerPlan()
        source = MemberBook(
            uow,
            tenant,
            card["id"],
            actor,
            now,
            currency=card["currency"],
            accounts=locked[card["id"]],
            plan=plan,
        )
        receiver = MemberBook(
            uow,
            tenant,
            target["id"],
            actor,
            now,
            currency=card["currency"],
            accounts=locked[target["id"]],
            plan=plan,
            load_lots=False,  # only the source's lots are in the plan: they are what moves
        )
        return source, receiver

    def _pin_ok(
        self,
        uow: UnitOfWork,
        tenant_id: uuid.UUID,
        card: dict[str, Any],
        pin: str,
        policy: GiftCardPolicy,
        now: datetime,
        *,
        count_in: UnitOfWork | None = None,
        writing: bool = False,
    ) -> bool:
        """Check a PIN; a card with too many wrong PINs in the window answers 429 before its
        PIN is even compared. A wrong PIN is counted in ``count_in``, or else in a short
        transaction of its own (the request fails, its own writes roll back) - except in a
        SQLite receipt being confirmed, whose write lock a second writer would wait on."""
        limits = policy.enquiry_limits
        window = Window.at(now, limits.window_seconds)
        digest = number_digest(card["number"])
        store = GiftCardStore(uow)
        if store.attempts(tenant_id, "pin", digest, window.start) >= limits.wrong_pins_per_card:
            raise RateLimited(
                "Too many wrong PINs for this card; try again later.",
                retry_after=window.retry_after(now),
            )
        if verify_pin(pin, card["pin_hash"]):
            return True
        if count_in is not None:
            GiftCardStore(count_in).bump(tenant_id, "pin", digest, window.start)
        elif not writing or uow.dialect != "sqlite":
            with self.uow_factory(write=True) as own:
                GiftCardStore(own).bump(tenant_id, "pin", digest, window.start)
                own.commit()
        return False

    def _view(
        self, uow: UnitOfWork, tenant: Tenant, card: dict[str, Any], now: datetime
    ) -> GiftCardView:
        store = GiftCardStore(uow)
        status = "expired" if _past_validity(card, now) else card["status"]
        held = store.balances(tenant.id, [card["wallet_account_id"]]).get(
            card["wallet_account_id"], 0
        )
        outlet = uow.directory.outlet(tenant.id, card["sale_outlet_id"])
        related = store.numbers_of(
            tenant.id, [i for i in (card["replaces_id"], card["replaced_by_id"]) if i]
        )
        return GiftCardView(
            id=card["id"],
            number=card["number"],
            status=status,
            currency=card["currency"],
            amount=card["amount"],
            balance=held if status in ("active", "blocked") else 0,
            expires_at=card["expires_at"],
            valid_through=last_day(card["expires_at"], tenant.timezone),
            activated_at=card["activated_at"],
            sale=SaleView(
                outlet=outlet["code"] if outlet else "",
                receipt_number=card["sale_receipt_number"],
                sold_at=card["sold_at"],
            ),
            replaces=related.get(card["replaces_id"]) if card["replaces_id"] else None,
            replaced_by=related.get(card["replaced_by_id"]) if card["replaced_by_id"] else None,
            blocked_reason=card["blocked_reason"],
            created_at=card["created_at"],
        )

    def _history(
        self, uow: UnitOfWork, tenant: Tenant, card: dict[str, Any], limit: int = 200
    ) -> list[HistoryEntry]:
        """Newest first: the card's ledger entries and its life-cycle events."""
        currency = card["currency"]
        # Ids are time-ordered (UUIDv7) in the ledger and the audit log alike: they order
        # what happened within one moment.
        entries: list[tuple[datetime, uuid.UUID, HistoryEntry]] = []
        for txn in uow.ledger.history(tenant.id, [card["id"]], None, limit):
            if txn.kind == TxnKind.TRANSFER:
                out = txn.member_id == card["id"]
                kind, sign = ("moved_out", -1) if out else ("moved_in", 1)
                other = txn.params.get("to" if out else "from")
                params: dict[str, Any] = {**txn.params, "other_card": other}
            elif txn.kind in _LEDGER_KINDS:
                kind, sign = _LEDGER_KINDS[TxnKind(txn.kind)]
                params = txn.params
            else:
                continue
            entries.append(
                (
                    txn.occurred_at,
                    txn.id,
                    HistoryEntry(
                        at=txn.occurred_at,
                        kind=kind,
                        amount=sign * txn.amount,
                        description=describe(kind, txn.amount, currency, params),
                        actor=txn.actor,
                        transaction_id=txn.id,
                        receipt_id=txn.source_id if txn.source_type == "receipt" else None,
                    ),
                )
            )
        trail = uow.directory.audit_trail(tenant.id, SUBJECT, str(card["id"]))
        for event in trail:
            kind = str(event["action"]).removeprefix("gift_card.")
            if kind not in _AUDIT_KINDS:
                continue
            details = event["details"] or {}
            entries.append(
                (
                    event["created_at"],
                    event["id"],
                    HistoryEntry(
                        at=event["created_at"],
                        kind=kind,
                        amount=None,
                        description=describe(kind, details.get("amount"), currency, details),
                        actor=event["actor"],
                    ),
                )
            )
        entries.sort(key=lambda item: (item[0], item[1]), reverse=True)
        return [entry for _, _, entry in entries[:limit]]

    def _audit(
        self,
        uow: UnitOfWork,
        actor: Actor,
        card_id: uuid.UUID,
        action: str,
        now: datetime,
        **details: Any,
    ) -> None:
        uow.directory.audit(
            actor.tenant_id, actor.name, f"gift_card.{action}", SUBJECT, card_id, details, now
        )


class GiftCardHook(PurchaseHook):
    """Gift cards as a means of payment at the till, for anonymous receipts too."""

    anonymous_too = True

    def __init__(self, service: GiftCardService) -> None:
        self.service = service

    def adjust(self, uow: UnitOfWork, found: Evaluated, request: ReceiptInput) -> None:
        if request.gift_cards:
            found.extras[_PENDING] = (request.gift_cards, request.channel)

    def extras(self, uow: UnitOfWork, found: Evaluated) -> dict[str, Any]:
        pending = found.extras.pop(_PENDING, None)
        if not pending:
            return {}
        uses, channel = pending
        return self.service.till_split(uow, found, uses, channel)

    def on_confirmed(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        receipt: dict[str, Any],
        lines: list[dict[str, Any]],
        now: datetime,
    ) -> dict[str, Any]:
        return self.service.debit(uow, tenant, actor, receipt, now)

    def on_refunded(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        receipt: dict[str, Any],
        refund: dict[str, Any],
        now: datetime,
    ) -> dict[str, Any]:
        return self.service.credit_back(uow, tenant, actor, receipt, refund, now)


# ---- pure helpers --------------------------------------------------------------------------
_BAD_NUMBER = "invalid_gift_card_number"


def _bad_number(path: tuple[str | int, ...]) -> ValidationFailed:
    message = "Wrong gift card number or check digit."
    return ValidationFailed(
        message, code=_BAD_NUMBER, errors=[FieldError(path, message, _BAD_NUMBER)]
    )


def _pin_problem(path: tuple[str | int, ...], message: str, code: str) -> ValidationFailed:
    return ValidationFailed(message, code=code, errors=[FieldError(path, message, code)])


def _insert_card(store: GiftCardStore, row: dict[str, Any]) -> None:
    """Insert a card; a twin request that took the same number first is a conflict, not a
    crash (the unique key decides; this transaction then rolls back)."""
    try:
        store.insert(row)
    except sa.exc.IntegrityError as exc:
        raise Conflict(
            "A gift card with this number exists already.", code="gift_card_number_taken"
        ) from exc


def _past_validity(card: dict[str, Any], now: datetime) -> bool:
    """Past its last valid moment while still marked usable (the job has not run yet)."""
    return (
        card["status"] in ("active", "blocked")
        and card["expires_at"] is not None
        and card["expires_at"] <= now
    )


def _unusable(
    card: dict[str, Any], now: datetime, currency: str, *, refund: bool = False
) -> tuple[str, str] | None:
    """Why the card cannot pay (or, with ``refund``, take money back): (message, code)."""
    if card["status"] == "expired" or _past_validity(card, now):
        return "The gift card has expired.", "gift_card_expired"
    if card["currency"] != currency:
        return "The gift card is in another currency.", "gift_card_currency_mismatch"
    if refund:
        # A blocked card keeps its value: money paid with it goes back to it too.
        return None if card["status"] in ("active", "blocked") else ("", "gift_card_unusable")
    messages = {
        "issued": ("The gift card is not activated yet.", "gift_card_not_activated"),
        "blocked": ("The gift card is blocked.", "gift_card_blocked"),
        "replaced": ("The gift card was replaced by a new one.", "gift_card_replaced"),
    }
    return messages.get(card["status"])


def _state_conflict(card: dict[str, Any], now: datetime, verb: str) -> Conflict:
    status = "expired" if _past_validity(card, now) else card["status"]
    return Conflict(f"A gift card that is {status} cannot be {verb}.", code=f"gift_card_{status}")


def _load(book: MemberBook, txn: NewTransaction, amount: int, until: datetime | None) -> None:
    """Credit ``amount`` as one spendable lot ending with the card's validity (``None``:
    never). Not ``MemberBook.credit``: that falls back to the points expiry policy."""
    book.plan.add_transaction(
        txn, [Posting(book.system[AccountKind.ISSUED], -amount), Posting(book.wallet.id, amount)]
    )
    book.plan.create_lot(
        member_id=book.member_id,
        currency=book.currency,
        amount=amount,
        remaining=amount,
        status=LotStatus.ACTIVE,
        available_at=book.now,
        expires_at=until,
        source_txn_id=txn.id,
    )


def _move_value(
    source: MemberBook, target: MemberBook, card: dict[str, Any], receiver: dict[str, Any]
) -> int:
    """Move every live lot of ``source`` to ``target`` (same dates) in one transfer; the
    source's lots are closed. Returns the amount moved."""
    live = sorted(
        (
            lot
            for lot in source.plan.lots.values()
            if lot.status is LotStatus.ACTIVE and lot.remaining > 0
        ),
        key=lambda lot: lot.id,
    )
    total = sum(lot.remaining for lot in live)
    if not total:
        return 0
    txn = source.new_txn(
        TxnKind.TRANSFER,
        total,
        source_type=SUBJECT,
        source_id=str(receiver["id"]),
        counterparty=receiver["id"],
        params={
            "gift_card": "reissue",
            "from": mask(card["number"]),
            "to": mask(receiver["number"]),
        },
    )
    source.plan.add_transaction(
        txn, [Posting(source.wallet.id, -total), Posting(target.wallet.id, total)]
    )
    for lot in live:
        source.plan.change_lot(
            lot.id, -lot.remaining, txn_id=txn.id, origin_id=txn.id, status=LotStatus.CLOSED
        )
        target.plan.create_lot(
            member_id=target.member_id,
            currency=target.currency,
            amount=lot.remaining,
            remaining=lot.remaining,
            status=LotStatus.ACTIVE,
            available_at=lot.available_at,
            expires_at=lot.expires_at,
            source_txn_id=txn.id,
        )
    return total


# ---- ledger checks -------------------------------------------------------------------------
# ``ledger verify`` matches wallets to lots by ``accounts.member_id``, which a card's
# accounts leave empty (accounts reference members): these checks match them by the card.
GIFT_CARD_CHECKS: dict[str, str] = {
    "gift_card_wallet_differs_from_lots": """
        SELECT g.id AS subject,
               a.balance - COALESCE((SELECT SUM(l.remaining) FROM lots l
                   WHERE l.member_id = g.id AND l.currency = a.currency
                     AND l.status = 'active'), 0) AS value
        FROM gift_cards g JOIN accounts a ON a.id = g.wallet_account_id
        WHERE (:tenant IS NULL OR g.tenant_id = :tenant)
          AND a.balance <> COALESCE((SELECT SUM(l.remaining) FROM lots l
                   WHERE l.member_id = g.id AND l.currency = a.currency
                     AND l.status = 'active'), 0)
    """,
}


def verify_gift_cards(
    uow_factory: UnitOfWorkFactory, tenant_id: uuid.UUID | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Run :data:`GIFT_CARD_CHECKS` (as ``ledger verify`` runs its own); empty lists = ok."""
    found: dict[str, list[dict[str, Any]]] = {}
    with uow_factory(write=False) as uow:
        tenant = tenant_id.hex if tenant_id and uow.dialect == "sqlite" else tenant_id
        for name, sql in GIFT_CARD_CHECKS.items():
            stmt = sa.text(sql + " LIMIT 100")
            if uow.dialect == "postgresql":
                stmt = stmt.bindparams(sa.bindparam("tenant", type_=sa.Uuid))
            rows = uow.execute(stmt, {"tenant": tenant}).all()
            found[name] = [{"subject": str(r.subject), "value": int(r.value)} for r in rows]
    return found
