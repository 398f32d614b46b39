""" "Why did I get (or not get) points on this receipt?" — answered from what the till stored.

The receipt keeps its evaluation (rules applied, near misses, per-line points), the ledger
transactions it made, and what the loyalty mechanics added (tier, stamps, welcome...);
refunds keep theirs. The explanation reads those back, so it tells what happened then, not
what the rules would say today.
"""

from __future__ import annotations

import uuid
from typing import Any

from kopilka.domain.errors import NotFound
from kopilka.domain.ledger.descriptions import ru_plural
from kopilka.domain.rules.explain import format_money
from kopilka.services.context import Actor
from kopilka.services.ledger import transaction_views
from kopilka.services.ports import UnitOfWork, UnitOfWorkFactory

# Keys of the till's answer that belong to the receipt itself; the rest came from mechanics.
_RECEIPT_KEYS = frozenset(
    {
        "receipt",
        "outlet",
        "member_id",
        "occurred_at",
        "currency",
        "programs",
        "lines",
        "totals",
        "points_earned_by_program",
        "points_program",
        "point_value",
        "max_redeemable",
        "balance",
        "applied",
        "not_applied",
        "gifts",
        "coupons_issued",
        "refunds",
        "imported",
    }
)


def _points_ru(n: int) -> str:
    return f"{n:,}".replace(",", "\u00a0") + " " + ("балл", "балла", "баллов")[ru_plural(n)]


def _points_en(n: int) -> str:
    return f"{n:,} point{'' if abs(n) == 1 else 's'}"


def _reason(code: str, ru: str, en: str, **extra: Any) -> dict[str, Any]:
    return {"code": code, "ru": ru, "en": en, **extra}


class ExplanationService:
    def __init__(self, uow_factory: UnitOfWorkFactory) -> None:
        self.uow_factory = uow_factory

    def purchase(
        self, actor: Actor, member_id: uuid.UUID, receipt_id: uuid.UUID | None
    ) -> dict[str, Any]:
        """The member's receipt (the latest when not named), explained; 404 when the
        receipt is not this member's."""
        with self.uow_factory(write=False) as uow:
            tenant_id = actor.tenant_id
            if uow.directory.member(tenant_id, member_id) is None:
                raise NotFound("Member not found.", code="member_not_found")
            owners = {member_id, *uow.directory.merged_into(tenant_id, member_id)}
            if receipt_id is None:
                latest = uow.commerce.member_receipts(tenant_id, list(owners), None, 1)
                if not latest:
                    raise NotFound("The member has no purchases.", code="receipt_not_found")
                receipt_id = latest[0]["id"]
            receipt = uow.commerce.receipt(tenant_id, receipt_id, lock=False)
            if receipt is None or receipt["member_id"] not in owners:
                raise NotFound("Receipt not found.", code="receipt_not_found")
            refunds = [r["result"] for r in uow.commerce.refunds_of(tenant_id, receipt["id"])]
            return _explain(uow, tenant_id, receipt, refunds)


