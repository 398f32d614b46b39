"""What a coupon carries: its benefit (any effect of the rules engine), a minimum basket, a
product scope, whether it combines with other coupons, where it is valid, and when.

The same terms describe a public promo code, a batch of single-use codes and a personal
coupon; they are checked with the rules engine's own compilers, so a coupon's benefit and
scope mean exactly what they mean in a program rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from kopilka.domain.errors import ErrorCollector
from kopilka.domain.iso_text import IsoMomentText
from kopilka.domain.rules.conditions import ConditionCompiler, LinePredicate
from kopilka.domain.rules.document import POINTS_EFFECTS, Effect, _EffectParser

MAX_MONEY = 10**13  # minor units: far above any basket, far within 64-bit amounts
MAX_VALID_DAYS = 3650
PROGRAM_CODE = r"^[a-z0-9][a-z0-9_-]{0,63}$"
BATCH_CODE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)

Channel = Literal["store", "online", "app"]
OutletCode = Annotated[str, StringConstraints(min_length=1, max_length=64)]


def _sane_moment(value: datetime) -> datetime:
    """Moments between 1900 and 2200 (a far-off ISO date cannot even convert to UTC)."""
    try:
        utc = value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("The moment is out of range.") from exc
    if not EARLIEST <= utc < LATEST:
        raise ValueError("Use a moment between 1900 and 2200.")
    return utc


Moment = Annotated[AwareDatetime, IsoMomentText, AfterValidator(_sane_moment)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CouponName(_Strict):
    ru: str | None = Field(default=None, min_length=1, max_length=200)
    en: str | None = Field(default=None, min_length=1, max_length=200)


class CouponTerms(_Strict):
    """The terms every kind of coupon shares."""

    benefit: dict[str, Any] = Field(
        min_length=1,
        max_length=1,
        description="one effect of the rules engine, e.g. {'discount_percent': 10}",
    )
    name: CouponName | None = Field(
        default=None, description="shown at the till and in the member's coupons"
    )
    min_basket: int = Field(
        default=0, ge=0, le=MAX_MONEY, strict=True, description="minor units, of the scope lines"
    )
    scope: dict[str, Any] | None = Field(
        default=None,
        min_length=1,
        max_length=1,
        description="the lines it applies to: a line condition, as in a rule's lines",
    )
    combinable: bool = Field(default=True, strict=True, description="with other coupons")
    outlets: list[OutletCode] | None = Field(
        default=None, min_length=1, max_length=1000, description="outlet codes; None: all"
    )
    channels: list[Channel] | None = Field(
        default=None, min_length=1, max_length=3, description="None: every channel"
    )
    program: Annotated[str, StringConstraints(pattern=PROGRAM_CODE)] | None = Field(
        default=None, description="the program whose rules it joins; None: the first in force"
    )

    def check(self, errors: ErrorCollector) -> None:
        """Add the benefit's and the scope's problems, with their paths, to ``errors``."""
        _EffectParser(errors).parse(self.benefit, ("benefit",))
        if self.scope is not None:
            ConditionCompiler(errors).line(self.scope, ("scope",))

    def stored(self) -> dict[str, Any]:
        """The terms as kept with the coupon (benefit and minimum basket have columns)."""
        return Terms.of(self).to_json()


class Validity(_Strict):
    """When: ``valid_from`` (default: now) until ``valid_until``, or for ``valid_days``."""

    valid_from: Moment | None = None
    valid_until: Moment | None = None
    valid_days: int | None = Field(default=None, ge=1, le=MAX_VALID_DAYS, strict=True)

    def window(self, now: datetime, errors: ErrorCollector) -> tuple[datetime, datetime | None]:
        start = self.valid_from or now
        end = self.valid_until
        if self.valid_days is not None:
            if end is not None:
                errors.add(
                    ("valid_days",),
                    "Give valid_until or valid_days, not both.",
                    "validity_ambiguous",
                )
            end = start + timedelta(days=self.valid_days)
        if end is not None and end <= start:
            errors.add(
                ("valid_until",), "valid_until must be after valid_from.", "invalid_validity"
            )
        return start, end


@dataclass(frozen=True)
class Terms:
    """A coupon's terms as the till uses them (from the columns and the stored terms)."""

    benefit: dict[str, Any]
    min_basket: int = 0
    name: dict[str, str] | None = None
    scope: dict[str, Any] | None = None
    combinable: bool = True
    outlets: tuple[str, ...] | None = None
    channels: tuple[str, ...] | None = None
    program: str | None = None

    @classmethod
    def of(cls, model: CouponTerms) -> Terms:
        name = None
        if model.name is not None and (model.name.ru or model.name.en):
            ru = model.name.ru or model.name.en or ""
            name = {"ru": ru, "en": model.name.en or ru}
        return cls(
            benefit=dict(model.benefit),
            min_basket=model.min_basket,
            name=name,
            scope=model.scope,
            combinable=model.combinable,
            outlets=tuple(model.outlets) if model.outlets else None,
            channels=tuple(model.channels) if model.channels else None,
            program=model.program,
        )

    @classmethod
    def from_row(
        cls, benefit: dict[str, Any], min_basket: int, stored: dict[str, Any] | None
    ) -> Terms:
        """From the columns and the stored terms (None for coupons issued by rules, stamp
        cards, rewards: every default applies)."""
        stored = stored or {}
        outlets, channels = stored.get("outlets"), stored.get("channels")
        return cls(
            benefit=dict(benefit),
            min_basket=int(min_basket),
            name=stored.get("name"),
            scope=stored.get("scope"),
            combinable=bool(stored.get("combinable", True)),
            outlets=tuple(outlets) if outlets else None,
            channels=tuple(channels) if channels else None,
            program=stored.get("program"),
        )

    def to_json(self) -> dict[str, Any]:
        """The stored terms (benefit and minimum basket live in their own columns)."""
        return {
            "name": self.name,
            "scope": self.scope,
            "combinable": self.combinable,
            "outlets": list(self.outlets) if self.outlets else None,
            "channels": list(self.channels) if self.channels else None,
            "program": self.program,
        }

    @property
    def benefit_kind(self) -> str:
        return next(iter(self.benefit), "")

    @property
    def gives_points(self) -> bool:
        return self.benefit_kind in POINTS_EFFECTS

    def effect(self) -> Effect:
        """The benefit, compiled; raises ValidationFailed if it no longer compiles."""
        errors = ErrorCollector()
        effect = _EffectParser(errors).parse(self.benefit, ("benefit",))
        errors.raise_if_any("The coupon's benefit is not valid.")
        assert effect is not None
        return effect

    def scope_predicate(self) -> tuple[LinePredicate, frozenset[str] | None]:
        if self.scope is None:
            return (lambda _line: True), None
        errors = ErrorCollector()
        predicate, keys = ConditionCompiler(errors).line(self.scope, ("scope",))
        errors.raise_if_any("The coupon's scope is not valid.")
        return predicate, keys


