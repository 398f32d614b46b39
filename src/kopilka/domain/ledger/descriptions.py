"""Plain-language descriptions of ledger transactions, in Russian and English.

Descriptions are data: the kind and parameters are stored, the sentence is made on reading,
so a wording fix reaches old entries too.
"""

from __future__ import annotations

from typing import Any

from kopilka.domain.ledger.model import TxnKind

_TEMPLATES: dict[str, tuple[str, str]] = {
    TxnKind.ACCRUAL: ("Начислено {amount} баллов{reason_ru}", "{amount} points earned{reason_en}"),
    TxnKind.OPENING_BALANCE: (
        "Перенесён начальный баланс: {amount} баллов",
        "Opening balance of {amount} points carried over",
    ),
    TxnKind.ACTIVATION: (
        "{amount} баллов стали доступны для оплаты",
        "{amount} points became available to spend",
    ),
    TxnKind.REDEMPTION: ("Списано {amount} баллов{reason_ru}", "{amount} points spent{reason_en}"),
    TxnKind.REFUND: (
        "Возвращено {amount} списанных баллов{reason_ru}",
        "{amount} spent points returned{reason_en}",
    ),
    TxnKind.REVERSAL: (
        "Отменено начисление {amount} баллов{reason_ru}",
        "{amount} earned points reversed{reason_en}",
    ),
    TxnKind.EXPIRY: ("Сгорело {amount} баллов", "{amount} points expired"),
    TxnKind.ADJUSTMENT: (
        "Корректировка баланса: {signed} баллов{reason_ru}",
        "Balance adjustment: {signed} points{reason_en}",
    ),
    TxnKind.HOLD: (
        "Зарезервировано {amount} баллов{reason_ru}",
        "{amount} points reserved{reason_en}",
    ),
    TxnKind.CAPTURE: (
        "Списано {amount} зарезервированных баллов",
        "{amount} reserved points spent",
    ),
    TxnKind.RELEASE: (
        "Резерв {amount} баллов снят, баллы снова доступны",
        "Reservation of {amount} points released",
    ),
    TxnKind.TRANSFER: ("Перевод {amount} баллов", "Transfer of {amount} points"),
    TxnKind.MERGE: (
        "{amount} баллов перенесено при объединении профилей",
        "{amount} points moved when profiles were merged",
    ),
}


def describe(kind: str, amount: int, params: dict[str, Any] | None = None) -> dict[str, str]:
    """Return ``{"ru": ..., "en": ...}`` for a transaction."""
    params = params or {}
    reason = params.get("reason")
    ru_tpl, en_tpl = _TEMPLATES.get(kind, ("Операция: {amount} баллов", "Operation: {amount} points"))
    values = {
        "amount": f"{abs(amount):,}".replace(",", "\u00a0"),
        "signed": f"{amount:+,}".replace(",", "\u00a0"),
        "reason_ru": f" — {reason}" if reason else "",
        "reason_en": f" — {reason}" if reason else "",
    }
    ru = ru_tpl.format(**values)
    en = en_tpl.format(**values).replace("\u00a0", ",")
    expires = params.get("expires_on")
    if expires and kind in (TxnKind.ACCRUAL, TxnKind.ADJUSTMENT, TxnKind.OPENING_BALANCE):
        ru += f", сгорят {expires}"
        en += f", expire on {expires}"
    available = params.get("available_on")
    if available and kind in (TxnKind.ACCRUAL, TxnKind.ADJUSTMENT):
        ru += f", станут доступны {available}"
        en += f", available from {available}"
    return {"ru": ru, "en": en}
