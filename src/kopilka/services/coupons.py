"""Coupons and promo codes: public codes with limits, batches of unique single-use codes
(generated in bulk, exported as CSV and printable images), personal coupons, and the till's
side: accept or reject each presented code, redeem atomically on confirm, give the use back
on a refund when the program says so."""

from __future__ import annotations

import csv
import io
import uuid
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import TYPE_CHECKING, Any, Literal

import segno
from barcode import Code128  # type: ignore[import-untyped]
from barcode.writer import SVGWriter  # type: ignore[import-untyped]

from kopilka.adapters.db.mechanics.coupons import CODE_COLUMNS, CouponStore
from kopilka.clock import Clock
from kopilka.domain.coupons import codes as coupon_codes
from kopilka.domain.coupons import texts
from kopilka.domain.coupons.terms import (
    BatchInput,
    CouponTerms,
    PersonalCouponInput,
    PromoCodeInput,
    Terms,
    Validity,
    check_terms,
)
from kopilka.domain.coupons.till import (
    UNCOUNTED_USES,
    CouponRule,
    Mark,
    Offer,
    Outcome,
    Program,
    answer,
    build_rules,
    decide,
    presented,
)
from kopilka.domain.errors import (
    BusinessRuleViolation,
    Conflict,
    ErrorCollector,
    FieldError,
    NotFound,
    ValidationFailed,
)
from kopilka.domain.rules.document import CompiledProgram, CompiledRule
from kopilka.domain.rules.facts import MemberFacts
from kopilka.ids import new_id
from kopilka.services.context import Actor, Tenant, load_tenant
from kopilka.services.idempotency import remember, replay_or_claim, request_hash
from kopilka.services.members import MemberHook, audit_merge
from kopilka.services.ports import UnitOfWork, UnitOfWorkFactory
from kopilka.services.programs import ProgramService
from kopilka.services.purchase_hooks import PurchaseHook
from kopilka.services.views import View

if TYPE_CHECKING:
    from kopilka.services.purchases import Evaluated, ReceiptInput

MAX_IMAGES = 10_000  # per export request; page through bigger batches
CSV_CHUNK = 5_000
MAX_GENERATION_ROUNDS = 20
TABLE_KINDS = frozenset({"personal", "public", "batch"})
CouponStatus = Literal["active", "used", "expired", "not_yet_valid", "voided"]


# ---- views ------------------------------------------------------------------------------
class RedemptionView(View):
    receipt_id: uuid.UUID
    member_id: uuid.UUID | None
    discount: int
    points: int
    status: str  # redeemed or restored
    redeemed_at: datetime
    restored_at: datetime | None


class CouponView(View):
    id: uuid.UUID
    code: str
    kind: str  # personal, public, batch
    status: CouponStatus
    member_id: uuid.UUID | None
    batch_id: uuid.UUID | None
    benefit: dict[str, Any]
    name: dict[str, str] | None
    description: dict[str, str]
    min_basket: int
    scope: dict[str, Any] | None
    combinable: bool
    outlets: list[str] | None
    channels: list[str] | None
    program: str | None
    valid_from: datetime
    valid_until: datetime | None
    uses_total: int | None  # None: no total limit
    uses_left: int | None
    per_member: int | None
    source_type: str
    source_id: str | None
    created_at: datetime
    voided_at: datetime | None
    redemptions: list[RedemptionView] | None = None


class BatchCounts(View):
    codes: int
    used: int
    voided: int


class BatchView(View):
    id: uuid.UUID
    code: str
    status: str  # active or voided
    count: int
    length: int
    prefix: str
    alphabet: str
    benefit: dict[str, Any]
    name: dict[str, str] | None
    description: dict[str, str]
    min_basket: int
    scope: dict[str, Any] | None
    combinable: bool
    outlets: list[str] | None
    channels: list[str] | None
    program: str | None
    valid_from: datetime
    valid_until: datetime | None
    created_at: datetime
    voided_at: datetime | None
    counts: BatchCounts | None = None


@dataclass(frozen=True)
class ImagesExport:
    """A ZIP of printable images of one page of a batch's codes."""

    content: bytes
    filename: str
    total: int
    next_page: int | None


