"""Prize draws, pure logic: the definition's checks, the entry rules, and the fairness
machinery (commitment, canonical list and its hash, the deterministic pick, verification).

Issue 5, section 6: the same published inputs give the same winners; a changed entry list
gives a different hash."""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from kopilka.domain.draws import texts
from kopilka.domain.draws.definition import (
    DrawDefinition,
    EntryRules,
    check_definition,
    slots,
)
from kopilka.domain.draws.entries import (
    RefundedLine,
    fully_refunded,
    net_paid,
    qualifies,
    refunded_money,
    weight,
    window,
)
from kopilka.domain.draws.fairness import (
    ALGORITHM,
    Entry,
    Publication,
    PublicWinner,
    canonical_line,
    draw_position,
    entries_hash,
    pick_winners,
    pseudonym,
    seed_hash,
    verify,
)

SEED = "5" * 64
KEY = "a" * 64
BASE: dict[str, Any] = {
    "code": "spring",
    "name": {"ru": "Весна", "en": "Spring"},
    "starts_on": "2026-03-01",
    "ends_on": "2026-03-31",
    "draw_on": "2026-04-02",
    "prizes": [{"rank": 1, "kind": "points", "points": 5000}],
}


def definition(**changes: Any) -> DrawDefinition:
    return DrawDefinition.model_validate({**BASE, **changes})


def problems(**changes: Any) -> list[tuple[tuple[str | int, ...], str]]:
    return [(e.path, e.code) for e in check_definition(definition(**changes))]


def entries(*spec: tuple[str, int]) -> list[Entry]:
    return [Entry(i, member, w) for i, (member, w) in enumerate(spec, start=1)]


def seeds(n: int) -> list[str]:
    return [hashlib.sha256(str(i).encode()).hexdigest() for i in range(n)]


# ---- the definition --------------------------------------------------------------------------
def test_a_good_definition_has_no_problems_and_expands_into_slots() -> None:
    d = definition(
        prizes=[
            {"rank": 2, "count": 3, "kind": "points", "points": 100},
            {"rank": 1, "kind": "reward", "reward_id": "0190a000-0000-7000-8000-000000000001"},
        ]
    )
    assert check_definition(d) == []
    assert [(s.slot, s.rank) for s in slots(d.prizes)] == [(1, 1), (2, 2), (3, 2), (4, 2)]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"ends_on": "2026-02-28"}, [(("ends_on",), "invalid_window")]),
        ({"draw_on": "2026-03-31"}, [(("draw_on",), "draw_before_window_end")]),
        (
            {"ends_on": "2027-05-01", "draw_on": "2027-05-02"},
            [(("ends_on",), "window_too_long")],
        ),
        (
            {"prizes": [{"rank": 1, "kind": "points"}]},
            [(("prizes", 0, "points"), "points_required")],
        ),
        (
            {"prizes": [{"rank": 1, "kind": "reward", "points": 5}]},
            [
                (("prizes", 0, "reward_id"), "reward_required"),
                (("prizes", 0, "points"), "not_for_reward_prize"),
            ],
        ),
        (
            {
                "prizes": [
                    {"rank": 1, "kind": "points", "points": 1},
                    {"rank": 1, "count": 1000, "kind": "points", "points": 1},
                ]
            },
            [(("prizes", 1, "rank"), "duplicate_rank"), (("prizes",), "too_many_prizes")],
        ),
    ],
)
def test_problems_spanning_fields_have_paths(
    changes: dict[str, Any], expected: list[tuple[tuple[str | int, ...], str]]
) -> None:
    assert problems(**changes) == expected


