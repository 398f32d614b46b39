"""Coupons over HTTP, on SQLite and PostgreSQL: a public promo code at the till (calculate,
confirm, used up, another tenant's and malformed codes); every reason the till rejects a
coupon for, with its ru/en message; batches generated, exported as CSV and as printable
images; personal coupons; refunds giving coupons back when the program says so."""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kopilka.bootstrap import Container
from kopilka.testing import FakeClock
from tests.conftest import Merchant
from tests.e2e.helpers import assert_problem, enrol, error_paths, ok, writes

PROGRAM: dict[str, Any] = {
    "type": "bonus",
    "redemption": {"point_value": 100},
    "coupons": {"restore_on_refund": True, "max_per_receipt": 3},
    "rules": [{"id": "base", "effects": [{"points_percent": 5}]}],
}
TV = {"sku": "TV", "qty": 1, "price": 100_000, "category": "electronics/tv"}
MUG = {"sku": "MUG", "qty": 2, "price": 25_000, "category": "home/kitchen"}


def publish(
    client: TestClient, m: Merchant, document: dict[str, Any] = PROGRAM, code: str = "main"
) -> None:
    ok(client.put(f"/v1/programs/{code}", headers=m.headers(), json={"document": document}))


def promo(client: TestClient, m: Merchant, code: str, **fields: Any) -> dict[str, Any]:
    body = {"code": code, "benefit": {"discount_percent": 10}, **fields}
    result: dict[str, Any] = ok(client.post("/v1/coupons", headers=m.headers(), json=body), 201)
    return result


