"""The ``family``, ``transfers`` and ``donations`` sections of a program document.

```yaml
family:                      # optional: without it families work with these defaults
  max_members: 5             # the owner included
  leave_split: contributed   # none | contributed | equal_share
  invitation_days: 7
  new_members_can_spend: true
transfers:                   # without this section members cannot transfer points
  min_points: 10
  max_points_per_transfer: 5000
  max_points_per_month: 20000
  max_transfers_per_month: 10
donations:                   # without this section there is nobody to donate to
  min_points: 1
  charities:
    - code: hospice
      name: {ru: Фонд «Вера», en: Vera Hospice Fund}
```
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

CHARITY_CODE = r"^[a-z0-9][a-z0-9_-]{0,63}$"
# The same ceiling as a manual accrual (services.ledger.MAX_POINTS); the domain does not
# import a service.
MAX_POINTS = 10**12
LeaveSplit = Literal["none", "contributed", "equal_share"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FamilySettings(_Strict):
    """Pooled balances: how big a family may be and what a member takes on leaving."""

    enabled: bool = True
    max_members: int = Field(default=5, ge=2, le=50, strict=True, description="owner included")
    leave_split: LeaveSplit = "contributed"
    invitation_days: int = Field(default=7, ge=1, le=90, strict=True)
    new_members_can_spend: bool = True


class TransferSettings(_Strict):
    """Points moved from one member to another; the section's presence allows it."""

    enabled: bool = True
    min_points: int = Field(default=1, ge=1, le=MAX_POINTS, strict=True)
    max_points_per_transfer: int | None = Field(default=None, ge=1, le=MAX_POINTS, strict=True)
    # Per sender and calendar month in the tenant's time zone; null: no cap.
    max_points_per_month: int | None = Field(default=None, ge=1, le=MAX_POINTS, strict=True)
    max_transfers_per_month: int | None = Field(default=None, ge=1, le=100_000, strict=True)

    @field_validator("max_points_per_transfer")
    @classmethod
    def _not_below_minimum(cls, value: int | None, info: ValidationInfo) -> int | None:
        low = info.data.get("min_points")  # absent when min_points itself was invalid
        if value is not None and low is not None and value < low:
            raise ValueError("max_points_per_transfer must not be below min_points.")
        return value

    @field_validator("max_points_per_month")
    @classmethod
    def _not_below_one_transfer(cls, value: int | None, info: ValidationInfo) -> int | None:
        low = info.data.get("min_points")
        if value is not None and low is not None and value < low:
            raise ValueError("max_points_per_month must not be below min_points.")
        return value


def _name_object(value: Any) -> Any:
    """One string names the charity in both languages; an object may give only one."""
    if isinstance(value, str):
        return {"ru": value, "en": value}
    if isinstance(value, dict) and value and set(value) <= {"ru", "en"}:
        return {"ru": value.get("ru") or value.get("en"), "en": value.get("en") or value.get("ru")}
    return value


class CharityName(_Strict):
    ru: str = Field(min_length=1, max_length=200)
    en: str = Field(min_length=1, max_length=200)


class Charity(_Strict):
    code: str = Field(pattern=CHARITY_CODE, description="lower-case letters, digits, '-' or '_'")
    name: Annotated[CharityName, BeforeValidator(_name_object)]

    @property
    def names(self) -> dict[str, str]:
        return {"ru": self.name.ru, "en": self.name.en}


class DonationSettings(_Strict):
    """The charities the tenant collects points for."""

    enabled: bool = True
    min_points: int = Field(default=1, ge=1, le=MAX_POINTS, strict=True)
    charities: list[Charity] = Field(min_length=1, max_length=100)

    @field_validator("charities")
    @classmethod
    def _codes_unique(cls, value: list[Charity]) -> list[Charity]:
        seen: set[str] = set()
        for charity in value:
            if charity.code in seen:
                raise ValueError(f"Charity code {charity.code!r} is used twice.")
            seen.add(charity.code)
        return value

    def charity(self, code: str) -> Charity | None:
        return next((c for c in self.charities if c.code == code), None)
