"""The program document: what a merchant publishes, validated with every error's path,
and compiled once per version into rules ready for evaluation."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError
from pydantic_core import PydanticSerializationError, to_json

from kopilka.domain.clubs.settings import ClubSettings
from kopilka.domain.coupons.settings import CouponSettings
from kopilka.domain.errors import ErrorCollector
from kopilka.domain.families.settings import DonationSettings, FamilySettings, TransferSettings
from kopilka.domain.ledger.expiry import CalendarExpiry, NeverExpires, RollingExpiry
from kopilka.domain.lifecycle.settings import EventSettings, LifecycleSettings
from kopilka.domain.referrals.settings import ReferralSettings
from kopilka.domain.rules.conditions import (
    ALWAYS,
    ConditionCompiler,
    LinePredicate,
    Path,
    ReceiptCondition,
    _int,
    _number,
)
from kopilka.domain.rules.money import RoundingMode
from kopilka.domain.stamps.settings import StampCardSettings
from kopilka.domain.tiers.settings import TierSettings

# Conditions nest (all / any / not); real programs use a handful of levels.
MAX_DEPTH = 64
RULE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
DISCOUNT_EFFECTS = frozenset(
    {"discount_percent", "discount_amount", "fixed_price", "cheapest_free", "buy_n_get_free"}
)
POINTS_EFFECTS = frozenset(
    {"points_percent", "points_per_unit", "points_fixed", "points_multiplier"}
)
ACTION_EFFECTS = frozenset({"gift", "issue_coupon"})
ALL_EFFECTS = DISCOUNT_EFFECTS | POINTS_EFFECTS | ACTION_EFFECTS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Rounding(_Strict):
    scope: Literal["receipt", "line"] = "receipt"
    mode: RoundingMode = RoundingMode.DOWN


class Redemption(_Strict):
    enabled: bool = True
    point_value: int = Field(default=100, ge=1, le=1_000_000, description="minor units per point")
    max_percent: int = Field(default=100, ge=0, le=100)
    max_percent_by_tier: dict[str, int] = Field(default_factory=dict)
    min_balance: int = Field(default=0, ge=0)


class Limits(_Strict):
    max_discount_percent_line: int | None = Field(default=None, ge=0, le=100)
    max_discount_percent_receipt: int | None = Field(default=None, ge=0, le=100)


def _expiry_kind(value: Any) -> str | None:
    """The tag that picks the expiry policy: its ``kind``, "never" when absent."""
    if isinstance(value, dict):
        kind = value.get("kind", "never")
        return kind if isinstance(kind, str) else None
    return getattr(value, "kind", None)


# Tagged by ``kind``, so a bad policy reports only its own problems (not one list per member
# of the union, "days: extra inputs are not permitted" among them).
ExpirySetting = Annotated[
    Annotated[NeverExpires, Tag("never")]
    | Annotated[RollingExpiry, Tag("rolling")]
    | Annotated[CalendarExpiry, Tag("calendar")],
    Discriminator(
        _expiry_kind,
        custom_error_type="invalid_expiry_kind",
        custom_error_message="kind: never, rolling or calendar.",
    ),
]
# Labels pydantic puts into an error's location for the members of a union: not document keys.
_UNION_LABELS = {
    "expiry": frozenset({"never", "rolling", "calendar"}),
    "name": frozenset({"str", "dict[str,str]"}),
}


def _error_path(err: Any) -> Path:
    """A pydantic error's location as a path into the document."""
    loc = tuple(err["loc"])
    if len(loc) > 1 and loc[1] in _UNION_LABELS.get(str(loc[0]), ()):
        loc = (loc[0], *loc[2:])
    if err["type"] == "invalid_expiry_kind" and isinstance(err.get("input"), dict):
        loc = (*loc, "kind")
    return loc


