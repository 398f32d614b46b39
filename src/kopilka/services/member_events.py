"""Member events (``review_left``, ``app_installed``...): recorded once per event id, and
rewarded by the earning rules the programs in force declare for them, within their caps."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from kopilka.adapters.db.mechanics.lifecycle import LifecycleStore
from kopilka.clock import Clock
from kopilka.domain.errors import (
    BusinessRuleViolation,
    Conflict,
    FieldError,
    NotFound,
    ValidationFailed,
)
from kopilka.domain.lifecycle.dates import CAP_PERIODS, period_start
from kopilka.domain.lifecycle.settings import EventSettings
from kopilka.domain.rules.document import CompiledProgram
from kopilka.ids import new_id
from kopilka.services.awards import award_totals
from kopilka.services.context import Actor, Tenant, load_tenant
from kopilka.services.idempotency import request_hash
from kopilka.services.ledger_book import MemberBook
from kopilka.services.lifecycle_rewards import give_reward
from kopilka.services.ports import UnitOfWork, UnitOfWorkFactory
from kopilka.services.programs import ProgramService
from kopilka.services.views import View

FUTURE_SLACK = timedelta(minutes=5)  # till clocks drift; as for receipts
MAX_PROPERTIES_BYTES = 16_384


class CouponIssued(View):
    code: str
    benefit: dict[str, Any]
    min_basket: int
    valid_until: datetime


class EventReward(View):
    program: str
    points: int
    transaction_id: uuid.UUID | None
    coupon: CouponIssued | None
    description: dict[str, str]


class MemberEventView(View):
    id: uuid.UUID
    event_id: str
    member_id: uuid.UUID
    name: str
    properties: dict[str, Any]
    occurred_at: datetime
    recorded_at: datetime
    program: str | None
    reward: EventReward | None
    # Why nothing was earned: the cap period already full (day, week, month, lifetime).
    capped: str | None


def event_view(row: dict[str, Any]) -> MemberEventView:
    return MemberEventView(
        id=row["id"],
        event_id=row["event_id"],
        member_id=row["member_id"],
        name=row["name"],
        properties=row["properties"] or {},
        occurred_at=row["occurred_at"],
        recorded_at=row["recorded_at"],
        program=row["program"],
        reward=EventReward.model_validate(row["reward"]) if row["reward"] else None,
        capped=row["capped"],
    )


def declared_events(programs: list[CompiledProgram]) -> dict[str, tuple[CompiledProgram, Any]]:
    """Event name -> (program, rule): the first program by code that declares it wins."""
    found: dict[str, tuple[CompiledProgram, Any]] = {}
    for program in programs:
        if program.settings.members_of_club:
            continue  # a closed program's rewards are for its club's members only
        for rule in program.settings.events:
            found.setdefault(rule.name, (program, rule))
    return found


class MemberEventService:
    def __init__(
        self, uow_factory: UnitOfWorkFactory, clock: Clock, programs: ProgramService
    ) -> None:
        self.uow_factory = uow_factory
        self.clock = clock
        self.programs = programs

    def record(
        self,
        actor: Actor,
        member_id: uuid.UUID,
        event_id: str,
        name: str,
        properties: dict[str, Any],
        occurred_at: datetime | None = None,
    ) -> MemberEventView:
        """Record the event and give what it earns. The same ``event_id`` with the same
        body replays the first answer; with another body it is refused (409)."""
        now = self.clock.now()
        if occurred_at is not None and occurred_at > now + FUTURE_SLACK:
            raise ValidationFailed(
                "occurred_at is in the future.",
                code="occurred_in_future",
                errors=[FieldError(("occurred_at",), "In the future.", "occurred_in_future")],
            )
        if len(json.dumps(properties, ensure_ascii=False).encode()) > MAX_PROPERTIES_BYTES:
            raise ValidationFailed(
                f"properties: at most {MAX_PROPERTIES_BYTES} bytes of JSON.",
                code="properties_too_large",
                errors=[FieldError(("properties",), "Too large.", "properties_too_large")],
            )
        digest = request_hash(
            "member_event",
            {
                "member_id": str(member_id),
                "name": name,
                "properties": properties,
                "occurred_at": occurred_at.isoformat() if occurred_at else None,
            },
        )
        with self.uow_factory(write=True) as uow:
            if not uow.claim_key(actor.tenant_id, f"member_event:{event_id}"):
                raise Conflict(
                    "This event is being recorded; retry in a moment.",
                    code="idempotency_in_progress",
                )
            store = LifecycleStore(uow)
            existing = store.event(actor.tenant_id, event_id)
            if existing is not None:
                if existing["request_hash"] != digest:
                    raise Conflict(
                        f"Event {event_id!r} was already recorded with other contents.",
                        code="event_id_reused",
                    )
                return event_view(existing)
            tenant = load_tenant(uow, actor.tenant_id)
            member = uow.directory.member(tenant.id, member_id)
            if member is None:
                raise NotFound("Member not found.", code="member_not_found")
            if member["status"] != "active":
                raise BusinessRuleViolation(
                    f"The member is {member['status']}.", code=f"member_{member['status']}"
                )
            occurred = occurred_at or now
            declared = declared_events(self.programs.in_force(uow, tenant.id, occurred))
            if name not in declared:
                names = sorted(declared)
                listed = ", ".join(names) if names else "none"
                raise ValidationFailed(
                    f"Unknown event {name!r}; the programs in force declare: {listed}.",
                    code="unknown_event",
                    errors=[FieldError(("name",), f"Declared events: {listed}.", "unknown_event")],
                    extra={"declared_events": names},
                )
            program, rule = declared[name]
            reward, capped = None, None
            if rule.gives_anything:
                reward, capped = self._reward(
                    uow, tenant, actor, member_id, event_id, program, rule, now
                )
            row = {
                "id": new_id(),
                "tenant_id": tenant.id,
                "member_id": member_id,
                "event_id": event_id,
                "name": name,
                "properties": properties,
                "occurred_at": occurred,
                "recorded_at": now,
                "request_hash": digest,
                "program": program.code,
                "reward": reward,
                "capped": capped,
                "actor": actor.name,
            }
            store.insert_event(row)
            uow.commit()
            return event_view(row)

    def _reward(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        member_id: uuid.UUID,
        event_id: str,
        program: CompiledProgram,
        rule: EventSettings,
        now: datetime,
    ) -> tuple[dict[str, Any] | None, str | None]:
        """(what was given, or None; the full cap period, or None). Caps are counted under
        the member's account lock, so concurrent events cannot both slip under one."""
        book = MemberBook(uow, tenant, member_id, actor, now, currency=program.currency)
        prefix = f"event:{rule.name}:"
        for period in CAP_PERIODS:
            limit = getattr(rule.caps, period)
            if limit is None:
                continue
            since = period_start(period, now, tenant.timezone)
            count, _ = award_totals(uow, tenant.id, member_id, "event", since, key_prefix=prefix)
            if count >= limit:
                return None, period
        given = give_reward(
            uow,
            tenant,
            actor,
            member_id,
            now,
            program=program,
            reward=rule,
            mechanic="event",
            key=f"{prefix}{event_id}",
            params={"event": rule.name, "event_id": event_id},
            book=book,
        )
        uow.ledger.apply(tenant.id, book.plan, now)
        return given, None

    def list(
        self,
        actor: Actor,
        member_id: uuid.UUID,
        before: uuid.UUID | None,
        limit: int,
        name: str | None = None,
    ) -> list[MemberEventView]:
        """The member's events, newest first (those of profiles merged into it too)."""
        with self.uow_factory(write=False) as uow:
            if uow.directory.member(actor.tenant_id, member_id) is None:
                raise NotFound("Member not found.", code="member_not_found")
            ids = [member_id, *uow.directory.merged_into(actor.tenant_id, member_id)]
            rows = LifecycleStore(uow).events_of(actor.tenant_id, ids, before, limit, name)
            return [event_view(r) for r in rows]
