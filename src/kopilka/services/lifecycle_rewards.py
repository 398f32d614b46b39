"""Giving a life-cycle or event reward: points through the awards ledger under a natural
key, a coupon, and a plain-language ru/en description of what was given."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from kopilka.domain.coupons.codes import personal_code
from kopilka.domain.ledger.descriptions import describe
from kopilka.domain.ledger.expiry import RollingExpiry
from kopilka.domain.ledger.expiry import expires_at as policy_expiry
from kopilka.domain.ledger.model import TxnKind
from kopilka.domain.lifecycle.dates import coupon_description
from kopilka.domain.lifecycle.settings import Reward
from kopilka.domain.rules.document import CompiledProgram
from kopilka.ids import new_id
from kopilka.services.awards import grant_points
from kopilka.services.context import Actor, Tenant
from kopilka.services.ledger_book import MemberBook, last_day, local_date
from kopilka.services.ports import UnitOfWork
from kopilka.services.programs import ProgramService


def give_reward(
    uow: UnitOfWork,
    tenant: Tenant,
    actor: Actor,
    member_id: uuid.UUID,
    now: datetime,
    *,
    program: CompiledProgram,
    reward: Reward,
    mechanic: str,
    key: str,
    params: dict[str, Any] | None = None,
    book: MemberBook | None = None,
    pending_days: int | None = 0,
) -> dict[str, Any] | None:
    """Give ``reward`` (points and/or a coupon) once per ``key``; None if already given.

    Returns what was given, JSON-ready: program, points, transaction id, coupon, and a
    plain-language description in ru and en. With a ``book`` the caller applies its plan.
    """
    tz = tenant.timezone
    expires = (
        policy_expiry(RollingExpiry(days=reward.expires_in_days), now, tz)
        if reward.expires_in_days is not None
        else policy_expiry(program.settings.expiry, now, tz)
    )
    coupon_code = personal_code() if reward.coupon is not None else None
    all_params: dict[str, Any] = dict(params or {})
    if reward.label is not None:
        all_params["label"] = reward.label.as_dict()
    if coupon_code is not None:
        all_params["coupon_code"] = coupon_code
    granted = grant_points(
        uow,
        tenant,
        actor,
        member_id,
        now,
        mechanic=mechanic,
        key=key,
        points=reward.points,
        program=program,
        params=all_params,
        pending_days=pending_days,
        expires_at=expires,
        book=book,
    )
    if not granted.fresh:
        return None
    parts: list[dict[str, str]] = []
    if reward.points > 0:
        # The same words as the ledger line: the credit adds these two days to it.
        wording = {"mechanic": mechanic, **all_params, "expires_on": last_day(expires, tz)}
        pending = program.settings.pending_days if pending_days is None else pending_days
        if pending > 0:
            wording["available_on"] = local_date(now + timedelta(days=pending), tz)
        parts.append(describe(TxnKind.BONUS, reward.points, wording))
    coupon = None
    if reward.coupon is not None and coupon_code is not None:
        valid_until = now + timedelta(days=reward.coupon.valid_days)
        uow.commerce.insert_coupon(
            {
                "id": new_id(),
                "tenant_id": tenant.id,
                "code": coupon_code,
                "member_id": member_id,
                "benefit": reward.coupon.benefit,
                "min_basket": reward.coupon.min_basket,
                "valid_from": now,
                "valid_until": valid_until,
                "uses_left": 1,
                "status": "active",
                "source_type": mechanic[:24],
                "source_id": key[:128],
                "created_at": now,
            }
        )
        coupon = {
            "code": coupon_code,
            "benefit": reward.coupon.benefit,
            "min_basket": reward.coupon.min_basket,
            "valid_until": valid_until.isoformat(),
        }
        parts.append(
            coupon_description(
                reward.coupon.benefit, last_day(valid_until, tz) or "", tenant.currency
            )
        )
    return {
        "program": program.code,
        "points": reward.points,
        "transaction_id": str(granted.transaction_id) if granted.transaction_id else None,
        "coupon": coupon,
        "description": {lang: "; ".join(p[lang] for p in parts) for lang in ("ru", "en")},
    }


def section_in_force(
    programs: ProgramService, uow: UnitOfWork, tenant_id: uuid.UUID, at: datetime, name: str
) -> tuple[CompiledProgram, Any] | None:
    """The first program in force (by code) with the life-cycle section ``name``.

    A closed program (``members_of_club``) is skipped: its rewards are for club members,
    which the life-cycle mechanic does not know.
    """
    for program in programs.in_force(uow, tenant_id, at):
        if program.settings.members_of_club:
            continue
        section = getattr(program.settings.lifecycle, name)
        if section is not None:
            return program, section
    return None
