"""Plain-language explanations of tier changes and of the progress to the next level, in
Russian and English. History rows store the reason and the numbers; the sentence is made on
reading, like ledger descriptions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from kopilka.domain.ledger.descriptions import ru_plural
from kopilka.domain.rules.explain import format_money
from kopilka.domain.tiers.settings import Metric

_SYMBOLS = {"RUB": "₽", "KZT": "₸", "BYN": "Br", "USD": "$", "EUR": "€"}
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
_EN_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
Texts = dict[str, str]


def money_en(minor: int, currency: str = "RUB") -> str:
    """3,200 ₽ — or 3,200.50 ₽ with kopecks."""
    major, cents = divmod(abs(minor), 100)
    text = f"{major:,}" + (f".{cents:02d}" if cents else "")
    return f"{'-' if minor < 0 else ''}{text}\u00a0{_SYMBOLS.get(currency, currency)}"


def amount(metric: Metric, value: int, currency: str) -> Texts:
    """A qualification amount: money, purchases or points."""
    if metric == "spent":
        return {"ru": format_money(value, currency), "en": money_en(value, currency)}
    number_ru = f"{value:,}".replace(",", "\u00a0")
    if metric == "purchases":
        noun = ("покупка", "покупки", "покупок")[ru_plural(value)]
        return {"ru": f"{number_ru} {noun}", "en": f"{value:,} purchase{_s(value)}"}
    noun = ("балл", "балла", "баллов")[ru_plural(value)]
    return {"ru": f"{number_ru} {noun}", "en": f"{value:,} point{_s(value)}"}


def _s(n: int) -> str:
    return "" if abs(n) == 1 else "s"


def day_text(day: date, today: date | None = None) -> Texts:
    """ "31 декабря" / "31 Dec", with the year unless it is ``today``'s."""
    year = "" if today is not None and today.year == day.year else f" {day.year}"
    return {
        "ru": f"{day.day} {_RU_MONTHS[day.month - 1]}{year}",
        "en": f"{day.day} {_EN_MONTHS[day.month - 1]}{year}",
    }


def _done(metric: Metric, value: int, needed: int, currency: str) -> Texts:
    """ "вы потратили 48 300 ₽, а нужно было 40 000 ₽" / "you spent 48,300 ₽ of the 40,000 ₽
    needed"."""
    v, n = amount(metric, value, currency), amount(metric, needed, currency)
    verb_ru, verb_en = {
        "spent": ("вы потратили", "you spent"),
        "purchases": ("вы совершили", "you made"),
        "points": ("вы набрали", "you earned"),
    }[metric]
    return {
        "ru": f"{verb_ru} {v['ru']}, а нужно было {n['ru']}",
        "en": f"{verb_en} {v['en']} of the {n['en']} needed",
    }


@dataclass(frozen=True)
class Change:
    """A history row, as the explanation needs it; level names are ``{ru, en}``."""

    reason: str
    from_name: Texts | None
    to_name: Texts
    metric: Metric
    value: int | None = None
    needed: int | None = None
    grace_until: date | None = None
    locked_until: date | None = None
    note: str | None = None


def explain_change(change: Change, currency: str) -> Texts:
    """Why the member's tier is what it is: one sentence per language."""
    to, was = change.to_name, change.from_name or change.to_name
    done: Texts | None = None
    if change.value is not None and change.needed is not None:
        done = _done(change.metric, change.value, change.needed, currency)
    tail = {k: f": {v}" for k, v in done.items()} if done else {"ru": "", "en": ""}
    if change.reason == "enrolled":
        return {"ru": f"Начальный статус: {to['ru']}", "en": f"Starting status: {to['en']}"}
    if change.reason == "upgraded":
        return {
            "ru": f"Новый статус {to['ru']}{tail['ru']}",
            "en": f"Upgraded to {to['en']}{tail['en']}",
        }
    if change.reason == "kept":
        return {
            "ru": f"Статус {was['ru']} сохранён{tail['ru']}",
            "en": f"{was['en']} kept{tail['en']}",
        }
    if change.reason == "grace":
        until = day_text(change.grace_until) if change.grace_until else {"ru": "?", "en": "?"}
        return {
            "ru": f"Статус {was['ru']} сохранён до {until['ru']} (льготный период){tail['ru']}",
            "en": f"{was['en']} kept until {until['en']} (grace period){tail['en']}",
        }
    if change.reason == "downgraded":
        return {
            "ru": f"Статус изменён с {was['ru']} на {to['ru']}{tail['ru']}",
            "en": f"Downgraded from {was['en']} to {to['en']}{tail['en']}",
        }
    lock: Texts = {"ru": "", "en": ""}
    if change.locked_until is not None:
        until = day_text(change.locked_until)
        lock = {"ru": f" до {until['ru']}", "en": f" until {until['en']}"}
    note = {k: f": {change.note}" if change.note else "" for k in ("ru", "en")}
    if change.reason == "imported":
        return {
            "ru": f"Статус {to['ru']} перенесён при импорте{lock['ru']}{note['ru']}",
            "en": f"{to['en']} imported{lock['en']}{note['en']}",
        }
    # manual
    return {
        "ru": f"Статус {to['ru']} установлен вручную{lock['ru']}{note['ru']}",
        "en": f"{to['en']} set by hand{lock['en']}{note['en']}",
    }


