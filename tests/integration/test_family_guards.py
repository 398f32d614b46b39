"""Guards around family pools, on both databases: merging a member of a family is refused
(it would move the family's points, not the person's), and the ledger API honours the
owner's spend permission like the till does."""

from __future__ import annotations

import pytest

from kopilka.bootstrap import Container
from kopilka.domain.errors import BusinessRuleViolation, Conflict
from kopilka.domain.rewards.definition import RewardDefinition
from kopilka.services.rewards import RedeemInput
from tests.conftest import Merchant
from tests.integration.test_families import enroll, family_of, publish


def test_a_family_member_cannot_be_merged_either_way(
    container: Container, merchant: Merchant
) -> None:
    c, m = container, merchant
    publish(c, m)
    owner, kid = family_of(c, m, 100, 50)
    loner = enroll(c, m, "Loner")
    for survivor, duplicate in ((loner, kid), (kid, loner), (loner, owner), (owner, loner)):
        with pytest.raises(Conflict) as caught:
            c.members.merge(m.actor, survivor, duplicate)
        assert caught.value.code == "member_in_family"
    assert c.ledger.balance(m.actor, owner).available == 150
    c.families.leave(m.actor, kid)
    c.members.merge(m.actor, loner, kid)  # out of the family: an ordinary merge again


def test_the_ledger_api_honours_the_spend_permission(
    container: Container, merchant: Merchant
) -> None:
    c, m = container, merchant
    publish(c, m)
    owner, kid = family_of(c, m, 100, 50)
    c.families.set_can_spend(m.actor, kid, False)
    with pytest.raises(BusinessRuleViolation) as caught:
        c.ledger.redeem(m.actor, kid, 10)
    assert caught.value.code == "family_spend_not_allowed"
    with pytest.raises(BusinessRuleViolation) as caught:
        c.ledger.hold(m.actor, kid, 10)
    assert caught.value.code == "family_spend_not_allowed"
    assert c.ledger.balance(m.actor, owner).available == 150
    c.ledger.redeem(m.actor, owner, 10)  # the owner may
    c.families.set_can_spend(m.actor, kid, True)
    c.ledger.redeem(m.actor, kid, 10)
    assert c.ledger.balance(m.actor, owner).available == 130


def test_rewards_honour_the_spend_permission(container: Container, merchant: Merchant) -> None:
    c, m = container, merchant
    publish(c, m)
    owner, kid = family_of(c, m, 3000, 0)
    reward = c.rewards.create(
        m.actor,
        RewardDefinition.model_validate(
            {
                "code": "cap",
                "kind": "privilege",
                "name": {"ru": "Кепка", "en": "Cap"},
                "cost": 1000,
                "privilege": {"duration_days": 30, "tag": "capped"},
            }
        ),
    )
    catalogue = {item.code: item for item in c.rewards.catalogue(m.actor, kid, None, 10)}
    assert catalogue["cap"].affordable  # the pool's points
    c.families.set_can_spend(m.actor, kid, False)
    catalogue = {item.code: item for item in c.rewards.catalogue(m.actor, kid, None, 10)}
    assert not catalogue["cap"].affordable
    with pytest.raises(BusinessRuleViolation) as caught:
        c.rewards.redeem(m.actor, kid, RedeemInput(reward_id=reward.id))
    assert caught.value.code == "family_spend_not_allowed"
    assert c.ledger.balance(m.actor, owner).available == 3000
