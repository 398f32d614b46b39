"""A demo merchant, so ``make run`` shows something at once."""

from __future__ import annotations

from pathlib import Path

from kopilka.bootstrap import Container
from kopilka.domain.errors import NotFound
from kopilka.services.catalog import ProductInput
from kopilka.services.context import Actor, Role

DEMO_TENANT = "Demo Coffee"
DEMO_PROGRAM = {
    "type": "combined",
    "name": {"ru": "Кофейные баллы", "en": "Coffee points"},
    "redemption": {"point_value": 100, "max_percent": 30, "min_balance": 100},
    "pending_days": 0,
    "expiry": {"kind": "rolling", "days": 365},
    "rounding": {"scope": "receipt", "mode": "down"},
    "rules": [
        {
            "id": "base",
            "name": {"ru": "5% баллами", "en": "5% back in points"},
            "effects": [{"points_percent": 5}],
        },
        {
            "id": "coffee-x2",
            "name": {"ru": "Кофе: баллы ×2 по утрам", "en": "Coffee: x2 points mornings"},
            "when": {"hours": {"from": "07:00", "to": "11:00"}},
            "lines": {"category": "drinks/coffee"},
            "effects": [{"points_multiplier": 2}],
        },
        {
            "id": "croissant",
            "name": {
                "ru": "Круассан в подарок к трём кофе",
                "en": "Free croissant with three coffees",
            },
            "when": {"qty_gte": {"of": {"category": "drinks/coffee"}, "value": 3}},
            "effects": [{"gift": {"sku": "CROISSANT", "name": "Круассан"}}],
        },
    ],
}
DEMO_PRODUCTS = [
    ProductInput(sku="LATTE", name="Латте", category="drinks/coffee", price=25000),
    ProductInput(sku="CAPPUCCINO", name="Капучино", category="drinks/coffee", price=22000),
    ProductInput(sku="CROISSANT", name="Круассан", category="food/bakery", price=15000),
    ProductInput(
        sku="CIGARETTES",
        name="Сигареты",
        category="tobacco",
        price=20000,
        no_discount=True,
        no_points=True,
    ),
]
DEMO_MEMBERS = [
    {
        "phone": "+79161234567",
        "name": "Анна Иванова",
        "birthday": "1990-02-28",
        "consents": {"program_rules": True, "personal_data": True, "marketing_sms": True},
    },
    {
        "phone": "+79031112233",
        "name": "Boris Petrov",
        "email": "boris@example.com",
        "birthday": "--07-14",
        "consents": {"program_rules": True, "personal_data": True},
    },
]


def seed_demo(c: Container, keys_file: Path | None = None) -> dict[str, str]:
    """Create the demo tenant, outlet, members and keys once; later runs reuse the keys
    saved beside the database (they cannot be read back from their hashes)."""
    keys_file = keys_file or Path("var") / "demo-keys.txt"
    try:
        row = c.tenants.tenant_by_name(DEMO_TENANT)
    except NotFound:
        row = None
    if row is not None and keys_file.exists():
        saved = dict(
            line.split("=", 1) for line in keys_file.read_text().splitlines() if "=" in line
        )
        if {"admin", "pos"} <= set(saved):
            return saved
    if row is None:
        row = c.tenants.create_tenant(
            DEMO_TENANT, pending_days=0, expiry_policy={"kind": "rolling", "days": 365}
        )
    actor = Actor(tenant_id=row["id"], name="demo", role=Role.ADMIN)
    try:
        c.tenants.outlet_by_code(actor, "MSK-001")
    except NotFound:
        c.tenants.create_outlet(
            actor, "MSK-001", name="Кофейня на Тверской", region="Москва", tags=["moscow", "street"]
        )
        c.catalog.upsert(actor, DEMO_PRODUCTS)
        c.programs.publish(actor, "coffee", DEMO_PROGRAM)
        for i, data in enumerate(DEMO_MEMBERS):
            member = c.members.enroll(actor, data)
            c.ledger.accrue(actor, member.id, 500 * (i + 1), reason="Welcome bonus")
    admin = c.tenants.create_api_key(actor, Role.ADMIN, name="demo admin")
    pos = c.tenants.create_api_key(actor, Role.POS, outlet_code="MSK-001", name="demo till")
    keys = {"admin": admin.key, "pos": pos.key}
    keys_file.parent.mkdir(parents=True, exist_ok=True)
    keys_file.write_text("".join(f"{k}={v}\n" for k, v in keys.items()))
    return keys
