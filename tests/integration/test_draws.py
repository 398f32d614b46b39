"""Prize draws on SQLite and PostgreSQL: who enters and with how many entries (window in the
tenant's days, threshold, refunds, tiers, outlets, channels, merged and blocked profiles), the
commitment and the frozen list, the draw and its re-run from the publication, points and
reward prizes, the jobs run, a member's view, refusals, and concurrent runs (PostgreSQL)."""

from __future__ import annotations

import hashlib
import threading
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from kopilka.adapters.db.mechanics.awards import mechanic_awards
from kopilka.adapters.db.mechanics.draws import draw_entries, draw_winners
from kopilka.bootstrap import Container
from kopilka.domain.draws.definition import DrawDefinition
from kopilka.domain.draws.fairness import Entry, entries_hash, seed_hash, verify
from kopilka.domain.errors import BusinessRuleViolation, Conflict, NotFound, ValidationFailed
from kopilka.domain.rewards.definition import RewardDefinition
from kopilka.services.purchases import LineInput, MemberRef, ReceiptInput
from kopilka.services.rewards import StockInput
from kopilka.services.verify import verify_ledger
from kopilka.testing import FakeClock
from tests.conftest import Merchant, make_merchant

# Europe/Moscow is UTC+3: the window is 1-28 February 2026 in Moscow.
WINDOW_START = datetime(2026, 1, 31, 21, tzinfo=UTC)
WINDOW_END = datetime(2026, 2, 28, 21, tzinfo=UTC)
DRAW_AT = datetime(2026, 3, 1, 21, tzinfo=UTC)  # 2 March, 00:00 in Moscow
MID_WINDOW = datetime(2026, 2, 10, 12, tzinfo=UTC)
SPRING: dict[str, Any] = {
    "code": "spring",
    "name": {"ru": "Весенний розыгрыш", "en": "Spring draw"},
    "starts_on": "2026-02-01",
    "ends_on": "2026-02-28",
    "draw_on": "2026-03-02",
    "entry_rules": {"min_receipt": 100000, "per_receipt": 1, "multiplier_by_tier": {"gold": 2}},
    "prizes": [
        {"rank": 1, "kind": "points", "points": 5000},
        {"rank": 2, "count": 2, "kind": "points", "points": 1000},
    ],
}
TIERS = {
    "metric": "spent",
    "window": {"kind": "calendar", "period": "year"},
    "levels": [{"code": "silver", "threshold": 0}, {"code": "gold", "threshold": 10**9}],
}


def define(**changes: Any) -> DrawDefinition:
    return DrawDefinition.model_validate({**SPRING, **changes})


def enrol(c: Container, m: Merchant, name: str, **profile: Any) -> uuid.UUID:
    return c.members.enroll(m.actor, {"name": name, **profile}).id


_numbers = iter(range(1, 10**6))


