"""What a customer reads about referrals, in Russian and English: the offer, and why a
referral did or did not earn its bonus."""

from __future__ import annotations

from kopilka.domain.ledger.descriptions import ru_plural
from kopilka.domain.referrals.settings import ReferralSettings

_POINTS_RU = ("балл", "балла", "баллов")
_DAYS_RU = ("день", "дня", "дней")
_FRIENDS_RU = ("друга", "друзей", "друзей")  # "не больше 1 друга / 5 друзей"


def _ru(n: int, forms: tuple[str, str, str]) -> str:
    return f"{n:,}".replace(",", "\u00a0") + " " + forms[ru_plural(n)]


def _en(n: int, one: str, other: str) -> str:
    return f"{n:,} {one if n == 1 else other}"


def money(minor: int, currency: str) -> dict[str, str]:
    """An amount in minor units as people write it: "1 000 ₽" / "RUB 1,000.50"."""
    whole, cents = divmod(minor, 100)
    ru = f"{whole:,}".replace(",", "\u00a0") + (f",{cents:02d}" if cents else "")
    en = f"{whole:,}" + (f".{cents:02d}" if cents else "")
    symbol = "₽" if currency == "RUB" else currency
    return {"ru": f"{ru}\u00a0{symbol}", "en": f"{currency} {en}"}


def offer(settings: ReferralSettings, currency: str) -> dict[str, str]:
    """The program's offer: who gets what, when, and the limits."""
    ru_parts, en_parts = [], []
    referrer, referee = settings.referrer, settings.referee
    if referrer is not None and referee is not None:
        ru_parts.append(
            f"вы получите {_ru(referrer.points, _POINTS_RU)}, "
            f"друг — {_ru(referee.points, _POINTS_RU)}"
        )
        en_parts.append(
            f"you get {_en(referrer.points, 'point', 'points')} and your friend "
            f"{_en(referee.points, 'point', 'points')}"
        )
    elif referrer is not None:
        ru_parts.append(f"вы получите {_ru(referrer.points, _POINTS_RU)}")
        en_parts.append(f"you get {_en(referrer.points, 'point', 'points')}")
    elif referee is not None:
        ru_parts.append(f"друг получит {_ru(referee.points, _POINTS_RU)}")
        en_parts.append(f"your friend gets {_en(referee.points, 'point', 'points')}")
    if settings.trigger == "enrolment":
        ru_parts[-1] += ","  # a subordinate clause: "…, когда друг зарегистрируется"
        ru_parts.append("когда друг зарегистрируется по вашему коду")
        en_parts.append("when they join with your code")
    else:
        ru_when, en_when = "после первой покупки друга", "after your friend's first purchase"
        if settings.min_purchase:
            amount = money(settings.min_purchase, currency)
            ru_when += f" от {amount['ru']}"
            en_when += f" of {amount['en']} or more"
        ru_parts.append(ru_when)
        en_parts.append(en_when)
    ru = "Приведите друга: " + " ".join(ru_parts) + "."
    en = "Invite a friend: " + " ".join(en_parts) + "."
    if settings.pending_days:
        days = settings.pending_days
        ru += f" Баллы станут доступны через {_ru(days, _DAYS_RU)}."
        en += f" The points become available after {_en(days, 'day', 'days')}."
    if settings.monthly_cap is not None:
        cap = settings.monthly_cap
        ru += f" Не больше {_ru(cap, _FRIENDS_RU)} в месяц."
        en += f" Up to {_en(cap, 'friend', 'friends')} a month."
    return {"ru": ru, "en": en}


_STATUS: dict[tuple[str, str | None], tuple[str, str]] = {
    ("awaiting_purchase", None): (
        "Ждём первую покупку друга",
        "Waiting for the friend's first purchase",
    ),
    ("pending", None): (
        "Бонус начислен и станет доступен {available_on}",
        "Bonus granted; it becomes available on {available_on}",
    ),
    ("rewarded", None): ("Бонус начислен", "Bonus granted"),
    ("voided", "first_purchase_refunded"): (
        "Первую покупку друга вернули — бонус отменён",
        "The friend's first purchase was refunded, so the bonus was cancelled",
    ),
    ("blocked", "shared_fingerprint"): (
        "Бонус не начислен: друг зарегистрировался с того же устройства",
        "No bonus: the friend joined from the same device",
    ),
    ("blocked", "referrer_blocked"): (
        "Бонус не начислен: участие пригласившего приостановлено",
        "No bonus: the inviting member's account is blocked",
    ),
    ("capped", "monthly_cap"): (
        "Бонус не начислен: исчерпан лимит приглашений на этот месяц",
        "No bonus: the monthly limit of invitations was reached",
    ),
    ("inactive", "no_referral_program"): (
        "Бонус не начислен: программа «Приведи друга» в это время не действовала",
        "No bonus: no invite-a-friend program was running at the time",
    ),
}


def explain_status(status: str, reason: str | None, available_on: str | None) -> dict[str, str]:
    """Why a referral is where it is, for the customer."""
    ru, en = _STATUS.get((status, reason)) or _STATUS.get(
        (status, None), ("Приглашение учтено", "Invitation recorded")
    )
    if "{available_on}" in ru and available_on is None:  # pending with no date: say less
        ru, en = _STATUS[("rewarded", None)]
    return {
        "ru": ru.format(available_on=available_on),
        "en": en.format(available_on=available_on),
    }
