"""Plain-language descriptions of ledger transactions, in Russian and English.

Descriptions are data: the kind and parameters are stored, the sentence is made on reading,
so a wording fix reaches old entries too. Each language has its plural forms: Russian one /
few / many ("1 балл", "2 балла", "5 баллов"), English one / other ("1 point", "2 points").
"""

from __future__ import annotations

from typing import Any

from kopilka.domain.ledger.model import TxnKind

RuForms = tuple[str, str, str]  # one, few, many
EnForms = tuple[str, str]  # one, other

_TEMPLATES: dict[str, tuple[RuForms, EnForms]] = {
    TxnKind.ACCRUAL: (
        (
            "Начислен {amount} балл{reason}",
            "Начислено {amount} балла{reason}",
            "Начислено {amount} баллов{reason}",
        ),
        ("{amount} point earned{reason}", "{amount} points earned{reason}"),
    ),
    TxnKind.OPENING_BALANCE: (
        (
            "Перенесён начальный баланс: {amount} балл",
            "Перенесён начальный баланс: {amount} балла",
            "Перенесён начальный баланс: {amount} баллов",
        ),
        (
            "Opening balance of {amount} point carried over",
            "Opening balance of {amount} points carried over",
        ),
    ),
    TxnKind.ACTIVATION: (
        (
            "{amount} балл стал доступен для оплаты",
            "{amount} балла стали доступны для оплаты",
            "{amount} баллов стали доступны для оплаты",
        ),
        ("{amount} point became available to spend", "{amount} points became available to spend"),
    ),
    TxnKind.REDEMPTION: (
        (
            "Списан {amount} балл{reason}",
            "Списано {amount} балла{reason}",
            "Списано {amount} баллов{reason}",
        ),
        ("{amount} point spent{reason}", "{amount} points spent{reason}"),
    ),
    TxnKind.REFUND: (
        (
            "Возвращён {amount} списанный балл{reason}",
            "Возвращено {amount} списанных балла{reason}",
            "Возвращено {amount} списанных баллов{reason}",
        ),
        ("{amount} spent point returned{reason}", "{amount} spent points returned{reason}"),
    ),
    TxnKind.REVERSAL: (
        (
            "Отменено начисление {amount} балла{reason}",
            "Отменено начисление {amount} баллов{reason}",
            "Отменено начисление {amount} баллов{reason}",
        ),
        ("{amount} earned point reversed{reason}", "{amount} earned points reversed{reason}"),
    ),
    TxnKind.EXPIRY: (
        ("Сгорел {amount} балл", "Сгорело {amount} балла", "Сгорело {amount} баллов"),
        ("{amount} point expired", "{amount} points expired"),
    ),
    TxnKind.ADJUSTMENT: (
        (
            "Корректировка баланса: {signed} балл{reason}",
            "Корректировка баланса: {signed} балла{reason}",
            "Корректировка баланса: {signed} баллов{reason}",
        ),
        (
            "Balance adjustment: {signed} point{reason}",
            "Balance adjustment: {signed} points{reason}",
        ),
    ),
    TxnKind.HOLD: (
        (
            "Зарезервирован {amount} балл{reason}",
            "Зарезервировано {amount} балла{reason}",
            "Зарезервировано {amount} баллов{reason}",
        ),
        ("{amount} point reserved{reason}", "{amount} points reserved{reason}"),
    ),
    TxnKind.CAPTURE: (
        (
            "Списан {amount} зарезервированный балл",
            "Списано {amount} зарезервированных балла",
            "Списано {amount} зарезервированных баллов",
        ),
        ("{amount} reserved point spent", "{amount} reserved points spent"),
    ),
    TxnKind.RELEASE: (
        (
            "Резерв {amount} балла снят, балл снова доступен",
            "Резерв {amount} баллов снят, баллы снова доступны",
            "Резерв {amount} баллов снят, баллы снова доступны",
        ),
        ("Reservation of {amount} point released", "Reservation of {amount} points released"),
    ),
    TxnKind.TRANSFER: (
        ("Перевод {amount} балла", "Перевод {amount} баллов", "Перевод {amount} баллов"),
        ("Transfer of {amount} point", "Transfer of {amount} points"),
    ),
    TxnKind.MERGE: (
        (
            "{amount} балл перенесён при объединении профилей",
            "{amount} балла перенесено при объединении профилей",
            "{amount} баллов перенесено при объединении профилей",
        ),
        (
            "{amount} point moved when profiles were merged",
            "{amount} points moved when profiles were merged",
        ),
    ),
}
# What a bonus (TxnKind.BONUS) was for, by the mechanic that gave it (``params["mechanic"]``).
MECHANIC_LABELS: dict[str, tuple[str, str]] = {
    "welcome": ("Приветственный бонус", "Welcome bonus"),
    "birthday": ("Бонус ко дню рождения", "Birthday bonus"),
    "anniversary": ("Бонус в годовщину участия", "Anniversary bonus"),
    "win_back": ("Бонус «Мы скучали»", "We-miss-you bonus"),
    "event": ("Бонус за действие", "Bonus for an action"),
    "referral": ("Бонус за приглашение друга", "Referral bonus"),
    "referee": ("Бонус за регистрацию по приглашению", "Bonus for joining with an invitation"),
    "tier": ("Бонус за статус", "Status bonus"),
    "stamps": ("Награда за заполненную карту", "Stamp card reward"),
    "club": ("Бонус клуба", "Club bonus"),
    "membership": ("Бонус подписки", "Membership bonus"),
    "draw": ("Приз розыгрыша", "Prize draw winnings"),
}
_BONUS: tuple[RuForms, EnForms] = (
    ("{label}: {amount} балл", "{label}: {amount} балла", "{label}: {amount} баллов"),
    ("{label}: {amount} point", "{label}: {amount} points"),
)
_TEMPLATES[TxnKind.DONATION] = (
    (
        "Пожертвован {amount} балл{reason}",
        "Пожертвовано {amount} балла{reason}",
        "Пожертвовано {amount} баллов{reason}",
    ),
    ("{amount} point donated{reason}", "{amount} points donated{reason}"),
)
_FALLBACK: tuple[RuForms, EnForms] = (
    ("Операция: {amount} балл", "Операция: {amount} балла", "Операция: {amount} баллов"),
    ("Operation: {amount} point", "Operation: {amount} points"),
)