def calculate(
    client: TestClient,
    m: Merchant,
    coupons: list[str],
    lines: list[dict[str, Any]] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    body = {"lines": lines or [TV], "coupons": coupons, **fields}
    result: dict[str, Any] = ok(
        client.post("/v1/purchases/calculate", headers=m.headers("pos"), json=body)
    )
    return result


def confirm(
    client: TestClient,
    m: Merchant,
    number: str,
    coupons: list[str],
    lines: list[dict[str, Any]] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    body = {"lines": lines or [TV], "coupons": coupons, "receipt_number": number, **fields}
    result: dict[str, Any] = ok(
        client.post("/v1/purchases", headers=m.headers("pos"), json=body), 201
    )
    return result


def verdicts(answer: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    return [(c["code"], c["status"], c["reason"]) for c in answer["coupons"]]


def coupon(client: TestClient, m: Merchant, code: str) -> dict[str, Any]:
    result: dict[str, Any] = ok(client.get(f"/v1/coupons/{code}", headers=m.headers("readonly")))
    return result


# ---- a public promo code --------------------------------------------------------------------
def test_a_public_code_at_the_till_then_used_up(
    client: TestClient, merchant: Merchant, other_merchant: Merchant
) -> None:
    publish(client, merchant)
    made = promo(client, merchant, "spring25", max_uses=2, name={"ru": "Весна", "en": "Spring"})
    assert made["code"] == "SPRING25"
    assert made["kind"] == "public"
    assert made["status"] == "active"
    assert (made["uses_total"], made["uses_left"]) == (2, 2)
    assert made["description"] == {"ru": "Скидка 10%", "en": "10% off"}
    # The same body again answers the same code; other terms under it are refused.
    again = ok(
        client.post(
            "/v1/coupons",
            headers=merchant.headers(),
            json={
                "code": "SPRING25",
                "benefit": {"discount_percent": 10},
                "max_uses": 2,
                "name": {"ru": "Весна", "en": "Spring"},
            },
        ),
        201,
    )
    assert again["id"] == made["id"]
    assert_problem(
        client.post(
            "/v1/coupons",
            headers=merchant.headers(),
            json={"code": "Spring25", "benefit": {"discount_percent": 50}},
        ),
        409,
        "coupon_code_taken",
    )

    # Anonymous receipts may use a public code: case and spaces do not matter.
    quote = calculate(client, merchant, [" spring25 "])
    assert quote["coupons"] == [
        {
            "code": "SPRING25",
            "status": "applied",
            "reason": None,
            "message": {
                "ru": "Купон применён: скидка 100\u00a0₽",
                "en": "Coupon applied: 100 ₽ off",
            },
            "discount": 10_000,
            "points": 0,
            "program": "main",
            "kind": "public",
        }
    ]
    assert quote["totals"]["discount"] == 10_000
    assert [a["rule_id"] for a in quote["applied"]] == ["coupon:SPRING25"]
    assert quote["applied"][0]["rule_name"] == {"ru": "Весна", "en": "Spring"}
    assert coupon(client, merchant, "spring25")["uses_left"] == 2  # calculating uses nothing

    member = enrol(client, merchant)
    first = confirm(client, merchant, "R-1", ["SPRING25"], member={"id": member["id"]})
    assert verdicts(first) == [("SPRING25", "applied", None)]
    assert first["totals"]["pay"] == 90_000
    assert first["totals"]["points_earned"] == 45  # 5% of what was paid
    confirm(client, merchant, "R-2", ["SPRING25"])
    state = coupon(client, merchant, "SPRING25")
    assert (state["status"], state["uses_left"]) == ("used", 0)
    assert {r["member_id"] for r in state["redemptions"]} == {member["id"], None}

    # Used up: the till says so, and the receipt goes through without it.
    late = confirm(client, merchant, "R-3", ["SPRING25"])
    assert late["coupons"][0]["reason"] == "already_used"
    assert late["coupons"][0]["message"] == {"ru": "Купон уже использован", "en": "Already used"}
    assert late["totals"]["discount"] == 0
    # A replayed receipt answers the same, and redeems nothing again.
    assert confirm(client, merchant, "R-1", ["SPRING25"], member={"id": member["id"]}) == first

    # Another tenant's till does not know the code.
    publish(client, other_merchant)
    theirs = calculate(client, other_merchant, ["SPRING25"])
    assert verdicts(theirs) == [("SPRING25", "rejected", "unknown_coupon")]
    assert_problem(
        client.get("/v1/coupons/SPRING25", headers=other_merchant.headers()),
        404,
        "coupon_not_found",
    )


def test_malformed_and_unknown_codes(
    client: TestClient, merchant: Merchant, container: Container
) -> None:
    publish(client, merchant)
    before = writes(container.engine)
    for bad in ("ab", "SPR NG", "-SPRING", "SPRING-", "ВЕСНА", "X" * 65, "a!b"):
        r = client.get(f"/v1/coupons/{bad}", headers=merchant.headers())
        body = assert_problem(r, 422, "invalid_coupon_code")
        assert error_paths(body) == [["code"]]
        r = client.post(
            "/v1/coupons",
            headers=merchant.headers(),
            json={"code": bad, "benefit": {"gift": {"sku": "X"}}},
        )
        assert r.status_code == 422, r.text
    assert_problem(
        client.get("/v1/coupons/NOPE1", headers=merchant.headers()), 404, "coupon_not_found"
    )
    assert_problem(
        client.post("/v1/coupons/NOPE1/void", headers=merchant.headers()), 404, "coupon_not_found"
    )
    assert writes(container.engine) == before
    # At the till a malformed or unknown code is rejected; the purchase goes through.
    answer = calculate(client, merchant, ["SPR NG", "a!b", "NOPE1"])
    assert verdicts(answer) == [
        ("SPR NG", "rejected", "invalid_code"),
        ("A!B", "rejected", "invalid_code"),
        ("NOPE1", "rejected", "unknown_coupon"),
    ]
    assert answer["coupons"][2]["message"] == {"ru": "Купон не найден", "en": "Coupon not found"}
    # Too long for the till's request: refused with the field's path.
    body = assert_problem(
        client.post(
            "/v1/purchases/calculate",
            headers=merchant.headers("pos"),
            json={"lines": [TV], "coupons": ["X" * 65]},
        ),
        422,
        "validation_failed",
    )
    assert error_paths(body)[0][:3] == ["body", "coupons", 0]


@pytest.mark.parametrize(
    ("body", "path", "code"),
    [
        (
            {"code": "OK1", "benefit": {"discount_percent": 120}},
            ["benefit", "discount_percent"],
            "invalid_effect_value",
        ),
        ({"code": "OK1", "benefit": {"teleport": 1}}, ["benefit", "teleport"], "unknown_effect"),
        (
            {"code": "OK1", "benefit": {"discount_percent": 5}, "scope": {"colour": "red"}},
            ["scope", "colour"],
            "unknown_condition",
        ),
        (
            {
                "code": "OK1",
                "benefit": {"discount_percent": 5},
                "valid_days": 3,
                "valid_until": "2026-03-01T00:00:00Z",
            },
            ["valid_days"],
            "validity_ambiguous",
        ),
        (
            {
                "code": "OK1",
                "benefit": {"discount_percent": 5},
                "valid_from": "2026-03-01T00:00:00Z",
                "valid_until": "2026-02-01T00:00:00Z",
            },
            ["valid_until"],
            "invalid_validity",
        ),
    ],
)
def test_bad_terms_are_refused_with_their_paths(
    client: TestClient,
    merchant: Merchant,
    container: Container,
    body: dict[str, Any],
    path: list[str],
    code: str,
) -> None:
    before = writes(container.engine)
    problem = assert_problem(client.post("/v1/coupons", headers=merchant.headers(), json=body), 422)
    assert {"path": path, "code": code} in [
        {"path": e["path"], "code": e["code"]} for e in problem["errors"]
    ], problem
    assert writes(container.engine) == before


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"code": "X1", "benefit": {}}, ["body", "benefit"]),
        (
            {"code": "X1", "benefit": {"discount_percent": 5}, "min_basket": -1},
            ["body", "min_basket"],
        ),
        (
            {"code": "X1", "benefit": {"discount_percent": 5}, "min_basket": 10**20},
            ["body", "min_basket"],
        ),
        ({"code": "X1", "benefit": {"discount_percent": 5}, "max_uses": 0}, ["body", "max_uses"]),
        (
            {"code": "X1", "benefit": {"discount_percent": 5}, "channels": ["fax"]},
            ["body", "channels", 0],
        ),
        (
            {"code": "X1", "benefit": {"discount_percent": 5}, "combinable": "yes"},
            ["body", "combinable"],
        ),
        (
            {"code": "X1", "benefit": {"discount_percent": 5}, "valid_days": 10**9},
            ["body", "valid_days"],
        ),
        (
            {
                "code": "X1",
                "benefit": {"discount_percent": 5},
                "valid_until": "9999-12-31T23:59:59-05:00",
            },
            ["body", "valid_until"],
        ),
        (
            {"code": "X1", "benefit": {"discount_percent": 5}, "program": "Main!"},
            ["body", "program"],
        ),
    ],
)
def test_wrong_types_are_422_with_the_field_path(
    client: TestClient, merchant: Merchant, body: dict[str, Any], path: list[str | int]
) -> None:
    problem = assert_problem(
        client.post("/v1/coupons", headers=merchant.headers(), json=body), 422, "validation_failed"
    )
    assert any(p[: len(path)] == path for p in error_paths(problem)), problem


