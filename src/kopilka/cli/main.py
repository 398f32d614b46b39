"""The ``kopilka`` command: serve, migrate, set up tenants, run jobs, verify the ledger."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from kopilka.bootstrap import Container, bootstrap
from kopilka.domain.errors import KopilkaError
from kopilka.services.context import Actor, Role
from kopilka.settings import Settings

app = typer.Typer(help="Kopilka loyalty platform.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
tenant_app = typer.Typer(help="Tenants (merchants, brands).", no_args_is_help=True)
outlet_app = typer.Typer(help="Outlets (points of sale).", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys.", no_args_is_help=True)
jobs_app = typer.Typer(help="Scheduled work.", no_args_is_help=True)
ledger_app = typer.Typer(help="The points ledger.", no_args_is_help=True)
import_app = typer.Typer(help="Bulk imports.", no_args_is_help=True)
demo_app = typer.Typer(help="Demo data.", no_args_is_help=True)
program_app = typer.Typer(help="Loyalty programs (versioned documents).", no_args_is_help=True)
for sub, name in (
    (db_app, "db"),
    (tenant_app, "tenant"),
    (outlet_app, "outlet"),
    (apikey_app, "apikey"),
    (jobs_app, "jobs"),
    (ledger_app, "ledger"),
    (import_app, "import"),
    (demo_app, "demo"),
    (program_app, "program"),
):
    app.add_typer(sub, name=name)

CLI_ACTOR = "cli"


def _container(clock_now: datetime | None = None) -> Container:
    from kopilka.logging import configure_logging

    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    if clock_now is not None:
        from kopilka.services.jobs import FixedClock

        return bootstrap(settings, clock=FixedClock(clock_now))
    return bootstrap(settings)


def _fail(exc: KopilkaError) -> typer.Exit:
    typer.echo(f"error: {exc.detail} ({exc.code})", err=True)
    for e in exc.errors:
        typer.echo(f"  {'.'.join(str(p) for p in e.path)}: {e.message}", err=True)
    return typer.Exit(code=1)


def _tenant_actor(c: Container, tenant: str) -> Actor:
    row = c.tenants.tenant_by_name(tenant)
    return Actor(tenant_id=row["id"], name=CLI_ACTOR, role=Role.ADMIN)


# ---- db ----------------------------------------------------------------------------------
@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from kopilka.adapters.db.schema import upgrade

    c = _container()
    upgrade(c.engine, revision)
    typer.echo(f"database at {revision}: {c.engine.url.render_as_string(hide_password=True)}")


# ---- serve -------------------------------------------------------------------------------
@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address")] = None,
    port: Annotated[int | None, typer.Option(help="Port")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes")] = None,
) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs)."""
    from kopilka.api.serving import serve as serve_api
    from kopilka.logging import configure_logging

    settings = Settings()
    workers = workers or settings.workers
    if workers > 1 and settings.database_url.startswith("sqlite"):
        typer.echo("SQLite serves from one process; use PostgreSQL for more workers.", err=True)
        workers = 1
    configure_logging(settings.log_level, settings.log_json)
    code = serve_api(
        host or settings.host, port or settings.port, workers, settings.log_level.lower()
    )
    if code:
        raise typer.Exit(code)


# ---- tenants, outlets, keys --------------------------------------------------------------
@tenant_app.command("create")
def tenant_create(
    name: str,
    currency: str = "RUB",
    timezone: str = "Europe/Moscow",
    locale: str = "ru",
    phone_region: str = "RU",
    card_scheme: Annotated[str, typer.Option(help="ean13 or luhn")] = "ean13",
    card_prefix: str = "2",
    pending_days: int = 0,
    allow_debt: bool = False,
    backdate_days: Annotated[
        int, typer.Option(help="how many days back a till may date a receipt")
    ] = 30,
) -> None:
    """Create a tenant (a merchant or brand)."""
    c = _container()
    try:
        row = c.tenants.create_tenant(
            name,
            currency=currency,
            timezone=timezone,
            locale=locale,
            phone_region=phone_region,
            card_scheme=card_scheme,
            card_prefix=card_prefix,
            pending_days=pending_days,
            allow_debt=allow_debt,
            backdate_days=backdate_days,
        )
    except KopilkaError as exc:
        raise _fail(exc) from exc
    typer.echo(f"tenant {row['name']} created: {row['id']}")


@tenant_app.command("list")
def tenant_list() -> None:
    c = _container()
    with c.uow_factory(write=False) as uow:
        for row in uow.directory.list_tenants():
            typer.echo(f"{row['id']}  {row['name']}  {row['currency']}  {row['timezone']}")