class ProgramSettings(_Strict):
    """Everything but the rules, validated by pydantic."""

    type: Literal["discount", "bonus", "cashback", "combined"]
    name: str | dict[str, str] = ""
    currency: str = Field(default="points", min_length=1, max_length=16)
    redemption: Redemption = Field(default_factory=Redemption)
    pending_days: int = Field(default=0, ge=0, le=365)
    expiry: ExpirySetting = Field(default_factory=NeverExpires)
    rounding: Rounding = Field(default_factory=Rounding)
    limits: Limits = Field(default_factory=Limits)
    refund_shortfall: Literal["debt", "cash"] = "cash"
    # Loyalty mechanics; each section's model lives with its mechanic (domain/<mechanic>/).
    tiers: TierSettings | None = None
    lifecycle: LifecycleSettings = Field(default_factory=LifecycleSettings)
    events: list[EventSettings] = Field(default_factory=list, max_length=200)
    referral: ReferralSettings | None = None
    stamp_cards: list[StampCardSettings] = Field(default_factory=list, max_length=50)
    family: FamilySettings | None = None
    transfers: TransferSettings | None = None
    donations: DonationSettings | None = None
    clubs: list[ClubSettings] = Field(default_factory=list, max_length=100)
    # A closed program: its rules apply only to members of this club.
    members_of_club: str | None = Field(default=None, min_length=1, max_length=64)
    # Coupons and promo codes: refunds, how many per receipt (domain/coupons/settings.py).
    coupons: CouponSettings = Field(default_factory=CouponSettings)
    rules: list[Any] = Field(default_factory=list, max_length=2000)


@dataclass(frozen=True)
class Effect:
    kind: str
    value: Decimal = Decimal(0)
    per: str = "line"  # discount_amount: line, unit or receipt
    n: int = 0
    free: int = 0
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CompiledRule:
    id: str
    name: dict[str, str]
    priority: int
    exclusive: bool
    stop: bool
    when: ReceiptCondition
    lines: LinePredicate
    line_keys: frozenset[str] | None
    effects: tuple[Effect, ...]
    # The rule's conditions read the member's purchase count (first or nth purchase), so
    # the till must count the member's purchases to evaluate it; set when compiled.
    needs_purchase_count: bool = False

    @cached_property
    def keys(self) -> frozenset[str] | None:
        """Index keys: the rule can only apply to receipts with one of these."""
        if self.when.keys is not None:
            return self.when.keys
        return self.line_keys


@dataclass(frozen=True)
class CompiledProgram:
    code: str
    version: int
    settings: ProgramSettings
    rules: tuple[CompiledRule, ...]
    name: dict[str, str]

    @property
    def currency(self) -> str:
        return self.settings.currency

    @cached_property
    def needs_purchase_count(self) -> bool:
        """Some rule reads the member's purchase count. Derived from the rules, never
        copied: a program rebuilt with other rules (``replace``) answers for its own."""
        return any(rule.needs_purchase_count for rule in self.rules)

    @cached_property
    def rule_index(self) -> RuleIndex:
        """The rules' positions by index key, built once per compiled version (a program
        rebuilt with other rules builds its own)."""
        always: list[int] = []
        by_key: dict[str, list[int]] = {}
        for position, rule in enumerate(self.rules):
            keys = rule.keys
            if keys is None:
                always.append(position)
            else:
                for key in keys:
                    by_key.setdefault(key, []).append(position)
        return RuleIndex(tuple(always), {k: tuple(v) for k, v in by_key.items()})

    def candidates(self, receipt_keys: set[str]) -> list[CompiledRule]:
        """The rules that may apply to a receipt with these index keys, in rule order:
        a receipt of 10 lines looks at the rules of its SKUs and categories, not all."""
        index = self.rule_index
        if len(index.always) == len(self.rules):
            return list(self.rules)
        positions = set(index.always)
        for key in receipt_keys:
            found = index.by_key.get(key)
            if found is not None:
                positions.update(found)
        rules = self.rules
        return [rules[p] for p in sorted(positions)]


@dataclass(frozen=True)
class RuleIndex:
    always: tuple[int, ...]  # rules without index keys: candidates for every receipt
    by_key: dict[str, tuple[int, ...]]


