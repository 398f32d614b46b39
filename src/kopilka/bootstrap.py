"""The one place that knows the concrete adapters: settings -> engine -> unit of work ->
services."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from kopilka.adapters.db.engine import create_db_engine
from kopilka.adapters.db.unit_of_work import SqlUnitOfWorkFactory
from kopilka.clock import Clock, SystemClock
from kopilka.services.campaigns import CampaignService
from kopilka.services.catalog import CatalogService
from kopilka.services.clubs import ClubService, ClubsHook
from kopilka.services.coupons import CouponService
from kopilka.services.draws import DrawService
from kopilka.services.explanations import ExplanationService
from kopilka.services.families import FamilyService
from kopilka.services.giftcards import GiftCardService
from kopilka.services.jobs import JobService, JobStep
from kopilka.services.ledger import LedgerService
from kopilka.services.lifecycle import LifecycleService
from kopilka.services.members import MemberHook, MemberService
from kopilka.services.programs import ProgramService
from kopilka.services.purchase_hooks import PurchaseHook
from kopilka.services.purchases import PurchaseService
from kopilka.services.referrals import ReferralService
from kopilka.services.rewards import PrivilegeHook, RewardService
from kopilka.services.stamps import StampService
from kopilka.services.tenants import TenantService
from kopilka.services.tiers import TierService
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
    tiers: TierService
    # slot:lifecycle:field
    lifecycle: LifecycleService
    # slot:referrals:field
    referrals: ReferralService
    # slot:stamps:field
    stamps: StampService
    # slot:families:field
    families: FamilyService
    # slot:clubs:field
    clubs: ClubService
    # slot:rewards:field
    rewards: RewardService
    # slot:coupons:field
    coupons: CouponService
    # slot:giftcards:field
    giftcards: GiftCardService
    # slot:campaigns:field
    campaigns: CampaignService
    # slot:draws:field
    draws: DrawService

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
    uow_factory = SqlUnitOfWorkFactory(engine, ledger_group_commit=settings.ledger_group_commit)
    programs = ProgramService(uow_factory, clock, uow_factory.program_cache)
    hooks: list[PurchaseHook] = []  # the mechanics' extension points at the till
    member_hooks: list[MemberHook] = []  # ... at enrolment and profile updates
    steps: dict[str, JobStep] = {}  # the mechanics' scheduled work, in this order
    # slot:tiers:build
    tiers = TierService(uow_factory, clock, programs)
    hooks.append(tiers.purchase_hook)
    member_hooks.append(tiers.member_hook)
    steps["tiers_evaluated"] = tiers.evaluate
    # slot:lifecycle:build
    lifecycle = LifecycleService(uow_factory, clock, programs)
    member_hooks.append(lifecycle.member_hook)
    hooks.append(lifecycle.purchase_hook)
    steps.update(lifecycle.job_steps())
    # slot:referrals:build
    referrals = ReferralService(uow_factory, clock, programs)
    member_hooks.append(referrals.member_hook)
    hooks.append(referrals.purchase_hook)
    steps["referral_rewards_settled"] = referrals.settle_due
    # slot:stamps:build
    stamps = StampService(uow_factory, clock, programs)
    hooks.append(stamps.hook)
    member_hooks.append(stamps.member_hook)
    steps["stamps_expired"] = stamps.expire_due
    # slot:families:build
    families = FamilyService(uow_factory, clock, programs)  # no hooks: MemberBook finds pools
    # slot:clubs:build
    # After the tiers' hook: a condition club reads the final facts.tier.
    clubs = ClubService(uow_factory, clock, programs, fact_hooks=tuple(hooks))
    hooks.append(ClubsHook(clubs))
    member_hooks.append(clubs.member_hook)
    steps["clubs_lapsed"] = clubs.lapse_due
    # slot:rewards:build
    hooks.append(PrivilegeHook())  # running privileges become member tags and clubs
    # slot:coupons:build
    coupons = CouponService(uow_factory, clock, programs)
    hooks.append(coupons.hook)  # anonymous receipts too: public promo codes
    member_hooks.append(coupons.member_hook)
    # slot:giftcards:build
    giftcards = GiftCardService(uow_factory, clock)
    hooks.append(giftcards.hook)  # gift cards pay for receipts, anonymous ones too
    steps["gift_cards_expired"] = giftcards.expire_due
    steps["gift_card_attempts_pruned"] = giftcards.prune_attempts
    # slot:campaigns:build
    campaigns = CampaignService(uow_factory, clock, programs, fact_hooks=hooks)
    # First: its adjust may evaluate the receipt again (a campaign its budget cannot
    # cover), which must happen before other hooks add to the evaluation (stamps...).
    hooks.insert(0, campaigns.hook)
    member_hooks.append(campaigns.member_hook)
    steps["campaign_reservations_released"] = campaigns.release_reserved
    # slot:draws:build
    # Reward prizes are ordered through the catalogue, whose member facts (the tier's price,
    # visibility) must be the till's: its own PurchaseService over the hooks, all added by now.
    draws = DrawService(
        uow_factory,
        clock,
        programs,
        RewardService(uow_factory, clock, PurchaseService(uow_factory, clock, programs, hooks)),
    )
    steps["draws_run"] = draws.run_due  # freeze and draw on the draw's day; deliver prizes
    purchases = PurchaseService(uow_factory, clock, programs, hooks)
    steps = {"held_receipts_voided": purchases.void_expired, **steps}
    rewards = RewardService(uow_factory, clock, purchases)
    member_hooks.append(rewards.member_hook)  # merges: orders and limits follow the person
    return Container(
        settings=settings,
        engine=engine,
        uow_factory=uow_factory,
        clock=clock,
        tenants=TenantService(uow_factory, clock),
        members=MemberService(uow_factory, clock, member_hooks),
        ledger=LedgerService(uow_factory, clock, fast_path=settings.ledger_fast_path),
        jobs=JobService(uow_factory, clock, steps),
        catalog=CatalogService(uow_factory, clock),
        programs=programs,
        purchases=purchases,
        explanations=ExplanationService(uow_factory),
        # slot:tiers:container
        tiers=tiers,
        # slot:lifecycle:container
        lifecycle=lifecycle,
        # slot:referrals:container
        referrals=referrals,
        # slot:stamps:container
        stamps=stamps,
        # slot:families:container
        families=families,
        # slot:clubs:container
        clubs=clubs,
        # slot:rewards:container
        rewards=rewards,
        # slot:coupons:container
        coupons=coupons,
        # slot:giftcards:container
        giftcards=giftcards,
        # slot:campaigns:container
        campaigns=campaigns,
        # slot:draws:container
        draws=draws,
    )
