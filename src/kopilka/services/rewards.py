"""The reward catalogue: rewards members buy with points, stock per location, partner code
pools, and orders with a fulfilment status.

A redemption is one database transaction: the member's accounts are locked first (so the
per-member limit and the balance are checked race-free), then the points are taken, the
reward's total counter and the stock are decremented by conditional UPDATEs, a partner code
is taken with ``SKIP LOCKED``, and the order is written. Anything refused rolls all of it
back. Cancelling gives the points back to the lots they came from and the stock back to its
location. Lock order everywhere: order row, member accounts, reward row, stock row.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kopilka.adapters.db import outbox
from kopilka.adapters.db.mechanics.families import pool_of
from kopilka.adapters.db.mechanics.rewards import RewardStore
from kopilka.clock import Clock
from kopilka.domain.coupons.codes import personal_code
from kopilka.domain.errors import (
    BusinessRuleViolation,
    Conflict,
    ErrorCollector,
    FieldError,
    Forbidden,
    NotFound,
    ValidationFailed,
)
from kopilka.domain.ledger.model import AccountKind, TxnKind
from kopilka.domain.rewards.definition import (
    CODE_PATTERN,
    MAX_QUANTITY,
    CharitySection,
    CouponSection,
    Limits,
    LocalLongText,
    LocalText,
    PrivilegeSection,
    RewardDefinition,
    RewardKind,
    RewardPatch,
    Visibility,
    check_definition,
    dump,
    merge_patch,
)
from kopilka.domain.rewards.logic import (
    OrderAction,
    OrderStatus,
    initial_status,
    is_visible,
    left,
    low_stock_alert,
    period_start,
    status_text,
    transition,
    unit_cost,
)
from kopilka.domain.rules.facts import MemberFacts
from kopilka.ids import new_id
from kopilka.services.context import Actor, Role, Tenant, load_tenant
from kopilka.services.idempotency import remember, replay_or_claim, request_hash
from kopilka.services.ledger import balance_view, ensure_may_spend, lapsed_hold_points
from kopilka.services.ledger_book import MemberBook
from kopilka.services.ledger_ops import refund_spend
from kopilka.services.members import MemberHook, audit_merge
from kopilka.services.ports import UnitOfWork, UnitOfWorkFactory
from kopilka.services.purchase_hooks import PurchaseHook
from kopilka.services.purchases import PurchaseService
from kopilka.services.views import View

LOW_STOCK_EVENT = "reward.low_stock"
MAX_ORDER_QUANTITY = 100
MAX_CODES_PER_UPLOAD = 10_000
SOURCE_TYPE = "reward_order"
_CODE = re.compile(CODE_PATTERN)


# ---- views -------------------------------------------------------------------------------
class StockLevel(View):
    location: str
    quantity: int
    low_stock_threshold: int | None
    updated_at: datetime


class RewardTotals(View):
    """Orders not cancelled: how many, how many units, how many points (a charity's
    total is ``points``)."""

    orders: int = 0
    quantity: int = 0
    points: int = 0


class RewardView(View):
    """A reward as the marketing team sees it."""

    id: uuid.UUID
    code: str
    kind: RewardKind
    status: str
    name: LocalText
    description: LocalLongText | None
    cost: int
    cost_by_tier: dict[str, int]
    currency: str
    visibility: Visibility
    limits: Limits
    sku: str | None
    coupon: CouponSection | None
    privilege: PrivilegeSection | None
    charity: CharitySection | None
    redeemed: int
    stock: list[StockLevel]
    # Material: units at all locations; partner codes: unused codes; else None (no stock).
    available: int | None
    totals: RewardTotals
    created_at: datetime
    updated_at: datetime


class StockAt(View):
    location: str
    quantity: int


class MemberRewardView(View):
    """A reward as one member sees it in the catalogue."""

    id: uuid.UUID
    code: str
    kind: RewardKind
    name: LocalText
    description: LocalLongText | None
    cost: int  # the member's price per unit (their tier's)
    base_cost: int
    currency: str
    affordable: bool
    redeemable: bool
    # Why not redeemable: member_limit_reached or insufficient_points.
    unavailable_reason: str | None
    per_member_left: int | None
    total_left: int | None
    available: int | None
    locations: list[StockAt]
    coupon: CouponSection | None
    privilege: PrivilegeSection | None
    charity: CharitySection | None
    available_until: datetime | None


class IssuedCoupon(View):
    code: str
    benefit: dict[str, Any]
    min_basket: int
    valid_until: datetime


class GrantedPrivilege(View):
    tag: str | None
    club: str | None
    valid_until: datetime


class RewardOrderView(View):
    id: uuid.UUID
    member_id: uuid.UUID
    reward_id: uuid.UUID
    reward_code: str
    kind: RewardKind
    name: LocalText
    quantity: int
    points: int
    currency: str
    status: OrderStatus
    status_text: dict[str, str]
    location: str | None
    pickup_outlet: str | None
    transaction_id: uuid.UUID | None
    refund_transaction_id: uuid.UUID | None
    coupons: list[IssuedCoupon]
    partner_codes: list[str]
    privilege: GrantedPrivilege | None
    charity: str | None
    created_at: datetime
    ready_at: datetime | None
    issued_at: datetime | None
    cancelled_at: datetime | None


class CodesUploaded(View):
    reward_id: uuid.UUID
    received: int
    added: int
    duplicates: int  # repeated in the upload or already in the pool
    available: int


@dataclass(frozen=True)
class RedeemInput:
    reward_id: uuid.UUID | None = None
    reward_code: str | None = None
    location: str | None = None
    quantity: int = 1


@dataclass(frozen=True)
class StockInput:
    location: str
    quantity: int
    low_stock_threshold: int | None = None
    threshold_given: bool = False


# ---- helpers -----------------------------------------------------------------------------
def _definition(row: dict[str, Any]) -> RewardDefinition:
    return RewardDefinition.model_validate(row["definition"])


def _local(text: LocalText | dict[str, Any], locale: str) -> str:
    data = text.model_dump() if isinstance(text, LocalText) else text
    return str(data.get(locale) or data.get("ru") or data.get("en") or "")


def _validation_errors(exc: ValidationError) -> list[FieldError]:
    return [
        FieldError(
            tuple(err["loc"]),
            err["msg"],
            "unknown_field" if err["type"] == "extra_forbidden" else "invalid",
        )
        for err in exc.errors()
    ]


def _check_location(location: str, path: tuple[str | int, ...], errors: ErrorCollector) -> None:
    if not _CODE.match(location):
        errors.add(
            path,
            "A location code: letters, digits, '.', '_' or '-', up to 64 characters.",
            "invalid_location",
        )


def _ensure_member(uow: UnitOfWork, tenant_id: uuid.UUID, member_id: uuid.UUID) -> dict[str, Any]:
    member = uow.directory.member(tenant_id, member_id)
    if member is None:
        raise NotFound("Member not found.", code="member_not_found")
    return member


def _ensure_can_spend(member: dict[str, Any]) -> None:
    if member["status"] == "active":
        return
    if member["status"] == "blocked":
        raise BusinessRuleViolation(
            "The member is blocked: no points can be earned or spent.", code="member_blocked"
        )
    raise BusinessRuleViolation(
        f"The member profile is {member['status']}; use the surviving profile.",
        code=f"member_{member['status']}",
    )


class RewardService:
    """The catalogue (admin), the member's view of it, redemptions and their orders."""

    def __init__(
        self, uow_factory: UnitOfWorkFactory, clock: Clock, purchases: PurchaseService
    ) -> None:
        self.uow_factory = uow_factory
        self.clock = clock
        # Member facts (tier, segments, clubs) as the till sees them, other mechanics' too.
        self.purchases = purchases
        self.member_hook = RewardMemberHook(self)

    # ---- the catalogue -----------------------------------------------------------------
    def create(self, actor: Actor, definition: RewardDefinition) -> RewardView:
        """Add a reward. Idempotent on its code: the same definition again answers the
        reward already there; another definition under a taken code is a 409."""
        errors = check_definition(definition)
        if errors:
            raise ValidationFailed("The reward is not valid.", errors=errors)
        with self.uow_factory(write=True) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            if not uow.claim_key(tenant.id, f"reward:{definition.code}"):
                raise Conflict(
                    "This reward is being created; retry in a moment.",
                    code="idempotency_in_progress",
                )
            if definition.currency is None:
                definition = definition.model_copy(update={"currency": tenant.points_currency})
            store = RewardStore(uow)
            existing = store.reward_by(tenant.id, "code", definition.code)
            if existing is not None:
                if existing["definition"] != dump(definition):
                    raise Conflict(
                        f"Reward code {definition.code!r} is taken by another reward.",
                        code="reward_code_taken",
                    )
                return self._views(uow, tenant.id, [existing])[0]
            self._ensure_sku_free(store, tenant.id, definition.sku, None)
            now = self.clock.now()
            reward_id = new_id()
            inserted = store.insert_reward(
                {
                    "id": reward_id,
                    "tenant_id": tenant.id,
                    "code": definition.code,
                    "kind": definition.kind.value,
                    "status": "active",
                    "sku": definition.sku,
                    "currency": definition.currency,
                    "definition": dump(definition),
                    "limit_total": definition.limits.total,
                    "redeemed": 0,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            if not inserted:  # another reward took the SKU meanwhile
                raise Conflict(f"SKU {definition.sku!r} is taken.", code="reward_sku_taken")
            if definition.kind is RewardKind.PRIVILEGE:
                # Before the commit: no till of this process may miss an order of it.
                offering_privileges(tenant.id)
            uow.directory.audit(
                tenant.id, actor.name, "reward_created", "reward", reward_id, {}, now
            )
            row = store.reward(tenant.id, reward_id)
            assert row is not None
            view = self._views(uow, tenant.id, [row])[0]
            uow.commit()
            return view

    def update(self, actor: Actor, reward_id: uuid.UUID, patch: RewardPatch) -> RewardView:
        """Change a reward's fields, or archive it (``status``); orders already placed keep
        what they were sold with."""
        with self.uow_factory(write=True) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            store = RewardStore(uow)
            row = self._reward(store, tenant.id, reward_id, lock=True)
            try:
                definition = RewardDefinition.model_validate(merge_patch(row["definition"], patch))
            except ValidationError as exc:
                raise ValidationFailed(
                    "The reward is not valid.", errors=_validation_errors(exc)
                ) from exc
            if definition.currency is None:
                definition = definition.model_copy(update={"currency": tenant.points_currency})
            errors = check_definition(definition)
            if errors:
                raise ValidationFailed("The reward is not valid.", errors=errors)
            self._ensure_sku_free(store, tenant.id, definition.sku, row["id"])
            now = self.clock.now()
            values: dict[str, Any] = {
                "sku": definition.sku,
                "currency": definition.currency,
                "definition": dump(definition),
                "limit_total": definition.limits.total,
                "status": patch.status or row["status"],
                "updated_at": now,
            }
            outcome = store.update_reward(tenant.id, row["id"], values)
            if outcome == "sku_taken":
                raise Conflict(f"SKU {definition.sku!r} is taken.", code="reward_sku_taken")
            if outcome == "limit_below_redeemed":
                raise BusinessRuleViolation(
                    f"{row['redeemed']} units are already redeemed: the total limit cannot "
                    "be lower.",
                    code="limit_below_redeemed",
                    extra={"redeemed": row["redeemed"]},
                )
            changed = sorted(patch.model_fields_set)
            uow.directory.audit(
                tenant.id,
                actor.name,
                "reward_updated",
                "reward",
                row["id"],
                {"fields": changed},
                now,
            )
            updated = store.reward(tenant.id, row["id"])
            assert updated is not None
            view = self._views(uow, tenant.id, [updated])[0]
            uow.commit()
            return view

    def get(self, actor: Actor, reward_id: uuid.UUID) -> RewardView:
        with self.uow_factory(write=False) as uow:
            row = self._reward(RewardStore(uow), actor.tenant_id, reward_id)
            return self._views(uow, actor.tenant_id, [row])[0]

    def list_rewards(
        self,
        actor: Actor,
        after: uuid.UUID | None,
        limit: int,
        *,
        status: str | None = None,
        kind: str | None = None,
    ) -> list[RewardView]:
        """All rewards, oldest first (archived too unless ``status`` says otherwise)."""
        with self.uow_factory(write=False) as uow:
            rows = RewardStore(uow).list_rewards(
                actor.tenant_id, after, limit, status=status, kind=kind
            )
            return self._views(uow, actor.tenant_id, rows)

    # ---- stock -------------------------------------------------------------------------
    def set_stock(self, actor: Actor, reward_id: uuid.UUID, stock: StockInput) -> RewardView:
        """Set the absolute quantity at a location (so a retry changes nothing); a level at
        or below the threshold raises one ``reward.low_stock`` event."""
        errors = ErrorCollector()
        _check_location(stock.location, ("location",), errors)
        errors.raise_if_any()
        with self.uow_factory(write=True) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            store = RewardStore(uow)
            row = self._reward(store, tenant.id, reward_id)
            self._ensure_material(row)
            now = self.clock.now()
            self._apply_stock(uow, tenant, row, stock, now)
            view = self._views(uow, tenant.id, [row])[0]
            uow.commit()
            return view

    def import_stock(self, actor: Actor, path: Path) -> tuple[int, list[str]]:
        """Load stock levels from CSV (``code`` or ``sku``, ``location``, ``quantity``,
        optional ``low_stock_threshold``). All or nothing: with any error nothing is loaded
        and every error is returned with its line number."""
        text = path.read_text(encoding="utf-8-sig")
        if not text.strip():
            return 0, ["line 1: the file is empty"]
        try:
            dialect: Any = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        reader = csv.DictReader(io.StringIO(text), dialect=dialect)
        header = {(name or "").strip().lower() for name in reader.fieldnames or []}
        if not {"location", "quantity"} <= header or not header & {"code", "sku"}:
            return 0, ["line 1: the header needs location, quantity, and code or sku"]
        parsed: list[tuple[int, str, str, str, int, int | None, bool]] = []
        problems: list[str] = []
        for line_no, raw in enumerate(reader, start=2):
            record = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items() if k}
            code, sku = record.get("code", ""), record.get("sku", "")
            location = record.get("location", "")
            line_problems = []
            if not code and not sku:
                line_problems.append("code or sku is required")
            if not _CODE.match(location):
                line_problems.append(f"location {location!r} is not a location code")
            quantity = _whole(record.get("quantity", ""))
            if quantity is None:
                line_problems.append(f"quantity: a whole number from 0 to {MAX_QUANTITY}")
            threshold_text = record.get("low_stock_threshold", "")
            threshold = _whole(threshold_text) if threshold_text else None
            if threshold_text and threshold is None:
                line_problems.append(
                    f"low_stock_threshold: a whole number from 0 to {MAX_QUANTITY}"
                )
            if line_problems:
                problems.extend(f"line {line_no}: {p}" for p in line_problems)
                continue
            assert quantity is not None
            parsed.append((line_no, code, sku, location, quantity, threshold, bool(threshold_text)))
        with self.uow_factory(write=True) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            store = RewardStore(uow)
            by_code = {
                r["code"]: r
                for r in store.rewards_by(tenant.id, "code", [p[1] for p in parsed if p[1]])
            }
            by_sku = {
                r["sku"]: r
                for r in store.rewards_by(tenant.id, "sku", [p[2] for p in parsed if p[2]])
            }
            seen: dict[tuple[uuid.UUID, str], int] = {}
            work: list[tuple[dict[str, Any], StockInput]] = []
            for line_no, code, sku, location, quantity, threshold, given in parsed:
                row = by_code.get(code) if code else by_sku.get(sku)
                name = f"code {code!r}" if code else f"sku {sku!r}"
                if row is None:
                    problems.append(f"line {line_no}: no reward with {name}")
                    continue
                if code and sku and row["sku"] != sku:
                    problems.append(f"line {line_no}: code {code!r} and sku {sku!r} disagree")
                    continue
                if row["kind"] != RewardKind.MATERIAL:
                    problems.append(f"line {line_no}: reward {row['code']} has no stock")
                    continue
                key = (row["id"], location)
                if key in seen:
                    problems.append(
                        f"line {line_no}: {row['code']} at {location} repeats line {seen[key]}"
                    )
                    continue
                seen[key] = line_no
                work.append((row, StockInput(location, quantity, threshold, given)))
            if problems:
                return 0, sorted(problems, key=_line_number)
            now = self.clock.now()
            # One lock order for every writer of stock rows: no deadlock with another import.
            work.sort(key=lambda item: (item[0]["id"], item[1].location))
            for row, stock in work:
                self._apply_stock(uow, tenant, row, stock, now)
            uow.commit()
        return len(work), []

    def _apply_stock(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        reward: dict[str, Any],
        stock: StockInput,
        now: datetime,
    ) -> None:
        row = RewardStore(uow).set_stock(
            tenant.id,
            reward["id"],
            stock.location,
            stock.quantity,
            stock.low_stock_threshold,
            not stock.threshold_given,
            now,
        )
        self._after_stock_change(uow, tenant, reward, row, now)

    def _after_stock_change(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        reward: dict[str, Any],
        stock: dict[str, Any],
        now: datetime,
    ) -> None:
        """Raise ``reward.low_stock`` once per crossing of the threshold (the stock row is
        locked by the change just made, so a concurrent redemption sees the flag)."""
        publish, alerted = low_stock_alert(
            stock["quantity"], stock["low_stock_threshold"], stock["low_stock_alerted"]
        )
        if alerted != stock["low_stock_alerted"]:
            RewardStore(uow).set_alerted(tenant.id, stock["id"], alerted)
        if publish:
            outbox.publish(
                uow,
                tenant.id,
                LOW_STOCK_EVENT,
                {
                    "reward_id": str(reward["id"]),
                    "reward_code": reward["code"],
                    "location": stock["location"],
                    "quantity": stock["quantity"],
                    "low_stock_threshold": stock["low_stock_threshold"],
                },
                now,
            )

    # ---- partner codes -----------------------------------------------------------------
    def upload_codes(self, actor: Actor, reward_id: uuid.UUID, codes: list[str]) -> CodesUploaded:
        """Add partner codes to the reward's pool; codes repeated, or already in the pool,
        are skipped, so uploading a file twice adds nothing the second time."""
        errors = ErrorCollector()
        for i, code in enumerate(codes):
            if not code.strip() or code != code.strip():
                errors.add(
                    ("codes", i), "A code without leading or trailing spaces.", "invalid_code"
                )
        errors.raise_if_any()
        unique = list(dict.fromkeys(codes))
        with self.uow_factory(write=True) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            store = RewardStore(uow)
            row = self._reward(store, tenant.id, reward_id)
            if row["kind"] != RewardKind.PARTNER_CODE:
                raise BusinessRuleViolation(
                    "Only partner_code rewards have a code pool.", code="not_a_partner_reward"
                )
            now = self.clock.now()
            added = store.add_codes(tenant.id, row["id"], unique, now)
            if added:
                uow.directory.audit(
                    tenant.id,
                    actor.name,
                    "reward_codes_added",
                    "reward",
                    row["id"],
                    {"added": added},
                    now,
                )
            available = store.codes_available(tenant.id, [row["id"]]).get(row["id"], 0)
            uow.commit()
        return CodesUploaded(
            reward_id=row["id"],
            received=len(codes),
            added=added,
            duplicates=len(codes) - added,
            available=available,
        )

    # ---- the member's catalogue --------------------------------------------------------
    def catalogue(
        self, actor: Actor, member_id: uuid.UUID, after: uuid.UUID | None, limit: int
    ) -> list[MemberRewardView]:
        """The rewards this member may see now, with their price, what is left of the
        limits and the stock; sold-out rewards (no stock anywhere, an empty code pool, the
        total limit reached) are left out. By reward id, up to ``limit + 1`` items: the
        extra one tells the caller that another page follows."""
        with self.uow_factory(write=False) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            member = _ensure_member(uow, tenant.id, member_id)
            now = self.clock.now()
            balances: dict[str, int] = {}

            def balance(currency: str) -> int:
                if currency not in balances:
                    balances[currency] = _available(uow, tenant, member_id, currency, now)
                return balances[currency]

            facts = self.purchases.member_facts(
                uow, tenant, member, balance(tenant.points_currency), now
            )
            store = RewardStore(uow)
            items: list[MemberRewardView] = []
            cursor = after
            batch = max(limit + 1, 50)
            while len(items) <= limit:
                rows = store.list_rewards(tenant.id, cursor, batch, status="active")
                if not rows:
                    break
                cursor = rows[-1]["id"]
                items.extend(self._member_items(uow, tenant, member_id, facts, rows, balance, now))
                if len(rows) < batch:
                    break
            return items[: limit + 1]

    def _member_items(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        member_id: uuid.UUID,
        facts: MemberFacts,
        rows: list[dict[str, Any]],
        balance: Callable[[str], int],
        now: datetime,
    ) -> list[MemberRewardView]:
        store = RewardStore(uow)
        visible = [(r, _definition(r)) for r in rows]
        visible = [(r, d) for r, d in visible if is_visible(d, facts, now)]
        stock: dict[uuid.UUID, list[StockAt]] = defaultdict(list)
        for s in store.stock_of(
            tenant.id, [r["id"] for r, _ in visible if r["kind"] == "material"]
        ):
            if s["quantity"] > 0:
                stock[s["reward_id"]].append(
                    StockAt(location=s["location"], quantity=s["quantity"])
                )
        codes = store.codes_available(
            tenant.id, [r["id"] for r, _ in visible if r["kind"] == "partner_code"]
        )
        used = _member_usage(store, tenant, member_id, visible, now)
        items = []
        for row, definition in visible:
            kind = RewardKind(row["kind"])
            available: int | None = None
            if kind is RewardKind.MATERIAL:
                available = sum(s.quantity for s in stock[row["id"]])
            elif kind is RewardKind.PARTNER_CODE:
                available = codes.get(row["id"], 0)
            total_left = left(row["limit_total"], row["redeemed"])
            if available == 0 or total_left == 0:
                continue  # sold out: not shown to members
            cost = unit_cost(definition, facts.tier)
            per_member_left = left(definition.limits.per_member, used.get(row["id"], 0))
            affordable = balance(row["currency"]) >= cost
            reason = None
            if per_member_left == 0:
                reason = "member_limit_reached"
            elif not affordable:
                reason = "insufficient_points"
            items.append(
                MemberRewardView(
                    id=row["id"],
                    code=row["code"],
                    kind=kind,
                    name=definition.name,
                    description=definition.description,
                    cost=cost,
                    base_cost=definition.cost,
                    currency=row["currency"],
                    affordable=affordable,
                    redeemable=reason is None,
                    unavailable_reason=reason,
                    per_member_left=per_member_left,
                    total_left=total_left,
                    available=available,
                    locations=stock[row["id"]],
                    coupon=definition.coupon,
                    privilege=definition.privilege,
                    charity=definition.charity,
                    available_until=definition.visibility.until,
                )
            )
        return items

    # ---- redemption --------------------------------------------------------------------
    def redeem(
        self,
        actor: Actor,
        member_id: uuid.UUID,
        request: RedeemInput,
        *,
        idempotency_key: str | None = None,
    ) -> RewardOrderView:
        """Buy a reward with points: checks visibility, limits, stock and balance, debits the
        points and creates the order, all in one transaction."""
        errors = ErrorCollector()
        if (request.reward_id is None) == (request.reward_code is None):
            errors.add(
                ("reward_id",), "Name the reward by reward_id or reward_code.", "reward_required"
            )
        if request.location is not None:
            _check_location(request.location, ("location",), errors)
        errors.raise_if_any("The order is not valid.")
        digest = request_hash(
            "reward_order",
            {
                "member_id": member_id,
                "reward_id": request.reward_id,
                "reward_code": request.reward_code,
                "location": request.location,
                "quantity": request.quantity,
            },
        )
        with self.uow_factory(write=True) as uow:
            stored = replay_or_claim(uow, actor.tenant_id, idempotency_key, digest)
            if stored is not None:
                return RewardOrderView.model_validate(stored)
            now = self.clock.now()
            tenant = load_tenant(uow, actor.tenant_id)
            member = _ensure_member(uow, tenant.id, member_id)
            _ensure_can_spend(member)
            store = RewardStore(uow)
            if request.reward_id is not None:
                row = self._reward(store, tenant.id, request.reward_id)
            else:
                assert request.reward_code is not None
                found = store.reward_by(tenant.id, "code", request.reward_code)
                if found is None:
                    raise NotFound("Reward not found.", code="reward_not_found")
                row = found
            order = self._place(uow, tenant, actor, member, row, request, now)
            view = _order_view(order)
            remember(uow, tenant.id, idempotency_key, digest, view.to_json(), now)
            uow.commit()
            return view

    def _place(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        member: dict[str, Any],
        row: dict[str, Any],
        request: RedeemInput,
        now: datetime,
    ) -> dict[str, Any]:
        store = RewardStore(uow)
        definition = _definition(row)
        kind = RewardKind(row["kind"])
        if row["status"] != "active":
            raise BusinessRuleViolation("The reward is archived.", code="reward_archived")
        if request.location is not None and kind is not RewardKind.MATERIAL:
            raise ValidationFailed(
                "Only material rewards are taken from a location.",
                errors=[
                    FieldError(("location",), "Not for this reward.", "location_not_applicable")
                ],
            )
        units = request.quantity
        # The member's accounts are locked from here: their limit and balance hold still.
        book = MemberBook(uow, tenant, member["id"], actor, now, currency=row["currency"])
        ensure_may_spend(uow, book)  # a family member needs the owner's leave
        book.settle()
        facts = self.purchases.member_facts(uow, tenant, member, max(book.wallet.balance, 0), now)
        if not is_visible(definition, facts, now):
            raise BusinessRuleViolation(
                "This reward is not offered to this member now.", code="reward_not_available"
            )
        limits = definition.limits
        if limits.per_member is not None:
            since = period_start(limits.per_member_period, now, tenant.timezone)
            used = sum(
                n
                for _, at, n in store.member_units(tenant.id, member["id"], [row["id"]])
                if since is None or at >= since
            )
            if used + units > limits.per_member:
                raise BusinessRuleViolation(
                    f"The member may have {limits.per_member} of this reward"
                    + (f" per {limits.per_member_period}" if limits.per_member_period else "")
                    + f"; {used} already taken.",
                    code="member_limit_reached",
                    extra={"limit": limits.per_member, "used": used},
                )
        order_id = new_id()
        points = unit_cost(definition, facts.tier) * units
        name = _local(definition.name, tenant.locale)
        txn_id: uuid.UUID | None = None
        if points:
            params: dict[str, Any] = {"reward": row["code"], "order": str(order_id)}
            if definition.charity is not None:
                params["charity"] = definition.charity.code
            txn = book.new_txn(
                TxnKind.REDEMPTION,
                points,
                source_type=SOURCE_TYPE,
                source_id=str(order_id),
                reason=name,
                params=params,
            )
            book.take(txn, points, book.system[AccountKind.REDEEMED])  # InsufficientPoints
            txn_id = txn.id
        if not store.count_redeemed(tenant.id, row["id"], units, now):
            raise BusinessRuleViolation(
                "The reward is sold out: its total limit is reached.",
                code="total_limit_reached",
                extra={"limit": row["limit_total"]},
            )
        details: dict[str, Any] = {"name": definition.name.model_dump()}
        location: str | None = None
        valid_until: datetime | None = None
        if kind is RewardKind.MATERIAL:
            location = self._take_stock(uow, tenant, actor, row, request.location, units, now)
        elif kind is RewardKind.PARTNER_CODE:
            codes = store.take_codes(tenant.id, row["id"], order_id, units, now)
            if not codes:
                raise BusinessRuleViolation(
                    "No partner codes are left.", code="out_of_stock", extra={"location": None}
                )
            details["codes"] = codes
        elif kind is RewardKind.COUPON:
            assert definition.coupon is not None
            details["coupons"] = _issue_coupons(
                uow, tenant.id, member["id"], definition.coupon, units, order_id, now
            )
        elif kind is RewardKind.PRIVILEGE:
            assert definition.privilege is not None
            offering_privileges(tenant.id)  # this process's tills look for it from now on
            valid_until = now + timedelta(days=definition.privilege.duration_days * units)
            details["privilege"] = {
                "tag": definition.privilege.tag,
                "club": definition.privilege.club,
            }
        else:
            assert definition.charity is not None
            details["charity"] = definition.charity.code
        status = initial_status(kind)
        order = {
            "id": order_id,
            "tenant_id": tenant.id,
            "member_id": member["id"],
            "reward_id": row["id"],
            "reward_code": row["code"],
            "kind": kind.value,
            "quantity": units,
            "points": points,
            "currency": row["currency"],
            "status": status.value,
            "location": location,
            "pickup_outlet": None,
            "transaction_id": txn_id,
            "refund_transaction_id": None,
            "details": details,
            "valid_until": valid_until,
            "actor": actor.name,
            "created_at": now,
            "updated_at": now,
            "ready_at": None,
            "issued_at": now if status is OrderStatus.ISSUED else None,
            "cancelled_at": None,
        }
        store.insert_order(order)
        uow.ledger.apply(tenant.id, book.plan, now)
        return order

    def _take_stock(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        reward: dict[str, Any],
        location: str | None,
        units: int,
        now: datetime,
    ) -> str:
        """Decrement the stock at ``location`` (or, unless named, at the till's own outlet
        first, then where most is left); refuses when no location has enough."""
        store = RewardStore(uow)
        if location is not None:
            candidates = [location]
        else:
            own = None
            if actor.role is Role.POS and actor.outlet_id is not None:
                outlet = uow.directory.outlet(tenant.id, actor.outlet_id)
                own = outlet["code"] if outlet is not None else None
            levels = [
                s for s in store.stock_of(tenant.id, [reward["id"]]) if s["quantity"] >= units
            ]
            levels.sort(key=lambda s: (s["location"] != own, -s["quantity"], s["location"]))
            candidates = [s["location"] for s in levels]
        for candidate in candidates:
            # A concurrent redemption may have taken the last unit since the read: the
            # conditional UPDATE says so, and the next location is tried.
            after = store.take_stock(tenant.id, reward["id"], candidate, units, now)
            if after is not None:
                self._after_stock_change(uow, tenant, reward, after, now)
                return candidate
        raise BusinessRuleViolation(
            "Out of stock" + (f" at {location}." if location else "."),
            code="out_of_stock",
            extra={"location": location},
        )

    # ---- orders ------------------------------------------------------------------------
    def order(self, actor: Actor, order_id: uuid.UUID) -> RewardOrderView:
        with self.uow_factory(write=False) as uow:
            return _order_view(self._order(RewardStore(uow), actor.tenant_id, order_id))

    def orders(
        self,
        actor: Actor,
        before: uuid.UUID | None,
        limit: int,
        *,
        member_id: uuid.UUID | None = None,
        reward_id: uuid.UUID | None = None,
        status: str | None = None,
        location: str | None = None,
    ) -> list[RewardOrderView]:
        """Orders newest first: one member's, or the tenant's (e.g. the pending ones at a
        warehouse, for fulfilment)."""
        with self.uow_factory(write=False) as uow:
            if member_id is not None:
                _ensure_member(uow, actor.tenant_id, member_id)
            rows = RewardStore(uow).list_orders(
                actor.tenant_id,
                before,
                limit,
                member_id=member_id,
                reward_id=reward_id,
                status=status,
                location=location,
            )
            return [_order_view(r) for r in rows]

    def mark_ready(
        self, actor: Actor, order_id: uuid.UUID, outlet_code: str | None
    ) -> RewardOrderView:
        """The item waits for the member at an outlet: a till key's own, or the one named
        (by default the order's stock location, when that is an outlet)."""
        with self.uow_factory(write=True) as uow:
            store = RewardStore(uow)
            order = self._order(store, actor.tenant_id, order_id, lock=True)
            target = transition(OrderStatus(order["status"]), OrderAction.READY)
            outlet = self._pickup_outlet(uow, actor, order, outlet_code)
            if target is None:
                if outlet != order["pickup_outlet"]:
                    raise Conflict(
                        f"The order is already ready at {order['pickup_outlet']}.",
                        code="order_ready_elsewhere",
                    )
                return _order_view(order)
            now = self.clock.now()
            values = {
                "status": target.value,
                "pickup_outlet": outlet,
                "ready_at": now,
                "updated_at": now,
            }
            store.update_order(actor.tenant_id, order["id"], values)
            uow.commit()
            return _order_view({**order, **values})

    def issue(self, actor: Actor, order_id: uuid.UUID) -> RewardOrderView:
        """The member has the item; repeating it answers the same."""
        with self.uow_factory(write=True) as uow:
            store = RewardStore(uow)
            order = self._order(store, actor.tenant_id, order_id, lock=True)
            target = transition(OrderStatus(order["status"]), OrderAction.ISSUE)
            if target is None:
                return _order_view(order)
            own = self._own_outlet(uow, actor, order)
            now = self.clock.now()
            values = {
                "status": target.value,
                "pickup_outlet": order["pickup_outlet"] or own,
                "issued_at": now,
                "updated_at": now,
            }
            store.update_order(actor.tenant_id, order["id"], values)
            uow.commit()
            return _order_view({**order, **values})

    def cancel(self, actor: Actor, order_id: uuid.UUID) -> RewardOrderView:
        """Cancel a pending or ready order: the points go back to the lots they came from,
        the stock to its location, the unit to the limits. Repeating it answers the same."""
        with self.uow_factory(write=True) as uow:
            store = RewardStore(uow)
            order = self._order(store, actor.tenant_id, order_id, lock=True)
            target = transition(OrderStatus(order["status"]), OrderAction.CANCEL)
            if target is None:
                return _order_view(order)
            self._own_outlet(uow, actor, order)
            tenant = load_tenant(uow, actor.tenant_id)
            member = _ensure_member(uow, tenant.id, order["member_id"])
            if member["status"] in ("merged", "erased"):
                raise BusinessRuleViolation(
                    f"The member profile is {member['status']}: the points cannot go back.",
                    code=f"member_{member['status']}",
                )
            now = self.clock.now()
            refund_id: uuid.UUID | None = None
            if order["transaction_id"] is not None:
                original = uow.ledger.get_transaction(tenant.id, order["transaction_id"])
                assert original is not None
                book = MemberBook(
                    uow, tenant, order["member_id"], actor, now, currency=order["currency"]
                )
                book.settle()
                txn = refund_spend(
                    book,
                    original,
                    order["points"],
                    source_type=SOURCE_TYPE,
                    source_id=str(order["id"]),
                    reason=_local(order["details"]["name"], tenant.locale),
                )
                uow.ledger.apply(tenant.id, book.plan, now)
                refund_id = txn.id
            reward = store.reward(tenant.id, order["reward_id"])
            assert reward is not None
            store.uncount_redeemed(tenant.id, reward["id"], order["quantity"])
            if order["location"] is not None:
                back = store.return_stock(
                    tenant.id, reward["id"], order["location"], order["quantity"], now
                )
                if back is not None:
                    self._after_stock_change(uow, tenant, reward, back, now)
            values = {
                "status": target.value,
                "refund_transaction_id": refund_id,
                "cancelled_at": now,
                "updated_at": now,
            }
            store.update_order(tenant.id, order["id"], values)
            uow.commit()
            return _order_view({**order, **values})

    # ---- plumbing ----------------------------------------------------------------------
    def _reward(
        self, store: RewardStore, tenant_id: uuid.UUID, reward_id: uuid.UUID, lock: bool = False
    ) -> dict[str, Any]:
        row = store.reward(tenant_id, reward_id, lock=lock)
        if row is None:
            raise NotFound("Reward not found.", code="reward_not_found")
        return row

    def _order(
        self, store: RewardStore, tenant_id: uuid.UUID, order_id: uuid.UUID, lock: bool = False
    ) -> dict[str, Any]:
        row = store.order(tenant_id, order_id, lock=lock)
        if row is None:
            raise NotFound("Reward order not found.", code="reward_order_not_found")
        return row

    @staticmethod
    def _ensure_material(row: dict[str, Any]) -> None:
        if row["kind"] != RewardKind.MATERIAL:
            raise BusinessRuleViolation(
                "Only material rewards have stock.", code="not_a_material_reward"
            )

    @staticmethod
    def _ensure_sku_free(
        store: RewardStore, tenant_id: uuid.UUID, sku: str | None, own: uuid.UUID | None
    ) -> None:
        if sku is None:
            return
        other = store.reward_by(tenant_id, "sku", sku)
        if other is not None and other["id"] != own:
            raise Conflict(
                f"SKU {sku!r} belongs to reward {other['code']}.", code="reward_sku_taken"
            )

    def _own_outlet(self, uow: UnitOfWork, actor: Actor, order: dict[str, Any]) -> str | None:
        """A till key's outlet code; it may only act on orders ready at its own outlet."""
        if actor.role is not Role.POS or actor.outlet_id is None:
            return None
        outlet = uow.directory.outlet(actor.tenant_id, actor.outlet_id)
        own = outlet["code"] if outlet is not None else None
        if order["pickup_outlet"] is not None and order["pickup_outlet"] != own:
            raise Forbidden("The order is ready at another outlet.", code="outlet_not_allowed")
        return own

    def _pickup_outlet(
        self, uow: UnitOfWork, actor: Actor, order: dict[str, Any], code: str | None
    ) -> str:
        if actor.role is Role.POS and actor.outlet_id is not None:
            outlet = uow.directory.outlet(actor.tenant_id, actor.outlet_id)
            assert outlet is not None
            if code is not None and code != outlet["code"]:
                raise Forbidden(
                    "A till key works for its own outlet only.", code="outlet_not_allowed"
                )
            return str(outlet["code"])
        if code is None:
            if order["pickup_outlet"] is not None:
                return str(order["pickup_outlet"])
            location = order["location"]
            if location and uow.directory.outlet_by_code(actor.tenant_id, location) is not None:
                return str(location)
            raise ValidationFailed(
                "Name the pickup outlet (its code) when not using a till key.",
                errors=[FieldError(("outlet",), "Required here.", "outlet_required")],
            )
        if uow.directory.outlet_by_code(actor.tenant_id, code) is None:
            raise ValidationFailed(
                f"Unknown outlet {code!r}.",
                errors=[FieldError(("outlet",), "No such outlet.", "unknown_outlet")],
            )
        return code

    def _views(
        self, uow: UnitOfWork, tenant_id: uuid.UUID, rows: Sequence[dict[str, Any]]
    ) -> list[RewardView]:
        store = RewardStore(uow)
        ids = [r["id"] for r in rows]
        stock: dict[uuid.UUID, list[StockLevel]] = defaultdict(list)
        for s in store.stock_of(tenant_id, ids):
            stock[s["reward_id"]].append(
                StockLevel(
                    location=s["location"],
                    quantity=s["quantity"],
                    low_stock_threshold=s["low_stock_threshold"],
                    updated_at=s["updated_at"],
                )
            )
        codes = store.codes_available(
            tenant_id, [r["id"] for r in rows if r["kind"] == RewardKind.PARTNER_CODE]
        )
        totals = store.totals(tenant_id, ids)
        views = []
        for row in rows:
            definition = _definition(row)
            kind = RewardKind(row["kind"])
            available: int | None = None
            if kind is RewardKind.MATERIAL:
                available = sum(s.quantity for s in stock[row["id"]])
            elif kind is RewardKind.PARTNER_CODE:
                available = codes.get(row["id"], 0)
            orders, units, points = totals.get(row["id"], (0, 0, 0))
            views.append(
                RewardView(
                    id=row["id"],
                    code=row["code"],
                    kind=kind,
                    status=row["status"],
                    name=definition.name,
                    description=definition.description,
                    cost=definition.cost,
                    cost_by_tier=definition.cost_by_tier,
                    currency=row["currency"],
                    visibility=definition.visibility,
                    limits=definition.limits,
                    sku=row["sku"],
                    coupon=definition.coupon,
                    privilege=definition.privilege,
                    charity=definition.charity,
                    redeemed=row["redeemed"],
                    stock=stock[row["id"]],
                    available=available,
                    totals=RewardTotals(orders=orders, quantity=units, points=points),
                    created_at=row["created_at"],
                    updated_at=row["updated_at"],
                )
            )
        return views


def _whole(text: str) -> int | None:
    """A whole number from 0 to MAX_QUANTITY written in ASCII digits, else None."""
    if not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if value <= MAX_QUANTITY else None


def _line_number(problem: str) -> int:
    match = re.match(r"line (\d+)", problem)
    return int(match.group(1)) if match else 0


def _available(
    uow: UnitOfWork, tenant: Tenant, member_id: uuid.UUID, currency: str, now: datetime
) -> int:
    """Spendable points now, counting what the clock has made due (as the balance does);
    a family member's are the pool's, and none if the owner does not let them spend."""
    pool = pool_of(uow, tenant.id, member_id)
    if not pool.can_spend:
        return 0
    holder = pool.holder
    accounts = uow.ledger.lock_member_accounts(tenant.id, holder, currency, lock=False)
    lots = uow.ledger.open_lots(tenant.id, holder, currency)
    returning = lapsed_hold_points(uow, tenant.id, holder, currency, accounts, now)
    return balance_view(tenant, holder, currency, accounts, lots, now, returning).available


def _member_usage(
    store: RewardStore,
    tenant: Tenant,
    member_id: uuid.UUID,
    rewards: list[tuple[dict[str, Any], RewardDefinition]],
    now: datetime,
) -> dict[uuid.UUID, int]:
    """Units of each limited reward the member has taken in the limit's current period."""
    limited = {r["id"]: d for r, d in rewards if d.limits.per_member is not None}
    used: dict[uuid.UUID, int] = defaultdict(int)
    for reward_id, at, units in store.member_units(tenant.id, member_id, list(limited)):
        since = period_start(limited[reward_id].limits.per_member_period, now, tenant.timezone)
        if since is None or at >= since:
            used[reward_id] += units
    return used


def _issue_coupons(
    uow: UnitOfWork,
    tenant_id: uuid.UUID,
    member_id: uuid.UUID,
    coupon: CouponSection,
    units: int,
    order_id: uuid.UUID,
    now: datetime,
) -> list[dict[str, Any]]:
    """Personal coupons in the shared ``coupons`` table (the row shape the till's own
    issue_coupon effect writes), one per unit."""
    issued = []
    valid_until = now + timedelta(days=coupon.valid_days)
    for _ in range(units):
        code = personal_code()
        uow.commerce.insert_coupon(
            {
                "id": new_id(),
                "tenant_id": tenant_id,
                "code": code,
                "member_id": member_id,
                "benefit": coupon.benefit,
                "min_basket": coupon.min_basket,
                "valid_from": now,
                "valid_until": valid_until,
                "uses_left": 1,
                "status": "active",
                "source_type": SOURCE_TYPE,
                "source_id": str(order_id),
                "created_at": now,
            }
        )
        issued.append(
            {
                "code": code,
                "benefit": coupon.benefit,
                "min_basket": coupon.min_basket,
                "valid_until": valid_until.isoformat(),
            }
        )
    return issued


def _order_view(row: dict[str, Any]) -> RewardOrderView:
    details = row["details"]
    status = OrderStatus(row["status"])
    privilege = details.get("privilege")
    return RewardOrderView(
        id=row["id"],
        member_id=row["member_id"],
        reward_id=row["reward_id"],
        reward_code=row["reward_code"],
        kind=RewardKind(row["kind"]),
        name=LocalText.model_validate(details["name"]),
        quantity=row["quantity"],
        points=row["points"],
        currency=row["currency"],
        status=status,
        status_text=status_text(status, row["pickup_outlet"], bool(row["points"])),
        location=row["location"],
        pickup_outlet=row["pickup_outlet"],
        transaction_id=row["transaction_id"],
        refund_transaction_id=row["refund_transaction_id"],
        coupons=[IssuedCoupon.model_validate(c) for c in details.get("coupons", [])],
        partner_codes=list(details.get("codes", [])),
        privilege=(
            GrantedPrivilege(
                tag=privilege.get("tag"), club=privilege.get("club"), valid_until=row["valid_until"]
            )
            if privilege is not None
            else None
        ),
        charity=details.get("charity"),
        created_at=row["created_at"],
        ready_at=row["ready_at"],
        issued_at=row["issued_at"],
        cancelled_at=row["cancelled_at"],
    )


# ---- does the tenant sell privileges at all? ----------------------------------------------
# Most tenants have no privilege reward, and then no member can hold a privilege (orders
# copy their reward's kind, which never changes; rewards are never deleted). The till skips
# the member's privilege query for them, knowing it from:
# * tenants known in this process to have one (created or ordered here, or read so from
#   the database): for good, since that never becomes false;
# * else the database's answer, cached for the process cache's TTL (``ttl_cache``, 5 s).
# Staleness: only a tenant's *first* privilege reward, created in another process, can be
# missed here, and for at most that TTL after it was created: an order of it placed within
# those seconds (in another process) is not seen by this process's tills until the TTL is
# over. A reward created or ordered through this process is seen at once.
_PRIVILEGE_TENANTS: set[uuid.UUID] = set()
_PRIVILEGES_KEY = "reward_privileges"


def offering_privileges(tenant_id: uuid.UUID) -> None:
    """The tenant has a privilege reward: this process's tills look for privileges."""
    _PRIVILEGE_TENANTS.add(tenant_id)


def offers_privileges(uow: UnitOfWork, tenant_id: uuid.UUID) -> bool:
    """Whether the tenant has a privilege reward (see above for how fresh)."""
    if tenant_id in _PRIVILEGE_TENANTS:
        return True
    key = (_PRIVILEGES_KEY, tenant_id)
    known = uow.cache.get(key)
    if known is None:
        known = RewardStore(uow).offers_privileges(tenant_id)
        if known:
            offering_privileges(tenant_id)
        else:
            # A "no" may be overwritten meanwhile by nobody: a "yes" goes to the set above,
            # which is asked first.
            uow.cache.put(key, False)
    return bool(known)


class PrivilegeHook(PurchaseHook):
    """Running privileges show in the member's facts: their tag among the member's tags,
    their club among the clubs, so rules (``member_tag``, ``club_in``) and closed programs
    honour them at the till and in the catalogue."""

    def member_facts(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        member: dict[str, Any],
        facts: MemberFacts,
        now: datetime,
    ) -> MemberFacts:
        if not offers_privileges(uow, tenant.id):
            return facts  # no privilege reward: no member can hold one (no query)
        running = RewardStore(uow).active_privileges(tenant.id, member["id"], now)
        if not running:
            return facts
        tags = {p["privilege"]["tag"] for p in running if p.get("privilege", {}).get("tag")}
        clubs = {p["privilege"]["club"] for p in running if p.get("privilege", {}).get("club")}
        return replace(facts, tags=facts.tags | tags, clubs=facts.clubs | clubs)


class RewardMemberHook(MemberHook):
    """A merge gives the duplicate's reward orders to the survivor: their privileges, their
    place in per-member limits (a merge never resets a limit), refunds of their points."""

    def __init__(self, service: RewardService) -> None:
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
        moved = RewardStore(uow).move_orders(tenant.id, duplicate_id, survivor_id)
        if moved:
            audit_merge(
                uow,
                tenant,
                actor,
                "reward.orders_merged",
                survivor_id,
                duplicate_id,
                now,
                orders=moved,
            )
