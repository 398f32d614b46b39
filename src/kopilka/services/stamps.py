"""Stamp cards: stamps from qualifying receipt lines, a free item (or a coupon) for a full
card, stamps taken back by refunds, corrections by an admin, and expiry.

At the till the :class:`StampHook` plans each card while the receipt is evaluated (so
calculate shows balances, stamps to go and the free item), and writes the stamps when the
receipt is confirmed, in the receipt's own transaction. Every write happens with the
member's card row locked (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite serialises
writers), so two tills cannot spend the same full card twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from kopilka.adapters.db.mechanics.stamps import StampStore
from kopilka.clock import Clock
from kopilka.domain.coupons.codes import personal_code
from kopilka.domain.errors import BusinessRuleViolation, FieldError, NotFound, ValidationFailed
from kopilka.domain.ledger.expiry import RollingExpiry
from kopilka.domain.ledger.expiry import expires_at as policy_expiry
from kopilka.domain.rules.document import CompiledProgram
from kopilka.domain.rules.engine import AppliedEffect, add_line_discounts, discount_room
from kopilka.domain.stamps.cards import (
    CardPlan,
    CardState,
    Taken,
    add_stamps,
    plan_card,
    refund_effect,
    remove_stamps,
    to_go,
)
from kopilka.domain.stamps.settings import StampCardSettings
from kopilka.domain.stamps.texts import (
    describe_movement,
    free_item_effect,
    stamps_en,
    till_status,
)
from kopilka.ids import new_id
from kopilka.services.context import Actor, Tenant, load_tenant
from kopilka.services.idempotency import remember, replay_or_claim, request_hash
from kopilka.services.members import MemberHook
from kopilka.services.ports import UnitOfWork, UnitOfWorkFactory
from kopilka.services.programs import ProgramService
from kopilka.services.purchase_hooks import PurchaseHook, receipt_ref

if TYPE_CHECKING:
    from kopilka.services.purchases import Evaluated, ReceiptInput

MECHANIC = "stamps"
# A card with auto_redeem: false gives its free item when the till presents the code
# "STAMPS-<card id>" among the receipt's coupons (case does not matter), e.g. "STAMPS-COFFEE".
REDEEM_CODE = "STAMPS-"
EFFECT_KIND = "stamp_card_free_item"
MAX_ADJUSTMENT = 10_000
JOB_ACTOR = "job:scheduler"
JOB_BATCH = 500


@dataclass(frozen=True)
class CardInForce:
    program: CompiledProgram
    card: StampCardSettings


def cards_in_force(programs: Sequence[CompiledProgram]) -> list[CardInForce]:
    """The stamp cards of the programs in force; a card id defined twice counts once (the
    first program by code, then the first in its list)."""
    seen: set[str] = set()
    found: list[CardInForce] = []
    for program in programs:
        for card in program.settings.stamp_cards:
            if card.id not in seen:
                seen.add(card.id)
                found.append(CardInForce(program, card))
    return found


def effective_state(row: dict[str, Any] | None, now: datetime) -> CardState:
    """The card as of ``now``: stamps past their expiry count as gone even before the
    job has written their expiry."""
    if row is None:
        return CardState()
    balance = int(row["balance"])
    if row["expires_at"] is not None and row["expires_at"] <= now:
        balance = 0
    return CardState(balance, int(row["debt"]))


def _reward_json(card: StampCardSettings) -> dict[str, Any]:
    if card.reward.free_item is not None:
        return {"kind": "free_item", "max_price": card.reward.free_item.max_price}
    coupon = card.reward.coupon
    assert coupon is not None
    return {
        "kind": "coupon",
        "benefit": coupon.benefit,
        "valid_days": coupon.valid_days,
        "min_basket": coupon.min_basket,
    }


class StampService:
    def __init__(self, uow_factory: UnitOfWorkFactory, clock: Clock, programs: ProgramService):
        self.uow_factory = uow_factory
        self.clock = clock
        self.programs = programs
        self.hook = StampHook(self)
        self.member_hook = StampMemberHook(self)

    # ---- reads -------------------------------------------------------------------------
    def member_stamps(
        self,
        actor: Actor,
        member_id: uuid.UUID,
        card_id: str | None = None,
        before: uuid.UUID | None = None,
        limit: int = 50,
    ) -> dict[str, Any]:
        """The member's cards (balance, stamps to go, rewards) and their history, newest
        first: up to ``limit`` movements after the cursor ``before``."""
        with self.uow_factory(write=False) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            if uow.directory.member(tenant.id, member_id) is None:
                raise NotFound("Member not found.", code="member_not_found")
            now = self.clock.now()
            in_force = cards_in_force(self.programs.in_force(uow, tenant.id, now))
            store = StampStore(uow)
            rows = store.cards(tenant.id, member_id)
            names = {item.card.id: item.card.names for item in in_force}
            cards = [
                _card_view(tenant, item.card, item.program, rows.get(item.card.id), now)
                for item in in_force
            ]
            cards += [
                _card_view(tenant, None, None, row, now)
                for card, row in rows.items()
                if card not in names
            ]
            history = [
                _movement_view(m, names.get(m["card_id"]))
                for m in store.history(tenant.id, member_id, card_id, before, limit)
            ]
        return {"member_id": str(member_id), "cards": cards, "history": history}

    # ---- writes ------------------------------------------------------------------------
    def adjust(
        self,
        actor: Actor,
        member_id: uuid.UUID,
        card_id: str,
        stamps: int,
        reason: str,
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """An admin's correction: add stamps (they pay a debt first) or take some off (not
        more than the card holds). A coupon card that fills issues its coupons at once."""
        if stamps == 0 or abs(stamps) > MAX_ADJUSTMENT:
            raise ValidationFailed(
                "The adjustment is not valid.",
                errors=[
                    FieldError(
                        ("stamps",),
                        f"A non-zero number of stamps, at most {MAX_ADJUSTMENT} either way.",
                        "invalid_stamps",
                    )
                ],
            )
        if not reason.strip():
            raise ValidationFailed(
                "The adjustment is not valid.",
                errors=[FieldError(("reason",), "Say why.", "reason_required")],
            )
        digest = request_hash(
            "stamps.adjust",
            {"member": str(member_id), "card": card_id, "stamps": stamps, "reason": reason},
        )
        with self.uow_factory(write=True) as uow:
            stored = replay_or_claim(uow, actor.tenant_id, idempotency_key, digest)
            if stored is not None:
                return stored
            tenant = load_tenant(uow, actor.tenant_id)
            member = uow.directory.member(tenant.id, member_id)
            if member is None or member["status"] in ("merged", "erased"):
                raise NotFound("Member not found.", code="member_not_found")
            now = self.clock.now()
            in_force = cards_in_force(self.programs.in_force(uow, tenant.id, now))
            item = next((i for i in in_force if i.card.id == card_id), None)
            if item is None:
                raise ValidationFailed(
                    "No such stamp card in force.",
                    code="unknown_stamp_card",
                    errors=[
                        FieldError(
                            ("card",),
                            f"No stamp card {card_id!r} in the programs in force.",
                            "unknown_stamp_card",
                        )
                    ],
                )
            card = item.card
            store = StampStore(uow)
            row = self._expire_if_due(
                store, tenant, store.lock_card(tenant.id, member_id, card.id, now), now, actor.name
            )
            state = CardState(int(row["balance"]), int(row["debt"]))
            if stamps > 0:
                after = add_stamps(state, stamps)
            else:
                if -stamps > state.balance:
                    raise BusinessRuleViolation(
                        f"The card holds {state.balance} stamps; no more can be taken off.",
                        code="stamps_insufficient",
                        extra={"balance": state.balance},
                    )
                after = CardState(state.balance + stamps, state.debt)
            key = f"adjustment:{new_id()}"
            after, coupons = self._fill_coupons(
                uow, tenant, member_id, card, after, now, source_id=key
            )
            movement = self._write(
                store,
                tenant,
                row,
                card,
                item.program.code,
                after,
                now,
                actor=actor.name,
                kind="adjustment",
                key=key,
                earned=0,
                rewards=len(coupons),
                stamped=stamps > 0,
                details={"stamps": stamps, "reason": reason, "coupons": coupons},
            )
            fresh = store.cards(tenant.id, member_id)[card.id]
            response = {
                "card": _card_view(tenant, card, item.program, fresh, now),
                "movement": _movement_view(movement, card.names),
            }
            remember(uow, tenant.id, idempotency_key, digest, response, now)
            uow.commit()
            return response

    # ---- the clock's work --------------------------------------------------------------
    def expire_due(self, now: datetime, tenant_id: uuid.UUID | None = None) -> int:
        """Expire the stamps of cards left without a new stamp for ``expires_days`` (a job
        step). Each card in its own short transaction, re-read under its lock: running it
        twice, at once or later, expires nothing twice."""
        count = 0
        seen: set[tuple[uuid.UUID, uuid.UUID, str]] = set()
        while True:
            with self.uow_factory(write=False) as uow:
                due = StampStore(uow).due_for_expiry(now, JOB_BATCH, tenant_id)
            fresh = [item for item in due if item not in seen]
            if not fresh:
                return count
            for tenant_of, member_id, card_id in fresh:
                seen.add((tenant_of, member_id, card_id))
                with self.uow_factory(write=True) as uow:
                    tenant = load_tenant(uow, tenant_of)
                    store = StampStore(uow)
                    row = store.lock_card(tenant.id, member_id, card_id, now)
                    after = self._expire_if_due(store, tenant, row, now, JOB_ACTOR)
                    if after is not row:
                        count += 1
                    uow.commit()

    # ---- shared ------------------------------------------------------------------------
    def _expire_if_due(
        self,
        store: StampStore,
        tenant: Tenant,
        row: dict[str, Any],
        now: datetime,
        actor: str,
    ) -> dict[str, Any]:
        """Write the expiry of a locked card's stamps if it is due; the row as it is now
        (the same object when nothing was due)."""
        expires = row["expires_at"]
        if row["balance"] <= 0 or expires is None or expires > now:
            return row
        key = f"expiry:{expires.isoformat()}"
        store.insert_movement(
            {
                "id": new_id(),
                "tenant_id": tenant.id,
                "member_id": row["member_id"],
                "card_id": row["card_id"],
                "kind": "expiry",
                "source_key": key,
                "receipt_id": None,
                "program": None,
                "stamps": -int(row["balance"]),
                "debt": 0,
                "earned": 0,
                "rewards": 0,
                "balance_after": 0,
                "debt_after": int(row["debt"]),
                "details": {"expired_at": expires.isoformat()},
                "actor": actor[:128],
                "created_at": now,
            }
        )
        values = {"balance": 0, "expires_at": None, "updated_at": now}
        store.update_card(tenant.id, row["id"], values)
        return {**row, **values}

    def _fill_coupons(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        member_id: uuid.UUID,
        card: StampCardSettings,
        state: CardState,
        now: datetime,
        *,
        source_id: str,
    ) -> tuple[CardState, list[dict[str, Any]]]:
        """A coupon card turns each full card into a coupon as soon as it fills."""
        coupon = card.reward.coupon
        if coupon is None or state.balance < card.stamps:
            return state, []
        count = state.balance // card.stamps
        issued = []
        for _ in range(count):
            code = personal_code()
            valid_until = now + timedelta(days=coupon.valid_days)
            uow.commerce.insert_coupon(
                {
                    "id": new_id(),
                    "tenant_id": tenant.id,
                    "code": code,
                    "member_id": member_id,
                    "benefit": coupon.benefit,
                    "min_basket": coupon.min_basket,
                    "valid_from": now,
                    "valid_until": valid_until,
                    "uses_left": 1,
                    "status": "active",
                    "source_type": MECHANIC,
                    "source_id": f"{card.id}:{source_id}"[:128],
                    "created_at": now,
                }
            )
            issued.append(
                {
                    "code": code,
                    "benefit": coupon.benefit,
                    "valid_until": valid_until.isoformat(),
                    "card": card.id,
                }
            )
        return CardState(state.balance - count * card.stamps, state.debt), issued

    def _write(
        self,
        store: StampStore,
        tenant: Tenant,
        row: dict[str, Any],
        card: StampCardSettings | None,
        program: str | None,
        after: CardState,
        now: datetime,
        *,
        actor: str,
        kind: str,
        key: str,
        earned: int,
        rewards: int,
        stamped: bool,
        details: dict[str, Any],
        receipt_id: uuid.UUID | None = None,
    ) -> dict[str, Any]:
        """Record a movement on a locked card and update the card; the movement's row."""
        movement = {
            "id": new_id(),
            "tenant_id": tenant.id,
            "member_id": row["member_id"],
            "card_id": row["card_id"],
            "kind": kind,
            "source_key": key,
            "receipt_id": receipt_id,
            "program": program,
            "stamps": after.balance - int(row["balance"]),
            "debt": after.debt - int(row["debt"]),
            "earned": earned,
            "rewards": rewards,
            "balance_after": after.balance,
            "debt_after": after.debt,
            "details": details,
            "actor": actor[:128],
            "created_at": now,
        }
        store.insert_movement(movement)
        values: dict[str, Any] = {
            "balance": after.balance,
            "debt": after.debt,
            "stamps_earned": int(row["stamps_earned"]) + earned,
            "rewards_redeemed": int(row["rewards_redeemed"]) + rewards,
            "updated_at": now,
        }
        if stamped:  # new stamps start the expiry period again
            values["last_stamp_at"] = now
            values["expires_at"] = (
                policy_expiry(RollingExpiry(days=card.expires_days), now, tenant.timezone)
                if card is not None and card.expires_days
                else None
            )
        if after.balance == 0:
            values["expires_at"] = None  # nothing left to expire
        store.update_card(tenant.id, row["id"], values)
        return movement

    # ---- member merge ------------------------------------------------------------------
    def merge(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        survivor_id: uuid.UUID,
        duplicate_id: uuid.UUID,
        now: datetime,
    ) -> None:
        """Fold the duplicate's cards and history into the survivor's: a card only the
        duplicate has changes hands; a card both have becomes one (stamps and debts net
        out, lifetime totals add up, the later expiry is kept) with a ``merge`` movement."""
        store = StampStore(uow)
        gone = store.cards(tenant.id, duplicate_id, lock=True)
        if not gone:
            return  # one statement for the common case: the duplicate never had a card
        keep = store.cards(tenant.id, survivor_id, lock=True)
        both = sorted(card for card in gone if card in keep)
        # Stamps already past their expiry are written off on their own profile first, so
        # a merge cannot bring expired stamps back to life.
        pairs = [
            (
                self._expire_if_due(store, tenant, keep[card], now, actor.name),
                self._expire_if_due(store, tenant, gone[card], now, actor.name),
            )
            for card in both
        ]
        store.move_movements(tenant.id, duplicate_id, survivor_id)
        store.move_cards(
            tenant.id, duplicate_id, survivor_id, [c for c in gone if c not in keep], now
        )
        if not pairs:
            return
        in_force = {
            item.card.id: item
            for item in cards_in_force(self.programs.in_force(uow, tenant.id, now))
        }
        for kept, other in pairs:
            self._combine(
                uow, store, tenant, actor, kept, other, in_force.get(kept["card_id"]), now
            )

    def _combine(
        self,
        uow: UnitOfWork,
        store: StampStore,
        tenant: Tenant,
        actor: Actor,
        kept: dict[str, Any],
        other: dict[str, Any],
        item: CardInForce | None,
        now: datetime,
    ) -> None:
        """One card of both profiles becomes the survivor's: the duplicate's stamps pay
        debts first, like any new stamps; its row goes, its history is already moved."""
        net = int(kept["balance"]) + int(other["balance"]) - int(kept["debt"]) - int(other["debt"])
        after = CardState(max(net, 0), max(-net, 0))
        duplicate_id = other["member_id"]
        key = f"merge:{duplicate_id}"
        coupons: list[dict[str, Any]] = []
        if item is not None:  # a coupon card that fills issues its coupons at once
            after, coupons = self._fill_coupons(
                uow, tenant, kept["member_id"], item.card, after, now, source_id=key
            )
        holding = [r for r in (kept, other) if int(r["balance"]) > 0]
        expires: datetime | None = None
        if after.balance > 0 and holding and all(r["expires_at"] is not None for r in holding):
            # The later of the two: the person's most recent stamp keeps the card alive.
            expires = max(r["expires_at"] for r in holding)
        stamped = [r["last_stamp_at"] for r in (kept, other) if r["last_stamp_at"] is not None]
        store.delete_card(tenant.id, other["id"])
        store.insert_movement(
            {
                "id": new_id(),
                "tenant_id": tenant.id,
                "member_id": kept["member_id"],
                "card_id": kept["card_id"],
                "kind": "merge",
                "source_key": key,
                "receipt_id": None,
                "program": item.program.code if item is not None else None,
                "stamps": after.balance - int(kept["balance"]),
                "debt": after.debt - int(kept["debt"]),
                "earned": 0,  # the duplicate's earnings came over with its history
                "rewards": len(coupons),
                "balance_after": after.balance,
                "debt_after": after.debt,
                "details": {
                    "merged_from": str(duplicate_id),
                    "stamps_moved": int(other["balance"]),
                    "debt_moved": int(other["debt"]),
                    "coupons": coupons,
                },
                "actor": actor.name[:128],
                "created_at": now,
            }
        )
        store.update_card(
            tenant.id,
            kept["id"],
            {
                "balance": after.balance,
                "debt": after.debt,
                "stamps_earned": int(kept["stamps_earned"]) + int(other["stamps_earned"]),
                "rewards_redeemed": int(kept["rewards_redeemed"])
                + int(other["rewards_redeemed"])
                + len(coupons),
                "last_stamp_at": max(stamped) if stamped else None,
                "expires_at": expires,
                "created_at": min(kept["created_at"], other["created_at"]),
                "updated_at": now,
            },
        )


