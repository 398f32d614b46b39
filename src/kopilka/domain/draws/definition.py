"""What a prize draw is, as the marketing team writes it: the entry window (tenant-local
dates), the entry rules, the prizes and the draw date.

Pydantic checks each field (types, bounds, unknown keys); :func:`check_definition` checks
what spans fields (the dates' order, what each prize kind needs, ranks used once).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from kopilka.domain.errors import FieldError
from kopilka.domain.iso_text import IsoDayText

# [0-9], not \d: pydantic's regex \d also matches other scripts' digits.
CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MAX_SLOTS = 1000  # prizes (winners) in one draw
MAX_PRIZE_POINTS = 10**9
MAX_MIN_RECEIPT = 10**12  # minor units
MAX_WINDOW_DAYS = 400
EARLIEST_DAY = date(2000, 1, 1)
LATEST_DAY = date(2199, 12, 31)

Code = Annotated[str, StringConstraints(pattern=CODE_PATTERN)]
ShortCode = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Channel = Literal["store", "online", "app"]


def _sane_day(value: date) -> date:
    if not EARLIEST_DAY <= value <= LATEST_DAY:
        raise ValueError("Use a date between 2000 and 2199.")
    return value


Day = Annotated[date, IsoDayText, AfterValidator(_sane_day)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LocalText(_Strict):
    """Text a member sees, in both languages."""

    ru: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    en: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class LocalLongText(_Strict):
    ru: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    en: Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class EntryRules(_Strict):
    """Which receipts make entries, and how many each makes."""

    min_receipt: int = Field(
        default=0,
        ge=0,
        le=MAX_MIN_RECEIPT,
        strict=True,
        description="Minor units paid in money (after discounts, points and refunds), at least",
    )
    per_receipt: int = Field(default=1, ge=1, le=1000, strict=True)
    multiplier_by_tier: dict[ShortCode, Annotated[int, Field(ge=1, le=100, strict=True)]] = Field(
        default_factory=dict, max_length=20
    )
    outlets: list[ShortCode] | None = Field(
        default=None, min_length=1, max_length=500, description="Outlet codes; all when absent"
    )
    channels: list[Channel] | None = Field(default=None, min_length=1, max_length=3)


class PrizeKind(StrEnum):
    POINTS = "points"  # credited as a bonus
    REWARD = "reward"  # a reward order from the catalogue (see docs/draws.md)


class Prize(_Strict):
    """``count`` prizes of one ``rank`` (1 is the first prize)."""

    rank: int = Field(ge=1, le=MAX_SLOTS, strict=True)
    count: int = Field(default=1, ge=1, le=MAX_SLOTS, strict=True)
    kind: PrizeKind
    points: int | None = Field(default=None, ge=1, le=MAX_PRIZE_POINTS, strict=True)
    reward_id: uuid.UUID | None = None
    name: LocalText | None = Field(
        default=None, description="How the prize is called; default from points or reward"
    )


class DrawDefinition(_Strict):
    code: Code
    name: LocalText
    description: LocalLongText | None = None
    starts_on: Day = Field(description="First day of the entry window, tenant-local")
    ends_on: Day = Field(description="Last day of the entry window, tenant-local, inclusive")
    draw_on: Day = Field(description="The draw's day, tenant-local; after ends_on")
    entry_rules: EntryRules = Field(default_factory=EntryRules)
    prizes: list[Prize] = Field(min_length=1, max_length=100)
    one_prize_per_member: bool = True


@dataclass(frozen=True)
class Slot:
    """One winner's place: slots are numbered 1.. in rank order."""

    slot: int
    rank: int
    prize: Prize


def check_definition(definition: DrawDefinition) -> list[FieldError]:
    """Problems that span fields, each with its path into the definition."""
    errors: list[FieldError] = []
    if definition.ends_on < definition.starts_on:
        errors.append(
            FieldError(("ends_on",), "The window ends before it starts.", "invalid_window")
        )
    elif (definition.ends_on - definition.starts_on).days >= MAX_WINDOW_DAYS:
        errors.append(
            FieldError(
                ("ends_on",),
                f"An entry window is at most {MAX_WINDOW_DAYS} days.",
                "window_too_long",
            )
        )
    if definition.draw_on <= definition.ends_on:
        errors.append(
            FieldError(
                ("draw_on",),
                "The draw takes place after the entry window's last day.",
                "draw_before_window_end",
            )
        )
    seen: set[int] = set()
    for i, prize in enumerate(definition.prizes):
        path: tuple[str | int, ...] = ("prizes", i)
        if prize.rank in seen:
            errors.append(
                FieldError((*path, "rank"), f"Rank {prize.rank} is used twice.", "duplicate_rank")
            )
        seen.add(prize.rank)
        if prize.kind is PrizeKind.POINTS:
            if prize.points is None:
                errors.append(
                    FieldError((*path, "points"), "A points prize needs points.", "points_required")
                )
            if prize.reward_id is not None:
                errors.append(
                    FieldError(
                        (*path, "reward_id"), "Only for a reward prize.", "not_for_points_prize"
                    )
                )
        else:
            if prize.reward_id is None:
                errors.append(
                    FieldError(
                        (*path, "reward_id"), "A reward prize names its reward.", "reward_required"
                    )
                )
            if prize.points is not None:
                errors.append(
                    FieldError(
                        (*path, "points"),
                        "A reward prize's value is the reward's price.",
                        "not_for_reward_prize",
                    )
                )
    if sum(p.count for p in definition.prizes) > MAX_SLOTS:
        errors.append(
            FieldError(("prizes",), f"At most {MAX_SLOTS} prizes in one draw.", "too_many_prizes")
        )
    return errors


def slots(prizes: list[Prize]) -> list[Slot]:
    """Every winner's place: by rank, then ``count`` places of each rank."""
    found: list[Slot] = []
    for prize in sorted(prizes, key=lambda p: p.rank):
        for _ in range(prize.count):
            found.append(Slot(len(found) + 1, prize.rank, prize))
    return found
