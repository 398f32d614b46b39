"""The ``clubs`` section of a program document: closed clubs and paid memberships.

```yaml
clubs:
  - code: vip
    name: {ru: VIP-клуб, en: VIP club}
    join: invitation            # invitation | approval | condition | open
    fee: {amount: 29900, period: month, grace_days: 7}
    welcome_points: 500
  - code: gold-lounge
    name: Gold lounge
    join: condition
    condition: {tiers: [gold], segments: [vip]}
```
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

CLUB_CODE = r"^[a-z0-9][a-z0-9_-]{0,63}$"
JoinMode = Literal["invitation", "approval", "condition", "open"]
FeePeriod = Literal["month", "year"]
MAX_FEE = 10**10  # a hundred million roubles a period is surely a typo
Label = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _name_object(value: Any) -> Any:
    """One string names the club in both languages; an object may give only one of them."""
    if isinstance(value, str):
        return {"ru": value, "en": value}
    if isinstance(value, dict) and value and set(value) <= {"ru", "en"}:
        ru, en = value.get("ru") or value.get("en"), value.get("en") or value.get("ru")
        return {"ru": ru, "en": en}
    return value


class ClubName(_Strict):
    ru: str = Field(min_length=1, max_length=200)
    en: str = Field(min_length=1, max_length=200)


class ClubCondition(_Strict):
    """Who belongs to a ``condition`` club: a member of any listed tier or segment."""

    tiers: list[Label] = Field(default_factory=list, max_length=50)
    segments: list[Label] = Field(default_factory=list, max_length=200)

    @model_validator(mode="after")
    def _not_empty(self) -> ClubCondition:
        if not self.tiers and not self.segments:
            raise PydanticCustomError("club_condition_empty", "Name at least one tier or segment.")
        return self


class ClubFee(_Strict):
    """A paid membership: ``amount`` minor units per ``period``; after an unpaid period the
    benefits last ``grace_days`` more days, then the membership lapses."""

    amount: int = Field(ge=1, le=MAX_FEE, strict=True, description="minor units per period")
    period: FeePeriod
    grace_days: int = Field(default=7, ge=0, le=90, strict=True)


class ClubSettings(_Strict):
    code: str = Field(pattern=CLUB_CODE, description="lower-case letters, digits, '-' or '_'")
    name: Annotated[ClubName, BeforeValidator(_name_object)]
    join: JoinMode
    # Required for ``join: condition`` and refused otherwise (checked below, with its path).
    condition: ClubCondition | None = Field(default=None, validate_default=True)
    fee: ClubFee | None = None
    welcome_points: int = Field(default=0, ge=0, le=1_000_000, strict=True)

    @field_validator("condition", mode="after")
    @classmethod
    def _condition_fits_join(
        cls, value: ClubCondition | None, info: ValidationInfo
    ) -> ClubCondition | None:
        join = info.data.get("join")  # absent when ``join`` itself was invalid
        if join == "condition" and value is None:
            raise PydanticCustomError(
                "club_condition_required", "A club joined by condition needs a condition."
            )
        if join is not None and join != "condition" and value is not None:
            raise PydanticCustomError(
                "club_condition_unused", "Only a club with join: condition takes a condition."
            )
        return value

    @property
    def names(self) -> dict[str, str]:
        return {"ru": self.name.ru, "en": self.name.en}
