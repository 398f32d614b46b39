"""The till's own SQL driven by pgbench: how many purchases could PostgreSQL alone take?

B2's target compares a purchase over HTTP with ``pgbench -b tpcb-like``. This bench takes
the application out. It records the statements of real confirms (one per member, 3 in 10
paying part with points, 10 lines each) on the database that ``bench/purchases.py --keep``
left, writes each confirm as a pgbench script (BEGIN, its statements with their values
inlined, COMMIT) and runs the scripts with pgbench (``-M prepared`` on generic plans, as
the service's prepared statements run) next to ``pgbench -b tpcb-like`` at the same client
counts. Each client is a pgbench process of its own with its own members
(``--members-per-client``), so no two clients wait for one member's row locks; every till
phase starts on a fresh copy of the recorded database, so none inherits the rows of the
one before. The ids and the receipt number a confirm creates are pgbench random
variables, so every transaction inserts a new receipt, new lines and new ledger rows, as a
purchase does; the balance and lot updates write the values the recorded confirm computed.

The ratio it prints is a ceiling for B2 with these statements: a client in C with nothing
to compute, on the same PostgreSQL. The backends' CPU per transaction compares with B2's
(``per_request_cpu_ms.postgres`` in ``bench/purchases.py``). ``--breakdown CLIENTS`` then
runs the scripts again with one part cut out at a time (the stored answer, the wait for
the WAL flush, each read, each write) and prints the database CPU each part cost.

    .venv/bin/python bench/purchases.py --quick --duration 3 --members 2000 --rules 20 \\
        --workers 2 --clients 8 --skip-sqlite --skip-round-trips --keep
    .venv/bin/python bench/till_sql_ceiling.py                  # then this
    .venv/bin/python bench/till_sql_ceiling.py --clients 16 --breakdown 16 --duration 8

Loopback PostgreSQL only. Prints one JSON line per phase and a summary. Recording a confirm
commits one purchase per member first (it warms the caches), in ``kopilka_bench_http``;
the phases run in the copy ``kopilka_bench_ceiling``, dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import ClientCursor

import _pg
from _cpu import process_cpu
from till_statement_cost import bench_container, capture_confirm

HTTP_DB = "kopilka_bench_http"
PGBENCH_DB = "kopilka_bench_pgbench"
COPY_DB = "kopilka_bench_ceiling"
PGBENCH_SCALE = 10
REDEEM_IN_TEN = 3
REDEEM_POINTS = 100
# A UUIDv7 in either spelling the statements use (with dashes in JSON, without in literals).
_UUID7 = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?7[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}")
_RECEIPT = "CEILING-RECEIPT-NUMBER"


def log(message: str) -> None:
    print(f"[ceiling {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


_COLON_STAND_IN = "\u00a7"  # §
_LITERAL = re.compile(r"'(?:[^']|'')*'")


def pgbench_script(statements: list[str], created_after_ms: int) -> str:
    """One transaction as a pgbench script for ``-M prepared``.

    Ids minted from ``created_after_ms`` on (a UUIDv7 carries its millisecond) and the
    receipt number must differ in every transaction. Each quoted literal holding one is
    wrapped in ``replace(literal, old, :variable)``, so the variable is a parameter of the
    prepared statement (the last 12 hex digits of an id become 12 random decimal digits:
    still a valid UUID) and the literal's cast, e.g. ``::uuid``, applies to the result."""
    text = "BEGIN;\n" + ";\n".join(statements) + ";\nCOMMIT;\n"
    tails: dict[str, str] = {}
    for found in _UUID7.findall(text):
        hex32 = found.replace("-", "")
        if int(hex32[:12], 16) >= created_after_ms and hex32[-12:] not in tails:
            tails[hex32[-12:]] = f"id{len(tails)}"
    tails[_RECEIPT] = "receipt"

    def varying(match: re.Match[str]) -> str:
        literal = match.group(0)
        if ":" in literal:
            # pgbench -M prepared turns every ":name" into a parameter, quotes or not
            # (JSON's "qty":1, a time's 10:30): the colons travel as another character.
            if _COLON_STAND_IN in literal:
                raise ValueError(f"{_COLON_STAND_IN!r} in a statement's value")
            literal = literal.replace(":", _COLON_STAND_IN)
            literal = f"replace(CAST({literal} AS text), '{_COLON_STAND_IN}', chr(58))"
        for old, var in tails.items():
            if old in literal:
                literal = f"replace(CAST({literal} AS text), '{old}', CAST(:{var} AS text))"
        return literal

    text = _LITERAL.sub(varying, text)
    head = [f"\\set {var} random(100000000000, 999999999999)" for var in tails.values()]
    return "\n".join(head) + "\n" + text


