"""The one place that knows the concrete adapters: settings -> engine -> unit of work ->
services."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from kopilka.adapters.db.engine import create_db_engine
from kopilka.adapters.db.unit_of_work import SqlUnitOfWorkFactory
from kopilka.clock import Clock, SystemClock
from kopilka.services.catalog import CatalogService
from kopilka.services.explanations import ExplanationService
from kopilka.services.jobs import JobService, JobStep
from kopilka.services.ledger import LedgerService
from kopilka.services.members import MemberHook, MemberService
from kopilka.services.programs import ProgramService
from kopilka.services.purchase_hooks import PurchaseHook
from kopilka.services.purchases import PurchaseService
from kopilka.services.tenants import TenantService
from kopilka.settings import Settings


@dataclass
class Container:
    settings: Settings
    engine: Engine
    uow_factory: SqlUnitOfWorkFactory
    clock: Clock
    tenants: TenantService
    members: MemberService
    ledger: LedgerService
    jobs: JobService
    catalog: CatalogService
    programs: ProgramService
    purchases: PurchaseService
    explanations: ExplanationService
    # -- loyalty mechanics --
    # slot:tiers:field
    # slot:lifecycle:field
    # slot:referrals:field
    # slot:stamps:field
    # slot:families:field
    # slot:clubs:field
    # slot:rewards:field
    # slot:coupons:field
    # slot:giftcards:field
    # slot:campaigns:field
    # slot:draws:field

    def close(self) -> None:
        self.engine.dispose()


def bootstrap(
    settings: Settings | None = None, *, clock: Clock | None = None, engine: Engine | None = None
) -> Container:
    settings = settings or Settings()
    clock = clock or SystemClock()
    engine = engine or create_db_engine(
        settings.database_url, pool_size=settings.db_pool_size, echo=settings.db_echo
    )
    uow_factory = SqlUnitOfWorkFactory(engine)
    programs = ProgramService(uow_factory, clock, uow_factory.program_cache)
    hooks: list[PurchaseHook] = []  # the mechanics' extension points at the till
    member_hooks: list[MemberHook] = []  # ... at enrolment and profile updates
    steps: dict[str, JobStep] = {}  # the mechanics' scheduled work, in this order
    # slot:tiers:build
    # slot:lifecycle:build
    # slot:referrals:build
    # slot:stamps:build
    # slot:families:build
    # slot:clubs:build
    # slot:rewards:build
    # slot:coupons:build
    # slot:giftcards:build
    # slot:campaigns:build
    # slot:draws:build
    purchases = PurchaseService(uow_factory, clock, programs, hooks)
    steps = {"held_receipts_voided": purchases.void_expired, **steps}
    return Container(
        settings=settings,
        engine=engine,
        uow_factory=uow_factory,
        clock=clock,
        tenants=TenantService(uow_factory, clock),
        members=MemberService(uow_factory, clock, member_hooks),
        ledger=LedgerService(uow_factory, clock),
        jobs=JobService(uow_factory, clock, steps),
        catalog=CatalogService(uow_factory, clock),
        programs=programs,
        purchases=purchases,
        explanations=ExplanationService(uow_factory),
        # slot:tiers:container
        # slot:lifecycle:container
        # slot:referrals:container
        # slot:stamps:container
        # slot:families:container
        # slot:clubs:container
        # slot:rewards:container
        # slot:coupons:container
        # slot:giftcards:container
        # slot:campaigns:container
        # slot:draws:container
    )
