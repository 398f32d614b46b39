"""Members and their cards: enrolment, profile changes, cards, merge, block, erasure."""

from __future__ import annotations

import re
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from kopilka.adapters.db.mechanics.families import pool_of
from kopilka.clock import Clock
from kopilka.domain.errors import (
    BusinessRuleViolation,
    Conflict,
    ErrorCollector,
    FieldError,
    NotFound,
    ValidationFailed,
)
from kopilka.domain.ledger.lots import LotStatus, allocate
from kopilka.domain.ledger.model import Posting, TxnKind
from kopilka.domain.ledger.plan import LedgerPlan
from kopilka.domain.members.birthdays import Birthday, InvalidBirthday
from kopilka.domain.members.card_numbers import is_valid_number, make_number, random_number
from kopilka.domain.members.phones import InvalidPhone, normalize_phone
from kopilka.domain.members.qr_tokens import InvalidQrToken, issue_token, verify_token
from kopilka.ids import new_id
from kopilka.services.context import Actor, Tenant, load_tenant
from kopilka.services.idempotency import remember, replay_or_claim, request_hash
from kopilka.services.ledger_book import MemberBook
from kopilka.services.ports import UnitOfWork, UnitOfWorkFactory
from kopilka.services.views import View

CONSENT_KINDS = (
    "program_rules",
    "marketing_sms",
    "marketing_email",
    "marketing_messengers",
    "personal_data",
)
PROFILE_FIELDS = ("phone", "email", "name", "birthday", "external_id", "attributes", "consents")
UNIQUE_FIELDS = ("phone", "email", "external_id")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_BATCH = 100_000


class CardView(View):
    id: uuid.UUID
    number: str
    member_id: uuid.UUID | None
    kind: str
    status: str
    replaced_by_id: uuid.UUID | None
    created_at: datetime
    bound_at: datetime | None


class MemberView(View):
    id: uuid.UUID
    status: str
    phone: str | None
    email: str | None
    name: str | None
    birthday: str | None
    external_id: str | None
    attributes: dict[str, Any]
    consents: dict[str, Any]
    block_reason: str | None
    merged_into_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    cards: list[CardView]


class QrTokenView(View):
    token: str
    card_number: str
    valid_for_seconds: int


class BatchView(View):
    id: uuid.UUID
    name: str
    first_number: str
    last_number: str
    count: int


def card_view(row: dict[str, Any]) -> CardView:
    return CardView(
        id=row["id"],
        number=row["number"],
        member_id=row["member_id"],
        kind=row["kind"],
        status=row["status"],
        replaced_by_id=row["replaced_by_id"],
        created_at=row["created_at"],
        bound_at=row["bound_at"],
    )


