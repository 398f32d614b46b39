"""Prize draws over HTTP: defining, opening, freezing and running a draw; the publication
re-run offline by ``kopilka draw verify``; the entries download whose sha256 is the published
hash; a member's entries; bad input (field paths, taken codes, unknown codes and members)
writing nothing. Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from kopilka.bootstrap import Container
from kopilka.cli.main import app
from kopilka.testing import FakeClock
from tests.conftest import Merchant
from tests.e2e.helpers import assert_problem, enrol, error_paths, ok, writes

DRAW: dict[str, Any] = {
    "code": "spring",
    "name": {"ru": "Весенний розыгрыш", "en": "Spring draw"},
    "description": {"ru": "Каждый чек от 1 000 ₽", "en": "Every receipt of 1,000 ₽ or more"},
    "starts_on": "2026-02-01",
    "ends_on": "2026-02-28",
    "draw_on": "2026-03-02",
    "entry_rules": {"min_receipt": 100000, "multiplier_by_tier": {"gold": 2}},
    "prizes": [
        {"rank": 1, "kind": "points", "points": 5000},
        {
            "rank": 2,
            "count": 2,
            "kind": "points",
            "points": 1000,
            "name": {"ru": "Утешительный", "en": "Runner-up"},
        },
    ],
}
MID_WINDOW = datetime(2026, 2, 10, 12, tzinfo=UTC)
WINDOW_END = datetime(2026, 2, 28, 21, tzinfo=UTC)
DRAW_AT = datetime(2026, 3, 1, 21, tzinfo=UTC)


def buy(client: TestClient, m: Merchant, member_id: str, price: int, number: str) -> None:
    ok(
        client.post(
            "/v1/purchases",
            headers=m.headers("pos"),
            json={
                "member": {"id": member_id},
                "receipt_number": number,
                "lines": [{"sku": "TV", "qty": 1, "price": price}],
            },
        ),
        201,
    )


def step(client: TestClient, m: Merchant, code: str, action: str) -> dict[str, Any]:
    result: dict[str, Any] = ok(client.post(f"/v1/draws/{code}/{action}", headers=m.headers()))
    return result


def drawn(client: TestClient, m: Merchant, clock: FakeClock) -> tuple[list[str], dict[str, Any]]:
    """Five members with receipts, one of them gold; the draw run; its publication."""
    members = [enrol(client, m, name=f"P{i}")["id"] for i in range(4)]
    members.append(enrol(client, m, name="Gold", attributes={"tier": "gold"})["id"])
    ok(client.post("/v1/draws", headers=m.headers(), json=DRAW), 201)
    step(client, m, "spring", "open")
    clock.set(MID_WINDOW)
    for i, member in enumerate(members):
        buy(client, m, member, 100000 + i, f"R-{i}")
    clock.set(DRAW_AT)
    step(client, m, "spring", "freeze")
    step(client, m, "spring", "run")
    public: dict[str, Any] = ok(
        client.get("/v1/draws/spring/public", headers=m.headers("readonly"))
    )
    return members, public


def verify_file(path: Path, code: int) -> str:
    result = CliRunner().invoke(app, ["draw", "verify", str(path)])
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    return result.stdout + result.stderr


def test_a_draw_from_definition_to_winners(
    client: TestClient, merchant: Merchant, clock: FakeClock
) -> None:
    m = merchant
    h = m.headers()
    created = ok(client.post("/v1/draws", headers=h, json=DRAW), 201)
    assert (created["status"], created["seed_hash"], created["algorithm"]) == (
        "draft",
        None,
        "kopilka-draw-v1",
    )
    assert created["prizes"][0]["name"] == {"ru": "5\u00a0000 баллов", "en": "5,000 points"}
    assert created["prizes"][1]["name"] == {"ru": "Утешительный", "en": "Runner-up"}
    assert created["status_text"] == {"ru": "Черновик", "en": "Draft"}
    assert ok(client.post("/v1/draws", headers=h, json=DRAW), 201) == created
    opened = step(client, m, "spring", "open")
    assert opened["status"] == "open"
    assert opened["seed"] is None
    commitment = opened["seed_hash"]
    public = ok(client.get("/v1/draws/spring/public", headers=m.headers("pos")))
    assert (public["seed_hash"], public["seed"], public["entries"]) == (commitment, None, None)
    assert public["entry_rules"] == {
        "min_receipt": 100000,
        "per_receipt": 1,
        "multiplier_by_tier": {"gold": 2},
    }
    assert_problem(client.get("/v1/draws/spring/entries.jsonl", headers=h), 409, "draw_not_frozen")
    assert_problem(client.post("/v1/draws/spring/freeze", headers=h), 422, "draw_window_not_over")

    anna = enrol(client, m, name="Anna", attributes={"tier": "gold"})["id"]
    boris = enrol(client, m, name="Boris")["id"]
    clock.set(MID_WINDOW)
    buy(client, m, anna, 150000, "R-1")
    buy(client, m, boris, 100000, "R-2")
    buy(client, m, boris, 90000, "R-3")
    mine = ok(client.get(f"/v1/members/{anna}/draw-entries", headers=m.headers("readonly")))
    [item] = mine["items"]
    assert (item["code"], item["provisional"], item["total"]) == ("spring", True, 2)
    assert item["summary"]["ru"] == "У вас пока 2 шанса в розыгрыше «Весенний розыгрыш»"

    clock.set(WINDOW_END)
    frozen = step(client, m, "spring", "freeze")
    assert (frozen["entries_count"], frozen["entrants"], frozen["total_weight"]) == (2, 2, 3)
    text = client.get("/v1/draws/spring/entries.jsonl", headers=m.headers("readonly"))
    assert text.status_code == 200
    assert text.headers["content-type"].startswith("application/x-ndjson")
    assert hashlib.sha256(text.content).hexdigest() == frozen["entries_hash"]
    assert len(text.text.splitlines()) == 2
    assert_problem(client.post("/v1/draws/spring/run", headers=h), 422, "draw_date_not_reached")

    clock.set(DRAW_AT)
    result = step(client, m, "spring", "run")
    assert result["status"] == "drawn"
    assert hashlib.sha256(bytes.fromhex(result["seed"])).hexdigest() == commitment
    assert [w["slot"] for w in result["winners"]] == [1, 2]  # two entrants, three prizes
    assert {w["member_id"] for w in result["winners"]} == {anna, boris}
    assert all(w["status"] == "awarded" for w in result["winners"])
    assert step(client, m, "spring", "run") == result
    assert ok(client.get("/v1/draws/spring", headers=h)) == result
    listed = ok(client.get("/v1/draws", headers=h, params={"status": "drawn"}))
    assert [d["code"] for d in listed["items"]] == ["spring"]

    ledger = ok(client.get(f"/v1/members/{anna}/ledger", headers=h))["items"]
    prizes = [t for t in ledger if t["kind"] == "bonus"]
    assert len(prizes) == 1
    assert prizes[0]["description"]["ru"].startswith("Приз розыгрыша «Весенний розыгрыш»")
    [item] = ok(client.get(f"/v1/members/{anna}/draw-entries", headers=h))["items"]
    assert item["provisional"] is False
    assert [w["status"] for w in item["won"]] == ["awarded"]
    trail = ok(client.get(f"/v1/members/{anna}/audit", headers=h))
    assert {"draw.entered", "draw.won"} <= {e["action"] for e in trail}


def test_the_publication_verifies_offline_and_tampering_is_caught(
    client: TestClient, merchant: Merchant, clock: FakeClock, tmp_path: Path
) -> None:
    _, public = drawn(client, merchant, clock)
    assert len(public["winners"]) == 3
    assert public["entries_count"] == 5
    assert public["total_weight"] == 6  # the gold member's receipt counts twice
    good = tmp_path / "spring.json"
    good.write_text(json.dumps(public), encoding="utf-8")
    out = verify_file(good, 0)
    assert "ok   the seed matches its published hash" in out
    assert "ok   the entries match their published hash" in out
    assert "ok   the winners match the re-run: 3 drawn" in out
    assert "verified" in out

    # A changed entry list gives a different hash.
    changed = json.loads(json.dumps(public))
    changed["entries"][0]["weight"] += 1
    bad = tmp_path / "changed.json"
    bad.write_text(json.dumps(changed), encoding="utf-8")
    out = verify_file(bad, 1)
    assert "FAIL the entries match their published hash" in out
    assert "NOT VERIFIED" in out

    # Winners that are not the draw's are caught, slot by slot.
    forged = json.loads(json.dumps(public))
    one, two = forged["winners"][0], forged["winners"][1]
    (one["entry"], one["member"]), (two["entry"], two["member"]) = (
        (two["entry"], two["member"]),
        (one["entry"], one["member"]),
    )
    fake = tmp_path / "forged.json"
    fake.write_text(json.dumps(forged), encoding="utf-8")
    out = verify_file(fake, 1)
    assert "FAIL the winners match the re-run" in out
    assert "slot 1: published entry" in out

    junk = tmp_path / "junk.json"
    junk.write_text('{"code": 1}', encoding="utf-8")
    assert "is not a draw publication" in verify_file(junk, 2)


def test_bad_input_is_refused_with_paths_and_writes_nothing(
    client: TestClient, merchant: Merchant, container: Container
) -> None:
    h = merchant.headers()
    ok(client.post("/v1/draws", headers=h, json=DRAW), 201)
    before = writes(container.engine)
    cases: list[tuple[dict[str, Any], int, str, list[str | int]]] = [
        (
            {"prizes": [{"rank": 1, "kind": "points"}]},
            422,
            "validation_failed",
            ["prizes", 0, "points"],
        ),
        ({"draw_on": "2026-02-28"}, 422, "validation_failed", ["draw_on"]),
        ({"starts_on": "1 February"}, 422, "validation_failed", ["body", "starts_on"]),
        (
            {"entry_rules": {"min_receipt": 1.5}},
            422,
            "validation_failed",
            ["body", "entry_rules", "min_receipt"],
        ),
        (
            {"entry_rules": {"outlets": ["NOPE"]}},
            422,
            "validation_failed",
            ["entry_rules", "outlets", 0],
        ),
        ({"code": "has space"}, 422, "validation_failed", ["body", "code"]),
    ]
    for changes, status, code, path in cases:
        body = assert_problem(
            client.post("/v1/draws", headers=h, json={**DRAW, "code": "other", **changes}),
            status,
            code,
        )
        assert path in error_paths(body), (changes, body)
    assert_problem(
        client.post("/v1/draws", headers=h, json={**DRAW, "draw_on": "2026-03-05"}),
        409,
        "draw_code_taken",
    )
    for method, url in (
        ("GET", "/v1/draws/nope"),
        ("POST", "/v1/draws/nope/open"),
        ("POST", "/v1/draws/nope/freeze"),
        ("POST", "/v1/draws/nope/run"),
        ("GET", "/v1/draws/nope/public"),
        ("GET", "/v1/draws/nope/entries.jsonl"),
    ):
        assert_problem(client.request(method, url, headers=h), 404, "draw_not_found")
    assert_problem(client.post("/v1/draws/spring/freeze", headers=h), 409, "draw_not_open")
    assert_problem(client.post("/v1/draws/spring/run", headers=h), 409, "draw_not_frozen")
    assert_problem(
        client.get(f"/v1/members/{'0' * 8}-0000-7000-8000-{'0' * 12}/draw-entries", headers=h),
        404,
        "member_not_found",
    )
    body = assert_problem(client.get("/v1/draws", headers=h, params={"status": "won"}), 422)
    assert ["query", "status"] in error_paths(body)
    assert writes(container.engine) == before


@pytest.mark.parametrize("page", [1, 2])
def test_lists_are_paged(
    client: TestClient, merchant: Merchant, clock: FakeClock, page: int
) -> None:
    h = merchant.headers()
    for i in range(3):
        ok(client.post("/v1/draws", headers=h, json={**DRAW, "code": f"d{i}"}), 201)
        step(client, merchant, f"d{i}", "open")
    anna = enrol(client, merchant, name="Anna")["id"]
    clock.set(MID_WINDOW)
    buy(client, merchant, anna, 100000, "R-1")
    codes: list[str] = []
    mine: list[str] = []
    cursor: str | None = None
    member_cursor: str | None = None
    for _ in range(5):
        params = {"limit": page, **({"cursor": cursor} if cursor else {})}
        listed = ok(client.get("/v1/draws", headers=h, params=params))
        codes += [d["code"] for d in listed["items"]]
        cursor = listed["next_cursor"]
        params = {"limit": page, **({"cursor": member_cursor} if member_cursor else {})}
        entries = ok(client.get(f"/v1/members/{anna}/draw-entries", headers=h, params=params))
        mine += [d["code"] for d in entries["items"]]
        member_cursor = entries["next_cursor"]
        if cursor is None and member_cursor is None:
            break
    assert codes == ["d0", "d1", "d2"]
    assert mine == ["d2", "d1", "d0"]  # newest first
