"""Mechanics hear about a member merge inside its unit of work (``MemberHook.on_merged``)."""

from __future__ import annotations

import uuid
from datetime import datetime

from kopilka.bootstrap import Container
from kopilka.services.context import Actor, Tenant
from kopilka.services.members import MemberHook, current_profile, merged_into, profile_chain
from kopilka.services.ports import UnitOfWork
from tests.conftest import Merchant


class _Recorder(MemberHook):
    def __init__(self) -> None:
        self.calls: list[tuple[uuid.UUID, uuid.UUID, str]] = []

    def on_merged(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        survivor_id: uuid.UUID,
        duplicate_id: uuid.UUID,
        now: datetime,
    ) -> None:
        duplicate = uow.directory.member(tenant.id, duplicate_id)
        assert duplicate is not None
        self.calls.append((survivor_id, duplicate_id, str(duplicate["status"])))


def test_every_member_hook_hears_of_a_merge_once(container: Container, merchant: Merchant) -> None:
    c, m = container, merchant
    recorder = _Recorder()
    c.members.hooks.append(recorder)
    try:
        survivor = c.members.enroll(m.actor, {"phone": "+79161230011"}).id
        duplicate = c.members.enroll(m.actor, {"phone": "+79161230012"}).id
        c.members.merge(m.actor, survivor, duplicate, idempotency_key="merge-1")
        c.members.merge(m.actor, survivor, duplicate, idempotency_key="merge-1")  # a replay
    finally:
        c.members.hooks.remove(recorder)
    assert recorder.calls == [(survivor, duplicate, "merged")]


def test_a_chain_of_merges_leads_to_the_surviving_profile(
    container: Container, merchant: Merchant
) -> None:
    c, m = container, merchant
    first, second, third = (
        c.members.enroll(m.actor, {"phone": f"+7916123002{i}"}).id for i in range(3)
    )
    c.members.merge(m.actor, second, third)  # third -> second
    c.members.merge(m.actor, first, second)  # second -> first
    with c.uow_factory(write=False) as uow:
        chain = [row["id"] for row in profile_chain(uow, m.tenant_id, third)]
        onward = [row["id"] for row in merged_into(uow, m.tenant_id, third)]
        current = current_profile(uow, m.tenant_id, third)
        own = current_profile(uow, m.tenant_id, first)
        unknown = current_profile(uow, m.tenant_id, uuid.uuid4())
    assert chain == [third, second, first]
    assert onward == [second, first]
    assert current is not None
    assert current["id"] == first
    assert own is not None
    assert own["id"] == first
    assert unknown is None
