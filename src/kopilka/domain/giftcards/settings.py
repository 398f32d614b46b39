"""The tenant's gift card policy: validity, where a PIN is needed, amounts, rate limits.

Gift cards are a means of payment, not a loyalty rule, so the policy is the tenant's own
document (``PUT /v1/gift-cards/policy``), not a section of a versioned program. A tenant
that never set one gets the defaults below.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kopilka.domain.ledger.expiry import CalendarExpiry, NeverExpires, RollingExpiry

# 100 million roubles in kopecks: far beyond any gift card, far within 64-bit amounts.
MAX_AMOUNT = 10**10

Amount = Annotated[int, Field(ge=1, le=MAX_AMOUNT, strict=True)]
Validity = Annotated[NeverExpires | RollingExpiry | CalendarExpiry, Field(discriminator="kind")]


class EnquiryLimits(BaseModel):
    """Brute-force defence: fixed windows counted in the database (so every process of the
    API shares them). Balance enquiries count per card and per API key; wrong PINs count
    per card, wherever they are tried (enquiries and the till)."""

    model_config = ConfigDict(extra="forbid")
    window_seconds: int = Field(default=600, ge=10, le=86_400, strict=True)
    per_card: int = Field(default=10, ge=1, le=100_000, strict=True)
    per_key: int = Field(default=120, ge=1, le=1_000_000, strict=True)
    wrong_pins_per_card: int = Field(default=5, ge=1, le=1000, strict=True)


class GiftCardPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # How long the value lasts, counted from activation in the tenant's time zone.
    validity: Validity = Field(default_factory=lambda: RollingExpiry(days=365))
    # "online": a PIN is needed on the online and app channels; "always": at the till too.
    pin_required: Literal["online", "always"] = "online"
    min_amount: Amount = 100
    max_amount: Amount = 10_000_000
    # Generated numbers start with this (16 digits in all, the last a Luhn check digit).
    number_prefix: str = Field(default="9", pattern=r"^[0-9]{1,6}$")
    enquiry_limits: EnquiryLimits = Field(default_factory=EnquiryLimits)

    @model_validator(mode="after")
    def _amounts_in_order(self) -> Self:
        if self.min_amount > self.max_amount:
            raise ValueError("min_amount must not exceed max_amount")
        return self

    def pin_needed(self, channel: str) -> bool:
        """Is the PIN required on ``channel`` (store, online, app)?"""
        return channel != "store" or self.pin_required == "always"