# ---- the service ------------------------------------------------------------------------
class CouponService:
    def __init__(self, uow_factory: UnitOfWorkFactory, clock: Clock, programs: ProgramService):
        self.uow_factory = uow_factory
        self.clock = clock
        self.programs = programs
        self.hook = CouponHook(self)
        self.member_hook = CouponMemberHook(self)

    # ---- public promo codes ------------------------------------------------------------
    def create_promo(self, actor: Actor, body: PromoCodeInput) -> CouponView:
        """A public code; the same code and terms again answer the code already there."""
        code = _parse_code(body.code, ("code",))
        now = self.clock.now()
        start, end = check_terms(body, body, now)
        digest = request_hash("coupon.promo", body.model_dump(mode="json", exclude={"code"}))
        with self.uow_factory(write=True) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            store = CouponStore(uow)
            store.lock_code(tenant.id, code)
            existing = store.by_code(tenant.id, code)
            if existing is not None:
                if (
                    existing["kind"] == "public"
                    and (existing["terms"] or {}).get("digest") == digest
                ):
                    return _coupon_view(existing, tenant, now)
                raise Conflict(f"The code {code} is already taken.", code="coupon_code_taken")
            terms = Terms.of(body)
            row = _coupon_row(
                tenant.id,
                code,
                terms,
                start,
                end,
                kind="public",
                uses=body.max_uses,
                per_member=body.per_member,
                member_id=None,
                source=("promo", actor.name[:128]),
                now=now,
                extra={"digest": digest},
            )
            store.insert(row)
            uow.directory.audit(
                tenant.id, actor.name, "coupon.create", "coupon", code, {"kind": "public"}, now
            )
            uow.commit()
            return _coupon_view(row, tenant, now)

    def get(self, actor: Actor, code: str) -> CouponView:
        """A coupon by its code, with its latest redemptions."""
        normal = _parse_code(code, ("code",))
        with self.uow_factory(write=False) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            store = CouponStore(uow)
            row = _found(store.by_code(tenant.id, normal))
            redemptions = store.redemptions_of_coupon(tenant.id, row["id"], 20)
            return _coupon_view(row, tenant, self.clock.now(), redemptions)

    def void(self, actor: Actor, code: str) -> CouponView:
        """Cancel a coupon: it can no longer be used. Voiding again changes nothing."""
        normal = _parse_code(code, ("code",))
        with self.uow_factory(write=True) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            store = CouponStore(uow)
            row = _found(store.by_code(tenant.id, normal))
            now = self.clock.now()
            if row["status"] == "active":
                store.void(tenant.id, row["id"], now)
                uow.directory.audit(tenant.id, actor.name, "coupon.void", "coupon", normal, {}, now)
                row = _found(store.by_code(tenant.id, normal))
            uow.commit()
            return _coupon_view(row, tenant, now)

    # ---- batches -----------------------------------------------------------------------
    def create_batch(self, actor: Actor, body: BatchInput) -> BatchView:
        """Generate ``count`` unique codes in one transaction. The batch's code is its
        natural key: the same request again answers the batch already there."""
        now = self.clock.now()
        errors = ErrorCollector()
        body.check(errors)
        start, end = body.window(now, errors)
        alphabet = (body.alphabet or coupon_codes.DEFAULT_ALPHABET).upper()
        prefix = body.prefix.upper()
        problem = coupon_codes.check_alphabet(alphabet)
        if problem:
            errors.add(("alphabet",), problem, "invalid_alphabet")
        if not coupon_codes.PREFIX_RE.match(prefix):
            errors.add(
                ("prefix",),
                "Up to 16 Latin letters, digits and hyphens, starting with a letter or digit.",
                "invalid_prefix",
            )
        if not problem and not coupon_codes.fits(body.count, alphabet, body.length):
            errors.add(
                ("length",),
                f"{len(alphabet)} characters x {body.length} make too few codes for "
                f"{body.count:,}: make the codes longer or the alphabet larger.",
                "code_space_too_small",
            )
        errors.raise_if_any("The batch is not valid.")
        digest = request_hash("coupon.batch", body.model_dump(mode="json"))
        with self.uow_factory(write=True) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            store = CouponStore(uow)
            store.lock_batch_code(tenant.id, body.code)
            existing = store.batch_by_code(tenant.id, body.code)
            if existing is not None:
                if existing["request_hash"] != digest:
                    raise Conflict(
                        f"A batch {body.code!r} already exists with other terms.",
                        code="coupon_batch_exists",
                    )
                return _batch_view(existing, tenant, store.batch_counts(tenant.id, existing["id"]))
            terms = Terms.of(body)
            batch = {
                "id": new_id(),
                "tenant_id": tenant.id,
                "code": body.code,
                "count": body.count,
                "length": body.length,
                "prefix": prefix,
                "alphabet": alphabet,
                "benefit": terms.benefit,
                "min_basket": terms.min_basket,
                "terms": terms.to_json(),
                "valid_from": start,
                "valid_until": end,
                "status": "active",
                "request_hash": digest,
                "actor": actor.name[:128],
                "created_at": now,
                "voided_at": None,
            }
            store.insert_batch(batch)
            self._generate(store, tenant.id, batch, now)
            uow.directory.audit(
                tenant.id,
                actor.name,
                "coupon_batch.create",
                "coupon_batch",
                str(batch["id"]),
                {"code": body.code, "count": body.count},
                now,
            )
            uow.commit()
            counts = {"codes": body.count, "used": 0, "voided": 0}
            return _batch_view(batch, tenant, counts)

    def _generate(
        self, store: CouponStore, tenant_id: uuid.UUID, batch: dict[str, Any], now: datetime
    ) -> None:
        """Insert the batch's codes, drawing again for any already taken."""
        length, alphabet, prefix = batch["length"], batch["alphabet"], batch["prefix"]
        wanted = coupon_codes.generate(batch["count"], length, alphabet, prefix)
        for _ in range(MAX_GENERATION_ROUNDS):
            taken = store.insert_codes(_code_rows(batch, wanted, now))
            if not taken:
                return
            # Only the clashing codes are drawn again; the rest are in.
            try:
                wanted = coupon_codes.replace_taken(list(taken), taken, length, alphabet, prefix)
            except coupon_codes.CodeSpaceExhausted:
                break
        raise Conflict(
            "Could not find enough free codes; make the codes longer.", code="code_space_exhausted"
        )

    def batches(self, actor: Actor, before: uuid.UUID | None, limit: int) -> list[BatchView]:
        with self.uow_factory(write=False) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            rows = CouponStore(uow).batches(tenant.id, before, limit)
            return [_batch_view(row, tenant) for row in rows]

    def batch(self, actor: Actor, batch_id: uuid.UUID) -> BatchView:
        with self.uow_factory(write=False) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            store = CouponStore(uow)
            row = _found_batch(store.batch(tenant.id, batch_id))
            return _batch_view(row, tenant, store.batch_counts(tenant.id, batch_id))

    def void_batch(self, actor: Actor, batch_id: uuid.UUID) -> BatchView:
        """Void the batch and every code of it still active; again changes nothing."""
        with self.uow_factory(write=True) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            store = CouponStore(uow)
            row = _found_batch(store.batch(tenant.id, batch_id))
            now = self.clock.now()
            if row["status"] == "active":
                store.void_batch(tenant.id, batch_id, now)
                uow.directory.audit(
                    tenant.id,
                    actor.name,
                    "coupon_batch.void",
                    "coupon_batch",
                    str(batch_id),
                    {"code": row["code"]},
                    now,
                )
                row = _found_batch(store.batch(tenant.id, batch_id))
            counts = store.batch_counts(tenant.id, batch_id)
            uow.commit()
            return _batch_view(row, tenant, counts)

    def export_csv(self, actor: Actor, batch_id: uuid.UUID) -> tuple[str, Iterator[str]]:
        """The file name and the CSV's text in chunks (streamed: read page by page, each in
        its own short read). The batch is looked up first, so a wrong id is a 404."""
        with self.uow_factory(write=False) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            row = _found_batch(CouponStore(uow).batch(tenant.id, batch_id))
        now = self.clock.now()

        def chunks() -> Iterator[str]:
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(["code", "status", "uses_left", "valid_from", "valid_until"])
            yield out.getvalue()
            after: str | None = None
            while True:
                with self.uow_factory(write=False) as uow:
                    page = CouponStore(uow).batch_codes(tenant.id, batch_id, after, CSV_CHUNK)
                if not page:
                    return
                out = io.StringIO()
                writer = csv.writer(out, lineterminator="\n")
                for item in page:
                    writer.writerow(
                        [
                            item["code"],
                            _status(item, now),
                            item["uses_left"],
                            item["valid_from"].isoformat(),
                            item["valid_until"].isoformat() if item["valid_until"] else "",
                        ]
                    )
                yield out.getvalue()
                after = page[-1]["code"]

        return f"coupons-{row['code']}.csv", chunks()

    def export_images(
        self,
        actor: Actor,
        batch_id: uuid.UUID,
        kind: Literal["qr", "barcode"],
        page: int,
        per_page: int,
    ) -> ImagesExport:
        """One page of the batch's codes as printable images in a ZIP: a QR code (PNG) or
        a Code 128 barcode (SVG) per code, and ``sheet.html`` to print them all."""
        if not 1 <= per_page <= MAX_IMAGES or page < 1:
            raise ValidationFailed(
                f"page from 1, per_page from 1 to {MAX_IMAGES}.", code="invalid_page"
            )
        with self.uow_factory(write=False) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            store = CouponStore(uow)
            row = _found_batch(store.batch(tenant.id, batch_id))
            total = store.batch_counts(tenant.id, batch_id)["codes"]
            page_codes = store.batch_page(tenant.id, batch_id, (page - 1) * per_page, per_page)
        if not page_codes and page > 1:
            raise ValidationFailed(
                f"The batch has {total} codes: page {page} is past the end.",
                code="page_out_of_range",
            )
        content = _images_zip(page_codes, kind)
        more = page * per_page < total
        return ImagesExport(
            content=content,
            filename=f"coupons-{row['code']}-{kind}-{page}.zip",
            total=total,
            next_page=page + 1 if more else None,
        )

    # ---- personal coupons --------------------------------------------------------------
    def issue(
        self,
        actor: Actor,
        member_id: uuid.UUID,
        body: PersonalCouponInput,
        idempotency_key: str | None = None,
    ) -> CouponView:
        """A coupon for one member, from the admin; the Idempotency-Key makes a retry
        answer the same coupon."""
        now = self.clock.now()
        digest = request_hash(
            "coupon.issue", {"member": str(member_id), **body.model_dump(mode="json")}
        )
        with self.uow_factory(write=True) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            stored = replay_or_claim(uow, tenant.id, idempotency_key, digest)
            if stored is not None:
                return CouponView.model_validate(stored)
            _member(uow, tenant.id, member_id)
            row = self.issue_in(
                uow,
                tenant,
                member_id,
                body,
                body,
                now,
                source=("admin", actor.name),
                uses=body.uses,
            )
            view = _coupon_view(row, tenant, now)
            uow.directory.audit(
                tenant.id,
                actor.name,
                "coupon.issue",
                "member",
                str(member_id),
                {"code": row["code"]},
                now,
            )
            remember(uow, tenant.id, idempotency_key, digest, view.to_json(), now)
            uow.commit()
            return view

    def issue_in(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        member_id: uuid.UUID,
        terms: CouponTerms,
        validity: Validity,
        now: datetime,
        *,
        source: tuple[str, str | None],
        uses: int = 1,
    ) -> dict[str, Any]:
        """Issue a personal coupon inside the caller's unit of work (campaigns, jobs and
        other features call this); raises ValidationFailed for bad terms. Returns the row."""
        start, end = check_terms(terms, validity, now)
        store = CouponStore(uow)
        code = coupon_codes.generate(1, coupon_codes.DEFAULT_LENGTH)[0]
        while store.code_taken(tenant.id, code):  # one in 8 x 10^14: a loop for form's sake
            code = coupon_codes.generate(1, coupon_codes.DEFAULT_LENGTH)[0]
        row = _coupon_row(
            tenant.id,
            code,
            Terms.of(terms),
            start,
            end,
            kind="personal",
            uses=uses,
            per_member=None,
            member_id=member_id,
            source=(source[0][:24], source[1][:128] if source[1] else None),
            now=now,
        )
        store.insert(row)
        return row

    def member_coupons(
        self, actor: Actor, member_id: uuid.UUID, before: uuid.UUID | None, limit: int
    ) -> list[CouponView]:
        """The member's personal coupons, newest first, whoever issued them."""
        with self.uow_factory(write=False) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            _member(uow, tenant.id, member_id)
            rows = CouponStore(uow).of_member(tenant.id, member_id, before, limit)
            now = self.clock.now()
            return [_coupon_view(row, tenant, now) for row in rows]


