"""The clock's work: activate pending lots, expire lots, release stale holds.

Each member is settled in its own short transaction under the member's account lock, so
the job runs beside live traffic, twice at once, or late, and never does anything twice:
what is due is re-read after the lock is taken.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from kopilka.clock import Clock
from kopilka.domain.errors import KopilkaError
from kopilka.services.context import Actor, Role
from kopilka.services.ledger import LedgerService
from kopilka.services.ports import UnitOfWorkFactory

JOB_ACTOR = "job:scheduler"


class FixedClock:
    """A clock that stays at one moment (``jobs run --now``)."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment


@dataclass
class JobReport:
    now: datetime
    members_settled: int = 0
    transactions: int = 0
    holds_released: int = 0
    steps: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


# A further step of the run: (now, tenant or None) -> how many things it did.
JobStep = Callable[[datetime, uuid.UUID | None], int]


class JobService:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        steps: dict[str, JobStep] | None = None,
    ) -> None:
        self.uow_factory = uow_factory
        self.clock = clock
        self.steps = steps or {}

    def run(self, *, batch: int = 500, tenant_id: uuid.UUID | None = None) -> JobReport:
        """Release stale holds, then activate and expire lots, all as of one moment.

        Holds go first: a released hold gives points back to their lots, some of which may
        be past their expiry by now, and the settling that follows expires those too. The
        other way round, a second run at the same moment would still find work to do.
        """
        now = self.clock.now()
        ledger = LedgerService(self.uow_factory, FixedClock(now))
        report = JobReport(now=now)
        for name, step in self.steps.items():  # e.g. voiding held receipts that timed out
            report.steps[name] = step(now, tenant_id)
        self._release_stale_holds(ledger, report, batch, tenant_id)
        self._settle_members(ledger, report, batch, tenant_id)
        return report

    def _settle_members(
        self, ledger: LedgerService, report: JobReport, batch: int, tenant_id: uuid.UUID | None
    ) -> None:
        seen: set[tuple[uuid.UUID, uuid.UUID, str]] = set()
        while True:
            with self.uow_factory(write=False) as uow:
                due = uow.ledger.members_with_due_lots(report.now, batch, tenant_id)
            fresh = [item for item in due if item not in seen]
            if not fresh:
                break
            for tenant, member, currency in fresh:
                seen.add((tenant, member, currency))
                actor = Actor(tenant_id=tenant, name=JOB_ACTOR, role=Role.ADMIN)
                try:
                    made = ledger.settle_member(actor, member, currency)
                except KopilkaError as exc:  # one member's trouble must not stop the run
                    report.errors.append(f"member {member}: {exc.detail}")
                    continue
                report.members_settled += 1
                report.transactions += made

    def _release_stale_holds(
        self, ledger: LedgerService, report: JobReport, batch: int, tenant_id: uuid.UUID | None
    ) -> None:
        released: set[uuid.UUID] = set()
        while True:
            with self.uow_factory(write=False) as uow:
                stale = [
                    h
                    for h in uow.ledger.stale_holds(report.now, batch, tenant_id)
                    if h[1] not in released
                ]
            if not stale:
                break
            for tenant, hold_id in stale:
                released.add(hold_id)
                actor = Actor(tenant_id=tenant, name=JOB_ACTOR, role=Role.ADMIN)
                try:
                    ledger.release(actor, hold_id, status="expired")
                except KopilkaError:
                    continue  # captured or released meanwhile: nothing to do
                report.holds_released += 1
