"""The product catalogue the rules look at: SKU, category path, brand, tags, flags."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kopilka.clock import Clock
from kopilka.domain.errors import ErrorCollector
from kopilka.domain.rules.conditions import category_path
from kopilka.ids import new_id
from kopilka.services.context import Actor
from kopilka.services.ports import UnitOfWorkFactory

MAX_BATCH = 10_000
TRUE = {"1", "true", "yes", "y", "да"}


@dataclass(frozen=True)
class ProductInput:
    sku: str
    name: str | None = None
    category: str | None = None
    brand: str | None = None
    tags: tuple[str, ...] = ()
    attributes: dict[str, Any] | None = None
    price: int | None = None
    min_price: int | None = None
    no_discount: bool = False
    no_points: bool = False


def _row(actor: Actor, item: ProductInput, now: Any) -> dict[str, Any]:
    category = "/".join(category_path(item.category)) if item.category else None
    return {
        "id": new_id(),
        "tenant_id": actor.tenant_id,
        "sku": item.sku,
        "name": item.name,
        "category": category or None,
        "brand": item.brand,
        "tags": sorted(set(item.tags)),
        "attributes": item.attributes or {},
        "price": item.price,
        "min_price": item.min_price,
        "no_discount": item.no_discount,
        "no_points": item.no_points,
        "updated_at": now,
    }


class CatalogService:
    def __init__(self, uow_factory: UnitOfWorkFactory, clock: Clock) -> None:
        self.uow_factory = uow_factory
        self.clock = clock

    def upsert(self, actor: Actor, items: list[ProductInput]) -> int:
        """Insert or update products by SKU; all or nothing."""
        errors = ErrorCollector()
        seen: set[str] = set()
        for i, item in enumerate(items):
            if item.sku in seen:
                errors.add(("products", i, "sku"), "SKU repeated in the request.", "duplicate_sku")
            seen.add(item.sku)
            if (
                item.min_price is not None
                and item.price is not None
                and item.min_price > item.price
            ):
                errors.add(("products", i, "min_price"), "min_price is above price.", "invalid")
        errors.raise_if_any()
        now = self.clock.now()
        with self.uow_factory(write=True) as uow:
            for start in range(0, len(items), 1000):
                uow.commerce.upsert_products(
                    [_row(actor, item, now) for item in items[start : start + 1000]]
                )
            uow.commit()
        return len(items)

    def get(self, actor: Actor, skus: list[str]) -> dict[str, dict[str, Any]]:
        with self.uow_factory(write=False) as uow:
            return uow.commerce.products_by_sku(actor.tenant_id, skus)

    def list_products(self, actor: Actor, after: str | None, limit: int) -> list[dict[str, Any]]:
        with self.uow_factory(write=False) as uow:
            return uow.commerce.list_products(actor.tenant_id, after, limit)

    def import_csv(self, actor: Actor, path: Path) -> tuple[int, list[str]]:
        """Load products from CSV (sku, name, category, brand, tags, price, min_price,
        no_discount, no_points); returns the count and line-numbered errors (nothing is
        imported when there are errors)."""
        text = path.read_text(encoding="utf-8-sig")
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t") if text.strip() else None
        reader = csv.DictReader(io.StringIO(text), dialect=dialect or csv.excel)
        items: list[ProductInput] = []
        problems: list[str] = []
        for line_no, record in enumerate(reader, start=2):
            sku = (record.get("sku") or "").strip()
            if not sku or len(sku) > 64:
                problems.append(f"line {line_no}: sku is required (at most 64 characters)")
                continue
            try:
                price = int(record["price"]) if record.get("price") else None
                min_price = int(record["min_price"]) if record.get("min_price") else None
            except ValueError:
                problems.append(f"line {line_no}: price and min_price are whole minor units")
                continue
            items.append(
                ProductInput(
                    sku=sku,
                    name=record.get("name") or None,
                    category=record.get("category") or None,
                    brand=record.get("brand") or None,
                    tags=tuple(
                        t.strip() for t in (record.get("tags") or "").split("|") if t.strip()
                    ),
                    price=price,
                    min_price=min_price,
                    no_discount=(record.get("no_discount") or "").strip().lower() in TRUE,
                    no_points=(record.get("no_points") or "").strip().lower() in TRUE,
                )
            )
        if problems:
            return 0, problems
        for start in range(0, len(items), MAX_BATCH):
            self.upsert(actor, items[start : start + MAX_BATCH])
        return len(items), []
