"""``kopilka import tiers`` in-process on a fresh SQLite file: all or nothing, repeatable,
and the nightly step in ``kopilka jobs run``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner, Result

from kopilka.bootstrap import bootstrap
from kopilka.cli.main import app
from kopilka.services.context import Actor, Role
from kopilka.settings import Settings

PROGRAM = {
    "type": "bonus",
    "rules": [{"id": "base", "effects": [{"points_percent": 5}]}],
    "tiers": {
        "levels": [
            {"code": "silver", "threshold": 0},
            {"code": "gold", "name": {"ru": "Золото", "en": "Gold"}, "threshold": 4000000},
        ]
    },
}


@pytest.fixture(autouse=True)
def _cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
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


def test_import_tiers_from_csv(tmp_path: Path) -> None:
    kopilka("db", "upgrade")
    kopilka("tenant", "create", "Coffee", "--currency", "RUB", "--timezone", "Europe/Moscow")
    program = tmp_path / "program.json"
    program.write_text(json.dumps(PROGRAM), encoding="utf-8")
    kopilka("program", "publish", "main", str(program), "--tenant", "Coffee")
    c = bootstrap(Settings())
    try:
        tenant = c.tenants.tenant_by_name("Coffee")
        actor = Actor(tenant_id=tenant["id"], name="test", role=Role.ADMIN)
        member = c.members.enroll(actor, {"external_id": "A-1"}).id
    finally:
        c.close()

    bad = tmp_path / "bad.csv"
    bad.write_text("external_id;tier\nA-1;gold\nA-2;gold\nA-1;diamond\n", encoding="utf-8")
    result = kopilka("import", "tiers", str(bad), "--tenant", "Coffee", code=1)
    assert "line 3: external_id: no member 'A-2'" in result.stderr
    assert "line 4: tier: Unknown tier 'diamond'" in result.stderr
    assert "nothing imported: 2 errors" in result.stderr

    good = tmp_path / "tiers.csv"
    good.write_text("external_id,tier,note\nA-1,gold,From the old card\n", encoding="utf-8")
    result = kopilka("import", "tiers", str(good), "--tenant", "Coffee")
    assert result.stdout.strip() == "imported 1 tiers; 0 unchanged"
    result = kopilka("import", "tiers", str(good), "--tenant", "Coffee", "--program", "main")
    assert result.stdout.strip() == "imported 0 tiers; 1 unchanged"
    result = kopilka("import", "tiers", str(good), "--tenant", "Coffee", "--program", "x", code=1)
    assert "tiers_not_configured" in result.stderr

    report = json.loads(kopilka("jobs", "run").stdout.strip().splitlines()[-1])
    assert report["tiers_evaluated"] == 0
    c = bootstrap(Settings())
    try:
        status = c.tiers.status(actor, member)
        assert (status.tier.code, status.source) == ("gold", "import")
    finally:
        c.close()
