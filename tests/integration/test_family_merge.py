"""Merging profiles stops at families: a pool is shared, so merging a member of one would
move the family's points, not the person's. Both databases."""

from __future__ import annotations

import pytest

from kopilka.bootstrap import Container
from kopilka.domain.errors import Conflict
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