# ---- every reason the till rejects a coupon for -------------------------------------------
def test_every_rejection_reason_at_the_till(
    client: TestClient, merchant: Merchant, other_merchant: Merchant, clock: FakeClock
) -> None:
    publish(client, merchant)
    ok(
        client.post(
            "/v1/outlets", headers=merchant.headers(), json={"code": "OUT-2", "name": "Two"}
        ),
        201,
    )
    member = enrol(client, merchant)
    stranger = enrol(client, merchant)
    me = {"id": member["id"]}
    now = clock.now()
    promo(client, merchant, "VOIDED")
    ok(client.post("/v1/coupons/voided/void", headers=merchant.headers()))
    promo(client, merchant, "LATER", valid_from=(now + timedelta(days=10)).isoformat())
    promo(client, merchant, "GONE", valid_from=(now - timedelta(days=10)).isoformat(), valid_days=5)
    promo(client, merchant, "ONCE", max_uses=1)
    promo(client, merchant, "PERSON", per_member=1)
    promo(client, merchant, "POINTS", benefit={"points_fixed": 100})
    promo(client, merchant, "ELSEWHERE", outlets=["OUT-2"])
    promo(client, merchant, "ONLINE", channels=["online"])
    promo(client, merchant, "ALONE", combinable=False)
    promo(client, merchant, "BIG", min_basket=150_000)
    promo(client, merchant, "MUGS", scope={"category": "home"}, min_basket=100_000)
    promo(client, merchant, "TVONLY", scope={"sku": "TV"})
    promo(client, merchant, "OTHERPROG", program="closed")
    promo(client, merchant, "CPN1")
    promo(client, merchant, "CPN2")
    promo(client, merchant, "CPN3")
    promo(client, merchant, "CPN4")
    personal = ok(
        client.post(
            f"/v1/members/{stranger['id']}/coupons",
            headers=merchant.headers(),
            json={"benefit": {"discount_amount": 500}},
        ),
        201,
    )["code"]
    confirm(client, merchant, "R-ONCE", ["ONCE"])
    confirm(client, merchant, "R-PERSON", ["PERSON"], member=me)
    batch = ok(
        client.post(
            "/v1/coupon-batches",
            headers=merchant.headers(),
            json={"code": "flyer", "count": 1, "benefit": {"discount_percent": 5}},
        ),
        201,
    )
    exported = client.get(f"/v1/coupon-batches/{batch['id']}/codes.csv", headers=merchant.headers())
    flyer = exported.text.splitlines()[1].split(",")[0]
    ok(client.post(f"/v1/coupon-batches/{batch['id']}/void", headers=merchant.headers()))

    def reason(codes: list[str], **fields: Any) -> list[tuple[str | None, dict[str, str]]]:
        answer = calculate(client, merchant, codes, **fields)
        return [(c["reason"], c["message"]) for c in answer["coupons"]]

    cases: list[tuple[list[str], dict[str, Any], int, str, dict[str, str]]] = [
        (["NOPE1"], {}, 0, "unknown_coupon", {"ru": "Купон не найден", "en": "Coupon not found"}),
        (
            ["N#PE"],
            {},
            0,
            "invalid_code",
            {"ru": "Неверный формат кода купона", "en": "This is not a valid coupon code"},
        ),
        (
            ["CPN1", "cpn1"],
            {},
            1,
            "duplicate_coupon",
            {"ru": "Этот купон уже указан в чеке", "en": "This coupon is already on the receipt"},
        ),
        (
            ["VOIDED"],
            {},
            0,
            "coupon_voided",
            {"ru": "Купон аннулирован", "en": "The coupon was cancelled"},
        ),
        (
            [flyer],
            {},
            0,
            "coupon_voided",
            {"ru": "Купон аннулирован", "en": "The coupon was cancelled"},
        ),
        (
            ["LATER"],
            {},
            0,
            "not_yet_valid",
            {"ru": "Купон действует с 25 января 2026", "en": "Valid from 25 January 2026"},
        ),
        (
            ["GONE"],
            {},
            0,
            "expired",
            {"ru": "Срок действия купона истёк 10 января 2026", "en": "Expired on 10 January 2026"},
        ),
        (["ONCE"], {}, 0, "already_used", {"ru": "Купон уже использован", "en": "Already used"}),
        (
            ["PERSON"],
            {},
            0,
            "member_required",
            {
                "ru": "Купон действует только для участников программы: предъявите карту",
                "en": "For loyalty members only: present the card",
            },
        ),
        (
            ["PERSON"],
            {"member": me},
            0,
            "member_limit_reached",
            {"ru": "Вы уже использовали этот купон", "en": "You have already used this coupon"},
        ),
        (
            ["POINTS"],
            {},
            0,
            "member_required",
            {
                "ru": "Купон действует только для участников программы: предъявите карту",
                "en": "For loyalty members only: present the card",
            },
        ),
        (
            [personal],
            {},
            0,
            "member_required",
            {
                "ru": "Купон действует только для участников программы: предъявите карту",
                "en": "For loyalty members only: present the card",
            },
        ),
        (
            [personal],
            {"member": me},
            0,
            "other_member",
            {
                "ru": "Купон выписан на другого участника",
                "en": "This coupon belongs to another member",
            },
        ),
        (
            ["ELSEWHERE"],
            {},
            0,
            "wrong_outlet",
            {"ru": "Купон не действует в этом магазине", "en": "Not valid in this outlet"},
        ),
        (
            ["ONLINE"],
            {},
            0,
            "wrong_channel",
            {
                "ru": "Купон не действует в магазине",
                "en": "The coupon is not valid for in-store purchases",
            },
        ),
        (
            ["CPN1", "ALONE"],
            {},
            1,
            "not_combinable",
            {
                "ru": "Купон не суммируется с другими купонами",
                "en": "Cannot be combined with other coupons",
            },
        ),
        (
            ["ALONE", "CPN1"],
            {},
            1,
            "not_combinable",
            {
                "ru": "Купон не суммируется с другими купонами",
                "en": "Cannot be combined with other coupons",
            },
        ),
        (
            ["CPN1", "CPN2", "CPN3", "CPN4"],
            {},
            3,
            "too_many_coupons",
            {"ru": "Не больше 3 купонов на один чек", "en": "At most 3 coupons per receipt"},
        ),
        (
            ["BIG"],
            {},
            0,
            "min_basket",
            {"ru": "Минимальная сумма покупки 1\u00a0500\u00a0₽", "en": "Minimum basket 1,500 ₽"},
        ),
        (
            ["MUGS"],
            {"lines": [TV, MUG]},
            0,
            "min_basket",
            {"ru": "Минимальная сумма покупки 1\u00a0000\u00a0₽", "en": "Minimum basket 1,000 ₽"},
        ),
        (
            ["MUGS"],
            {},
            0,
            "no_eligible_items",
            {
                "ru": "В чеке нет товаров, на которые действует купон",
                "en": "Nothing on the receipt the coupon applies to",
            },
        ),
        (
            ["TVONLY"],
            {"lines": [{**TV, "flags": ["no_discount"]}]},
            0,
            "no_benefit",
            {
                "ru": "Купон не даёт скидки на товары этого чека",
                "en": "The coupon gives nothing on this receipt",
            },
        ),
        (
            ["OTHERPROG"],
            {},
            0,
            "program_not_in_force",
            {
                "ru": "Акция этого купона сейчас не действует",
                "en": "The coupon's promotion is not running now",
            },
        ),
    ]
    seen = set()
    for codes, fields, at, expected, message in cases:
        got = reason(codes, **fields)
        assert got[at] == (expected, message), (codes, got)
        seen.add(expected)
    # An exclusive promotion of the program leaves no room for a coupon.
    exclusive = {
        **PROGRAM,
        "rules": [{"id": "sale", "exclusive": True, "effects": [{"discount_percent": 20}]}],
    }
    publish(client, merchant, exclusive)
    assert reason(["CPN1"]) == [
        (
            "blocked_by_promotion",
            {
                "ru": "Купон не суммируется с акцией, уже применённой к чеку",
                "en": "Cannot be combined with the promotion applied to the receipt",
            },
        )
    ]
    seen.add("blocked_by_promotion")
    # A code only a program rule names is the program's business: applied or not.
    named = {
        **PROGRAM,
        "rules": [
            {
                "id": "tv",
                "when": {"all": [{"coupon": "TVDAY"}, {"sku": "TV"}]},
                "effects": [{"discount_amount": 700}],
            }
        ],
    }
    publish(client, merchant, named)
    answer = calculate(client, merchant, ["tvday"])
    assert verdicts(answer) == [("TVDAY", "applied", None)]
    assert answer["coupons"][0]["discount"] == 700
    assert reason(["TVDAY"], lines=[MUG]) == [
        (
            "conditions_not_met",
            {"ru": "Условия акции не выполнены", "en": "The promotion's conditions are not met"},
        )
    ]
    seen.add("conditions_not_met")
    # No program in force (another tenant's till, with none): no coupon is accepted.
    answer = calculate(client, other_merchant, ["CPN1", "NOPE1"])
    assert [(c["reason"], c["message"]) for c in answer["coupons"]] == [
        (
            "no_program",
            {"ru": "Сейчас купоны не принимаются", "en": "Coupons are not accepted at the moment"},
        )
    ] * 2
    seen.add("no_program")
    from kopilka.domain.coupons.texts import REASONS

    assert seen == REASONS  # every reason the till has is tested above


