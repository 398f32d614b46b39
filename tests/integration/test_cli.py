"""The ``kopilka`` command, run in-process on a fresh SQLite file (and once on both DBs)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Engine
from typer.testing import CliRunner, Result

from kopilka.bootstrap import Container, bootstrap
from kopilka.cli.main import app
from kopilka.services.context import Role
from kopilka.settings import Settings

KEY = re.compile(r"^kp_[0-9a-f]{12}_\S+$")
MEMBERS_CSV = """\
external_id;phone;name;balance;expires_at
A-1;+79161234567;Анна;1000;2029-06-30
A-2;+79031112233;Борис;500;
"""


@pytest.fixture(autouse=True)
def _cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Fresh settings per test; the CLI's logging set-up must not leak into other tests."""
    monkeypatch.chdir(tmp_path)  # ``demo seed`` keeps its keys in ./var
    monkeypatch.setenv("KOPILKA_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("KOPILKA_LOG_JSON", "true")
    for name in ("KOPILKA_HOST", "KOPILKA_PORT"):
        monkeypatch.delenv(name, raising=False)
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def kopilka(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, (
        f"kopilka {' '.join(args)} exited {result.exit_code}\n"
        f"stdout: {result.stdout}\nstderr: {result.stderr}\n{result.exception!r}"
    )
    return result


def open_container() -> Container:
    return bootstrap(Settings())


def set_up_tenant(name: str = "Coffee") -> str:
    kopilka("db", "upgrade")
    kopilka("tenant", "create", name, "--currency", "RUB", "--timezone", "Europe/Moscow")
    kopilka("outlet", "create", "--tenant", name, "MSK-1")
    return name


def last_line(result: Result) -> str:
    return result.stdout.strip().splitlines()[-1]


def test_set_up_a_tenant_and_issue_a_pos_key() -> None:
    result = kopilka("db", "upgrade")
    assert "database at head: sqlite:///" in result.stdout
    result = kopilka(
        "tenant", "create", "Coffee", "--currency", "RUB", "--timezone", "Europe/Moscow"
    )
    assert result.stdout.startswith("tenant Coffee created: ")
    result = kopilka("outlet", "create", "--tenant", "Coffee", "MSK-1")
    assert result.stdout.startswith("outlet MSK-1 created: ")

    result = kopilka("apikey", "create", "--tenant", "Coffee", "--role", "pos", "--outlet", "MSK-1")
    key = last_line(result)
    assert KEY.match(key), result.stdout
    c = open_container()
    try:
        actor = c.tenants.authenticate(key)
        assert actor.role is Role.POS
        assert actor.tenant_id == c.tenants.tenant_by_name("Coffee")["id"]
        assert actor.outlet_id == c.tenants.outlet_by_code(actor, "MSK-1")["id"]
    finally:
        c.close()

    admin_key = last_line(kopilka("apikey", "create", "--tenant", "Coffee", "--role", "admin"))
    assert KEY.match(admin_key)
    assert admin_key != key


def test_bad_set_up_commands_fail_clearly() -> None:
    set_up_tenant()
    result = kopilka("apikey", "create", "--tenant", "Coffee", "--role", "pos", code=1)
    assert "outlet: A pos key is tied to one outlet." in result.stderr
    assert not KEY.search(result.stdout)
    result = kopilka("apikey", "create", "--tenant", "Coffee", "--role", "owner", code=2)
    assert "unknown role 'owner'" in result.stderr
    result = kopilka("apikey", "create", "--tenant", "Nobody", "--role", "admin", code=1)
    assert "No tenant named 'Nobody'" in result.stderr
    result = kopilka("tenant", "create", "Coffee", code=1)
    assert "tenant_exists" in result.stderr
    result = kopilka("tenant", "create", "Tea", "--timezone", "Mars/Olympus", code=1)
    assert "timezone" in result.stderr
    result = kopilka("tenant", "create", "Tea", "--backdate-days", "-1", code=1)
    assert "backdate_days" in result.stderr
    kopilka("tenant", "create", "Tea", "--backdate-days", "7")
    c = open_container()
    try:
        assert c.tenants.tenant_by_name("Tea")["backdate_days"] == 7
    finally:
        c.close()


def test_import_members_all_or_nothing_then_skip_invalid(tmp_path: Path) -> None:
    set_up_tenant()
    bad = tmp_path / "bad.csv"
    bad.write_text(MEMBERS_CSV + "A-3;12345;Вера;10;\nA-4;+79035556677;Глеб;x;\n")

    result = kopilka("import", "members", str(bad), "--tenant", "Coffee", code=1)
    assert "line 4: phone: '12345' is not a valid phone number." in result.stderr
    assert "line 5: balance:" in result.stderr
    assert "imported 0 members, 0 points; 2 errors; 0 rows skipped" in result.stdout

    result = kopilka("import", "members", str(bad), "--tenant", "Coffee", "--skip-invalid")
    assert "imported 2 members, 1500 points; 2 errors; 0 rows skipped" in result.stdout
    assert "line 4: phone:" in result.stderr

    result = kopilka("import", "members", str(bad), "--tenant", "Coffee", "--skip-invalid")
    assert "imported 0 members, 0 points; 2 errors; 2 rows skipped" in result.stdout
    kopilka("ledger", "verify")


def test_import_members_clean_file_and_reimport(tmp_path: Path) -> None:
    set_up_tenant()
    path = tmp_path / "members.csv"
    path.write_text(MEMBERS_CSV)
    result = kopilka("import", "members", str(path), "--tenant", "Coffee")
    assert result.stdout.strip() == "imported 2 members, 1500 points; 0 errors; 0 rows skipped"
    result = kopilka("import", "members", str(path), "--tenant", "Coffee")
    assert result.stdout.strip() == "imported 0 members, 0 points; 0 errors; 2 rows skipped"

    kopilka("import", "members", str(tmp_path / "missing.csv"), "--tenant", "Coffee", code=2)
    header = tmp_path / "header.csv"
    header.write_text("phone,colour\n+79161234567,red\n")
    result = kopilka("import", "members", str(header), "--tenant", "Coffee", code=1)
    assert "line 1: header: unknown column 'colour'" in result.stderr


def test_jobs_run_is_idempotent_and_ledger_verify_catches_corruption(tmp_path: Path) -> None:
    set_up_tenant()
    path = tmp_path / "members.csv"
    path.write_text(MEMBERS_CSV)
    kopilka("import", "members", str(path), "--tenant", "Coffee")

    first = json.loads(last_line(kopilka("jobs", "run", "--now", "2030-01-01T00:00:00+00:00")))
    second = json.loads(last_line(kopilka("jobs", "run", "--now", "2030-01-01T00:00:00+00:00")))
    assert first["now"] == second["now"] == "2030-01-01T00:00:00+00:00"
    assert (first["members_settled"], first["transactions"], first["errors"]) == (1, 1, [])
    assert (second["members_settled"], second["transactions"], second["errors"]) == (0, 0, [])
    kopilka("jobs", "run", "--now", "2030-01-01T00:00:00", code=2)  # no time zone

    result = kopilka("ledger", "verify")
    assert "ledger verified: every invariant holds" in result.stdout
    assert "FAIL" not in result.stdout

    c = open_container()
    try:
        with c.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE accounts SET balance = balance + 1 "
                    "WHERE kind = 'wallet' AND owner <> 'tenant'"
                )
            )
    finally:
        c.close()
    result = kopilka("ledger", "verify", code=1)
    assert "FAIL cached_balance_differs_from_postings" in result.stdout
    assert "FAIL wallet_differs_from_active_lots" in result.stdout
    kopilka("ledger", "verify", "--tenant", "Coffee", code=1)


