"""``kopilka import stock``: the warehouse's CSV, all or nothing, line numbers in errors
(in-process, on a fresh SQLite file)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner, Result

from kopilka.bootstrap import bootstrap
from kopilka.cli.main import app
from kopilka.domain.rewards.definition import RewardDefinition
from kopilka.services.context import Actor, Role
from kopilka.settings import Settings


@pytest.fixture(autouse=True)
def _cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Fresh settings per test; the CLI's logging set-up must not leak into other tests."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KOPILKA_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("KOPILKA_LOG_JSON", "true")
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def kopilka(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    return result


def levels() -> dict[str, int]:
    c = bootstrap(Settings())
    try:
        tenant = c.tenants.tenant_by_name("Gifts")
        actor = Actor(tenant_id=tenant["id"], name="test", role=Role.ADMIN)
        [mug] = c.rewards.list_rewards(actor, None, 10)
        return {s.location: s.quantity for s in mug.stock}
    finally:
        c.close()


def test_import_stock_from_csv(tmp_path: Path) -> None:
    kopilka("db", "upgrade")
    kopilka("tenant", "create", "Gifts")
    c = bootstrap(Settings())
    try:
        tenant = c.tenants.tenant_by_name("Gifts")
        actor = Actor(tenant_id=tenant["id"], name="test", role=Role.ADMIN)
        c.rewards.create(
            actor,
            RewardDefinition.model_validate(
                {
                    "code": "MUG",
                    "kind": "material",
                    "sku": "MUG-W",
                    "name": {"ru": "Кружка", "en": "Mug"},
                    "cost": 500,
                }
            ),
        )
    finally:
        c.close()

    bad = tmp_path / "bad.csv"
    bad.write_text("sku;location;quantity\nMUG-W;WH-1;12\nMUG-X;WH-1;3\nMUG-W;WH-2;lots\n")
    result = kopilka("import", "stock", str(bad), "--tenant", "Gifts", code=1)
    assert "line 3: no reward with sku 'MUG-X'" in result.stderr
    assert "line 4: quantity: a whole number" in result.stderr
    assert "nothing imported: 2 errors" in result.stderr
    assert levels() == {}

    good = tmp_path / "stock.csv"
    good.write_text("sku,location,quantity,low_stock_threshold\nMUG-W,WH-1,12,3\nMUG-W,WH-2,0,\n")
    result = kopilka("import", "stock", str(good), "--tenant", "Gifts")
    assert result.stdout.strip() == "imported 2 stock levels"
    assert levels() == {"WH-1": 12, "WH-2": 0}
    kopilka("import", "stock", str(tmp_path / "missing.csv"), "--tenant", "Gifts", code=2)
    result = kopilka("import", "stock", str(good), "--tenant", "Nobody", code=1)
    assert "Nobody" in result.stderr
