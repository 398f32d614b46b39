"""What a reward is: its definition as the marketing team writes it, validated with paths.

Pydantic checks each field (types, bounds, unknown keys); :func:`check_definition` checks
what spans fields: the section each kind needs, a coupon's benefit (parsed by the same effect
parser as program rules), and the visibility window.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from kopilka.domain.errors import ErrorCollector, FieldError
from kopilka.domain.iso_text import IsoMomentText
from kopilka.domain.rules.document import ACTION_EFFECTS, _EffectParser

MAX_COST = 10**12  # the ledger's bound on one operation's points
MAX_QUANTITY = 10**9  # units of stock at one location; far beyond any warehouse
# [0-9], not \d: pydantic's regex \d also matches other scripts' digits.
CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
Code = Annotated[str, StringConstraints(pattern=CODE_PATTERN)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Cost = Annotated[int, Field(ge=0, le=MAX_COST, strict=True)]
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def _utc(value: datetime) -> datetime:
    """Stored in UTC; moments that cannot even be converted (year 9999 west of Greenwich)
    or are far off are refused."""
    try:
        utc = value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("The moment is out of range.") from exc
    if not EARLIEST <= utc < LATEST:
        raise ValueError("Use a moment between 1900 and 2200.")
    return utc


Moment = Annotated[AwareDatetime, IsoMomentText, AfterValidator(_utc)]


class RewardKind(StrEnum):
    MATERIAL = "material"  # a gift item with stock per outlet or warehouse
    COUPON = "coupon"  # a discount or a free product on a later purchase
    PRIVILEGE = "privilege"  # free delivery for a month, priority service, a closed sale
    PARTNER_CODE = "partner_code"  # a code from a pool the partner uploaded
    CHARITY = "charity"  # a donation


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LocalText(_Strict):
    """Text a customer sees, in both languages."""

    ru: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    en: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class LocalLongText(_Strict):
    ru: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    en: Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class Visibility(_Strict):
    """Who sees the reward, and when: every list given must match (any of its items); the
    window is ``from`` inclusive, ``until`` exclusive."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True, serialize_by_alias=True)
    tiers: list[Name] = Field(default_factory=list, max_length=50)
    segments: list[Name] = Field(default_factory=list, max_length=50)
    clubs: list[Name] = Field(default_factory=list, max_length=50)
    from_: Moment | None = Field(default=None, alias="from")
    until: Moment | None = None


class Limits(_Strict):
    """``total``: units over the reward's life; ``per_member``: units per member, over the
    member's life or per calendar ``per_member_period`` in the tenant's time zone."""

    total: Annotated[int, Field(ge=1, le=MAX_QUANTITY, strict=True)] | None = None
    per_member: Annotated[int, Field(ge=1, le=MAX_QUANTITY, strict=True)] | None = None
    per_member_period: Literal["day", "week", "month", "year"] | None = None


class CouponSection(_Strict):
    """The personal coupon a coupon reward issues: a rules-engine effect as its benefit."""

    benefit: dict[str, Any]
    valid_days: Annotated[int, Field(ge=1, le=3650, strict=True)] = 30
    min_basket: Annotated[int, Field(ge=0, le=10**11, strict=True)] = 0


class PrivilegeSection(_Strict):
    """What a privilege gives while it lasts: a member tag and/or a club the rules see
    (``member_tag``, ``club_in``, closed programs), for ``duration_days`` per unit."""

    duration_days: Annotated[int, Field(ge=1, le=3650, strict=True)]
    tag: Name | None = None
    club: Name | None = None


class CharitySection(_Strict):
    code: Code = Field(description="The charity the points go to, for reports")


class _Fields(_Strict):
    name: LocalText
    description: LocalLongText | None = None
    cost: Cost = Field(description="Points per unit")
    cost_by_tier: dict[Name, Cost] = Field(default_factory=dict, max_length=50)
    currency: Annotated[str, StringConstraints(min_length=1, max_length=16)] | None = None
    visibility: Visibility = Field(default_factory=Visibility)
    limits: Limits = Field(default_factory=Limits)
    sku: Code | None = Field(default=None, description="Warehouse SKU of a material reward")
    coupon: CouponSection | None = None
    privilege: PrivilegeSection | None = None
    charity: CharitySection | None = None


