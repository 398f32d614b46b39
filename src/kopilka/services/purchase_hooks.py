"""Extension points of the till for the loyalty mechanics (tiers, stamps, referrals, clubs...).

A hook sees a purchase at fixed moments and may add to it; every method has a no-op default,
so a mechanic implements only what it needs. Hooks run inside the purchase's unit of work:
what they write commits or rolls back with the receipt.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from kopilka.domain.rules.document import CompiledProgram, CompiledRule
from kopilka.domain.rules.facts import MemberFacts
from kopilka.services.context import Actor, Tenant
from kopilka.services.ports import UnitOfWork

if TYPE_CHECKING:
    from kopilka.services.purchases import Evaluated, ReceiptInput


class PurchaseHook:
    """Base class: override the moments a mechanic cares about.

    Hooks run for receipts with a member; set ``anonymous_too`` to see anonymous receipts
    as well (``adjust``, ``extras``, ``extra_rules``, ``on_confirmed``, ``on_refunded``).
    """

    anonymous_too: bool = False
    # Set when the hook reads ``facts.purchases_before`` (in ``member_facts``,
    # ``extra_rules``...): the till then counts the member's purchases before the hooks run.
    # Otherwise it counts them only when a rule being evaluated needs them, after
    # ``member_facts`` and ``extra_rules``, whose facts say ``purchases_known=False``.
    needs_purchase_count: bool = False

    def extra_rules(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        member: dict[str, Any] | None,
        facts: MemberFacts | None,
        request: ReceiptInput,
        moment: datetime,
        programs: Sequence[CompiledProgram],
    ) -> list[tuple[str, CompiledRule]]:
        """Rules to evaluate for this receipt beside the programs' own (a coupon's benefit,
        a campaign's rules), each as (code of the program in ``programs`` it joins, rule).
        They join that program: their points are its points, their ids appear in
        ``applied``/``rules_by_program``; use ids that cannot clash (e.g. ``coupon:SPRING``)."""
        return []

    def member_facts(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        member: dict[str, Any],
        facts: MemberFacts,
        now: datetime,
    ) -> MemberFacts:
        """What the rules engine knows of the member (tier, clubs...), before evaluation."""
        return facts

    def revise(self, uow: UnitOfWork, found: Evaluated) -> MemberFacts | None:
        """After evaluation: new member facts to evaluate the receipt again with (a tier
        reached by this very receipt), or None."""
        return None

    def adjust(self, uow: UnitOfWork, found: Evaluated, request: ReceiptInput) -> None:
        """After evaluation: change the evaluation in place (e.g. a stamp card's free item)."""

    def extras(self, uow: UnitOfWork, found: Evaluated) -> dict[str, Any]:
        """Keys added to the calculate and confirm answers (e.g. ``stamps``)."""
        return {}

    def on_confirmed(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        receipt: dict[str, Any],
        lines: list[dict[str, Any]],
        now: datetime,
    ) -> dict[str, Any]:
        """A member's receipt is confirmed (at once, or when its hold is confirmed).

        ``receipt`` is the stored row (id, member_id, outlet_id, total_amount, total_pay,
        points_earned, occurred_at, result...), ``lines`` the stored lines. The returned
        keys are added to the confirm answer.
        """
        return {}

    def on_refunded(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        receipt: dict[str, Any],
        refund: dict[str, Any],
        now: datetime,
    ) -> dict[str, Any]:
        """Part or all of a member's confirmed receipt was refunded or cancelled.

        ``refund`` is the refund's answer: its ``lines`` (line, qty, money, ...),
        ``money_to_return`` and ``kind`` (refund or cancel). The returned keys are added to
        the refund answer.
        """
        return {}


def receipt_ref(receipt_id: uuid.UUID | str) -> str:
    """How mechanics name a receipt in their natural keys."""
    return f"receipt:{receipt_id}"
