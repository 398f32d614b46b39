"""What a customer reads about a coupon, in Russian and English: what it gives, and why the
till did or did not accept it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from kopilka.domain.ledger.descriptions import ru_plural
from kopilka.domain.rules.explain import format_money

Text = dict[str, str]

_RU_MONTHS = (
    "января",
    "февраля",
    "марта",
    "апреля",
    "мая",
    "июня",
    "июля",
    "августа",
    "сентября",
    "октября",
    "ноября",
    "декабря",
)
_EN_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_POINTS_RU = ("балл", "балла", "баллов")
_TIMES_RU = ("раза", "раз", "раз")  # "не больше 1 раза / 2 раз / 5 раз"
_COUPONS_RU = ("купона", "купонов", "купонов")  # "не больше 1 купона / 3 купонов"
_CHANNEL_RU = {"store": "в магазине", "online": "для покупок онлайн", "app": "в приложении"}
_CHANNEL_EN = {"store": "in-store", "online": "online", "app": "in-app"}


def money(minor: int, currency: str) -> Text:
    """ "1 500 ₽" (ru) and "1,500 ₽" (en); kopecks only when there are some."""
    major, cents = divmod(abs(minor), 100)
    en = f"{major:,}" + (f".{cents:02d}" if cents else "")
    symbol = format_money(0, currency).split("\u00a0")[-1]
    return {"ru": format_money(minor, currency), "en": f"{'-' if minor < 0 else ''}{en} {symbol}"}


def day(value: date) -> Text:
    """ "31 мая 2026" / "31 May 2026"."""
    return {
        "ru": f"{value.day} {_RU_MONTHS[value.month - 1]} {value.year}",
        "en": f"{value.day} {_EN_MONTHS[value.month - 1]} {value.year}",
    }


def last_day(valid_until: datetime, timezone: str) -> date:
    """The last local day a coupon valid until ``valid_until`` (exclusive) can be used."""
    return (valid_until - timedelta(microseconds=1)).astimezone(ZoneInfo(timezone)).date()


def first_day(valid_from: datetime, timezone: str) -> date:
    return valid_from.astimezone(ZoneInfo(timezone)).date()


def _points(n: int) -> Text:
    return {
        "ru": f"{n:,}".replace(",", "\u00a0") + " " + _POINTS_RU[ru_plural(n)],
        "en": f"{n:,} point{'' if n == 1 else 's'}",
    }


def benefit_text(benefit: Mapping[str, Any], currency: str) -> Text:
    """What a coupon gives, in a few words: "скидка 10%" / "10% off"."""
    if not benefit:
        return {"ru": "бонус к покупке", "en": "a purchase benefit"}
    kind, value = next(iter(benefit.items()))
    if kind == "discount_percent":
        return {"ru": f"скидка {value}%", "en": f"{value}% off"}
    if kind == "discount_amount":
        amount = value.get("value", 0) if isinstance(value, dict) else value
        m = money(int(amount), currency)
        return {"ru": f"скидка {m['ru']}", "en": f"{m['en']} off"}
    if kind == "fixed_price":
        m = money(int(value), currency)
        return {"ru": f"цена {m['ru']}", "en": f"a price of {m['en']}"}
    if kind == "cheapest_free":
        return {"ru": "самый дешёвый товар бесплатно", "en": "the cheapest item free"}
    if kind == "buy_n_get_free" and isinstance(value, dict):
        n, free = value.get("n"), value.get("free")
        return {"ru": f"{n}+{free} бесплатно", "en": f"buy {n} get {free} free"}
    if kind == "points_percent":
        return {"ru": f"{value}% баллами", "en": f"{value}% back in points"}
    if kind == "points_fixed":
        p = _points(int(value))
        return {"ru": f"+{p['ru']}", "en": f"+{p['en']}"}
    if kind == "points_per_unit":
        p = _points(int(value))
        return {"ru": f"+{p['ru']} за каждый товар", "en": f"+{p['en']} per item"}
    if kind == "points_multiplier":
        return {"ru": f"баллы ×{value}", "en": f"points ×{value}"}
    if kind == "gift" and isinstance(value, dict):
        item = value.get("name") or value.get("sku")
        return {"ru": f"подарок: {item}", "en": f"a gift: {item}"}
    if kind == "issue_coupon":
        return {"ru": "купон на следующую покупку", "en": "a coupon for the next purchase"}
    return {"ru": "бонус к покупке", "en": "a purchase benefit"}


def describe(
    benefit: Mapping[str, Any],
    min_basket: int,
    valid_until: datetime | None,
    timezone: str,
    currency: str,
) -> Text:
    """A coupon in one sentence: "Скидка 10% при покупке от 1 500 ₽, до 31 мая 2026"."""
    what = benefit_text(benefit, currency)
    ru, en = what["ru"][:1].upper() + what["ru"][1:], what["en"][:1].upper() + what["en"][1:]
    if min_basket:
        m = money(min_basket, currency)
        ru += f" при покупке от {m['ru']}"
        en += f" on a basket of {m['en']} or more"
    if valid_until is not None:
        d = day(last_day(valid_until, timezone))
        ru += f", до {d['ru']} включительно"
        en += f", valid through {d['en']}"
    return {"ru": ru, "en": en}


def applied(discount: int, points: int, currency: str) -> Text:
    """ "Купон применён: скидка 150 ₽" / "Coupon applied: 150 ₽ off"."""
    ru_parts, en_parts = [], []
    if discount:
        m = money(discount, currency)
        ru_parts.append(f"скидка {m['ru']}")
        en_parts.append(f"{m['en']} off")
    if points:
        p = _points(points)
        ru_parts.append(f"+{p['ru']}")
        en_parts.append(f"+{p['en']}")
    if not ru_parts:
        return {"ru": "Купон применён", "en": "Coupon applied"}
    return {
        "ru": "Купон применён: " + ", ".join(ru_parts),
        "en": "Coupon applied: " + ", ".join(en_parts),
    }


def rejection(reason: str, **facts: Any) -> Text:
    """Why the till did not accept a coupon; ``facts`` fill the sentence (a date, a sum)."""
    if reason == "expired":
        d = day(facts["day"])
        return {"ru": f"Срок действия купона истёк {d['ru']}", "en": f"Expired on {d['en']}"}
    if reason == "not_yet_valid":
        d = day(facts["day"])
        return {"ru": f"Купон действует с {d['ru']}", "en": f"Valid from {d['en']}"}
    if reason == "min_basket":
        m = money(facts["amount"], facts["currency"])
        return {"ru": f"Минимальная сумма покупки {m['ru']}", "en": f"Minimum basket {m['en']}"}
    if reason == "member_limit_reached":
        limit = int(facts["limit"])
        if limit == 1:
            return {
                "ru": "Вы уже использовали этот купон",
                "en": "You have already used this coupon",
            }
        times = f"{limit:,}".replace(",", "\u00a0") + " " + _TIMES_RU[ru_plural(limit)]
        return {
            "ru": f"Купон можно использовать не больше {times}",
            "en": f"The coupon can be used at most {limit:,} times per customer",
        }
    if reason == "too_many_coupons":
        limit = int(facts["limit"])
        return {
            "ru": f"Не больше {limit} {_COUPONS_RU[ru_plural(limit)]} на один чек",
            "en": f"At most {limit} coupon{'' if limit == 1 else 's'} per receipt",
        }
    if reason == "wrong_channel":
        channel = str(facts["channel"])
        return {
            "ru": f"Купон не действует {_CHANNEL_RU.get(channel, channel)}",
            "en": f"The coupon is not valid for {_CHANNEL_EN.get(channel, channel)} purchases",
        }
    ru, en = _FIXED.get(reason, _FIXED["unknown_coupon"])
    return {"ru": ru, "en": en}


_FIXED: dict[str, tuple[str, str]] = {
    "invalid_code": ("Неверный формат кода купона", "This is not a valid coupon code"),
    "unknown_coupon": ("Купон не найден", "Coupon not found"),
    "duplicate_coupon": (
        "Этот купон уже указан в чеке",
        "This coupon is already on the receipt",
    ),
    "coupon_voided": ("Купон аннулирован", "The coupon was cancelled"),
    "already_used": ("Купон уже использован", "Already used"),
    "member_required": (
        "Купон действует только для участников программы: предъявите карту",
        "For loyalty members only: present the card",
    ),
    "other_member": (
        "Купон выписан на другого участника",
        "This coupon belongs to another member",
    ),
    "wrong_outlet": ("Купон не действует в этом магазине", "Not valid in this outlet"),
    "not_combinable": (
        "Купон не суммируется с другими купонами",
        "Cannot be combined with other coupons",
    ),
    "no_program": ("Сейчас купоны не принимаются", "Coupons are not accepted at the moment"),
    "program_not_in_force": (
        "Акция этого купона сейчас не действует",
        "The coupon's promotion is not running now",
    ),
    "no_eligible_items": (
        "В чеке нет товаров, на которые действует купон",
        "Nothing on the receipt the coupon applies to",
    ),
    "no_benefit": (
        "Купон не даёт скидки на товары этого чека",
        "The coupon gives nothing on this receipt",
    ),
    "blocked_by_promotion": (
        "Купон не суммируется с акцией, уже применённой к чеку",
        "Cannot be combined with the promotion applied to the receipt",
    ),
    "conditions_not_met": (
        "Условия акции не выполнены",
        "The promotion's conditions are not met",
    ),
}

REASONS = frozenset(
    {
        *_FIXED,
        "expired",
        "not_yet_valid",
        "min_basket",
        "member_limit_reached",
        "too_many_coupons",
        "wrong_channel",
    }
)