def _names(value: Any, fallback: str) -> dict[str, str]:
    if isinstance(value, dict) and value:
        ru = str(value.get("ru") or value.get("en") or fallback)
        en = str(value.get("en") or value.get("ru") or fallback)
        return {"ru": ru, "en": en}
    if isinstance(value, str) and value:
        return {"ru": value, "en": value}
    return {"ru": fallback, "en": fallback}


class _EffectParser:
    def __init__(self, errors: ErrorCollector) -> None:
        self.errors = errors

    def parse(self, obj: Any, path: Path) -> Effect | None:
        if not isinstance(obj, dict) or len(obj) != 1:
            self.errors.add(path, "An effect is an object with exactly one key.", "invalid_effect")
            return None
        kind, value = next(iter(obj.items()))
        here = (*path, kind)
        if kind not in ALL_EFFECTS:
            self.errors.add(here, f"Unknown effect '{kind}'.", "unknown_effect")
            return None
        if kind in ("discount_percent", "points_percent"):
            number = _number(value)
            if number is None or number > 100 or number == 0:
                self.errors.add(here, "A percent above 0 and at most 100.", "invalid_effect_value")
                return None
            return Effect(kind, number)
        if kind == "points_multiplier":
            number = _number(value)
            if number is None or not 1 <= number <= 100:
                self.errors.add(here, "A multiplier from 1 to 100.", "invalid_effect_value")
                return None
            return Effect(kind, number)
        if kind in ("points_per_unit", "points_fixed", "fixed_price", "cheapest_free"):
            whole = _int(value, 0 if kind == "fixed_price" else 1)
            if whole is None:
                self.errors.add(
                    here, "A whole number (minor units or points).", "invalid_effect_value"
                )
                return None
            return Effect(kind, Decimal(whole))
        if kind == "discount_amount":
            if isinstance(value, int) and not isinstance(value, bool):
                value = {"value": value}
            if not isinstance(value, dict) or set(value) - {"value", "per"}:
                self.errors.add(
                    here,
                    "Use {'value': minor units, 'per': line|unit|receipt}.",
                    "invalid_effect_value",
                )
                return None
            amount = _int(value.get("value"), 1)
            per = value.get("per", "line")
            if amount is None or per not in ("line", "unit", "receipt"):
                self.errors.add(
                    here,
                    "Use {'value': minor units, 'per': line|unit|receipt}.",
                    "invalid_effect_value",
                )
                return None
            return Effect(kind, Decimal(amount), per=per)
        if kind == "buy_n_get_free":
            if not isinstance(value, dict) or set(value) != {"n", "free"}:
                self.errors.add(here, "Use {'n': 2, 'free': 1}.", "invalid_effect_value")
                return None
            n, free = _int(value["n"], 1, 1000), _int(value["free"], 1, 1000)
            if n is None or free is None:
                self.errors.add(here, "Use {'n': 2, 'free': 1}.", "invalid_effect_value")
                return None
            return Effect(kind, n=n, free=free)
        if kind == "gift":
            if (
                not isinstance(value, dict)
                or not isinstance(value.get("sku"), str)
                or not value["sku"]
                or set(value) - {"sku", "qty", "name"}
            ):
                self.errors.add(
                    here, "Use {'sku': ..., 'qty': 1, 'name': ...}.", "invalid_effect_value"
                )
                return None
            qty = _int(value.get("qty", 1), 1, 1000)
            if qty is None:
                self.errors.add((*here, "qty"), "A whole quantity.", "invalid_effect_value")
                return None
            return Effect(
                kind, Decimal(qty), params={"sku": value["sku"], "name": value.get("name")}
            )
        # issue_coupon: a benefit for the next purchase, itself an effect
        if (
            not isinstance(value, dict)
            or "benefit" not in value
            or set(value) - {"benefit", "valid_days", "min_basket"}
        ):
            self.errors.add(
                here,
                "Use {'benefit': <effect>, 'valid_days': 30, 'min_basket': 0}.",
                "invalid_effect_value",
            )
            return None
        benefit = self.parse(value["benefit"], (*here, "benefit"))
        days = _int(value.get("valid_days", 30), 1, 3650)
        if days is None:
            self.errors.add((*here, "valid_days"), "Days from 1 to 3650.", "invalid_effect_value")
        min_basket = _int(value.get("min_basket", 0), 0)
        if min_basket is None:
            self.errors.add(
                (*here, "min_basket"), "Minor units, 0 or more.", "invalid_effect_value"
            )
        if benefit is None or days is None or min_basket is None:
            return None
        return Effect(
            kind, params={"benefit": value["benefit"], "valid_days": days, "min_basket": min_basket}
        )


