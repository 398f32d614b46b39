"""What people read about a gift card, in Russian and English: the balance answer and the
card's history. Money is shown with its currency sign ("1 500,50 ₽")."""

from __future__ import annotations

from typing import Any

from kopilka.domain.rules.explain import format_money

Text = dict[str, str]


def balance_message(status: str, balance: int, currency: str, valid_through: str | None) -> Text:
    """The sentence a till or a website shows after a balance enquiry."""
    money = format_money(balance, currency)
    if status == "active":
        if valid_through is None:
            return {
                "ru": f"На карте {money}, без срока действия",
                "en": f"{money} on the card, no expiry date",
            }
        return {
            "ru": f"На карте {money}, действует до {valid_through} включительно",
            "en": f"{money} on the card, valid through {valid_through}",
        }
    return {
        "issued": {
            "ru": "Карта ещё не активирована",
            "en": "The card is not activated yet",
        },
        "blocked": {
            "ru": "Карта заблокирована, оплатить ею нельзя",
            "en": "The card is blocked and cannot pay",
        },
        "replaced": {
            "ru": "Карта заменена на новую, остаток перенесён на неё",
            "en": "The card was replaced; its balance moved to the new card",
        },
        "expired": {
            "ru": "Срок действия карты истёк",
            "en": "The card has expired",
        },
    }.get(status, {"ru": "Карта недоступна", "en": "The card is not available"})


def describe(kind: str, amount: int | None, currency: str, params: dict[str, Any]) -> Text:
    """One line of the card's history (``kind`` as in ``GiftCardService.history``)."""
    money = format_money(abs(amount or 0), currency)
    other = params.get("other_card") or ""
    receipt = params.get("receipt_number")
    reason = params.get("reason")
    tail_ru = f", чек {receipt}" if receipt else ""
    tail_en = f", receipt {receipt}" if receipt else ""
    why = f" — {reason}" if reason else ""
    texts: dict[str, Text] = {
        "issued": {"ru": f"Карта продана на {money}", "en": f"Card sold for {money}"},
        "activated": {
            "ru": f"Карта активирована, зачислено {money}",
            "en": f"Card activated, {money} loaded",
        },
        "payment": {
            "ru": f"Оплата покупки: {money}{tail_ru}",
            "en": f"Paid for a purchase: {money}{tail_en}",
        },
        "refund": {
            "ru": f"Возврат на карту: {money}{tail_ru}",
            "en": f"Refunded to the card: {money}{tail_en}",
        },
        "expiry": {
            "ru": f"Срок действия истёк, сгорело {money}",
            "en": f"Expired: {money} written off",
        },
        "moved_out": {
            "ru": f"Остаток {money} перенесён на новую карту {other}",
            "en": f"Balance of {money} moved to the new card {other}",
        },
        "moved_in": {
            "ru": f"Остаток {money} перенесён со старой карты {other}",
            "en": f"Balance of {money} moved from the old card {other}",
        },
        "blocked": {"ru": f"Карта заблокирована{why}", "en": f"Card blocked{why}"},
        "unblocked": {"ru": "Карта разблокирована", "en": "Card unblocked"},
        "replaced": {
            "ru": f"Карта заменена на {other}{why}",
            "en": f"Card replaced by {other}{why}",
        },
        "reissued": {
            "ru": f"Карта выпущена взамен {other}",
            "en": f"Card issued to replace {other}",
        },
        "expired": {"ru": "Срок действия карты истёк", "en": "The card expired"},
    }
    return texts.get(kind, {"ru": f"Операция: {money}", "en": f"Operation: {money}"})
