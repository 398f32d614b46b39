"""What a member reads about a stamp card, in Russian and English, with plural forms
("1 штамп", "2 штампа", "5 штампов"; "1 stamp", "2 stamps")."""

from __future__ import annotations

from typing import Any

from kopilka.domain.ledger.descriptions import ru_plural
from kopilka.domain.rules.explain import format_money

Text = dict[str, str]


def stamps_ru(n: int) -> str:
    return f"{n:,}".replace(",", "\u00a0") + " " + ("штамп", "штампа", "штампов")[ru_plural(n)]


def stamps_en(n: int) -> str:
    return f"{n:,} stamp{'' if abs(n) == 1 else 's'}"


def _items_ru(n: int) -> str:
    return f"{n} " + ("товар", "товара", "товаров")[ru_plural(n)]


def _items_en(n: int) -> str:
    return f"{n} item{'' if n == 1 else 's'}"


def _coupons_ru(n: int) -> str:
    return f"{n} " + ("купон", "купона", "купонов")[ru_plural(n)]


def _coupons_en(n: int) -> str:
    return "a coupon" if n == 1 else f"{n} coupons"


def _join(parts: list[Text]) -> Text:
    return {lang: " ".join(p[lang] for p in parts) for lang in ("ru", "en")}


def free_item_effect(name: Text, units: int, discount: int, currency: str) -> Text:
    """The till's line in ``applied``: the free item taken with a full card."""
    money = format_money(discount, currency)
    return {
        "ru": f"Бесплатно по карте «{name['ru']}»: {_items_ru(units)} — {money}",
        "en": f"Free with the “{name['en']}” stamp card: {_items_en(units)} — {money}",
    }


def till_status(
    name: Text,
    *,
    size: int,
    earned: int,
    rewards: int,
    discount: int,
    balance: int,
    debt: int,
    to_go: int,
    waiting: int,
    coupons: int,
    currency: str,
) -> Text:
    """The card as the receipt leaves it: stamps earned, the free item, what is next."""
    parts: list[Text] = []
    if earned:
        parts.append(
            {
                "ru": f"+{stamps_ru(earned)} на карте «{name['ru']}».",
                "en": f"+{stamps_en(earned)} on the “{name['en']}” card.",
            }
        )
    else:
        parts.append(
            {"ru": f"Карта «{name['ru']}».", "en": f"The “{name['en']}” card."},
        )
    if rewards:
        money = format_money(discount, currency)
        parts.append(
            {
                "ru": f"Бесплатно по заполненной карте: {_items_ru(rewards)} на {money}.",
                "en": f"Free with the full card: {_items_en(rewards)} worth {money}.",
            }
        )
    if coupons:
        parts.append(
            {
                "ru": f"Карта заполнена: вы получите {_coupons_ru(coupons)}.",
                "en": f"The card is full: you get {_coupons_en(coupons)}.",
            }
        )
    elif waiting:
        parts.append(
            {
                "ru": "Карта заполнена: бесплатный товар ждёт вас.",
                "en": "The card is full: a free item is waiting for you.",
            }
        )
    else:
        parts.append(
            {
                "ru": f"Собрано {balance} из {size}, до награды ещё {stamps_ru(to_go)}.",
                "en": f"{balance} of {size} collected, {stamps_en(to_go)} to go to the reward.",
            }
        )
    if debt:
        parts.append(
            {
                "ru": f"После возврата покупки в счёт долга "
                f"{'пойдёт' if ru_plural(debt) == 0 else 'пойдут'} {stamps_ru(debt)}.",
                "en": f"After a refund, the next {stamps_en(debt)} pay back what is owed.",
            }
        )
    return _join(parts)


def describe_movement(
    kind: str,
    name: Text,
    *,
    earned: int,
    rewards: int,
    stamps: int,
    debt: int,
    details: dict[str, Any],
) -> Text:
    """One line of a card's history (the sentence is made on reading, like the ledger's)."""
    parts: list[Text] = []
    card = {"ru": f"«{name['ru']}»", "en": f"“{name['en']}”"}
    coupons = len(details.get("coupons") or [])
    if kind == "purchase":
        free = rewards - coupons  # the rest of the rewards are the coupons below
        if earned or not free:
            parts.append(
                {
                    "ru": f"Покупка: +{stamps_ru(earned)} на карте {card['ru']}.",
                    "en": f"Purchase: +{stamps_en(earned)} on the {card['en']} card.",
                }
            )
        if free:
            parts.append(
                {
                    "ru": f"Бесплатно по заполненной карте {card['ru']}: {_items_ru(free)}.",
                    "en": f"Free with the full {card['en']} card: {_items_en(free)}.",
                }
            )
    elif kind == "refund":
        removed = int(details.get("stamps_removed", 0))
        if removed or rewards >= 0:
            parts.append(
                {
                    "ru": f"Возврат покупки: −{stamps_ru(removed)} с карты {card['ru']}.",
                    "en": f"Refund: {stamps_en(removed)} taken off the {card['en']} card.",
                }
            )
        if rewards < 0:
            back = -rewards
            parts.append(
                {
                    "ru": f"Возврат бесплатного товара ({_items_ru(back)}): "
                    f"награда снова на карте {card['ru']}.",
                    "en": f"The free item came back ({_items_en(back)}), and so did its reward "
                    f"on the {card['en']} card.",
                }
            )
        forgiven = int(details.get("forgiven", 0))
        if forgiven:
            parts.append(
                {
                    "ru": f"Не списано, так как штампов уже нет: {stamps_ru(forgiven)}.",
                    "en": f"{stamps_en(forgiven)} no longer on the card were let go.",
                }
            )
    elif kind == "adjustment":
        reason = details.get("reason")
        tail = f" — {reason}" if reason else ""
        delta = int(details.get("stamps", stamps))
        sign = "+" if delta > 0 else "−"
        parts.append(
            {
                "ru": f"Корректировка карты {card['ru']}: {sign}{stamps_ru(abs(delta))}{tail}.",
                "en": f"{card['en']} card adjusted: {sign}{stamps_en(abs(delta))}{tail}.",
            }
        )
    elif kind == "expiry":
        parts.append(
            {
                "ru": f"{'Сгорел' if ru_plural(stamps) == 0 else 'Сгорели'} "
                f"{stamps_ru(-stamps)} на карте {card['ru']}: "
                "долго не было новых штампов.",
                "en": f"{stamps_en(-stamps)} on the {card['en']} card expired: "
                "no new stamps for too long.",
            }
        )
    if coupons:
        parts.append(
            {
                "ru": f"Карта заполнена: {'выдан' if ru_plural(coupons) == 0 else 'выдано'} "
                f"{_coupons_ru(coupons)}.",
                "en": f"The card filled up: {_coupons_en(coupons)} issued.",
            }
        )
    if debt > 0:
        parts.append(
            {
                "ru": f"В долг записано: {stamps_ru(debt)}.",
                "en": f"{stamps_en(debt)} owed.",
            }
        )
    elif debt < 0:
        parts.append(
            {
                "ru": f"Погашен долг: {stamps_ru(-debt)}.",
                "en": f"Stamps owed paid back: {stamps_en(-debt)}.",
            }
        )
    return _join(parts)