def _explain(
    uow: UnitOfWork, tenant_id: uuid.UUID, receipt: dict[str, Any], refunds: list[dict[str, Any]]
) -> dict[str, Any]:
    result: dict[str, Any] = receipt["result"] or {}
    ledger: dict[str, Any] = receipt["ledger"] or {}
    currency = str(result.get("currency") or "RUB")
    status = receipt["status"]
    earned = int(receipt["points_earned"] or 0)
    taken_back = sum(int(r.get("points_taken_back") or 0) for r in refunds)
    returned = sum(int(r.get("points_returned") or 0) for r in refunds)
    txn_ids = [uuid.UUID(t) for t in (ledger.get("accruals") or {}).values()]
    for key in ("redemption", "capture", "hold_transaction"):
        if ledger.get(key):
            txn_ids.append(uuid.UUID(ledger[key]))
    for refund in refunds:
        txn_ids.extend(uuid.UUID(t) for t in refund.get("transactions") or [])
    rows = [r for r in (uow.ledger.get_transaction(tenant_id, t) for t in txn_ids) if r]
    transactions = [v.to_json() for v in transaction_views(uow, tenant_id, rows)]

    reasons: list[dict[str, Any]] = []
    if status == "held":
        reasons.append(
            _reason(
                "receipt_held",
                "Покупка ещё не подтверждена: баллы будут начислены после подтверждения.",
                "The purchase is not confirmed yet: points are credited on confirmation.",
            )
        )
    elif status == "voided":
        reasons.append(
            _reason(
                "receipt_voided",
                "Покупка отменена до подтверждения: баллы не начислялись.",
                "The purchase was voided before confirmation: no points were credited.",
            )
        )
    elif status == "cancelled":
        reasons.append(
            _reason(
                "receipt_cancelled",
                "Покупка аннулирована: начисленные баллы списаны обратно.",
                "The purchase was cancelled: the points earned were taken back.",
            )
        )
    if not result.get("programs"):
        reasons.append(
            _reason(
                "no_program",
                "В момент покупки не действовала ни одна программа лояльности.",
                "No loyalty program was in force at the time of the purchase.",
            )
        )
    elif earned == 0 and status in ("confirmed", "held"):
        reasons.append(
            _reason(
                "no_points_rule",
                "Ни одно правило начисления баллов не подошло к этой покупке.",
                "No earning rule matched this purchase.",
            )
        )
    lines = result.get("lines") or []
    if earned > 0:
        zero = [li for li in lines if not li.get("points_earned")]
        if zero:
            skus = ", ".join(str(li.get("sku")) for li in zero[:10])
            reasons.append(
                _reason(
                    "lines_without_points",
                    f"За эти позиции баллы не начисляются: {skus}.",
                    f"These items earn no points: {skus}.",
                    lines=[li.get("line") for li in zero],
                )
            )
    totals = result.get("totals") or {}
    if int(totals.get("points_redeemed") or 0) > 0:
        paid = format_money(int(totals.get("points_money") or 0), currency)
        reasons.append(
            _reason(
                "paid_with_points",
                f"Часть покупки ({paid}) оплачена баллами: на эту часть баллы не начисляются.",
                f"Part of the purchase ({paid}) was paid with points, which earns no points.",
            )
        )
    for row in rows:
        available = row.params.get("available_on")
        if row.kind in ("accrual", "bonus") and available:
            reasons.append(
                _reason(
                    "points_pending",
                    f"Баллы станут доступны {available} (период возврата).",
                    f"The points become available on {available} (the return period).",
                    available_on=available,
                )
            )
    if taken_back:
        reasons.append(
            _reason(
                "refunded",
                f"После возврата товаров списано {_points_ru(taken_back)}.",
                f"{_points_en(taken_back)} taken back after the refund.",
            )
        )
    for miss in result.get("not_applied") or []:
        text = miss.get("explanation") or {}
        reasons.append(
            _reason(
                "near_miss",
                str(text.get("ru", "")),
                str(text.get("en", "")),
                rule_id=miss.get("rule_id"),
            )
        )

    net = earned - taken_back if status != "cancelled" else 0
    if status in ("voided",):
        net = 0
    if net > 0:
        summary = {
            "ru": f"За эту покупку начислено {_points_ru(net)}.",
            "en": f"This purchase earned {_points_en(net)}.",
        }
    elif status == "held":
        summary = {
            "ru": f"После подтверждения будет начислено {_points_ru(earned)}.",
            "en": f"{_points_en(earned)} will be credited on confirmation.",
        }
    else:
        summary = {
            "ru": "За эту покупку баллы не начислены.",
            "en": "This purchase earned no points.",
        }
    return {
        "receipt_id": str(receipt["id"]),
        "receipt_number": receipt["receipt_number"],
        "status": status,
        "occurred_at": receipt["occurred_at"].isoformat(),
        "summary": summary,
        "points": {
            "earned": earned,
            "taken_back": taken_back,
            "net": net,
            "spent": int(receipt["points_redeemed"] or 0),
            "returned": returned,
            "by_program": result.get("points_earned_by_program") or {},
        },
        "reasons": reasons,
        "applied": result.get("applied") or [],
        "not_applied": result.get("not_applied") or [],
        "lines": [
            {
                "line": li.get("line"),
                "sku": li.get("sku"),
                "amount": li.get("amount"),
                "discount": li.get("discount"),
                "points_earned": li.get("points_earned"),
            }
            for li in lines
        ],
        "mechanics": {k: v for k, v in result.items() if k not in _RECEIPT_KEYS},
        "transactions": transactions,
    }
