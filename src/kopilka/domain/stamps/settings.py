"""The ``stamp_cards`` section of a program document.

A stamp card counts a member's stamps for a product set (``lines``, the same line
conditions as a rule's ``lines``); ``stamps`` of them fill the card, and a full card turns
into its reward: a free item at the till or a personal coupon.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from kopilka.domain.errors import ErrorCollector, FieldError
from kopilka.domain.rules.conditions import ConditionCompiler, LinePredicate

CARD_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
MAX_STAMPS = 1000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _names_from_text(value: Any) -> Any:
    """``name: Coffee`` is short for ``name: {ru: Coffee, en: Coffee}``."""
    return {"ru": value, "en": value} if isinstance(value, str) else value


class CardName(_Strict):
    ru: str | None = Field(default=None, min_length=1, max_length=200)
    en: str | None = Field(default=None, min_length=1, max_length=200)


class FreeItem(_Strict):
    """The cheapest qualifying unit of the receipt becomes free (at most ``max_price``)."""

    max_price: int | None = Field(
        default=None, ge=1, le=10**11, description="the most the free item may be worth"
    )


class CouponReward(_Strict):
    """A personal coupon, issued when the card fills; like a rule's ``issue_coupon``."""

    benefit: dict[str, Any]
    valid_days: int = Field(default=30, ge=1, le=3650)
    min_basket: int = Field(default=0, ge=0, le=10**13)

    @field_validator("benefit")
    @classmethod
    def _benefit_is_an_effect(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Imported here: the document module imports this one to build ProgramSettings.
        from kopilka.domain.rules.document import _EffectParser

        errors = ErrorCollector()
        _EffectParser(errors).parse(value, ())
        _raise_collected(errors, "invalid_benefit")
        return value


class StampReward(_Strict):
    """Exactly one of ``free_item`` and ``coupon``."""

    free_item: FreeItem | None = None
    coupon: CouponReward | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> StampReward:
        if (self.free_item is None) == (self.coupon is None):
            raise PydanticCustomError(
                "invalid_reward", "A reward is either {'free_item': {...}} or {'coupon': {...}}."
            )
        return self

    @property
    def kind(self) -> Literal["free_item", "coupon"]:
        return "free_item" if self.free_item is not None else "coupon"


class StampCardSettings(_Strict):
    id: str = Field(pattern=CARD_ID_PATTERN, description="stable: the balance is kept by it")
    name: Annotated[CardName, BeforeValidator(_names_from_text)] = Field(default_factory=CardName)
    lines: Any = Field(description="the product set: a line condition, as in a rule's lines")
    stamps: int = Field(ge=1, le=MAX_STAMPS, description="stamps that fill the card")
    per: Literal["unit", "line", "receipt"] = "unit"
    reward: StampReward
    auto_redeem: bool = True
    expires_days: int = Field(
        default=0, ge=0, le=3650, description="days without a new stamp before they expire"
    )
    refund_shortfall: Literal["debt", "forgive"] = "debt"

    _predicate: LinePredicate = PrivateAttr()

    @field_validator("lines")
    @classmethod
    def _lines_compile(cls, value: Any) -> Any:
        errors = ErrorCollector()
        ConditionCompiler(errors).line(value, ())
        _raise_collected(errors, "invalid_condition")
        return value

    def model_post_init(self, context: Any, /) -> None:
        # Compiled once per program version (the settings live in the cached program).
        self._predicate, _keys = ConditionCompiler(ErrorCollector()).line(self.lines, ())

    def qualifies(self, line: Any) -> bool:
        """Whether a receipt line (a rules ``Line``) belongs to the card's product set."""
        return self._predicate(line)

    @property
    def names(self) -> dict[str, str]:
        """``{"ru", "en"}``, each falling back to the other and then to the id."""
        ru = self.name.ru or self.name.en or self.id
        en = self.name.en or self.name.ru or self.id
        return {"ru": ru, "en": en}


def _raise_collected(errors: ErrorCollector, kind: str) -> None:
    """One pydantic error at the field, naming each problem's path inside it."""
    if errors.errors:
        # The text goes in as context: a message's own braces must not read as placeholders.
        detail = "; ".join(_describe(e) for e in errors.errors)
        raise PydanticCustomError(kind, "{detail}", {"detail": detail})


def _describe(error: FieldError) -> str:
    where = ".".join(str(p) for p in error.path)
    return f"{where}: {error.message}" if where else error.message