@outlet_app.command("create")
def outlet_create(
    code: str,
    tenant: Annotated[str, typer.Option(help="Tenant name")],
    name: str | None = None,
    timezone: str | None = None,
    region: str | None = None,
    tag: Annotated[list[str] | None, typer.Option(help="Repeat for several tags")] = None,
) -> None:
    """Create an outlet (a point of sale)."""
    c = _container()
    try:
        actor = _tenant_actor(c, tenant)
        row = c.tenants.create_outlet(
            actor, code, name=name, timezone=timezone, region=region, tags=tag
        )
    except KopilkaError as exc:
        raise _fail(exc) from exc
    typer.echo(f"outlet {row['code']} created: {row['id']}")


@apikey_app.command("create")
def apikey_create(
    tenant: Annotated[str, typer.Option(help="Tenant name")],
    role: Annotated[str, typer.Option(help="admin, pos or readonly")],
    outlet: Annotated[str | None, typer.Option(help="Outlet code (pos keys)")] = None,
    name: str | None = None,
) -> None:
    """Issue an API key; the key is printed once, alone on the last line."""
    c = _container()
    try:
        actor = _tenant_actor(c, tenant)
        issued = c.tenants.create_api_key(actor, Role(role), outlet_code=outlet, name=name)
    except ValueError as exc:
        typer.echo(f"error: unknown role {role!r}; use admin, pos or readonly", err=True)
        raise typer.Exit(code=2) from exc
    except KopilkaError as exc:
        raise _fail(exc) from exc
    typer.echo(
        f"{issued.role.value} key {issued.id} for {tenant}"
        + (f" at outlet {outlet}" if outlet else "")
        + "; store it now, it is shown once:"
    )
    typer.echo(issued.key)


@apikey_app.command("revoke")
def apikey_revoke(key_id: str, tenant: Annotated[str, typer.Option(help="Tenant name")]) -> None:
    """Revoke an API key by its id."""
    import uuid

    c = _container()
    try:
        actor = _tenant_actor(c, tenant)
        c.tenants.revoke_api_key(actor, uuid.UUID(key_id))
    except KopilkaError as exc:
        raise _fail(exc) from exc
    typer.echo(f"revoked {key_id}")


# ---- jobs and ledger ---------------------------------------------------------------------
def _parse_now(now: str | None) -> datetime | None:
    if now is None:
        return None
    moment = datetime.fromisoformat(now)
    if moment.tzinfo is None:
        raise typer.BadParameter("give a time zone, e.g. 2026-12-31T21:00:00+00:00")
    return moment


@jobs_app.command("run")
def jobs_run(
    now: Annotated[str | None, typer.Option(help="ISO 8601 instant to run as of")] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant")] = None,
) -> None:
    """Activate pending points, expire points and release stale holds. Idempotent."""
    c = _container(_parse_now(now))
    tenant_id = _tenant_actor(c, tenant).tenant_id if tenant else None
    report = c.jobs.run(tenant_id=tenant_id)
    typer.echo(
        json.dumps(
            {
                "now": report.now.isoformat(),
                "members_settled": report.members_settled,
                "transactions": report.transactions,
                "holds_released": report.holds_released,
                **report.steps,
                "errors": report.errors,
            }
        )
    )
    if report.errors:
        raise typer.Exit(code=1)


@ledger_app.command("verify")
def ledger_verify(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant")] = None,
) -> None:
    """Check the ledger's invariants; exit 1 on any breach."""
    from kopilka.services.verify import verify_ledger

    c = _container()
    tenant_id = _tenant_actor(c, tenant).tenant_id if tenant else None
    report = verify_ledger(c.uow_factory, tenant_id)
    for name, rows in report.checks.items():
        mark = "ok " if not rows else "FAIL"
        typer.echo(f"{mark} {name}" + (f": {len(rows)} found, e.g. {rows[:3]}" if rows else ""))
    if not report.ok:
        raise typer.Exit(code=1)
    typer.echo("ledger verified: every invariant holds")


# ---- imports -----------------------------------------------------------------------------
@import_app.command("members")
def import_members(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    tenant: Annotated[str, typer.Option(help="Tenant name")],
    skip_invalid: Annotated[bool, typer.Option(help="Import the valid rows anyway")] = False,
) -> None:
    """Load members (with opening balances) from CSV; all or nothing unless --skip-invalid."""
    from kopilka.services.imports import import_members as run_import

    c = _container()
    try:
        actor = _tenant_actor(c, tenant)
        report = run_import(c, actor, file, skip_invalid=skip_invalid)
    except KopilkaError as exc:
        raise _fail(exc) from exc
    for err in report.errors:
        typer.echo(f"line {err.line}: {err.field}: {err.message}", err=True)
    typer.echo(
        f"imported {report.imported} members, {report.points} points; "
        f"{len(report.errors)} errors; {report.skipped} rows skipped"
    )
    if report.errors and (not skip_invalid or report.aborted):
        raise typer.Exit(code=1)


