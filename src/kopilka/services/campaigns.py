"""Campaigns: rules for a while, for an audience, within budgets and limits.

The admin side keeps the definitions and their life cycle (draft, scheduled, active,
paused, ended), the member lists, the dry-run preview and the reports. At the till the
:class:`CampaignHook` offers the rules of the campaigns that match a receipt, and when the
receipt is written, takes what the applied ones gave from their budgets (see
domain/campaigns/budget.py: slot counters, no hot row, no overshoot); a campaign its budget
or a limit cannot cover is taken off the receipt, which is evaluated again without it.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from kopilka.adapters.db.mechanics.campaigns import CampaignStore
from kopilka.clock import Clock
from kopilka.domain.campaigns.audience import held_out, in_audience
from kopilka.domain.campaigns.budget import (
    OVERALL,
    SLOTS,
    BudgetKey,
    SlotState,
    caps,
    costs,
    plan_take,
    resize,
    scope_outlet,
    split,
)
from kopilka.domain.campaigns.definition import (
    CampaignCreate,
    CampaignFields,
    CampaignPatch,
    CompiledCampaign,
    compile_campaign,
    parse_fields,
    rule_prefix,
)
from kopilka.domain.campaigns.effects import Share, cap_points, shares
from kopilka.domain.campaigns.schedule import (
    ACTIVE,
    DRAFT,
    ENDED,
    PAUSED,
    SCHEDULED,
    effective_status,
    local_day,
    period_start,
    window,
)
from kopilka.domain.campaigns.stacking import choose, order_key
from kopilka.domain.campaigns.texts import REASONS
from kopilka.domain.errors import (
    BusinessRuleViolation,
    Conflict,
    FieldError,
    NotFound,
    ValidationFailed,
)
from kopilka.domain.rules.conditions import Gap, ReceiptCondition, category_path
from kopilka.domain.rules.document import POINTS_EFFECTS, CompiledProgram, CompiledRule
from kopilka.domain.rules.engine import evaluate
from kopilka.domain.rules.facts import Context, Line, MemberFacts
from kopilka.ids import new_id
from kopilka.services.context import Actor, Tenant, load_tenant
from kopilka.services.idempotency import remember, replay_or_claim, request_hash
from kopilka.services.members import MemberHook, audit_merge
from kopilka.services.ports import UnitOfWork, UnitOfWorkFactory
from kopilka.services.programs import ProgramService
from kopilka.services.purchase_hooks import PurchaseHook

if TYPE_CHECKING:
    from kopilka.services.purchases import Evaluated, ReceiptInput

# How long a process trusts its list of running campaigns. A change made in this process
# is seen at once; other processes see it within this bound when calculating, and at once
# when confirming (the applied campaigns' status is read again before budgets are taken).
DIRECTORY_TTL_SECONDS = 2.0
PREVIEW_SAMPLE = 2000  # receipts re-evaluated at most by one preview (the newest)
MAX_PREVIEW_DAYS = 365
MAX_LISTED_MEMBERS = 10_000
# A reservation (a held receipt's campaign) whose receipt cannot be found is given back
# after the longest hold there can be (7 days) and a margin.
ORPHAN_AFTER = timedelta(days=8)
JOB_BATCH = 500
_random = secrets.SystemRandom()

Allocation = tuple[str, str, int, int]  # (kind, scope, slot, amount)
Gate = Callable[[Context], bool]  # the campaign's own test of a receipt's context
Snapshot = dict[tuple[uuid.UUID, str, str], list[tuple[int, int]]]  # -> [(slot, left)]


def next_status(action: str, stored: str, status: str) -> str | None:
    """The stored status a life-cycle action leads to from a campaign that is ``status``
    (effective; stored as ``stored``); None: it is there already. Raises Conflict for a
    move that makes no sense."""
    if action == "schedule":
        if stored == SCHEDULED and status != ENDED:
            return None
        if status == DRAFT:
            return SCHEDULED
    elif action == "pause":
        if status == PAUSED:
            return None
        if status == ACTIVE:
            return PAUSED
    elif action == "resume":
        if status in (SCHEDULED, ACTIVE):
            return None
        if status == PAUSED:
            return SCHEDULED
    elif action == "end":
        return None if stored == ENDED else ENDED
    raise Conflict(
        f"A campaign that is {status} cannot {action}.",
        code="campaign_transition_invalid",
        extra={"campaign_status": status, "action": action},
    )


class CampaignService:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        programs: ProgramService,
        fact_hooks: Sequence[PurchaseHook] = (),
    ) -> None:
        """``fact_hooks``: the till's hooks, asked for member facts by the preview (the
        list is read when needed, so hooks registered later count too)."""
        self.uow_factory = uow_factory
        self.clock = clock
        self.programs = programs
        self.fact_hooks = fact_hooks
        self._running: dict[uuid.UUID, tuple[float, list[CompiledCampaign]]] = {}
        self._compiled: dict[tuple[uuid.UUID, int], CompiledCampaign] = {}
        self.hook = CampaignHook(self)
        self.member_hook = CampaignMemberHook(self)

    # ---- the definitions ---------------------------------------------------------------
    def create(
        self, actor: Actor, body: CampaignCreate, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """A new campaign, as a draft. The same code and definition again answers the
        campaign already there (a natural idempotency key); another definition is a 409."""
        fields, _rules = parse_fields(body.model_dump(mode="json", exclude={"code"}))
        document = _normal(fields)
        digest = request_hash("campaigns.create", {"code": body.code, **document})
        with self.uow_factory(write=True) as uow:
            stored = replay_or_claim(uow, actor.tenant_id, idempotency_key, digest)
            if stored is not None:
                return stored
            tenant = load_tenant(uow, actor.tenant_id)
            store = CampaignStore(uow)
            existing = store.by_code(tenant.id, body.code, lock=True)
            if existing is not None:
                if _same(existing["definition"], document):
                    return self._view(uow, tenant, existing)
                raise Conflict(
                    f"Campaign {body.code!r} exists with another definition; PATCH it.",
                    code="campaign_exists",
                )
            self._check_references(uow, tenant, fields)
            now = self.clock.now()
            campaign_id = new_id()
            row = {
                "id": campaign_id,
                "tenant_id": tenant.id,
                "code": body.code,
                "status": DRAFT,
                "definition": document,
                "revision": 1,
                "seed": secrets.token_hex(8),
                "created_at": now,
                "updated_at": now,
                "status_changed_at": now,
            }
            store.insert(row)
            store.insert_slots(_new_slots(tenant.id, campaign_id, caps(fields.budgets)))
            uow.directory.audit(
                tenant.id, actor.name, "campaign.create", "campaign", body.code, {}, now
            )
            view = self._view(uow, tenant, row)
            remember(uow, tenant.id, idempotency_key, digest, view, now)
            uow.commit()
        self._forget(actor.tenant_id)
        return view

    def update(
        self,
        actor: Actor,
        code: str,
        patch: CampaignPatch,
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Change fields of a draft, of a scheduled campaign that has not started, or of a
        paused one (budgets too: each budget keeps what it used). An active campaign is
        paused first; an ended one is not changed."""
        changes = patch.model_dump(mode="json", exclude_unset=True)
        digest = request_hash("campaigns.update", {"code": code, **changes})
        with self.uow_factory(write=True) as uow:
            stored = replay_or_claim(uow, actor.tenant_id, idempotency_key, digest)
            if stored is not None:
                return stored
            tenant = load_tenant(uow, actor.tenant_id)
            store = CampaignStore(uow)
            row = self._row(store, tenant.id, code, lock=True)
            now = self.clock.now()
            status = self._status(tenant, row, now)
            if status not in (DRAFT, SCHEDULED, PAUSED):
                raise Conflict(
                    f"The campaign is {status}: "
                    + ("pause it to change it." if status == ACTIVE else "it cannot change."),
                    code="campaign_not_editable",
                    extra={"campaign_status": status},
                )
            merged = {**row["definition"], **changes}
            fields, _rules = parse_fields({k: v for k, v in merged.items() if v is not None})
            document = _normal(fields)
            if _same(row["definition"], document):
                return self._view(uow, tenant, row)
            self._check_references(uow, tenant, fields)
            before, _ = parse_fields(row["definition"])
            self._resize_budgets(
                store, tenant.id, row["id"], caps(before.budgets), caps(fields.budgets)
            )
            values = {"definition": document, "revision": row["revision"] + 1, "updated_at": now}
            store.update(tenant.id, row["id"], values)
            uow.directory.audit(
                tenant.id,
                actor.name,
                "campaign.update",
                "campaign",
                code,
                {"fields": sorted(changes), "revision": values["revision"]},
                now,
            )
            view = self._view(uow, tenant, {**row, **values})
            remember(uow, tenant.id, idempotency_key, digest, view, now)
            uow.commit()
        self._forget(actor.tenant_id)
        return view

    def transition(
        self, actor: Actor, code: str, action: str, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """schedule (draft -> scheduled; active in its window), pause (active -> paused),
        resume (paused -> scheduled), end (any but ended -> ended). Asking for the state the
        campaign is already in answers it unchanged; any other move is a 409."""
        digest = request_hash("campaigns.transition", {"code": code, "action": action})
        with self.uow_factory(write=True) as uow:
            stored = replay_or_claim(uow, actor.tenant_id, idempotency_key, digest)
            if stored is not None:
                return stored
            tenant = load_tenant(uow, actor.tenant_id)
            store = CampaignStore(uow)
            row = self._row(store, tenant.id, code, lock=True)
            now = self.clock.now()
            status = self._status(tenant, row, now)
            target = next_status(action, row["status"], status)
            if target is None:
                return self._view(uow, tenant, row)
            if action == "schedule":
                self._check_ready(tenant, row, now)
            values = {"status": target, "status_changed_at": now, "updated_at": now}
            store.update(tenant.id, row["id"], values)
            uow.directory.audit(
                tenant.id,
                actor.name,
                f"campaign.{action}",
                "campaign",
                code,
                {"from": status, "to": target},
                now,
            )
            view = self._view(uow, tenant, {**row, **values})
            remember(uow, tenant.id, idempotency_key, digest, view, now)
            uow.commit()
        self._forget(actor.tenant_id)
        return view

    def _check_ready(self, tenant: Tenant, row: dict[str, Any], now: datetime) -> None:
        fields, _ = parse_fields(row["definition"])
        if fields.schedule is None:
            raise BusinessRuleViolation(
                "Give the campaign a schedule first.",
                code="campaign_schedule_required",
                errors=[FieldError(("schedule",), "Required to schedule.", "required")],
            )
        _start, end = window(fields.schedule, tenant.timezone)
        if end <= now:
            raise BusinessRuleViolation(
                "The campaign's schedule has already ended.",
                code="campaign_schedule_passed",
                errors=[FieldError(("schedule", "end"), "In the past.", "schedule_passed")],
            )
        if not fields.rules:
            raise BusinessRuleViolation(
                "A campaign needs at least one rule.",
                code="campaign_rules_required",
                errors=[FieldError(("rules",), "At least one rule.", "required")],
            )

    def _check_references(self, uow: UnitOfWork, tenant: Tenant, fields: CampaignFields) -> None:
        """Outlets must exist (a typo would silently never match); the program too."""
        errors: list[FieldError] = []
        known = {o["code"] for o in uow.directory.list_outlets(tenant.id)}
        for i, outlet in enumerate(fields.outlets or []):
            if outlet not in known:
                errors.append(
                    FieldError(("outlets", i), f"No outlet {outlet!r}.", "unknown_outlet")
                )
        for outlet in fields.budgets.per_outlet:
            if outlet not in known:
                errors.append(
                    FieldError(
                        ("budgets", "per_outlet", outlet),
                        f"No outlet {outlet!r}.",
                        "unknown_outlet",
                    )
                )
        if (
            fields.program is not None
            and uow.commerce.latest_program(tenant.id, fields.program) is None
        ):
            errors.append(
                FieldError(("program",), f"No program {fields.program!r}.", "unknown_program")
            )
        if errors:
            raise ValidationFailed("The campaign names what does not exist.", errors=errors)

    def _resize_budgets(
        self,
        store: CampaignStore,
        tenant_id: uuid.UUID,
        campaign_id: uuid.UUID,
        before: dict[BudgetKey, int],
        after: dict[BudgetKey, int],
    ) -> None:
        """New budgets get fresh slots, removed ones lose theirs, changed ones are re-split
        under lock: each slot keeps what it used; a budget below its use is refused."""
        for key in sorted(set(before) - set(after)):
            store.drop_budget(tenant_id, campaign_id, *key)
        store.insert_slots(
            _new_slots(tenant_id, campaign_id, {k: v for k, v in after.items() if k not in before})
        )
        for key in sorted(set(before) & set(after)):
            if before[key] == after[key]:
                continue
            rows = store.lock_budget(tenant_id, campaign_id, *key)
            states = [SlotState(r["slot"], r["cap"], r["used"]) for r in rows]
            wanted = max(len(states), _slot_count(after[key]))
            states += [SlotState(n, 0, 0) for n in range(len(states), wanted)]
            sized = resize(states, after[key])
            if sized is None:
                kind, scope = key
                outlet = scope_outlet(scope)
                path: tuple[str | int, ...] = (
                    ("budgets", kind) if outlet is None else ("budgets", "per_outlet", outlet, kind)
                )
                raise Conflict(
                    f"The {kind} budget cannot go below what was used already "
                    f"({sum(s.used for s in states)}).",
                    code="budget_below_used",
                    errors=[FieldError(path, "Below what was used.", "budget_below_used")],
                )
            existing = {r["slot"] for r in rows}
            store.insert_slots(
                [
                    _slot_row(tenant_id, campaign_id, key, s.slot, s.cap)
                    for s in sized
                    if s.slot not in existing
                ]
            )
            for s in sized:
                if s.slot in existing:
                    store.set_cap(tenant_id, campaign_id, *key, s.slot, s.cap)

    def set_members(
        self,
        actor: Actor,
        code: str,
        member_ids: Sequence[uuid.UUID],
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Replace the member list of a list audience (PUT: the same list again changes
        nothing). Unknown ids are refused with their positions."""
        digest = request_hash(
            "campaigns.members", {"code": code, "members": sorted(str(m) for m in member_ids)}
        )
        with self.uow_factory(write=True) as uow:
            stored = replay_or_claim(uow, actor.tenant_id, idempotency_key, digest)
            if stored is not None:
                return stored
            tenant = load_tenant(uow, actor.tenant_id)
            store = CampaignStore(uow)
            row = self._row(store, tenant.id, code, lock=True)
            now = self.clock.now()
            fields, _ = parse_fields(row["definition"])
            if fields.audience.kind != "members":
                raise Conflict(
                    "The campaign's audience is not a member list.",
                    code="campaign_audience_not_members",
                )
            if self._status(tenant, row, now) == ENDED:
                raise Conflict("The campaign has ended.", code="campaign_ended")
            known = store.existing_members(tenant.id, member_ids)
            errors = [
                FieldError(("member_ids", i), "No such member.", "member_not_found")
                for i, m in enumerate(member_ids)
                if m not in known
            ]
            if errors:
                raise ValidationFailed("Some members do not exist.", errors=errors)
            store.replace_members(tenant.id, row["id"], member_ids, now)
            uow.directory.audit(
                tenant.id,
                actor.name,
                "campaign.members",
                "campaign",
                code,
                {"members": len(set(member_ids))},
                now,
            )
            view = {"code": code, "members": len(set(member_ids))}
            remember(uow, tenant.id, idempotency_key, digest, view, now)
            uow.commit()
        return view

    # ---- reads -------------------------------------------------------------------------
    def get(self, actor: Actor, code: str) -> dict[str, Any]:
        with self.uow_factory(write=False) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            return self._view(uow, tenant, self._row(CampaignStore(uow), tenant.id, code))

    def list_campaigns(
        self, actor: Actor, before: uuid.UUID | None, limit: int, status: str | None = None
    ) -> list[dict[str, Any]]:
        """Newest first; ``status`` filters on the stored status (draft, scheduled,
        paused, ended)."""
        with self.uow_factory(write=False) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            rows = CampaignStore(uow).page(tenant.id, before, limit, status)
            return [self._view(uow, tenant, r) for r in rows]

    def budget(self, actor: Actor, code: str) -> dict[str, Any]:
        """Each budget, overall and per outlet: its cap, what was used and what is left;
        and the live redemptions' totals."""
        with self.uow_factory(write=False) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            store = CampaignStore(uow)
            row = self._row(store, tenant.id, code)
            fields, _ = parse_fields(row["definition"])
            sums: dict[BudgetKey, list[int]] = {}
            for s in store.slots(tenant.id, [row["id"]]):
                total = sums.setdefault((s["kind"], s["scope"]), [0, 0, 0])
                total[0] += s["cap"]
                total[1] += s["used"]
                total[2] += 1
            budgets = []
            for key, cap in sorted(
                caps(fields.budgets).items(), key=lambda i: (i[0][1] != OVERALL, i[0])
            ):
                kind, scope = key
                _cap, used, slots = sums.get(key, [cap, 0, 0])
                budgets.append(
                    {
                        "kind": kind,
                        "outlet": scope_outlet(scope),
                        "cap": cap,
                        "used": used,
                        "left": max(cap - used, 0),
                        "exhausted": used >= cap,
                        "slots": slots,
                    }
                )
            return {
                "code": code,
                "status": self._status(tenant, row, self.clock.now()),
                "budgets": budgets,
                "given": store.totals(tenant.id, row["id"]),
            }

    def control_group(self, actor: Actor, code: str) -> dict[str, Any]:
        """The control group's draw so far, and a first measure of the campaign's effect:
        purchases and money paid by held-out and exposed members during the campaign."""
        with self.uow_factory(write=False) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            store = CampaignStore(uow)
            row = self._row(store, tenant.id, code)
            fields, _ = parse_fields(row["definition"])
            span = window(fields.schedule, tenant.timezone) if fields.schedule else None
            # The campaign's window (receipts cannot be from the future anyway).
            since, until = span if span else (row["created_at"], self.clock.now())
            report = store.control_report(tenant.id, row["id"], since, until)
            arms = {arm: _arm(report.get(arm)) for arm in ("control", "exposed")}
            control, exposed = arms["control"], arms["exposed"]
            return {
                "code": code,
                "percent": fields.control_group.percent if fields.control_group else 0,
                "since": since.isoformat(),
                "until": until.isoformat(),
                "control": control,
                "exposed": exposed,
                "lift": {
                    "spend_per_member": exposed["spend_per_member"] - control["spend_per_member"],
                    "purchases_per_member": str(
                        Decimal(exposed["purchases_per_member"])
                        - Decimal(control["purchases_per_member"])
                    ),
                },
            }

    # ---- the dry run -------------------------------------------------------------------
    def preview(self, actor: Actor, code: str, days: int) -> dict[str, Any]:
        """How many members the audience has now, and what the campaign would have given
        on the last ``days`` days of confirmed receipts (the newest PREVIEW_SAMPLE of them,
        scaled up when there were more). Writes nothing."""
        if not 1 <= days <= MAX_PREVIEW_DAYS:
            raise ValidationFailed(
                f"days: 1 to {MAX_PREVIEW_DAYS}.",
                code="invalid_days",
                errors=[FieldError(("days",), f"1 to {MAX_PREVIEW_DAYS}.", "invalid_days")],
            )
        with self.uow_factory(write=False) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            store = CampaignStore(uow)
            row = self._row(store, tenant.id, code)
            campaign = compile_campaign(
                row["id"], code, row["revision"], row["status"], row["seed"], row["definition"]
            )
            now = self.clock.now()
            audience = self._audience_size(uow, store, tenant, campaign, now)
            cost = self._cost(uow, store, tenant, campaign, now - timedelta(days=days), now)
        return {"code": code, "days": days, "audience": audience, "cost": cost}

    def _audience_size(
        self,
        uow: UnitOfWork,
        store: CampaignStore,
        tenant: Tenant,
        campaign: CompiledCampaign,
        now: datetime,
    ) -> dict[str, Any]:
        from kopilka.services.tiers import tier_programs  # here: tiers imports the till

        audience = campaign.fields.audience
        tier_program, base = None, None
        if audience.kind == "tiers":
            found = tier_programs(self.programs.in_force(uow, tenant.id, now))
            if found and found[0].settings.tiers is not None:
                tier_program, base = found[0].code, found[0].settings.tiers.base.code
        size = store.audience_size(
            tenant.id,
            audience.kind,
            audience.values,
            campaign_id=campaign.id,
            tier_program=tier_program,
            base_tier=base,
            now=now,
        )
        percent = campaign.fields.control_group.percent if campaign.fields.control_group else 0
        held = size * percent // 100
        return {
            "kind": audience.kind,
            "members": size,
            "control_group_expected": held,
            "exposed_expected": size - held,
        }

    def _cost(
        self,
        uow: UnitOfWork,
        store: CampaignStore,
        tenant: Tenant,
        campaign: CompiledCampaign,
        since: datetime,
        until: datetime,
    ) -> dict[str, Any]:
        """Re-evaluate the sampled receipts with and without the campaign's rules. The
        audience, outlets, channels and per-receipt limits are applied; the schedule,
        budgets, per-member limits, stacking and the control group are not (the answer says
        what the budget would have allowed). Receipts are evaluated as paid in money, with
        the member's facts as they are today."""
        from kopilka.services.purchases import _member_facts  # here: purchases imports hooks

        total, rows = store.recent_receipts(tenant.id, since, until, PREVIEW_SAMPLE)
        lines = store.lines_of(tenant.id, [r["id"] for r in rows])
        skus = sorted({li["sku"] for found in lines.values() for li in found})
        catalogue = uow.commerce.products_by_sku(tenant.id, skus, tenant.catalogue_version)
        outlets = {o["id"]: o for o in uow.directory.list_outlets(tenant.id)}
        people = store.members_by_id(tenant.id, [r["member_id"] for r in rows if r["member_id"]])
        listed = (
            store.listed_members(tenant.id, campaign.id)
            if campaign.fields.audience.kind == "members"
            else set()
        )
        facts_of: dict[uuid.UUID, MemberFacts] = {}
        applied = points = discount = 0
        by_outlet: dict[str, dict[str, int]] = {}
        fields = campaign.fields
        for receipt in reversed(rows):  # oldest first: "would the budget have lasted"
            outlet = outlets.get(receipt["outlet_id"])
            member = people.get(receipt["member_id"]) if receipt["member_id"] else None
            if outlet is None or not lines.get(receipt["id"]):
                continue
            if fields.outlets is not None and outlet["code"] not in fields.outlets:
                continue
            if fields.channels is not None and receipt["channel"] not in fields.channels:
                continue
            facts = None
            if member is not None:
                if member["id"] not in facts_of:
                    base = _member_facts(
                        member, uow.commerce.count_member_purchases(tenant.id, member["id"]), 0
                    )
                    for hook in self.fact_hooks:
                        base = hook.member_facts(uow, tenant, member, base, until)
                    facts_of[member["id"]] = base
                facts = facts_of[member["id"]]
            elif fields.audience.kind != "everyone" or fields.limits.per_member:
                continue
            if not in_audience(
                fields.audience, facts, member is not None and member["id"] in listed
            ):
                continue
            programs = self.programs.in_force(uow, tenant.id, receipt["occurred_at"])
            if not programs:
                continue
            share = self._dry_share(
                tenant, campaign, programs, receipt, outlet, facts, lines[receipt["id"]], catalogue
            )
            if share is None or not share.applied:
                continue
            applied += 1
            points += share.points
            discount += share.discount
            spot = by_outlet.setdefault(
                outlet["code"], {"redemptions": 0, "points": 0, "discount": 0}
            )
            spot["redemptions"] += 1
            spot["points"] += share.points
            spot["discount"] += share.discount
        scanned = len(rows)
        scale = Decimal(total) / Decimal(scanned) if scanned else Decimal(1)

        def estimate(value: int) -> int:
            return int((Decimal(value) * scale).to_integral_value(ROUND_HALF_UP))

        wanted = {"points": points, "discount": discount, "redemptions": applied}
        budgets = {
            kind: {
                "cap": cap,
                "would_run_out": estimate(wanted[kind]) > cap,
            }
            for (kind, scope), cap in caps(fields.budgets).items()
            if scope == OVERALL
        }
        return {
            "since": since.isoformat(),
            "until": until.isoformat(),
            "receipts_in_period": total,
            "receipts_evaluated": scanned,
            "sampled": scanned < total,
            "redemptions": applied,
            "points": points,
            "discount": discount,
            "per_outlet": by_outlet,
            "estimated": {k: estimate(v) for k, v in wanted.items()},
            "budgets": budgets,
        }

    def _dry_share(
        self,
        tenant: Tenant,
        campaign: CompiledCampaign,
        programs: list[CompiledProgram],
        receipt: dict[str, Any],
        outlet: dict[str, Any],
        facts: MemberFacts | None,
        stored_lines: list[dict[str, Any]],
        catalogue: dict[str, dict[str, Any]],
    ) -> Share | None:
        codes = {p.code for p in programs}
        joined = campaign.fields.program or programs[0].code
        if joined not in codes:
            return None
        programs = [
            replace(
                p,
                rules=tuple(sorted((*p.rules, *campaign.rules), key=lambda r: (r.priority, r.id))),
            )
            if p.code == joined
            else p
            for p in programs
        ]
        lines = []
        for i, li in enumerate(stored_lines):
            product = catalogue.get(li["sku"]) or {}
            lines.append(
                Line(
                    index=i,
                    sku=li["sku"],
                    qty=li["qty"],
                    price=li["price"],
                    amount=li["amount"],
                    name=product.get("name"),
                    category=category_path(li["category"] or product.get("category") or ""),
                    brand=product.get("brand"),
                    tags=frozenset(product.get("tags") or ()),
                    attributes=product.get("attributes") or {},
                    no_discount=bool(product.get("no_discount")),
                    no_points=bool(product.get("no_points")),
                    min_price=product.get("min_price"),
                )
            )
        occurred = receipt["occurred_at"]
        ctx = Context(
            occurred_at=occurred,
            local_time=occurred.astimezone(ZoneInfo(outlet["timezone"])),
            tenant_today=occurred.astimezone(ZoneInfo(tenant.timezone)).date(),
            outlet_code=outlet["code"],
            outlet_tags=frozenset(outlet["tags"] or ()),
            region=outlet["region"],
            channel=receipt["channel"],
            payment_method=receipt["payment_method"],
            member=facts,
        )
        evaluation = evaluate(programs, lines, ctx, currency=tenant.currency, near_misses=False)
        if facts is None:
            evaluation.applied = [a for a in evaluation.applied if a.kind not in POINTS_EFFECTS]
        share = shares(evaluation).get(campaign.code)
        if share is None:
            return None
        limit = campaign.fields.limits.per_receipt
        if limit.discount is not None and share.discount > limit.discount:
            return None
        if limit.points is not None and share.points > limit.points:
            return replace(share, points=limit.points)
        return share

    # ---- the job -----------------------------------------------------------------------
    def release_reserved(self, now: datetime, tenant_id: uuid.UUID | None = None) -> int:
        """Give back the budgets a held receipt reserved when the hold was voided (or
        expired), and confirm reservations whose receipt was confirmed. Each in its own
        transaction; a second run finds nothing left to do."""
        done = 0
        with self.uow_factory(write=False) as uow:
            waiting = CampaignStore(uow).reserved(tenant_id, JOB_BATCH)
        for item in waiting:
            with self.uow_factory(write=True) as uow:
                store = CampaignStore(uow)
                verdict = "wait"
                for receipt in store.receipts_like(item):
                    ids = {
                        c.get("redemption_id")
                        for c in (receipt["result"] or {}).get("campaigns", [])
                    }
                    if str(item["id"]) not in ids:
                        continue
                    if receipt["status"] == "voided":
                        verdict = "release"
                    elif receipt["status"] in ("confirmed", "cancelled"):
                        verdict = "confirm"
                        store.confirm(item["tenant_id"], [item["id"]], receipt["id"], now)
                    break
                else:
                    if item["created_at"] + ORPHAN_AFTER <= now:
                        verdict = "release"
                if verdict == "release" and _give_back(store, item, "released", now):
                    done += 1
                uow.commit()
        return done

    # ---- helpers -----------------------------------------------------------------------
    def running(self, uow: UnitOfWork, tenant_id: uuid.UUID) -> list[CompiledCampaign]:
        """The tenant's scheduled campaigns, compiled, from a short-lived process cache."""
        cached = self._running.get(tenant_id)
        if cached is not None and cached[0] >= time.monotonic():
            return cached[1]
        found = []
        for row in CampaignStore(uow).with_status(tenant_id, (SCHEDULED,)):
            key = (row["id"], row["revision"])
            compiled = self._compiled.get(key)
            if compiled is None:
                compiled = compile_campaign(
                    row["id"],
                    row["code"],
                    row["revision"],
                    row["status"],
                    row["seed"],
                    row["definition"],
                )
                self._compiled[key] = compiled
            found.append(compiled)
        self._running[tenant_id] = (time.monotonic() + DIRECTORY_TTL_SECONDS, found)
        return found

    def _forget(self, tenant_id: uuid.UUID) -> None:
        self._running.pop(tenant_id, None)

    def _row(
        self, store: CampaignStore, tenant_id: uuid.UUID, code: str, lock: bool = False
    ) -> dict[str, Any]:
        row = store.by_code(tenant_id, code, lock=lock)
        if row is None:
            raise NotFound("Campaign not found.", code="campaign_not_found")
        return row

    def _status(self, tenant: Tenant, row: dict[str, Any], now: datetime) -> str:
        schedule = row["definition"].get("schedule")
        span = None
        if schedule is not None:
            fields, _ = parse_fields(row["definition"])
            assert fields.schedule is not None
            span = window(fields.schedule, tenant.timezone)
        return effective_status(row["status"], span, now)

    def _view(self, uow: UnitOfWork, tenant: Tenant, row: dict[str, Any]) -> dict[str, Any]:
        fields, _ = parse_fields(row["definition"])
        span = window(fields.schedule, tenant.timezone) if fields.schedule else None
        view: dict[str, Any] = {
            "id": str(row["id"]),
            "code": row["code"],
            "status": effective_status(row["status"], span, self.clock.now()),
            "stored_status": row["status"],
            "revision": row["revision"],
            **row["definition"],
            "starts_at": span[0].isoformat() if span else None,
            "ends_at": span[1].isoformat() if span else None,
            "created_at": row["created_at"].isoformat(),
            "updated_at": row["updated_at"].isoformat(),
        }
        if fields.audience.kind == "members":
            view["members"] = CampaignStore(uow).count_members(tenant.id, row["id"])
        return view


def _normal(fields: CampaignFields) -> dict[str, Any]:
    """The definition as stored: every field, defaults filled in, unset options left out
    (so the same campaign written twice compares equal)."""
    return fields.model_dump(mode="json", exclude_none=True)


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _slot_count(cap: int) -> int:
    """Small budgets get fewer slots: a slot below one unit could never be used."""
    return max(1, min(SLOTS, cap))


def _slot_row(
    tenant_id: uuid.UUID, campaign_id: uuid.UUID, key: BudgetKey, slot: int, cap: int
) -> dict[str, Any]:
    kind, scope = key
    return {
        "tenant_id": tenant_id,
        "campaign_id": campaign_id,
        "kind": kind,
        "scope": scope,
        "slot": slot,
        "cap": cap,
        "used": 0,
    }


def _new_slots(
    tenant_id: uuid.UUID, campaign_id: uuid.UUID, budgets: dict[BudgetKey, int]
) -> list[dict[str, Any]]:
    return [
        _slot_row(tenant_id, campaign_id, key, slot, part)
        for key, cap in sorted(budgets.items())
        for slot, part in enumerate(split(cap, _slot_count(cap)))
    ]


def _give_back(store: CampaignStore, row: dict[str, Any], status: str, now: datetime) -> bool:
    """Close a live redemption and return what it took to its slots; False when it was
    closed already."""
    if not store.close(row["tenant_id"], row["id"], status, now):
        return False
    for kind, scope, slot, amount in sorted(tuple(a) for a in row["allocations"]):
        store.give_back(row["tenant_id"], row["campaign_id"], kind, scope, slot, amount)
    return True


def _arm(row: dict[str, Any] | None) -> dict[str, Any]:
    row = row or {"members": 0, "buyers": 0, "purchases": 0, "spend": 0}
    members = row["members"]
    per = Decimal(row["purchases"]) / members if members else Decimal(0)
    return {
        **row,
        "spend_per_member": row["spend"] // members if members else 0,
        "purchases_per_member": str(per.quantize(Decimal("0.01"), ROUND_HALF_UP)),
    }


# ---- the till ---------------------------------------------------------------------------
@dataclass
class _Offer:
    campaign: CompiledCampaign
    program: str


@dataclass
class _Pending:
    """What ``extra_rules`` decided for one receipt, for ``adjust`` to finish."""

    request: Any
    considered: dict[str, str | None]  # code -> why not offered (None: offered)
    campaigns: dict[str, CompiledCampaign]
    offers: list[_Offer]
    draws: list[tuple[CompiledCampaign, str]]  # the member's control-group draws
    snapshot: Snapshot
    held: set[tuple[uuid.UUID, str, str, int]] = field(default_factory=set)


def _gated(when: ReceiptCondition, allowed: Gate) -> ReceiptCondition:
    """The rule's condition, and the campaign's own: outlet, outlet budget left."""

    def test(ctx: Context, lines: Sequence[Line]) -> bool:
        return allowed(ctx) and when.test(ctx, lines)

    gap = None
    if when.gap is not None:
        inner = when.gap

        def gap_of(ctx: Context, lines: Sequence[Line]) -> Gap | None:
            return inner(ctx, lines) if allowed(ctx) else None

        gap = gap_of
    return ReceiptCondition(test, when.keys, gap)


class CampaignHook(PurchaseHook):
    """Offers the matching campaigns' rules; takes their budgets when the receipt is
    written. Anonymous receipts get the campaigns for everyone without per-member limits
    (they cannot be counted per member, nor drawn for a control group)."""

    anonymous_too = True

    def __init__(self, service: CampaignService) -> None:
        self.service = service
        self._pending: weakref.WeakKeyDictionary[Any, dict[int, _Pending]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    # ---- before evaluation -------------------------------------------------------------
    def extra_rules(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        member: dict[str, Any] | None,
        facts: MemberFacts | None,
        request: ReceiptInput,
        moment: datetime,
        programs: Sequence[CompiledProgram],
    ) -> list[tuple[str, CompiledRule]]:
        running = self.service.running(uow, tenant.id)
        if not running or not programs:
            return []
        live = []
        for c in running:
            f = c.fields
            if f.schedule is None:
                continue
            start, end = window(f.schedule, tenant.timezone)
            if not start <= moment < end:
                continue
            if f.channels is not None and request.channel not in f.channels:
                continue
            live.append(c)
        if not live:
            return []
        store = CampaignStore(uow)
        member_id: uuid.UUID | None = member["id"] if member is not None else None
        listed: set[uuid.UUID] = set()
        if member_id is not None:
            listed = store.listed(
                tenant.id, member_id, [c.id for c in live if c.fields.audience.kind == "members"]
            )
        considered: dict[str, str | None] = {}
        draws: list[tuple[CompiledCampaign, str]] = []
        eligible: list[CompiledCampaign] = []
        for c in live:
            f = c.fields
            if member_id is None:
                if f.audience.kind != "everyone" or f.limits.per_member:
                    continue
            elif not in_audience(f.audience, facts, c.id in listed):
                continue
            if member_id is not None and f.control_group is not None:
                arm = (
                    "control"
                    if held_out(c.seed, str(member_id), f.control_group.percent)
                    else "exposed"
                )
                draws.append((c, arm))
                if arm == "control":
                    considered[c.code] = "control_group"
                    continue
            eligible.append(c)
        snapshot: Snapshot = {}
        for s in store.slots(tenant.id, [c.id for c in eligible]):
            snapshot.setdefault((s["campaign_id"], s["kind"], s["scope"]), []).append(
                (s["slot"], s["cap"] - s["used"])
            )
        day = local_day(moment, tenant.timezone)
        ready = []
        for c in eligible:
            if _exhausted(c, snapshot, OVERALL):
                considered[c.code] = "budget_exhausted"
            elif member_id is not None and _member_limit_reached(
                store, tenant.id, c, member_id, day
            ):
                considered[c.code] = "member_limit"
            else:
                ready.append(c)
        chosen = set(choose([(c.code, c.fields.stacking) for c in ready]))
        codes = [p.code for p in programs]
        offers = []
        for c in sorted(ready, key=lambda c: order_key(c.code, c.fields.stacking)):
            program = c.fields.program or codes[0]
            if c.code not in chosen:
                considered[c.code] = "not_combinable"
            elif program not in codes:
                considered[c.code] = "program_not_in_force"
            else:
                considered[c.code] = None
                offers.append(_Offer(c, program))
        if not considered:
            return []
        pending = _Pending(
            request,
            considered,
            {c.code: c for c in live},
            offers,
            draws,
            snapshot,
        )
        with self._lock:
            self._pending.setdefault(uow, {})[id(request)] = pending
        rules: list[tuple[str, CompiledRule]] = []
        for offer in offers:
            gate = _outlet_gate(offer.campaign, snapshot)
            rules += [
                (offer.program, replace(r, when=_gated(r.when, gate))) for r in offer.campaign.rules
            ]
        return rules

    # ---- after evaluation --------------------------------------------------------------
    def adjust(self, uow: UnitOfWork, found: Evaluated, request: ReceiptInput) -> None:
        with self._lock:
            pending = self._pending.get(uow, {}).pop(id(request), None)
        if pending is None or pending.request is not request or found.context is None:
            return
        tenant = found.tenant
        store = CampaignStore(uow)
        outlet_code = found.outlet["code"]
        member_id: uuid.UUID | None = found.member["id"] if found.member is not None else None
        day = local_day(found.occurred_at, tenant.timezone)
        states = (
            store.states(tenant.id, [o.campaign.id for o in pending.offers])
            if found.writing
            else {}
        )
        dropped: dict[str, str] = {}
        taken: dict[str, list[Allocation]] = {}
        while True:
            taken = {}
            failed: tuple[str, str] | None = None
            per = shares(found.evaluation)
            for offer in pending.offers:
                c = offer.campaign
                share = per.get(c.code)
                if c.code in dropped or share is None:
                    continue
                reason, points = self._check(store, found, c, share, states, member_id, day)
                if reason is None:
                    wanted = costs(c.fields.budgets, outlet_code, points, share.discount)
                    if found.writing:
                        got = self._consume(store, tenant.id, c, wanted, pending)
                        if got is None:
                            reason = "budget_exhausted"
                        else:
                            taken[c.code] = got
                    elif not _fits(c, wanted, pending.snapshot):
                        reason = "budget_exhausted"
                if reason is not None:
                    failed = (c.code, reason)
                    break
            if failed is None:
                break
            for code, got in taken.items():  # this pass's takes: the receipt changes
                campaign = pending.campaigns[code]
                for kind, scope, slot, amount in got:
                    store.give_back(tenant.id, campaign.id, kind, scope, slot, amount)
            dropped[failed[0]] = failed[1]
            _evaluate_without(found, request, dropped)
        self._finish(uow, store, found, pending, dropped, taken, member_id, day)

    def _check(
        self,
        store: CampaignStore,
        found: Evaluated,
        c: CompiledCampaign,
        share: Share,
        states: dict[uuid.UUID, tuple[str, int]],
        member_id: uuid.UUID | None,
        day: date,
    ) -> tuple[str | None, int]:
        """Why the applied campaign cannot stay on the receipt (None: it can), and its
        points after the per-receipt cut."""
        if found.writing and states.get(c.id) != (SCHEDULED, c.revision):
            return "changed", 0
        limit = c.fields.limits.per_receipt
        if limit.discount is not None and share.discount > limit.discount:
            return "receipt_limit", 0
        points = share.points
        if limit.points is not None and points > limit.points:
            cap_points(found.evaluation, c.code, limit.points, _name(c))
            points = limit.points
        if member_id is not None:
            for rule in c.fields.limits.per_member:
                count, got, given = store.usage(
                    found.tenant.id, c.id, member_id, period_start(rule.period, day)
                )
                if (
                    (rule.redemptions is not None and count + 1 > rule.redemptions)
                    or (rule.points is not None and got + points > rule.points)
                    or (rule.discount is not None and given + share.discount > rule.discount)
                ):
                    return "member_limit", points
        return None, points

    def _consume(
        self,
        store: CampaignStore,
        tenant_id: uuid.UUID,
        c: CompiledCampaign,
        wanted: dict[BudgetKey, int],
        pending: _Pending,
    ) -> list[Allocation] | None:
        """Take the receipt's amounts from every budget (in key order), or nothing."""
        got: list[Allocation] = []
        for key, amount in sorted(wanted.items()):
            part = self._take(store, tenant_id, c, key, amount, pending)
            if part is None:
                for kind, scope, slot, given in got:
                    store.give_back(tenant_id, c.id, kind, scope, slot, given)
                return None
            got += [(key[0], key[1], slot, n) for slot, n in part]
        return got

    def _take(
        self,
        store: CampaignStore,
        tenant_id: uuid.UUID,
        c: CompiledCampaign,
        key: BudgetKey,
        amount: int,
        pending: _Pending,
    ) -> list[tuple[int, int]] | None:
        """One slot that can hold the amount, picked at random among those the snapshot
        says can (slots this transaction holds already first); else, near the end of the
        budget, several slots locked in order."""
        kind, scope = key
        snap = pending.snapshot.get((c.id, kind, scope), [])
        fitting = [slot for slot, left in snap if left >= amount]
        _random.shuffle(fitting)
        fitting.sort(key=lambda slot: (c.id, kind, scope, slot) not in pending.held)
        for slot in fitting:
            if store.take(tenant_id, c.id, kind, scope, slot, amount):
                pending.held.add((c.id, kind, scope, slot))
                return [(slot, amount)]
        rows = store.lock_budget(tenant_id, c.id, kind, scope)
        pending.held |= {(c.id, kind, scope, r["slot"]) for r in rows}
        plan = plan_take([(r["slot"], r["cap"] - r["used"]) for r in rows], amount)
        if plan is None:
            return None
        done: list[tuple[int, int]] = []
        for slot, part in plan:
            if not store.take(tenant_id, c.id, kind, scope, slot, part):  # locked: cannot be
                for back, n in done:
                    store.give_back(tenant_id, c.id, kind, scope, back, n)
                return None
            done.append((slot, part))
        return done

    def _finish(
        self,
        uow: UnitOfWork,
        store: CampaignStore,
        found: Evaluated,
        pending: _Pending,
        dropped: dict[str, str],
        taken: dict[str, list[Allocation]],
        member_id: uuid.UUID | None,
        day: date,
    ) -> None:
        """Record what the receipt got (when writing) and tell the till."""
        tenant = found.tenant
        now = self.service.clock.now()
        per = shares(found.evaluation)
        answer = []
        for code, reason in pending.considered.items():
            c = pending.campaigns[code]
            share = per.get(code)
            why = dropped.get(code, reason)
            if why is None and (share is None or not share.applied):
                # The outlet gate (``_outlet_gate``) kept the rules off an outlet whose own
                # budget was already spent: say so, not "conditions".
                spent = _spent_outlets(c, pending.snapshot)
                why = "budget_exhausted" if found.outlet["code"] in spent else "conditions"
            entry: dict[str, Any] = {
                "code": code,
                "name": _name(c),
                "applied": why is None,
                "points": share.points if share and why is None else 0,
                "discount": share.discount if share and why is None else 0,
                "reason": why,
                "reason_text": REASONS.get(why) if why else None,
            }
            if why is None and found.writing:
                redemption = new_id()
                store.insert_redemption(
                    {
                        "id": redemption,
                        "tenant_id": tenant.id,
                        "campaign_id": c.id,
                        "receipt_id": None,
                        "member_id": member_id,
                        "outlet_id": found.outlet["id"],
                        "status": "reserved",
                        "points": entry["points"],
                        "discount": entry["discount"],
                        "local_day": day,
                        "occurred_at": found.occurred_at,
                        "allocations": [list(a) for a in taken.get(code, [])],
                        "created_at": now,
                        "closed_at": None,
                    }
                )
                entry["redemption_id"] = str(redemption)
            answer.append(entry)
        if found.writing and member_id is not None:
            for c, arm in pending.draws:
                if c.fields.outlets is None or found.outlet["code"] in c.fields.outlets:
                    store.assign(tenant.id, c.id, member_id, arm, now)
        answer.sort(
            key=lambda e: order_key(e["code"], pending.campaigns[e["code"]].fields.stacking)
        )
        found.extras["campaigns"] = answer

    # ---- after writing -----------------------------------------------------------------
    def on_confirmed(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        receipt: dict[str, Any],
        lines: list[dict[str, Any]],
        now: datetime,
    ) -> dict[str, Any]:
        ids = [
            uuid.UUID(c["redemption_id"])
            for c in (receipt.get("result") or {}).get("campaigns", [])
            if c.get("redemption_id")
        ]
        CampaignStore(uow).confirm(tenant.id, ids, receipt["id"], now)
        return {}

    def on_refunded(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        receipt: dict[str, Any],
        refund: dict[str, Any],
        now: datetime,
    ) -> dict[str, Any]:
        """A cancelled receipt never happened: its campaigns get their budgets back and the
        member's limits forget it. A refund gives nothing back (the campaign did give)."""
        if refund.get("kind") != "cancel":
            return {}
        store = CampaignStore(uow)
        for row in store.of_receipt(tenant.id, receipt["id"]):
            _give_back(store, row, "cancelled", now)
        return {}


def _name(c: CompiledCampaign) -> dict[str, str]:
    return {"ru": c.fields.name.ru, "en": c.fields.name.en}


def _left(c: CompiledCampaign, snapshot: Snapshot, key: BudgetKey) -> int:
    return sum(max(left, 0) for _slot, left in snapshot.get((c.id, *key), []))


def _exhausted(c: CompiledCampaign, snapshot: Snapshot, scope: str) -> bool:
    """Whether any of the campaign's budgets in ``scope`` has nothing left (a budget
    without slots counts as spent: fail closed)."""
    return any(_left(c, snapshot, key) <= 0 for key in caps(c.fields.budgets) if key[1] == scope)


def _fits(c: CompiledCampaign, wanted: dict[BudgetKey, int], snapshot: Snapshot) -> bool:
    return all(_left(c, snapshot, key) >= amount for key, amount in wanted.items())


def _member_limit_reached(
    store: CampaignStore, tenant_id: uuid.UUID, c: CompiledCampaign, member_id: uuid.UUID, day: date
) -> bool:
    """Whether a per-member limit leaves nothing for another receipt (checked before the
    evaluation, so a spent campaign does not keep others off the receipt)."""
    for rule in c.fields.limits.per_member:
        count, points, discount = store.usage(
            tenant_id, c.id, member_id, period_start(rule.period, day)
        )
        if (
            (rule.redemptions is not None and count >= rule.redemptions)
            or (rule.points is not None and points >= rule.points and rule.points > 0)
            or (rule.discount is not None and discount >= rule.discount and rule.discount > 0)
        ):
            return True
    return False


def _spent_outlets(c: CompiledCampaign, snapshot: Snapshot) -> set[str]:
    """Outlets whose own budget of the campaign had nothing left in the snapshot."""
    return {
        outlet
        for key in caps(c.fields.budgets)
        if (outlet := scope_outlet(key[1])) is not None and _left(c, snapshot, key) <= 0
    }


def _outlet_gate(c: CompiledCampaign, snapshot: Snapshot) -> Gate:
    """A test of the receipt's context: the campaign's outlets, and outlets whose own
    budget is spent."""
    outlets = set(c.fields.outlets) if c.fields.outlets is not None else None
    spent = _spent_outlets(c, snapshot)

    def allowed(ctx: Context) -> bool:
        code = ctx.outlet_code or ""
        return (outlets is None or code in outlets) and code not in spent

    return allowed


def _evaluate_without(found: Evaluated, request: ReceiptInput, dropped: dict[str, str]) -> None:
    """Evaluate the receipt again without the dropped campaigns' rules, as the till does."""
    prefixes = tuple(rule_prefix(code) for code in dropped)
    found.programs = [
        replace(p, rules=tuple(r for r in p.rules if not r.id.startswith(prefixes)))
        for p in found.programs
    ]
    assert found.context is not None
    evaluation = evaluate(
        found.programs,
        found.source_lines,
        found.context,
        redeem=request.redeem_points,
        balances=found.balances,
        currency=found.tenant.currency,
    )
    if found.member is None:  # as the till does for anonymous receipts
        for line in evaluation.lines:
            line.points_earned = {}
        evaluation.earned_by_program = {code: 0 for code in evaluation.earned_by_program}
        evaluation.applied = [a for a in evaluation.applied if a.kind not in POINTS_EFFECTS]
    found.evaluation = evaluation


class CampaignMemberHook(MemberHook):
    """A merge gives the duplicate's campaign redemptions to the survivor (per-member
    limits count them: a merge never resets a limit) and puts the survivor on the lists
    the duplicate was on. Control-group draws are left as drawn."""

    def __init__(self, service: CampaignService) -> None:
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
        redemptions, listed = CampaignStore(uow).move_member(tenant.id, duplicate_id, survivor_id)
        if redemptions or listed:
            audit_merge(
                uow,
                tenant,
                actor,
                "campaign.member_merged",
                survivor_id,
                duplicate_id,
                now,
                redemptions=redemptions,
                lists=listed,
            )
