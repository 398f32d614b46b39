"""Small helpers shared by the HTTP end-to-end tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from kopilka.adapters.db.tables import metadata
from kopilka.bootstrap import Container, bootstrap
from kopilka.domain.members.card_numbers import CardScheme, make_number
from kopilka.settings import Settings
from kopilka.testing import FakeClock
from tests.conftest import Merchant

PROBLEM_KEYS = ("type", "code", "status", "title", "detail", "request_id", "instance")


def card(serial: int, prefix: str = "2") -> str:
    """A valid EAN-13 card number (the default tenant scheme)."""
    return make_number(CardScheme.EAN13, prefix, serial)


def bad_check_digit(number: str) -> str:
    """The same number with a wrong check digit."""
    return number[:-1] + str((int(number[-1]) + 1) % 10)


def assert_problem(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """Assert ``r`` is an RFC 9457 problem with ``status`` (and ``code``); return its body."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body: dict[str, Any] = r.json()
    for key in PROBLEM_KEYS:
        assert key in body, (key, body)
    assert body["status"] == status
    assert body["request_id"] == r.headers["x-request-id"]
    if code is not None:
        assert body["code"] == code, body
    return body


def error_paths(body: dict[str, Any]) -> list[list[str | int]]:
    return [e["path"] for e in body.get("errors", [])]


def ok(r: httpx.Response, status: int = 200) -> Any:
    """Assert a success status and return the JSON body."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    return r.json()


def enrol(client: TestClient, m: Merchant, role: str = "pos", **fields: Any) -> dict[str, Any]:
    result: dict[str, Any] = ok(
        client.post("/v1/members", headers=m.headers(role), json=fields), 201
    )
    return result


def accrue(
    client: TestClient, m: Merchant, member_id: str, points: int, **fields: Any
) -> dict[str, Any]:
    result: dict[str, Any] = ok(
        client.post(
            f"/v1/members/{member_id}/accruals",
            headers=m.headers(),
            json={"points": points, **fields},
        ),
        201,
    )
    return result


def balance(client: TestClient, m: Merchant, member_id: str) -> dict[str, Any]:
    result: dict[str, Any] = ok(
        client.get(f"/v1/members/{member_id}/balance", headers=m.headers("readonly"))
    )
    return result


def count(engine: sa.Engine, table: str, tenant_id: uuid.UUID | None = None) -> int:
    """Rows in ``table`` (optionally of one tenant)."""
    t = metadata.tables[table]
    stmt = sa.select(sa.func.count()).select_from(t)
    if tenant_id is not None:
        stmt = stmt.where(t.c.tenant_id == tenant_id)
    with engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def delete_all(engine: sa.Engine) -> None:
    """Empty every table, children first. On PostgreSQL, DELETE on the few rows a test
    leaves takes ~10 ms where TRUNCATE of every table takes ~450 ms (new files per table),
    and the e2e suite resets the database a few hundred times."""
    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(sa.delete(table))


def backend_engine(request: pytest.FixtureRequest) -> sa.Engine:
    """The suite's engine for a fixture parametrized by ``BACKENDS``."""
    engine: sa.Engine = request.getfixturevalue(
        "pg_engine" if request.param == "postgresql" else "sqlite_engine"
    )
    return engine


def fresh_container(engine: sa.Engine) -> Container:
    """An emptied database and a container on it, on a fake clock."""
    delete_all(engine)
    return bootstrap(
        Settings(database_url=engine.url.render_as_string(hide_password=False)),
        clock=FakeClock(),
        engine=engine,
    )


def writes(engine: sa.Engine, tenant_id: uuid.UUID | None = None) -> tuple[int, ...]:
    """A fingerprint of everything a write leaves behind (row counts of every table, in one
    query); equal before and after means nothing was written."""
    counts = []
    for table in metadata.sorted_tables:
        stmt = sa.select(sa.func.count()).select_from(table)
        if tenant_id is not None:
            if "tenant_id" not in table.c:
                continue
            stmt = stmt.where(table.c.tenant_id == tenant_id)
        counts.append(stmt.scalar_subquery())
    with engine.connect() as conn:
        return tuple(conn.execute(sa.select(*counts)).one())