@import_app.command("tiers")
def import_tiers(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    tenant: Annotated[str, typer.Option(help="Tenant name")],
    program: Annotated[
        str | None, typer.Option(help="The program with tiers (default: the first in force)")
    ] = None,
) -> None:
    """Set members' tiers from CSV (member_id, external_id, phone or card; tier; optional
    locked_until and note); nothing is loaded from a file with errors, and loading the same
    file again changes nothing."""
    c = _container()
    try:
        actor = _tenant_actor(c, tenant)
        report = c.tiers.import_csv(actor, file, program=program)
    except KopilkaError as exc:
        raise _fail(exc) from exc
    for line, column, message in report.errors:
        typer.echo(f"line {line}: {column}: {message}", err=True)
    if report.errors:
        typer.echo(f"nothing imported: {len(report.errors)} errors", err=True)
        raise typer.Exit(code=1)
    typer.echo(f"imported {report.changed} tiers; {report.unchanged} unchanged")


# ---- catalogue and programs -------------------------------------------------------------
@import_app.command("products")
def import_products(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    tenant: Annotated[str, typer.Option(help="Tenant name")],
) -> None:
    """Load the product catalogue from CSV (sku, name, category, brand, tags, price,
    min_price, no_discount, no_points); nothing is loaded from a file with errors."""
    c = _container()
    try:
        actor = _tenant_actor(c, tenant)
        count, problems = c.catalog.import_csv(actor, file)
    except KopilkaError as exc:
        raise _fail(exc) from exc
    for problem in problems:
        typer.echo(problem, err=True)
    if problems:
        typer.echo(f"nothing imported: {len(problems)} errors", err=True)
        raise typer.Exit(code=1)
    typer.echo(f"imported {count} products")


@import_app.command("stock")
def import_stock(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    tenant: Annotated[str, typer.Option(help="Tenant name")],
) -> None:
    """Set reward stock levels from CSV (code or sku, location, quantity, and optionally
    low_stock_threshold); nothing is loaded from a file with errors."""
    c = _container()
    try:
        actor = _tenant_actor(c, tenant)
        count, problems = c.rewards.import_stock(actor, file)
    except KopilkaError as exc:
        raise _fail(exc) from exc
    for problem in problems:
        typer.echo(problem, err=True)
    if problems:
        typer.echo(f"nothing imported: {len(problems)} errors", err=True)
        raise typer.Exit(code=1)
    typer.echo(f"imported {count} stock levels")


def _read_document(file: Path) -> object:
    import yaml

    from kopilka.adapters.documents.yaml_text import load_yaml

    text = file.read_text(encoding="utf-8")
    try:
        return json.loads(text) if file.suffix.lower() == ".json" else load_yaml(text)
    except (ValueError, yaml.YAMLError) as exc:
        typer.echo(f"error: {file} is not valid JSON or YAML: {exc}", err=True)
        raise typer.Exit(code=1) from exc


@program_app.command("validate")
def program_validate(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
) -> None:
    """Check a program document (JSON or YAML); list every error with its path."""
    from kopilka.domain.rules.document import validate_document

    errors = validate_document(_read_document(file))
    for err in errors:
        typer.echo(f"{'.'.join(str(p) for p in err['path']) or '(document)'}: {err['message']}")
    if errors:
        raise typer.Exit(code=1)
    typer.echo("valid")


@program_app.command("publish")
def program_publish(
    code: str,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    tenant: Annotated[str, typer.Option(help="Tenant name")],
    starts_at: Annotated[str | None, typer.Option(help="ISO 8601 start")] = None,
    ends_at: Annotated[str | None, typer.Option(help="ISO 8601 end")] = None,
) -> None:
    """Publish a new version of program CODE from a JSON or YAML file."""
    document = _read_document(file)
    if not isinstance(document, dict):
        typer.echo("error: a program document is a mapping", err=True)
        raise typer.Exit(code=1)
    c = _container()
    try:
        actor = _tenant_actor(c, tenant)
        view = c.programs.publish(
            actor, code, document, starts_at=_parse_now(starts_at), ends_at=_parse_now(ends_at)
        )
    except KopilkaError as exc:
        raise _fail(exc) from exc
    typer.echo(
        f"program {view.code} version {view.version} published, in force from "
        f"{view.starts_at.isoformat()}"
    )


