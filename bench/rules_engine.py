"""Rules engine in process: receipts evaluated per second on one core, with 20 and 200 rules.

Realistic receipts: 10 lines from a 2,000-SKU catalogue in 40 categories, a member with a
balance, 30% of receipts paying part with points. Rules mix category and SKU discounts,
multipliers, thresholds, time windows and tiers, as a merchant's program does.

    .venv/bin/python bench/rules_engine.py [--seconds 5]

Prints one JSON line per figure.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from kopilka.domain.rules.document import CompiledProgram, compile_program
from kopilka.domain.rules.engine import evaluate
from kopilka.domain.rules.facts import Context, Line, MemberFacts
from kopilka.domain.rules.money import line_amount

CATEGORIES = [f"dept{d}/cat{c}" for d in range(8) for c in range(5)]
SKUS = [f"SKU{i:05d}" for i in range(2000)]
TIERS = ["bronze", "silver", "gold", "platinum"]
SKU_CATEGORY = {sku: CATEGORIES[i % len(CATEGORIES)] for i, sku in enumerate(SKUS)}


def make_rules(count: int, rng: random.Random) -> list[dict[str, Any]]:
    """A program of ``count`` rules of the kinds merchants use."""
    rules: list[dict[str, Any]] = [
        {"id": "base", "priority": 1000, "effects": [{"points_percent": 3}]},
    ]
    for i in range(count - 1):
        kind = i % 6
        rule: dict[str, Any] = {"id": f"r{i}", "priority": 10 + i}
        if kind == 0:
            rule |= {
                "lines": {"category": rng.choice(CATEGORIES)},
                "effects": [{"discount_percent": rng.choice([5, 10, 15])}],
            }
        elif kind == 1:
            rule |= {
                "lines": {"sku_in": rng.sample(SKUS, 5)},
                "effects": [{"points_multiplier": 2}],
            }
        elif kind == 2:
            rule |= {
                "when": {"qty_gte": {"of": {"category": rng.choice(CATEGORIES)}, "value": 3}},
                "effects": [{"points_fixed": 50}],
            }
        elif kind == 3:
            rule |= {
                "when": {
                    "all": [
                        {"tier_in": [rng.choice(TIERS)]},
                        {"amount_gte": rng.randrange(100000, 2000000, 50000)},
                    ]
                },
                "lines": {"category": rng.choice(CATEGORIES)},
                "effects": [{"discount_percent": 3}],
            }
        elif kind == 4:
            rule |= {
                "when": {"hours": {"from": "08:00", "to": "11:00"}},
                "lines": {"category": rng.choice(CATEGORIES)},
                "effects": [{"points_per_unit": 10}],
            }
        else:
            rule |= {
                "when": {"sku": rng.choice(SKUS)},
                "lines": {"sku": rng.choice(SKUS)},
                "effects": [{"discount_amount": {"value": 5000, "per": "line"}}],
            }
        rules.append(rule)
    return rules


def make_program(count: int, seed: int = 7) -> CompiledProgram:
    document = {
        "type": "combined",
        "redemption": {"point_value": 100, "max_percent": 50},
        "limits": {"max_discount_percent_receipt": 50},
        "rules": make_rules(count, random.Random(seed)),
    }
    return compile_program(document, "bench", 1)


def make_receipt(rng: random.Random) -> list[Line]:
    lines = []
    for index in range(10):
        sku = rng.choice(SKUS)
        qty = Decimal(rng.choice([1, 1, 1, 2, 3])) if index % 5 else Decimal("0.734")
        price = rng.randrange(5000, 150000, 100)
        lines.append(
            Line(
                index=index,
                sku=sku,
                qty=qty,
                price=price,
                amount=line_amount(price, qty),
                category=tuple(SKU_CATEGORY[sku].split("/")),
            )
        )
    return lines


def run(rule_count: int, seconds: float) -> dict[str, Any]:
    program = make_program(rule_count)
    rng = random.Random(1)
    receipts = [make_receipt(rng) for _ in range(500)]
    now = datetime(2026, 3, 10, 6, 30, tzinfo=UTC)
    member = MemberFacts("m1", tier="gold", purchases_before=12)
    ctx = Context(
        occurred_at=now, local_time=now, tenant_today=now.date(), outlet_code="MSK-1", member=member
    )
    done = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        for i, lines in enumerate(receipts[:50]):
            redeem: Any = "max" if (done + i) % 10 < 3 else None
            evaluate([program], lines, ctx, redeem=redeem, balances={"points": 5000})
        done += 50
    elapsed = time.perf_counter() - started
    return {
        "figure": f"rules_engine_receipts_per_second_{rule_count}_rules",
        "value": round(done / elapsed),
        "rules": rule_count,
        "lines_per_receipt": 10,
        "receipts": done,
        "seconds": round(elapsed, 2),
        "cores": 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    for count in (20, 200):
        print(json.dumps(run(count, args.seconds)), flush=True)


if __name__ == "__main__":
    main()
