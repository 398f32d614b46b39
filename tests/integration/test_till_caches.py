"""The till's per-process caches of outlets and products, and its one-statement card look-up.

Outlets and products are cached per (tenant, id/code/SKU) for the cache's TTL; a write
through the stores in this process is seen by the next purchase at once, an unknown SKU is
cached as absent until a product upsert, a tenant's entries never answer for another, a
write in flight or rolled back never leaves its rows (or the rows it raced) in the cache, and
a change made behind the process's back (another worker) is seen once the TTL has passed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from kopilka.adapters.db import commerce_store, ttl_cache
from kopilka.adapters.db.tables import outlets, products, tenants
from kopilka.adapters.db.ttl_cache import MISSING, TtlCache
from kopilka.bootstrap import Container, bootstrap
from kopilka.domain.errors import BusinessRuleViolation, KopilkaError, NotFound
from kopilka.services.catalog import ProductInput
from kopilka.services.context import Actor
from kopilka.services.purchases import LineInput, MemberRef, ReceiptInput
from kopilka.testing import FakeClock
from tests.conftest import Merchant, make_merchant
from tests.e2e.helpers import card

PROGRAM: dict[str, Any] = {
    "type": "bonus",
    "pending_days": 0,
    "rules": [
        {"id": "mall", "when": {"outlet_tag": "mall"}, "effects": [{"points_fixed": 100}]},
        {
            "id": "coffee",
            "lines": {"category": "drinks/coffee"},
            "effects": [{"points_per_unit": 7}],
        },
    ],
}


class FakeTime:
    """Stands in for the ``time`` module inside ttl_cache: a monotonic clock we move."""

    def __init__(self) -> None:
        self.now = time.monotonic()  # entries cached before the swap expire on this clock too

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def shop(container: Container, merchant: Merchant) -> Merchant:
    container.programs.publish(merchant.actor, "bonus", PROGRAM)
    return merchant


def new_card(container: Container, actor: Actor) -> str:
    return new_member(container, actor)[1]


def new_member(container: Container, actor: Actor) -> tuple[uuid.UUID, str]:
    view = container.members.enroll(actor, {"name": "Till"})
    return view.id, view.cards[0].number


def receipt(number: str, *skus: str) -> ReceiptInput:
    lines = tuple(LineInput(sku=s, qty=Decimal(1), price=1000) for s in skus or ("X",))
    return ReceiptInput(lines=lines, member=MemberRef(card=number), outlet="OUT-1")


def earned(container: Container, actor: Actor, number: str, *skus: str) -> int:
    """Points a confirmed purchase earns (the confirm path: a write unit of work)."""
    result = container.purchases.confirm(actor, receipt(number, *skus), uuid.uuid4().hex)
    return int(result["totals"]["points_earned"])


def quoted(container: Container, actor: Actor, number: str, *skus: str) -> int:
    """Points a calculation promises (the read-only path)."""
    return int(
        container.purchases.calculate(actor, receipt(number, *skus))["totals"]["points_earned"]
    )


def outlet_id(container: Container, m: Merchant, code: str = "OUT-1") -> uuid.UUID:
    row = container.tenants.outlet_by_code(m.actor, code)
    return uuid.UUID(str(row["id"]))


def set_outlet(container: Container, m: Merchant, values: dict[str, Any]) -> None:
    """Change the outlet through the directory store (in-process invalidation)."""
    with container.uow_factory(write=True) as uow:
        uow.directory.update_outlet(m.tenant_id, outlet_id(container, m), values)
        uow.commit()


def coffee(sku: str, category: str | None = "drinks/coffee") -> ProductInput:
    return ProductInput(sku=sku, name=sku, category=category)


@contextmanager
def statements(container: Container) -> Iterator[list[str]]:
    """The SQL statements the engine runs inside the block."""
    seen: list[str] = []

    def listen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(container.engine, "before_cursor_execute", listen)
    try:
        yield seen
    finally:
        event.remove(container.engine, "before_cursor_execute", listen)


def reading(seen: list[str], table: str) -> list[str]:
    return [s for s in seen if s.startswith("SELECT") and f"FROM {table}" in s]


# ---- in-process changes are seen at once ---------------------------------------------------
def test_an_outlet_change_is_seen_by_the_next_purchase(
    container: Container, shop: Merchant
) -> None:
    number = new_card(container, shop.actor)
    assert earned(container, shop.actor, number) == 0
    assert quoted(container, shop.actor, number) == 0  # both cached now
    set_outlet(container, shop, {"tags": ["mall"]})
    assert earned(container, shop.actor, number) == 100
    assert quoted(container, shop.actor, number) == 100
    set_outlet(container, shop, {"tags": []})
    assert quoted(container, shop.actor, number) == 0
    assert earned(container, shop.actor, number) == 0


def test_a_new_outlet_is_found_at_once(container: Container, shop: Merchant) -> None:
    number = new_card(container, shop.actor)
    request = ReceiptInput(
        lines=(LineInput(sku="X", qty=Decimal(1), price=1000),),
        member=MemberRef(card=number),
        outlet="OUT-2",
    )
    with pytest.raises(KopilkaError) as failure:
        container.purchases.calculate(shop.actor, request)
    assert failure.value.code == "unknown_outlet"  # unknown outlets are not cached
    container.tenants.create_outlet(shop.actor, "OUT-2", tags=["mall"])
    assert container.purchases.calculate(shop.actor, request)["totals"]["points_earned"] == 100


def test_a_product_upsert_is_seen_by_the_next_purchase(
    container: Container, shop: Merchant
) -> None:
    number = new_card(container, shop.actor)
    container.catalog.upsert(shop.actor, [coffee("LATTE", "food")])
    assert earned(container, shop.actor, number, "LATTE") == 0
    assert quoted(container, shop.actor, number, "LATTE") == 0
    container.catalog.upsert(shop.actor, [coffee("LATTE")])
    assert quoted(container, shop.actor, number, "LATTE") == 7
    assert earned(container, shop.actor, number, "LATTE") == 7


def test_an_unknown_sku_is_cached_as_absent_until_an_upsert(
    container: Container, shop: Merchant
) -> None:
    number = new_card(container, shop.actor)
    assert earned(container, shop.actor, number, "NEW") == 0
    with statements(container) as seen:
        assert quoted(container, shop.actor, number, "NEW") == 0
    assert reading(seen, "products") == []  # "no such product" came from the cache
    container.catalog.upsert(shop.actor, [coffee("NEW")])
    assert quoted(container, shop.actor, number, "NEW") == 7
    assert earned(container, shop.actor, number, "NEW") == 7


def test_a_miss_reads_only_the_missing_skus(container: Container, shop: Merchant) -> None:
    container.catalog.upsert(shop.actor, [coffee("A"), coffee("B")])
    assert set(container.catalog.get(shop.actor, ["A"])) == {"A"}
    with statements(container) as seen:
        found = container.catalog.get(shop.actor, ["A", "B", "C"])
    assert set(found) == {"A", "B"}
    [query] = reading(seen, "products")
    assert query.count("?") + query.count("%(") == 3  # the tenant, then B and C only
    with statements(container) as seen:
        assert set(container.catalog.get(shop.actor, ["C", "B", "A"])) == {"A", "B"}
    assert reading(seen, "products") == []


def test_cached_rows_are_copies(container: Container, shop: Merchant) -> None:
    container.catalog.upsert(shop.actor, [coffee("A")])
    first = container.catalog.get(shop.actor, ["A"])["A"]
    first["category"] = "changed by a caller"
    assert container.catalog.get(shop.actor, ["A"])["A"]["category"] == "drinks/coffee"
    row = container.tenants.outlet_by_code(shop.actor, "OUT-1")
    row["timezone"] = "Mars/Olympus"
    assert container.tenants.outlet_by_code(shop.actor, "OUT-1")["timezone"] != "Mars/Olympus"


# ---- writes in flight and rollbacks ----------------------------------------------------------
def test_a_write_in_flight_is_not_cached_by_a_racing_reader(
    container: Container, shop: Merchant
) -> None:
    factory, tenant = container.uow_factory, shop.tenant_id
    with factory(write=False) as uow:
        assert uow.commerce.products_by_sku(tenant, ["RACE"]) == {}  # cached as absent
    with factory(write=True) as writer:
        writer.commerce.upsert_products(
            [
                {
                    "id": uuid.uuid4(),
                    "tenant_id": tenant,
                    "sku": "RACE",
                    "name": None,
                    "category": "drinks/coffee",
                    "brand": None,
                    "tags": [],
                    "attributes": {},
                    "price": None,
                    "min_price": None,
                    "no_discount": False,
                    "no_points": False,
                    "updated_at": datetime(2026, 1, 1, tzinfo=UTC),
                }
            ]
        )
        # The writer sees its own row; another request still sees the committed state,
        # and must not cache it (it is about to change).
        assert set(writer.commerce.products_by_sku(tenant, ["RACE"])) == {"RACE"}
        with factory(write=False) as reader:
            assert reader.commerce.products_by_sku(tenant, ["RACE"]) == {}
        writer.commit()
    with factory(write=False) as uow:
        assert set(uow.commerce.products_by_sku(tenant, ["RACE"])) == {"RACE"}


def test_a_rolled_back_outlet_never_reaches_the_cache(container: Container, shop: Merchant) -> None:
    factory, tenant = container.uow_factory, shop.tenant_id
    with factory(write=True) as uow:
        uow.directory.insert_outlet(
            {
                "id": uuid.uuid4(),
                "tenant_id": tenant,
                "code": "GHOST",
                "name": "Ghost",
                "timezone": "UTC",
                "region": None,
                "tags": [],
                "created_at": datetime(2026, 1, 1, tzinfo=UTC),
            }
        )
        assert uow.directory.outlet_by_code(tenant, "GHOST") is not None
        # no commit: rolled back
    with factory(write=False) as uow:
        assert uow.directory.outlet_by_code(tenant, "GHOST") is None


def test_the_cache_generation_refuses_a_stale_put() -> None:
    cache = TtlCache()
    scope = ("products", uuid.uuid4())
    stamp = cache.stamp(scope)
    cache.begin_write(scope)
    assert cache.stamp(scope) is None  # a write in flight: read, do not cache
    cache.put_scoped(scope, stamp, {"k": "old"})
    assert cache.get_scoped(scope, "k") is MISSING
    raced = cache.stamp(scope)
    cache.end_write(scope)
    cache.put_scoped(scope, raced, {"k": "old"})  # read before the commit: refused
    assert cache.get_scoped(scope, "k") is MISSING
    cache.put_scoped(scope, cache.stamp(scope), {"k": "new", "absent": None})
    assert cache.get_scoped(scope, "k") == "new"
    assert cache.get_scoped(scope, "absent") is None
    cache.begin_write(scope)
    assert cache.get_scoped(scope, "k") is MISSING  # forgotten when a write starts
    cache.end_write(scope)


# ---- other processes: bounded by the TTL -----------------------------------------------------
def test_a_change_behind_the_process_is_seen_within_the_ttl(
    container: Container, shop: Merchant, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeTime()
    monkeypatch.setattr(ttl_cache, "time", clock)
    number = new_card(container, shop.actor)
    container.catalog.upsert(shop.actor, [coffee("LATTE", "food")])
    assert earned(container, shop.actor, number, "LATTE") == 0
    # Another worker changes both rows (plain SQL: no in-process invalidation), bumping the
    # catalogue version as every product write does (SqlCommerceStore.upsert_products).
    with container.engine.begin() as conn:
        conn.execute(
            sa.update(outlets).where(outlets.c.tenant_id == shop.tenant_id).values(tags=["mall"])
        )
        conn.execute(
            sa.update(products)
            .where(products.c.tenant_id == shop.tenant_id)
            .values(category="drinks/coffee")
        )
        conn.execute(
            sa.update(tenants)
            .where(tenants.c.id == shop.tenant_id)
            .values(catalogue_version=tenants.c.catalogue_version + 1)
        )
    clock.now += container.uow_factory.cache.ttl / 2
    assert quoted(container, shop.actor, number, "LATTE") == 0  # stale, within the TTL
    clock.now += container.uow_factory.cache.ttl / 2 + 0.01
    assert quoted(container, shop.actor, number, "LATTE") == 107


# ---- tenant isolation ------------------------------------------------------------------------
def test_one_tenants_cache_never_answers_for_another(
    container: Container, shop: Merchant, other_merchant: Merchant
) -> None:
    rival = other_merchant
    container.programs.publish(rival.actor, "bonus", PROGRAM)
    set_outlet(container, rival, {"tags": ["mall"]})  # same outlet code, other tags
    container.catalog.upsert(shop.actor, [coffee("SKU-1")])
    container.catalog.upsert(rival.actor, [coffee("SKU-1", "food")])
    mine, theirs = new_card(container, shop.actor), new_card(container, rival.actor)
    for _ in range(2):  # cold, then warm
        assert earned(container, shop.actor, mine, "SKU-1", "SKU-2") == 7
        assert earned(container, rival.actor, theirs, "SKU-1", "SKU-2") == 100
        assert quoted(container, shop.actor, mine, "SKU-1") == 7
        assert quoted(container, rival.actor, theirs, "SKU-1") == 100
    # A till of one tenant names the other's card: not found, cache or no cache.
    with pytest.raises(NotFound):
        container.purchases.calculate(rival.actor, receipt(mine, "SKU-1"))
    with container.uow_factory(write=False) as uow:
        ours = outlet_id(container, shop)
        assert uow.directory.outlet(shop.tenant_id, ours) is not None  # cached
        assert uow.directory.outlet(rival.tenant_id, ours) is None
        assert (
            uow.commerce.products_by_sku(rival.tenant_id, ["SKU-1"])["SKU-1"]["category"] == "food"
        )


def test_a_third_tenant_created_later_reads_its_own_rows(container: Container) -> None:
    first = make_merchant(container, "First")
    container.catalog.upsert(first.actor, [coffee("S")])
    assert container.catalog.get(first.actor, ["S"])["S"]["category"] == "drinks/coffee"
    later = make_merchant(container, "Later")
    assert container.catalog.get(later.actor, ["S"]) == {}
    assert container.tenants.outlet_by_code(later.actor, "OUT-1")["tenant_id"] == later.tenant_id


# ---- the card and its member in one statement ------------------------------------------------
def test_card_errors_are_unchanged(container: Container, shop: Merchant) -> None:
    actor = shop.actor
    member_id, number = new_member(container, actor)
    assert quoted(container, actor, number) == 0

    def failure(card_number: str) -> KopilkaError:
        with pytest.raises(KopilkaError) as caught:
            container.purchases.calculate(actor, receipt(card_number))
        return caught.value

    unknown = failure(card(123456))
    assert (unknown.code, str(unknown), unknown.status) == (
        "card_not_found",
        "Card not found.",
        404,
    )
    batch = container.members.register_batch(actor, "printed", numbers=[card(777)])
    unbound = failure(batch.first_number)  # a card without a member
    assert (unbound.code, str(unbound)) == ("card_not_found", "Card not found.")
    container.members.set_card_status(actor, number, "blocked")
    blocked = failure(number)
    assert isinstance(blocked, BusinessRuleViolation)
    assert (blocked.code, str(blocked)) == ("card_blocked", "The card is blocked.")
    container.members.set_card_status(actor, number, "active")
    container.members.set_blocked(actor, member_id, True)
    member_blocked = failure(number)
    assert (member_blocked.code, str(member_blocked)) == (
        "member_blocked",
        "The member is blocked: no earning or spending.",
    )
    container.members.set_blocked(actor, member_id, False)
    container.members.set_card_status(actor, number, "lost")
    lost = failure(number)
    assert (lost.code, str(lost)) == ("card_lost", "The card is lost.")


# ---- statements per purchase -----------------------------------------------------------------
def test_a_warm_confirm_reads_no_outlet_nor_product(container: Container, shop: Merchant) -> None:
    number = new_card(container, shop.actor)
    container.catalog.upsert(shop.actor, [coffee("LATTE")])
    assert earned(container, shop.actor, number, "LATTE", "UNKNOWN") == 7  # warms the caches
    with statements(container) as warm:
        assert earned(container, shop.actor, number, "LATTE", "UNKNOWN") == 7
    assert reading(warm, "outlets") == []
    assert reading(warm, "products") == []
    [card_lookup] = reading(warm, "cards")
    assert "JOIN members" in card_lookup  # the card and its member in one statement
    with statements(container) as calc:
        assert quoted(container, shop.actor, number, "LATTE", "UNKNOWN") == 7
    assert reading(calc, "outlets") == reading(calc, "products") == []
    # Past the TTL both are read once more: two statements more than a warm confirm.
    cache = container.uow_factory.cache
    for scope in (("outlets", shop.tenant_id), ("products", shop.tenant_id)):
        cache.begin_write(scope)  # forgets the scope's entries, as their expiry would
        cache.end_write(scope)
    with statements(container) as cold:
        assert earned(container, shop.actor, number, "LATTE", "UNKNOWN") == 7
    assert len(reading(cold, "outlets")) == len(reading(cold, "products")) == 1
    assert len(cold) - len(warm) == 2


# ---- products stay cached while the catalogue version stands -------------------------------
def test_products_outlive_the_ttl_while_the_catalogue_is_unchanged(
    container: Container, shop: Merchant, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeTime()
    monkeypatch.setattr(ttl_cache, "time", clock)
    number = new_card(container, shop.actor)
    container.catalog.upsert(shop.actor, [coffee("LATTE")])
    assert earned(container, shop.actor, number, "LATTE", "UNKNOWN") == 7  # warms the caches
    # The upsert moved the version after this process cached the tenant row: once that
    # expires, the products are read again under the new version (once).
    clock.now += container.uow_factory.cache.ttl + 0.01
    with statements(container) as settling:
        assert earned(container, shop.actor, number, "LATTE", "UNKNOWN") == 7
    assert len(reading(settling, "products")) == 1
    clock.now += container.uow_factory.cache.ttl * 10  # the tenant row and outlets expire
    with statements(container) as later:
        assert earned(container, shop.actor, number, "LATTE", "UNKNOWN") == 7
    assert len(reading(later, "tenants")) == 1  # the version is checked...
    assert reading(later, "products") == []  # ...and the products, known or absent, kept
    clock.now += commerce_store.VERSIONED_PRODUCT_TTL_SECONDS  # at most this long, though
    with statements(container) as much_later:
        assert earned(container, shop.actor, number, "LATTE", "UNKNOWN") == 7
    assert len(reading(much_later, "products")) == 1


def test_a_product_write_in_another_process_is_seen_within_the_ttl(
    container: Container, shop: Merchant, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process (its own caches, the same database) changes a product through the
    catalogue service; this one sees it once its cached tenant row expires."""
    fake = FakeTime()
    monkeypatch.setattr(ttl_cache, "time", fake)
    other = bootstrap(container.settings, engine=container.engine, clock=clock)
    number = new_card(container, shop.actor)
    container.catalog.upsert(shop.actor, [coffee("LATTE", "food"), coffee("MOCHA")])
    assert earned(container, shop.actor, number, "LATTE") == 0  # cached: not coffee
    assert quoted(container, shop.actor, number, "MOCHA") == 7
    before = catalogue_version(container, shop)
    other.catalog.upsert(shop.actor, [coffee("LATTE")])  # now coffee, in the other process
    assert catalogue_version(container, shop) == before + 1
    assert quoted(container, shop.actor, number, "LATTE") == 0  # stale, within the TTL
    fake.now += container.uow_factory.cache.ttl + 0.01
    assert quoted(container, shop.actor, number, "LATTE") == 7
    # The version moved for the whole catalogue: MOCHA is read again too, unchanged.
    assert quoted(container, shop.actor, number, "MOCHA") == 7


def catalogue_version(container: Container, m: Merchant) -> int:
    with container.engine.connect() as conn:
        found = conn.execute(
            sa.select(tenants.c.catalogue_version).where(tenants.c.id == m.tenant_id)
        ).scalar_one()
    return int(found)
