"""The ``coupons`` section of a program document: how the program treats coupons."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# The till accepts at most this many codes per receipt (the request's own limit).
MAX_CODES_PER_RECEIPT = 20


class CouponSettings(BaseModel):
    """``coupons: {restore_on_refund: true, max_per_receipt: 3}``.

    The program a coupon joins (its own ``program``, else the first open program in force)
    decides: whether a fully refunded receipt gives its coupons back, how many coupons one
    receipt may carry, and where coupons stand among the program's rules.
    """

    model_config = ConfigDict(extra="forbid")

    restore_on_refund: bool = Field(
        default=False, description="a fully refunded receipt gives its coupons' uses back"
    )
    max_per_receipt: int = Field(
        default=5,
        ge=1,
        le=MAX_CODES_PER_RECEIPT,
        description="coupons accepted on one receipt; the rest are rejected",
    )
    priority: int = Field(
        default=1000,
        ge=0,
        le=1_000_000,
        description="the priority of coupon rules among the program's (0 first): by default "
        "after the program's own promotions, so a coupon discounts what is left",
    )