@pytest.mark.parametrize(
    ("changes", "loc"),
    [
        ({"code": "bad code"}, ("code",)),
        ({"starts_on": "1999-12-31"}, ("starts_on",)),
        ({"name": {"ru": "Весна"}}, ("name", "en")),
        ({"entry_rules": {"min_receipt": -1}}, ("entry_rules", "min_receipt")),
        ({"entry_rules": {"min_receipt": "1000"}}, ("entry_rules", "min_receipt")),
        ({"entry_rules": {"per_receipt": 0}}, ("entry_rules", "per_receipt")),
        ({"entry_rules": {"multiplier_by_tier": {"gold": 101}}}, ("entry_rules",)),
        ({"entry_rules": {"channels": ["shop"]}}, ("entry_rules", "channels", 0)),
        ({"entry_rules": {"outlets": []}}, ("entry_rules", "outlets")),
        ({"entry_rules": {"surprise": 1}}, ("entry_rules", "surprise")),
        ({"prizes": []}, ("prizes",)),
        ({"prizes": [{"rank": 0, "kind": "points", "points": 1}]}, ("prizes", 0, "rank")),
        ({"prizes": [{"rank": 1, "kind": "cash", "points": 1}]}, ("prizes", 0, "kind")),
        ({"prizes": [{"rank": 1, "kind": "points", "points": 10**10}]}, ("prizes", 0, "points")),
    ],
)
def test_bad_fields_are_refused_with_their_path(
    changes: dict[str, Any], loc: tuple[str | int, ...]
) -> None:
    with pytest.raises(ValidationError) as caught:
        definition(**changes)
    assert any(tuple(e["loc"])[: len(loc)] == loc for e in caught.value.errors())


# ---- entry rules ---------------------------------------------------------------------------
def test_the_window_is_made_of_tenant_local_days() -> None:
    w = window(definition(), "Europe/Moscow")
    assert w.starts_at == datetime(2026, 2, 28, 21, tzinfo=UTC)
    assert w.ends_at == datetime(2026, 3, 31, 21, tzinfo=UTC)
    assert w.draw_at == datetime(2026, 4, 1, 21, tzinfo=UTC)
    assert window(definition(), "Asia/Vladivostok").starts_at == datetime(
        2026, 2, 28, 14, tzinfo=UTC
    )


def test_refunds_lower_what_was_paid_as_refunds_compute_it() -> None:
    line = RefundedLine(
        amount=30000, discount=3000, points_money=1000, qty=Decimal(3), refunded_qty=Decimal(1)
    )
    assert refunded_money(line) == 26000 // 3  # floor(26000 × 1 / 3)
    whole = RefundedLine(10000, 0, 0, Decimal("1.5"), Decimal("1.5"))
    assert refunded_money(whole) == 10000
    assert net_paid(36000, [line, whole]) == 36000 - 8666 - 10000
    assert fully_refunded([whole])
    assert not fully_refunded([whole, line])
    assert refunded_money(RefundedLine(100, 0, 0, Decimal(0), Decimal(0))) == 0


def test_weight_and_threshold() -> None:
    rules = EntryRules(min_receipt=100000, per_receipt=2, multiplier_by_tier={"gold": 3})
    assert weight(rules, "gold") == 6
    assert weight(rules, "silver") == 2
    assert weight(rules, None) == 2
    assert qualifies(rules, 100000, False)  # "over 1 000 ₽" includes 1 000 ₽ itself
    assert not qualifies(rules, 99999, False)
    assert not qualifies(EntryRules(), 0, True)  # refunded in full: never


# ---- the commitment and the list -----------------------------------------------------------
def test_the_commitment_is_the_seeds_sha256() -> None:
    assert seed_hash(SEED) == hashlib.sha256(bytes.fromhex(SEED)).hexdigest()
    assert seed_hash(SEED) != seed_hash("6" * 64)


def test_pseudonyms_are_stable_per_draw_and_differ_between_draws() -> None:
    member = "0190a000-0000-7000-8000-00000000000a"
    first = pseudonym(KEY, member)
    assert first == pseudonym(KEY, member)
    assert len(first) == 32
    assert member not in first
    assert first != pseudonym("b" * 64, member)
    assert first != pseudonym(KEY, "0190a000-0000-7000-8000-00000000000b")


def test_the_canonical_line_and_hash_are_exactly_as_documented() -> None:
    listed = entries(("m1", 2), ("m2", 1))
    assert canonical_line(listed[0]) == '{"entry":1,"member":"m1","weight":2}'
    raw = b'{"entry":1,"member":"m1","weight":2}\n{"entry":2,"member":"m2","weight":1}\n'
    assert entries_hash(listed) == hashlib.sha256(raw).hexdigest()
    assert entries_hash([]) == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize(
    "change",
    ["weight", "member", "added", "removed", "swapped"],
)
def test_a_changed_entry_list_gives_a_different_hash(change: str) -> None:
    listed = entries(("m1", 2), ("m2", 1), ("m3", 1))
    changed = {
        "weight": entries(("m1", 3), ("m2", 1), ("m3", 1)),
        "member": entries(("m1", 2), ("m9", 1), ("m3", 1)),
        "added": entries(("m1", 2), ("m2", 1), ("m3", 1), ("m4", 1)),
        "removed": entries(("m1", 2), ("m2", 1)),
        "swapped": entries(("m2", 1), ("m1", 2), ("m3", 1)),
    }[change]
    assert entries_hash(changed) != entries_hash(listed)


