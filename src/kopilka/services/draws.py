"""Contests and prize draws with verifiable fairness.

A draw goes draft -> open -> frozen -> drawn:

* **open**: a 32-byte random seed is chosen and kept secret; its sha256 is published at once
  (the commitment), while the entries are still unknown.
* **freeze** (after the window): the entries are computed set-based from confirmed receipts
  of the window (refunds subtracted, full refunds left out), numbered in the order the
  receipts were made, stored, and their hash published; every entrant gets a line in their
  history. The list never changes afterwards.
* **run** (from the draw's day): the seed is revealed and the winners picked by the
  deterministic algorithm in :mod:`kopilka.domain.draws.fairness`, which
  ``kopilka draw verify`` re-runs offline from ``GET /v1/draws/{code}/public``.

Prizes are delivered after the draw, one winner per unit of work, so one winner's problem
(a blocked profile, a reward out of stock) never undoes the draw or another prize; what is
left is retried by the next ``run`` (or by the jobs run). Points prizes are bonuses with a
natural key per slot. A reward prize is the reward's price for the winner, credited as the
prize and spent at once on an order through the catalogue's own redemption (stock, limits);
if the catalogue refuses the order, the winner keeps the points.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from kopilka.adapters.db.mechanics.draws import DrawStore
from kopilka.adapters.db.mechanics.rewards import RewardStore
from kopilka.clock import Clock
from kopilka.domain.draws import texts
from kopilka.domain.draws.definition import (
    DrawDefinition,
    EntryRules,
    LocalLongText,
    LocalText,
    Prize,
    PrizeKind,
    check_definition,
    slots,
)
from kopilka.domain.draws.entries import (
    RefundedLine,
    fully_refunded,
    local_day,
    net_paid,
    qualifies,
    weight,
    window,
)
from kopilka.domain.draws.fairness import (
    ALGORITHM,
    Entry,
    Publication,
    PublicEntry,
    PublicPrize,
    PublicText,
    PublicWinner,
    canonical_line,
    entries_hash,
    pick_winners,
    pseudonym,
    seed_hash,
)
from kopilka.domain.errors import (
    BusinessRuleViolation,
    Conflict,
    FieldError,
    KopilkaError,
    NotFound,
    ValidationFailed,
)
from kopilka.domain.ledger.expiry import expires_at as policy_expiry
from kopilka.domain.rewards.definition import RewardDefinition
from kopilka.domain.rewards.logic import unit_cost
from kopilka.ids import new_id
from kopilka.services.awards import grant_points
from kopilka.services.context import Actor, Role, Tenant, load_tenant
from kopilka.services.jobs import JOB_ACTOR
from kopilka.services.ledger_book import MemberBook
from kopilka.services.members import current_profile
from kopilka.services.ports import UnitOfWork, UnitOfWorkFactory
from kopilka.services.programs import ProgramService
from kopilka.services.rewards import RedeemInput, RewardService
from kopilka.services.views import View

MECHANIC = "draw"  # the ledger label "Приз розыгрыша" (MECHANIC_LABELS)
MAX_MERGE_HOPS = 10
_RETRY_ON_RUN = ("pending", "granted", "failed")
_RETRY_BY_JOB = ("pending", "granted")  # failed ones wait for someone to look (POST run)
_PRIZE_FALLBACK: texts.Text = {"ru": "Приз", "en": "Prize"}


# ---- views ---------------------------------------------------------------------------------
class PrizeView(View):
    rank: int
    count: int
    kind: PrizeKind
    points: int | None
    reward_id: uuid.UUID | None
    name: dict[str, str]


class WinnerView(View):
    slot: int
    rank: int
    entry: int
    member_id: uuid.UUID
    pseudonym: str
    prize: dict[str, str]  # its name
    status: str
    status_text: dict[str, str]
    points: int  # credited for the prize (a reward prize: its price, spent on the order)
    paid_to: uuid.UUID | None  # the profile credited: the survivor when the winner merged
    transaction_id: uuid.UUID | None
    order_id: uuid.UUID | None
    error: str | None


class DrawView(View):
    """A draw as the marketing team sees it (the seed only once it has run)."""

    id: uuid.UUID
    code: str
    name: LocalText
    description: LocalLongText | None
    status: str
    status_text: dict[str, str]
    timezone: str
    starts_on: date
    ends_on: date
    draw_on: date
    entry_rules: EntryRules
    prizes: list[PrizeView]
    one_prize_per_member: bool
    algorithm: str
    seed_hash: str | None
    seed: str | None
    entries_hash: str | None
    entries_count: int
    entrants: int
    total_weight: int
    winners: list[WinnerView]
    created_at: datetime
    opened_at: datetime | None
    frozen_at: datetime | None
    drawn_at: datetime | None


class MemberEntryView(View):
    entry: int | None  # the number in the frozen list; None while provisional
    receipt_id: uuid.UUID
    occurred_at: datetime
    amount: int  # paid in money, less refunds
    weight: int


class MemberPrizeView(View):
    slot: int
    rank: int
    prize: dict[str, str]
    status: str
    status_text: dict[str, str]
    points: int
    order_id: uuid.UUID | None


class MemberDrawView(View):
    """One draw the member takes part in."""

    draw_id: uuid.UUID
    code: str
    name: LocalText
    status: str
    status_text: dict[str, str]
    starts_on: date
    ends_on: date
    draw_on: date
    # Open draws: the entries so far, as they would be frozen now (tier as of now).
    provisional: bool
    pseudonym: str  # the member's name in the published list
    entries: list[MemberEntryView]
    total: int  # the member's entries (sum of weights)
    total_weight: int | None  # everyone's, once frozen
    won: list[MemberPrizeView]
    summary: dict[str, str]


@dataclass(frozen=True)
class _Candidate:
    """A qualifying receipt, before numbering."""

    receipt_id: uuid.UUID
    member_id: uuid.UUID
    occurred_at: datetime
    amount: int
    weight: int
    tier: str | None
    pseudonym: str


def _definition(row: dict[str, Any]) -> DrawDefinition:
    return DrawDefinition.model_validate(row["definition"])


def _dump(definition: DrawDefinition) -> dict[str, Any]:
    return definition.model_dump(mode="json")


def _not_found() -> NotFound:
    return NotFound("Draw not found.", code="draw_not_found")


class DrawService:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        programs: ProgramService,
        rewards: RewardService,
    ) -> None:
        self.uow_factory = uow_factory
        self.clock = clock
        self.programs = programs
        # Reward prizes are ordered through the catalogue; its ``purchases`` gives member
        # facts (the tier's price) exactly as the till sees them.
        self.rewards = rewards

    # ---- admin ---------------------------------------------------------------------------
    def create(self, actor: Actor, definition: DrawDefinition) -> DrawView:
        """Add a draft draw. Idempotent on its code: the same definition again answers the
        draw already there; another definition under a taken code is a 409."""
        errors = check_definition(definition)
        if errors:
            raise ValidationFailed("The draw is not valid.", errors=errors)
        with self.uow_factory(write=True) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            if not uow.claim_key(tenant.id, f"draw:{definition.code}"):
                raise Conflict(
                    "This draw is being created; retry in a moment.",
                    code="idempotency_in_progress",
                )
            store = DrawStore(uow)
            stored = _dump(definition)
            existing = store.by_code(tenant.id, definition.code)
            if existing is not None:
                if existing["definition"] != stored:
                    raise Conflict(
                        f"Draw code {definition.code!r} is taken by another draw.",
                        code="draw_code_taken",
                    )
                return self._view(uow, tenant, existing)
            self._check_references(uow, tenant.id, definition)
            now = self.clock.now()
            draw_id = new_id()
            row: dict[str, Any] = {
                "id": draw_id,
                "tenant_id": tenant.id,
                "code": definition.code,
                "status": "draft",
                "definition": stored,
                "starts_on": definition.starts_on,
                "ends_on": definition.ends_on,
                "draw_on": definition.draw_on,
                "algorithm": ALGORITHM,
                "seed": None,
                "seed_hash": None,
                "pseudonym_key": None,
                "entries_hash": None,
                "entries_count": 0,
                "entrants": 0,
                "total_weight": 0,
                "actor": actor.name,
                "created_at": now,
                "opened_at": None,
                "frozen_at": None,
                "drawn_at": None,
                "updated_at": now,
            }
            store.insert(row)
            uow.directory.audit(
                tenant.id,
                actor.name,
                "draw.created",
                "draw",
                draw_id,
                {"code": definition.code},
                now,
            )
            view = self._view(uow, tenant, row)
            uow.commit()
            return view

    def _check_references(
        self, uow: UnitOfWork, tenant_id: uuid.UUID, definition: DrawDefinition
    ) -> None:
        """The rewards and outlets named exist in this tenant."""
        errors: list[FieldError] = []
        rewards = RewardStore(uow)
        for i, prize in enumerate(definition.prizes):
            if prize.reward_id is not None and rewards.reward(tenant_id, prize.reward_id) is None:
                errors.append(
                    FieldError(("prizes", i, "reward_id"), "No such reward.", "reward_not_found")
                )
        outlets = definition.entry_rules.outlets
        if outlets is not None:
            known = DrawStore(uow).outlet_ids(tenant_id, outlets)
            for i, code in enumerate(outlets):
                if code not in known:
                    errors.append(
                        FieldError(
                            ("entry_rules", "outlets", i), "No such outlet.", "outlet_not_found"
                        )
                    )
        if errors:
            raise ValidationFailed("The draw is not valid.", errors=errors)

    def get(self, actor: Actor, code: str) -> DrawView:
        with self.uow_factory(write=False) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            row = self._draw(DrawStore(uow), tenant.id, code)
            return self._view(uow, tenant, row)

    def list_draws(
        self, actor: Actor, after: uuid.UUID | None, limit: int, status: str | None = None
    ) -> list[DrawView]:
        with self.uow_factory(write=False) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            rows = DrawStore(uow).page(tenant.id, after, limit, status)
            return [self._view(uow, tenant, row) for row in rows]

    def open(self, actor: Actor, code: str) -> DrawView:
        """Commit to a fresh secret seed: its hash is public from now on. Opening an open
        (or later) draw again answers it as it is."""
        with self.uow_factory(write=True) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            store = DrawStore(uow)
            row = self._draw(store, tenant.id, code, lock=True)
            if row["status"] != "draft":
                return self._view(uow, tenant, row)
            now = self.clock.now()
            bounds = window(_definition(row), tenant.timezone)
            if now >= bounds.ends_at:
                # The commitment is worth something only while the entries are unknown.
                raise BusinessRuleViolation(
                    "The entry window is over: a draw opens before its window ends.",
                    code="draw_window_closed",
                    extra={"window_ended_at": bounds.ends_at.isoformat()},
                )
            seed = secrets.token_hex(32)
            values = {
                "status": "open",
                "seed": seed,
                "seed_hash": seed_hash(seed),
                "pseudonym_key": secrets.token_hex(32),
                "opened_at": now,
                "updated_at": now,
            }
            store.update(tenant.id, row["id"], values)
            uow.directory.audit(
                tenant.id,
                actor.name,
                "draw.opened",
                "draw",
                row["id"],
                {"code": code, "seed_hash": values["seed_hash"]},
                now,
            )
            view = self._view(uow, tenant, {**row, **values})
            uow.commit()
            return view

    def freeze(self, actor: Actor, code: str) -> DrawView:
        """Compute and freeze the entries once the window is over; again: as it is."""
        self._freeze(actor, code, self.clock.now())
        return self.get(actor, code)

    def _freeze(self, actor: Actor, code: str, now: datetime) -> bool:
        """True when this call froze the list."""
        with self.uow_factory(write=True) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            store = DrawStore(uow)
            row = self._draw(store, tenant.id, code, lock=True)
            if row["status"] in ("frozen", "drawn"):
                return False
            if row["status"] != "open":
                raise Conflict(
                    "Open the draw first: its seed must be committed to before the entries "
                    "are frozen.",
                    code="draw_not_open",
                )
            definition = _definition(row)
            bounds = window(definition, tenant.timezone)
            if now < bounds.ends_at:
                raise BusinessRuleViolation(
                    "The entry window is not over yet.",
                    code="draw_window_not_over",
                    extra={"window_ends_at": bounds.ends_at.isoformat()},
                )
            candidates = self._candidates(uow, tenant, definition, row["pseudonym_key"], now)
            entries = [
                {
                    "tenant_id": tenant.id,
                    "draw_id": row["id"],
                    "entry_no": n,
                    "member_id": c.member_id,
                    "pseudonym": c.pseudonym,
                    "weight": c.weight,
                    "receipt_id": c.receipt_id,
                    "occurred_at": c.occurred_at,
                    "amount": c.amount,
                    "tier": c.tier,
                }
                for n, c in enumerate(candidates, start=1)
            ]
            store.insert_entries(entries)
            totals: dict[uuid.UUID, int] = {}
            for c in candidates:
                totals[c.member_id] = totals.get(c.member_id, 0) + c.weight
            name = definition.name.model_dump()
            store.audit_many(
                [
                    {
                        "id": new_id(),
                        "tenant_id": tenant.id,
                        "actor": actor.name,
                        "action": "draw.entered",
                        "subject_type": "member",
                        "subject_id": str(member_id),
                        "details": {
                            "draw": code,
                            "entries": n,
                            "explanation": texts.entered(name, n),
                        },
                        "created_at": now,
                    }
                    for member_id, n in totals.items()
                ]
            )
            values = {
                "status": "frozen",
                "entries_hash": entries_hash(
                    Entry(e["entry_no"], e["pseudonym"], e["weight"]) for e in entries
                ),
                "entries_count": len(entries),
                "entrants": len(totals),
                "total_weight": sum(totals.values()),
                "frozen_at": now,
                "updated_at": now,
            }
            store.update(tenant.id, row["id"], values)
            uow.directory.audit(
                tenant.id,
                actor.name,
                "draw.frozen",
                "draw",
                row["id"],
                {
                    "code": code,
                    "entries_hash": values["entries_hash"],
                    "entries": len(entries),
                },
                now,
            )
            uow.commit()
            return True

    def run(self, actor: Actor, code: str) -> DrawView:
        """Reveal the seed and pick the winners (once), then deliver the prizes not yet
        delivered, failed ones included."""
        self._run(actor, code, self.clock.now(), _RETRY_ON_RUN)
        return self.get(actor, code)

    def _run(
        self, actor: Actor, code: str, now: datetime, retry: Sequence[str]
    ) -> tuple[bool, int]:
        """(whether this call drew, prizes delivered)."""
        drew = False
        with self.uow_factory(write=True) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            store = DrawStore(uow)
            row = self._draw(store, tenant.id, code, lock=True)
            if row["status"] in ("draft", "open"):
                raise Conflict(
                    "Freeze the entries first: the winners are drawn from the frozen list.",
                    code="draw_not_frozen",
                )
            if row["status"] == "frozen":
                definition = _definition(row)
                draw_at = window(definition, tenant.timezone).draw_at
                if now < draw_at:
                    raise BusinessRuleViolation(
                        "The draw's day has not come yet.",
                        code="draw_date_not_reached",
                        extra={"draw_at": draw_at.isoformat()},
                    )
                self._draw_winners(uow, tenant, actor, row, definition, now)
                drew = True
                uow.commit()
        delivered = self._deliver_all(actor, row["id"], retry)
        return drew, delivered

    def _draw_winners(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        row: dict[str, Any],
        definition: DrawDefinition,
        now: datetime,
    ) -> None:
        store = DrawStore(uow)
        stored = store.entries(tenant.id, row["id"])
        places = slots(definition.prizes)
        picks = pick_winners(
            row["seed"],
            [Entry(e["entry_no"], e["pseudonym"], e["weight"]) for e in stored],
            len(places),
            one_per_member=definition.one_prize_per_member,
        )
        member_of = {e["entry_no"]: e["member_id"] for e in stored}
        names = self._prize_names(uow, tenant.id, definition.prizes)
        name = definition.name.model_dump()
        winners = []
        audits = []
        for pick in picks:
            place = places[pick.slot - 1]
            prize_name = names[definition.prizes.index(place.prize)]
            member_id = member_of[pick.entry]
            winners.append(
                {
                    "tenant_id": tenant.id,
                    "draw_id": row["id"],
                    "slot": pick.slot,
                    "rank": place.rank,
                    "entry_no": pick.entry,
                    "member_id": member_id,
                    "pseudonym": pick.member,
                    "prize": {**place.prize.model_dump(mode="json"), "name": prize_name},
                    "status": "pending",
                    "points": 0,
                    "paid_to": None,
                    "transaction_id": None,
                    "order_id": None,
                    "error": None,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            audits.append(
                {
                    "id": new_id(),
                    "tenant_id": tenant.id,
                    "actor": actor.name,
                    "action": "draw.won",
                    "subject_type": "member",
                    "subject_id": str(member_id),
                    "details": {
                        "draw": row["code"],
                        "slot": pick.slot,
                        "rank": place.rank,
                        "explanation": texts.won(name, place.rank, prize_name),
                    },
                    "created_at": now,
                }
            )
        store.insert_winners(winners)
        store.audit_many(audits)
        store.update(tenant.id, row["id"], {"status": "drawn", "drawn_at": now, "updated_at": now})
        uow.directory.audit(
            tenant.id,
            actor.name,
            "draw.drawn",
            "draw",
            row["id"],
            {"code": row["code"], "seed": row["seed"], "winners": len(winners)},
            now,
        )

    # ---- prizes --------------------------------------------------------------------------
    def _deliver_all(self, actor: Actor, draw_id: uuid.UUID, retry: Sequence[str]) -> int:
        with self.uow_factory(write=False) as uow:
            due = [
                w["slot"]
                for w in DrawStore(uow).winners(actor.tenant_id, draw_id)
                if w["status"] in retry
            ]
        return sum(1 for slot in due if self._deliver(actor, draw_id, slot, retry))

    def _deliver(self, actor: Actor, draw_id: uuid.UUID, slot: int, retry: Sequence[str]) -> bool:
        """One winner's prize; True when it reached its final state now."""
        try:
            payee = self._credit(actor, draw_id, slot, retry)
        except KopilkaError as exc:  # the winner's own trouble: recorded, retried later
            self._mark(actor.tenant_id, draw_id, slot, {"status": "failed", "error": exc.code})
            return False
        if payee is None:
            return False
        status, values = payee
        if status != "granted":
            return True
        return self._order(actor, draw_id, slot, values)

    def _credit(
        self, actor: Actor, draw_id: uuid.UUID, slot: int, retry: Sequence[str]
    ) -> tuple[str, dict[str, Any]] | None:
        """Credit the prize's points (a reward prize: the reward's price) in one unit of
        work; None when there was nothing (left) to do."""
        now = self.clock.now()
        with self.uow_factory(write=True) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            store = DrawStore(uow)
            winner = store.winner(tenant.id, draw_id, slot, lock=True)
            if winner is None or winner["status"] not in retry:
                return None  # a twin run got here first
            if winner["status"] == "granted":
                return "granted", winner
            [draw] = store.by_ids(tenant.id, [draw_id])
            member = _payee(uow, tenant.id, winner["member_id"])
            prize = Prize.model_validate(winner["prize"])
            key = f"draw:{draw['code']}:{slot}"
            params: dict[str, Any] = {
                "label": texts.prize_label(_definition(draw).name.model_dump()),
                "draw": draw["code"],
                "slot": slot,
                "rank": winner["rank"],
            }
            # A prize is no purchase that could be refunded: spendable at once; it lapses
            # by the tenant's default policy.
            expiry = policy_expiry(tenant.expiry_policy, now, tenant.timezone)
            if prize.kind is PrizeKind.POINTS:
                assert prize.points is not None
                granted = grant_points(
                    uow,
                    tenant,
                    actor,
                    member["id"],
                    now,
                    mechanic=MECHANIC,
                    key=key,
                    points=prize.points,
                    params=params,
                    pending_days=0,
                    expires_at=expiry,
                )
                status = "awarded"
            else:
                assert prize.reward_id is not None
                reward = RewardStore(uow).reward(tenant.id, prize.reward_id)
                if reward is None:
                    raise NotFound("The prize's reward is gone.", code="reward_not_found")
                facts = self.rewards.purchases.member_facts(uow, tenant, member, 0, now)
                price = unit_cost(RewardDefinition.model_validate(reward["definition"]), facts.tier)
                book = MemberBook(
                    uow, tenant, member["id"], actor, now, currency=reward["currency"]
                )
                granted = grant_points(
                    uow,
                    tenant,
                    actor,
                    member["id"],
                    now,
                    mechanic=MECHANIC,
                    key=key,
                    points=price,
                    params={**params, "reward": reward["code"]},
                    pending_days=0,
                    expires_at=expiry,
                    book=book,
                )
                uow.ledger.apply(tenant.id, book.plan, now)
                status = "granted"
            values = {
                "status": status,
                "points": granted.points,
                "paid_to": member["id"],
                "transaction_id": granted.transaction_id,
                "error": None,
                "updated_at": now,
            }
            store.update_winner(tenant.id, draw_id, slot, values)
            uow.commit()
            return status, {**winner, **values}

    def _order(self, actor: Actor, draw_id: uuid.UUID, slot: int, winner: dict[str, Any]) -> bool:
        """Spend the credited price on the reward order (idempotent on the slot)."""
        prize = Prize.model_validate(winner["prize"])
        assert prize.reward_id is not None
        assert winner["paid_to"] is not None
        try:
            order = self.rewards.redeem(
                actor,
                winner["paid_to"],
                RedeemInput(reward_id=prize.reward_id),
                idempotency_key=f"kopilka-draw:{draw_id}:{slot}",
            )
        except Conflict:
            return False  # a twin delivery holds the key: it finishes the job
        except KopilkaError as exc:
            # Out of stock, not offered to this member, limits...: the winner keeps the
            # prize's value in points; a free reward leaves nothing to keep: retried.
            status = "points_instead" if winner["points"] > 0 else "failed"
            self._mark(actor.tenant_id, draw_id, slot, {"status": status, "error": exc.code})
            return status == "points_instead"
        self._mark(
            actor.tenant_id,
            draw_id,
            slot,
            {"status": "ordered", "order_id": order.id, "error": None},
        )
        return True

    def _mark(
        self, tenant_id: uuid.UUID, draw_id: uuid.UUID, slot: int, values: dict[str, Any]
    ) -> None:
        with self.uow_factory(write=True) as uow:
            DrawStore(uow).update_winner(
                tenant_id, draw_id, slot, {**values, "updated_at": self.clock.now()}
            )
            uow.commit()

    # ---- the jobs run --------------------------------------------------------------------
    def run_due(self, now: datetime, tenant_id: uuid.UUID | None = None) -> int:
        """The ``draws_run`` job step: on (or after) a draw's day, freeze its entries and
        draw; deliver the prizes still pending. Returns how many of these it did; a second
        run at the same or a later moment finds nothing more."""
        with self.uow_factory(write=False) as uow:
            # Coarse in UTC (a tenant may be a day ahead); exact per tenant below.
            due = DrawStore(uow).due((now + timedelta(days=1)).date(), tenant_id)
            zones = {t: load_tenant(uow, t).timezone for t in {r["tenant_id"] for r in due}}
        done = 0
        for row in due:
            actor = Actor(tenant_id=row["tenant_id"], name=JOB_ACTOR, role=Role.ADMIN)
            try:
                if (
                    row["status"] != "drawn"
                    and local_day(now, zones[row["tenant_id"]]) < (row["draw_on"])
                ):
                    continue
                if row["status"] == "open" and self._freeze(actor, row["code"], now):
                    done += 1
                drew, delivered = self._run(actor, row["code"], now, _RETRY_BY_JOB)
            except KopilkaError:
                continue  # e.g. changed meanwhile; the next run looks again
            done += int(drew) + delivered
        return done

    # ---- public --------------------------------------------------------------------------
    def publication(self, actor: Actor, code: str) -> Publication:
        """Everything needed to re-run the draw: rules, prizes, the seed's hash (the seed
        once drawn), the frozen list and its hash, the winners by pseudonym."""
        with self.uow_factory(write=False) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            store = DrawStore(uow)
            row = self._draw(store, tenant.id, code)
            definition = _definition(row)
            names = self._prize_names(uow, tenant.id, definition.prizes)
            frozen = row["status"] in ("frozen", "drawn")
            entries = (
                [
                    PublicEntry(entry=e["entry_no"], member=e["pseudonym"], weight=e["weight"])
                    for e in store.entries(tenant.id, row["id"])
                ]
                if frozen
                else None
            )
            return Publication(
                code=row["code"],
                name=PublicText(**definition.name.model_dump()),
                status=row["status"],
                timezone=tenant.timezone,
                starts_on=definition.starts_on,
                ends_on=definition.ends_on,
                draw_on=definition.draw_on,
                entry_rules=definition.entry_rules.model_dump(mode="json", exclude_none=True),
                prizes=[
                    PublicPrize(
                        rank=p.rank,
                        count=p.count,
                        kind=p.kind.value,
                        points=p.points,
                        name=PublicText(**names[i]),
                    )
                    for i, p in enumerate(definition.prizes)
                ],
                one_prize_per_member=definition.one_prize_per_member,
                seed_hash=row["seed_hash"],
                seed=row["seed"] if row["status"] == "drawn" else None,
                entries_hash=row["entries_hash"],
                entries_count=row["entries_count"] if frozen else None,
                total_weight=row["total_weight"] if frozen else None,
                entries=entries,
                winners=[
                    PublicWinner(
                        slot=w["slot"], rank=w["rank"], entry=w["entry_no"], member=w["pseudonym"]
                    )
                    for w in store.winners(tenant.id, row["id"])
                ],
            )

    def entries_text(self, actor: Actor, code: str) -> str:
        """The frozen list as hashed: one canonical line per entry, newline-terminated."""
        with self.uow_factory(write=False) as uow:
            store = DrawStore(uow)
            row = self._draw(store, actor.tenant_id, code)
            if row["status"] not in ("frozen", "drawn"):
                raise Conflict("The entries are not frozen yet.", code="draw_not_frozen")
            return "".join(
                canonical_line(Entry(e["entry_no"], e["pseudonym"], e["weight"])) + "\n"
                for e in store.entries(actor.tenant_id, row["id"])
            )

    # ---- members -------------------------------------------------------------------------
    def member_draws(
        self, actor: Actor, member_id: uuid.UUID, before: uuid.UUID | None, limit: int
    ) -> list[MemberDrawView]:
        """The draws the member takes part in, newest first: frozen ones from the list,
        open ones as they stand now (provisional); with the prizes won."""
        with self.uow_factory(write=False) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            member = uow.directory.member(tenant.id, member_id)
            if member is None:
                raise NotFound("Member not found.", code="member_not_found")
            store = DrawStore(uow)
            now = self.clock.now()
            # A frozen list is never rewritten, so entries frozen under a profile merged into
            # this one since still name that profile: they are this member's too.
            profiles = [member_id, *uow.directory.merged_into(tenant.id, member_id)]
            rows = {
                r["id"]: r
                for r in store.by_ids(tenant.id, store.member_draw_ids(tenant.id, profiles))
            }
            provisional: dict[uuid.UUID, list[_Candidate]] = {}
            if member["status"] == "active":
                for row in store.with_status(tenant.id, "open"):
                    found = self._candidates(
                        uow, tenant, _definition(row), row["pseudonym_key"], now, profiles
                    )
                    mine = [c for c in found if c.member_id == member_id]
                    if mine:
                        provisional[row["id"]] = mine
                        rows[row["id"]] = row
            ids = sorted((i for i in rows if before is None or i < before), reverse=True)[:limit]
            frozen = [i for i in ids if i not in provisional]
            entries: dict[uuid.UUID, list[dict[str, Any]]] = {}
            for e in store.member_entries(tenant.id, profiles, frozen) if frozen else []:
                entries.setdefault(e["draw_id"], []).append(e)
            wins: dict[uuid.UUID, list[dict[str, Any]]] = {}
            for w in store.member_wins(tenant.id, profiles):
                wins.setdefault(w["draw_id"], []).append(w)
            return [
                self._member_view(rows[i], provisional.get(i), entries.get(i, []), wins.get(i, []))
                for i in ids
            ]

    @staticmethod
    def _member_view(
        row: dict[str, Any],
        provisional: list[_Candidate] | None,
        frozen: list[dict[str, Any]],
        wins: list[dict[str, Any]],
    ) -> MemberDrawView:
        definition = _definition(row)
        if provisional is not None:
            items = [
                MemberEntryView(
                    entry=None,
                    receipt_id=c.receipt_id,
                    occurred_at=c.occurred_at,
                    amount=c.amount,
                    weight=c.weight,
                )
                for c in provisional
            ]
            name = provisional[0].pseudonym
        else:
            items = [
                MemberEntryView(
                    entry=e["entry_no"],
                    receipt_id=e["receipt_id"],
                    occurred_at=e["occurred_at"],
                    amount=e["amount"],
                    weight=e["weight"],
                )
                for e in frozen
            ]
            name = frozen[0]["pseudonym"] if frozen else ""
        total = sum(i.weight for i in items)
        return MemberDrawView(
            draw_id=row["id"],
            code=row["code"],
            name=definition.name,
            status=row["status"],
            status_text=texts.STATUS[row["status"]],
            starts_on=definition.starts_on,
            ends_on=definition.ends_on,
            draw_on=definition.draw_on,
            provisional=provisional is not None,
            pseudonym=name,
            entries=items,
            total=total,
            total_weight=row["total_weight"] if provisional is None else None,
            won=[
                MemberPrizeView(
                    slot=w["slot"],
                    rank=w["rank"],
                    prize=w["prize"]["name"],
                    status=w["status"],
                    status_text=texts.PRIZE_STATUS[w["status"]],
                    points=w["points"],
                    order_id=w["order_id"],
                )
                for w in wins
            ],
            summary=texts.member_summary(
                definition.name.model_dump(), total, provisional is not None
            ),
        )

    # ---- helpers -------------------------------------------------------------------------
    @staticmethod
    def _draw(
        store: DrawStore, tenant_id: uuid.UUID, code: str, *, lock: bool = False
    ) -> dict[str, Any]:
        row = store.by_code(tenant_id, code, lock=lock)
        if row is None:
            raise _not_found()
        return row

    def _candidates(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        definition: DrawDefinition,
        key: str,
        at: datetime,
        member_ids: Sequence[uuid.UUID] | None = None,
    ) -> list[_Candidate]:
        """The qualifying receipts in canonical order, each with its entrant (the active
        profile a merged one lives on in), weight and pseudonym; set-based: a few queries
        whatever the number of receipts."""
        rules = definition.entry_rules
        bounds = window(definition, tenant.timezone)
        store = DrawStore(uow)
        outlet_ids = (
            list(store.outlet_ids(tenant.id, rules.outlets).values())
            if rules.outlets is not None
            else None
        )
        found, lines = store.candidate_receipts(
            tenant.id,
            bounds.starts_at,
            bounds.ends_at,
            rules.min_receipt,
            outlet_ids,
            rules.channels,
            member_ids,
        )
        refunds: dict[uuid.UUID, list[RefundedLine]] = {}
        for line in lines:
            refunds.setdefault(line["receipt_id"], []).append(
                RefundedLine(
                    line["amount"],
                    line["discount"],
                    line["points_money"],
                    line["qty"],
                    line["refunded_qty"],
                )
            )
        entrants = _entrants(store, tenant.id, {r["member_id"] for r in found})
        tiers = self._tiers(uow, store, tenant, entrants.values(), at)
        candidates = []
        for receipt in found:
            entrant = entrants.get(receipt["member_id"])
            if entrant is None:
                continue
            refunded = refunds.get(receipt["id"], [])
            paid = net_paid(receipt["total_pay"], refunded)
            if not qualifies(rules, paid, bool(refunded) and fully_refunded(refunded)):
                continue
            tier = tiers.get(entrant["id"])
            candidates.append(
                _Candidate(
                    receipt["id"],
                    entrant["id"],
                    receipt["occurred_at"],
                    paid,
                    weight(rules, tier),
                    tier,
                    pseudonym(key, entrant["id"]),
                )
            )
        return candidates

    def _tiers(
        self,
        uow: UnitOfWork,
        store: DrawStore,
        tenant: Tenant,
        entrants: Iterable[dict[str, Any]],
        at: datetime,
    ) -> dict[uuid.UUID, str]:
        """Each entrant's tier at ``at``, as the till sees it: the first program with tiers
        in force (its ``member_tiers`` row, else the legacy ``attributes.tier``, else its
        base level); without one, the legacy attribute."""
        people = {e["id"]: e for e in entrants}
        legacy = {
            i: tier
            for i, e in people.items()
            if isinstance(tier := (e["attributes"] or {}).get("tier"), str)
        }
        programs = [
            p for p in self.programs.in_force(uow, tenant.id, at) if p.settings.tiers is not None
        ]
        if not programs:
            return legacy
        settings = programs[0].settings.tiers
        assert settings is not None
        rows = store.tiers(tenant.id, programs[0].code, list(people))
        return {i: rows.get(i) or legacy.get(i) or settings.base.code for i in people}

    def _prize_names(
        self, uow: UnitOfWork, tenant_id: uuid.UUID, prizes: Sequence[Prize]
    ) -> list[dict[str, str]]:
        """Each prize's name: its own, else the reward's, else "N баллов"."""
        names = []
        rewards = RewardStore(uow)
        for prize in prizes:
            if prize.name is not None:
                names.append(prize.name.model_dump())
            elif prize.points is not None:
                names.append(texts.points_prize(prize.points))
            else:
                assert prize.reward_id is not None
                reward = rewards.reward(tenant_id, prize.reward_id)
                found = (reward or {}).get("definition", {}).get("name")
                names.append(dict(found) if isinstance(found, dict) else dict(_PRIZE_FALLBACK))
        return names

    def _view(self, uow: UnitOfWork, tenant: Tenant, row: dict[str, Any]) -> DrawView:
        definition = _definition(row)
        names = self._prize_names(uow, tenant.id, definition.prizes)
        winners = DrawStore(uow).winners(tenant.id, row["id"]) if row["status"] == "drawn" else []
        return DrawView(
            id=row["id"],
            code=row["code"],
            name=definition.name,
            description=definition.description,
            status=row["status"],
            status_text=texts.STATUS[row["status"]],
            timezone=tenant.timezone,
            starts_on=definition.starts_on,
            ends_on=definition.ends_on,
            draw_on=definition.draw_on,
            entry_rules=definition.entry_rules,
            prizes=[
                PrizeView(
                    rank=p.rank,
                    count=p.count,
                    kind=p.kind,
                    points=p.points,
                    reward_id=p.reward_id,
                    name=names[i],
                )
                for i, p in enumerate(definition.prizes)
            ],
            one_prize_per_member=definition.one_prize_per_member,
            algorithm=row["algorithm"],
            seed_hash=row["seed_hash"],
            seed=row["seed"] if row["status"] == "drawn" else None,
            entries_hash=row["entries_hash"],
            entries_count=row["entries_count"],
            entrants=row["entrants"],
            total_weight=row["total_weight"],
            winners=[
                WinnerView(
                    slot=w["slot"],
                    rank=w["rank"],
                    entry=w["entry_no"],
                    member_id=w["member_id"],
                    pseudonym=w["pseudonym"],
                    prize=w["prize"]["name"],
                    status=w["status"],
                    status_text=texts.PRIZE_STATUS[w["status"]],
                    points=w["points"],
                    paid_to=w["paid_to"],
                    transaction_id=w["transaction_id"],
                    order_id=w["order_id"],
                    error=w["error"],
                )
                for w in winners
            ],
            created_at=row["created_at"],
            opened_at=row["opened_at"],
            frozen_at=row["frozen_at"],
            drawn_at=row["drawn_at"],
        )