def _more(metric: Metric, gap: int, currency: str) -> Texts:
    """ "потратить 3 200 ₽" / "spend 3,200 ₽ more" (after "Осталось" / capitalised)."""
    a = amount(metric, gap, currency)
    if metric == "spent":
        return {"ru": f"потратить {a['ru']}", "en": f"spend {a['en']} more"}
    if metric == "purchases":
        return {"ru": f"совершить {a['ru']}", "en": f"make {a['en']} more"}
    return {"ru": f"набрать {a['ru']}", "en": f"earn {a['en']} more"}


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


@dataclass(frozen=True)
class Progress:
    """What the progress message needs. ``keep_gap`` > 0: short of keeping the current
    level by ``by``; ``next_gap``: short of the next level (None at the top)."""

    metric: Metric
    current: Texts
    next_name: Texts | None
    next_gap: int | None
    keep_gap: int | None
    keep_value: int | None
    keep_needed: int | None
    by: date | None  # the last day that counts for the next evaluation
    next_by: date | None  # the last day of a calendar window (None: rolling)
    grace_until: date | None
    today: date


def progress_message(p: Progress, currency: str) -> Texts:
    """ "Осталось потратить 3 200 ₽ до 31 декабря, чтобы сохранить Gold" / "Spend 3,200 ₽
    more by 31 Dec to keep Gold"."""
    cur = p.current
    if p.keep_gap is not None and p.keep_gap > 0 and p.by is not None:
        more = _more(p.metric, p.keep_gap, currency)
        by = day_text(p.by, p.today)
        if p.grace_until is not None:
            until = day_text(p.grace_until, p.today)
            return {
                "ru": f"Статус {cur['ru']} сохраняется до {until['ru']}. Осталось {more['ru']} "
                f"до {by['ru']}, чтобы сохранить его",
                "en": f"{cur['en']} until {until['en']}: {more['en']} by {by['en']} to keep it",
            }
        return {
            "ru": f"Осталось {more['ru']} до {by['ru']}, чтобы сохранить {cur['ru']}",
            "en": f"{_cap(more['en'])} by {by['en']} to keep {cur['en']}",
        }
    if p.next_name is not None and p.next_gap is not None:
        more = _more(p.metric, p.next_gap, currency)
        nxt = p.next_name
        if p.next_by is not None:
            by = day_text(p.next_by, p.today)
            return {
                "ru": f"Осталось {more['ru']} до {by['ru']}, чтобы получить {nxt['ru']}",
                "en": f"{_cap(more['en'])} by {by['en']} to reach {nxt['en']}",
            }
        return {
            "ru": f"Осталось {more['ru']}, чтобы получить {nxt['ru']}",
            "en": f"{_cap(more['en'])} to reach {nxt['en']}",
        }
    if p.keep_value is not None and p.keep_needed is not None and p.by is not None:
        done = _done(p.metric, p.keep_value, p.keep_needed, currency)
        return {
            "ru": f"Статус {cur['ru']} сохранится и после {day_text(p.by, p.today)['ru']}: "
            f"{done['ru']}",
            "en": f"{cur['en']} is secured beyond {day_text(p.by, p.today)['en']}: {done['en']}",
        }
    return {"ru": f"Ваш статус: {cur['ru']}", "en": f"Your status: {cur['en']}"}
