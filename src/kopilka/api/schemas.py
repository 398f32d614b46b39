"""Request bodies: strict (unknown fields refused), bounded numbers, clear types."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

from kopilka.domain.iso_text import IsoMomentText
from kopilka.services.ledger import MAX_POINTS

Points = Annotated[int, Field(ge=1, le=MAX_POINTS, strict=True)]
SignedPoints = Annotated[int, Field(ge=-MAX_POINTS, le=MAX_POINTS, strict=True)]
# A JSON true or false only: lax validation also took "yes", "0", 1 and 1.0 for a flag.
Flag = Annotated[bool, Field(strict=True)]
ShortText = Annotated[str, StringConstraints(max_length=500)]
# [0-9], not \d: pydantic's regex \d also matches other scripts' digits (e.g. "٢").
CardNumber = Annotated[str, StringConstraints(min_length=8, max_length=32, pattern=r"^[0-9]+$")]


EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def _sane_moment(value: datetime) -> datetime:
    """Refuse moments outside 1900-2200: 9999-12-31T23:59:59-05:00 is a valid ISO string
    but cannot even be converted to UTC (it made the services fail with a 500)."""
    try:
        utc = value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("The moment is out of range.") from exc
    if not EARLIEST <= utc < LATEST:
        raise ValueError("Use a moment between 1900 and 2200.")
    return value


Moment = Annotated[AwareDatetime, IsoMomentText, AfterValidator(_sane_moment)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConsentGiven(Strict):
    granted: Flag
    at: Moment | None = None


ConsentKind = Literal[
    "program_rules", "marketing_sms", "marketing_email", "marketing_messengers", "personal_data"
]


class MemberFields(Strict):
    phone: Annotated[str, StringConstraints(max_length=32)] | None = None
    email: Annotated[str, StringConstraints(max_length=320)] | None = None
    name: Annotated[str, StringConstraints(max_length=200)] | None = None
    birthday: Annotated[str, StringConstraints(max_length=10)] | None = Field(
        default=None, description="YYYY-MM-DD, or --MM-DD when the year is not given"
    )
    external_id: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    attributes: dict[Annotated[str, StringConstraints(max_length=64)], Any] | None = Field(
        default=None, max_length=100
    )
    consents: dict[ConsentKind, Flag | ConsentGiven] | None = None


class MemberCreate(MemberFields):
    card: CardNumber | None = Field(
        default=None, description="A pre-printed card to bind at enrolment"
    )
    issue_virtual_card: Flag = True
    referral_code: str | None = Field(
        default=None, min_length=1, max_length=64, description="A referrer's code or link code"
    )
    fingerprints: dict[str, str] | None = Field(
        default=None,
        max_length=10,
        description="Device or identity fingerprints from the till or app (fraud checks)",
    )


class MemberPatch(MemberFields):
    pass


class BlockRequest(Strict):
    reason: ShortText | None = None


class MergeRequest(Strict):
    duplicate_id: uuid.UUID


class CardBind(Strict):
    member_id: uuid.UUID


class CardReplace(Strict):
    new_number: CardNumber | None = None


class CardBatchCreate(Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    first_number: CardNumber | None = None
    count: Annotated[int, Field(ge=1, le=100_000, strict=True)] | None = None
    numbers: list[CardNumber] | None = Field(default=None, max_length=100_000)


class AccrualCreate(Strict):
    points: Points
    reason: ShortText | None = None
    available_at: Moment | None = None
    expires_at: Moment | None = None
    pending_days: Annotated[int, Field(ge=0, le=365, strict=True)] | None = None
    currency: Annotated[str, StringConstraints(max_length=16)] | None = None


class RedemptionCreate(Strict):
    points: Points
    reason: ShortText | None = None
    reference: ShortText | None = None
    currency: Annotated[str, StringConstraints(max_length=16)] | None = None


class AdjustmentCreate(Strict):
    points: SignedPoints
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    available_at: Moment | None = None
    expires_at: Moment | None = None
    currency: Annotated[str, StringConstraints(max_length=16)] | None = None


class HoldCreate(Strict):
    points: Points
    ttl_seconds: Annotated[int, Field(ge=1, le=7 * 86400, strict=True)] | None = None
    reference: ShortText | None = None
    currency: Annotated[str, StringConstraints(max_length=16)] | None = None


class HoldCapture(Strict):
    points: Points | None = None


class ReversalCreate(Strict):
    points: Points | None = None
    reason: ShortText | None = None
    on_shortfall: Literal["fail", "debt", "cap"] = "fail"


class OutletCreate(Strict):
    code: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    name: Annotated[str, StringConstraints(max_length=200)] | None = None
    timezone: Annotated[str, StringConstraints(max_length=64)] | None = None
    region: Annotated[str, StringConstraints(max_length=100)] | None = None
    tags: list[Annotated[str, StringConstraints(max_length=64)]] | None = Field(
        default=None, max_length=50
    )


class ApiKeyCreate(Strict):
    role: Literal["admin", "pos", "readonly"]
    outlet: Annotated[str, StringConstraints(max_length=64)] | None = None
    name: Annotated[str, StringConstraints(max_length=200)] | None = None


class TenantPatch(Strict):
    locale: Literal["ru", "en"] | None = None
    timezone: Annotated[str, StringConstraints(max_length=64)] | None = None
    pending_days: Annotated[int, Field(ge=0, le=365, strict=True)] | None = None
    expiry_policy: dict[str, Any] | None = None
    allow_debt: Flag | None = None
    backdate_days: Annotated[int, Field(ge=0, le=3650, strict=True)] | None = None
    hold_ttl_seconds: Annotated[int, Field(ge=10, le=7 * 86400, strict=True)] | None = None
    qr_window_seconds: Annotated[int, Field(ge=10, le=3600, strict=True)] | None = None
    card_scheme: Literal["ean13", "luhn"] | None = None
    card_prefix: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,6}$")] | None = None


# ---- responses ---------------------------------------------------------------------------
class OutletOut(BaseModel):
    id: uuid.UUID
    code: str
    name: str
    timezone: str
    region: str | None
    tags: list[str]
    created_at: datetime


class ApiKeyOut(BaseModel):
    id: uuid.UUID
    key_id: str
    role: str
    outlet_id: uuid.UUID | None
    name: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="Shown once; store it now.")


class TenantOut(BaseModel):
    id: uuid.UUID
    name: str
    currency: str
    timezone: str
    locale: str
    phone_region: str
    points_currency: str
    card_scheme: str
    card_prefix: str
    qr_window_seconds: int
    hold_ttl_seconds: int
    pending_days: int
    expiry_policy: dict[str, Any]
    allow_debt: bool
    backdate_days: int = Field(description="how many days back a till may date a receipt")
    created_at: datetime
