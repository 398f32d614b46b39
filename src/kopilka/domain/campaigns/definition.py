"""What a campaign is, as the marketing team writes it, validated with every error's path,
and compiled once per revision into rules the till can evaluate.

Pydantic checks each field (types, bounds, unknown keys); :func:`check_definition` checks
what spans fields (the schedule's order, the audience's values) and compiles the rules with
the program rules' compiler.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from kopilka.domain.errors import ErrorCollector, FieldError, ValidationFailed
from kopilka.domain.iso_text import IsoMomentText
from kopilka.domain.rules.document import CompiledRule, compile_rules

CODE_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
MAX_AMOUNT = 10**15  # points or minor units: the till's own bound on one receipt
MAX_COUNT = 10**9
MAX_RULES = 200
MAX_VALUES = 100
MAX_OUTLETS = 1000
RULE_PREFIX = "campaign:"

Code = Annotated[str, StringConstraints(pattern=CODE_PATTERN)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=64)]
OutletCode = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Amount = Annotated[int, Field(ge=0, le=MAX_AMOUNT, strict=True)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT, strict=True)]
Channel = Literal["store", "online", "app"]
Period = Literal["day", "week", "month", "campaign"]
AudienceKind = Literal["everyone", "tiers", "segments", "clubs", "members"]
EARLIEST = datetime(2000, 1, 1)  # noqa: DTZ001 - compared with naive local times only
LATEST = datetime(2200, 1, 1)  # noqa: DTZ001


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LocalText(_Strict):
    """Text a customer sees, in both languages."""

    ru: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    en: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class Schedule(_Strict):
    """``start`` inclusive, ``end`` exclusive. A moment without an offset is a wall-clock
    time in the tenant's time zone (``2026-03-01T00:00`` or just ``2026-03-01``); one with
    an offset is that instant."""

    start: Annotated[datetime, IsoMomentText]
    end: Annotated[datetime, IsoMomentText]


class Audience(_Strict):
    """Who the campaign is for: everyone, members of any of the ``values`` tiers, segments
    or clubs, or a list of members (``PUT /v1/campaigns/{code}/members``)."""

    kind: AudienceKind = "everyone"
    values: list[Name] = Field(default_factory=list, max_length=MAX_VALUES)


class Stacking(_Strict):
    """``exclusive``: no other campaign on the same receipt. Otherwise the campaign combines
    with the campaigns it names in ``combinable_with`` (``"*"``: any), when they name it too.
    Lower ``priority`` is chosen first (as with rules)."""

    exclusive: bool = False
    combinable_with: list[
        Annotated[str, StringConstraints(pattern=r"^(\*|[a-z0-9][a-z0-9_-]{0,63})$")]
    ] = Field(default_factory=list, max_length=MAX_VALUES)
    priority: Annotated[int, Field(ge=0, le=1_000_000, strict=True)] = 100


class BudgetAmounts(_Strict):
    """Caps on what the campaign gives; ``null``: no cap."""

    points: Amount | None = None
    discount: Amount | None = Field(default=None, description="minor units")
    redemptions: Count | None = Field(default=None, description="receipts it applies to")


class Budgets(BudgetAmounts):
    per_outlet: dict[OutletCode, BudgetAmounts] = Field(
        default_factory=dict, max_length=MAX_OUTLETS
    )


class MemberLimit(_Strict):
    """What one member may get per tenant-local day, ISO week, calendar month or over the
    whole campaign."""

    period: Period
    redemptions: Annotated[int, Field(ge=1, le=MAX_COUNT, strict=True)] | None = None
    points: Amount | None = None
    discount: Amount | None = None


class ReceiptLimit(_Strict):
    """Per receipt: points above ``points`` are cut off; a receipt on which the campaign's
    discount would exceed ``discount`` does not get the campaign."""

    points: Amount | None = None
    discount: Amount | None = None


class Limits(_Strict):
    per_member: list[MemberLimit] = Field(default_factory=list, max_length=4)
    per_receipt: ReceiptLimit = Field(default_factory=ReceiptLimit)


class ControlGroup(_Strict):
    """Hold out this share of the audience (a whole percent, 1 to 50)."""

    percent: Annotated[int, Field(ge=1, le=50, strict=True)]


class CampaignFields(_Strict):
    name: LocalText
    description: LocalText | None = None
    program: Code | None = Field(
        default=None, description="The program the rules join; the first in force by default"
    )
    schedule: Schedule | None = None
    audience: Audience = Field(default_factory=Audience)
    outlets: list[OutletCode] | None = Field(default=None, max_length=MAX_OUTLETS)
    channels: list[Channel] | None = Field(default=None, max_length=3)
    stacking: Stacking = Field(default_factory=Stacking)
    budgets: Budgets = Field(default_factory=Budgets)
    limits: Limits = Field(default_factory=Limits)
    control_group: ControlGroup | None = None
    rules: list[dict[str, Any]] = Field(default_factory=list, max_length=MAX_RULES)


class CampaignCreate(CampaignFields):
    code: Code


class CampaignPatch(_Strict):
    """Fields to change; those not sent stay (``null`` clears an optional one)."""

    name: LocalText | None = None
    description: LocalText | None = None
    program: Code | None = None
    schedule: Schedule | None = None
    audience: Audience | None = None
    outlets: list[OutletCode] | None = Field(default=None, max_length=MAX_OUTLETS)
    channels: list[Channel] | None = Field(default=None, max_length=3)
    stacking: Stacking | None = None
    budgets: Budgets | None = None
    limits: Limits | None = None
    control_group: ControlGroup | None = None
    rules: list[dict[str, Any]] | None = Field(default=None, max_length=MAX_RULES)


@dataclass(frozen=True)
class CompiledCampaign:
    """A campaign ready for the till: its definition and its rules, ids prefixed."""

    id: Any  # uuid.UUID; Any keeps this module free of the adapters' types
    code: str
    revision: int
    status: str
    seed: str
    fields: CampaignFields
    rules: tuple[CompiledRule, ...]

    @property
    def prefix(self) -> str:
        return rule_prefix(self.code)


def rule_prefix(code: str) -> str:
    """Campaign rules join a program as ``campaign:<code>:<rule id>``."""
    return f"{RULE_PREFIX}{code}:"


def campaign_of_rule(rule_id: str) -> str | None:
    """The campaign code a joined rule id names, or None for a program's own rule."""
    if not rule_id.startswith(RULE_PREFIX):
        return None
    code, sep, _ = rule_id[len(RULE_PREFIX) :].partition(":")
    return code if sep else None


