"""What a member (and the staff at the till) read about a club membership, in ru and en."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from kopilka.domain.rules.explain import format_money

Text = dict[str, str]
_PERIOD = {"month": ("месяц", "month"), "year": ("год", "year")}


def moment_text(moment: datetime, timezone: str) -> tuple[str, str]:
    """A moment on the tenant's wall clock: ("15.02.2026 09:00", "2026-02-15 09:00")."""
    local = moment.astimezone(ZoneInfo(timezone))
    return local.strftime("%d.%m.%Y %H:%M"), local.strftime("%Y-%m-%d %H:%M")


def joined(name: Text) -> Text:
    return {
        "ru": f"Вступление в клуб «{name['ru']}»",
        "en": f"Joined the club “{name['en']}”",
    }


def awaiting_payment(name: Text, amount: int, period: str, currency: str) -> Text:
    money = format_money(amount, currency)
    ru_period, en_period = _PERIOD[period]
    return {
        "ru": f"Вступление в клуб «{name['ru']}»: членство начнётся после оплаты взноса "
        f"{money} за {ru_period}",
        "en": f"Joined the club “{name['en']}”: membership starts once the fee of {money} "
        f"a {en_period} is paid",
    }


def requested(name: Text) -> Text:
    return {
        "ru": f"Заявка на вступление в клуб «{name['ru']}» ждёт одобрения",
        "en": f"Request to join the club “{name['en']}” awaits approval",
    }


def approved(name: Text) -> Text:
    return {
        "ru": f"Заявка на вступление в клуб «{name['ru']}» одобрена",
        "en": f"Request to join the club “{name['en']}” approved",
    }


def rejected(name: Text, reason: str | None) -> Text:
    tail = f": {reason}" if reason else ""
    return {
        "ru": f"Заявка на вступление в клуб «{name['ru']}» отклонена{tail}",
        "en": f"Request to join the club “{name['en']}” declined{tail}",
    }


def left(name: Text) -> Text:
    return {"ru": f"Выход из клуба «{name['ru']}»", "en": f"Left the club “{name['en']}”"}


def cancelled(name: Text, until: datetime | None, timezone: str) -> Text:
    if until is None:
        return {
            "ru": f"Членство в клубе «{name['ru']}» отменено",
            "en": f"Membership of the club “{name['en']}” cancelled",
        }
    ru, en = moment_text(until, timezone)
    return {
        "ru": f"Членство в клубе «{name['ru']}» отменено без продления: привилегии действуют "
        f"до {ru}",
        "en": f"Membership of the club “{name['en']}” cancelled, no renewal: benefits last "
        f"until {en}",
    }


def paid(
    name: Text, amount: int, currency: str, period: str, until: datetime, timezone: str
) -> Text:
    money = format_money(amount, currency)
    ru_period, en_period = _PERIOD[period]
    ru, en = moment_text(until, timezone)
    return {
        "ru": f"Оплачен взнос клуба «{name['ru']}»: {money} за {ru_period}, членство "
        f"действует до {ru}",
        "en": f"Fee of the club “{name['en']}” paid: {money} for a {en_period}, membership "
        f"runs until {en}",
    }


def in_grace(name: Text, ended: datetime, grace_until: datetime, timezone: str) -> Text:
    ru_end, en_end = moment_text(ended, timezone)
    ru_grace, en_grace = moment_text(grace_until, timezone)
    return {
        "ru": f"Оплаченный период клуба «{name['ru']}» закончился {ru_end}; привилегии "
        f"сохранятся до {ru_grace}, если взнос будет оплачен",
        "en": f"The paid period of the club “{name['en']}” ended on {en_end}; benefits "
        f"continue until {en_grace} while the fee is awaited",
    }


def lapsed(name: Text, ended: datetime, timezone: str) -> Text:
    ru, en = moment_text(ended, timezone)
    return {
        "ru": f"Членство в клубе «{name['ru']}» истекло {ru}: взнос не оплачен",
        "en": f"Membership of the club “{name['en']}” lapsed on {en}: the fee was not paid",
    }


def welcome_label(name: Text) -> Text:
    """The ledger's description of the welcome points (``params["label"]``)."""
    return {
        "ru": f"Бонус за вступление в клуб «{name['ru']}»",
        "en": f"Welcome to the club “{name['en']}”",
    }


def status_text(
    name: Text,
    status: str,
    benefits: bool,
    paid_until: datetime | None,
    grace_until: datetime | None,
    timezone: str,
) -> Text:
    """One line on the state of a membership, for the till's screen."""
    ru_name, en_name = name["ru"], name["en"]
    if status == "active" and paid_until is not None:
        ru, en = moment_text(paid_until, timezone)
        return {
            "ru": f"Участник клуба «{ru_name}», оплачено до {ru}",
            "en": f"Member of the club “{en_name}”, paid until {en}",
        }
    if status == "active":
        return {"ru": f"Участник клуба «{ru_name}»", "en": f"Member of the club “{en_name}”"}
    if status == "grace" and grace_until is not None:
        ru, en = moment_text(grace_until, timezone)
        return {
            "ru": f"Участник клуба «{ru_name}»: взнос не оплачен, привилегии до {ru}",
            "en": f"Member of the club “{en_name}”: fee due, benefits until {en}",
        }
    if status == "cancelled" and benefits and paid_until is not None:
        ru, en = moment_text(paid_until, timezone)
        return {
            "ru": f"Участник клуба «{ru_name}» до {ru}, без продления",
            "en": f"Member of the club “{en_name}” until {en}, not renewing",
        }
    texts = {
        "pending": ("заявка ждёт одобрения", "request awaits approval"),
        "unpaid": ("ждёт оплаты взноса", "awaits the fee"),
        "lapsed": ("членство истекло", "membership lapsed"),
        "cancelled": ("членство закончилось", "membership ended"),
        "left": ("участник вышел из клуба", "left the club"),
        "rejected": ("заявка отклонена", "request declined"),
        "grace": ("взнос не оплачен", "fee due"),
    }
    ru_state, en_state = texts.get(status, (status, status))
    return {"ru": f"Клуб «{ru_name}»: {ru_state}", "en": f"Club “{en_name}”: {en_state}"}