# ---- import receipts (historical) ---------------------------------------------------------
@import_app.command("receipts")
def import_receipts(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    tenant: Annotated[str, typer.Option(help="Tenant name")],
    program: Annotated[str | None, typer.Option(help="Only this program code")] = None,
    map_: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            help="Rename a column: column=field (repeat). Fields: member_external_id, "
            "receipt_number, outlet, occurred_at, sku, category, qty, amount",
        ),
    ] = None,
    create_missing: Annotated[
        bool,
        typer.Option(
            "--create-missing", help="Create unknown members (by external id) and outlets"
        ),
    ] = False,
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Import the valid receipts anyway")
    ] = False,
    batch: Annotated[int, typer.Option(min=1, max=50_000, help="Receipts per transaction")] = 2000,
) -> None:
    """Load historical receipts (CSV or Parquet, one row per line); points are computed by
    the program versions in force at each receipt's time. Re-running changes nothing."""
    from kopilka.services.receipt_import import RichProgress, parse_mapping
    from kopilka.services.receipt_import import import_receipts as run_import

    c = _container()
    try:
        actor = _tenant_actor(c, tenant)
        with RichProgress() as progress:
            report = run_import(
                c,
                actor,
                file,
                program=program,
                mapping=parse_mapping(map_ or []),
                create_missing=create_missing,
                skip_invalid=skip_invalid,
                batch_size=batch,
                progress=progress,
            )
    except KopilkaError as exc:
        raise _fail(exc) from exc
    shown = 1000
    for err in report.errors[:shown]:
        typer.echo(f"{report.unit} {err.line}: {err.field}: {err.message}", err=True)
    if len(report.errors) > shown:
        typer.echo(f"... and {len(report.errors) - shown} more errors", err=True)
    if (report.errors and not skip_invalid) or report.aborted:
        typer.echo(f"nothing imported: {len(report.errors)} errors", err=True)
        typer.echo(json.dumps(report.to_json()))
        raise typer.Exit(code=1)
    typer.echo(json.dumps(report.to_json()))


# ---- draws (slot:draws) -----------------------------------------------------------------
draw_app = typer.Typer(help="Prize draws.", no_args_is_help=True)
app.add_typer(draw_app, name="draw")


@draw_app.command("verify")
def draw_verify(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
) -> None:
    """Re-run a published draw offline from its JSON (GET /v1/draws/CODE/public): the seed
    against its hash, the entries against theirs, the winners against the pick. Exit 1 when
    anything differs or is missing, 2 when the file is not a publication."""
    from pydantic import ValidationError

    from kopilka.domain.draws.fairness import Publication, verify

    try:
        publication = Publication.model_validate_json(file.read_bytes())
    except ValidationError as exc:
        typer.echo(f"error: {file} is not a draw publication:", err=True)
        for err in exc.errors()[:20]:
            typer.echo(f"  {'.'.join(str(p) for p in err['loc'])}: {err['msg']}", err=True)
        raise typer.Exit(code=2) from exc
    report = verify(publication)
    entries = len(publication.entries or [])
    typer.echo(f"draw {publication.code} ({publication.algorithm}), {entries} entries")
    checks = (
        (report.seed_matches, "the seed matches its published hash"),
        (report.entries_hash_matches, "the entries match their published hash"),
        (report.winners_match, f"the winners match the re-run: {len(report.winners)} drawn"),
    )
    for passed, text in checks:
        if passed is not None:
            typer.echo(f"{'ok  ' if passed else 'FAIL'} {text}")
    if report.winners_match is False:
        published = {w.slot: w for w in publication.winners}
        for w in report.winners:
            p = published.get(w.slot)
            if p is None or p.entry != w.entry or p.member != w.member:
                shown = f"entry {p.entry} ({p.member})" if p is not None else "nothing"
                typer.echo(
                    f"  slot {w.slot}: published {shown}, re-run: entry {w.entry} ({w.member})"
                )
        for slot in sorted(set(published) - {w.slot for w in report.winners}):
            typer.echo(f"  slot {slot}: published, but the re-run leaves it empty")
    for problem in report.problems:
        typer.echo(f"FAIL {problem}")
    if not report.ok:
        typer.echo("NOT VERIFIED")
        raise typer.Exit(code=1)
    typer.echo("verified: the published winners are the ones this draw gives")


# ---- demo --------------------------------------------------------------------------------
@demo_app.command("seed")
def demo_seed() -> None:
    """Create the demo merchant (once) and print its API keys."""
    from kopilka.services.demo import seed_demo

    c = _container()
    keys = seed_demo(c)
    settings = c.settings
    typer.echo(f"API docs: http://{settings.host}:{settings.port}/docs")
    typer.echo(f"demo admin key: {keys['admin']}")
    typer.echo(f"demo POS key:   {keys['pos']}")


def main() -> None:  # pragma: no cover
    sys.exit(app())
