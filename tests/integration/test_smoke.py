"""A first walk through the API on both databases."""

from __future__ import annotations

from fastapi.testclient import TestClient

from kopilka.services.verify import verify_ledger
from tests.conftest import Merchant


def test_enrol_earn_spend_and_verify(client: TestClient, merchant: Merchant, container) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/v1/members", headers=merchant.headers("pos"), json={"phone": "89161234567"})
    assert r.status_code == 201, r.text
    member = r.json()["id"]
    r = client.post(
        f"/v1/members/{member}/accruals", headers=merchant.headers(), json={"points": 300}
    )
    assert r.status_code == 201, r.text
    r = client.post(
        f"/v1/members/{member}/redemptions", headers=merchant.headers("pos"), json={"points": 120}
    )
    assert r.status_code == 201, r.text
    assert r.json()["balance"]["available"] == 180
    assert verify_ledger(container.uow_factory).ok