# ---- batches ----------------------------------------------------------------------------------
def test_a_batch_generated_exported_and_used(
    client: TestClient, merchant: Merchant, other_merchant: Merchant
) -> None:
    publish(client, merchant)
    body = {
        "code": "flyer-may",
        "count": 300,
        "length": 8,
        "prefix": "may-",
        "benefit": {"discount_amount": {"value": 50_000, "per": "receipt"}},
        "min_basket": 150_000,
        "valid_from": "2026-01-01T00:00:00+03:00",
        "valid_until": "2026-06-01T00:00:00+03:00",
        "name": {"ru": "Майская листовка"},
    }
    made = ok(client.post("/v1/coupon-batches", headers=merchant.headers(), json=body), 201)
    assert made["prefix"] == "MAY-"
    assert made["alphabet"] == "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
    assert made["counts"] == {"codes": 300, "used": 0, "voided": 0}
    assert made["name"] == {"ru": "Майская листовка", "en": "Майская листовка"}
    assert made["description"] == {
        "ru": "Скидка 500\u00a0₽ при покупке от 1\u00a0500\u00a0₽, до 31 мая 2026 включительно",
        "en": "500 ₽ off on a basket of 1,500 ₽ or more, valid through 31 May 2026",
    }
    # The batch's code is its natural key.
    again = ok(client.post("/v1/coupon-batches", headers=merchant.headers(), json=body), 201)
    assert again["id"] == made["id"]
    assert_problem(
        client.post("/v1/coupon-batches", headers=merchant.headers(), json={**body, "count": 301}),
        409,
        "coupon_batch_exists",
    )
    listed = ok(client.get("/v1/coupon-batches", headers=merchant.headers("readonly")))
    assert [b["id"] for b in listed["items"]] == [made["id"]]

    r = client.get(f"/v1/coupon-batches/{made['id']}/codes.csv", headers=merchant.headers())
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert 'filename="coupons-flyer-may.csv"' in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    codes = [row["code"] for row in rows]
    assert len(set(codes)) == 300
    assert codes == sorted(codes)
    for code in codes:
        assert code.startswith("MAY-")
        assert len(code) == 12
        assert not set(code[4:]) & set("01OIL")
    assert (rows[0]["status"], rows[0]["uses_left"]) == ("active", "1")

    # Codes work at the till once each, and the batch counts them.
    big = [{**TV, "price": 200_000}]
    used = confirm(client, merchant, "B-1", [codes[0].lower()], lines=big)
    assert verdicts(used) == [(codes[0], "applied", None)]
    assert used["totals"]["discount"] == 50_000
    assert verdicts(calculate(client, merchant, [codes[0]], lines=big)) == [
        (codes[0], "rejected", "already_used")
    ]
    assert verdicts(calculate(client, merchant, [codes[1]])) == [
        (codes[1], "rejected", "min_basket")
    ]
    state = ok(client.get(f"/v1/coupon-batches/{made['id']}", headers=merchant.headers()))
    assert state["counts"] == {"codes": 300, "used": 1, "voided": 0}
    one = coupon(client, merchant, codes[0])
    assert (one["kind"], one["status"], one["batch_id"]) == ("batch", "used", made["id"])
    assert one["redemptions"][0]["discount"] == 50_000

    # Printable images: a page of QR codes and one of barcodes, each with a sheet to print.
    r = client.get(
        f"/v1/coupon-batches/{made['id']}/images",
        headers=merchant.headers(),
        params={"per_page": 120, "page": 2},
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    assert (r.headers["x-total-count"], r.headers["x-next-page"]) == ("300", "3")
    archive = zipfile.ZipFile(io.BytesIO(r.content))
    names = archive.namelist()
    assert names[:-1] == [f"{c}.png" for c in codes[120:240]]
    assert names[-1] == "sheet.html"
    assert archive.read(names[0]).startswith(b"\x89PNG")
    assert codes[120] in archive.read("sheet.html").decode()
    r = client.get(
        f"/v1/coupon-batches/{made['id']}/images",
        headers=merchant.headers(),
        params={"kind": "barcode", "per_page": 200, "page": 2},
    )
    assert "x-next-page" not in r.headers
    archive = zipfile.ZipFile(io.BytesIO(r.content))
    assert len(archive.namelist()) == 101
    assert b"<svg" in archive.read(f"{codes[200]}.svg")
    assert_problem(
        client.get(
            f"/v1/coupon-batches/{made['id']}/images",
            headers=merchant.headers(),
            params={"page": 4, "per_page": 100},
        ),
        422,
        "page_out_of_range",
    )
    assert_problem(
        client.get(
            f"/v1/coupon-batches/{made['id']}/images",
            headers=merchant.headers(),
            params={"per_page": 10_001},
        ),
        422,
        "validation_failed",
    )

    # Voiding the batch voids the codes not used yet; again changes nothing.
    voided = ok(client.post(f"/v1/coupon-batches/{made['id']}/void", headers=merchant.headers()))
    assert voided["status"] == "voided"
    assert voided["counts"] == {"codes": 300, "used": 1, "voided": 299}
    assert (
        ok(client.post(f"/v1/coupon-batches/{made['id']}/void", headers=merchant.headers()))
        == voided
    )
    assert verdicts(calculate(client, merchant, [codes[2]], lines=big)) == [
        (codes[2], "rejected", "coupon_voided")
    ]
    # Another tenant's till and admin never see them.
    publish(client, other_merchant)
    assert verdicts(calculate(client, other_merchant, [codes[3]], lines=big)) == [
        (codes[3], "rejected", "unknown_coupon")
    ]
    assert_problem(
        client.get(f"/v1/coupon-batches/{made['id']}", headers=other_merchant.headers()),
        404,
        "coupon_batch_not_found",
    )


@pytest.mark.parametrize(
    ("fields", "path", "code"),
    [
        ({"alphabet": "AB1B"}, ["alphabet"], "invalid_alphabet"),
        ({"alphabet": "ABC!"}, ["alphabet"], "invalid_alphabet"),
        ({"prefix": "-X"}, ["prefix"], "invalid_prefix"),
        ({"prefix": "SP RING"}, ["prefix"], "invalid_prefix"),
        (
            {"count": 10_000, "length": 4, "alphabet": "0123456789"},
            ["length"],
            "code_space_too_small",
        ),
        ({"benefit": {"fixed_price": -1}}, ["benefit", "fixed_price"], "invalid_effect_value"),
    ],
)
def test_bad_batches_are_refused_with_their_paths(
    client: TestClient,
    merchant: Merchant,
    container: Container,
    fields: dict[str, Any],
    path: list[str],
    code: str,
) -> None:
    before = writes(container.engine)
    body = {"code": "bad", "count": 10, "benefit": {"discount_percent": 5}, **fields}
    problem = assert_problem(
        client.post("/v1/coupon-batches", headers=merchant.headers(), json=body), 422
    )
    assert [(e["path"], e["code"]) for e in problem["errors"]] == [(path, code)]
    assert writes(container.engine) == before


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"count": 0}, ["body", "count"]),
        ({"count": 1_000_001}, ["body", "count"]),
        ({"count": "5"}, ["body", "count"]),
        ({"length": 3}, ["body", "length"]),
        ({"length": 33}, ["body", "length"]),
        ({"prefix": "P" * 17}, ["body", "prefix"]),
        ({"code": "Flyer"}, ["body", "code"]),
    ],
)
def test_batch_fields_of_the_wrong_shape(
    client: TestClient, merchant: Merchant, fields: dict[str, Any], path: list[str]
) -> None:
    body = {"code": "bad", "count": 10, "benefit": {"discount_percent": 5}, **fields}
    problem = assert_problem(
        client.post("/v1/coupon-batches", headers=merchant.headers(), json=body),
        422,
        "validation_failed",
    )
    assert any(p[: len(path)] == path for p in error_paths(problem)), problem


