"""a redemption updates the lots it burns by their row addresses, not by their key

The redemption function reads the member's open lots after locking the member's accounts.
Every lot write takes those locks first (``MemberBook``, and this function). The read now
also collects each lot's ``ctid``, and the burn updates the lots by address (a TID scan)
instead of descending ``pk_lots``: one random index page fewer per redemption. The update
still checks each lot's ``id``, and the call raises (rolling everything back) unless it
updated exactly the lots it meant to burn.

Revision ID: 0022
Revises: 0021
Create Date: 2026-11-24 16:05:00
"""

from __future__ import annotations

from alembic import op

from kopilka.adapters.db.pg_function_edits import rewrite_function

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

_BURN_ORDER = "ORDER BY l.expires_at IS NULL, l.expires_at, l.available_at, l.id"
_CHANGES = (
    (
        "    v_takes bigint[] := '{}';\n",
        "    v_takes bigint[] := '{}';\n    v_tids tid[];\n    v_lot_tids tid[] := '{}';\n"
        "    v_taken bigint;\n",
    ),
    (
        "               FILTER (WHERE l.status = 'active'),\n           coalesce(bool_or(",
        "               FILTER (WHERE l.status = 'active'),\n"
        f"           array_agg(l.ctid {_BURN_ORDER})\n"
        "               FILTER (WHERE l.status = 'active'),\n           coalesce(bool_or(",
    ),
    ("      INTO v_ids, v_left, v_due\n", "      INTO v_ids, v_left, v_tids, v_due\n"),
    (
        "        v_lots := v_lots || v_ids[i];\n",
        "        v_lots := v_lots || v_ids[i];\n        v_lot_tids := v_lot_tids || v_tids[i];\n",
    ),
    (
        "         WHERE l.id = t.id\n    ), movements AS (",
        "         WHERE l.ctid = ANY (v_lot_tids) AND l.id = t.id RETURNING 1\n"
        "    ), movements AS (",
    ),
    (
        "(SELECT count(*) FROM account) INTO balance, v_updated FROM figures f;\n",
        "(SELECT count(*) FROM account),\n"
        "           (SELECT count(*) FROM taken) INTO balance, v_updated, v_taken\n"
        "      FROM figures f;\n"
        "    IF v_taken <> coalesce(array_length(v_lots, 1), 0) THEN\n"
        "        RAISE EXCEPTION 'kopilka ledger: a lot to burn was not updated';\n"
        "    END IF;\n",
    ),
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        rewrite_function("kopilka_ledger_redeem", _CHANGES)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        rewrite_function("kopilka_ledger_redeem", _CHANGES, forward=False)