def compile_rules(raw_rules: Sequence[Any], errors: ErrorCollector) -> list[CompiledRule]:
    conditions = ConditionCompiler(errors)
    effects = _EffectParser(errors)
    compiled: list[CompiledRule] = []
    seen: set[str] = set()
    allowed = {"id", "name", "priority", "exclusive", "stop", "when", "lines", "effects"}
    for i, raw in enumerate(raw_rules):
        path: Path = ("rules", i)
        if not isinstance(raw, dict):
            errors.add(path, "A rule is an object.", "invalid_rule")
            continue
        for key in sorted(set(raw) - allowed):
            errors.add((*path, key), "Unknown field.", "unknown_field")
        rule_id = raw.get("id")
        if not isinstance(rule_id, str) or not RULE_ID.match(rule_id):
            errors.add(
                (*path, "id"),
                "A rule id: lower-case letters, digits, '-' or '_'.",
                "invalid_rule_id",
            )
            rule_id = f"rule-{i}"
        elif rule_id in seen:
            errors.add((*path, "id"), f"Rule id '{rule_id}' is used twice.", "duplicate_rule_id")
        seen.add(rule_id)
        priority = raw.get("priority", 100)
        if _int(priority, 0, 1_000_000) is None:
            errors.add((*path, "priority"), "A whole number from 0 (first) up.", "invalid_priority")
            priority = 100
        for flag in ("exclusive", "stop"):
            if flag in raw and not isinstance(raw[flag], bool):
                errors.add((*path, flag), "true or false.", "invalid_flag")
        conditions.reads_purchases = False
        when = conditions.receipt(raw["when"], (*path, "when")) if "when" in raw else ALWAYS
        needs_purchase_count = conditions.reads_purchases
        line_keys: frozenset[str] | None = None
        lines: LinePredicate = lambda _line: True  # noqa: E731 - default: every line
        if "lines" in raw:
            lines, line_keys = conditions.line(raw["lines"], (*path, "lines"))
        raw_effects = raw.get("effects")
        parsed: list[Effect] = []
        if not isinstance(raw_effects, list) or not raw_effects:
            errors.add(
                (*path, "effects"), "A rule needs a non-empty list of effects.", "effects_required"
            )
        else:
            for j, item in enumerate(raw_effects):
                effect = effects.parse(item, (*path, "effects", j))
                if effect is not None:
                    parsed.append(effect)
        compiled.append(
            CompiledRule(
                id=rule_id,
                name=_names(raw.get("name"), rule_id),
                priority=int(priority),
                exclusive=bool(raw.get("exclusive", False)),
                stop=bool(raw.get("stop", False)),
                when=when,
                lines=lines,
                line_keys=line_keys,
                effects=tuple(parsed),
                needs_purchase_count=needs_purchase_count,
            )
        )
    compiled.sort(key=lambda r: (r.priority, r.id))
    return compiled


def _check_unique_keys(settings: ProgramSettings, errors: ErrorCollector) -> None:
    """Names the mechanics look things up by must not repeat within a document."""
    lists: list[tuple[str, str, list[str]]] = [
        ("events", "name", [e.name for e in settings.events]),
        ("clubs", "code", [c.code for c in settings.clubs]),
        ("stamp_cards", "id", [c.id for c in settings.stamp_cards]),
    ]
    for section, key, values in lists:
        seen: set[str] = set()
        for i, value in enumerate(values):
            if value in seen:
                errors.add(
                    (section, i, key), f"'{value}' is used twice in {section}.", f"duplicate_{key}"
                )
            seen.add(value)