def test_bad_ids_of_batches(client: TestClient, merchant: Merchant) -> None:
    for url in ("/v1/coupon-batches/not-a-uuid", "/v1/coupon-batches/12/codes.csv"):
        body = assert_problem(client.get(url, headers=merchant.headers()), 422, "validation_failed")
        assert error_paths(body) == [["path", "batch_id"]]
    missing = "/v1/coupon-batches/00000000-0000-0000-0000-000000000009"
    assert_problem(client.get(missing, headers=merchant.headers()), 404, "coupon_batch_not_found")
    assert_problem(
        client.get(f"{missing}/codes.csv", headers=merchant.headers()),
        404,
        "coupon_batch_not_found",
    )


# ---- personal coupons -------------------------------------------------------------------------
def test_personal_coupons_of_a_member(client: TestClient, merchant: Merchant) -> None:
    document = {
        **PROGRAM,
        "rules": [
            {
                "id": "next-time",
                "when": {"amount_gte": 100_000},
                "effects": [
                    {"issue_coupon": {"benefit": {"discount_percent": 15}, "valid_days": 7}}
                ],
            }
        ],
    }
    publish(client, merchant, document)
    member = enrol(client, merchant)
    other = enrol(client, merchant)
    url = f"/v1/members/{member['id']}/coupons"
    body = {"benefit": {"points_fixed": 300}, "valid_days": 30, "channels": ["store", "app"]}
    headers = merchant.headers(**{"Idempotency-Key": "gift-1"})
    given = ok(client.post(url, headers=headers, json=body), 201)
    assert ok(client.post(url, headers=headers, json=body), 201) == given  # a retry
    assert_problem(
        client.post(url, headers=headers, json={**body, "valid_days": 31}),
        422,
        "idempotency_key_reused",
    )
    assert given["kind"] == "personal"
    assert given["member_id"] == member["id"]
    assert len(given["code"]) == 10
    assert given["description"] == {
        "ru": "+300 баллов, до 14 февраля 2026 включительно",
        "en": "+300 points, valid through 14 February 2026",
    }
    # A purchase whose rule issues a coupon: it shows among the member's coupons.
    bought = confirm(client, merchant, "P-1", [], member={"id": member["id"]})
    issued = bought["coupons_issued"][0]["code"]
    mine = ok(client.get(url, headers=merchant.headers("readonly")))["items"]
    assert [c["code"] for c in mine] == [issued, given["code"]]
    assert mine[0]["benefit"] == {"discount_percent": 15}
    # Only its member may use it; paging works.
    assert verdicts(calculate(client, merchant, [issued], member={"id": other["id"]})) == [
        (issued, "rejected", "other_member")
    ]
    both = confirm(client, merchant, "P-2", [issued, given["code"]], member={"id": member["id"]})
    assert verdicts(both) == [(issued, "applied", None), (given["code"], "applied", None)]
    points = [c["points"] for c in both["coupons"]]
    assert points == [0, 300]
    assert both["totals"]["discount"] == 15_000
    # P-2 earned a coupon of its own: the newest, still active.
    newest = both["coupons_issued"][0]["code"]
    first = ok(client.get(url, headers=merchant.headers(), params={"limit": 1}))
    assert [(c["code"], c["status"]) for c in first["items"]] == [(newest, "active")]
    rest = ok(client.get(url, headers=merchant.headers(), params={"cursor": first["next_cursor"]}))
    assert [(c["code"], c["status"]) for c in rest["items"]] == [
        (issued, "used"),
        (given["code"], "used"),
    ]
    assert rest["next_cursor"] is None
    assert_problem(
        client.post(
            "/v1/members/00000000-0000-0000-0000-000000000009/coupons",
            headers=merchant.headers(),
            json=body,
        ),
        404,
        "member_not_found",
    )