# ---- the pick ----------------------------------------------------------------------------------
def naive_pick(seed: str, listed: list[Entry], count: int, one_per_member: bool) -> list[int]:
    """The documented algorithm, written the slow and obvious way."""
    left = {e.number: e for e in listed}
    found = []
    for slot in range(1, count + 1):
        total = sum(e.weight for e in left.values())
        if total == 0:
            break
        r = draw_position(seed, slot, total)
        running = 0
        for e in sorted(left.values(), key=lambda e: e.number):
            running += e.weight
            if running > r:
                found.append(e.number)
                gone = [n for n, x in left.items() if x.member == e.member or n == e.number]
                for n in gone if one_per_member else [e.number]:
                    del left[n]
                break
    return found


@settings(max_examples=150, deadline=None)
@given(
    weights=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 50)), min_size=0, max_size=40),
    count=st.integers(0, 12),
    one_per_member=st.booleans(),
    seed_no=st.integers(0, 10_000),
)
def test_the_quick_pick_is_the_documented_algorithm(
    weights: list[tuple[int, int]], count: int, one_per_member: bool, seed_no: int
) -> None:
    seed = hashlib.sha256(str(seed_no).encode()).hexdigest()
    listed = entries(*((f"m{member}", w) for member, w in weights))
    picks = pick_winners(seed, listed, count, one_per_member=one_per_member)
    assert [p.entry for p in picks] == naive_pick(seed, listed, count, one_per_member)
    assert [p.slot for p in picks] == list(range(1, len(picks) + 1))
    by_number = {e.number: e for e in listed}
    assert all(by_number[p.entry].weight > 0 for p in picks)
    if one_per_member:
        assert len({p.member for p in picks}) == len(picks)


def test_the_same_inputs_give_the_same_winners() -> None:
    listed = entries(*((f"m{i % 7}", 1 + i % 3) for i in range(50)))
    first = pick_winners(SEED, listed, 5)
    assert first == pick_winners(SEED, list(listed), 5)
    assert first != pick_winners("6" * 64, listed, 5)


def test_one_prize_per_member_and_fewer_entrants_than_prizes() -> None:
    listed = entries(("ann", 5), ("ann", 5), ("bob", 1))
    picks = pick_winners(SEED, listed, 5)
    assert sorted(p.member for p in picks) == ["ann", "bob"]
    repeated = pick_winners(SEED, listed, 5, one_per_member=False)
    assert sorted(p.entry for p in repeated) == [1, 2, 3]  # each entry wins once at most
    assert pick_winners(SEED, [], 3) == []
    assert pick_winners(SEED, entries(("ann", 0)), 1) == []


def test_weights_are_chances() -> None:
    """Over many seeds, an entry of weight 3 beats one of weight 1 about 3 times in 4."""
    listed = entries(("light", 1), ("heavy", 3))
    wins = Counter(pick_winners(s, listed, 1)[0].member for s in seeds(4000))
    assert 0.72 < wins["heavy"] / 4000 < 0.78


def test_positions_are_uniform_even_when_a_draw_must_be_repeated() -> None:
    # A total just above 2^255: about half of the 256-bit numbers are rejected and drawn
    # again, and every result still lies in [0, total).
    total = (1 << 255) + 1
    found = [draw_position(s, 1, total) for s in seeds(200)]
    assert all(0 <= x < total for x in found)
    assert len(set(found)) == 200
    assert Counter(draw_position(s, 1, 4) for s in seeds(4000)).keys() == {0, 1, 2, 3}