def parse_fields(document: Any) -> tuple[CampaignFields, list[CompiledRule]]:
    """Validate a stored or merged definition, and compile its rules; raises
    ValidationFailed with every error's path."""
    try:
        fields = CampaignFields.model_validate(document)
    except ValidationError as exc:
        raise ValidationFailed(
            "The campaign is not valid.",
            errors=[
                FieldError(
                    tuple(err["loc"]),
                    err["msg"],
                    "unknown_field" if err["type"] == "extra_forbidden" else "invalid",
                )
                for err in exc.errors()
            ],
        ) from exc
    return fields, check_definition(fields)


def check_definition(fields: CampaignFields) -> list[CompiledRule]:
    """What spans fields, and the rules compiled; raises with every error's path."""
    errors = ErrorCollector()
    if fields.schedule is not None:
        start, end = fields.schedule.start, fields.schedule.end
        for key, moment in (("start", start), ("end", end)):
            naive = moment.replace(tzinfo=None)
            if not EARLIEST <= naive < LATEST:
                errors.add(("schedule", key), "Use a moment between 2000 and 2200.", "invalid")
        if (start.tzinfo is None) == (end.tzinfo is None) and end <= start:
            errors.add(("schedule", "end"), "The end comes after the start.", "invalid_schedule")
    audience = fields.audience
    if audience.kind in ("tiers", "segments", "clubs") and not audience.values:
        errors.add(("audience", "values"), f"Name the {audience.kind}.", "audience_values_required")
    if audience.kind in ("everyone", "members") and audience.values:
        errors.add(
            ("audience", "values"),
            f"An audience of {audience.kind} takes no values.",
            "audience_values_not_allowed",
        )
    rules = compile_rules(fields.rules, errors)
    errors.raise_if_any("The campaign is not valid.")
    return rules


def compile_campaign(
    campaign_id: Any, code: str, revision: int, status: str, seed: str, document: Any
) -> CompiledCampaign:
    """A stored campaign compiled: rule ids prefixed, unnamed rules named after it."""
    fields, rules = parse_fields(document)
    name = {"ru": fields.name.ru, "en": fields.name.en}
    named = {str(r.get("id")) for r in fields.rules if isinstance(r, dict) and "name" in r}
    prefix = rule_prefix(code)
    return CompiledCampaign(
        id=campaign_id,
        code=code,
        revision=revision,
        status=status,
        seed=seed,
        fields=fields,
        rules=tuple(
            replace(rule, id=prefix + rule.id, name=rule.name if rule.id in named else name)
            for rule in rules
        ),
    )
