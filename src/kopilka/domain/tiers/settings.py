"""The ``tiers`` section of a program document: levels, how members qualify for them, and
when and how they lose them.

```yaml
tiers:
  metric: spent                  # spent (money paid) | purchases | points (earned)
  window: {kind: calendar, period: year}   # or {kind: rolling, days: 365}
  levels:
    - {code: silver, name: {ru: Серебро, en: Silver}, threshold: 0}
    - {code: gold, name: {ru: Золото, en: Gold}, threshold: 4000000, keep_threshold: 3000000}
  upgrade_applies_to_crossing_receipt: true
  downgrade: {policy: one_level, grace_days: 30}
  evaluation: {period: month}    # rolling windows only: how often they are judged
```
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

Metric = Literal["spent", "purchases", "points"]
Period = Literal["year", "quarter", "month"]
# Far beyond any real threshold (10 billion roubles in kopecks), far within 64-bit sums.
MAX_AMOUNT = 10**15
LevelCode = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
Amount = Annotated[StrictInt, Field(ge=0, le=MAX_AMOUNT)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _error(loc: tuple[str | int, ...], message: str, value: Any) -> ValidationError:
    """A validation error at ``loc`` below the validated field, so paths stay exact."""
    return ValidationError.from_exception_data(
        "tiers",
        [InitErrorDetails(type=PydanticCustomError("invalid", message), loc=loc, input=value)],
    )


class LevelName(_Strict):
    ru: Text
    en: Text


class TierLevel(_Strict):
    """One level. ``threshold`` reaches it (in kopecks, purchases or points, per the metric);
    ``keep_threshold`` (default: the threshold) keeps it at an evaluation."""

    code: LevelCode
    name: LevelName | None = None
    threshold: Amount
    keep_threshold: Amount | None = None

    @field_validator("name", mode="before")
    @classmethod
    def _one_name(cls, value: Any) -> Any:
        """A plain string names the level in both languages."""
        return {"ru": value, "en": value} if isinstance(value, str) else value

    @property
    def keep(self) -> int:
        return self.threshold if self.keep_threshold is None else self.keep_threshold

    @property
    def names(self) -> dict[str, str]:
        if self.name is not None:
            return {"ru": self.name.ru, "en": self.name.en}
        text = self.code.replace("_", " ").replace("-", " ").title()
        return {"ru": text, "en": text}


class TierWindow(_Strict):
    """What counts: the last ``days`` days, today included (``rolling``), or the current
    calendar ``period`` in the tenant's time zone (``calendar``)."""

    kind: Literal["rolling", "calendar"] = "calendar"
    days: int | None = Field(default=None, ge=1, le=3660)
    period: Period | None = None

    @model_validator(mode="after")
    def _fields_of_the_kind(self) -> TierWindow:
        if self.kind == "rolling":
            if self.period is not None:
                raise _error(("period",), "A rolling window has days, not a period.", self.period)
            if self.days is None:
                self.days = 365
        else:
            if self.days is not None:
                raise _error(("days",), "A calendar window has a period, not days.", self.days)
            if self.period is None:
                self.period = "year"
        return self

    @property
    def rolling_days(self) -> int | None:
        return self.days if self.kind == "rolling" else None

    @property
    def calendar_period(self) -> Period | None:
        return self.period if self.kind == "calendar" else None


class Downgrade(_Strict):
    """At an evaluation, a member below the level's keep threshold drops ``one_level`` or to
    the level the value earns (``full``), ``grace_days`` after the evaluation."""

    policy: Literal["one_level", "full"] = "one_level"
    grace_days: int = Field(default=0, ge=0, le=366)


class Evaluation(_Strict):
    """When downgrades are judged: at the start of every ``period``. A calendar window is
    judged at its own period's end; a rolling window monthly unless told otherwise."""

    period: Period | None = None


class TierSettings(_Strict):
    metric: Metric = "spent"
    window: TierWindow = Field(default_factory=TierWindow)
    levels: list[TierLevel] = Field(min_length=1, max_length=20)
    upgrade_applies_to_crossing_receipt: bool = False
    downgrade: Downgrade = Field(default_factory=Downgrade)
    evaluation: Evaluation = Field(default_factory=Evaluation)

    @field_validator("levels")
    @classmethod
    def _levels_climb(cls, levels: list[TierLevel]) -> list[TierLevel]:
        """The first level is the base (threshold 0); codes are unique; thresholds rise."""
        seen: set[str] = set()
        for i, level in enumerate(levels):
            if level.code in seen:
                raise _error((i, "code"), f"Level code '{level.code}' is used twice.", level.code)
            seen.add(level.code)
            if i == 0 and level.threshold != 0:
                raise _error((0, "threshold"), "The first level is the base level: threshold 0.", 0)
            if i > 0 and level.threshold <= levels[i - 1].threshold:
                raise _error(
                    (i, "threshold"),
                    "Thresholds must rise strictly from one level to the next.",
                    level.threshold,
                )
            if level.keep > level.threshold:
                raise _error(
                    (i, "keep_threshold"),
                    "keep_threshold cannot be above the threshold.",
                    level.keep_threshold,
                )
            if i > 0 and level.keep < levels[i - 1].keep:
                raise _error(
                    (i, "keep_threshold"),
                    "Keep thresholds must not fall from one level to the next.",
                    level.keep_threshold,
                )
        return levels

    @model_validator(mode="after")
    def _evaluation_fits_the_window(self) -> TierSettings:
        if (
            self.window.kind == "calendar"
            and self.evaluation.period is not None
            and self.evaluation.period != self.window.period
        ):
            raise _error(
                ("evaluation", "period"),
                "A calendar window is evaluated at the end of its own period; "
                f"leave this out or use '{self.window.period}'.",
                self.evaluation.period,
            )
        return self

    # ---- derived ---------------------------------------------------------------------------
    @property
    def evaluation_period(self) -> Period:
        return self.window.calendar_period or self.evaluation.period or "month"

    @property
    def codes(self) -> list[str]:
        return [level.code for level in self.levels]

    @property
    def base(self) -> TierLevel:
        return self.levels[0]

    def index(self, code: str | None) -> int:
        """The level's position (0 = base), -1 for a code the program does not have."""
        for i, level in enumerate(self.levels):
            if level.code == code:
                return i
        return -1

    def level(self, code: str | None) -> TierLevel | None:
        i = self.index(code)
        return self.levels[i] if i >= 0 else None
