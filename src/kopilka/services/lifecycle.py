"""Life-cycle rewards: welcome (at enrolment, on completing the profile, or with the first
purchase), birthday, anniversary and win-back (scheduled job steps).

Every reward goes through :func:`kopilka.services.awards.grant_points` under a natural key
(``welcome``, ``birthday:<year>``, ``anniversary:<n>``, ``win_back:<last activity day>``), with
the member's accounts locked first: a job run twice, twice at once or late, and a retried
request, never reward twice. The jobs select the members due with set-based SQL and settle
each in its own short transaction, re-checking after the lock what the selection saw.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import structlog

from kopilka.adapters.db.mechanics.awards import AwardStore
from kopilka.adapters.db.mechanics.lifecycle import LifecycleStore, move_awards
from kopilka.clock import Clock
from kopilka.domain.errors import KopilkaError
from kopilka.domain.lifecycle.dates import (
    anniversaries_due,
    anniversary_years,
    birthday_year,
    birthdays_due,
    local_midnight,
    local_today,
    missing_profile,
)
from kopilka.domain.lifecycle.settings import (
    AnniversarySettings,
    BirthdaySettings,
    WelcomeSettings,
    WinBackSettings,
)
from kopilka.domain.rules.document import CompiledProgram
from kopilka.services.awards import void_award
from kopilka.services.context import Actor, Role, Tenant, load_tenant
from kopilka.services.jobs import JOB_ACTOR, JobStep
from kopilka.services.ledger_book import MemberBook
from kopilka.services.lifecycle_rewards import give_reward, section_in_force
from kopilka.services.member_events import MemberEventService
from kopilka.services.members import MemberHook, merged_into
from kopilka.services.ports import UnitOfWork, UnitOfWorkFactory
from kopilka.services.programs import ProgramService
from kopilka.services.purchase_hooks import PurchaseHook

log = structlog.get_logger("kopilka.lifecycle")
BATCH = 500
WELCOME_KEY = "welcome"
PROFILE_FIELDS = frozenset({"phone", "email", "name", "birthday"})
# The award mechanics of this module and of member events (whose caps count them).
MECHANICS = ("welcome", "birthday", "anniversary", "win_back", "event")
S = TypeVar("S")


class LifecycleService:
    """The life-cycle rewards, their hooks and job steps; ``events`` records member events."""

    def __init__(
        self, uow_factory: UnitOfWorkFactory, clock: Clock, programs: ProgramService
    ) -> None:
        self.uow_factory = uow_factory
        self.clock = clock
        self.programs = programs
        self.events = MemberEventService(uow_factory, clock, programs)
        self.member_hook = WelcomeMemberHook(self)
        self.purchase_hook = WelcomePurchaseHook(self)

    def job_steps(self) -> dict[str, JobStep]:
        return {
            "lifecycle_birthday": self.run_birthdays,
            "lifecycle_anniversary": self.run_anniversaries,
            "lifecycle_win_back": self.run_win_back,
        }

    # ---- welcome -----------------------------------------------------------------------
    def welcome_on_profile(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        member_id: uuid.UUID,
        now: datetime,
        *,
        enrolling: bool,
    ) -> dict[str, Any] | None:
        """The welcome reward "on enrolment": at enrolment when the profile is complete
        enough, else when it is completed within ``complete_within_days``."""
        found = section_in_force(self.programs, uow, tenant.id, now, "welcome")
        if found is None:
            return None
        program, welcome = found
        assert isinstance(welcome, WelcomeSettings)
        if welcome.on != "enrolment":
            return None
        if not enrolling:
            if not welcome.require_complete_profile:
                return None  # nothing was waiting for the profile
            if AwardStore(uow).get(tenant.id, member_id, WELCOME_KEY) is not None:
                return None  # given already: no need to lock the accounts
        member = uow.directory.member(tenant.id, member_id)
        if member is None or member["status"] != "active":
            return None
        if not enrolling and now - member["created_at"] > timedelta(
            days=welcome.complete_within_days
        ):
            return None
        if missing_profile(member, welcome.require_complete_profile):
            return None
        return give_reward(
            uow,
            tenant,
            actor,
            member_id,
            now,
            program=program,
            reward=welcome,
            mechanic="welcome",
            key=WELCOME_KEY,
        )

    def welcome_on_purchase(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        receipt: dict[str, Any],
        now: datetime,
    ) -> dict[str, Any]:
        """The welcome reward "on first purchase": with the member's first confirmed
        receipt, if the profile is complete enough then. Keys for the confirm answer."""
        member_id = receipt["member_id"]
        found = section_in_force(self.programs, uow, tenant.id, now, "welcome")
        if found is None:
            return {}
        program, welcome = found
        assert isinstance(welcome, WelcomeSettings)
        if welcome.on != "first_purchase":
            return {}
        if AwardStore(uow).get(tenant.id, member_id, WELCOME_KEY) is not None:
            return {}
        if LifecycleStore(uow).confirmed_purchases(tenant.id, member_id, receipt["id"]) > 0:
            return {}
        member = uow.directory.member(tenant.id, member_id)
        if member is None or member["status"] != "active":
            return {}
        missing = missing_profile(member, welcome.require_complete_profile)
        if missing:
            return {"welcome": {"given": False, "missing_profile": missing}}
        given = give_reward(
            uow,
            tenant,
            actor,
            member_id,
            now,
            program=program,
            reward=welcome,
            mechanic="welcome",
            key=WELCOME_KEY,
            params={"receipt_id": str(receipt["id"])},
            pending_days=None,  # like the purchase's own points: after the return window
        )
        return {"welcome": {"given": True, **given}} if given is not None else {}

    def welcome_on_refund(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        receipt: dict[str, Any],
        refund: dict[str, Any],
        now: datetime,
    ) -> dict[str, Any]:
        """A first-purchase welcome is taken back when that purchase is fully refunded or
        cancelled (it is not given again)."""
        holder = receipt["member_id"]
        award = AwardStore(uow).get(tenant.id, holder, WELCOME_KEY)
        if award is None:
            # A receipt of a profile merged since: its welcome moved to the survivor.
            holder, award = _merged_welcome(uow, tenant.id, holder)
        if award is None or award["status"] != "granted":
            return {}
        if (award["params"] or {}).get("receipt_id") != str(receipt["id"]):
            return {}
        lines = uow.commerce.receipt_lines(tenant.id, receipt["id"])
        if refund.get("kind") != "cancel" and any(li["refunded_qty"] < li["qty"] for li in lines):
            return {}
        taken = void_award(
            uow,
            tenant,
            actor,
            holder,
            WELCOME_KEY,
            now,
            reason="first purchase refunded",
        )
        return {"welcome_taken_back": taken}

    # ---- member merge ------------------------------------------------------------------
    def merged(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        survivor_id: uuid.UUID,
        duplicate_id: uuid.UUID,
    ) -> None:
        """The duplicate's life-cycle and event awards become the survivor's: a welcome,
        a year's birthday, an anniversary or a win-back given to either profile is given
        to the person, and event caps count both. The events themselves stay recorded on
        the duplicate; the survivor's list includes them (see ``MemberEventService.list``)."""
        move_awards(uow, tenant.id, survivor_id, duplicate_id, MECHANICS)

    # ---- job steps ---------------------------------------------------------------------
    def run_birthdays(self, now: datetime, tenant_id: uuid.UUID | None = None) -> int:
        """Give the birthday rewards due today (tenant-local), once per celebrated year."""

        def select(
            uow: UnitOfWork, tenant: Tenant, section: BirthdaySettings, after: uuid.UUID | None
        ) -> list[uuid.UUID]:
            today = local_today(now, tenant.timezone)
            due = birthdays_due(today, section.days_before, section.days_after)
            return LifecycleStore(uow).birthdays_due(tenant.id, due, BATCH, after)

        def key(
            uow: UnitOfWork, tenant: Tenant, section: BirthdaySettings, member: dict[str, Any]
        ) -> tuple[str, dict[str, Any]] | None:
            if not member["birth_month"]:
                return None
            year = birthday_year(
                member["birth_month"],
                member["birth_day"],
                local_today(now, tenant.timezone),
                section.days_before,
                section.days_after,
            )
            return (f"birthday:{year}", {"year": year}) if year is not None else None

        return self._run(now, tenant_id, "birthday", BirthdaySettings, select, key)

    def run_anniversaries(self, now: datetime, tenant_id: uuid.UUID | None = None) -> int:
        """Give the anniversary rewards due today: the n-th year since the tenant-local day
        of enrolment."""

        def select(
            uow: UnitOfWork,
            tenant: Tenant,
            section: AnniversarySettings,
            after: uuid.UUID | None,
        ) -> list[uuid.UUID]:
            store = LifecycleStore(uow)
            earliest = store.earliest_enrolment(tenant.id)
            if earliest is None:
                return []
            tz = tenant.timezone
            ranges = [
                (
                    r.years,
                    local_midnight(r.first, tz),
                    local_midnight(r.last + timedelta(days=1), tz),
                )
                for r in anniversaries_due(
                    local_today(now, tz),
                    section.days_before,
                    section.days_after,
                    local_today(earliest, tz),
                )
            ]
            return store.anniversaries_due(tenant.id, ranges, BATCH, after)

        def key(
            uow: UnitOfWork,
            tenant: Tenant,
            section: AnniversarySettings,
            member: dict[str, Any],
        ) -> tuple[str, dict[str, Any]] | None:
            tz = tenant.timezone
            years = anniversary_years(
                local_today(member["created_at"], tz),
                local_today(now, tz),
                section.days_before,
                section.days_after,
            )
            return (f"anniversary:{years}", {"years": years}) if years is not None else None

        return self._run(now, tenant_id, "anniversary", AnniversarySettings, select, key)

    def run_win_back(self, now: datetime, tenant_id: uuid.UUID | None = None) -> int:
        """Reward members with no confirmed purchase for ``inactive_days``: once per spell
        of inactivity (keyed by its first day) and at most once per ``period_days``."""

        def select(
            uow: UnitOfWork, tenant: Tenant, section: WinBackSettings, after: uuid.UUID | None
        ) -> list[uuid.UUID]:
            return LifecycleStore(uow).inactive_since(
                tenant.id,
                now - timedelta(days=section.inactive_days),
                now - timedelta(days=section.period_days),
                BATCH,
                after,
            )

        def key(
            uow: UnitOfWork, tenant: Tenant, section: WinBackSettings, member: dict[str, Any]
        ) -> tuple[str, dict[str, Any]] | None:
            store = LifecycleStore(uow)
            last = store.last_purchase(tenant.id, member["id"]) or member["created_at"]
            if last > now - timedelta(days=section.inactive_days):
                return None  # bought meanwhile
            since = now - timedelta(days=section.period_days)
            if store.win_backs_since(tenant.id, member["id"], since):
                return None
            day = local_today(last, tenant.timezone).isoformat()
            return f"win_back:{day}", {"inactive_since": day}

        return self._run(now, tenant_id, "win_back", WinBackSettings, select, key)

    def _run(
        self,
        now: datetime,
        tenant_id: uuid.UUID | None,
        mechanic: str,
        kind: type[S],
        select: Callable[[UnitOfWork, Tenant, S, uuid.UUID | None], list[uuid.UUID]],
        key: Callable[[UnitOfWork, Tenant, S, dict[str, Any]], tuple[str, dict[str, Any]] | None],
    ) -> int:
        """For each tenant with the section in force: page through the members due (by
        id, so the run ends even if some cannot be rewarded) and reward each in its own
        transaction. Returns the number of rewards given."""
        given = 0
        for tenant in self._tenants(tenant_id):
            with self.uow_factory(write=False) as uow:
                found = section_in_force(self.programs, uow, tenant.id, now, mechanic)
            if found is None:
                continue
            program, section = found
            assert isinstance(section, kind)
            after: uuid.UUID | None = None
            while True:
                with self.uow_factory(write=False) as uow:
                    due = select(uow, tenant, section, after)
                if not due:
                    break
                for member_id in due:
                    try:
                        if self._reward_one(
                            tenant, program, section, member_id, now, mechanic, key
                        ):
                            given += 1
                    except KopilkaError as exc:  # one member's trouble must not stop the run
                        log.warning(
                            "lifecycle_reward_failed",
                            mechanic=mechanic,
                            member_id=str(member_id),
                            error=exc.detail,
                        )
                after = due[-1]
        return given

    def _reward_one(
        self,
        tenant: Tenant,
        program: CompiledProgram,
        section: Any,
        member_id: uuid.UUID,
        now: datetime,
        mechanic: str,
        key: Callable[[UnitOfWork, Tenant, Any, dict[str, Any]], tuple[str, dict[str, Any]] | None],
    ) -> bool:
        actor = Actor(tenant_id=tenant.id, name=JOB_ACTOR, role=Role.ADMIN)
        with self.uow_factory(write=True) as uow:
            # The lock first, then the facts: what the selection saw may have changed.
            book = MemberBook(uow, tenant, member_id, actor, now, currency=program.currency)
            member = uow.directory.member(tenant.id, member_id)
            if member is None or member["status"] != "active":
                return False
            found = key(uow, tenant, section, member)
            if found is None:
                return False
            award_key, params = found
            given = give_reward(
                uow,
                tenant,
                actor,
                member_id,
                now,
                program=program,
                reward=section,
                mechanic=mechanic,
                key=award_key,
                params=params,
                book=book,
            )
            if given is None:
                return False
            uow.ledger.apply(tenant.id, book.plan, now)
            uow.commit()
            return True

    def _tenants(self, tenant_id: uuid.UUID | None) -> list[Tenant]:
        with self.uow_factory(write=False) as uow:
            if tenant_id is not None:
                try:
                    return [load_tenant(uow, tenant_id)]
                except KopilkaError:
                    return []
            return [Tenant.from_row(row) for row in uow.directory.list_tenants()]