class RewardDefinition(_Fields):
    """A reward as created (``POST /v1/rewards``) and stored."""

    code: Code
    kind: RewardKind


class RewardPatch(_Strict):
    """A change: only the fields sent change; ``null`` clears an optional one. The code and
    kind are fixed for life (orders refer to them)."""

    name: LocalText | None = None
    description: LocalLongText | None = None
    cost: Cost | None = None
    cost_by_tier: dict[Name, Cost] | None = Field(default=None, max_length=50)
    currency: Annotated[str, StringConstraints(min_length=1, max_length=16)] | None = None
    visibility: Visibility | None = None
    limits: Limits | None = None
    sku: Code | None = None
    coupon: CouponSection | None = None
    privilege: PrivilegeSection | None = None
    charity: CharitySection | None = None
    status: Literal["active", "archived"] | None = None


# Which section each kind needs; the others are refused.
_SECTIONS: dict[RewardKind, str | None] = {
    RewardKind.MATERIAL: None,
    RewardKind.COUPON: "coupon",
    RewardKind.PRIVILEGE: "privilege",
    RewardKind.PARTNER_CODE: None,
    RewardKind.CHARITY: "charity",
}


def check_definition(definition: RewardDefinition) -> list[FieldError]:
    """Problems spanning fields, each with its path; empty when the definition is sound."""
    errors = ErrorCollector()
    wanted = _SECTIONS[definition.kind]
    for section in ("coupon", "privilege", "charity"):
        present = getattr(definition, section) is not None
        if section == wanted and not present:
            errors.add(
                (section,),
                f"A {definition.kind.value} reward needs its {section} section.",
                "section_required",
            )
        elif section != wanted and present:
            errors.add(
                (section,),
                f"Only {section} rewards have a {section} section.",
                "section_not_allowed",
            )
    if definition.sku is not None and definition.kind is not RewardKind.MATERIAL:
        errors.add(("sku",), "Only material rewards have a SKU.", "sku_not_allowed")
    if definition.coupon is not None:
        effect = _EffectParser(errors).parse(definition.coupon.benefit, ("coupon", "benefit"))
        if effect is not None and effect.kind in ACTION_EFFECTS - {"gift"}:
            errors.add(
                ("coupon", "benefit", effect.kind),
                "A coupon's benefit is a discount, points or a gift.",
                "unsupported_benefit",
            )
    if definition.privilege is not None and not (
        definition.privilege.tag or definition.privilege.club
    ):
        errors.add(
            ("privilege",),
            "A privilege gives a member tag, a club, or both.",
            "privilege_grants_nothing",
        )
    vis = definition.visibility
    if vis.from_ is not None and vis.until is not None and vis.until <= vis.from_:
        errors.add(("visibility", "until"), "until must be after from.", "invalid_window")
    limits = definition.limits
    if limits.per_member_period is not None and limits.per_member is None:
        errors.add(
            ("limits", "per_member_period"),
            "A period needs a per_member limit.",
            "period_without_limit",
        )
    return errors.errors


# Sections with a default: a patch's null puts the default back.
_DEFAULTED = ("cost_by_tier", "visibility", "limits")


def merge_patch(stored: dict[str, Any], patch: RewardPatch) -> dict[str, Any]:
    """The stored definition (JSON) with the patch's fields applied, ready to validate."""
    changes = patch.model_dump(mode="json", exclude_unset=True, by_alias=True)
    changes.pop("status", None)
    merged = {**stored, **changes}
    for key in _DEFAULTED:
        if merged.get(key, ...) is None:
            del merged[key]  # null resets a section to its default (no tier prices...)
    return merged


def dump(definition: RewardDefinition) -> dict[str, Any]:
    """The definition as stored (JSON, ``from`` spelled as in requests)."""
    return definition.model_dump(mode="json", by_alias=True)
