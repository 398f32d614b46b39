"""the ledger functions update the member's balance row by its address, not by its key

The functions already lock the member's accounts (``FOR UPDATE``) before writing. The lock
now also returns each row's ``ctid``, and the balance update finds the row by it (a TID scan)
instead of descending ``pk_accounts`` again. That descent was one more random index page per
write, and most of a write's backend time on the 1M-member benchmark is buffer traffic.

The address cannot go stale in between: the row is locked, so no other transaction can
update it, and a locking read returns the version it locked. The update keeps ``id = ...``
as a second condition. The statement checks that exactly one row was updated, and raises
(rolling the whole call back) otherwise.

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-24 15:50:00
"""

from __future__ import annotations

from alembic import op

from kopilka.adapters.db.pg_function_edits import rewrite_function

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

_COMMON = (
    (
        "    v_wallet_balance bigint;\n",
        "    v_wallet_balance bigint;\n    v_pending_tid tid;\n    v_wallet_tid tid;\n"
        "    v_updated bigint;\n",
    ),
    (
        "a.wallet_id, a.wallet\n",
        "a.wallet_id, a.wallet,\n           a.pending_tid, a.wallet_tid\n",
    ),
    (
        "v_wallet, v_wallet_balance\n",
        "v_wallet, v_wallet_balance,\n           v_pending_tid, v_wallet_tid\n",
    ),
    (
        "min(c.balance) FILTER (WHERE c.kind = 'wallet') AS wallet\n",
        "min(c.balance) FILTER (WHERE c.kind = 'wallet') AS wallet,\n"
        "                 (array_agg(c.tid) FILTER (WHERE c.kind = 'pending'))[1] AS pending_tid,\n"
        "                 (array_agg(c.tid) FILTER (WHERE c.kind = 'wallet'))[1] AS wallet_tid\n",
    ),
    (
        "SELECT x.id, x.kind, x.balance FROM accounts x",
        "SELECT x.id, x.kind, x.balance, x.ctid AS tid FROM accounts x",
    ),
    (
        "    SELECT f.figures INTO balance FROM figures f;\n",
        "    SELECT f.figures, (SELECT count(*) FROM account) INTO balance, v_updated"
        " FROM figures f;\n"
        "    IF v_updated <> 1 THEN\n"
        "        RAISE EXCEPTION 'kopilka ledger: the locked balance row was not updated';\n"
        "    END IF;\n",
    ),
)
_ACCRUE = (
    ("    v_account uuid;\n", "    v_account uuid;\n    v_account_tid tid;\n"),
    (
        "v_account := v_pending;\n",
        "v_account := v_pending;\n        v_account_tid := v_pending_tid;\n",
    ),
    (
        "v_account := v_wallet;\n",
        "v_account := v_wallet;\n        v_account_tid := v_wallet_tid;\n",
    ),
    (
        "UPDATE accounts SET balance = balance_after WHERE id = v_account\n",
        "UPDATE accounts SET balance = balance_after\n"
        "         WHERE ctid = v_account_tid AND id = v_account RETURNING 1\n",
    ),
)
_REDEEM = (
    (
        "UPDATE accounts SET balance = balance_after WHERE id = v_wallet\n",
        "UPDATE accounts SET balance = balance_after\n"
        "         WHERE ctid = v_wallet_tid AND id = v_wallet RETURNING 1\n",
    ),
)
_CHANGES = {"kopilka_ledger_accrue": _COMMON + _ACCRUE, "kopilka_ledger_redeem": _COMMON + _REDEEM}


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, changes in _CHANGES.items():
            rewrite_function(name, changes)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, changes in _CHANGES.items():
            rewrite_function(name, changes, forward=False)
