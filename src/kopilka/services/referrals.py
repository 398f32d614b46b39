"""Invite a friend: members' codes and share links, attribution at enrolment, rewards on
enrolment or on the friend's first purchase (pending through its return window, voided if
it is refunded in that window), and the fraud limits.

A referral's life: ``awaiting_purchase`` -> ``pending`` (rewards granted, not yet
spendable) -> ``rewarded`` (window over, final) or ``voided`` (first purchase refunded in the
window). Referrals that never earn: ``blocked`` (shared fingerprint, blocked referrer),
``capped`` (the referrer's monthly cap) and ``inactive`` (no referral program in force).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from kopilka.adapters.db.mechanics.lifecycle import move_awards
from kopilka.adapters.db.mechanics.referrals import (
    ReferralStore,
    merge_codes,
    merge_fingerprints,
    merge_referrals,
    referral_key,
    referrals_with_awards_of,
)
from kopilka.clock import Clock
from kopilka.domain.errors import BusinessRuleViolation, FieldError, NotFound, ValidationFailed
from kopilka.domain.referrals.codes import (
    FINGERPRINT_KIND,
    MAX_FINGERPRINT_VALUE,
    canonical_email,
    fingerprint_digest,
    generate_code,
    normalize_code,
    share_link,
)
from kopilka.domain.referrals.settings import ReferralSettings, Reward
from kopilka.domain.referrals.texts import explain_status, offer
from kopilka.domain.rules.document import CompiledProgram
from kopilka.ids import new_id
from kopilka.services.awards import grant_points, void_award
from kopilka.services.context import Actor, Tenant, load_tenant
from kopilka.services.ledger_book import local_date
from kopilka.services.ledger_ops import proportional
from kopilka.services.members import MemberHook, audit_merge, current_profile, merged_into
from kopilka.services.ports import UnitOfWork, UnitOfWorkFactory
from kopilka.services.programs import ProgramService
from kopilka.services.purchase_hooks import PurchaseHook
from kopilka.services.views import View

STATUSES = (
    "awaiting_purchase",
    "pending",
    "rewarded",
    "voided",
    "blocked",
    "capped",
    "inactive",
)
DEFAULT_CODE_LENGTH = 8
REFERRER_MECHANIC, REFEREE_MECHANIC = "referral", "referee"


class ReferralView(View):
    id: uuid.UUID
    referrer_id: uuid.UUID
    referee_id: uuid.UUID
    status: str
    reason: str | None
    program: str | None
    receipt_id: uuid.UUID | None
    referrer_points: int
    referee_points: int
    created_at: datetime
    rewarded_at: datetime | None
    pending_until: datetime | None
    voided_at: datetime | None
    explanation: dict[str, str]


class ReferralCounts(View):
    referred: int
    awaiting_purchase: int
    pending: int
    rewarded: int
    voided: int
    blocked: int
    capped: int
    inactive: int


class ReferralSummaryView(View):
    member_id: uuid.UUID
    code: str | None
    share_url: str | None
    program: str | None
    offer: dict[str, str] | None
    counts: ReferralCounts
    referred_by: ReferralView | None


def award_key(referee_id: uuid.UUID) -> str:
    """The natural key of both rewards of one referral (on two different members)."""
    return f"referral:{referee_id}"


class ReferralService:
    """Codes, summaries and lists for the API; the hooks the members and till services
    call; the job step."""

    def __init__(
        self, uow_factory: UnitOfWorkFactory, clock: Clock, programs: ProgramService
    ) -> None:
        self.uow_factory = uow_factory
        self.clock = clock
        self.programs = programs
        self.member_hook = _ReferralMemberHook(self)
        self.purchase_hook = _ReferralPurchaseHook(self)

    # ---- reads -------------------------------------------------------------------------
    def summary(self, actor: Actor, member_id: uuid.UUID) -> ReferralSummaryView:
        """The member's code and share link (the code is made on first request if the
        member has none yet), the offer in force, and counts of the member's referrals."""
        now = self.clock.now()
        with self.uow_factory(write=False) as uow:
            member = uow.directory.member(actor.tenant_id, member_id)
            if member is None:
                raise NotFound("Member not found.", code="member_not_found")
            code = ReferralStore(uow).code_of(actor.tenant_id, member_id)
        if code is None and member["status"] in ("active", "blocked"):
            with self.uow_factory(write=True) as uow:
                code = self._ensure_code(uow, actor.tenant_id, member_id, now)
                uow.commit()
        with self.uow_factory(write=False) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            store = ReferralStore(uow)
            program = self._program(uow, tenant.id, now)
            settings = program.settings.referral if program is not None else None
            counts = store.counts(tenant.id, member_id, now)
            own = store.of_referee(tenant.id, member_id)
            return ReferralSummaryView(
                member_id=member_id,
                code=code,
                share_url=share_link(settings.share_url, code) if settings and code else None,
                program=program.code if program is not None else None,
                offer=offer(settings, tenant.currency) if settings is not None else None,
                counts=ReferralCounts(
                    referred=sum(counts.values()), **{s: counts.get(s, 0) for s in STATUSES}
                ),
                referred_by=_view(own, tenant, now) if own is not None else None,
            )

    def referees(
        self,
        actor: Actor,
        member_id: uuid.UUID,
        before: uuid.UUID | None,
        limit: int,
        status: str | None = None,
    ) -> list[ReferralView]:
        """The members this member brought, newest first."""
        now = self.clock.now()
        with self.uow_factory(write=False) as uow:
            if uow.directory.member(actor.tenant_id, member_id) is None:
                raise NotFound("Member not found.", code="member_not_found")
            tenant = load_tenant(uow, actor.tenant_id)
            rows = ReferralStore(uow).of_referrer(
                tenant.id,
                member_id,
                before,
                limit,
                statuses=(status,) if status is not None else None,
                now=now,
            )
            return [_view(row, tenant, now) for row in rows]

    # ---- the job -----------------------------------------------------------------------
    def settle_due(self, now: datetime, tenant_id: uuid.UUID | None = None) -> int:
        """Write down that pending referrals past their return window are rewarded for
        good (reads already show them so; this keeps the stored status true)."""
        with self.uow_factory(write=True) as uow:
            done = ReferralStore(uow).settle_due(now, tenant_id)
            uow.commit()
            return done

    # ---- codes -------------------------------------------------------------------------
    def _program(
        self, uow: UnitOfWork, tenant_id: uuid.UUID, now: datetime
    ) -> CompiledProgram | None:
        """The program whose referral terms apply now: the first in force, by code, that has
        a ``referral`` section."""
        for program in self.programs.in_force(uow, tenant_id, now):
            if program.settings.referral is not None:
                return program
        return None

    def _ensure_code(
        self,
        uow: UnitOfWork,
        tenant_id: uuid.UUID,
        member_id: uuid.UUID,
        now: datetime,
        length: int | None = None,
    ) -> str:
        """The member's code, made now if missing. The member row is locked first so two
        first requests at once make one code."""
        store = ReferralStore(uow)
        uow.directory.member(tenant_id, member_id, lock=True)
        found = store.code_of(tenant_id, member_id)
        if found is not None:
            return found
        if length is None:
            program = self._program(uow, tenant_id, now)
            settings = program.settings.referral if program is not None else None
            length = settings.code_length if settings is not None else DEFAULT_CODE_LENGTH
        for _ in range(20):
            code = generate_code(length)
            if store.owner_of(tenant_id, code) is None:
                break
        else:  # pragma: no cover - 20 collisions in a row: the code space is full
            raise BusinessRuleViolation(
                "Could not find a free referral code.", code="referral_codes_exhausted"
            )
        store.insert_code(tenant_id, member_id, code, now)
        return code

    # ---- enrolment ---------------------------------------------------------------------
    def enrolled(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        member_id: uuid.UUID,
        context: dict[str, Any],
        now: datetime,
    ) -> None:
        """Give the new member a code, keep the fingerprints it enrolled with, and link it
        to its referrer when it came with a code. Raising here undoes the enrolment."""
        store = ReferralStore(uow)
        fingerprints = _fingerprints(tenant.id, context.get("fingerprints"))
        program = self._program(uow, tenant.id, now)
        settings = program.settings.referral if program is not None else None
        raw_code = context.get("referral_code")
        referrer: dict[str, Any] | None = None
        code: str | None = None
        if raw_code is not None:
            code = normalize_code(str(raw_code), settings.share_url if settings else None)
            owner = store.owner_of(tenant.id, code) if code is not None else None
            referrer = self._referrer(uow, tenant.id, owner) if owner is not None else None
            if referrer is None:
                raise ValidationFailed(
                    "This referral code is not known here.",
                    code="unknown_referral_code",
                    errors=[
                        FieldError(
                            ("referral_code",),
                            "No member of this program has this code.",
                            "unknown_referral_code",
                        )
                    ],
                )
        # Compare with the referrer's fingerprints before this member's own are stored.
        shared = False
        if referrer is not None and fingerprints:
            shared = bool(set(fingerprints) & set(store.fingerprints_of(tenant.id, referrer["id"])))
        store.add_fingerprints(tenant.id, member_id, fingerprints, "enrolment", now)
        self._ensure_code(
            uow,
            tenant.id,
            member_id,
            now,
            settings.code_length if settings is not None else DEFAULT_CODE_LENGTH,
        )
        if referrer is None or code is None:
            return
        referee = uow.directory.member(tenant.id, member_id)
        assert referee is not None
        same = _same_person(uow, tenant.id, referee, referrer)
        if same is not None:
            raise BusinessRuleViolation(
                f"A member cannot refer themselves (same {same}).",
                code="self_referral",
                errors=[
                    FieldError(
                        ("referral_code",),
                        f"The code belongs to a member with the same {same}.",
                        "self_referral",
                    )
                ],
            )
        status, reason = "awaiting_purchase", None
        if program is None or settings is None:
            status, reason = "inactive", "no_referral_program"
        elif shared:
            status, reason = "blocked", "shared_fingerprint"
        elif referrer["status"] != "active":
            status, reason = "blocked", "referrer_blocked"
        elif settings.monthly_cap is not None:
            since = _month_start(now, tenant.timezone)
            if store.counted_since(tenant.id, referrer["id"], since) >= settings.monthly_cap:
                status, reason = "capped", "monthly_cap"
        row: dict[str, Any] = {
            "id": new_id(),
            "tenant_id": tenant.id,
            "referrer_id": referrer["id"],
            "referee_id": member_id,
            "code": code,
            "program": program.code if program is not None else None,
            "program_version": program.version if program is not None else None,
            "status": status,
            "reason": reason,
            "fingerprints": [{"kind": k, "digest": d} for k, d in fingerprints],
            "receipt_id": None,
            "referrer_points": 0,
            "referee_points": 0,
            "awards": [],
            "created_at": now,
            "rewarded_at": None,
            "pending_until": None,
            "voided_at": None,
        }
        if (
            status == "awaiting_purchase"
            and settings is not None
            and program is not None
            and settings.trigger == "enrolment"
        ):
            row.update(self._grant(uow, tenant, actor, row, program, settings, now))
        store.insert(row)
        uow.directory.audit(
            tenant.id,
            actor.name,
            "referral.link",
            "member",
            member_id,
            {"referrer_id": str(referrer["id"]), "status": row["status"], "reason": reason},
            now,
        )

    def _referrer(
        self, uow: UnitOfWork, tenant_id: uuid.UUID, member_id: uuid.UUID
    ) -> dict[str, Any] | None:
        """The member a code belongs to, locked (the monthly cap is counted under it); a
        merged profile's code brings the friend to the surviving profile; an erased
        member's code is dead."""
        row = current_profile(uow, tenant_id, member_id, lock=True)
        return row if row is not None and row["status"] in ("active", "blocked") else None

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
        """Fold the duplicate's referral state into the survivor (docs/referrals.md,
        "Member merge"): its code if the survivor has none, the friends it brought, the
        referral that brought it, its fingerprints and its referral awards."""
        merge_codes(uow, tenant.id, survivor_id, duplicate_id)
        merge_referrals(uow, tenant.id, survivor_id, duplicate_id)
        merge_fingerprints(uow, tenant.id, survivor_id, duplicate_id)
        renamed = move_awards(
            uow, tenant.id, survivor_id, duplicate_id, (REFERRER_MECHANIC, REFEREE_MECHANIC)
        )
        # A refund voids a referral's awards by (member, key): point them at the survivor.
        store = ReferralStore(uow)
        gone = str(duplicate_id)
        for row in referrals_with_awards_of(uow, tenant.id, [survivor_id, duplicate_id]):
            awards = row["awards"] or []
            if not any(a.get("member_id") == gone for a in awards):
                continue
            fixed = [
                {**a, "member_id": str(survivor_id), "key": renamed.get(a["key"], a["key"])}
                if a.get("member_id") == gone
                else a
                for a in awards
            ]
            store.update(tenant.id, row["id"], {"awards": fixed})
        audit_merge(uow, tenant, actor, "referral.merge", survivor_id, duplicate_id, now)

    # ---- rewards -----------------------------------------------------------------------
    def _grant(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        referral: dict[str, Any],
        program: CompiledProgram,
        settings: ReferralSettings,
        now: datetime,
    ) -> dict[str, Any]:
        """Reward both sides as the program says; the referral row's new values."""
        referee_id: uuid.UUID = referral["referee_id"]
        key = award_key(referee_id)
        awards: list[dict[str, Any]] = []
        points = {"referrer_points": 0, "referee_points": 0}
        sides: list[tuple[str, Reward | None, uuid.UUID | None, str]] = [
            (
                REFERRER_MECHANIC,
                settings.referrer,
                self._rewardable(uow, tenant.id, referral["referrer_id"]),
                "referrer_points",
            ),
            (REFEREE_MECHANIC, settings.referee, referee_id, "referee_points"),
        ]
        for mechanic, reward, member_id, column in sides:
            if reward is None or member_id is None:
                continue
            params: dict[str, Any] = {"referral_id": str(referral["id"])}
            if reward.label is not None:
                params["label"] = reward.label.model_dump()
            granted = grant_points(
                uow,
                tenant,
                actor,
                member_id,
                now,
                mechanic=mechanic,
                key=key,
                points=reward.points,
                program=program,
                params=params,
                pending_days=settings.pending_days,
            )
            awards.append({"member_id": str(member_id), "key": key, "points": granted.points})
            points[column] = granted.points
        days = settings.pending_days
        return {
            **points,
            "awards": awards,
            "status": "pending" if days else "rewarded",
            "rewarded_at": now,
            "pending_until": now + timedelta(days=days),
        }

    def _rewardable(
        self, uow: UnitOfWork, tenant_id: uuid.UUID, member_id: uuid.UUID
    ) -> uuid.UUID | None:
        """Who takes the referrer's reward now: the referrer, or the profile it was merged
        into; nobody if that member is blocked or erased."""
        row = self._referrer(uow, tenant_id, member_id)
        return row["id"] if row is not None and row["status"] == "active" else None

    def confirmed(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        receipt: dict[str, Any],
        now: datetime,
    ) -> dict[str, Any]:
        """The friend's first purchase paying at least ``min_purchase`` in money rewards
        the referral (trigger ``first_purchase``).

        Looked up on every member's purchase, unless the till's member read brought the
        status along (in this transaction). (Remembering per process the members with no
        live referral saved the look-up, but a merge can hand a live referral to a member
        that another worker process had remembered, and that referral would never be
        rewarded there; the look-up is one indexed read.)"""
        status = uow.prefetched.get(referral_key(tenant.id, receipt["member_id"]), False)
        if status is not False and status != "awaiting_purchase":
            return {}  # the till's member read saw no referral waiting for this purchase
        store = ReferralStore(uow)
        referral = _locked_if(store, tenant.id, receipt["member_id"], ("awaiting_purchase",))
        if referral is None or referral["status"] != "awaiting_purchase":
            return {}
        if referral["program"] is None or referral["program_version"] is None:
            return {}
        # The terms the friend joined under, even if the program changed since.
        program = self.programs.compiled(
            uow, tenant.id, referral["program"], referral["program_version"]
        )
        settings = program.settings.referral
        if settings is None or settings.trigger != "first_purchase":
            return {}
        if int(receipt["total_pay"]) < settings.min_purchase:
            return {}
        values = self._grant(uow, tenant, actor, referral, program, settings, now)
        values["receipt_id"] = receipt["id"]
        store.update(tenant.id, referral["id"], values)
        done = {**referral, **values}
        return {"referral": _brief(done, tenant, now)}

    def refunded(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        receipt: dict[str, Any],
        now: datetime,
    ) -> dict[str, Any]:
        """A refund of the rewarded first purchase, inside the pending window, that leaves
        less paid than ``min_purchase`` (or nothing at all) takes both rewards back."""
        store = ReferralStore(uow)
        referral = _locked_if(store, tenant.id, receipt["member_id"], ("pending", "rewarded"))
        if referral is None:
            # A receipt of a profile merged since: its referral moved to the survivor.
            referral = self._merged_referral(uow, store, tenant.id, receipt["member_id"])
        if (
            referral is None
            or referral["receipt_id"] != receipt["id"]
            or referral["status"] not in ("pending", "rewarded")
            or referral["pending_until"] is None
            or now >= referral["pending_until"]  # the window is over: the reward stays
        ):
            return {}
        program = self.programs.compiled(
            uow, tenant.id, referral["program"], referral["program_version"]
        )
        minimum = program.settings.referral.min_purchase if program.settings.referral else 0
        lines = uow.commerce.receipt_lines(tenant.id, receipt["id"])  # refunded_qty updated
        still_paid = sum(
            proportional(
                line["amount"] - line["discount"] - line["points_money"],
                line["qty"] - line["refunded_qty"],
                line["qty"],
            )
            for line in lines
        )
        all_back = all(line["refunded_qty"] >= line["qty"] for line in lines)
        if not all_back and (minimum == 0 or still_paid >= minimum):
            return {}
        taken = 0
        for award in referral["awards"]:
            taken += void_award(
                uow, tenant, actor, uuid.UUID(award["member_id"]), award["key"], now
            )
        values = {"status": "voided", "reason": "first_purchase_refunded", "voided_at": now}
        store.update(tenant.id, referral["id"], values)
        uow.directory.audit(
            tenant.id,
            actor.name,
            "referral.void",
            "member",
            receipt["member_id"],
            {"receipt_id": str(receipt["id"]), "points_taken_back": taken},
            now,
        )
        return {
            "referral": {**_brief({**referral, **values}, tenant, now), "points_taken_back": taken}
        }

    def _merged_referral(
        self, uow: UnitOfWork, store: ReferralStore, tenant_id: uuid.UUID, member_id: uuid.UUID
    ) -> dict[str, Any] | None:
        """The referral of the profile ``member_id`` was merged into (through a chain),
        locked if it can still be voided; None if the member was not merged."""
        for survivor in merged_into(uow, tenant_id, member_id):
            found = _locked_if(store, tenant_id, survivor["id"], ("pending", "rewarded"))
            if found is not None:
                return found
        return None