class StampMemberHook(MemberHook):
    """Member merges: the person keeps the duplicate profile's cards and history."""

    def __init__(self, service: StampService) -> None:
        self.service = service

    def on_merged(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        survivor_id: uuid.UUID,
        duplicate_id: uuid.UUID,
        now: datetime,
    ) -> None:
        self.service.merge(uow, tenant, actor, survivor_id, duplicate_id, now)


class StampHook(PurchaseHook):
    """The till's side of the stamp cards."""

    def __init__(self, service: StampService) -> None:
        self.service = service

    def adjust(self, uow: UnitOfWork, found: Evaluated, request: ReceiptInput) -> None:
        """Plan every card in force: stamps earned, and free items taken from full cards
        (the cheapest qualifying units, made free by discounting their lines).

        The plan goes straight into the answer (``found.extras["stamps"]``): it is what
        calculate shows, and, stored with the receipt, what ``on_confirmed`` writes."""
        member = found.member
        in_force = cards_in_force(found.programs)
        if member is None or not in_force:
            return
        assert found.context is not None
        now = self.service.clock.now()
        # Confirming: lock the member's cards until commit, so no other till spends them.
        rows = StampStore(uow).cards(found.tenant.id, member["id"], lock=found.writing)
        evaluation = found.evaluation
        lines = found.source_lines
        rooms = [
            discount_room(line, result)
            for line, result in zip(lines, evaluation.lines, strict=True)
        ]
        presented = {code.upper() for code in request.coupons}
        taken = Taken()
        effects: list[tuple[AppliedEffect, dict[int, int]]] = []
        entries = []
        currency = found.tenant.currency
        for item in in_force:
            card = item.card
            redeem = card.reward.free_item is not None and (
                card.auto_redeem or f"{REDEEM_CODE}{card.id}".upper() in presented
            )
            plan = plan_card(
                card,
                lines,
                evaluation.lines,
                rooms,
                effective_state(rows.get(card.id), now),
                redeem=redeem,
                taken=taken,
            )
            if plan.rewards:
                effects.append(
                    (
                        AppliedEffect(
                            item.program.code,
                            f"stamps:{card.id}",
                            card.names,
                            EFFECT_KIND,
                            [],
                            explanation=free_item_effect(
                                card.names, plan.rewards, plan.discount, currency
                            ),
                            details={"card": card.id, "free_items": plan.rewards},
                        ),
                        {li.position: li.discount for li in plan.lines if li.discount},
                    )
                )
            entries.append(_till_entry(item, plan, currency))
        add_line_discounts(
            evaluation,
            found.programs,
            lines,
            found.context,
            effects,
            redeem=request.redeem_points,
        )
        found.extras["stamps"] = entries

    def on_confirmed(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        receipt: dict[str, Any],
        lines: list[dict[str, Any]],
        now: datetime,
    ) -> dict[str, Any]:
        """Write what the receipt's plan says: stamps earned, full cards spent on free
        items, coupons for coupon cards that filled."""
        entries = (receipt.get("result") or {}).get("stamps")
        if not entries:
            return {}
        store = StampStore(uow)
        member_id = receipt["member_id"]
        key = receipt_ref(receipt["id"])
        updated = []
        for entry in entries:
            card, program = self._card(uow, tenant, receipt, entry)
            earned, rewards = int(entry["earned"]), int(entry["rewards"])
            if card is None or not (earned or rewards or entry.get("coupons_to_issue")):
                updated.append(entry)
                continue
            row = store.lock_card(tenant.id, member_id, card.id, now)
            if store.movement(tenant.id, member_id, card.id, key) is not None:
                updated.append(entry)  # written already: a replay
                continue
            row = self.service._expire_if_due(store, tenant, row, now, actor.name)
            state = CardState(int(row["balance"]), int(row["debt"]))
            # A free item given at the till is honoured even if the card no longer covers
            # it (a held receipt confirmed after another till used the card): the missing
            # stamps become debt.
            spent = remove_stamps(add_stamps(state, earned), rewards * card.stamps, debt=True)
            after, coupons = self.service._fill_coupons(
                uow, tenant, member_id, card, spent.after, now, source_id=str(receipt["id"])
            )
            details = {
                "per": card.per,
                "size": card.stamps,
                "lines": {
                    str(li["line"]): {"qty": li["qty"], "stamps": li["stamps"], "free": li["free"]}
                    for li in entry["lines"]
                },
                "receipt_lines": entry.get("receipt_lines") or [],
                "coupons": coupons,
            }
            self.service._write(
                store,
                tenant,
                row,
                card,
                program,
                after,
                now,
                actor=actor.name,
                kind="purchase",
                key=key,
                earned=earned,
                rewards=rewards + len(coupons),
                stamped=earned > 0,
                details=details,
                receipt_id=receipt["id"],
            )
            updated.append(
                _refresh_entry(entry, card, after, currency=tenant.currency, coupons=coupons)
            )
        return {"stamps": updated}

    def on_refunded(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        receipt: dict[str, Any],
        refund: dict[str, Any],
        now: datetime,
    ) -> dict[str, Any]:
        """Take back the stamps the refunded units earned, in proportion to the quantity;
        give back the full card a refunded free item cost."""
        store = StampStore(uow)
        moves = store.of_receipt(tenant.id, receipt["id"])
        purchases = [m for m in moves if m["kind"] == "purchase"]
        if not purchases:
            return {}
        this = {int(li["line"]): Decimal(str(li["qty"])) for li in refund.get("lines") or []}
        out = []
        for purchase in purchases:
            # The purchase's movement is on the card's holder now: the survivor when the
            # receipt's profile has been merged into another since (its history moved).
            member_id = purchase["member_id"]
            details = purchase["details"]
            record = {int(n): v for n, v in (details.get("lines") or {}).items()}
            receipt_lines = [int(n) for n in details.get("receipt_lines") or []]
            mine = {n: q for n, q in this.items() if n in record}
            if not mine:
                continue
            before: dict[int, Decimal] = {}
            for move in moves:
                if move["kind"] == "refund" and move["card_id"] == purchase["card_id"]:
                    for n, q in (move["details"].get("refunded") or {}).items():
                        before[int(n)] = before.get(int(n), Decimal(0)) + Decimal(str(q))
            after_qty = {n: before.get(n, Decimal(0)) + mine.get(n, Decimal(0)) for n in record}
            effect = refund_effect(record, receipt_lines, before, after_qty)
            card = self._card_of_purchase(uow, tenant, receipt, purchase)
            size = int(details.get("size") or (card.stamps if card else 1))
            row = store.lock_card(tenant.id, member_id, purchase["card_id"], now)
            row = self.service._expire_if_due(store, tenant, row, now, actor.name)
            state = add_stamps(
                CardState(int(row["balance"]), int(row["debt"])), effect.rewards_returned * size
            )
            # Debt only for stamps spent on rewards: not when they may simply have expired.
            debt = (card is None or card.refund_shortfall == "debt") and not store.expired_since(
                tenant.id, member_id, purchase["card_id"], purchase["created_at"]
            )
            removal = remove_stamps(state, effect.stamps_removed, debt=debt)
            movement = self.service._write(
                store,
                tenant,
                row,
                card,
                purchase["program"],
                removal.after,
                now,
                actor=actor.name,
                kind="refund",
                key=f"refund:{refund['id']}",
                earned=-effect.stamps_removed,
                rewards=-effect.rewards_returned,
                stamped=False,
                details={
                    "refund_id": refund["id"],
                    "refunded": {str(n): str(q) for n, q in mine.items()},
                    "stamps_removed": effect.stamps_removed,
                    "rewards_returned": effect.rewards_returned,
                    "forgiven": removal.forgiven,
                    "size": size,
                },
                receipt_id=receipt["id"],
            )
            names = card.names if card else {"ru": purchase["card_id"], "en": purchase["card_id"]}
            out.append(
                {
                    "card": purchase["card_id"],
                    "name": names,
                    "stamps_removed": effect.stamps_removed,
                    "rewards_returned": effect.rewards_returned,
                    "forgiven": removal.forgiven,
                    "debt_added": removal.debt_added,
                    "balance_after": removal.after.balance,
                    "debt_after": removal.after.debt,
                    "to_go": to_go(removal.after, size),
                    "explanation": describe_movement(
                        "refund",
                        names,
                        earned=int(movement["earned"]),
                        rewards=int(movement["rewards"]),
                        stamps=int(movement["stamps"]),
                        debt=int(movement["debt"]),
                        details=movement["details"],
                    ),
                }
            )
        return {"stamps": out} if out else {}

    # ---- helpers -----------------------------------------------------------------------
    def _card(
        self, uow: UnitOfWork, tenant: Tenant, receipt: dict[str, Any], entry: dict[str, Any]
    ) -> tuple[StampCardSettings | None, str | None]:
        """The card of a plan entry, as the program version of the receipt defines it."""
        code = entry.get("program")
        version = (receipt.get("programs") or {}).get(code)
        if code is None or version is None:
            return None, None
        program = self.service.programs.compiled(uow, tenant.id, str(code), int(version))
        card = next((c for c in program.settings.stamp_cards if c.id == entry["card"]), None)
        return card, str(code)

    def _card_of_purchase(
        self, uow: UnitOfWork, tenant: Tenant, receipt: dict[str, Any], purchase: dict[str, Any]
    ) -> StampCardSettings | None:
        card, _code = self._card(
            uow, tenant, receipt, {"program": purchase["program"], "card": purchase["card_id"]}
        )
        return card