# ---- refunds ------------------------------------------------------------------------------
def test_a_refund_gives_the_coupon_back_when_the_program_says_so(
    client: TestClient, merchant: Merchant
) -> None:
    publish(client, merchant)
    promo(client, merchant, "BACK1", max_uses=1)
    promo(client, merchant, "BACK2", max_uses=1, program="strict")
    publish(client, merchant, {**PROGRAM, "coupons": {"restore_on_refund": False}}, code="strict")
    lines = [TV, MUG]
    receipt = confirm(client, merchant, "F-1", ["BACK1", "BACK2"], lines=lines)
    assert verdicts(receipt) == [("BACK1", "applied", None), ("BACK2", "applied", None)]
    receipt_id = receipt["receipt"]["id"]
    refunds = f"/v1/purchases/{receipt_id}/refunds"
    # A partial refund keeps the coupons used.
    part = ok(
        client.post(
            refunds,
            headers=merchant.headers("pos"),
            json={"refund_number": "RF-1", "lines": [{"line": 1, "qty": 1}]},
        ),
        201,
    )
    assert "coupons_restored" not in part
    assert coupon(client, merchant, "BACK1")["status"] == "used"
    # The rest of it: BACK1's program gives coupons back, BACK2's ("strict") does not.
    rest = ok(
        client.post(refunds, headers=merchant.headers("pos"), json={"refund_number": "RF-2"}),
        201,
    )
    assert rest["coupons_restored"] == ["BACK1"]
    back = coupon(client, merchant, "BACK1")
    assert (back["status"], back["uses_left"]) == ("active", 1)
    assert back["redemptions"][0]["status"] == "restored"
    assert coupon(client, merchant, "BACK2")["status"] == "used"
    # Replaying the refund restores nothing twice.
    again = ok(
        client.post(refunds, headers=merchant.headers("pos"), json={"refund_number": "RF-2"}),
        201,
    )
    assert again == rest
    assert coupon(client, merchant, "BACK1")["uses_left"] == 1
    # The coupon given back works again.
    assert verdicts(confirm(client, merchant, "F-2", ["BACK1"])) == [("BACK1", "applied", None)]


