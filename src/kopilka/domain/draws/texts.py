"""What members and staff read about draws, in Russian and English (plural forms as in
:mod:`kopilka.domain.ledger.descriptions`)."""

from __future__ import annotations

from kopilka.domain.ledger.descriptions import ru_plural

Text = dict[str, str]

STATUS: dict[str, Text] = {
    "draft": {"ru": "Черновик", "en": "Draft"},
    "open": {"ru": "Идёт приём участников", "en": "Open for entries"},
    "frozen": {"ru": "Список участников закрыт", "en": "Entries frozen"},
    "drawn": {"ru": "Розыгрыш проведён", "en": "Drawn"},
}
PRIZE_STATUS: dict[str, Text] = {
    "pending": {"ru": "Приз готовится", "en": "Prize being prepared"},
    "granted": {"ru": "Баллы начислены, заказ оформляется", "en": "Points credited, ordering"},
    "awarded": {"ru": "Баллы начислены", "en": "Points credited"},
    "ordered": {"ru": "Заказ приза оформлен", "en": "Prize ordered"},
    "points_instead": {
        "ru": "Вместо приза начислена его стоимость в баллах",
        "en": "The prize's value credited in points instead",
    },
    "failed": {"ru": "Приз не выдан, обратитесь в поддержку", "en": "Prize not given; contact us"},
}


def _points(n: int) -> Text:
    ru = ("балл", "балла", "баллов")[ru_plural(n)]
    en = "point" if n == 1 else "points"
    return {"ru": f"{n:,} {ru}".replace(",", "\u00a0"), "en": f"{n:,} {en}"}


def _entries(n: int) -> Text:
    ru = ("шанс", "шанса", "шансов")[ru_plural(n)]
    en = "entry" if n == 1 else "entries"
    return {"ru": f"{n:,} {ru}".replace(",", "\u00a0"), "en": f"{n:,} {en}"}


def points_prize(points: int) -> Text:
    """The default name of a points prize."""
    return _points(points)


def prize_label(draw: Text) -> Text:
    """The ledger line's label for a prize: "Приз розыгрыша «Весна»: 500 баллов"."""
    return {"ru": f"Приз розыгрыша «{draw['ru']}»", "en": f"Prize in the draw “{draw['en']}”"}


def entered(draw: Text, entries: int) -> Text:
    """The audit line written for each entrant when the list is frozen."""
    n = _entries(entries)
    return {
        "ru": f"Вы участвуете в розыгрыше «{draw['ru']}»: {n['ru']}",
        "en": f"You are in the draw “{draw['en']}” with {n['en']}",
    }


def won(draw: Text, rank: int, prize: Text) -> Text:
    return {
        "ru": f"Вы выиграли в розыгрыше «{draw['ru']}»: приз {rank}-го места — {prize['ru']}",
        "en": f"You won in the draw “{draw['en']}”: prize of rank {rank}, {prize['en']}",
    }


def member_summary(draw: Text, entries: int, provisional: bool) -> Text:
    """How a member's participation reads in their list of draws."""
    n = _entries(entries)
    if provisional:
        return {
            "ru": f"У вас пока {n['ru']} в розыгрыше «{draw['ru']}»",
            "en": f"So far you have {n['en']} in the draw “{draw['en']}”",
        }
    return {
        "ru": f"У вас {n['ru']} в розыгрыше «{draw['ru']}»",
        "en": f"You have {n['en']} in the draw “{draw['en']}”",
    }
