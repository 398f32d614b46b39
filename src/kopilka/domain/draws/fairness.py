"""Verifiable fairness: commit to a seed, freeze the entries under a hash, pick the winners
with a published deterministic algorithm, reveal the seed.

Algorithm ``kopilka-draw-v1`` (see docs/draws.md for the prose version):

* ``seed``: 32 random bytes, published as 64 hex digits after the draw;
  ``seed_hash = sha256(seed bytes)``, published when the draw opens.
* Entries: one line per qualifying receipt, in the order the receipts were made, numbered
  from 1: ``{"entry":N,"member":"<pseudonym>","weight":W}`` (JSON, keys sorted, no spaces),
  each followed by ``\\n``; ``entries_hash = sha256(the lines, UTF-8)``. A member's pseudonym
  is ``HMAC-SHA256(draw's secret key, member id)``, 32 hex digits: the list names no one, yet
  a member shown their pseudonym finds their own lines.
* For prize slot ``i`` = 1, 2, ... (first prizes first): ``W`` = the weight still in the
  draw; for ``attempt`` = 0, 1, ...: ``x`` = ``HMAC-SHA256(seed, "kopilka-draw-v1:{i}:{attempt}")``
  read as a big-endian 256-bit number; accept the first ``x < floor(2^256 / W) × W``
  (rejection sampling, so every unit of weight is exactly equally likely) and take
  ``r = x mod W``. The winner is the first entry, in list order among those still in the draw,
  whose running total of weights exceeds ``r``. Then the winner leaves the draw: all of the
  member's entries when one prize per member, else that entry only. Slots left when no
  weight remains stay empty.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

ALGORITHM = "kopilka-draw-v1"
FORMAT = "kopilka-draw-public/1"
_SPACE = 1 << 256


# ---- commitment and pseudonyms ---------------------------------------------------------------
def seed_hash(seed: str) -> str:
    """The commitment to a hex seed: sha256 of its bytes, hex."""
    return hashlib.sha256(bytes.fromhex(seed)).hexdigest()


def pseudonym(key: str, member_id: object) -> str:
    """A member's name in one draw's published list: HMAC of the member id with the draw's
    secret key, so lists of different draws cannot be joined either."""
    return hmac.new(bytes.fromhex(key), str(member_id).encode(), hashlib.sha256).hexdigest()[:32]


# ---- the frozen list -------------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    number: int
    member: str
    weight: int


def canonical_line(entry: Entry) -> str:
    """One entry as published and hashed (no newline)."""
    return json.dumps(
        {"entry": entry.number, "member": entry.member, "weight": entry.weight},
        sort_keys=True,
        separators=(",", ":"),
    )


def entries_hash(entries: Iterable[Entry]) -> str:
    """sha256 of the canonical lines, each followed by a newline: the same bytes as the
    ``entries.jsonl`` download, so ``sha256sum`` checks it too."""
    digest = hashlib.sha256()
    for entry in entries:
        digest.update(canonical_line(entry).encode())
        digest.update(b"\n")
    return digest.hexdigest()


# ---- the pick --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pick:
    slot: int
    entry: int  # the winning entry's number
    member: str


class _Weights:
    """A Fenwick tree over the entries' weights: remove an entry and find the entry at a
    weight position in O(log n), so a draw of many prizes over millions of entries is quick."""

    def __init__(self, weights: Sequence[int]) -> None:
        self.size = len(weights)
        self.tree = [0] * (self.size + 1)
        self.total = 0
        for i, w in enumerate(weights):
            self.add(i, w)

    def add(self, index: int, delta: int) -> None:
        self.total += delta
        i = index + 1
        while i <= self.size:
            self.tree[i] += delta
            i += i & -i

    def find(self, position: int) -> int:
        """The index of the first entry whose running total exceeds ``position``."""
        index = 0
        step = 1 << self.size.bit_length()
        left = position
        while step:
            nxt = index + step
            if nxt <= self.size and self.tree[nxt] <= left:
                index = nxt
                left -= self.tree[nxt]
            step >>= 1
        return index  # 0-based: the tree's ``index + 1`` is the entry found


def draw_position(seed: str, slot: int, total: int) -> int:
    """A uniform number in ``[0, total)`` for ``slot``, from the seed alone."""
    key = bytes.fromhex(seed)
    limit = (_SPACE // total) * total
    attempt = 0
    while True:
        message = f"{ALGORITHM}:{slot}:{attempt}".encode()
        x = int.from_bytes(hmac.new(key, message, hashlib.sha256).digest(), "big")
        if x < limit:
            return x % total
        attempt += 1  # happens with probability below total / 2^256


def pick_winners(
    seed: str, entries: Sequence[Entry], slots: int, *, one_per_member: bool = True
) -> list[Pick]:
    """The winners of ``slots`` prizes over ``entries`` (in list order)."""
    weights = _Weights([e.weight for e in entries])
    by_member: dict[str, list[int]] = {}
    for i, e in enumerate(entries):
        by_member.setdefault(e.member, []).append(i)
    left = [e.weight for e in entries]
    picks: list[Pick] = []
    for slot in range(1, slots + 1):
        if weights.total <= 0:
            break
        index = weights.find(draw_position(seed, slot, weights.total))
        winner = entries[index]
        picks.append(Pick(slot, winner.number, winner.member))
        leaving = by_member[winner.member] if one_per_member else [index]
        for i in leaving:
            if left[i]:
                weights.add(i, -left[i])
                left[i] = 0
    return picks


# ---- the publication ---------------------------------------------------------------------------
class _Open(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class PublicText(_Open):
    ru: str
    en: str


class PublicEntry(_Open):
    entry: int
    member: str
    weight: int = Field(ge=0)


class PublicPrize(_Open):
    rank: int
    count: int
    kind: str
    points: int | None = None
    name: PublicText


class PublicWinner(_Open):
    slot: int
    rank: int
    entry: int
    member: str


class Publication(_Open):
    """Everything needed to re-run a draw, as ``GET /v1/draws/{code}/public`` answers it."""

    format: str = FORMAT
    algorithm: str = ALGORITHM
    code: str
    name: PublicText
    status: str
    timezone: str
    starts_on: date
    ends_on: date
    draw_on: date
    entry_rules: dict[str, Any]
    prizes: list[PublicPrize]
    one_prize_per_member: bool
    seed_hash: str | None
    seed: str | None = Field(default=None, description="Revealed once the draw has run")
    entries_hash: str | None = None
    entries_count: int | None = None
    total_weight: int | None = None
    entries: list[PublicEntry] | None = None
    winners: list[PublicWinner] = Field(default_factory=list)


def slot_ranks(prizes: Sequence[PublicPrize]) -> list[int]:
    """The rank of each slot, slot 1 first."""
    return [p.rank for p in sorted(prizes, key=lambda p: p.rank) for _ in range(p.count)]


@dataclass
class Verification:
    """What ``kopilka draw verify`` found; ``None`` for a check the data cannot make yet."""

    seed_matches: bool | None = None
    entries_hash_matches: bool | None = None
    winners_match: bool | None = None
    winners: list[PublicWinner] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        checks = (self.seed_matches, self.entries_hash_matches, self.winners_match)
        return not self.problems and all(c is True for c in checks)


def _is_hex(text: str, length: int) -> bool:
    try:
        return len(text) == length and len(bytes.fromhex(text)) * 2 == length
    except ValueError:
        return False


def verify(publication: Publication) -> Verification:
    """Re-run a published draw: the seed against its commitment, the entries against their
    hash, the winners against the pick."""
    found = Verification()
    if publication.algorithm != ALGORITHM:
        found.problems.append(f"unknown algorithm {publication.algorithm!r}")
        return found
    if publication.seed is None or publication.seed_hash is None:
        found.problems.append("the seed is not revealed yet: the draw has not run")
    elif not _is_hex(publication.seed, 64):
        found.problems.append("the seed is not 64 hex digits")
        found.seed_matches = False
    else:
        found.seed_matches = hmac.compare_digest(
            seed_hash(publication.seed), publication.seed_hash.lower()
        )
    if publication.entries is None or publication.entries_hash is None:
        found.problems.append("the entries are not frozen yet")
        return found
    entries = [Entry(e.entry, e.member, e.weight) for e in publication.entries]
    if [e.number for e in entries] != list(range(1, len(entries) + 1)):
        found.problems.append("the entries are not numbered 1, 2, ... in order")
    found.entries_hash_matches = entries_hash(entries) == publication.entries_hash.lower()
    if publication.entries_count is not None and publication.entries_count != len(entries):
        found.problems.append(
            f"{len(entries)} entries listed, {publication.entries_count} announced"
        )
    if found.seed_matches is None or publication.seed is None or not _is_hex(publication.seed, 64):
        return found
    ranks = slot_ranks(publication.prizes)
    picks = pick_winners(
        publication.seed,
        entries,
        len(ranks),
        one_per_member=publication.one_prize_per_member,
    )
    found.winners = [
        PublicWinner(slot=p.slot, rank=ranks[p.slot - 1], entry=p.entry, member=p.member)
        for p in picks
    ]
    found.winners_match = found.winners == sorted(publication.winners, key=lambda w: w.slot)
    return found
