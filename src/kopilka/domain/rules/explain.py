"""Plain-language explanations of effects and near misses, in Russian and English."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from kopilka.domain.ledger.descriptions import ru_plural
from kopilka.domain.rules.conditions import Gap

_SYMBOLS = {"RUB": "₽", "KZT": "₸", "BYN": "Br", "USD": "$", "EUR": "€"}


def format_money(minor: int, currency: str = "RUB") -> str:
    """1 500,50 ₽ — whole units without decimals when there are no kopecks."""
    major, cents = divmod(abs(minor), 100)
    text = f"{major:,}".replace(",", "\u00a0")
    if cents:
        text += f",{cents:02d}"
    sign = "-" if minor < 0 else ""
    return f"{sign}{text}\u00a0{_SYMBOLS.get(currency, currency)}"


def _points_ru(n: int) -> str:
    """ "1 балл", "2 балла", "5 баллов"."""
    return f"{n} " + ("балл", "балла", "баллов")[ru_plural(n)]


def _points_en(n: int) -> str:
    return f"{n} point{'' if abs(n) == 1 else 's'}"


def _num(value: Any) -> str:
    number = Decimal(str(value)).normalize()
    return format(number, "f")


def describe_effect(
    kind: str,
    rule_name: dict[str, str],
    discount: int,
    points: int,
    params: dict[str, Any],
    currency: str,
) -> dict[str, str]:
    ru_name, en_name = rule_name["ru"], rule_name["en"]
    money = format_money(discount, currency)
    value = params.get("value", "0")
    if kind == "discount_percent":
        return {
            "ru": f"Скидка {_num(value)}% — {money} ({ru_name})",
            "en": f"{_num(value)}% off — {money} ({en_name})",
        }
    if kind in ("discount_amount", "fixed_price"):
        return {"ru": f"Скидка {money} ({ru_name})", "en": f"{money} off ({en_name})"}
    if kind == "cheapest_free":
        return {
            "ru": f"Самый дешёвый товар бесплатно — {money} ({ru_name})",
            "en": f"Cheapest item free — {money} ({en_name})",
        }
    if kind == "buy_n_get_free":
        n, free = params.get("n"), params.get("free")
        return {
            "ru": f"{n}+{free}: {money} ({ru_name})",
            "en": f"Buy {n} get {free} free: {money} ({en_name})",
        }
    if kind == "points_percent":
        return {
            "ru": f"+{_points_ru(points)}: {_num(value)}% от суммы оплаты ({ru_name})",
            "en": f"+{_points_en(points)}: {_num(value)}% of the amount paid ({en_name})",
        }
    if kind == "points_per_unit":
        return {
            "ru": f"+{_points_ru(points)}: {_num(value)} за каждую единицу товара ({ru_name})",
            "en": f"+{_points_en(points)}: {_num(value)} per item ({en_name})",
        }
    if kind == "points_fixed":
        return {
            "ru": f"+{_points_ru(points)} за покупку ({ru_name})",
            "en": f"+{_points_en(points)} for the purchase ({en_name})",
        }
    if kind == "points_multiplier":
        return {
            "ru": f"Баллы ×{_num(value)}: ещё +{points} ({ru_name})",
            "en": f"Points ×{_num(value)}: +{points} more ({en_name})",
        }
    if kind == "gift":
        return {
            "ru": f"Подарок: {params.get('name') or params.get('sku')} ({ru_name})",
            "en": f"Gift: {params.get('name') or params.get('sku')} ({en_name})",
        }
    if kind == "issue_coupon":
        return {
            "ru": f"Купон на следующую покупку ({ru_name})",
            "en": f"A coupon for your next purchase ({en_name})",
        }
    return {"ru": ru_name, "en": en_name}


def describe_near_miss(gap: Gap, rule_name: dict[str, str], currency: str) -> dict[str, str]:
    if gap.kind == "amount":
        money = format_money(int(gap.missing), currency)
        return {
            "ru": f"Добавьте покупок ещё на {money}, чтобы получить: {rule_name['ru']}",
            "en": f"Spend {money} more to get: {rule_name['en']}",
        }
    qty = _num(gap.missing)
    return {
        "ru": f"Купите ещё {qty} шт., чтобы получить: {rule_name['ru']}",
        "en": f"Buy {qty} more to get: {rule_name['en']}",
    }