def buy(
    c: Container,
    m: Merchant,
    member_id: uuid.UUID | None,
    price: int,
    *,
    at: datetime | None = None,
    halves: bool = False,
    outlet: str = "OUT-1",
    channel: str = "store",
    hold: bool = False,
) -> uuid.UUID:
    """A receipt of ``price`` kopecks (two lines of half each with ``halves``)."""
    lines = (
        (LineInput("A", Decimal(1), price // 2), LineInput("B", Decimal(1), price - price // 2))
        if halves
        else (LineInput("A", Decimal(1), price),)
    )
    request = ReceiptInput(
        lines=lines,
        member=MemberRef(id=member_id) if member_id is not None else None,
        outlet=outlet,
        channel=channel,
        occurred_at=at,
    )
    answer = c.purchases.confirm(m.actor, request, f"R-{next(_numbers)}", hold=hold)
    return uuid.UUID(answer["receipt"]["id"])


def rows(c: Container, table: sa.Table) -> int:
    with c.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def available(c: Container, m: Merchant, member_id: uuid.UUID) -> int:
    return c.ledger.balance(m.actor, member_id).available


def assert_ledger_ok(c: Container) -> None:
    report = verify_ledger(c.uow_factory)
    assert report.ok, {k: v for k, v in report.checks.items() if v}


@pytest.fixture
def shop(container: Container) -> Merchant:
    merchant = make_merchant(container, "Draw Coffee")
    container.programs.publish(
        merchant.actor,
        "main",
        {"type": "bonus", "rules": [{"id": "base", "effects": [{"points_percent": 1}]}]},
    )
    return merchant


def opened(c: Container, m: Merchant, **changes: Any) -> str:
    """Create and open a draw (the clock is before its window ends)."""
    view = c.draws.create(m.actor, define(**changes))
    c.draws.open(m.actor, view.code)
    return view.code


def test_entries_follow_the_rules_and_are_frozen_under_a_hash(
    container: Container, shop: Merchant, clock: FakeClock
) -> None:
    c, m = container, shop
    anna = enrol(c, m, "Anna", attributes={"tier": "gold"})
    boris, vera, dasha = (enrol(c, m, n) for n in ("Boris", "Vera", "Dasha"))
    code = opened(c, m)
    before = c.draws.get(m.actor, code)
    assert before.status == "open"
    assert before.seed is None
    assert before.seed_hash is not None
    assert len(before.seed_hash) == 64

    clock.set(MID_WINDOW)
    expected: list[tuple[uuid.UUID, int, int]] = []  # (receipt, weight, amount)
    first = buy(c, m, anna, 150000, at=WINDOW_START)  # 1 February, 00:00 in Moscow
    expected.append((first, 2, 150000))
    buy(c, m, anna, 150000, at=WINDOW_START - timedelta(seconds=1))  # 31 January
    buy(c, m, anna, 99999)  # below the threshold
    exact = buy(c, m, anna, 100000)  # the threshold itself counts
    expected.append((exact, 2, 100000))
    plain = buy(c, m, boris, 200000)
    expected.append((plain, 1, 200000))
    refunded = buy(c, m, boris, 300000, halves=True)
    c.purchases.refund(m.actor, refunded, "RF-1", None)  # in full: no entry
    kept = buy(c, m, boris, 250000, halves=True)
    c.purchases.refund(m.actor, kept, "RF-2", [(1, Decimal(1))])  # 125 000 still paid
    expected.append((kept, 1, 125000))
    short = buy(c, m, boris, 160000, halves=True)
    c.purchases.refund(m.actor, short, "RF-3", [(1, Decimal(1))])  # 80 000 left: too little
    buy(c, m, vera, 500000)  # Vera is blocked before the freeze
    merged = buy(c, m, dasha, 120000)  # Dasha's profile is merged into Boris's
    expected.append((merged, 1, 120000))
    buy(c, m, None, 500000)  # anonymous
    buy(c, m, boris, 400000, hold=True)  # held, never confirmed
    c.members.set_blocked(m.actor, vera, True, "fraud")
    c.members.merge(m.actor, boris, dasha)

    clock.set(WINDOW_END - timedelta(seconds=1))  # 28 February, 23:59:59 in Moscow
    last = buy(c, m, anna, 100000)
    expected.append((last, 2, 100000))
    with pytest.raises(BusinessRuleViolation) as early:
        c.draws.freeze(m.actor, code)
    assert early.value.code == "draw_window_not_over"

    clock.set(WINDOW_END)
    buy(c, m, anna, 100000, at=WINDOW_END)  # 1 March in Moscow: after the window
    view = c.draws.freeze(m.actor, code)
    assert view.status == "frozen"
    assert (view.entries_count, view.entrants, view.total_weight) == (6, 2, 9)
    assert c.draws.freeze(m.actor, code) == view  # again: nothing changes

    owner = {first: anna, exact: anna, plain: boris, kept: boris, merged: boris, last: anna}
    # Canonical order: the time each receipt was made, then its id (ids grow with time).
    with c.engine.connect() as conn:
        stored = conn.execute(sa.select(draw_entries).order_by(draw_entries.c.entry_no)).all()
    assert [(r.entry_no, r.receipt_id, r.weight, r.amount) for r in stored] == [
        (n, receipt, w, amount) for n, (receipt, w, amount) in enumerate(expected, start=1)
    ]
    assert [r.member_id for r in stored] == [owner[r.receipt_id] for r in stored]

    public = c.draws.publication(m.actor, code)
    assert public.seed is None  # not before the draw
    assert public.entries is not None
    assert public.entries_hash == view.entries_hash
    assert (
        public.entries_hash
        == hashlib.sha256(c.draws.entries_text(m.actor, code).encode()).hexdigest()
    )
    assert {e.member for e in public.entries} == {r.pseudonym for r in stored}
    assert all(str(anna) not in e.member and len(e.member) == 32 for e in public.entries)

    trail = c.members.audit_trail(m.actor, anna)
    entered = [e for e in trail if e["action"] == "draw.entered"]
    assert [e["details"]["explanation"]["ru"] for e in entered] == [
        "Вы участвуете в розыгрыше «Весенний розыгрыш»: 6 шансов"
    ]
    assert_ledger_ok(c)


def test_the_draw_reveals_the_seed_and_anyone_can_rerun_it(
    container: Container, shop: Merchant, clock: FakeClock
) -> None:
    c, m = container, shop
    people = [enrol(c, m, f"P{i}") for i in range(6)]
    code = opened(c, m)
    clock.set(MID_WINDOW)
    for i, person in enumerate(people):
        for _ in range(i + 1):
            buy(c, m, person, 100000)
    clock.set(WINDOW_END)
    c.draws.freeze(m.actor, code)
    with pytest.raises(BusinessRuleViolation) as early:
        c.draws.run(m.actor, code)
    assert early.value.code == "draw_date_not_reached"

    before = {p: available(c, m, p) for p in people}
    clock.set(DRAW_AT)
    view = c.draws.run(m.actor, code)
    assert view.status == "drawn"
    assert view.seed is not None
    assert seed_hash(view.seed) == view.seed_hash
    assert [(w.slot, w.rank, w.status) for w in view.winners] == [
        (1, 1, "awarded"),
        (2, 2, "awarded"),
        (3, 2, "awarded"),
    ]
    assert len({w.member_id for w in view.winners}) == 3  # one prize per member
    for w in view.winners:
        prize = 5000 if w.rank == 1 else 1000
        assert w.points == prize
        assert available(c, m, w.member_id) == before[w.member_id] + prize
        [txn] = [t for t in c.ledger.history(m.actor, w.member_id, None, 50) if t.kind == "bonus"]
        assert txn.description["ru"].startswith("Приз розыгрыша «Весенний розыгрыш»: ")
        assert txn.description["en"].startswith("Prize in the draw “Spring draw”: ")
        won = [e for e in c.members.audit_trail(m.actor, w.member_id) if e["action"] == "draw.won"]
        assert len(won) == 1

    # The same published inputs give the same winners: re-run from the publication.
    public = c.draws.publication(m.actor, code)
    report = verify(public)
    assert report.ok, report
    assert report.winners == public.winners
    assert [w.pseudonym for w in view.winners] == [w.member for w in public.winners]

    # Running again changes nothing: no second draw, no second prize.
    assert c.draws.run(m.actor, code) == view
    assert rows(c, mechanic_awards) == 3
    assert rows(c, draw_winners) == 3
    assert_ledger_ok(c)


def test_a_changed_entry_list_changes_the_hash_and_fails_verification(
    container: Container, shop: Merchant, clock: FakeClock
) -> None:
    c, m = container, shop
    people = [enrol(c, m, f"P{i}") for i in range(4)]
    code = opened(c, m)
    clock.set(MID_WINDOW)
    for person in people:
        buy(c, m, person, 100000)
    clock.set(DRAW_AT)
    c.draws.freeze(m.actor, code)
    c.draws.run(m.actor, code)
    public = c.draws.publication(m.actor, code)
    assert public.entries is not None
    dropped = public.model_copy(update={"entries": public.entries[1:]})
    report = verify(dropped)
    assert report.entries_hash_matches is False
    assert not report.ok
    recomputed = entries_hash(Entry(e.entry, e.member, e.weight) for e in public.entries[1:])
    assert recomputed != public.entries_hash


def test_outlets_and_channels_limit_the_entries(
    container: Container, shop: Merchant, clock: FakeClock
) -> None:
    c, m = container, shop
    c.tenants.create_outlet(m.actor, "OUT-2", name="Second")
    anna = enrol(c, m, "Anna")
    with pytest.raises(ValidationFailed) as unknown:
        c.draws.create(m.actor, define(code="x", entry_rules={"outlets": ["OUT-2", "NOPE"]}))
    assert [(e.path, e.code) for e in unknown.value.errors] == [
        (("entry_rules", "outlets", 1), "outlet_not_found")
    ]
    code = opened(c, m, entry_rules={"outlets": ["OUT-2"], "channels": ["online", "app"]})
    clock.set(MID_WINDOW)
    buy(c, m, anna, 100, outlet="OUT-1", channel="online")
    buy(c, m, anna, 100, outlet="OUT-2", channel="store")
    wanted = {buy(c, m, anna, 100, outlet="OUT-2", channel="online")}
    wanted.add(buy(c, m, anna, 100, outlet="OUT-2", channel="app"))
    clock.set(WINDOW_END)
    assert c.draws.freeze(m.actor, code).entries_count == 2
    with c.engine.connect() as conn:
        assert set(conn.execute(sa.select(draw_entries.c.receipt_id)).scalars()) == wanted


def test_the_tier_multiplier_is_the_tier_at_the_freeze(
    container: Container, shop: Merchant, clock: FakeClock
) -> None:
    c, m = container, shop
    c.programs.publish(m.actor, "status", {"type": "bonus", "tiers": TIERS})
    anna = enrol(c, m, "Anna")
    boris = enrol(c, m, "Boris")
    carl = enrol(c, m, "Carl", attributes={"tier": "gold"})  # from before the tiers
    code = opened(c, m, entry_rules={"multiplier_by_tier": {"gold": 3, "silver": 2}})
    clock.set(MID_WINDOW)
    for person in (anna, boris, carl):
        buy(c, m, person, 100)
    clock.set(WINDOW_END)
    c.tiers.set_tier(m.actor, anna, tier="gold", reason="VIP guest")  # before the freeze
    c.draws.freeze(m.actor, code)
    c.tiers.set_tier(m.actor, boris, tier="gold", reason="too late")
    with c.engine.connect() as conn:
        found = {
            r.member_id: (r.tier, r.weight)
            for r in conn.execute(
                sa.select(draw_entries.c.member_id, draw_entries.c.tier, draw_entries.c.weight)
            )
        }
    assert found == {anna: ("gold", 3), boris: ("silver", 2), carl: ("gold", 3)}


def test_the_jobs_run_freezes_and_draws_on_the_draw_day_once(
    container: Container, shop: Merchant, clock: FakeClock
) -> None:
    c, m = container, shop
    people = [enrol(c, m, f"P{i}") for i in range(3)]
    code = opened(c, m)
    c.draws.create(m.actor, define(code="draft-one"))  # never opened: left alone
    clock.set(MID_WINDOW)
    for person in people:
        buy(c, m, person, 100000)
    clock.set(WINDOW_END + timedelta(hours=1))
    assert c.jobs.run().steps["draws_run"] == 0  # the window is over, the day not yet here
    clock.set(DRAW_AT - timedelta(seconds=1))  # 1 March, 23:59:59 in Moscow
    assert c.jobs.run().steps["draws_run"] == 0
    clock.set(DRAW_AT + timedelta(hours=5))
    assert c.jobs.run().steps["draws_run"] == 1 + 1 + 3  # frozen, drawn, three prizes
    view = c.draws.get(m.actor, code)
    assert view.status == "drawn"
    assert view.frozen_at == DRAW_AT + timedelta(hours=5)
    assert [w.status for w in view.winners] == ["awarded"] * 3
    assert c.jobs.run().steps["draws_run"] == 0
    clock.advance(days=3)
    assert c.jobs.run().steps["draws_run"] == 0
    assert c.draws.get(m.actor, "draft-one").status == "draft"
    assert rows(c, mechanic_awards) == 3
    assert_ledger_ok(c)


def test_a_reward_prize_is_ordered_with_its_value_else_the_value_is_kept(
    container: Container, shop: Merchant, clock: FakeClock
) -> None:
    c, m = container, shop
    mug = c.rewards.create(
        m.actor,
        RewardDefinition.model_validate(
            {
                "code": "MUG",
                "kind": "material",
                "name": {"ru": "Кружка", "en": "Mug"},
                "cost": 500,
                "cost_by_tier": {"gold": 400},
            }
        ),
    )
    c.rewards.set_stock(m.actor, mug.id, StockInput("OUT-1", 1))
    people = [enrol(c, m, "Anna", attributes={"tier": "gold"}), enrol(c, m, "Boris")]
    code = opened(
        c, m, prizes=[{"rank": 1, "count": 2, "kind": "reward", "reward_id": str(mug.id)}]
    )
    assert c.draws.get(m.actor, code).prizes[0].name == {"ru": "Кружка", "en": "Mug"}
    clock.set(MID_WINDOW)
    for person in people:
        buy(c, m, person, 100000)
    clock.set(DRAW_AT)
    c.draws.freeze(m.actor, code)
    before = {p: available(c, m, p) for p in people}
    view = c.draws.run(m.actor, code)
    first, second = view.winners
    # The first winner's order takes the only mug: its price (the winner's tier price) is
    # credited as the prize and spent on the order at once.
    assert first.status == "ordered"
    assert first.order_id is not None
    price = 400 if first.member_id == people[0] else 500
    assert first.points == price
    assert available(c, m, first.member_id) == before[first.member_id]
    order = c.rewards.order(m.actor, first.order_id)
    assert (order.member_id, order.reward_code, order.status) == (first.member_id, "MUG", "pending")
    # Out of stock for the second: they keep the mug's value in points.
    assert (second.status, second.error) == ("points_instead", "out_of_stock")
    second_price = 400 if second.member_id == people[0] else 500
    assert second.points == second_price
    assert available(c, m, second.member_id) == before[second.member_id] + second_price
    assert c.draws.run(m.actor, code) == view  # nothing more to do
    assert_ledger_ok(c)


def test_a_blocked_winner_waits_for_someone_to_look(
    container: Container, shop: Merchant, clock: FakeClock
) -> None:
    c, m = container, shop
    anna = enrol(c, m, "Anna")
    code = opened(c, m, prizes=[{"rank": 1, "kind": "points", "points": 700}])
    clock.set(MID_WINDOW)
    buy(c, m, anna, 100000)
    clock.set(DRAW_AT)
    c.draws.freeze(m.actor, code)
    c.members.set_blocked(m.actor, anna, True, "check")
    [winner] = c.draws.run(m.actor, code).winners
    assert (winner.status, winner.error) == ("failed", "member_blocked")
    assert winner.status_text["ru"] == "Приз не выдан, обратитесь в поддержку"
    assert c.jobs.run().steps["draws_run"] == 0  # the job leaves failed prizes alone
    c.members.set_blocked(m.actor, anna, False)
    [winner] = c.draws.run(m.actor, code).winners
    assert (winner.status, winner.points, winner.error) == ("awarded", 700, None)


def test_a_draw_without_entries_draws_nobody(
    container: Container, shop: Merchant, clock: FakeClock
) -> None:
    c, m = container, shop
    code = opened(c, m)
    clock.set(DRAW_AT)
    view = c.draws.freeze(m.actor, code)
    assert view.entries_hash == hashlib.sha256(b"").hexdigest()
    view = c.draws.run(m.actor, code)
    assert (view.status, view.winners) == ("drawn", [])
    assert verify(c.draws.publication(m.actor, code)).ok


def test_a_members_view_of_their_draws(
    container: Container, shop: Merchant, clock: FakeClock
) -> None:
    c, m = container, shop
    anna = enrol(c, m, "Anna", attributes={"tier": "gold"})
    old = enrol(c, m, "Anna's old card")
    code = opened(c, m, prizes=[{"rank": 1, "kind": "points", "points": 300}])
    clock.set(MID_WINDOW)
    receipt = buy(c, m, anna, 100000)
    buy(c, m, old, 100000)
    c.members.merge(m.actor, anna, old)
    [mine] = c.draws.member_draws(m.actor, anna, None, 10)
    assert mine.provisional
    assert (mine.status, mine.total, mine.total_weight) == ("open", 4, None)
    assert mine.entries[0].entry is None
    assert mine.entries[0].receipt_id == receipt
    assert mine.summary["ru"] == "У вас пока 4 шанса в розыгрыше «Весенний розыгрыш»"
    assert c.draws.member_draws(m.actor, enrol(c, m, "Nobody"), None, 10) == []

    clock.set(DRAW_AT)
    c.draws.freeze(m.actor, code)
    [mine] = c.draws.member_draws(m.actor, anna, None, 10)
    assert not mine.provisional
    assert [e.entry for e in mine.entries] == [1, 2]
    assert mine.total_weight == 4
    public = c.draws.publication(m.actor, code)
    assert public.entries is not None
    assert {e.member for e in public.entries} == {mine.pseudonym}
    c.draws.run(m.actor, code)
    [mine] = c.draws.member_draws(m.actor, anna, None, 10)
    assert [(w.rank, w.prize["ru"], w.status) for w in mine.won] == [(1, "300 баллов", "awarded")]
    assert mine.summary["en"] == "You have 4 entries in the draw “Spring draw”"
    with pytest.raises(NotFound):
        c.draws.member_draws(m.actor, uuid.uuid4(), None, 10)


def test_refusals_and_idempotent_steps(
    container: Container, shop: Merchant, clock: FakeClock
) -> None:
    c, m = container, shop
    created = c.draws.create(m.actor, define())
    assert created.status == "draft"
    assert c.draws.create(m.actor, define()) == created  # the same again: the same draw
    with pytest.raises(Conflict) as taken:
        c.draws.create(m.actor, define(draw_on="2026-03-05"))
    assert taken.value.code == "draw_code_taken"
    with pytest.raises(ValidationFailed) as bad:
        c.draws.create(
            m.actor,
            define(
                code="other",
                draw_on="2026-02-28",
                prizes=[{"rank": 1, "kind": "reward", "reward_id": str(uuid.uuid4())}],
            ),
        )
    assert [(e.path, e.code) for e in bad.value.errors] == [
        (("draw_on",), "draw_before_window_end")
    ]
    with pytest.raises(ValidationFailed) as missing:
        c.draws.create(
            m.actor,
            define(
                code="other", prizes=[{"rank": 1, "kind": "reward", "reward_id": str(uuid.uuid4())}]
            ),
        )
    assert [(e.path, e.code) for e in missing.value.errors] == [
        (("prizes", 0, "reward_id"), "reward_not_found")
    ]
    for step, code in ((c.draws.freeze, "draw_not_open"), (c.draws.run, "draw_not_frozen")):
        with pytest.raises(Conflict) as refused:
            step(m.actor, "spring")
        assert refused.value.code == code
    with pytest.raises(NotFound) as unknown:
        c.draws.open(m.actor, "nope")
    assert unknown.value.code == "draw_not_found"
    other = make_merchant(c, "Rival")
    with pytest.raises(NotFound):
        c.draws.get(other.actor, "spring")

    opened_view = c.draws.open(m.actor, "spring")
    assert c.draws.open(m.actor, "spring") == opened_view  # the seed is chosen once
    with pytest.raises(Conflict):
        c.draws.run(m.actor, "spring")
    with pytest.raises(Conflict) as not_yet:
        c.draws.entries_text(m.actor, "spring")
    assert not_yet.value.code == "draw_not_frozen"

    c.draws.create(m.actor, define(code="late"))
    clock.set(WINDOW_END)
    with pytest.raises(BusinessRuleViolation) as late:
        c.draws.open(m.actor, "late")
    assert late.value.code == "draw_window_closed"
    assert c.draws.get(m.actor, "late").seed_hash is None
    assert [d.code for d in c.draws.list_draws(m.actor, None, 10)] == ["spring", "late"]
    assert [d.code for d in c.draws.list_draws(m.actor, None, 10, "draft")] == ["late"]


@pytest.mark.postgres_only
def test_concurrent_runs_draw_once_and_pay_each_prize_once(
    container: Container, shop: Merchant, clock: FakeClock
) -> None:
    c, m = container, shop
    people = [enrol(c, m, f"P{i}") for i in range(8)]
    code = opened(c, m, prizes=[{"rank": 1, "count": 5, "kind": "points", "points": 100}])
    clock.set(MID_WINDOW)
    for person in people:
        buy(c, m, person, 100000)
    clock.set(DRAW_AT)
    c.draws.freeze(m.actor, code)
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def go(i: int) -> None:
        barrier.wait()
        try:
            if i % 2:
                c.draws.run(m.actor, code)
            else:
                c.jobs.run(tenant_id=m.tenant_id)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    view = c.draws.get(m.actor, code)
    assert [w.status for w in view.winners] == ["awarded"] * 5
    assert rows(c, draw_winners) == 5
    assert rows(c, mechanic_awards) == 5
    assert verify(c.draws.publication(m.actor, code)).ok
    assert_ledger_ok(c)