def ru_plural(n: int) -> int:
    """Index of the Russian plural form for ``n``: 0 one, 1 few, 2 many."""
    n = abs(n)
    if n % 10 == 1 and n % 100 != 11:
        return 0
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return 1
    return 2


def describe(kind: str, amount: int, params: dict[str, Any] | None = None) -> dict[str, str]:
    """Return ``{"ru": ..., "en": ...}`` for a transaction."""
    params = params or {}
    reason = params.get("reason")
    ru_forms, en_forms = _TEMPLATES.get(kind, _FALLBACK)
    label_ru, label_en = "", ""
    if kind == TxnKind.BONUS:
        ru_forms, en_forms = _BONUS
        label = params.get("label")
        if isinstance(label, dict):
            label_ru = str(label.get("ru") or label.get("en") or "")
            label_en = str(label.get("en") or label.get("ru") or "")
        if not label_ru:
            label_ru, label_en = MECHANIC_LABELS.get(
                str(params.get("mechanic")), ("Бонус", "Bonus")
            )
    tail = f" — {reason}" if reason and kind != TxnKind.BONUS else ""
    ru = ru_forms[ru_plural(amount)].format(
        amount=f"{abs(amount):,}".replace(",", "\u00a0"),
        signed=f"{amount:+,}".replace(",", "\u00a0"),
        reason=tail,
        label=label_ru,
    )
    en = en_forms[0 if abs(amount) == 1 else 1].format(
        amount=f"{abs(amount):,}", signed=f"{amount:+,}", reason=tail, label=label_en
    )
    one = ru_plural(amount) == 0
    expires = params.get("expires_on")
    if expires and kind in (
        TxnKind.ACCRUAL,
        TxnKind.ADJUSTMENT,
        TxnKind.OPENING_BALANCE,
        TxnKind.BONUS,
    ):
        ru += f", {'сгорит' if one else 'сгорят'} {expires}"
        en += f", expire{'s' if abs(amount) == 1 else ''} on {expires}"
    available = params.get("available_on")
    if available and kind in (TxnKind.ACCRUAL, TxnKind.ADJUSTMENT, TxnKind.BONUS):
        ru += f", {'станет доступен' if one else 'станут доступны'} {available}"
        en += f", available from {available}"
    return {"ru": ru, "en": en}