def check_terms(
    model: CouponTerms, validity: Validity, now: datetime
) -> tuple[datetime, datetime | None]:
    """Every problem of ``model`` and ``validity`` at once (ValidationFailed), or the window."""
    errors = ErrorCollector()
    model.check(errors)
    window = validity.window(now, errors)
    errors.raise_if_any("The coupon's terms are not valid.")
    return window


CodeText = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class PromoCodeInput(CouponTerms, Validity):
    """A public promo code, e.g. SPRING25: anyone may use it, within its limits."""

    code: CodeText = Field(description="the code customers type; compared case-insensitively")
    max_uses: int | None = Field(
        default=None, ge=1, le=1_000_000_000, strict=True, description="in total; None: no limit"
    )
    per_member: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        strict=True,
        description="uses per member; a code with a limit needs an identified member",
    )


class BatchInput(CouponTerms, Validity):
    """A batch of unique single-use codes, generated at random."""

    code: Annotated[str, StringConstraints(pattern=BATCH_CODE.pattern)] = Field(
        description="the batch's name, its natural key: the same request again replays"
    )
    count: int = Field(ge=1, le=1_000_000, strict=True)
    length: int = Field(default=10, ge=4, le=32, strict=True, description="random characters")
    prefix: Annotated[str, StringConstraints(max_length=16)] = Field(
        default="", description="put before the random part, e.g. 'SPR-'"
    )
    alphabet: Annotated[str, StringConstraints(min_length=2, max_length=36)] | None = Field(
        default=None, description="the characters to draw from; default without 0/O/1/I/L"
    )


class PersonalCouponInput(CouponTerms, Validity):
    """A coupon for one member, with a generated code."""

    uses: int = Field(default=1, ge=1, le=1000, strict=True)