def write_scripts(count: int, folder: Path) -> list[Path]:
    """Record ``count`` confirms (member 0, 1, …) and write each as a pgbench script."""
    url = _pg.database_url(HTTP_DB).render_as_string(hide_password=False)
    container = bench_container(url)
    raw = psycopg.connect(url.replace("postgresql+psycopg", "postgresql"))
    paths = []
    try:
        cursor = ClientCursor(raw)
        for index in range(count):
            # 3 in 10 of every client's members pay part with points, as in B2.
            redeem = REDEEM_POINTS if index % 10 < REDEEM_IN_TEN else 0
            captured, started_ms = capture_confirm(
                url,
                redeem,
                member=index,
                receipt_number=_RECEIPT,
                container=container,
                warm=index == 0,
            )
            inlined = [cursor.mogrify(statement, params) for statement, params in captured]
            path = folder / f"confirm-{index}.sql"
            path.write_text(pgbench_script(inlined, started_ms))
            paths.append(path)
    finally:
        raw.close()
        container.engine.dispose()
    return paths


def _backends(database: str) -> dict[int, float]:
    return {
        pid: proc.seconds
        for pid, proc in process_cpu().items()
        if proc.cmdline.startswith("postgres") and f" {database} " in proc.cmdline
    }


def run_phase(
    database: str, commands: list[list[str]], duration: int, *, generic_plans: bool = False
) -> dict[str, Any]:
    """pgbench processes side by side (``commands``: each one's workload and client
    options); their transactions add up. The backends' CPU is read from /proc while they
    run (backends exit with their clients), so the last ~0.2 s of each is missed.

    ``generic_plans``: the recorded statements have their values inlined, so each member's
    is a prepared statement of its own, which PostgreSQL would plan afresh for its first
    five executions (custom plans); the service's statements are one text each and run on
    their generic plan. Forcing generic plans leaves each recorded statement one planning
    per connection, spread over its executions (about 25 to 40 in a 15 s phase)."""
    url = _pg.database_url(database)
    env = _pg._pgbench_env(url)
    if generic_plans:
        env["PGOPTIONS"] = f"{env.get('PGOPTIONS', '')} -c plan_cache_mode=force_generic_plan"
    procs = [
        subprocess.Popen(
            [*_pg._pgbench_args(url), "-n", *command, "-T", str(duration), database],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for command in commands
    ]
    seen: dict[int, float] = {}
    while any(proc.poll() is None for proc in procs):
        seen |= _backends(database)
        time.sleep(0.2)
    tps = latency = 0.0
    txns = failed = 0
    for proc in procs:
        output = proc.communicate()[0]
        if proc.returncode != 0:
            raise SystemExit(f"pgbench failed ({proc.returncode}):\n{output}")
        one_tps, one_latency, one_txns, one_failed = _pg.parse_pgbench(output)
        tps += one_tps
        latency += one_latency * one_txns
        txns += one_txns
        failed += one_failed
    return {
        "tps": round(tps, 1),
        "latency_ms": round(latency / txns, 3) if txns else None,
        "transactions": txns,
        "failed": failed,
        "backend_cpu_ms_per_txn": round(sum(seen.values()) * 1000 / txns, 3) if txns else None,
    }


def fresh_copy() -> None:
    """The phase's database: a copy of the recorded one, so that no phase inherits the
    rows (and the members' new lots) of the one before."""
    _pg.recreate_database(COPY_DB, template=HTTP_DB)


def drop_copy() -> None:
    _pg.drop_database(COPY_DB)


# ---- what each part costs: the scripts with one part cut out -------------------------------
def _cut(start: str, end: str) -> Callable[[str], str]:
    """Drop the text from ``start`` (a statement's opening words, or "BEGIN" for what
    follows it) up to ``end``; a script without them is left as it is."""

    def edit(script: str) -> str:
        begin = (
            script.find("BEGIN;\n") + len("BEGIN;\n") if start == "BEGIN" else script.find(start)
        )
        stop = script.find(end)
        return script if begin < 0 or stop < begin else script[:begin] + script[stop:]

    return edit


def _without_stored_answer(script: str) -> str:
    """The receipt's stored answer (``result``, ~3.5 kB of JSON) as ``{}``: the literal of
    its own parameter, which starts with the answer's first key."""
    start = script.find("'{" + '"receipt"' + _COLON_STAND_IN)
    if start < 0:
        return script
    literal = _LITERAL.match(script, start)
    if literal is None:
        return script
    return script[:start] + "'{}'" + script[literal.end() :]


VARIANTS: dict[str, Callable[[str], str] | None] = {
    "as recorded": None,
    "without the stored answer": _without_stored_answer,
    "without waiting for the WAL flush": lambda script: script.replace(
        "BEGIN;\n", "BEGIN;\nSET LOCAL synchronous_commit = off;\n", 1
    ),
    "without the member read": _cut("BEGIN", "SELECT accounts.id"),
    "without the lots read": _cut("SELECT lots.id", "WITH w_accounts"),
    "without the three reads": _cut("BEGIN", "WITH w_accounts"),
    "without the ledger write": _cut("WITH w_accounts", "WITH w_receipt"),
    "without the receipt write": _cut("WITH w_receipt", "COMMIT;"),
}


def breakdown(scripts: list[Path], clients: int, per_client: int, duration: int) -> None:
    """Each variant of the scripts on a fresh copy: what the cut part cost the database."""
    base: float | None = None
    for name, edit in VARIANTS.items():
        folder = scripts[0].parent / re.sub(r"\W+", "-", name)
        folder.mkdir(exist_ok=True)
        edited = []
        for path in scripts[: clients * per_client]:
            target = folder / path.name
            text = path.read_text()
            target.write_text(edit(text) if edit else text)
            edited.append(target)
        fresh_copy()
        log(f"breakdown: {name}, {clients} clients")
        commands = till_commands(edited, clients, per_client)
        result = run_phase(COPY_DB, commands, duration, generic_plans=True)
        cpu = result["backend_cpu_ms_per_txn"]
        if base is None:
            base = cpu
        saved = round(base - cpu, 3) if base is not None and cpu is not None else None
        record = {"figure": "till_sql_breakdown", "variant": name, "clients": clients}
        print(json.dumps(record | result | {"backend_cpu_ms_saved": saved}), flush=True)


def till_commands(scripts: list[Path], clients: int, per_client: int) -> list[list[str]]:
    """One pgbench per client, each with its own members: no two clients wait for one
    member's row locks, as on a till with many customers."""
    return [
        ["-M", "prepared", "-c", "1", "-j", "1"]
        + [a for p in scripts[c * per_client : (c + 1) * per_client] for a in ("-f", str(p))]
        for c in range(clients)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--clients", default="8,16,32")
    parser.add_argument(
        "--members-per-client",
        type=int,
        default=40,
        help="confirms recorded per client (pgbench takes at most 128 scripts)",
    )
    parser.add_argument("--duration", type=int, default=15, help="seconds per phase")
    parser.add_argument("--rounds", type=int, default=1, help="alternations of the two")
    parser.add_argument(
        "--breakdown",
        type=int,
        metavar="CLIENTS",
        help="then run each variant with one part cut out, at CLIENTS clients",
    )
    parser.add_argument("--scripts-dir", type=Path, help="write (and keep) the scripts here")
    args = parser.parse_args()
    client_counts = [int(c) for c in args.clients.split(",")]
    if not _pg.database_exists(HTTP_DB):
        raise SystemExit(f"no {HTTP_DB}: run bench/purchases.py --keep first (see the docstring)")
    _pg.pgbench_init(PGBENCH_DB, PGBENCH_SCALE)
    per_client = min(args.members_per_client, 128)
    with tempfile.TemporaryDirectory(prefix="kopilka-ceiling-") as tmp:
        folder = args.scripts_dir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        count = max([*client_counts, args.breakdown or 0]) * per_client
        log(f"recording {count} confirms ({count} members) from {HTTP_DB}")
        scripts = write_scripts(count, folder)
        best: dict[str, float] = {"till_sql": 0.0, "tpcb_like": 0.0}
        try:
            for round_ in range(args.rounds):
                for clients in client_counts:
                    till = till_commands(scripts, clients, per_client)
                    tpcb = [["-b", "tpcb-like", "-c", str(clients), "-j", "2"]]
                    for name, database, commands in (
                        ("till_sql", COPY_DB, till),
                        ("tpcb_like", PGBENCH_DB, tpcb),
                    ):
                        if database == COPY_DB:
                            fresh_copy()
                        log(f"round {round_ + 1}: {name}, {clients} clients")
                        result = run_phase(
                            database, commands, args.duration, generic_plans=database == COPY_DB
                        )
                        best[name] = max(best[name], result["tps"])
                        record = {"figure": name, "round": round_ + 1, "clients": clients}
                        print(json.dumps(record | result), flush=True)
            if args.breakdown:
                breakdown(scripts, args.breakdown, per_client, args.duration)
        finally:
            drop_copy()
    print(
        json.dumps(
            {
                "figure": "till_sql_ceiling",
                "till_sql_tps": best["till_sql"],
                "tpcb_like_tps": best["tpcb_like"],
                "ratio": round(best["till_sql"] / best["tpcb_like"], 3),
                "b2_target_ratio": 0.4,
                "members": count,
                "protocol": "till: prepared; tpcb-like: simple",
            }
        )
    )


if __name__ == "__main__":
    main()
