"""Conditions: parsed from JSON once, compiled into closures, never interpreted per receipt.

A condition is a one-key object (``{"sku": "LATTE"}``) or a combinator (``all``, ``any``,
``not``). Line conditions select lines; receipt conditions look at the whole purchase, and a
line condition used at receipt level means "the receipt has such a line".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, time
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from kopilka.domain.errors import ErrorCollector
from kopilka.domain.rules.facts import Context, Line, MemberFacts

Path = tuple[str | int, ...]
LinePredicate = Callable[[Line], bool]
ReceiptTest = Callable[[Context, Sequence[Line]], bool]


@dataclass(frozen=True)
class Gap:
    """How far a threshold is from being met: the material of upsell hints."""

    kind: str  # "qty" or "amount"
    missing: Decimal | int


@dataclass(frozen=True)
class ReceiptCondition:
    test: ReceiptTest
    # The condition can only hold if the receipt has a line with one of these keys
    # ("sku:X", "cat:a/b"); None means it may hold on any receipt.
    keys: frozenset[str] | None = None
    gap: Callable[[Context, Sequence[Line]], Gap | None] | None = None


def always(_: Context, __: Sequence[Line]) -> bool:
    return True


ALWAYS = ReceiptCondition(always)


def line_keys(line: Line) -> set[str]:
    keys = {f"sku:{line.sku}"}
    for depth in range(1, len(line.category) + 1):
        keys.add("cat:" + "/".join(line.category[:depth]))
    return keys


@lru_cache(maxsize=4096)
def category_path(text: str) -> tuple[str, ...]:
    """``"drinks/coffee/"`` -> ``("drinks", "coffee")``; cached: a till sees the same few
    categories on every receipt line."""
    return tuple(part.strip() for part in text.strip("/").split("/") if part.strip())


def _str_list(value: Any) -> list[str] | None:
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() and number >= 0 else None


def _int(value: Any, low: int = 0, high: int = 10**12) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return None
    return value


_CLOCK_TIME = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])(?::([0-5][0-9]))?$")


def _parse_hhmm(value: Any) -> time | None:
    """A clock time: "08:00", "8:00" or "21:30:15"."""
    found = _CLOCK_TIME.match(value) if isinstance(value, str) else None
    if found is None:
        return None
    hour, minute, second = found.groups()
    return time(int(hour), int(minute), int(second or 0))


class ConditionCompiler:
    """Turns condition JSON into closures, collecting every error with its path."""

    def __init__(self, errors: ErrorCollector) -> None:
        self.errors = errors
        # Set when a condition compiled so far reads the member's purchase count
        # (``first_purchase``, ``nth_purchase``): the till counts purchases only for rules
        # that need it (see CompiledRule.needs_purchase_count).
        self.reads_purchases = False

    def _err(self, path: Path, message: str, code: str = "invalid_condition") -> None:
        self.errors.add(path, message, code)

    def _single(self, obj: Any, path: Path) -> tuple[str, Any] | None:
        if not isinstance(obj, dict) or len(obj) != 1:
            self._err(path, "A condition is an object with exactly one key.")
            return None
        key, value = next(iter(obj.items()))
        return key, value

    # ---- line conditions ---------------------------------------------------------------
    LINE_KEYS = frozenset(
        {
            "all",
            "any",
            "not",
            "sku",
            "sku_in",
            "category",
            "category_in",
            "brand",
            "brand_in",
            "tag",
            "tag_in",
            "attribute",
            "line_qty_gte",
            "line_amount_gte",
            "price_gte",
            "price_lte",
        }
    )

    def line(self, obj: Any, path: Path) -> tuple[LinePredicate, frozenset[str] | None]:
        """A predicate over one line, and the index keys it needs (or None)."""
        parsed = self._single(obj, path)
        if parsed is None:
            return (lambda _line: False), None
        key, value = parsed
        here = (*path, key)
        if key in ("all", "any"):
            if not isinstance(value, list) or not value:
                self._err(here, f"'{key}' takes a non-empty list of conditions.")
                return (lambda _line: False), None
            parts = [self.line(item, (*here, i)) for i, item in enumerate(value)]
            preds = [p for p, _ in parts]
            keys_list = [k for _, k in parts]
            if key == "all":
                known = [k for k in keys_list if k is not None]
                keys = min(known, key=len) if known else None
                return (lambda line: all(p(line) for p in preds)), keys
            every = [k for k in keys_list if k is not None]
            keys = frozenset().union(*every) if len(every) == len(keys_list) else None
            return (lambda line: any(p(line) for p in preds)), keys
        if key == "not":
            pred, _ = self.line(value, here)
            return (lambda line: not pred(line)), None
        if key == "sku":
            if not isinstance(value, str) or not value:
                self._err(here, "'sku' takes a SKU string.")
                return (lambda _line: False), None
            return (lambda line: line.sku == value), frozenset({f"sku:{value}"})
        if key == "sku_in":
            skus = _str_list(value)
            if skus is None:
                self._err(here, "'sku_in' takes a non-empty list of SKUs.")
                return (lambda _line: False), None
            sku_set = frozenset(skus)
            return (lambda line: line.sku in sku_set), frozenset(f"sku:{s}" for s in skus)
        if key in ("category", "category_in"):
            texts = [value] if key == "category" and isinstance(value, str) else _str_list(value)
            if not texts or not all(category_path(t) for t in texts):
                self._err(here, f"'{key}' takes category paths like 'drinks/coffee'.")
                return (lambda _line: False), None
            paths = frozenset(category_path(t) for t in texts)
            keys = frozenset("cat:" + "/".join(p) for p in paths)
            if len(paths) == 1:
                (path,) = paths
                return (lambda line: path in line.category_prefixes), keys
            return (lambda line: not paths.isdisjoint(line.category_prefixes)), keys
        if key in ("brand", "brand_in", "tag", "tag_in"):
            names = (
                [value] if key in ("brand", "tag") and isinstance(value, str) else _str_list(value)
            )
            if not names:
                self._err(here, f"'{key}' takes a name or a list of names.")
                return (lambda _line: False), None
            wanted = frozenset(names)
            if key.startswith("brand"):
                return (lambda line: line.brand in wanted), None
            return (lambda line: bool(line.tags & wanted)), None
        if key == "attribute":
            test = self._attribute(value, here)
            return (lambda line: test(line.attributes)), None
        if key in ("line_qty_gte", "line_amount_gte", "price_gte", "price_lte"):
            number = _number(value)
            if number is None:
                self._err(here, f"'{key}' takes a non-negative number.")
                return (lambda _line: False), None
            if key == "line_qty_gte":
                return (lambda line: line.qty >= number), None
            if key == "line_amount_gte":
                return (lambda line: line.amount >= number), None
            if key == "price_gte":
                return (lambda line: line.price >= number), None
            return (lambda line: line.price <= number), None
        self._err(here, f"Unknown line condition '{key}'.", "unknown_condition")
        return (lambda _line: False), None

    def _attribute(self, value: Any, path: Path) -> Callable[[dict[str, Any]], bool]:
        if (
            not isinstance(value, dict)
            or not isinstance(value.get("name"), str)
            or not (("equals" in value) ^ ("in" in value))
            or set(value) - {"name", "equals", "in"}
        ):
            self._err(path, "Use {'name': ..., 'equals': value} or {'name': ..., 'in': [...]}.")
            return lambda _attrs: False
        name = value["name"]
        if "equals" in value:
            expected = value["equals"]
            return lambda attrs: attrs.get(name) == expected
        options = value["in"]
        if not isinstance(options, list):
            self._err((*path, "in"), "'in' takes a list.")
            return lambda _attrs: False
        return lambda attrs: attrs.get(name) in options

    # ---- receipt conditions ------------------------------------------------------------
    def receipt(self, obj: Any, path: Path) -> ReceiptCondition:
        parsed = self._single(obj, path)
        if parsed is None:
            return ReceiptCondition(lambda _c, _l: False)
        key, value = parsed
        here = (*path, key)
        if key in ("all", "any"):
            if not isinstance(value, list) or not value:
                self._err(here, f"'{key}' takes a non-empty list of conditions.")
                return ReceiptCondition(lambda _c, _l: False)
            parts = [self.receipt(item, (*here, i)) for i, item in enumerate(value)]
            tests = [p.test for p in parts]
            if key == "all":
                known = [p.keys for p in parts if p.keys is not None]
                keys = min(known, key=len) if known else None

                def all_gap(ctx: Context, lines: Sequence[Line]) -> Gap | None:
                    failing = [p for p in parts if not p.test(ctx, lines)]
                    if len(failing) == 1 and failing[0].gap is not None:
                        return failing[0].gap(ctx, lines)
                    return None

                return ReceiptCondition(lambda c, ls: all(t(c, ls) for t in tests), keys, all_gap)
            keys = (
                frozenset().union(*(p.keys for p in parts if p.keys is not None))
                if all(p.keys is not None for p in parts)
                else None
            )
            return ReceiptCondition(lambda c, ls: any(t(c, ls) for t in tests), keys)
        if key == "not":
            inner = self.receipt(value, here)
            return ReceiptCondition(lambda c, ls: not inner.test(c, ls))
        if key in ("qty_gte", "amount_gte", "lines_gte"):
            return self._threshold(key, value, here)
        if key in self.LINE_KEYS:
            pred, keys = self.line(obj, path)
            return ReceiptCondition(lambda _c, ls: any(pred(line) for line in ls), keys)
        test = self._context(key, value, here)
        return ReceiptCondition(test)

    def _threshold(self, key: str, value: Any, path: Path) -> ReceiptCondition:
        """``{"qty_gte": {"of": <line condition>, "value": 3}}`` or ``{"qty_gte": 3}``."""
        of: LinePredicate = lambda _line: True  # noqa: E731 - the default selects every line
        keys: frozenset[str] | None = None
        raw = value
        if isinstance(value, dict):
            if set(value) - {"of", "value"} or "value" not in value:
                self._err(path, "Use {'of': <line condition>, 'value': number}.")
                return ReceiptCondition(lambda _c, _l: False)
            if "of" in value:
                of, keys = self.line(value["of"], (*path, "of"))
            raw = value["value"]
        threshold = _number(raw)
        if threshold is None:
            self._err(path, f"'{key}' needs a non-negative number.")
            return ReceiptCondition(lambda _c, _l: False)

        def measure(lines: Sequence[Line]) -> Decimal:
            chosen = [line for line in lines if of(line)]
            if key == "qty_gte":
                return sum((line.qty for line in chosen), Decimal(0))
            if key == "amount_gte":
                return Decimal(sum(line.amount for line in chosen))
            return Decimal(len(chosen))

        def gap(_ctx: Context, lines: Sequence[Line]) -> Gap | None:
            missing = threshold - measure(lines)
            if missing <= 0:
                return None
            kind = "amount" if key == "amount_gte" else "qty"
            return Gap(kind, int(missing) if kind == "amount" else missing)

        return ReceiptCondition(lambda _c, ls: measure(ls) >= threshold, keys, gap)

    def _context(self, key: str, value: Any, path: Path) -> ReceiptTest:
        """Conditions on where, when, who and how the purchase happens."""
        listed = _str_list(value)
        if key == "outlet_in" and listed:
            codes = frozenset(listed)
            return lambda ctx, _l: ctx.outlet_code in codes
        if key == "outlet_tag" and isinstance(value, str):
            return lambda ctx, _l: value in ctx.outlet_tags
        if key == "region_in" and listed:
            regions = frozenset(listed)
            return lambda ctx, _l: ctx.region in regions
        if key == "channel_in" and listed:
            channels = frozenset(listed)
            return lambda ctx, _l: ctx.channel in channels
        if key == "payment_method_in" and listed:
            methods = frozenset(listed)
            return lambda ctx, _l: ctx.payment_method in methods
        if key == "coupon" and isinstance(value, str) and value:
            code = value.upper()
            return lambda ctx, _l: any(c.upper() == code for c in ctx.coupons)
        if key == "tier_in" and listed:
            tiers = frozenset(listed)
            return lambda ctx, _l: ctx.member is not None and ctx.member.tier in tiers
        if key == "segment_in" and listed:
            segments = frozenset(listed)
            return lambda ctx, _l: ctx.member is not None and bool(ctx.member.segments & segments)
        if key == "club_in" and listed:
            clubs = frozenset(listed)
            return lambda ctx, _l: ctx.member is not None and bool(ctx.member.clubs & clubs)
        if key == "member_tag" and isinstance(value, str):
            return lambda ctx, _l: ctx.member is not None and value in ctx.member.tags
        if key == "member_attribute":
            test = self._attribute(value, path)
            return lambda ctx, _l: ctx.member is not None and test(ctx.member.attributes)
        if key == "member" and isinstance(value, bool):
            return lambda ctx, _l: (ctx.member is not None) is value
        if key in ("first_purchase", "nth_purchase"):
            self.reads_purchases = True
        if key == "first_purchase" and isinstance(value, bool):
            return lambda ctx, _l: (
                ctx.member is not None and (purchases_before(ctx.member) == 0) is value
            )
        if key == "nth_purchase":
            n = _int(value, 1, 100_000)
            if n is not None:
                return lambda ctx, _l: (
                    ctx.member is not None and purchases_before(ctx.member) == n - 1
                )
        if key == "weekdays":
            days = (
                value
                if isinstance(value, list)
                and value
                and all(_int(d, 1, 7) is not None for d in value)
                else None
            )
            if days is not None:
                day_set = frozenset(days)
                return lambda ctx, _l: ctx.local_time.isoweekday() in day_set
        if key == "hours" and isinstance(value, dict) and set(value) == {"from", "to"}:
            start, end = _parse_hhmm(value["from"]), _parse_hhmm(value["to"])
            if start is not None and end is not None:

                def within(ctx: Context, _l: Sequence[Line]) -> bool:
                    now = ctx.local_time.time().replace(tzinfo=None)
                    if start <= end:
                        return start <= now < end
                    return now >= start or now < end  # spans midnight

                return within
        if key == "date_between" and isinstance(value, dict) and set(value) <= {"from", "to"}:
            try:
                first = date.fromisoformat(value["from"]) if "from" in value else date.min
                last = date.fromisoformat(value["to"]) if "to" in value else date.max
            except (TypeError, ValueError):
                pass
            else:
                return lambda ctx, _l: first <= ctx.local_time.date() <= last
        if key == "birthday_window" and isinstance(value, dict) and set(value) == {"days"}:
            window = _int(value["days"], 0, 31)
            if window is not None:
                return lambda ctx, _l: _near_birthday(ctx, window)
        known = {
            "outlet_in",
            "outlet_tag",
            "region_in",
            "channel_in",
            "payment_method_in",
            "coupon",
            "tier_in",
            "segment_in",
            "club_in",
            "member_tag",
            "member_attribute",
            "member",
            "first_purchase",
            "nth_purchase",
            "weekdays",
            "hours",
            "date_between",
            "birthday_window",
        }
        if key in known:
            self._err(path, f"Invalid value for '{key}'.", "invalid_condition_value")
        else:
            self._err(path, f"Unknown condition '{key}'.", "unknown_condition")
        return lambda _c, _l: False


def purchases_before(member: MemberFacts) -> int:
    """The member's confirmed purchases before this one; refuses loudly if whoever built
    the facts skipped counting them (a rule that needs the count must never see a guess)."""
    if not member.purchases_known:
        raise RuntimeError("The member's purchase count was not loaded for a rule that needs it.")
    return member.purchases_before


def _near_birthday(ctx: Context, days: int) -> bool:
    """Within ±``days`` of the birthday, in the tenant's calendar; 29 February is
    celebrated on 28 February in other years."""
    if ctx.member is None or ctx.member.birthday is None:
        return False
    month, day = ctx.member.birthday
    today = ctx.tenant_today
    for year in (today.year - 1, today.year, today.year + 1):
        try:
            celebrated = date(year, month, day)
        except ValueError:
            celebrated = date(year, 2, 28)
        if abs((today - celebrated).days) <= days:
            return True
    return False