def _entrants(
    store: DrawStore, tenant_id: uuid.UUID, member_ids: set[uuid.UUID]
) -> dict[uuid.UUID, dict[str, Any]]:
    """For each receipt holder, the active profile that enters for them: themselves, or the
    survivor a merge moved them into. Blocked, erased (and lost) profiles do not enter."""
    known = store.members(tenant_id, list(member_ids))
    for _ in range(MAX_MERGE_HOPS):
        missing = {
            m["merged_into_id"]
            for m in known.values()
            if m["status"] == "merged" and m["merged_into_id"] is not None
        } - set(known)
        if not missing:
            break
        known.update(store.members(tenant_id, list(missing)))
    found: dict[uuid.UUID, dict[str, Any]] = {}
    for member_id in member_ids:
        current = known.get(member_id)
        for _ in range(MAX_MERGE_HOPS):
            if current is None or current["status"] != "merged":
                break
            current = known.get(current["merged_into_id"])
        if current is not None and current["status"] == "active":
            found[member_id] = current
    return found


def _payee(uow: UnitOfWork, tenant_id: uuid.UUID, member_id: uuid.UUID) -> dict[str, Any]:
    """The active profile a winner's prize goes to (the survivor of a merge since)."""
    member = current_profile(uow, tenant_id, member_id)
    if member is None:
        raise NotFound("The winner's profile is gone.", code="member_not_found")
    if member["status"] != "active":
        raise BusinessRuleViolation(
            f"The winner's profile is {member['status']}.", code=f"member_{member['status']}"
        )
    return member