class _ReferralMemberHook(MemberHook):
    def __init__(self, service: ReferralService) -> None:
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
        self.service.merged(uow, tenant, actor, survivor_id, duplicate_id, now)

    def on_enrolled(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        member_id: uuid.UUID,
        context: dict[str, Any],
        now: datetime,
    ) -> None:
        self.service.enrolled(uow, tenant, actor, member_id, context, now)


class _ReferralPurchaseHook(PurchaseHook):
    def __init__(self, service: ReferralService) -> None:
        self.service = service

    def on_confirmed(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        receipt: dict[str, Any],
        lines: list[dict[str, Any]],
        now: datetime,
    ) -> dict[str, Any]:
        return self.service.confirmed(uow, tenant, actor, receipt, now)

    def on_refunded(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        receipt: dict[str, Any],
        refund: dict[str, Any],
        now: datetime,
    ) -> dict[str, Any]:
        return self.service.refunded(uow, tenant, actor, receipt, now)


# ---- helpers -------------------------------------------------------------------------------
def _fingerprints(tenant_id: uuid.UUID, raw: Any) -> list[tuple[str, str]]:
    """The enrolment's fingerprints as (kind, digest) pairs; bad ones refused with paths."""
    if not raw:
        return []
    errors: list[FieldError] = []
    pairs: set[tuple[str, str]] = set()
    for kind, value in dict(raw).items():
        clean = str(kind).strip().lower()
        if not FINGERPRINT_KIND.match(clean):
            errors.append(
                FieldError(
                    ("fingerprints", str(kind)),
                    "A fingerprint kind: up to 64 letters, digits, '_', '.', ':' or '-'.",
                    "invalid_fingerprint",
                )
            )
            continue
        text = str(value).strip()
        if not text or len(text) > MAX_FINGERPRINT_VALUE:
            errors.append(
                FieldError(
                    ("fingerprints", str(kind)),
                    f"A fingerprint value: 1 to {MAX_FINGERPRINT_VALUE} characters.",
                    "invalid_fingerprint",
                )
            )
            continue
        pairs.add((clean, fingerprint_digest(tenant_id, clean, text)))
    if errors:
        raise ValidationFailed("The fingerprints are not usable.", errors=errors)
    return sorted(pairs)