def test_a_cancelled_receipt_always_gives_its_coupons_back(
    client: TestClient, merchant: Merchant
) -> None:
    publish(client, merchant, {**PROGRAM, "coupons": {"restore_on_refund": False}})
    promo(client, merchant, "OOPS1", max_uses=1)
    receipt = confirm(client, merchant, "C-1", ["OOPS1"])
    cancelled = ok(
        client.post(
            f"/v1/purchases/{receipt['receipt']['id']}/cancel", headers=merchant.headers("pos")
        )
    )
    assert cancelled["refunds"][0]["coupons_restored"] == ["OOPS1"]
    assert coupon(client, merchant, "OOPS1")["uses_left"] == 1


def test_a_held_receipt_redeems_when_confirmed(client: TestClient, merchant: Merchant) -> None:
    publish(client, merchant)
    member = enrol(client, merchant)
    promo(client, merchant, "HOLD1", max_uses=1)
    held = confirm(client, merchant, "H-1", ["HOLD1"], member={"id": member["id"]}, hold=True)
    assert verdicts(held) == [("HOLD1", "applied", None)]
    assert coupon(client, merchant, "HOLD1")["uses_left"] == 1  # reserved by nothing yet
    done = ok(
        client.post(
            f"/v1/purchases/{held['receipt']['id']}/confirm", headers=merchant.headers("pos")
        )
    )
    assert done["receipt"]["status"] == "confirmed"
    assert coupon(client, merchant, "HOLD1")["uses_left"] == 0
    # Another receipt took the last use meanwhile: confirming the hold is refused whole.
    promo(client, merchant, "HOLD2", max_uses=1)
    held = confirm(client, merchant, "H-2", ["HOLD2"], member={"id": member["id"]}, hold=True)
    confirm(client, merchant, "H-3", ["HOLD2"])
    assert_problem(
        client.post(
            f"/v1/purchases/{held['receipt']['id']}/confirm", headers=merchant.headers("pos")
        ),
        409,
        "coupon_already_used",
    )
    state = ok(client.get(f"/v1/purchases/{held['receipt']['id']}", headers=merchant.headers()))
    assert state["receipt"]["status"] == "held"
