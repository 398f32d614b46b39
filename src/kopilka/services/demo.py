"""A demo merchant, so ``make run`` shows something at once."""

from __future__ import annotations

from pathlib import Path

from kopilka.bootstrap import Container
from kopilka.domain.coupons.terms import PromoCodeInput
from kopilka.domain.errors import NotFound
from kopilka.domain.rewards.definition import RewardDefinition
from kopilka.services.catalog import ProductInput
from kopilka.services.context import Actor, Role
from kopilka.services.rewards import StockInput

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
        {
            "id": "gold-x2",
            "name": {"ru": "Золото: баллы ×2", "en": "Gold: x2 points"},
            "when": {"tier_in": ["gold"]},
            "effects": [{"points_multiplier": 2}],
        },
        {
            "id": "birthday-10",
            "name": {"ru": "Скидка 10% в день рождения", "en": "10% off on your birthday"},
            "when": {"birthday_window": {"days": 3}},
            "effects": [{"discount_percent": 10}],
        },
        {
            "id": "vip-5",
            "name": {"ru": "Клуб гурманов: скидка 5%", "en": "Gourmet club: 5% off"},
            "when": {"club_in": ["gourmet"]},
            "effects": [{"discount_percent": 5}],
        },
    ],
    # The loyalty mechanics (docs/tiers.md, lifecycle.md, referrals.md, stamps.md,
    # families.md, clubs.md).
    "tiers": {
        "metric": "spent",
        "window": {"kind": "rolling", "days": 365},
        "levels": [
            {"code": "silver", "name": {"ru": "Серебро", "en": "Silver"}, "threshold": 0},
            {"code": "gold", "name": {"ru": "Золото", "en": "Gold"}, "threshold": 1500000},
        ],
        "upgrade_applies_to_crossing_receipt": True,
        "downgrade": {"policy": "one_level", "grace_days": 30},
    },
    "lifecycle": {
        "welcome": {"points": 100, "on": "enrolment"},
        "birthday": {"points": 300, "days_after": 3},
        "win_back": {"inactive_days": 60, "points": 150, "period_days": 365},
    },
    "events": [
        {
            "name": "review_left",
            "label": {"ru": "Отзыв о покупке", "en": "Review left"},
            "points": 50,
            "caps": {"day": 1, "month": 5},
        }
    ],
    "referral": {
        "referrer": {"points": 300},
        "referee": {"points": 200},
        "trigger": "first_purchase",
        "min_purchase": 50000,
        "pending_days": 14,
        "monthly_cap": 10,
    },
    "stamp_cards": [
        {
            "id": "coffee",
            "name": {"ru": "Кофейная карта", "en": "Coffee card"},
            "lines": {"category": "drinks/coffee"},
            "stamps": 6,
            "reward": {"free_item": {}},
        }
    ],
    "family": {"max_members": 4, "leave_split": "contributed"},
    "transfers": {"enabled": True, "min_points": 10, "max_points_per_month": 5000},
    "donations": {
        "enabled": True,
        "charities": [{"code": "shelter", "name": {"ru": "Приют «Дом»", "en": "Home Shelter"}}],
    },
    "clubs": [
        {
            "code": "gourmet",
            "name": {"ru": "Клуб гурманов", "en": "Gourmet club"},
            "join": "invitation",
            "fee": {"amount": 29900, "period": "month", "grace_days": 7},
        }
    ],
}
DEMO_REWARD = {
    "code": "mug",
    "kind": "material",
    "name": {"ru": "Фирменная кружка", "en": "Branded mug"},
    "cost": 1500,
    "cost_by_tier": {"gold": 1200},
}
DEMO_PROMO = {
    "code": "WELCOME10",
    "benefit": {"discount_percent": 10},
    "name": {"ru": "Скидка 10% на первый заказ", "en": "10% off your first order"},
    "min_basket": 30000,
    "per_member": 1,
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
            c.ledger.accrue(actor, member.id, 500 * (i + 1), reason="Opening balance")
        reward = c.rewards.create(actor, RewardDefinition.model_validate(DEMO_REWARD))
        c.rewards.set_stock(actor, reward.id, StockInput(location="MSK-001", quantity=20))
        c.coupons.create_promo(actor, PromoCodeInput.model_validate(DEMO_PROMO))
    admin = c.tenants.create_api_key(actor, Role.ADMIN, name="demo admin")
    pos = c.tenants.create_api_key(actor, Role.POS, outlet_code="MSK-001", name="demo till")
    keys = {"admin": admin.key, "pos": pos.key}
    keys_file.parent.mkdir(parents=True, exist_ok=True)
    keys_file.write_text("".join(f"{k}={v}\n" for k, v in keys.items()))
    return keys