def _locked_if(
    store: ReferralStore, tenant_id: uuid.UUID, referee_id: uuid.UUID, statuses: tuple[str, ...]
) -> dict[str, Any] | None:
    """The member's referral, locked only when it is in one of ``statuses`` (the purchases
    of a member whose referral is settled need not queue on its row)."""
    found = store.of_referee(tenant_id, referee_id)
    if found is None or found["status"] not in statuses:
        return found
    return store.of_referee(tenant_id, referee_id, lock=True)


def _same_person(
    uow: UnitOfWork, tenant_id: uuid.UUID, referee: dict[str, Any], referrer: dict[str, Any]
) -> str | None:
    """What the new member shares with the referrer's profile (phone, email or card)."""
    if referee["id"] == referrer["id"]:
        return "member"
    if referee["phone"] and referee["phone"] == referrer["phone"]:
        return "phone"
    email = canonical_email(referee["email"])
    if email is not None and email == canonical_email(referrer["email"]):
        return "email"
    theirs = {c["number"] for c in uow.directory.cards_of(tenant_id, referrer["id"])}
    if any(c["number"] in theirs for c in uow.directory.cards_of(tenant_id, referee["id"])):
        return "card"
    return None


def _month_start(now: datetime, timezone: str) -> datetime:
    """The first instant of ``now``'s calendar month in the tenant's time zone, in UTC."""
    local = now.astimezone(ZoneInfo(timezone))
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)