@dataclass
class World:
    """One tenant's resources of every kind, made over HTTP."""

    merchant: Merchant
    member_id: str
    other_member_id: str
    phone: str
    card_number: str  # the member's active virtual card
    unbound_card: str  # pre-printed, registered, not bound
    spare_card: str  # pre-printed, registered, not bound
    transaction_id: str  # an accrual of 500 to member
    hold_id: str  # an active hold of 50 on member
    api_key_id: str
    api_key: str  # the spare key's secret (readonly)
    qr_token: str
    program_code: str
    spare_program_code: str
    sku: str
    receipt_id: str  # a confirmed purchase by member
    # Resources of the loyalty mechanics, by name (e.g. "family_id"), for isolation cases.
    extra: dict[str, str] = field(default_factory=dict)


def build_world(client: TestClient, m: Merchant, *, serial_base: int, phone: str) -> World:
    """Enrol two members, register cards, accrue, hold, issue an extra API key, publish a
    program, list a product and confirm a purchase."""
    member = enrol(client, m, phone=phone, name="Main")
    other = enrol(client, m, name="Other")
    numbers = [card(serial_base + i) for i in range(3)]
    ok(
        client.post(
            "/v1/card-batches",
            headers=m.headers(),
            json={"name": f"batch-{serial_base}", "numbers": numbers},
        ),
        201,
    )
    txn = accrue(client, m, member["id"], 500)["transactions"][0]["id"]
    hold = ok(
        client.post(
            f"/v1/members/{member['id']}/holds", headers=m.headers("pos"), json={"points": 50}
        ),
        201,
    )["hold"]["id"]
    key = ok(
        client.post(
            "/v1/api-keys", headers=m.headers(), json={"role": "readonly", "name": "spare"}
        ),
        201,
    )
    number = member["cards"][0]["number"]
    token = ok(client.get(f"/v1/cards/{number}/qr", headers=m.headers("pos")))["token"]
    code, sku = f"prog-{serial_base}", f"SKU-{serial_base}"
    for program in (code, f"{code}-spare"):
        ok(
            client.put(
                f"/v1/programs/{program}",
                headers=m.headers(),
                json={
                    "document": {
                        "type": "bonus",
                        "rules": [{"id": "base", "effects": [{"points_percent": 5}]}],
                    }
                },
            )
        )
    ok(
        client.put(
            "/v1/products",
            headers=m.headers(),
            json={"products": [{"sku": sku, "name": "Latte", "price": 25000}]},
        )
    )
    receipt = ok(
        client.post(
            "/v1/purchases",
            headers=m.headers("pos"),
            json={
                "member": {"id": member["id"]},
                "receipt_number": f"R-{serial_base}",
                "lines": [{"sku": sku, "qty": 1, "price": 25000}],
            },
        ),
        201,
    )["receipt"]["id"]
    world = World(
        m,
        member["id"],
        other["id"],
        member["phone"],
        number,
        numbers[0],
        numbers[1],
        txn,
        hold,
        key["id"],
        key["key"],
        token,
        code,
        f"{code}-spare",
        sku,
        receipt,
    )
    # Each mechanic adds its resources to ``world.extra`` here.
    # slot:tiers
    # slot:lifecycle
    # slot:referrals
    # slot:stamps
    # slot:families
    # slot:clubs
    # A paid club joined by invitation, with the main member in it, paid for a month.
    club = f"club-{serial_base}"
    club_doc = {
        "type": "discount",
        "clubs": [
            {
                "code": club,
                "name": "Club",
                "join": "invitation",
                "fee": {"amount": 29900, "period": "month"},
            }
        ],
    }
    ok(
        client.put(
            f"/v1/programs/clubs-{serial_base}", headers=m.headers(), json={"document": club_doc}
        )
    )
    invitation = ok(
        client.post(f"/v1/clubs/{club}/invitations", headers=m.headers(), json={}), 201
    )["codes"][0]
    member_clubs = f"/v1/members/{member['id']}/clubs"
    ok(
        client.post(
            member_clubs,
            headers=m.headers("pos"),
            json={"club": club, "invitation_code": invitation},
        ),
        201,
    )
    ok(
        client.post(
            f"{member_clubs}/{club}/payments",
            headers=m.headers(),
            json={
                "payment_id": f"pay-{serial_base}",
                "amount": 29900,
                "paid_at": "2026-01-15T09:00:00Z",
            },
        ),
        201,
    )
    world.extra["club_code"] = club
    # slot:rewards
    # A free gift (no points move), in stock at the outlet, ordered by the other member.
    gift = ok(
        client.post(
            "/v1/rewards",
            headers=m.headers(),
            json={
                "code": f"GIFT-{serial_base}",
                "kind": "material",
                "name": {"ru": "Кружка", "en": "Mug"},
                "cost": 0,
            },
        ),
        201,
    )
    ok(
        client.put(
            f"/v1/rewards/{gift['id']}/stock",
            headers=m.headers(),
            json={"location": "OUT-1", "quantity": 5},
        )
    )
    world.extra["reward_id"] = gift["id"]
    world.extra["order_id"] = ok(
        client.post(
            f"/v1/members/{other['id']}/reward-orders",
            headers=m.headers("pos"),
            json={"reward_id": gift["id"]},
        ),
        201,
    )["id"]
    # slot:coupons
    # A public promo code and a batch of two single-use codes.
    world.extra["coupon_code"] = ok(
        client.post(
            "/v1/coupons",
            headers=m.headers(),
            json={"code": f"PROMO{serial_base}", "benefit": {"discount_percent": 10}},
        ),
        201,
    )["code"]
    world.extra["batch_id"] = ok(
        client.post(
            "/v1/coupon-batches",
            headers=m.headers(),
            json={"code": f"batch-{serial_base}", "count": 2, "benefit": {"discount_percent": 5}},
        ),
        201,
    )["id"]
    # slot:giftcards
    # A gift card of 1 000 roubles, sold and activated (its number names it in isolation cases).
    gift = ok(
        client.post(
            "/v1/gift-cards",
            headers=m.headers(),
            json={
                "amount": 100000,
                "sale": {
                    "outlet": "OUT-1",
                    "receipt_number": f"G-{serial_base}",
                    "sold_at": "2026-01-15T08:00:00Z",
                },
            },
        ),
        201,
    )
    ok(client.post(f"/v1/gift-cards/{gift['number']}/activate", headers=m.headers("pos"), json={}))
    world.extra["gift_card_number"] = gift["number"]
    # slot:campaigns
    # A draft campaign for a list of members (a draft changes no purchase).
    campaign = f"camp-{serial_base}"
    ok(
        client.post(
            "/v1/campaigns",
            headers=m.headers(),
            json={
                "code": campaign,
                "name": {"ru": "Весна", "en": "Spring"},
                "audience": {"kind": "members"},
                "budgets": {"points": 1000},
                "rules": [{"id": "bonus", "effects": [{"points_fixed": 10}]}],
            },
        ),
        201,
    )
    ok(
        client.put(
            f"/v1/campaigns/{campaign}/members",
            headers=m.headers(),
            json={"member_ids": [member["id"]]},
        )
    )
    world.extra["campaign_code"] = campaign
    # slot:draws
    # An open draw (its seed committed) over January.
    draw = f"draw-{serial_base}"
    ok(
        client.post(
            "/v1/draws",
            headers=m.headers(),
            json={
                "code": draw,
                "name": {"ru": "Розыгрыш", "en": "Draw"},
                "starts_on": "2026-01-01",
                "ends_on": "2026-01-31",
                "draw_on": "2026-02-01",
                "prizes": [{"rank": 1, "kind": "points", "points": 1000}],
            },
        ),
        201,
    )
    ok(client.post(f"/v1/draws/{draw}/open", headers=m.headers()))
    world.extra["draw_code"] = draw
    return world


@dataclass
class Pair:
    """Tenants A and B with resources of every kind, on one database, shared by tests that
    only read or are refused (see the ``pair`` fixture)."""

    client: TestClient
    engine: sa.Engine
    a: World
    b: World
    rows: tuple[int, ...]