# ---- the till -------------------------------------------------------------------------
class CouponHook(PurchaseHook):
    """Presented codes become rules of the program they join; confirm redeems the applied
    ones atomically; a full refund gives them back when the program says so."""

    anonymous_too = True  # public promo codes work without a member

    def __init__(self, service: CouponService) -> None:
        self.service = service
        # Codes named by program rules (``when: {coupon: X}``), per immutable version.
        self._refs: dict[tuple[uuid.UUID, str, int], dict[str, tuple[tuple[str, str], ...]]] = {}

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
        codes = presented(request.coupons)
        if not codes:
            return []
        store = CouponStore(uow)
        rows = store.by_codes(tenant.id, [c for c in codes if coupon_codes.is_valid(c)])
        member_id: uuid.UUID | None = member["id"] if member else None
        used: dict[uuid.UUID, int] = {}
        own: set[uuid.UUID] = set()
        if member_id is not None:
            used = store.member_uses(
                tenant.id, [r["id"] for r in rows.values() if r["per_member"]], member_id
            )
            if any(r["member_id"] not in (None, member_id) for r in rows.values()):
                # A coupon of a profile merged into this one is this member's coupon.
                own = set(uow.directory.merged_into(tenant.id, member_id))
        offers = {
            code: _offer(row, used, member_id if row["member_id"] in own else None)
            for code, row in rows.items()
        }
        missing = [c for c in codes if coupon_codes.is_valid(c) and c not in rows]
        refs = self._program_refs(uow, tenant.id, programs, missing) if missing else {}
        in_force = [
            Program(
                p.code,
                not p.settings.members_of_club,
                p.settings.coupons.max_per_receipt,
                p.settings.coupons.priority,
            )
            for p in programs
        ]
        verdicts = decide(
            codes,
            offers,
            refs,
            member_id=member_id,
            moment=moment,
            channel=request.channel,
            programs=in_force,
            timezone=tenant.timezone,
        )
        rules = build_rules(verdicts, {p.code: p.priority for p in in_force})
        return [(program, rule) for program, rule in rules]

    def _program_refs(
        self,
        uow: UnitOfWork,
        tenant_id: uuid.UUID,
        programs: Sequence[CompiledProgram],
        codes: Sequence[str],
    ) -> dict[str, tuple[tuple[str, str], ...]]:
        """Which rules of the programs name each code in a ``coupon`` condition."""
        found: dict[str, list[tuple[str, str]]] = {}
        for program in programs:
            key = (tenant_id, program.code, program.version)
            named = self._refs.get(key)
            if named is None:
                row = uow.commerce.program_version(tenant_id, program.code, program.version)
                named = _coupon_conditions(row["document"] if row else {}, program.code)
                self._refs[key] = named
            for code in codes:
                found.setdefault(code, []).extend(named.get(code, ()))
        return {code: tuple(refs) for code, refs in found.items() if refs}

    def extras(self, uow: UnitOfWork, found: Evaluated) -> dict[str, Any]:
        ctx = found.context
        if ctx is None or not ctx.coupons:
            return {}
        marks: list[Mark] = [
            rule.mark for p in found.programs for rule in p.rules if isinstance(rule, CouponRule)
        ]
        covered = {m.code for m in marks}
        leftover = sorted(set(presented(ctx.coupons)) - covered)
        if not marks and not leftover:
            return {}
        ev = found.evaluation
        outcomes: dict[tuple[str, str], Outcome] = {
            (program, rid): Outcome(True)
            for program, rids in ev.rules_by_program.items()
            for rid in rids
        }
        for item in ev.applied:
            key = (item.program, item.rule_id)
            before = outcomes.get(key, Outcome(True))
            outcomes[key] = Outcome(
                True,
                before.discount + item.discount,
                before.points + item.points,
                before.other or item.kind in ("gift", "issue_coupon"),
            )
        return {
            "coupons": answer(
                marks,
                leftover,
                outcomes,
                lines=found.source_lines,
                outlet_code=found.outlet["code"],
                currency=found.tenant.currency,
            )
        }

    def on_confirmed(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        receipt: dict[str, Any],
        lines: list[dict[str, Any]],
        now: datetime,
    ) -> dict[str, Any]:
        """Redeem the applied coupons: a use each, counted down atomically. A coupon
        another till took first fails the whole receipt (409), so it can calculate again."""
        entries = _applied(receipt)
        if not entries:
            return {}
        store = CouponStore(uow)
        member_id = receipt["member_id"]
        for entry in entries:
            code = entry["code"]
            row = store.by_code(tenant.id, code)
            if row is None:
                raise Conflict(f"The coupon {code} is gone.", code="coupon_already_used")
            if _counted(row):
                taken = store.take_use(tenant.id, row["id"])
            else:
                taken = store.still_active(tenant.id, row["id"])
            if not taken:
                raise Conflict(
                    f"The coupon {code} was used up a moment ago; calculate the receipt again.",
                    code="coupon_already_used",
                    extra={"coupon": code},
                )
            if row["per_member"] is not None and member_id is not None:
                if not _counted(row):
                    store.serialise_member(tenant.id, row["id"], member_id)
                uses = store.member_uses(tenant.id, [row["id"]], member_id).get(row["id"], 0)
                if uses >= row["per_member"]:
                    raise Conflict(
                        f"The member has already used the coupon {code}; calculate again.",
                        code="coupon_member_limit_reached",
                        extra={"coupon": code},
                    )
            store.insert_redemption(
                {
                    "id": new_id(),
                    "tenant_id": tenant.id,
                    "coupon_id": row["id"],
                    "code": code,
                    "receipt_id": receipt["id"],
                    "member_id": member_id,
                    "outlet_id": receipt["outlet_id"],
                    "discount": int(entry["discount"]),
                    "points": int(entry["points"]),
                    "status": "redeemed",
                    "redeemed_at": now,
                    "restored_at": None,
                }
            )
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
        """A receipt refunded in full (or cancelled) gives its coupons' uses back when the
        program says ``restore_on_refund`` (a cancellation always does); a partial refund
        keeps them used."""
        entries = _applied(receipt)
        if not entries:
            return {}
        lines = uow.commerce.receipt_lines(tenant.id, receipt["id"])
        if any(line["refunded_qty"] < line["qty"] for line in lines):
            return {}
        allowed = {
            entry["code"]
            for entry in entries
            if refund.get("kind") == "cancel" or self._restores(uow, tenant, receipt, entry)
        }
        store = CouponStore(uow)
        restored = []
        for redemption in store.redemptions_of_receipt(tenant.id, receipt["id"]):
            if redemption["code"] not in allowed or redemption["status"] != "redeemed":
                continue
            if not store.mark_restored(tenant.id, redemption["id"], now):
                continue
            row = store.by_code(tenant.id, redemption["code"])
            if row is not None and _counted(row):
                store.give_use_back(tenant.id, row["id"])
            restored.append(redemption["code"])
        return {"coupons_restored": restored} if restored else {}

    def _restores(
        self, uow: UnitOfWork, tenant: Tenant, receipt: dict[str, Any], entry: dict[str, Any]
    ) -> bool:
        program = entry.get("program")
        version = (receipt.get("programs") or {}).get(program)
        if not program or version is None:
            return False
        compiled = self.service.programs.compiled(uow, tenant.id, program, int(version))
        return compiled.settings.coupons.restore_on_refund


