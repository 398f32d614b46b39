"""What customers and cashiers read about campaigns, in Russian and English."""

from __future__ import annotations

from kopilka.domain.ledger.descriptions import ru_plural

# Why a campaign that matched the receipt does not apply to it (the till's answer).
REASONS: dict[str, dict[str, str]] = {
    "conditions": {
        "ru": "Условия акции не выполнены",
        "en": "The campaign's conditions are not met",
    },
    "budget_exhausted": {"ru": "Бюджет акции исчерпан", "en": "The campaign's budget is spent"},
    "member_limit": {
        "ru": "Лимит акции для участника исчерпан",
        "en": "The member has reached the campaign's limit",
    },
    "receipt_limit": {
        "ru": "Скидка по акции превышает лимит на чек",
        "en": "The campaign's discount would exceed its per-receipt limit",
    },
    "not_combinable": {
        "ru": "Не суммируется с другой акцией",
        "en": "Does not combine with another campaign",
    },
    "control_group": {
        "ru": "Участник в контрольной группе акции",
        "en": "The member is in the campaign's control group",
    },
    "changed": {
        "ru": "Акция изменена или приостановлена",
        "en": "The campaign was changed or paused",
    },
}


def _points_ru(n: int) -> str:
    return f"{n} " + ("балл", "балла", "баллов")[ru_plural(n)]


def _points_en(n: int) -> str:
    return f"{n} point{'' if n == 1 else 's'}"


def capped(name: dict[str, str], points: int, limit: int) -> dict[str, str]:
    """An effect whose points were cut to the campaign's per-receipt limit."""
    return {
        "ru": f"+{_points_ru(points)} по акции «{name['ru']}» "
        f"(не больше {_points_ru(limit)} за чек)",
        "en": f"+{_points_en(points)} from “{name['en']}” (at most {_points_en(limit)} a receipt)",
    }