# ---- verification --------------------------------------------------------------------------
def publication(**changes: Any) -> Publication:
    listed = entries(*((f"m{i % 5}", 1 + i % 2) for i in range(20)))
    picks = pick_winners(SEED, listed, 3)
    ranks = [1, 2, 2]
    data: dict[str, Any] = {
        "algorithm": ALGORITHM,
        "code": "spring",
        "name": {"ru": "Весна", "en": "Spring"},
        "status": "drawn",
        "timezone": "Europe/Moscow",
        "starts_on": date(2026, 3, 1),
        "ends_on": date(2026, 3, 31),
        "draw_on": date(2026, 4, 2),
        "entry_rules": {},
        "prizes": [
            {"rank": 2, "count": 2, "kind": "points", "points": 1, "name": {"ru": "x", "en": "x"}},
            {"rank": 1, "count": 1, "kind": "points", "points": 9, "name": {"ru": "y", "en": "y"}},
        ],
        "one_prize_per_member": True,
        "seed_hash": seed_hash(SEED),
        "seed": SEED,
        "entries_hash": entries_hash(listed),
        "entries_count": len(listed),
        "total_weight": sum(e.weight for e in listed),
        "entries": [{"entry": e.number, "member": e.member, "weight": e.weight} for e in listed],
        "winners": [
            {"slot": p.slot, "rank": ranks[p.slot - 1], "entry": p.entry, "member": p.member}
            for p in picks
        ],
    }
    data.update(changes)
    return Publication.model_validate(data)


def test_a_faithful_publication_verifies() -> None:
    report = verify(publication())
    assert report.ok
    assert (report.seed_matches, report.entries_hash_matches, report.winners_match) == (
        True,
        True,
        True,
    )
    assert [w.rank for w in report.winners] == [1, 2, 2]
    # The same published inputs give the same winners, again and again.
    assert verify(publication()).winners == report.winners


def test_tampering_is_caught() -> None:
    good = publication()
    assert good.entries is not None
    changed = [good.entries[0].model_copy(update={"weight": 99}), *good.entries[1:]]
    report = verify(publication(entries=[e.model_dump() for e in changed]))
    assert report.entries_hash_matches is False
    assert not report.ok
    first, second, *rest = good.winners
    swapped = [
        first.model_copy(update={"entry": second.entry, "member": second.member}),
        second.model_copy(update={"entry": first.entry, "member": first.member}),
        *rest,
    ]
    assert verify(publication(winners=[w.model_dump() for w in swapped])).winners_match is False
    reordered = [w.model_dump() for w in reversed(good.winners)]  # the order listed is no matter
    assert verify(publication(winners=reordered)).ok
    other_seed = verify(publication(seed="6" * 64))
    assert other_seed.seed_matches is False
    assert not other_seed.ok
    assert verify(publication(seed="zz")).seed_matches is False
    assert verify(publication(algorithm="other/1")).problems == ["unknown algorithm 'other/1'"]
    renumbered = verify(publication(entries_count=3))
    assert "20 entries listed, 3 announced" in renumbered.problems


def test_before_the_draw_there_is_nothing_to_verify_yet() -> None:
    report = verify(publication(seed=None, winners=[], status="frozen"))
    assert report.entries_hash_matches is True
    assert report.seed_matches is None
    assert not report.ok
    early = verify(publication(seed=None, entries=None, entries_hash=None, status="open"))
    assert early.problems == [
        "the seed is not revealed yet: the draw has not run",
        "the entries are not frozen yet",
    ]


def test_verified_winners_compare_by_value() -> None:
    report = verify(publication())
    assert report.winners[0] == PublicWinner(**report.winners[0].model_dump())


# ---- texts -----------------------------------------------------------------------------------
def test_texts_in_both_languages_with_plurals() -> None:
    name = {"ru": "Весна", "en": "Spring"}
    assert texts.entered(name, 1) == {
        "ru": "Вы участвуете в розыгрыше «Весна»: 1 шанс",
        "en": "You are in the draw “Spring” with 1 entry",
    }
    assert texts.entered(name, 3)["ru"].endswith("3 шанса")
    assert texts.entered(name, 11)["ru"].endswith("11 шансов")
    assert texts.member_summary(name, 2, True)["ru"] == "У вас пока 2 шанса в розыгрыше «Весна»"
    assert texts.points_prize(5000) == {"ru": "5\u00a0000 баллов", "en": "5,000 points"}
    assert texts.won(name, 1, {"ru": "Кружка", "en": "Mug"})["en"] == (
        "You won in the draw “Spring”: prize of rank 1, Mug"
    )
    assert set(texts.STATUS) == {"draft", "open", "frozen", "drawn"}