# ---- answers -------------------------------------------------------------------------------
def _till_entry(item: CardInForce, plan: CardPlan, currency: str) -> dict[str, Any]:
    """A card in the calculate and confirm answers."""
    card = item.card
    after = plan.after
    coupons = 0
    if card.reward.coupon is not None:
        coupons = after.balance // card.stamps
        after = CardState(after.balance - coupons * card.stamps, after.debt)
    waiting = after.balance // card.stamps if card.reward.free_item is not None else 0
    return {
        "card": card.id,
        "program": item.program.code,
        "name": card.names,
        "size": card.stamps,
        "per": card.per,
        "reward": card.reward.kind,
        "balance_before": plan.before.balance,
        "debt_before": plan.before.debt,
        "earned": plan.earned,
        "rewards": plan.rewards,
        "balance_after": after.balance,
        "debt_after": after.debt,
        "to_go": to_go(after, card.stamps),
        "reward_applied": (
            {
                "kind": "free_item",
                "items": plan.rewards,
                "discount": plan.discount,
                "lines": [li.line for li in plan.lines if li.free],
            }
            if plan.rewards
            else None
        ),
        "rewards_waiting": waiting,
        "coupons_to_issue": coupons,
        "lines": [
            {
                "line": li.line,
                "qty": str(li.qty),
                "stamps": li.stamps,
                "free": li.free,
                "discount": li.discount,
            }
            for li in plan.lines
        ],
        "receipt_lines": plan.receipt_lines,
        "explanation": till_status(
            card.names,
            size=card.stamps,
            earned=plan.earned,
            rewards=plan.rewards,
            discount=plan.discount,
            balance=after.balance,
            debt=after.debt,
            to_go=to_go(after, card.stamps),
            waiting=waiting,
            coupons=coupons,
            currency=currency,
        ),
    }