def member_view(row: dict[str, Any], cards: list[dict[str, Any]]) -> MemberView:
    birthday = None
    if row["birth_month"]:
        birthday = Birthday(row["birth_month"], row["birth_day"], row["birth_year"]).isoformat()
    return MemberView(
        id=row["id"],
        status=row["status"],
        phone=row["phone"],
        email=row["email"],
        name=row["name"],
        birthday=birthday,
        external_id=row["external_id"],
        attributes=row["attributes"] or {},
        consents=row["consents"] or {},
        block_reason=row["block_reason"],
        merged_into_id=row["merged_into_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        cards=[card_view(c) for c in cards],
    )


def normalize_profile(
    tenant: Tenant,
    data: dict[str, Any],
    now: datetime,
    errors: ErrorCollector,
    existing_consents: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Validate and normalise profile fields into column values; errors are collected."""
    values: dict[str, Any] = {}
    if "phone" in data:
        phone = data["phone"]
        if phone is None or phone == "":
            values["phone"] = None
        else:
            try:
                values["phone"] = normalize_phone(str(phone), tenant.phone_region)
            except InvalidPhone:
                errors.add(("phone",), f"{phone!r} is not a valid phone number.", "invalid_phone")
    if "email" in data:
        email = data["email"]
        if email is None or email == "":
            values["email"] = None
        elif not _EMAIL.match(str(email)) or len(str(email)) > 320:
            errors.add(("email",), f"{email!r} is not a valid e-mail address.", "invalid_email")
        else:
            values["email"] = str(email).strip().lower()
    if "name" in data:
        name = data["name"]
        values["name"] = name.strip() if isinstance(name, str) and name.strip() else None
    if "external_id" in data:
        ext = data["external_id"]
        values["external_id"] = str(ext) if ext not in (None, "") else None
    if "birthday" in data:
        raw = data["birthday"]
        if raw in (None, ""):
            values.update(birth_year=None, birth_month=None, birth_day=None)
        else:
            try:
                bd = Birthday.parse(str(raw))
            except InvalidBirthday as exc:
                errors.add(("birthday",), str(exc), "invalid_birthday")
            else:
                if bd.year is not None and bd.in_year(bd.year) > now.date():
                    errors.add(("birthday",), "The birthday is in the future.", "invalid_birthday")
                values.update(birth_year=bd.year, birth_month=bd.month, birth_day=bd.day)
    if "attributes" in data:
        values["attributes"] = dict(data["attributes"] or {})
    if "consents" in data:
        consents = dict(existing_consents or {})
        for kind, given in (data["consents"] or {}).items():
            if kind not in CONSENT_KINDS:
                errors.add(
                    ("consents", kind),
                    f"Unknown consent; use one of {CONSENT_KINDS}.",
                    "unknown_consent",
                )
                continue
            granted, at = (
                (given, now)
                if isinstance(given, bool)
                else (bool(given.get("granted")), given.get("at") or now)
            )
            if isinstance(at, datetime):
                at = at.isoformat()
            consents[kind] = {
                "granted": granted,
                "at": at if isinstance(at, str) else now.isoformat(),
            }
        values["consents"] = consents
    return values


# A merged profile names the one it was merged into, which may have been merged in turn.
MAX_MERGE_HOPS = 20


def profile_chain(
    uow: UnitOfWork, tenant_id: uuid.UUID, member_id: uuid.UUID, *, lock: bool = False
) -> Iterator[dict[str, Any]]:
    """The member's profile, then each profile it was merged into, nearest first (``lock``
    locks each row read). Nothing for an unknown member."""
    row = uow.directory.member(tenant_id, member_id, lock=lock)
    for _ in range(MAX_MERGE_HOPS + 1):
        if row is None:
            return
        yield row
        if row["status"] != "merged" or row["merged_into_id"] is None:
            return
        row = uow.directory.member(tenant_id, row["merged_into_id"], lock=lock)


def merged_into(
    uow: UnitOfWork, tenant_id: uuid.UUID, member_id: uuid.UUID, *, lock: bool = False
) -> Iterator[dict[str, Any]]:
    """The profiles a merged member was folded into, nearest first (none if not merged)."""
    chain = profile_chain(uow, tenant_id, member_id, lock=lock)
    next(chain, None)  # the member itself
    yield from chain


def current_profile(
    uow: UnitOfWork, tenant_id: uuid.UUID, member_id: uuid.UUID, *, lock: bool = False
) -> dict[str, Any] | None:
    """The member's own profile, or the survivor it was merged into (through a chain)."""
    last = deque(profile_chain(uow, tenant_id, member_id, lock=lock), maxlen=1)
    return last[0] if last else None


def points_holder_profile(uow: UnitOfWork, tenant_id: uuid.UUID, member_id: uuid.UUID) -> uuid.UUID:
    """Whose points a member's are now: the member, or the profile it was merged into
    (the member's id as given when there is no such profile)."""
    survivor = current_profile(uow, tenant_id, member_id)
    return survivor["id"] if survivor is not None else member_id


def audit_merge(
    uow: UnitOfWork,
    tenant: Tenant,
    actor: Actor,
    action: str,
    survivor_id: uuid.UUID,
    duplicate_id: uuid.UUID,
    now: datetime,
    **details: Any,
) -> None:
    """The audit line a merge writes on the survivor (the merge itself, or a mechanic whose
    state it moved), naming the duplicate."""
    uow.directory.audit(
        tenant.id,
        actor.name,
        action,
        "member",
        survivor_id,
        {"duplicate": str(duplicate_id), **details},
        now,
    )


class MemberHook:
    """What a loyalty mechanic does when a member enrols or updates the profile (a welcome
    bonus, a referral's attribution...). Runs inside the same unit of work."""

    def on_enrolled(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        member_id: uuid.UUID,
        context: dict[str, Any],
        now: datetime,
    ) -> None:
        """``context``: what the enrolment request carried beyond the profile
        (``referral_code``, ``fingerprints``)."""

    def on_updated(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        member_id: uuid.UUID,
        fields: list[str],
        now: datetime,
    ) -> None:
        """The profile changed (``fields`` were sent)."""

    def on_merged(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        survivor_id: uuid.UUID,
        duplicate_id: uuid.UUID,
        now: datetime,
    ) -> None:
        """The duplicate profile is being folded into the survivor (same unit of work; the
        points and cards have moved and the duplicate's row is already ``merged``): move or
        combine this mechanic's state so that the person keeps it."""


class MemberService:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        hooks: Sequence[MemberHook] = (),
    ) -> None:
        self.uow_factory = uow_factory
        self.clock = clock
        self.hooks: list[MemberHook] = list(hooks)

    # ---- enrolment ---------------------------------------------------------------------
    def enroll(
        self,
        actor: Actor,
        data: dict[str, Any],
        *,
        card_number: str | None = None,
        issue_virtual_card: bool = True,
        idempotency_key: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> MemberView:
        context = {k: v for k, v in (context or {}).items() if v is not None}
        digest = request_hash(
            "enroll",
            {"data": data, "card": card_number, "virtual": issue_virtual_card, **context},
        )
        with self.uow_factory(write=True) as uow:
            stored = replay_or_claim(uow, actor.tenant_id, idempotency_key, digest)
            if stored is not None:
                return MemberView.model_validate(stored)
            tenant = load_tenant(uow, actor.tenant_id)
            now = self.clock.now()
            member_id = self.enroll_in(
                uow,
                tenant,
                actor,
                data,
                now,
                card_number=card_number,
                issue_virtual_card=issue_virtual_card,
            )
            for hook in self.hooks:
                hook.on_enrolled(uow, tenant, actor, member_id, context, now)
            view = self._view(uow, tenant.id, member_id)
            remember(uow, tenant.id, idempotency_key, digest, view.to_json(), now)
            uow.commit()
            return view

    def enroll_in(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        data: dict[str, Any],
        now: datetime,
        *,
        card_number: str | None = None,
        issue_virtual_card: bool = True,
    ) -> uuid.UUID:
        """Enrol inside an open unit of work (used by imports too)."""
        errors = ErrorCollector()
        unknown = set(data) - set(PROFILE_FIELDS)
        for field in sorted(unknown):
            errors.add((field,), "Unknown field.", "unknown_field")
        values = normalize_profile(tenant, data, now, errors)
        card = None
        if card_number is not None:
            card = self._bindable_card(uow, tenant, card_number, errors)
        errors.raise_if_any()
        self._check_unique(uow, tenant.id, values, None)
        member_id = new_id()
        row: dict[str, Any] = {
            "id": member_id,
            "tenant_id": tenant.id,
            "phone": None,
            "email": None,
            "name": None,
            "birth_year": None,
            "birth_month": None,
            "birth_day": None,
            "external_id": None,
            "attributes": {},
            "consents": {},
            "status": "active",
            "block_reason": None,
            "merged_into_id": None,
            "erased_at": None,
            "created_at": now,
            "updated_at": now,
        }
        row.update(values)
        uow.directory.insert_member(row)
        uow.ledger.create_member_accounts(
            tenant.id, member_id, tenant.points_currency, now, tenant.allow_debt
        )
        if card is not None:
            uow.directory.update_card(
                tenant.id,
                card["id"],
                {
                    "member_id": member_id,
                    "status": "active",
                    "bound_at": now,
                    "status_changed_at": now,
                },
            )
        elif issue_virtual_card:
            self._issue_virtual(uow, tenant, member_id, now)
        uow.directory.audit(
            tenant.id, actor.name, "member.enroll", "member", member_id, {"card": card_number}, now
        )
        return member_id

    def _check_unique(
        self,
        uow: UnitOfWork,
        tenant_id: uuid.UUID,
        values: dict[str, Any],
        member_id: uuid.UUID | None,
    ) -> None:
        clashes = []
        for field in UNIQUE_FIELDS:
            value = values.get(field)
            if value is None:
                continue
            other = uow.directory.member_by(tenant_id, field, value)
            if other is not None and other["id"] != member_id:
                clashes.append(
                    FieldError((field,), f"Another member has this {field}.", f"duplicate_{field}")
                )
        if clashes:
            raise Conflict(
                "A member with the same "
                + ", ".join(str(c.path[0]) for c in clashes)
                + " already exists.",
                code="member_exists",
                errors=clashes,
            )

    def _issue_virtual(
        self, uow: UnitOfWork, tenant: Tenant, member_id: uuid.UUID, now: datetime
    ) -> dict[str, Any]:
        for _ in range(20):
            number = random_number(tenant.card_scheme, tenant.card_prefix)
            if uow.directory.card_by_number(tenant.id, number) is None:
                break
        else:  # pragma: no cover - 20 collisions in a row means the number space is full
            raise Conflict("Could not find a free card number.", code="card_space_exhausted")
        row = {
            "id": new_id(),
            "tenant_id": tenant.id,
            "number": number,
            "member_id": member_id,
            "kind": "virtual",
            "status": "active",
            "batch_id": None,
            "replaced_by_id": None,
            "created_at": now,
            "bound_at": now,
            "status_changed_at": now,
        }
        uow.directory.insert_card(row)
        return row

    def _bindable_card(
        self, uow: UnitOfWork, tenant: Tenant, number: str, errors: ErrorCollector
    ) -> dict[str, Any] | None:
        if not is_valid_number(tenant.card_scheme, number):
            errors.add(("card",), "Wrong card number or check digit.", "invalid_card_number")
            return None
        card = uow.directory.card_by_number(tenant.id, number, lock=True)
        if card is None:
            raise NotFound(f"Card {number} is not registered.", code="card_not_found")
        if card["member_id"] is not None or card["status"] != "unbound":
            raise Conflict(f"Card {number} is already bound.", code="card_already_bound")
        return card

    # ---- reads -------------------------------------------------------------------------
    def _view(self, uow: UnitOfWork, tenant_id: uuid.UUID, member_id: uuid.UUID) -> MemberView:
        row = uow.directory.member(tenant_id, member_id)
        if row is None:
            raise NotFound("Member not found.", code="member_not_found")
        return member_view(row, uow.directory.cards_of(tenant_id, member_id))

    def get(self, actor: Actor, member_id: uuid.UUID) -> MemberView:
        with self.uow_factory(write=False) as uow:
            return self._view(uow, actor.tenant_id, member_id)

    def search(
        self, actor: Actor, filters: dict[str, str], after: uuid.UUID | None, limit: int
    ) -> list[MemberView]:
        with self.uow_factory(write=False) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            clean: dict[str, Any] = {}
            errors = ErrorCollector()
            for field, value in filters.items():
                if field in ("phone", "email"):
                    normalized = normalize_profile(tenant, {field: value}, self.clock.now(), errors)
                    clean[field] = normalized.get(field)
                else:
                    clean[field] = value
            errors.raise_if_any()
            rows = uow.directory.list_members(actor.tenant_id, clean, after, limit)
            return [member_view(r, uow.directory.cards_of(actor.tenant_id, r["id"])) for r in rows]

    # ---- changes -----------------------------------------------------------------------
    def update(
        self,
        actor: Actor,
        member_id: uuid.UUID,
        data: dict[str, Any],
        *,
        idempotency_key: str | None = None,
    ) -> MemberView:
        digest = request_hash(f"update:{member_id}", data)
        with self.uow_factory(write=True) as uow:
            stored = replay_or_claim(uow, actor.tenant_id, idempotency_key, digest)
            if stored is not None:
                return MemberView.model_validate(stored)
            tenant = load_tenant(uow, actor.tenant_id)
            now = self.clock.now()
            row = self._active(uow, tenant.id, member_id, allow_blocked=True)
            errors = ErrorCollector()
            values = normalize_profile(tenant, data, now, errors, row["consents"])
            errors.raise_if_any()
            self._check_unique(uow, tenant.id, values, member_id)
            if "attributes" in values:
                values["attributes"] = {**(row["attributes"] or {}), **values["attributes"]}
                values["attributes"] = {
                    k: v for k, v in values["attributes"].items() if v is not None
                }
            values["updated_at"] = now
            uow.directory.update_member(tenant.id, member_id, values)
            uow.directory.audit(
                tenant.id,
                actor.name,
                "member.update",
                "member",
                member_id,
                {"fields": sorted(data)},
                now,
            )
            for hook in self.hooks:
                hook.on_updated(uow, tenant, actor, member_id, sorted(data), now)
            view = self._view(uow, tenant.id, member_id)
            remember(uow, tenant.id, idempotency_key, digest, view.to_json(), now)
            uow.commit()
            return view

    def _active(
        self,
        uow: UnitOfWork,
        tenant_id: uuid.UUID,
        member_id: uuid.UUID,
        *,
        allow_blocked: bool = False,
    ) -> dict[str, Any]:
        row = uow.directory.member(tenant_id, member_id, lock=True)
        if row is None:
            raise NotFound("Member not found.", code="member_not_found")
        allowed = {"active", "blocked"} if allow_blocked else {"active"}
        if row["status"] not in allowed:
            raise BusinessRuleViolation(
                f"The member is {row['status']}.", code=f"member_{row['status']}"
            )
        return row

    def set_blocked(
        self, actor: Actor, member_id: uuid.UUID, blocked: bool, reason: str | None = None
    ) -> MemberView:
        """Block (no earning or spending) or unblock; repeating it changes nothing."""
        with self.uow_factory(write=True) as uow:
            now = self.clock.now()
            row = self._active(uow, actor.tenant_id, member_id, allow_blocked=True)
            status = "blocked" if blocked else "active"
            if row["status"] != status:
                uow.directory.update_member(
                    actor.tenant_id,
                    member_id,
                    {
                        "status": status,
                        "block_reason": reason if blocked else None,
                        "updated_at": now,
                    },
                )
                uow.directory.audit(
                    actor.tenant_id,
                    actor.name,
                    "member.block" if blocked else "member.unblock",
                    "member",
                    member_id,
                    {"reason": reason},
                    now,
                )
            view = self._view(uow, actor.tenant_id, member_id)
            uow.commit()
            return view

    def erase(self, actor: Actor, member_id: uuid.UUID) -> MemberView:
        """Pseudonymise the profile on the member's request; the ledger stays intact."""
        with self.uow_factory(write=True) as uow:
            now = self.clock.now()
            row = uow.directory.member(actor.tenant_id, member_id, lock=True)
            if row is None:
                raise NotFound("Member not found.", code="member_not_found")
            if row["status"] != "erased":
                uow.directory.update_member(
                    actor.tenant_id,
                    member_id,
                    {
                        "phone": None,
                        "email": None,
                        "name": None,
                        "birth_year": None,
                        "birth_month": None,
                        "birth_day": None,
                        "external_id": None,
                        "attributes": {},
                        "consents": {},
                        "status": "erased",
                        "block_reason": None,
                        "erased_at": now,
                        "updated_at": now,
                    },
                )
                for card in uow.directory.cards_of(actor.tenant_id, member_id):
                    if card["status"] == "active":
                        uow.directory.update_card(
                            actor.tenant_id,
                            card["id"],
                            {"status": "blocked", "status_changed_at": now},
                        )
                uow.directory.audit(
                    actor.tenant_id, actor.name, "member.erase", "member", member_id, {}, now
                )
            view = self._view(uow, actor.tenant_id, member_id)
            uow.commit()
            return view

    def merge(
        self,
        actor: Actor,
        survivor_id: uuid.UUID,
        duplicate_id: uuid.UUID,
        *,
        idempotency_key: str | None = None,
    ) -> MemberView:
        """Fold a duplicate profile into the survivor: points, lots, cards and history."""
        if survivor_id == duplicate_id:
            raise BusinessRuleViolation(
                "A member cannot be merged into itself.", code="merge_same_member"
            )
        digest = request_hash("merge", {"survivor": survivor_id, "duplicate": duplicate_id})
        with self.uow_factory(write=True) as uow:
            stored = replay_or_claim(uow, actor.tenant_id, idempotency_key, digest)
            if stored is not None:
                return MemberView.model_validate(stored)
            tenant = load_tenant(uow, actor.tenant_id)
            now = self.clock.now()
            survivor = self._active(uow, tenant.id, survivor_id, allow_blocked=True)
            duplicate = self._active(uow, tenant.id, duplicate_id, allow_blocked=True)
            for person in (survivor_id, duplicate_id):
                # A pool is shared: merging would move the family's points, not the person's.
                if pool_of(uow, tenant.id, person).family_id is not None:
                    raise Conflict(
                        "A member of a family cannot be merged; leave the family first.",
                        code="member_in_family",
                    )
            if uow.ledger.active_holds_of(tenant.id, duplicate_id):
                raise Conflict(
                    "The duplicate has points on hold; capture or release them first.",
                    code="member_has_active_holds",
                )
            self._merge_points(uow, tenant, actor, survivor_id, duplicate_id, now)
            fill = {
                f: duplicate[f]
                for f in (
                    "phone",
                    "email",
                    "name",
                    "external_id",
                    "birth_year",
                    "birth_month",
                    "birth_day",
                )
                if survivor[f] is None and duplicate[f] is not None
            }
            if survivor["birth_month"] is not None:
                for f in ("birth_year", "birth_month", "birth_day"):
                    fill.pop(f, None)
            uow.directory.update_member(
                tenant.id,
                duplicate_id,
                {
                    "status": "merged",
                    "merged_into_id": survivor_id,
                    "phone": None,
                    "email": None,
                    "external_id": None,
                    "updated_at": now,
                },
            )
            merged_attrs = {**(duplicate["attributes"] or {}), **(survivor["attributes"] or {})}
            uow.directory.update_member(
                tenant.id, survivor_id, {**fill, "attributes": merged_attrs, "updated_at": now}
            )
            uow.directory.move_cards(tenant.id, duplicate_id, survivor_id)
            for hook in self.hooks:
                hook.on_merged(uow, tenant, actor, survivor_id, duplicate_id, now)
            audit_merge(uow, tenant, actor, "member.merge", survivor_id, duplicate_id, now)
            view = self._view(uow, tenant.id, survivor_id)
            remember(uow, tenant.id, idempotency_key, digest, view.to_json(), now)
            uow.commit()
            return view

    def _merge_points(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        survivor_id: uuid.UUID,
        duplicate_id: uuid.UUID,
        now: datetime,
    ) -> None:
        currency = tenant.points_currency
        locked = uow.ledger.lock_many_member_accounts(
            tenant.id, [survivor_id, duplicate_id], currency
        )
        plan = LedgerPlan()
        keep = MemberBook(
            uow,
            tenant,
            survivor_id,
            actor,
            now,
            plan=plan,
            accounts=locked[survivor_id],
            load_lots=False,
        )
        gone = MemberBook(
            uow,
            tenant,
            duplicate_id,
            actor,
            now,
            plan=plan,
            accounts=locked[duplicate_id],
            load_lots=False,
        )
        survivor_lots = uow.ledger.open_lots(tenant.id, survivor_id, currency)
        duplicate_lots = uow.ledger.open_lots(tenant.id, duplicate_id, currency)
        for lot in [*survivor_lots, *duplicate_lots]:
            plan.lots[lot.id] = lot
        # Settling one book settles every lot in the shared plan; do it per member so each
        # expiry lands on the right member's accounts.
        plan_lots = dict(plan.lots)
        plan.lots = {lot.id: lot for lot in survivor_lots}
        keep.settle()
        survivor_after = dict(plan.lots)
        plan.lots = {lot.id: plan_lots[lot.id] for lot in duplicate_lots}
        gone.settle()
        duplicate_after = dict(plan.lots)
        plan.lots = {**survivor_after, **duplicate_after}

        txn = gone.new_txn(TxnKind.MERGE, 0, source_type="admin", source_id=str(duplicate_id))
        txn.member_id = survivor_id
        txn.counterparty_member_id = duplicate_id
        moved_wallet = moved_pending = 0
        for lot in duplicate_after.values():
            if lot.remaining == 0 or lot.status not in (LotStatus.ACTIVE, LotStatus.PENDING):
                continue
            plan.change_lot(
                lot.id, -lot.remaining, txn_id=txn.id, origin_id=txn.id, status=LotStatus.CLOSED
            )
            plan.create_lot(
                member_id=survivor_id,
                currency=currency,
                amount=lot.remaining,
                remaining=lot.remaining,
                status=lot.status,
                available_at=lot.available_at,
                expires_at=lot.expires_at,
                source_txn_id=txn.id,
            )
            if lot.status is LotStatus.PENDING:
                moved_pending += lot.remaining
            else:
                moved_wallet += lot.remaining
        debt = max(0, -gone.wallet.balance)
        postings: list[Posting] = []
        if moved_wallet:
            postings += [
                Posting(gone.wallet.id, -moved_wallet),
                Posting(keep.wallet.id, moved_wallet),
            ]
        if moved_pending:
            postings += [
                Posting(gone.pending.id, -moved_pending),
                Posting(keep.pending.id, moved_pending),
            ]
        if debt:
            # The survivor takes over the duplicate's debt, paid from its points if it can.
            if not keep.wallet.allow_debt:
                uow.ledger.set_allow_debt(tenant.id, keep.wallet.id, True)
                keep.wallet.allow_debt = True
            postings += [Posting(gone.wallet.id, debt), Posting(keep.wallet.id, -debt)]
            duplicate_ids = set(duplicate_after)
            takes, _ = allocate(
                [lot for lot in plan.spendable_lots(now) if lot.id not in duplicate_ids], debt, now
            )
            for take in takes:
                plan.change_lot(take.lot_id, -take.amount, txn_id=txn.id, origin_id=txn.id)
        txn.amount = moved_wallet + moved_pending
        if postings:
            plan.add_transaction(txn, postings)
        uow.ledger.apply(tenant.id, plan, now)

    # ---- cards -------------------------------------------------------------------------
    def issue_card(self, actor: Actor, member_id: uuid.UUID) -> CardView:
        with self.uow_factory(write=True) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            now = self.clock.now()
            self._active(uow, tenant.id, member_id, allow_blocked=True)
            row = self._issue_virtual(uow, tenant, member_id, now)
            uow.directory.audit(
                tenant.id,
                actor.name,
                "card.issue",
                "member",
                member_id,
                {"number": row["number"]},
                now,
            )
            uow.commit()
            return card_view(row)

    def register_batch(
        self,
        actor: Actor,
        name: str,
        *,
        first_number: str | None = None,
        count: int | None = None,
        numbers: list[str] | None = None,
    ) -> BatchView:
        """Register pre-printed physical cards: a range from ``first_number`` or a list."""
        with self.uow_factory(write=True) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            now = self.clock.now()
            errors = ErrorCollector()
            wanted = self._batch_numbers(tenant, first_number, count, numbers, errors)
            errors.raise_if_any()
            if uow.directory.card_batch_by_name(tenant.id, name) is not None:
                raise Conflict(f"A batch named {name!r} exists.", code="batch_exists")
            taken = set()
            for i in range(0, len(wanted), 1000):
                taken |= uow.directory.existing_card_numbers(tenant.id, wanted[i : i + 1000])
            if taken:
                raise Conflict(
                    f"{len(taken)} of these numbers are already registered.",
                    code="card_numbers_taken",
                    extra={"numbers": sorted(taken)[:20]},
                )
            batch_id = new_id()
            uow.directory.insert_card_batch(
                {
                    "id": batch_id,
                    "tenant_id": tenant.id,
                    "name": name,
                    "first_number": wanted[0],
                    "last_number": wanted[-1],
                    "count": len(wanted),
                    "created_at": now,
                }
            )
            for i in range(0, len(wanted), 5000):
                uow.directory.insert_cards(
                    [
                        {
                            "id": new_id(),
                            "tenant_id": tenant.id,
                            "number": n,
                            "member_id": None,
                            "kind": "physical",
                            "status": "unbound",
                            "batch_id": batch_id,
                            "replaced_by_id": None,
                            "created_at": now,
                            "bound_at": None,
                            "status_changed_at": now,
                        }
                        for n in wanted[i : i + 5000]
                    ]
                )
            uow.directory.audit(
                tenant.id,
                actor.name,
                "card.batch",
                "card_batch",
                batch_id,
                {"count": len(wanted)},
                now,
            )
            uow.commit()
            return BatchView(
                id=batch_id,
                name=name,
                first_number=wanted[0],
                last_number=wanted[-1],
                count=len(wanted),
            )

    @staticmethod
    def _batch_numbers(
        tenant: Tenant,
        first_number: str | None,
        count: int | None,
        numbers: list[str] | None,
        errors: ErrorCollector,
    ) -> list[str]:
        scheme = tenant.card_scheme
        if numbers:
            if len(numbers) > MAX_BATCH:
                errors.add(("numbers",), f"At most {MAX_BATCH} cards per batch.", "too_many")
            for i, n in enumerate(numbers):
                if not is_valid_number(scheme, n):
                    errors.add(
                        ("numbers", i), "Wrong card number or check digit.", "invalid_card_number"
                    )
            if len(set(numbers)) != len(numbers):
                errors.add(("numbers",), "Numbers repeat.", "duplicate_numbers")
            return list(numbers)
        if first_number is None or count is None:
            errors.add(("first_number",), "Give first_number and count, or numbers.", "required")
            return []
        if not 1 <= count <= MAX_BATCH:
            errors.add(("count",), f"Between 1 and {MAX_BATCH} cards.", "invalid_count")
        if not is_valid_number(scheme, first_number):
            errors.add(
                ("first_number",), "Wrong card number or check digit.", "invalid_card_number"
            )
        if errors.errors:
            return []
        body = first_number[:-1]
        prefix = tenant.card_prefix if body.startswith(tenant.card_prefix) else body[:1]
        start = int(body[len(prefix) :])
        try:
            return [make_number(scheme, prefix, start + i) for i in range(count)]
        except ValueError:
            errors.add(("count",), "The range runs past the largest card number.", "invalid_count")
            return []

    def _card(
        self, uow: UnitOfWork, tenant: Tenant, number: str, lock: bool = False
    ) -> dict[str, Any]:
        if not is_valid_number(tenant.card_scheme, number):
            raise ValidationFailed(
                "Wrong card number or check digit.",
                code="invalid_card_number",
                errors=[
                    FieldError(
                        ("number",), "Wrong card number or check digit.", "invalid_card_number"
                    )
                ],
            )
        card = uow.directory.card_by_number(tenant.id, number, lock=lock)
        if card is None:
            raise NotFound(f"Card {number} not found.", code="card_not_found")
        return card

    def bind_card(self, actor: Actor, number: str, member_id: uuid.UUID) -> CardView:
        with self.uow_factory(write=True) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            now = self.clock.now()
            self._active(uow, tenant.id, member_id, allow_blocked=True)
            errors = ErrorCollector()
            card = self._bindable_card(uow, tenant, number, errors)
            errors.raise_if_any()
            assert card is not None
            values = {
                "member_id": member_id,
                "status": "active",
                "bound_at": now,
                "status_changed_at": now,
            }
            uow.directory.update_card(tenant.id, card["id"], values)
            uow.directory.audit(
                tenant.id, actor.name, "card.bind", "member", member_id, {"number": number}, now
            )
            uow.commit()
            return card_view({**card, **values})

    def set_card_status(self, actor: Actor, number: str, status: str) -> CardView:
        """Block, unblock (active) or declare lost; lost is final."""
        with self.uow_factory(write=True) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            now = self.clock.now()
            card = self._card(uow, tenant, number, lock=True)
            if card["status"] == "unbound":
                raise Conflict("The card is not bound to a member yet.", code="card_unbound")
            if card["status"] == "lost" and status != "lost":
                raise Conflict("A lost card stays lost; replace it.", code="card_lost")
            if card["status"] != status:
                uow.directory.update_card(
                    tenant.id, card["id"], {"status": status, "status_changed_at": now}
                )
                uow.directory.audit(
                    tenant.id,
                    actor.name,
                    f"card.{status}",
                    "card",
                    card["id"],
                    {"number": number},
                    now,
                )
            uow.commit()
            return card_view({**card, "status": status})

    def replace_card(
        self,
        actor: Actor,
        number: str,
        *,
        new_number: str | None = None,
        idempotency_key: str | None = None,
    ) -> CardView:
        """Declare a card lost and give its member a new one; points live on the member,
        so balance and history carry over untouched."""
        digest = request_hash(f"replace:{number}", {"new": new_number})
        with self.uow_factory(write=True) as uow:
            stored = replay_or_claim(uow, actor.tenant_id, idempotency_key, digest)
            if stored is not None:
                return CardView.model_validate(stored)
            tenant = load_tenant(uow, actor.tenant_id)
            now = self.clock.now()
            old = self._card(uow, tenant, number, lock=True)
            if old["member_id"] is None:
                raise Conflict("The card is not bound to a member.", code="card_unbound")
            if old["replaced_by_id"] is not None:
                raise Conflict("The card was already replaced.", code="card_already_replaced")
            if new_number is not None:
                errors = ErrorCollector()
                new = self._bindable_card(uow, tenant, new_number, errors)
                errors.raise_if_any()
                assert new is not None
                new = {
                    **new,
                    "member_id": old["member_id"],
                    "status": "active",
                    "bound_at": now,
                    "status_changed_at": now,
                }
                uow.directory.update_card(
                    tenant.id,
                    new["id"],
                    {k: new[k] for k in ("member_id", "status", "bound_at", "status_changed_at")},
                )
            else:
                new = self._issue_virtual(uow, tenant, old["member_id"], now)
            uow.directory.update_card(
                tenant.id,
                old["id"],
                {"status": "lost", "replaced_by_id": new["id"], "status_changed_at": now},
            )
            uow.directory.audit(
                tenant.id,
                actor.name,
                "card.replace",
                "member",
                old["member_id"],
                {"old": number, "new": new["number"]},
                now,
            )
            view = card_view(new)
            remember(uow, tenant.id, idempotency_key, digest, view.to_json(), now)
            uow.commit()
            return view

    def get_card(self, actor: Actor, number: str) -> CardView:
        with self.uow_factory(write=False) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            return card_view(self._card(uow, tenant, number))

    def qr_token(self, actor: Actor, number: str) -> QrTokenView:
        with self.uow_factory(write=False) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            card = self._card(uow, tenant, number)
        if card["status"] != "active":
            raise Conflict(f"The card is {card['status']}.", code=f"card_{card['status']}")
        now = self.clock.now().timestamp()
        window = tenant.qr_window_seconds
        return QrTokenView(
            token=issue_token(tenant.qr_secret, number, now, window),
            card_number=number,
            valid_for_seconds=window - int(now % window),
        )

    def lookup(
        self,
        actor: Actor,
        *,
        number: str | None = None,
        phone: str | None = None,
        qr: str | None = None,
    ) -> tuple[MemberView, CardView | None]:
        """Find the member a till is looking at, by card number, phone or QR token."""
        given = [v for v in (number, phone, qr) if v]
        if len(given) != 1:
            raise ValidationFailed(
                "Give exactly one of number, phone or qr.", code="lookup_needs_one_key"
            )
        with self.uow_factory(write=False) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            card = None
            if qr:
                try:
                    number = verify_token(
                        tenant.qr_secret, qr, self.clock.now().timestamp(), tenant.qr_window_seconds
                    )
                except InvalidQrToken as exc:
                    raise ValidationFailed(
                        f"QR code not accepted: {exc}.", code="invalid_qr_token"
                    ) from exc
            if number:
                card = self._card(uow, tenant, number)
                if card["status"] != "active" or card["member_id"] is None:
                    raise Conflict(f"The card is {card['status']}.", code=f"card_{card['status']}")
                member = uow.directory.member(tenant.id, card["member_id"])
            else:
                errors = ErrorCollector()
                values = normalize_profile(tenant, {"phone": phone}, self.clock.now(), errors)
                errors.raise_if_any()
                member = uow.directory.member_by(tenant.id, "phone", values["phone"])
            if member is None:
                raise NotFound("No member found.", code="member_not_found")
            cards = uow.directory.cards_of(tenant.id, member["id"])
            return member_view(member, cards), card_view(card) if card else None

    def audit_trail(self, actor: Actor, member_id: uuid.UUID) -> list[dict[str, Any]]:
        with self.uow_factory(write=False) as uow:
            if uow.directory.member(actor.tenant_id, member_id) is None:
                raise NotFound("Member not found.", code="member_not_found")
            return uow.directory.audit_trail(actor.tenant_id, "member", str(member_id))