def test_demo_seed_prints_docs_and_keys_and_can_run_again(tmp_path: Path) -> None:
    kopilka("db", "upgrade")
    first = kopilka("demo", "seed").stdout
    assert "API docs: http://127.0.0.1:8000/docs" in first
    keys = re.findall(r"^demo (admin|POS) key:\s+(\S+)$", first, re.MULTILINE)
    assert [role for role, _ in keys] == ["admin", "POS"]
    assert all(KEY.match(key) for _, key in keys)

    assert kopilka("demo", "seed").stdout == first  # the saved keys, not new ones
    (tmp_path / "var" / "demo-keys.txt").unlink()
    third = kopilka("demo", "seed").stdout  # the keys are lost: new ones, same merchant
    assert "API docs: http://127.0.0.1:8000/docs" in third
    new_keys = re.findall(r"^demo (?:admin|POS) key:\s+(\S+)$", third, re.MULTILINE)
    assert len(new_keys) == 2
    assert set(new_keys).isdisjoint(k for _, k in keys)

    c = open_container()
    try:
        roles = [c.tenants.authenticate(key).role for key in (*[k for _, k in keys], *new_keys)]
        assert roles == [Role.ADMIN, Role.POS, Role.ADMIN, Role.POS]
        actor = c.tenants.authenticate(new_keys[0])
        assert len(c.members.search(actor, {}, None, 10)) == 2  # enrolled once
    finally:
        c.close()
    kopilka("ledger", "verify")


def test_cli_on_the_test_databases(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The same commands against the fixture's SQLite and PostgreSQL databases."""
    monkeypatch.setenv("KOPILKA_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    set_up_tenant("Pg Coffee")
    key = last_line(
        kopilka("apikey", "create", "--tenant", "Pg Coffee", "--role", "pos", "--outlet", "MSK-1")
    )
    path = tmp_path / "members.csv"
    path.write_text(MEMBERS_CSV)
    result = kopilka("import", "members", str(path), "--tenant", "Pg Coffee")
    assert "imported 2 members, 1500 points" in result.stdout
    result = kopilka("import", "members", str(path), "--tenant", "Pg Coffee")
    assert "2 rows skipped" in result.stdout
    kopilka("jobs", "run", "--now", "2030-01-01T00:00:00+00:00")
    assert (
        '"transactions": 0' in kopilka("jobs", "run", "--now", "2030-01-01T00:00:00+00:00").stdout
    )
    kopilka("ledger", "verify")
    c = open_container()
    try:
        assert c.tenants.authenticate(key).role is Role.POS
        assert c.engine.dialect.name == engine.dialect.name
    finally:
        c.close()