# ---- helpers --------------------------------------------------------------------------
def _parse_code(text: str, path: tuple[str | int, ...]) -> str:
    try:
        return coupon_codes.parse(text)
    except coupon_codes.InvalidCode as exc:
        raise ValidationFailed(
            str(exc),
            code="invalid_coupon_code",
            errors=[FieldError(path, str(exc), "invalid_coupon_code")],
        ) from exc


def _found(row: dict[str, Any] | None) -> dict[str, Any]:
    if row is None:
        raise NotFound("Coupon not found.", code="coupon_not_found")
    return row


def _found_batch(row: dict[str, Any] | None) -> dict[str, Any]:
    if row is None:
        raise NotFound("Coupon batch not found.", code="coupon_batch_not_found")
    return row


def _member(uow: UnitOfWork, tenant_id: uuid.UUID, member_id: uuid.UUID) -> dict[str, Any]:
    member = uow.directory.member(tenant_id, member_id)
    if member is None:
        raise NotFound("Member not found.", code="member_not_found")
    if member["status"] == "erased":
        raise BusinessRuleViolation("The member was erased.", code="member_erased")
    return member


def _counted(row: dict[str, Any]) -> bool:
    """Are the coupon's uses counted down? Not for a public code without a total."""
    return not (row["kind"] == "public" and row["uses_total"] is None)


