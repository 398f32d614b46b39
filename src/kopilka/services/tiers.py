"""Multi-level statuses (tiers): qualification at the till, upgrades at once, downgrades at
the end of the period (with grace), manual and imported tiers, progress and history.

* The till records what each receipt brings (money paid, one purchase, points earned) on the
  member's day in ``tier_qualification`` and refunds take it back from that same day; the
  receipt that crosses a threshold upgrades the member at once (and may itself be evaluated
  at the new level, if the program says so).
* The nightly step ``tiers_evaluated`` sums the window per member with one GROUP BY and
  judges everyone at once in SQL (see ``adapters/db/mechanics/tiers.py``): an evaluation
  point (e.g. 1 January) is evaluated once, recorded in ``tier_runs``; the daily sweep only
  acts on states (a grace that ended, an upgrade missed), so a second run finds nothing.
* ``member_facts`` gives the rules engine the member's tier, so benefits stay in the rules:
  ``when: {tier_in: [gold]}``, ``redemption.max_percent_by_tier``.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kopilka.adapters.db.mechanics.tiers import (
    Ladder,
    RunParams,
    TierStore,
    delete_tier,
    merge_history,
    merge_qualification,
    move_tier,
    tier_rows,
)
from kopilka.clock import Clock
from kopilka.domain.errors import BusinessRuleViolation, ErrorCollector, Forbidden, NotFound
from kopilka.domain.members.card_numbers import is_valid_number
from kopilka.domain.members.phones import InvalidPhone, normalize_phone
from kopilka.domain.rules.document import CompiledProgram
from kopilka.domain.rules.facts import MemberFacts
from kopilka.domain.tiers import explain, levels, periods
from kopilka.domain.tiers.settings import TierSettings
from kopilka.ids import new_id
from kopilka.services.context import Actor, Role, Tenant, load_tenant
from kopilka.services.idempotency import remember, replay_or_claim, request_hash
from kopilka.services.members import MemberHook
from kopilka.services.ports import UnitOfWork, UnitOfWorkFactory
from kopilka.services.programs import ProgramService
from kopilka.services.purchase_hooks import PurchaseHook
from kopilka.services.views import View

if TYPE_CHECKING:
    from kopilka.services.purchases import Evaluated

JOB_ACTOR = "job:scheduler"
LEGACY_ATTRIBUTE = "tier"  # members.attributes.tier, the tier before this mechanic
MAX_LOCK_DAYS = 3660  # about ten years
EVALUATION = "evaluation"


# ---- views -------------------------------------------------------------------------------
class TierLevelView(View):
    code: str
    name: dict[str, str]
    threshold: int | None
    keep_threshold: int | None


class QualificationView(View):
    metric: str
    value: int
    first_day: date
    last_day: date


class NextLevelView(View):
    code: str
    name: dict[str, str]
    threshold: int
    remaining: int


class KeepView(View):
    """What keeps the current level at the next evaluation (or by the end of a grace)."""

    needed: int
    counted: int
    remaining: int
    by: date


class GraceView(View):
    until: date  # the last day of the grace
    pending_tier: str
    value: int | None  # what the evaluated period brought


class TierStatusView(View):
    member_id: uuid.UUID
    program: str
    tier: TierLevelView
    since: datetime | None
    source: str  # auto, manual, import, or "default" (no row yet: the base level)
    locked_until: date | None
    currency: str | None  # of money amounts (metric "spent")
    qualification: QualificationView
    next: NextLevelView | None
    keep: KeepView | None
    grace: GraceView | None
    next_evaluation: date
    message: dict[str, str]


class TierHistoryItem(View):
    id: uuid.UUID
    program: str
    from_tier: str | None
    to_tier: str
    reason: str
    metric: str | None
    value: int | None
    needed: int | None
    grace_until: date | None
    locked_until: date | None
    note: str | None
    actor: str
    at: datetime
    explanation: dict[str, str]


@dataclass
class TierImportReport:
    rows: int = 0
    changed: int = 0
    unchanged: int = 0
    errors: list[tuple[int, str, str]] = field(default_factory=list)  # line, column, message


# ---- helpers -----------------------------------------------------------------------------
def tier_programs(programs: list[CompiledProgram]) -> list[CompiledProgram]:
    """The programs with a tiers section, by code (the first one gives ``facts.tier``)."""
    return [p for p in programs if p.settings.tiers is not None]


def _settings(program: CompiledProgram) -> TierSettings:
    settings = program.settings.tiers
    assert settings is not None
    return settings


def contribution(metric: str, total_pay: int, points: int) -> int:
    """What one receipt adds to the qualification."""
    return {"spent": total_pay, "purchases": 1, "points": points}[metric]


def _merit(row: dict[str, Any], settings: TierSettings | None) -> tuple[int, bool, date, float]:
    """How good a member's tier row is, for a merge: the higher level, then not in a grace,
    then the later lock, then the longer held."""
    index = settings.index(row["tier"]) if settings is not None else -1
    locked = row["locked_until"] or date.min
    return index, row["pending_tier"] is None, locked, -row["since"].timestamp()


def _legacy_tier(member: dict[str, Any] | None, settings: TierSettings) -> str | None:
    attrs = (member or {}).get("attributes") or {}
    value = attrs.get(LEGACY_ATTRIBUTE)
    return value if isinstance(value, str) and settings.index(value) >= 0 else None


class TierService:
    def __init__(
        self, uow_factory: UnitOfWorkFactory, clock: Clock, programs: ProgramService
    ) -> None:
        self.uow_factory = uow_factory
        self.clock = clock
        self.programs = programs
        self.purchase_hook = TierPurchaseHook(self)
        self.member_hook = TierMemberHook(self)

    # ---- programs ----------------------------------------------------------------------
    def _program(
        self, uow: UnitOfWork, tenant_id: uuid.UUID, at: datetime, code: str | None
    ) -> CompiledProgram:
        found = tier_programs(self.programs.in_force(uow, tenant_id, at))
        if code is not None:
            found = [p for p in found if p.code == code]
        if not found:
            raise BusinessRuleViolation(
                "No program with tiers is in force"
                + (f" under the code {code!r}." if code else "."),
                code="tiers_not_configured",
            )
        return found[0]

    def _member(
        self, uow: UnitOfWork, tenant_id: uuid.UUID, member_id: uuid.UUID
    ) -> dict[str, Any]:
        member = uow.directory.member(tenant_id, member_id)
        if member is None or member["status"] in ("merged", "erased"):
            raise NotFound("Member not found.", code="member_not_found")
        return member

    # ---- reads -------------------------------------------------------------------------
    def status(
        self, actor: Actor, member_id: uuid.UUID, program: str | None = None
    ) -> TierStatusView:
        """The tier, the progress to the next one and what keeps it."""
        with self.uow_factory(write=False) as uow:
            member = self._member(uow, actor.tenant_id, member_id)
            tenant = load_tenant(uow, actor.tenant_id)
            now = self.clock.now()
            chosen = self._program(uow, tenant.id, now, program)
            return self._status(uow, tenant, member, chosen, now)

    def _status(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        member: dict[str, Any],
        program: CompiledProgram,
        now: datetime,
    ) -> TierStatusView:
        settings = _settings(program)
        store = TierStore(uow)
        row = store.get(tenant.id, program.code, member["id"])
        code = row["tier"] if row else (_legacy_tier(member, settings) or settings.base.code)
        today = periods.local_day(now, tenant.timezone)
        first, last = periods.window(settings, today)
        value = store.qualification(tenant.id, member["id"], settings.metric, first, last)
        index = settings.index(code)
        level = settings.level(code)
        names = level.names if level else {"ru": code, "en": code}
        upcoming = periods.next_evaluation(settings, today)
        next_view = None
        if index + 1 < len(settings.levels):
            nxt = settings.levels[index + 1]
            next_view = NextLevelView(
                code=nxt.code,
                name=nxt.names,
                threshold=nxt.threshold,
                remaining=max(0, nxt.threshold - value),
            )
        grace = None
        if row and row["pending_tier"] and row["grace_until"]:
            grace = GraceView(
                until=row["grace_until"],
                pending_tier=row["pending_tier"],
                value=row["pending_value"],
            )
        locked_until = row["locked_until"] if row else None
        keep = None
        if level is not None and index > 0 and not (locked_until and locked_until >= upcoming):
            if grace is not None:  # back above the keep threshold in the window, by its end
                counted, by = value, grace.until
            else:  # the window judged at the next evaluation, as far as it has happened
                judged_first, _ = periods.judged_window(settings, upcoming)
                counted = (
                    value
                    if judged_first == first  # a calendar window: the same days
                    else store.qualification(
                        tenant.id, member["id"], settings.metric, judged_first, today
                    )
                )
                by = upcoming - timedelta(days=1)
            keep = KeepView(
                needed=level.keep, counted=counted, remaining=max(0, level.keep - counted), by=by
            )
        calendar_end = None
        if settings.window.calendar_period is not None:
            calendar_end = periods.next_period_start(
                today, settings.window.calendar_period
            ) - timedelta(days=1)
        message = explain.progress_message(
            explain.Progress(
                metric=settings.metric,
                current=names,
                next_name=next_view.name if next_view else None,
                next_gap=next_view.remaining if next_view else None,
                keep_gap=keep.remaining if keep else None,
                keep_value=keep.counted if keep else None,
                keep_needed=keep.needed if keep else None,
                by=keep.by if keep else None,
                next_by=calendar_end,
                grace_until=grace.until if grace else None,
                today=today,
            ),
            tenant.currency,
        )
        return TierStatusView(
            member_id=member["id"],
            program=program.code,
            tier=TierLevelView(
                code=code,
                name=names,
                threshold=level.threshold if level else None,
                keep_threshold=level.keep if level else None,
            ),
            since=row["since"] if row else None,
            source=row["source"] if row else "default",
            locked_until=locked_until,
            currency=tenant.currency if settings.metric == "spent" else None,
            qualification=QualificationView(
                metric=settings.metric, value=value, first_day=first, last_day=last
            ),
            next=next_view,
            keep=keep,
            grace=grace,
            next_evaluation=upcoming,
            message=message,
        )

    def history(
        self,
        actor: Actor,
        member_id: uuid.UUID,
        before: uuid.UUID | None,
        limit: int,
        program: str | None = None,
    ) -> list[TierHistoryItem]:
        """Tier changes (and evaluations that kept the tier), newest first, explained."""
        with self.uow_factory(write=False) as uow:
            self._member(uow, actor.tenant_id, member_id)
            tenant = load_tenant(uow, actor.tenant_id)
            rows = TierStore(uow).history(tenant.id, member_id, before, limit, program)
            settings = {
                p.code: _settings(p)
                for p in tier_programs(self.programs.in_force(uow, tenant.id, self.clock.now()))
            }
        return [self._history_item(r, settings.get(r["program"]), tenant.currency) for r in rows]

    def _history_item(
        self, row: dict[str, Any], settings: TierSettings | None, currency: str
    ) -> TierHistoryItem:
        def names(code: str | None) -> dict[str, str] | None:
            if code is None:
                if settings is None:
                    return None
                code = settings.base.code
            level = settings.level(code) if settings else None
            return level.names if level else {"ru": code, "en": code}

        to_names = names(row["to_tier"])
        assert to_names is not None
        explanation = explain.explain_change(
            explain.Change(
                reason=row["reason"],
                from_name=names(row["from_tier"]),
                to_name=to_names,
                metric=row["metric"] or "spent",
                value=row["value"],
                needed=row["needed"],
                grace_until=row["grace_until"],
                locked_until=row["locked_until"],
                note=row["note"],
            ),
            currency,
        )
        return TierHistoryItem(
            id=row["id"],
            program=row["program"],
            from_tier=row["from_tier"],
            to_tier=row["to_tier"],
            reason=row["reason"],
            metric=row["metric"],
            value=row["value"],
            needed=row["needed"],
            grace_until=row["grace_until"],
            locked_until=row["locked_until"],
            note=row["note"],
            actor=row["actor"],
            at=row["at"],
            explanation=explanation,
        )

    # ---- writes: by hand and by import ---------------------------------------------------
    def set_tier(
        self,
        actor: Actor,
        member_id: uuid.UUID,
        *,
        tier: str,
        reason: str,
        locked_until: date | None = None,
        program: str | None = None,
        idempotency_key: str | None = None,
    ) -> TierStatusView:
        """Set the member's tier by hand, with a reason; ``locked_until`` keeps it from being
        lowered by evaluations up to that day. Setting the same again changes nothing."""
        digest = request_hash(
            "tier.set",
            {
                "member": member_id,
                "tier": tier,
                "reason": reason,
                "locked": locked_until,
                "program": program,
            },
        )
        with self.uow_factory(write=True) as uow:
            stored = replay_or_claim(uow, actor.tenant_id, idempotency_key, digest)
            if stored is not None:
                return TierStatusView.model_validate(stored)
            member = self._member(uow, actor.tenant_id, member_id)
            tenant = load_tenant(uow, actor.tenant_id)
            now = self.clock.now()
            chosen = self._program(uow, tenant.id, now, program)
            errors = ErrorCollector()
            self._check_choice(errors, (), _settings(chosen), tier, locked_until, tenant, now)
            errors.raise_if_any("The tier cannot be set.")
            self._assign(
                uow,
                tenant,
                actor,
                member,
                chosen,
                tier,
                now,
                source="manual",
                note=reason,
                locked_until=locked_until,
            )
            view = self._status(uow, tenant, member, chosen, now)
            remember(uow, tenant.id, idempotency_key, digest, view.to_json(), now)
            uow.commit()
            return view

    def _check_choice(
        self,
        errors: ErrorCollector,
        path: tuple[str | int, ...],
        settings: TierSettings,
        tier: str,
        locked_until: date | None,
        tenant: Tenant,
        now: datetime,
    ) -> None:
        if settings.index(tier) < 0:
            errors.add(
                (*path, "tier"),
                f"Unknown tier {tier!r}; the program has {', '.join(settings.codes)}.",
                "unknown_tier",
            )
        if locked_until is not None:
            today = periods.local_day(now, tenant.timezone)
            if not today <= locked_until <= today + timedelta(days=MAX_LOCK_DAYS):
                errors.add(
                    (*path, "locked_until"),
                    "A day from today up to ten years ahead.",
                    "invalid_locked_until",
                )

    def _assign(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        member: dict[str, Any],
        program: CompiledProgram,
        tier: str,
        now: datetime,
        *,
        source: str,
        note: str | None,
        locked_until: date | None,
    ) -> bool:
        """Give the member ``tier`` (manual or import); False when it is already so."""
        store = TierStore(uow)
        store.lock_tenant(tenant.id, exclusive=False)
        row = store.get(tenant.id, program.code, member["id"], lock=True)
        if (
            row is not None
            and row["tier"] == tier
            and row["source"] == source
            and row["locked_until"] == locked_until
            and row["pending_tier"] is None
        ):
            return False
        store.save(
            {
                "tenant_id": tenant.id,
                "program": program.code,
                "member_id": member["id"],
                "tier": tier,
                "since": row["since"] if row is not None and row["tier"] == tier else now,
                "source": source,
                "pending_tier": None,
                "pending_value": None,
                "grace_until": None,
                "locked_until": locked_until,
                "updated_at": now,
            },
            exists=row is not None,
        )
        reason = "manual" if source == "manual" else "imported"
        self._record(
            uow,
            tenant,
            actor,
            member["id"],
            program,
            now,
            from_tier=row["tier"] if row else None,
            to_tier=tier,
            reason=reason,
            note=note,
            locked_until=locked_until,
        )
        return True

    def _record(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        member_id: uuid.UUID,
        program: CompiledProgram,
        now: datetime,
        *,
        from_tier: str | None,
        to_tier: str,
        reason: str,
        value: int | None = None,
        needed: int | None = None,
        note: str | None = None,
        locked_until: date | None = None,
    ) -> None:
        """A history row and, for a change of tier, a line in the member's audit trail."""
        settings = _settings(program)
        TierStore(uow).add_history(
            {
                "id": new_id(),
                "tenant_id": tenant.id,
                "member_id": member_id,
                "program": program.code,
                "from_tier": from_tier,
                "to_tier": to_tier,
                "reason": reason,
                "metric": settings.metric,
                "value": value,
                "needed": needed,
                "grace_until": None,
                "locked_until": locked_until,
                "note": note,
                "run_id": None,
                "actor": actor.name,
                "at": now,
            }
        )
        action = {
            "upgraded": "tier.upgrade",
            "manual": "tier.set",
            "imported": "tier.import",
            "enrolled": "tier.start",
        }[reason]
        uow.directory.audit(
            tenant.id,
            actor.name,
            action,
            "member",
            member_id,
            {
                "program": program.code,
                "from": from_tier,
                "to": to_tier,
                "reason": reason,
                "value": value,
                "needed": needed,
                "note": note,
                "locked_until": locked_until.isoformat() if locked_until else None,
            },
            now,
        )

    def import_csv(
        self, actor: Actor, path: Path, *, program: str | None = None
    ) -> TierImportReport:
        """Load tiers from a CSV file with a header: one of ``member_id``, ``external_id``,
        ``phone``, ``card`` per row, ``tier``, and optionally ``locked_until`` (YYYY-MM-DD) and
        ``note``. Every row is checked first; with any error nothing is loaded. Rows already
        so are left alone, so loading a file again changes nothing."""
        if actor.role is not Role.ADMIN:
            raise Forbidden("Only an admin may import tiers.", code="admin_only")
        report = TierImportReport()
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            report.errors.append((1, "file", f"cannot read the file as UTF-8: {exc}"))
            return report
        sample = text[:4096]
        delimiter = max((",", ";", "\t"), key=lambda d: sample.split("\n", 1)[0].count(d))
        reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
        header = [h.strip() for h in reader.fieldnames or []]
        identities = [h for h in ("member_id", "external_id", "phone", "card") if h in header]
        if "tier" not in header or not identities:
            report.errors.append(
                (1, "header", "needs a tier column and one of member_id, external_id, phone, card")
            )
            return report
        with self.uow_factory(write=True) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            now = self.clock.now()
            chosen = self._program(uow, tenant.id, now, program)
            settings = _settings(chosen)
            planned: list[tuple[dict[str, Any], str, date | None, str | None]] = []
            for line, raw in enumerate(reader, start=2):
                values = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
                if not any(values.values()):
                    continue
                report.rows += 1
                found = self._import_row(uow, tenant, settings, values, identities, line, report)
                if found is not None:
                    planned.append(found)
            if report.errors:
                return report
            for member, tier, locked, note in planned:
                if self._assign(
                    uow,
                    tenant,
                    actor,
                    member,
                    chosen,
                    tier,
                    now,
                    source="import",
                    note=note,
                    locked_until=locked,
                ):
                    report.changed += 1
                else:
                    report.unchanged += 1
            uow.commit()
        return report

    def _import_row(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        settings: TierSettings,
        values: dict[str, str],
        identities: Sequence[str],
        line: int,
        report: TierImportReport,
    ) -> tuple[dict[str, Any], str, date | None, str | None] | None:
        given = [name for name in identities if values.get(name)]
        if len(given) != 1:
            report.errors.append((line, "member", "give exactly one of " + ", ".join(identities)))
            return None
        name, value = given[0], values[given[0]]
        member = None
        try:
            if name == "member_id":
                member = uow.directory.member(tenant.id, uuid.UUID(value))
            elif name == "external_id":
                member = uow.directory.member_by(tenant.id, "external_id", value)
            elif name == "phone":
                phone = normalize_phone(value, tenant.phone_region)
                member = uow.directory.member_by(tenant.id, "phone", phone)
            elif is_valid_number(tenant.card_scheme, value):
                card = uow.directory.card_by_number(tenant.id, value)
                if card is not None and card["member_id"] is not None:
                    member = uow.directory.member(tenant.id, card["member_id"])
        except (ValueError, InvalidPhone):
            member = None
        if member is None or member["status"] in ("merged", "erased"):
            report.errors.append((line, name, f"no member {value!r}"))
            return None
        locked = None
        if values.get("locked_until"):
            try:
                locked = date.fromisoformat(values["locked_until"])
            except ValueError:
                report.errors.append((line, "locked_until", "a date, YYYY-MM-DD"))
                return None
        errors = ErrorCollector()
        self._check_choice(
            errors, (), settings, values.get("tier", ""), locked, tenant, self.clock.now()
        )
        for err in errors.errors:
            report.errors.append((line, str(err.path[-1]), err.message))
        if errors.errors:
            return None
        note = values.get("note") or None
        return member, values["tier"], locked, note[:500] if note else None

    # ---- the till ------------------------------------------------------------------------
    def facts(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        member: dict[str, Any],
        facts: MemberFacts,
        now: datetime,
    ) -> MemberFacts:
        programs = tier_programs(self.programs.in_force(uow, tenant.id, now))
        if not programs:
            return facts
        settings = _settings(programs[0])
        row = TierStore(uow).get(tenant.id, programs[0].code, member["id"])
        if row is not None:
            return replace(facts, tier=row["tier"])
        # No row yet: the legacy attribute if there is one, else the base level.
        return facts if facts.tier is not None else replace(facts, tier=settings.base.code)

    def receipt_outlook(self, uow: UnitOfWork, found: Evaluated) -> dict[str, Any] | None:
        """What this receipt does to the tier: the qualification after it and the level it
        reaches (``upgrade_to``), from the evaluation as it stands."""
        programs = tier_programs(found.programs)
        if not programs or found.member is None or found.context is None:
            return None
        program = programs[0]
        settings = _settings(program)
        day = periods.local_day(found.occurred_at, found.tenant.timezone)
        first, last = periods.window(settings, day)
        before = TierStore(uow).qualification(
            found.tenant.id, found.member["id"], settings.metric, first, last
        )
        current = found.context.member.tier if found.context.member else None
        return self.outlook(program, before, current, found)

    def outlook(
        self, program: CompiledProgram, before: int, current: str | None, found: Evaluated
    ) -> dict[str, Any]:
        settings = _settings(program)
        ev = found.evaluation
        after = before + contribution(
            settings.metric, ev.total_pay, sum(ev.earned_by_program.values())
        )
        reach = levels.reached(settings, after)
        upgrade = reach > max(settings.index(current), 0)
        return {
            "program": program.code,
            "code": current,
            "qualification_before": before,
            "qualification": after,
            "upgrade_to": settings.levels[reach].code if upgrade else None,
            "receipt_at_new_tier": False,
        }

    def record_purchase(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        receipt: dict[str, Any],
        now: datetime,
    ) -> dict[str, Any]:
        programs = self._receipt_programs(uow, tenant, receipt)
        if not programs:
            return {}
        member_id = receipt["member_id"]
        day = periods.local_day(receipt["occurred_at"], tenant.timezone)
        store = TierStore(uow)
        store.add_qualification(
            tenant.id,
            member_id,
            day,
            spent=receipt["total_pay"],
            purchases=1,
            points=receipt["points_earned"],
        )
        outlook = (receipt.get("result") or {}).get("tier") or {}
        answer: dict[str, Any] = {}
        for program in programs:
            promised = None
            if outlook.get("program") == program.code and outlook.get("receipt_at_new_tier"):
                promised = outlook.get("upgrade_to")
            change = self._upgrade(uow, tenant, actor, member_id, program, day, now, promised)
            answer.setdefault("tier", change)
        return answer

    def _upgrade(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        member_id: uuid.UUID,
        program: CompiledProgram,
        day: date,
        now: datetime,
        promised: str | None,
    ) -> dict[str, Any]:
        """Upgrade at once when the window (this receipt included) reaches a higher level,
        or when the receipt was already evaluated at the level it reaches."""
        settings = _settings(program)
        store = TierStore(uow)
        first, last = periods.window(settings, day)
        value = store.qualification(tenant.id, member_id, settings.metric, first, last)
        row = store.get(tenant.id, program.code, member_id)
        target = levels.reached(settings, value)
        if promised is not None:
            target = max(target, settings.index(promised))

        def current_of(found: dict[str, Any] | None) -> tuple[str, int]:
            if found is not None:
                return found["tier"], settings.index(found["tier"])
            member = uow.directory.member(tenant.id, member_id)
            code = _legacy_tier(member, settings) or settings.base.code
            return code, settings.index(code)

        code, index = current_of(row)
        if target <= index:
            return {
                "program": program.code,
                "code": code,
                "upgraded": False,
                "qualification": value,
            }
        store.lock_tenant(tenant.id, exclusive=False)
        row = store.get(tenant.id, program.code, member_id, lock=True)
        code, index = current_of(row)
        if target <= index:  # the nightly job got there first
            return {
                "program": program.code,
                "code": code,
                "upgraded": False,
                "qualification": value,
            }
        new = settings.levels[target]
        store.save(
            {
                "tenant_id": tenant.id,
                "program": program.code,
                "member_id": member_id,
                "tier": new.code,
                "since": now,
                "source": "auto",
                "pending_tier": None,
                "pending_value": None,
                "grace_until": None,
                "locked_until": row["locked_until"] if row else None,
                "updated_at": now,
            },
            exists=row is not None,
        )
        self._record(
            uow,
            tenant,
            actor,
            member_id,
            program,
            now,
            from_tier=row["tier"] if row else None,
            to_tier=new.code,
            reason="upgraded",
            value=value,
            needed=new.threshold,
        )
        return {
            "program": program.code,
            "code": new.code,
            "previous": code,
            "upgraded": True,
            "qualification": value,
        }

    def record_refund(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        receipt: dict[str, Any],
        refund: dict[str, Any],
        now: datetime,
    ) -> dict[str, Any]:
        """Take the refund off the purchase's day: the money returned, the points taken
        back, and the purchase itself once the receipt is refunded in full. A downgrade
        waits for the evaluation."""
        programs = self._receipt_programs(uow, tenant, receipt)
        if not programs:
            return {}
        member_id = receipt["member_id"]
        lines = uow.commerce.receipt_lines(tenant.id, receipt["id"])
        whole = all(line["refunded_qty"] >= line["qty"] for line in lines)
        day = periods.local_day(receipt["occurred_at"], tenant.timezone)
        store = TierStore(uow)
        store.add_qualification(
            tenant.id,
            member_id,
            day,
            spent=-int(refund["money_to_return"]),
            purchases=-1 if whole else 0,
            points=-(int(refund["points_taken_back"]) + int(refund["shortfall_points"])),
        )
        program = programs[0]
        settings = _settings(program)
        first, last = periods.window(settings, periods.local_day(now, tenant.timezone))
        row = store.get(tenant.id, program.code, member_id)
        return {
            "tier": {
                "program": program.code,
                "code": row["tier"] if row else settings.base.code,
                "qualification": store.qualification(
                    tenant.id, member_id, settings.metric, first, last
                ),
            }
        }

    def _receipt_programs(
        self, uow: UnitOfWork, tenant: Tenant, receipt: dict[str, Any]
    ) -> list[CompiledProgram]:
        """The receipt's own program versions with tiers: a receipt counts (and its refunds
        count against) only if it was made under a program with tiers."""
        return tier_programs(
            [
                self.programs.compiled(uow, tenant.id, code, int(version))
                for code, version in sorted((receipt.get("programs") or {}).items())
            ]
        )

    # ---- enrolment ---------------------------------------------------------------------
    def start(
        self, uow: UnitOfWork, tenant: Tenant, actor: Actor, member_id: uuid.UUID, now: datetime
    ) -> None:
        """A new member starts at the base level (or at a legacy ``attributes.tier``)."""
        programs = tier_programs(self.programs.in_force(uow, tenant.id, now))
        if not programs:
            return
        member = uow.directory.member(tenant.id, member_id)
        store = TierStore(uow)
        for program in programs:
            settings = _settings(program)
            legacy = _legacy_tier(member, settings)
            if store.get(tenant.id, program.code, member_id) is not None:
                continue
            store.save(
                {
                    "tenant_id": tenant.id,
                    "program": program.code,
                    "member_id": member_id,
                    "tier": legacy or settings.base.code,
                    "since": now,
                    "source": "import" if legacy else "auto",
                    "pending_tier": None,
                    "pending_value": None,
                    "grace_until": None,
                    "locked_until": None,
                    "updated_at": now,
                },
                exists=False,
            )
            self._record(
                uow,
                tenant,
                actor,
                member_id,
                program,
                now,
                from_tier=None,
                to_tier=legacy or settings.base.code,
                reason="enrolled",
            )

    # ---- member merge ------------------------------------------------------------------
    def merged(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        survivor_id: uuid.UUID,
        duplicate_id: uuid.UUID,
        now: datetime,
    ) -> None:
        """Fold the duplicate's tiers into the survivor: the qualification days are summed,
        the history moves, and per program the better of the two rows stays (see
        docs/tiers.md, "Member merge"); then the summed window may upgrade at once."""
        store = TierStore(uow)
        store.lock_tenant(tenant.id, exclusive=False)  # not halfway through a nightly run
        merge_qualification(uow, tenant.id, survivor_id, duplicate_id)
        merge_history(uow, tenant.id, survivor_id, duplicate_id)
        in_force = tier_programs(self.programs.in_force(uow, tenant.id, now))
        ladders = {p.code: _settings(p) for p in in_force}
        rows = tier_rows(uow, tenant.id, [survivor_id, duplicate_id])
        survivor_rows = {r["program"]: r for r in rows if r["member_id"] == survivor_id}
        for dup in (r for r in rows if r["member_id"] == duplicate_id):
            code = dup["program"]
            own = survivor_rows.get(code)
            settings = ladders.get(code)
            if own is None:
                move_tier(uow, tenant.id, code, duplicate_id, survivor_id, {"updated_at": now})
                kept = dup
            else:
                kept = max(own, dup, key=lambda r: _merit(r, settings))
                since = min(own["since"], dup["since"]) if own["tier"] == dup["tier"] else None
                values: dict[str, Any] = {"updated_at": now}
                if since is not None:
                    values["since"] = since  # the same level: held since the earlier day
                if kept is dup:
                    delete_tier(uow, tenant.id, code, survivor_id)
                    move_tier(uow, tenant.id, code, duplicate_id, survivor_id, values)
                else:
                    delete_tier(uow, tenant.id, code, duplicate_id)
                    store.save({**own, **values}, exists=True)
            uow.directory.audit(
                tenant.id,
                actor.name,
                "tier.merge",
                "member",
                survivor_id,
                {
                    "program": code,
                    "duplicate": str(duplicate_id),
                    "from": own["tier"] if own is not None else None,
                    "duplicate_tier": dup["tier"],
                    "to": kept["tier"],
                },
                now,
            )
        # The summed window may reach a higher level than either profile had.
        today = periods.local_day(now, tenant.timezone)
        for program in in_force:
            self._upgrade(uow, tenant, actor, survivor_id, program, today, now, None)

    # ---- the nightly job -----------------------------------------------------------------
    def evaluate(self, now: datetime, tenant_id: uuid.UUID | None = None) -> int:
        """The ``tiers_evaluated`` job step: for each tenant and program with tiers, the
        evaluation due (once per evaluation point), then the daily sweep; each tenant in one
        transaction. Returns the history rows written."""
        if tenant_id is not None:
            tenant_ids = [tenant_id]
        else:
            with self.uow_factory(write=False) as uow:
                tenant_ids = [row["id"] for row in uow.directory.list_tenants()]
        written = 0
        for tid in tenant_ids:
            with self.uow_factory(write=True) as uow:
                tenant = load_tenant(uow, tid)
                programs = tier_programs(self.programs.in_force(uow, tid, now))
                if not programs:
                    continue
                store = TierStore(uow)
                store.lock_tenant(tid, exclusive=True)
                for program in programs:
                    written += self._evaluate_program(store, tenant, program, now)
                uow.commit()
        return written

    def _evaluate_program(
        self, store: TierStore, tenant: Tenant, program: CompiledProgram, now: datetime
    ) -> int:
        settings = _settings(program)
        today = periods.local_day(now, tenant.timezone)
        ladder = Ladder(
            codes=settings.codes,
            thresholds=[level.threshold for level in settings.levels],
            keeps=[level.keep for level in settings.levels],
        )
        run_id = new_id()
        ms = run_id.int >> 80  # the id's own millisecond, so history ids sort with others
        written = 0
        point = periods.last_evaluation(settings, today)
        if store.claim_run(tenant.id, program.code, EVALUATION, point, run_id, now):
            first, last = periods.judged_window(settings, point)
            grace = settings.downgrade.grace_days
            changes = store.evaluate_period(
                RunParams(
                    tenant.id,
                    program.code,
                    ladder,
                    settings.metric,
                    first,
                    last,
                    run_id,
                    now,
                    ms,
                    JOB_ACTOR,
                ),
                point=periods.local_midnight(point, tenant.timezone),
                policy=settings.downgrade.policy,
                grace_until=point + timedelta(days=grace - 1) if grace else None,
                locked_after=point,
            )
            store.finish_run(tenant.id, program.code, EVALUATION, point, changes)
            written += changes
        first, last = periods.window(settings, today)
        written += store.sweep(
            RunParams(
                tenant.id,
                program.code,
                ladder,
                settings.metric,
                first,
                last,
                new_id(),
                now,
                ms + 1,
                JOB_ACTOR,
            ),
            today=today,
        )
        return written


