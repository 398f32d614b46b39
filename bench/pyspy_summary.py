"""Summarise a ``py-spy record --format raw`` file (collapsed stacks) of ledger workers.

    .venv/bin/py-spy record --subprocesses --format raw -o /tmp/ledger.raw -d 15 -p <PID>
    .venv/bin/python bench/pyspy_summary.py /tmp/ledger.raw

Prints one JSON line: the share of samples by package of the innermost frame (self time),
and inclusive shares for the stages of a ledger write (a sample counts once per stage found
anywhere on its stack).
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter

PACKAGES = (
    ("sqlalchemy", "sqlalchemy/"),
    ("psycopg", "psycopg"),
    ("pydantic", "pydantic"),
    ("kopilka", "kopilka/"),
    ("json", "json/"),
    ("stdlib", "python3.11/"),
)
# Inclusive stages: (label, regex on one frame).
STAGES = (
    ("uow_enter (pool checkout + pre-ping)", r"__enter__ \(kopilka/adapters/db/unit_of_work"),
    ("pre_ping", r"do_ping"),
    ("claim_key (advisory lock)", r"claim_key \("),
    ("idempotency_record", r"idempotency_record \("),
    ("load_tenant", r"load_tenant \("),
    ("member check", r"_ensure_member_can_transact \("),
    ("MemberBook.__init__ (lock accounts, open lots)", r"__init__ \(kopilka/services/ledger_book"),
    ("ledger_store.apply (writes)", r"apply \(kopilka/adapters/db/ledger_store"),
    ("views (_views_of_planned, balance)", r"(_views_of_planned|_balance_from_plan) \("),
    ("OperationResult + to_json", r"(to_json|model_dump|OperationResult)"),
    ("request_hash", r"request_hash \("),
    ("remember (idempotency insert)", r"remember \("),
    ("commit", r"commit \(kopilka/adapters/db/unit_of_work"),
    (
        "SQLAlchemy statement building",
        r"(operate|_boolean_compare|coercions|__eq__) \(.*sqlalchemy/sql",
    ),
    ("SQLAlchemy compile cache lookup", r"(_compile_w_cache|_generate_cache_key) \("),
    ("psycopg execute", r"execute \(psycopg/"),
)


def main(path: str) -> int:
    self_by_pkg: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    total = 0
    compiled = [(label, re.compile(rx)) for label, rx in STAGES]
    with open(path) as fh:
        for line in fh:
            stack, _, count_text = line.rstrip("\n").rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = stack.split(";")
            if not any("_workload.py" in f for f in frames):
                continue  # the parent process or idle helpers
            total += count
            leaf = frames[-1]
            pkg = next((name for name, needle in PACKAGES if needle in leaf), "other")
            self_by_pkg[pkg] += count
            for label, rx in compiled:
                if any(rx.search(f) for f in frames):
                    stages[label] += count
    print(
        json.dumps(
            {
                "figure": "pyspy_worker_samples",
                "samples": total,
                "self_share_by_package": {
                    k: round(v / total, 3) for k, v in self_by_pkg.most_common()
                },
                "inclusive_share_by_stage": {
                    k: round(stages[k] / total, 3) for k, _ in STAGES if stages[k]
                },
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
