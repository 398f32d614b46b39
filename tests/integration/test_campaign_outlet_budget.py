"""A receipt at an outlet whose own campaign budget is already spent is told
``budget_exhausted`` (the outlet gate keeps the campaign's rules off it before evaluation),
not that the campaign's conditions were not met."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from kopilka.bootstrap import Container
from kopilka.domain.campaigns.definition import CampaignCreate
from kopilka.services.purchases import LineInput, MemberRef, ReceiptInput
from kopilka.testing import FakeClock
from tests.conftest import Merchant

CAMPAIGN: dict[str, Any] = {
    "code": "local",
    "name": {"ru": "Акция", "en": "Local"},
    "schedule": {"start": "2026-01-01", "end": "2026-02-01"},
    "budgets": {"per_outlet": {"OUT-1": {"redemptions": 1}}},
    "rules": [{"id": "gift", "effects": [{"points_fixed": 100}]}],
}


def test_an_outlets_spent_budget_is_reported_as_such(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    c.programs.publish(m.actor, "bonus", {"type": "bonus", "rules": []})
    c.campaigns.create(m.actor, CampaignCreate.model_validate(CAMPAIGN))
    c.campaigns.transition(m.actor, "local", "schedule")
    member = c.members.enroll(m.actor, {"name": "M"}).id

    def buy(number: str) -> dict[str, Any]:
        request = ReceiptInput(
            lines=(LineInput("TV", Decimal(1), 50_000),),
            member=MemberRef(id=member),
            outlet="OUT-1",
        )
        return c.purchases.confirm(m.actor, request, number)

    first, second = buy("R-1"), buy("R-2")
    assert first["campaigns"][0]["applied"] is True
    assert second["campaigns"][0]["applied"] is False
    assert second["campaigns"][0]["reason"] == "budget_exhausted"