def validate_document(document: Any) -> list[dict[str, Any]]:
    """Every problem in ``document``, each ``{"path": [...], "message", "code"}``."""
    errors = ErrorCollector()
    _compile(document, "check", 0, errors, at_input=True)
    return [{"path": list(e.path), "message": e.message, "code": e.code} for e in errors.errors]


def compile_program(
    document: Any, code: str, version: int, *, at_input: bool = False
) -> CompiledProgram:
    """Compile a document; raises ValidationFailed listing every error. ``at_input``: a
    document about to be published, whose values must have their exact JSON types."""
    errors = ErrorCollector()
    program = _compile(document, code, version, errors, at_input=at_input)
    errors.raise_if_any("The program document has errors.")
    assert program is not None
    return program


def _check_values(document: Any, errors: ErrorCollector) -> None:
    """What JSON and the database cannot hold, found without recursion: nesting deeper than
    MAX_DEPTH (the compiler recurses into conditions), strings with lone surrogates (not
    UTF-8), NaN or infinite numbers (YAML spells them ``.nan`` and ``.inf``), and values of
    no JSON type at all (YAML's ``!!binary`` and ``!!set``)."""
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), document)]
    while stack:
        path, value = stack.pop()
        if len(path) > MAX_DEPTH:
            errors.add(path, f"The document nests deeper than {MAX_DEPTH} levels.", "too_deep")
            continue
        if isinstance(value, dict):
            stack.extend(((*path, str(k)), v) for k, v in value.items())
            stack.extend(((*path, str(k)), k) for k in value if isinstance(k, str))
        elif isinstance(value, list):
            stack.extend(((*path, n), v) for n, v in enumerate(value))
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                errors.add(path, "The text is not valid Unicode.", "string_unicode")
        elif isinstance(value, float) and not math.isfinite(value):
            errors.add(path, "The number is not finite.", "not_finite")
        elif not (value is None or isinstance(value, bool | int | float)):
            # YAML's binary and set values: nothing JSON (or the stored document) can hold.
            errors.add(path, "Not a JSON value.", "not_json_value")


def _compile(
    document: Any, code: str, version: int, errors: ErrorCollector, *, at_input: bool = False
) -> CompiledProgram | None:
    if not isinstance(document, dict):
        errors.add((), "A program document is a JSON object.", "invalid_document")
        return None
    _check_values(document, errors)
    if errors.errors:
        return None
    try:
        settings = ProgramSettings.model_validate(document)
        if at_input:
            # A published document is stored as given and read back leniently (every version
            # must keep loading), so exact types are required once, here: "100" or 100.0 for
            # a whole number and "yes" or 1 for a flag are refused, not stored as they came.
            ProgramSettings.model_validate_json(to_json(document), strict=True)
    except PydanticSerializationError:  # _check_values is meant to have caught it
        errors.add((), "The document holds a value JSON cannot.", "not_json_value")
        return None
    except ValidationError as exc:
        for err in exc.errors():
            errors.add(
                _error_path(err),
                err["msg"],
                "unknown_field" if err["type"] == "extra_forbidden" else "invalid",
            )
        settings = None
    raw_rules = document.get("rules", [])
    rules = compile_rules(raw_rules if isinstance(raw_rules, list) else [], errors)
    if settings is not None:
        _check_unique_keys(settings, errors)
    for tier, pct in settings.redemption.max_percent_by_tier.items() if settings else []:
        if not isinstance(pct, int) or not 0 <= pct <= 100:
            errors.add(("redemption", "max_percent_by_tier", tier), "0 to 100.", "invalid")
    if settings is None:
        return None
    return CompiledProgram(
        code=code,
        version=version,
        settings=settings,
        rules=tuple(rules),
        name=_names(settings.name, code),
    )