def _applied(receipt: dict[str, Any]) -> list[dict[str, Any]]:
    entries = (receipt.get("result") or {}).get("coupons") or []
    return [e for e in entries if e.get("status") == "applied" and e.get("kind") in TABLE_KINDS]


def _terms(row: dict[str, Any]) -> Terms:
    stored = row.get("batch_terms") if row.get("batch_id") else row.get("terms")
    return Terms.from_row(row["benefit"], row["min_basket"], stored)


def _offer(row: dict[str, Any], used: dict[uuid.UUID, int], merged_to: uuid.UUID | None) -> Offer:
    return Offer(
        id=row["id"],
        code=row["code"],
        kind=row["kind"],
        member_id=merged_to or row["member_id"],
        active=row["status"] == "active" and row.get("batch_status") in (None, "active"),
        valid_from=row["valid_from"],
        valid_until=row["valid_until"],
        uses_left=row["uses_left"],
        per_member=row["per_member"],
        terms=_terms(row),
        used_by_member=used.get(row["id"], 0),
    )


def _coupon_conditions(document: Any, program: str) -> dict[str, tuple[tuple[str, str], ...]]:
    """Codes named by ``coupon`` conditions in a program document, with the rules naming them."""
    found: dict[str, list[tuple[str, str]]] = {}

    def walk(node: Any, rule: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "coupon" and isinstance(value, str):
                    found.setdefault(coupon_codes.normalise(value), []).append((program, rule))
                else:
                    walk(value, rule)
        elif isinstance(node, list):
            for item in node:
                walk(item, rule)

    rules = document.get("rules") if isinstance(document, dict) else None
    for raw in rules if isinstance(rules, list) else []:
        if isinstance(raw, dict) and isinstance(raw.get("id"), str):
            walk(raw.get("when"), raw["id"])
    return {code: tuple(refs) for code, refs in found.items()}


def _coupon_row(
    tenant_id: uuid.UUID,
    code: str,
    terms: Terms,
    start: datetime,
    end: datetime | None,
    *,
    kind: str,
    uses: int | None,
    per_member: int | None,
    member_id: uuid.UUID | None,
    source: tuple[str, str | None],
    now: datetime,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "id": new_id(),
        "tenant_id": tenant_id,
        "code": code,
        "member_id": member_id,
        "benefit": terms.benefit,
        "min_basket": terms.min_basket,
        "valid_from": start,
        "valid_until": end,
        "uses_left": uses if uses is not None else UNCOUNTED_USES,
        "status": "active",
        "source_type": source[0],
        "source_id": source[1],
        "created_at": now,
        "kind": kind,
        "batch_id": None,
        "uses_total": uses,
        "per_member": per_member,
        "terms": {**terms.to_json(), **(extra or {})},
        "voided_at": None,
    }


def _code_rows(batch: dict[str, Any], codes: Sequence[str], now: datetime) -> list[tuple[Any, ...]]:
    """Rows of generated codes in ``CODE_COLUMNS`` order; the terms stay with the batch."""
    fixed = {
        "tenant_id": batch["tenant_id"],
        "member_id": None,
        "benefit": batch["benefit"],
        "min_basket": batch["min_basket"],
        "valid_from": batch["valid_from"],
        "valid_until": batch["valid_until"],
        "uses_left": 1,
        "status": "active",
        "source_type": "batch",
        "source_id": str(batch["id"]),
        "created_at": now,
        "kind": "batch",
        "batch_id": batch["id"],
        "uses_total": 1,
        "per_member": None,
        "terms": None,
        "voided_at": None,
    }
    # id, tenant_id, code lead CODE_COLUMNS: each row is those three and a shared tail.
    assert CODE_COLUMNS[:3] == ("id", "tenant_id", "code")
    tenant_id = batch["tenant_id"]
    tail = tuple(fixed[c] for c in CODE_COLUMNS[3:])
    return [(new_id(), tenant_id, code, *tail) for code in codes]


def _status(row: dict[str, Any], now: datetime) -> CouponStatus:
    if row["status"] != "active":
        return "voided"
    if row["uses_left"] <= 0:
        return "used"  # used stays used, even in a batch voided afterwards
    if row.get("batch_status") not in (None, "active"):
        return "voided"
    if row["valid_until"] is not None and now >= row["valid_until"]:
        return "expired"
    if now < row["valid_from"]:
        return "not_yet_valid"
    return "active"


def _coupon_view(
    row: dict[str, Any],
    tenant: Tenant,
    now: datetime,
    redemptions: list[dict[str, Any]] | None = None,
) -> CouponView:
    terms = _terms(row)
    counted = _counted(row)
    return CouponView(
        id=row["id"],
        code=row["code"],
        kind=row["kind"],
        status=_status(row, now),
        member_id=row["member_id"],
        batch_id=row["batch_id"],
        **_terms_fields(terms, row, tenant),
        uses_total=row["uses_total"] if counted else None,
        uses_left=max(row["uses_left"], 0) if counted else None,
        per_member=row["per_member"],
        source_type=row["source_type"],
        source_id=row["source_id"],
        created_at=row["created_at"],
        voided_at=row["voided_at"],
        redemptions=None
        if redemptions is None
        else [
            RedemptionView(
                receipt_id=r["receipt_id"],
                member_id=r["member_id"],
                discount=r["discount"],
                points=r["points"],
                status=r["status"],
                redeemed_at=r["redeemed_at"],
                restored_at=r["restored_at"],
            )
            for r in redemptions
        ],
    )


def _batch_view(
    row: dict[str, Any], tenant: Tenant, counts: dict[str, int] | None = None
) -> BatchView:
    terms = Terms.from_row(row["benefit"], row["min_basket"], row["terms"])
    return BatchView(
        id=row["id"],
        code=row["code"],
        status=row["status"],
        count=row["count"],
        length=row["length"],
        prefix=row["prefix"],
        alphabet=row["alphabet"],
        **_terms_fields(terms, row, tenant),
        created_at=row["created_at"],
        voided_at=row["voided_at"],
        counts=BatchCounts(**counts) if counts is not None else None,
    )


def _images_zip(codes: Sequence[str], kind: Literal["qr", "barcode"]) -> bytes:
    buffer = io.BytesIO()
    suffix = "png" if kind == "qr" else "svg"
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for code in codes:
            image = io.BytesIO()
            if kind == "qr":
                segno.make(code, error="m").save(image, kind="png", scale=6, border=2)
                # A PNG is compressed already: stored, not deflated again.
                archive.writestr(f"{code}.png", image.getvalue(), zipfile.ZIP_STORED)
            else:
                Code128(code, writer=SVGWriter()).write(image, options={"module_height": 12.0})
                archive.writestr(f"{code}.svg", image.getvalue())
        archive.writestr("sheet.html", _sheet(codes, suffix))
    return buffer.getvalue()


def _sheet(codes: Sequence[str], suffix: str) -> str:
    """A page to print the images on, a grid of labelled tiles."""
    tiles = "\n".join(
        f'<figure><img src="{escape(c)}.{suffix}" alt="{escape(c)}">'
        f"<figcaption>{escape(c)}</figcaption></figure>"
        for c in codes
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Coupons</title><style>"
        "body{font-family:sans-serif;display:flex;flex-wrap:wrap;gap:8mm;margin:10mm}"
        "figure{margin:0;width:45mm;text-align:center;break-inside:avoid}"
        "img{width:100%}figcaption{font:12pt monospace}</style></head><body>\n"
        f"{tiles}\n</body></html>\n"
    )


def _terms_fields(terms: Any, row: dict[str, Any], tenant: Tenant) -> dict[str, Any]:
    """What a coupon and a batch show alike: the terms and the validity window."""
    return {
        "benefit": terms.benefit,
        "name": terms.name,
        "description": texts.describe(
            terms.benefit, terms.min_basket, row["valid_until"], tenant.timezone, tenant.currency
        ),
        "min_basket": terms.min_basket,
        "scope": terms.scope,
        "combinable": terms.combinable,
        "outlets": list(terms.outlets) if terms.outlets else None,
        "channels": list(terms.channels) if terms.channels else None,
        "program": terms.program,
        "valid_from": row["valid_from"],
        "valid_until": row["valid_until"],
    }


class CouponMemberHook(MemberHook):
    """A merge gives the duplicate's personal coupons (issued by receipts, rewards, staff)
    and its coupon redemptions to the survivor, so a per-member limit counts both
    profiles' uses: a merge never makes a used code usable again."""

    def __init__(self, service: CouponService) -> None:
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
        coupons, redemptions = CouponStore(uow).move_member(tenant.id, duplicate_id, survivor_id)
        if coupons or redemptions:
            audit_merge(
                uow,
                tenant,
                actor,
                "coupon.member_merged",
                survivor_id,
                duplicate_id,
                now,
                coupons=coupons,
                redemptions=redemptions,
            )
