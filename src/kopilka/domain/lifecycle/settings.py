"""The life-cycle sections of a program document: welcome, birthday, anniversary, win-back,
and the declared member events with their earning rules.

Every reward has the same shape: ``points`` and/or a ``coupon``, an optional ``label`` that
names it in the member's history (ru and en), and an optional ``expires_in_days`` for its
points (else the program's expiry policy applies).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

MAX_REWARD_POINTS = 1_000_000_000
EVENT_NAME = r"^[a-z][a-z0-9_]{0,63}$"
PROFILE_FIELDS = ("phone", "email", "birthday", "name")
# An effect a coupon may carry: anything a rule may do at the till, except issuing coupons.
_COUPON_FORBIDDEN = frozenset({"issue_coupon"})

LabelText = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Label(_Strict):
    """What the reward is called in the member's history."""

    ru: LabelText
    en: LabelText

    def as_dict(self) -> dict[str, str]:
        return {"ru": self.ru, "en": self.en}


class CouponReward(_Strict):
    """A personal coupon, in the shape of the ``issue_coupon`` effect."""

    benefit: dict[str, Any]
    valid_days: int = Field(default=30, ge=1, le=3650)
    min_basket: int = Field(default=0, ge=0, le=10**12, description="minor units")

    @field_validator("benefit")
    @classmethod
    def _a_known_effect(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Imported here: the program document imports this module.
        from kopilka.domain.errors import ErrorCollector
        from kopilka.domain.rules.document import _EffectParser

        if len(value) == 1 and next(iter(value)) in _COUPON_FORBIDDEN:
            raise ValueError("A coupon cannot issue another coupon.")
        errors = ErrorCollector()
        _EffectParser(errors).parse(value, ())
        if errors.errors:
            raise ValueError("; ".join(e.message for e in errors.errors))
        return value


class Reward(_Strict):
    """Points and/or a coupon; what every life-cycle reward and event rule gives."""

    points: int = Field(default=0, ge=0, le=MAX_REWARD_POINTS)
    coupon: CouponReward | None = None
    label: Label | None = None
    expires_in_days: int | None = Field(
        default=None,
        ge=1,
        le=3650,
        description="the points expire at the end of the local day this many days after "
        "the award; default: the program's expiry policy",
    )

    @property
    def gives_anything(self) -> bool:
        return self.points > 0 or self.coupon is not None


class _LifecycleReward(Reward):
    @model_validator(mode="after")
    def _gives_something(self) -> _LifecycleReward:
        if not self.gives_anything:
            raise ValueError("A reward needs points (1 or more) or a coupon.")
        return self


class WelcomeSettings(_LifecycleReward):
    """A bonus on enrolment or on the first purchase."""

    on: Literal["enrolment", "first_purchase"] = "enrolment"
    require_complete_profile: list[Literal["phone", "email", "birthday", "name"]] = Field(
        default_factory=list, max_length=4
    )
    # On enrolment with an incomplete profile: the bonus still comes when the profile is
    # completed within this many days of enrolment (later completions earn nothing).
    complete_within_days: int = Field(default=30, ge=1, le=3650)

    @field_validator("require_complete_profile")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("Each field at most once.")
        return value


class _Window(_LifecycleReward):
    # The reward is given on the first job run from ``days_before`` the day until
    # ``days_after`` it: a job that did not run for a few days still gives it.
    days_before: int = Field(default=0, ge=0, le=31)
    days_after: int = Field(default=3, ge=0, le=31)


class BirthdaySettings(_Window):
    """A points (or coupon) bonus once a year around the birthday, given by the jobs run.
    A multiplier or discount around the birthday is a rule with ``birthday_window``."""


class AnniversarySettings(_Window):
    """A reward on each anniversary of registration (the tenant-local enrolment date)."""


class WinBackSettings(_LifecycleReward):
    """A reward for a member with no confirmed purchase for ``inactive_days``."""

    inactive_days: int = Field(ge=1, le=3650)
    # At most one win-back reward per this many days, and one per spell of inactivity.
    period_days: int = Field(default=365, ge=1, le=3650)


class LifecycleSettings(_Strict):
    welcome: WelcomeSettings | None = None
    birthday: BirthdaySettings | None = None
    anniversary: AnniversarySettings | None = None
    win_back: WinBackSettings | None = None


class EventCaps(_Strict):
    """How many times a member is rewarded for the event: per tenant-local day, ISO week
    (from Monday), calendar month, or ever."""

    day: int | None = Field(default=None, ge=1, le=1_000_000)
    week: int | None = Field(default=None, ge=1, le=1_000_000)
    month: int | None = Field(default=None, ge=1, le=1_000_000)
    lifetime: int | None = Field(default=None, ge=1, le=1_000_000)


class EventSettings(Reward):
    """A member event the program accepts, and what it earns (nothing is fine: the event
    is then only recorded)."""

    name: Annotated[str, StringConstraints(pattern=EVENT_NAME)]
    caps: EventCaps = Field(default_factory=EventCaps)