def _refresh_entry(
    entry: dict[str, Any],
    card: StampCardSettings,
    after: CardState,
    *,
    currency: str,
    coupons: list[dict[str, Any]],
) -> dict[str, Any]:
    """A plan entry with the card as it was written (confirm may see a newer card than
    calculate did)."""
    waiting = after.balance // card.stamps if card.reward.free_item is not None else 0
    return {
        **entry,
        "balance_after": after.balance,
        "debt_after": after.debt,
        "to_go": to_go(after, card.stamps),
        "rewards_waiting": waiting,
        "coupons_to_issue": 0,
        "coupons_issued": coupons,
        "explanation": till_status(
            card.names,
            size=card.stamps,
            earned=int(entry["earned"]),
            rewards=int(entry["rewards"]),
            discount=int((entry.get("reward_applied") or {}).get("discount", 0)),
            balance=after.balance,
            debt=after.debt,
            to_go=to_go(after, card.stamps),
            waiting=waiting,
            coupons=len(coupons),
            currency=currency,
        ),
    }


def _card_view(
    tenant: Tenant,
    card: StampCardSettings | None,
    program: CompiledProgram | None,
    row: dict[str, Any] | None,
    now: datetime,
) -> dict[str, Any]:
    """A member's card for the API: the balance as of now, what is next, the totals."""
    state = effective_state(row, now)
    card_id = card.id if card is not None else str(row["card_id"] if row else "")
    names = card.names if card is not None else {"ru": card_id, "en": card_id}
    size = card.stamps if card is not None else None
    waiting = (
        state.balance // card.stamps
        if card is not None and card.reward.free_item is not None
        else 0
    )
    expires = row["expires_at"] if row is not None and state.balance > 0 else None
    last_day = None
    if expires is not None:
        # The last local day the stamps are valid on (they expire at the next midnight).
        last_day = (expires.astimezone(ZoneInfo(tenant.timezone)) - timedelta(days=1)).date()
    redeemed = int(row["rewards_redeemed"]) if row is not None else 0
    view: dict[str, Any] = {
        "card": card_id,
        "program": program.code if program is not None else None,
        "name": names,
        "active": card is not None,
        "size": size,
        "per": card.per if card is not None else None,
        "reward": _reward_json(card) if card is not None else None,
        "auto_redeem": card.auto_redeem if card is not None else None,
        "balance": state.balance,
        "debt": state.debt,
        "to_go": to_go(state, size) if size is not None else None,
        "full": size is not None and state.balance >= size,
        "rewards_waiting": waiting,
        "stamps_earned": int(row["stamps_earned"]) if row is not None else 0,
        "rewards_redeemed": redeemed,
        "cards_filled": redeemed + (state.balance // size if size else 0),
        "last_stamp_at": row["last_stamp_at"].isoformat()
        if row is not None and row["last_stamp_at"] is not None
        else None,
        "expires_at": expires.isoformat() if expires is not None else None,
        "valid_until": last_day.isoformat() if last_day is not None else None,
        "explanation": None,
    }
    if card is not None:
        view["explanation"] = till_status(
            names,
            size=card.stamps,
            earned=0,
            rewards=0,
            discount=0,
            balance=state.balance,
            debt=state.debt,
            to_go=to_go(state, card.stamps),
            waiting=waiting,
            coupons=0,
            currency=tenant.currency,
        )
    return view


def _movement_view(row: dict[str, Any], names: dict[str, str] | None) -> dict[str, Any]:
    names = names or {"ru": row["card_id"], "en": row["card_id"]}
    description = describe_movement(
        row["kind"],
        names,
        earned=int(row["earned"]),
        rewards=int(row["rewards"]),
        stamps=int(row["stamps"]),
        debt=int(row["debt"]),
        details=row["details"] or {},
    )
    if row["kind"] == "merge":
        moved = int((row["details"] or {}).get("stamps_moved", 0))
        lead = {
            "ru": f"Профили объединены: на карту «{names['ru']}» перенесено штампов — {moved}.",
            "en": f"Profiles merged: {stamps_en(moved)} moved to the “{names['en']}” card.",
        }
        description = {lang: f"{lead[lang]} {description[lang]}".strip() for lang in ("ru", "en")}
    return {
        "id": str(row["id"]),
        "card": row["card_id"],
        "kind": row["kind"],
        "stamps": row["stamps"],
        "debt": row["debt"],
        "earned": row["earned"],
        "rewards": row["rewards"],
        "balance_after": row["balance_after"],
        "debt_after": row["debt_after"],
        "receipt_id": str(row["receipt_id"]) if row["receipt_id"] is not None else None,
        "program": row["program"],
        "details": row["details"],
        "actor": row["actor"],
        "created_at": row["created_at"].isoformat(),
        "description": description,
    }