class TierPurchaseHook(PurchaseHook):
    """The tiers mechanic at the till."""

    def __init__(self, service: TierService) -> None:
        self.service = service

    def member_facts(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        member: dict[str, Any],
        facts: MemberFacts,
        now: datetime,
    ) -> MemberFacts:
        return self.service.facts(uow, tenant, member, facts, now)

    def revise(self, uow: UnitOfWork, found: Evaluated) -> MemberFacts | None:
        outlook = self.service.receipt_outlook(uow, found)
        if outlook is None:
            return None
        found.extras["tier"] = outlook
        program = next(p for p in found.programs if p.code == outlook["program"])
        member = found.context.member if found.context is not None else None
        if (
            outlook["upgrade_to"] is not None
            and _settings(program).upgrade_applies_to_crossing_receipt
            and member is not None
        ):
            # This very receipt is evaluated again at the level it reaches.
            outlook["receipt_at_new_tier"] = True
            return replace(member, tier=outlook["upgrade_to"])
        return None

    def extras(self, uow: UnitOfWork, found: Evaluated) -> dict[str, Any]:
        earlier = found.extras.get("tier")
        if earlier is None:  # another mechanic revised first: this hook's revise did not run
            outlook = self.service.receipt_outlook(uow, found)
            return {"tier": outlook} if outlook is not None else {}
        # The final evaluation (perhaps at the new level) decides the amounts; the level the
        # receipt was promised stays.
        program = next(p for p in found.programs if p.code == earlier["program"])
        outlook = self.service.outlook(
            program, earlier["qualification_before"], earlier["code"], found
        )
        outlook["receipt_at_new_tier"] = earlier["receipt_at_new_tier"]
        if earlier["receipt_at_new_tier"]:
            outlook["upgrade_to"] = earlier["upgrade_to"]
        return {"tier": outlook}

    def on_confirmed(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        receipt: dict[str, Any],
        lines: list[dict[str, Any]],
        now: datetime,
    ) -> dict[str, Any]:
        return self.service.record_purchase(uow, tenant, actor, receipt, now)

    def on_refunded(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        receipt: dict[str, Any],
        refund: dict[str, Any],
        now: datetime,
    ) -> dict[str, Any]:
        return self.service.record_refund(uow, tenant, receipt, refund, now)


class TierMemberHook(MemberHook):
    """A new member gets a tier row and a first history line; a merge keeps the better
    tier and sums the qualification."""

    def __init__(self, service: TierService) -> None:
        self.service = service

    def on_enrolled(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        member_id: uuid.UUID,
        context: dict[str, Any],
        now: datetime,
    ) -> None:
        self.service.start(uow, tenant, actor, member_id, now)

    def on_merged(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        survivor_id: uuid.UUID,
        duplicate_id: uuid.UUID,
        now: datetime,
    ) -> None:
        self.service.merged(uow, tenant, actor, survivor_id, duplicate_id, now)