def _merged_welcome(
    uow: UnitOfWork, tenant_id: uuid.UUID, member_id: uuid.UUID
) -> tuple[uuid.UUID, dict[str, Any] | None]:
    """The welcome award of the profile ``member_id`` was merged into (through a chain),
    with that profile's id; (member_id, None) if it was not merged or has none."""
    for survivor in merged_into(uow, tenant_id, member_id):
        award = AwardStore(uow).get(tenant_id, survivor["id"], WELCOME_KEY)
        if award is not None:
            return survivor["id"], award
    return member_id, None


class WelcomeMemberHook(MemberHook):
    """The welcome reward at enrolment, or when the profile is completed; a merge keeps
    the life-cycle awards (and event caps) of both profiles on the survivor."""

    def __init__(self, service: LifecycleService) -> None:
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
        self.service.welcome_on_profile(uow, tenant, actor, member_id, now, enrolling=True)

    def on_updated(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        member_id: uuid.UUID,
        fields: list[str],
        now: datetime,
    ) -> None:
        if PROFILE_FIELDS.intersection(fields):
            self.service.welcome_on_profile(uow, tenant, actor, member_id, now, enrolling=False)

    def on_merged(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        survivor_id: uuid.UUID,
        duplicate_id: uuid.UUID,
        now: datetime,
    ) -> None:
        self.service.merged(uow, tenant, survivor_id, duplicate_id)


class WelcomePurchaseHook(PurchaseHook):
    """The welcome reward with the first purchase, taken back if it is refunded in full."""

    def __init__(self, service: LifecycleService) -> None:
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
        if receipt.get("member_id") is None:
            return {}
        return self.service.welcome_on_purchase(uow, tenant, actor, receipt, now)

    def on_refunded(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        receipt: dict[str, Any],
        refund: dict[str, Any],
        now: datetime,
    ) -> dict[str, Any]:
        if receipt.get("member_id") is None:
            return {}
        return self.service.welcome_on_refund(uow, tenant, actor, receipt, refund, now)
