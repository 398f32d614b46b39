"""The ``referral`` section of a program document."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

# The same ceiling as a manual accrual (services.ledger.MAX_POINTS), kept here so the domain
# does not import a service.
MAX_REWARD_POINTS = 10**12
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Label(_Strict):
    """What the member's history calls the bonus, in both languages."""

    ru: Text
    en: Text


class Reward(_Strict):
    """Points for one side of a referral."""

    points: int = Field(ge=1, le=MAX_REWARD_POINTS, strict=True)
    label: Label | None = None


class ReferralSettings(_Strict):
    """Who gets what for bringing a friend, when, and the fraud limits.

    ``referrer`` is the member whose code was used, ``referee`` the friend who enrolled
    with it; either may be left out, not both.
    """

    referrer: Reward | None = None
    referee: Reward | None = None
    trigger: Literal["enrolment", "first_purchase"] = "first_purchase"
    # Minor units the friend's first purchase must be paid in money (after discounts and
    # points); 0: any purchase. Only with trigger first_purchase.
    min_purchase: int = Field(default=0, ge=0, le=10**11, strict=True)
    # Days the rewards stay pending (not spendable): the return window of the first purchase.
    pending_days: int = Field(default=14, ge=0, le=365, strict=True)
    # Referrals a member may bring per calendar month (tenant time zone); null: no cap.
    monthly_cap: int | None = Field(default=10, ge=1, le=100_000, strict=True)
    # The share link; "{code}" is replaced by the member's code.
    share_url: (
        Annotated[str, StringConstraints(max_length=500, pattern=r"^https?://\S+$")] | None
    ) = None
    code_length: int = Field(default=8, ge=6, le=16, strict=True)

    @field_validator("min_purchase")
    @classmethod
    def _only_for_purchases(cls, value: int, info: ValidationInfo) -> int:
        # ``trigger`` is declared first, so it is validated (or missing) by now.
        if value and info.data.get("trigger", "first_purchase") != "first_purchase":
            raise ValueError("min_purchase applies only with trigger first_purchase.")
        return value

    @field_validator("share_url")
    @classmethod
    def _has_code(cls, value: str | None) -> str | None:
        if value is not None and value.count("{code}") != 1:
            raise ValueError("share_url must contain {code} exactly once.")
        return value

    @model_validator(mode="after")
    def _someone_rewarded(self) -> ReferralSettings:
        if self.referrer is None and self.referee is None:
            raise ValueError("Give a reward to the referrer, the referee, or both.")
        return self