def _effective(row: dict[str, Any], now: datetime) -> str:
    status = str(row["status"])
    until = row["pending_until"]
    if status == "pending" and until is not None and until <= now:
        return "rewarded"
    return status


def _view(row: dict[str, Any], tenant: Tenant, now: datetime) -> ReferralView:
    status = _effective(row, now)
    return ReferralView(
        id=row["id"],
        referrer_id=row["referrer_id"],
        referee_id=row["referee_id"],
        status=status,
        reason=row["reason"],
        program=row["program"],
        receipt_id=row["receipt_id"],
        referrer_points=row["referrer_points"],
        referee_points=row["referee_points"],
        created_at=row["created_at"],
        rewarded_at=row["rewarded_at"],
        pending_until=row["pending_until"],
        voided_at=row["voided_at"],
        explanation=explain_status(
            status, row["reason"], local_date(row["pending_until"], tenant.timezone)
        ),
    )


def _brief(row: dict[str, Any], tenant: Tenant, now: datetime) -> dict[str, Any]:
    """What the till's answer says of the referral."""
    view = _view(row, tenant, now)
    return {
        "id": str(view.id),
        "status": view.status,
        "referrer_points": view.referrer_points,
        "referee_points": view.referee_points,
        "pending_until": view.pending_until.isoformat() if view.pending_until else None,
        "explanation": view.explanation,
    }
