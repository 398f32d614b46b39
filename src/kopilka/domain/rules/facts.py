"""What the evaluator looks at: receipt lines and the context of the purchase."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import cached_property
from typing import Any


@dataclass
class Line:
    """One receipt line, enriched from the catalogue. Money in minor units."""

    index: int
    sku: str
    qty: Decimal
    price: int
    amount: int
    name: str | None = None
    category: tuple[str, ...] = ()  # the path, e.g. ("drinks", "coffee")
    brand: str | None = None
    tags: frozenset[str] = frozenset()
    attributes: dict[str, Any] = field(default_factory=dict)
    no_discount: bool = False
    no_points: bool = False
    min_price: int | None = None  # per unit: no discount may take the price below it

    def in_category(self, path: tuple[str, ...]) -> bool:
        return self.category[: len(path)] == path

    @cached_property
    def category_prefixes(self) -> frozenset[tuple[str, ...]]:
        """The line's category and every category above it: one set look-up answers
        "is it in category X?" for every rule that asks (``category`` is not changed
        after the line is made)."""
        return frozenset(self.category[:depth] for depth in range(1, len(self.category) + 1))


@dataclass(frozen=True)
class MemberFacts:
    id: str
    tier: str | None = None
    segments: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()
    attributes: dict[str, Any] = field(default_factory=dict)
    purchases_before: int = 0  # confirmed purchases before this one
    birthday: tuple[int, int] | None = None  # (month, day)
    balance: int = 0  # spendable points in the program's currency
    clubs: frozenset[str] = frozenset()
    # False: ``purchases_before`` was not counted (no rule being evaluated needs it; the
    # till counts only then). Conditions that read the count refuse such facts.
    purchases_known: bool = True


@dataclass(frozen=True)
class Context:
    occurred_at: datetime  # aware
    local_time: datetime  # in the outlet's time zone
    tenant_today: date  # in the tenant's time zone (birthdays)
    outlet_code: str | None = None
    outlet_tags: frozenset[str] = frozenset()
    region: str | None = None
    channel: str = "store"
    payment_method: str | None = None
    coupons: frozenset[str] = frozenset()
    member: MemberFacts | None = None
