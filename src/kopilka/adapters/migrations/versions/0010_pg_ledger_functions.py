"""PostgreSQL ledger functions (the fast path of the ledger write)

An accrual and a redemption as one PL/pgSQL call each, so the service layer makes one round
trip per write instead of a dozen (see docs/ledger_fast_path.md and bench/README.md). The
functions write exactly the rows ``LedgerService.accrue`` / ``redeem`` write in Python;
whatever they do not handle (a family pool, debt, due lots, lapsed holds, accounts not
opened yet) they answer ``fallback:<reason>`` without writing, and the service takes the
Python path. SQLite gets nothing.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24 06:35:00
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# The contract the caller checks before using the functions (adapters/db/pg_ledger.py).
VERSION = 1

# Both functions start alike, in the Python path's order: the idempotency claim
# (services/idempotency.py: a twin in flight -> idempotency_in_progress), then, in ONE
# statement whose snapshot follows the claim (so it sees a twin's committed answer): the
# stored answer (same hash -> replay, another -> idempotency_key_reused), the member's
# status (ledger._ensure_member_can_transact), the families contract (a member in a family
# pool -> the Python path, which knows the pool's rules) and the member's accounts, locked
# in id order as MemberBook locks them.
_OPEN = r"""
    IF p_key IS NOT NULL THEN
        IF NOT pg_try_advisory_xact_lock(p_lock) THEN
            outcome := 'idempotency_in_progress';
            RETURN;
        END IF;
    END IF;
    SELECT k.request_hash, k.response, m.status,
           EXISTS (SELECT 1 FROM family_members f
                    WHERE f.tenant_id = p_tenant AND f.member_id = p_member
                      AND f.status = 'active'),
           a.hold_id, a.held, a.pending_id, a.pending, a.wallet_id, a.wallet
      INTO v_hash, body, v_status, v_family,
           v_hold, v_held, v_pending, v_pending_balance, v_wallet, v_wallet_balance
      FROM (SELECT) AS one
      LEFT JOIN idempotency_keys k ON k.tenant_id = p_tenant AND k.key = p_key
      LEFT JOIN members m ON m.tenant_id = p_tenant AND m.id = p_member
      LEFT JOIN LATERAL (
          SELECT (array_agg(c.id) FILTER (WHERE c.kind = 'hold'))[1] AS hold_id,
                 min(c.balance) FILTER (WHERE c.kind = 'hold') AS held,
                 (array_agg(c.id) FILTER (WHERE c.kind = 'pending'))[1] AS pending_id,
                 min(c.balance) FILTER (WHERE c.kind = 'pending') AS pending,
                 (array_agg(c.id) FILTER (WHERE c.kind = 'wallet'))[1] AS wallet_id,
                 min(c.balance) FILTER (WHERE c.kind = 'wallet') AS wallet
            FROM (SELECT x.id, x.kind, x.balance FROM accounts x
                   WHERE x.tenant_id = p_tenant AND x.owner = 'member:' || p_member
                     AND x.currency = p_currency
                   ORDER BY x.id FOR UPDATE) c
      ) a ON true;
    IF v_hash IS NOT NULL THEN
        IF v_hash = p_hash THEN
            outcome := 'replay';
        ELSE
            outcome := 'idempotency_key_reused';
            body := NULL;
        END IF;
        RETURN;
    END IF;
    IF v_status IS NULL THEN
        outcome := 'member_not_found';
        RETURN;
    END IF;
    IF v_status IN ('blocked', 'merged', 'erased') THEN
        outcome := 'member_' || v_status;
        RETURN;
    END IF;
    IF v_family THEN
        outcome := 'fallback:family';
        RETURN;
    END IF;
    IF v_hold IS NULL OR v_pending IS NULL OR v_wallet IS NULL THEN
        outcome := 'fallback:no_accounts';  -- a currency never used: the Python path opens it
        RETURN;
    END IF;
    IF v_wallet_balance < 0 THEN
        outcome := 'fallback:debt';  -- credits pay a debt first, balances show it
        RETURN;
    END IF;
"""

# The tail of the write statement (its data-modifying CTEs come first): the answer's balance
# figures as of p_now from the member's open lots after the write ("after" = the lots read
# before the statement with the statement's own change applied, since a statement does not
# see its own writes), computed as kopilka.services.ledger.balance_view does when there is
# no debt (dates in the tenant's zone, "expiring on" = the last local day the points can be
# used); then the caller's answer template, completed, stored for replays.
_BALANCE = r"""
    figures AS (
        SELECT jsonb_build_object(
            'available', coalesce(sum(g.amount) FILTER (WHERE NOT g.later), 0)::bigint,
            'pending', coalesce(sum(g.amount) FILTER (WHERE g.later), 0)::bigint,
            'held', v_held,
            'expiring_soon', coalesce(
                jsonb_agg(jsonb_build_object('on', g.day, 'amount', g.amount) ORDER BY g.day)
                    FILTER (WHERE NOT g.later AND g.day IS NOT NULL), '[]'::jsonb),
            'next_pending', coalesce(
                jsonb_agg(jsonb_build_object('on', g.day, 'amount', g.amount) ORDER BY g.day)
                    FILTER (WHERE g.later), '[]'::jsonb)) AS figures
          FROM (
              -- One row per (pending later?, day): the day a pending lot becomes available,
              -- or the last day an expiring-soon lot with points left can be used.
              SELECT s.later, s.day, sum(s.remaining)::bigint AS amount
                FROM (SELECT o.remaining, o.status = 'pending' AND o.available_at > p_now AS later,
                             CASE
                                 WHEN o.status = 'pending' AND o.available_at > p_now
                                     THEN to_char(o.available_at AT TIME ZONE p_tz, 'YYYY-MM-DD')
                                 WHEN o.expires_at <= p_soon AND o.remaining > 0
                                     THEN to_char((o.expires_at - interval '1 microsecond')
                                                  AT TIME ZONE p_tz, 'YYYY-MM-DD')
                             END AS day
                        FROM ({lots}) AS o
                       WHERE (o.status = 'pending' OR (o.status = 'active' AND o.remaining > 0))
                         AND (o.expires_at IS NULL OR o.expires_at > p_now)) AS s
               GROUP BY s.later, s.day
          ) AS g
    ), remember AS (
        INSERT INTO idempotency_keys (tenant_id, key, request_hash, response, created_at)
        SELECT p_tenant, p_key, p_hash,
               jsonb_set(p_response, '{{transactions,0,postings,{posting},balance_after}}',
                         to_jsonb(balance_after))
               || jsonb_build_object('balance', (p_response -> 'balance') || f.figures),
               p_now
          FROM figures f
         WHERE p_key IS NOT NULL
    )
    SELECT f.figures INTO balance FROM figures f;
    outcome := 'ok';
"""

# The member's open lots as the statement starts (pending, or active with points left).
_OPEN_LOTS = """
    SELECT l.id, l.remaining, l.status, l.available_at, l.expires_at FROM lots l
     WHERE l.tenant_id = p_tenant AND l.member_id = p_member AND l.currency = p_currency
       AND (l.status = 'pending' OR (l.status = 'active' AND l.remaining > 0))"""

_DECLARE = r"""
    v_hash text;
    v_status text;
    v_family boolean;
    v_hold uuid;
    v_held bigint;
    v_pending uuid;
    v_pending_balance bigint;
    v_wallet uuid;
    v_wallet_balance bigint;
"""

# LedgerService.accrue: one transaction, its two postings (the counter account, then the
# member's pending or wallet account), one lot; all in one statement with the answer.
_ACCRUE = "".join(
    (
        r"""
CREATE OR REPLACE FUNCTION kopilka_ledger_accrue(
    p_tenant uuid, p_member uuid, p_currency text, p_key text, p_lock bigint, p_hash text,
    p_now timestamptz, p_txn uuid, p_lot uuid, p_kind text, p_amount bigint, p_actor text,
    p_source_type text, p_source_id text, p_reason text, p_params jsonb, p_pending boolean,
    p_available_at timestamptz, p_expires_at timestamptz, p_counter uuid, p_tz text,
    p_soon timestamptz, p_response jsonb,
    OUT outcome text, OUT body jsonb, OUT balance_after bigint, OUT balance jsonb
) LANGUAGE plpgsql
-- Generic plans, always: with the answer's CTEs and the array arguments the planner rates
-- a custom plan cheaper and would plan the statements again on every call.
SET plan_cache_mode = force_generic_plan
-- Every access here is by key. A plan made while a table was still empty (a new database's
-- idempotency_keys) would scan it sequentially for as long as the session keeps the plan.
SET enable_seqscan = off
AS $$
DECLARE""",
        _DECLARE,
        r"""
    v_account uuid;
    v_lot_status text := CASE WHEN p_pending THEN 'pending' ELSE 'active' END;
BEGIN""",
        _OPEN,
        r"""
    IF p_pending THEN
        v_account := v_pending;
        balance_after := v_pending_balance + p_amount;
    ELSE
        v_account := v_wallet;
        balance_after := v_wallet_balance + p_amount;
    END IF;
    WITH account AS (
        UPDATE accounts SET balance = balance_after WHERE id = v_account
    ), txn AS (
        INSERT INTO ledger_transactions (id, tenant_id, member_id, counterparty_member_id,
            kind, currency, amount, reason, actor, source_type, source_id, reverses_id,
            params, occurred_at, recorded_at)
        VALUES (p_txn, p_tenant, p_member, NULL, p_kind, p_currency, p_amount, p_reason,
            p_actor, p_source_type, p_source_id, NULL, p_params, p_now, p_now)
    ), entries AS (
        INSERT INTO postings (tenant_id, transaction_id, account_id, amount, balance_after)
        VALUES (p_tenant, p_txn, p_counter, -p_amount, NULL),
               (p_tenant, p_txn, v_account, p_amount, balance_after)
    ), lot AS (
        INSERT INTO lots (id, tenant_id, member_id, currency, amount, remaining, status,
            available_at, expires_at, source_transaction_id, created_at)
        VALUES (p_lot, p_tenant, p_member, p_currency, p_amount, p_amount, v_lot_status,
            p_available_at, p_expires_at, p_txn, p_now)
    ),""",
        _BALANCE.format(
            lots="".join(
                (
                    _OPEN_LOTS,
                    "\n     UNION ALL SELECT p_lot, p_amount, v_lot_status, p_available_at,",
                    " p_expires_at",
                )
            ),
            posting=1,
        ),
        "END $$",
    )
)

# LedgerService.redeem: soonest-expiring active lots first (lots.burn_order), one movement
# per lot taken (its origin: the redemption), the wallet posting then the redeemed one.
# Due lots and lapsed holds need settling first, which the Python path does. The lots are
# read after the accounts' lock (a statement of their own: a fresh snapshot).
_REDEEM = "".join(
    (
        r"""
CREATE OR REPLACE FUNCTION kopilka_ledger_redeem(
    p_tenant uuid, p_member uuid, p_currency text, p_key text, p_lock bigint, p_hash text,
    p_now timestamptz, p_txn uuid, p_amount bigint, p_actor text, p_source_type text,
    p_source_id text, p_reason text, p_params jsonb, p_counter uuid, p_tz text,
    p_soon timestamptz, p_response jsonb,
    OUT outcome text, OUT body jsonb, OUT balance_after bigint, OUT balance jsonb
) LANGUAGE plpgsql
-- Generic plans, always: with the answer's CTEs and the array arguments the planner rates
-- a custom plan cheaper and would plan the statements again on every call.
SET plan_cache_mode = force_generic_plan
-- Every access here is by key. A plan made while a table was still empty (a new database's
-- idempotency_keys) would scan it sequentially for as long as the session keeps the plan.
SET enable_seqscan = off
AS $$
DECLARE""",
        _DECLARE,
        r"""
    v_ids uuid[];
    v_left bigint[];
    v_due boolean;
    v_need bigint := p_amount;
    v_take bigint;
    v_lots uuid[] := '{}';
    v_takes bigint[] := '{}';
BEGIN""",
        _OPEN,
        r"""
    IF v_held > 0 AND EXISTS (
        SELECT 1 FROM holds h
         WHERE h.tenant_id = p_tenant AND h.member_id = p_member AND h.currency = p_currency
           AND h.status = 'active' AND h.expires_at <= p_now
    ) THEN
        outcome := 'fallback:lapsed_holds';  -- released (a transaction) before the spend
        RETURN;
    END IF;
    SELECT array_agg(l.id ORDER BY l.expires_at IS NULL, l.expires_at, l.available_at, l.id)
               FILTER (WHERE l.status = 'active'),
           array_agg(l.remaining
                     ORDER BY l.expires_at IS NULL, l.expires_at, l.available_at, l.id)
               FILTER (WHERE l.status = 'active'),
           coalesce(bool_or(l.expires_at <= p_now
                            OR (l.status = 'pending' AND l.available_at <= p_now)), false)
      INTO v_ids, v_left, v_due
      FROM lots l
     WHERE l.tenant_id = p_tenant AND l.member_id = p_member AND l.currency = p_currency
       AND (l.status = 'pending' OR (l.status = 'active' AND l.remaining > 0));
    IF v_due THEN
        outcome := 'fallback:due_lots';  -- activations and expiries come first
        RETURN;
    END IF;
    IF v_wallet_balance < p_amount THEN
        outcome := 'insufficient_points';
        body := jsonb_build_object('available', greatest(v_wallet_balance, 0));
        RETURN;
    END IF;
    FOR i IN 1 .. coalesce(array_length(v_ids, 1), 0) LOOP
        v_take := least(v_left[i], v_need);
        v_lots := v_lots || v_ids[i];
        v_takes := v_takes || v_take;
        v_need := v_need - v_take;
        EXIT WHEN v_need = 0;
    END LOOP;
    IF v_need > 0 THEN
        outcome := 'insufficient_spendable';
        body := jsonb_build_object('available', p_amount - v_need);
        RETURN;
    END IF;
    balance_after := v_wallet_balance - p_amount;
    WITH account AS (
        UPDATE accounts SET balance = balance_after WHERE id = v_wallet
    ), txn AS (
        INSERT INTO ledger_transactions (id, tenant_id, member_id, counterparty_member_id,
            kind, currency, amount, reason, actor, source_type, source_id, reverses_id,
            params, occurred_at, recorded_at)
        VALUES (p_txn, p_tenant, p_member, NULL, 'redemption', p_currency, p_amount,
            p_reason, p_actor, p_source_type, p_source_id, NULL, p_params, p_now, p_now)
    ), entries AS (
        INSERT INTO postings (tenant_id, transaction_id, account_id, amount, balance_after)
        VALUES (p_tenant, p_txn, v_wallet, -p_amount, balance_after),
               (p_tenant, p_txn, p_counter, p_amount, NULL)
    ), taken AS (
        UPDATE lots l SET remaining = l.remaining - t.take
          FROM unnest(v_lots, v_takes) AS t(id, take)
         WHERE l.id = t.id
    ), movements AS (
        INSERT INTO lot_movements (tenant_id, transaction_id, lot_id, amount, origin_id)
        SELECT p_tenant, p_txn, t.id, -t.take, p_txn
          FROM unnest(v_lots, v_takes) WITH ORDINALITY AS t(id, take, n)
         ORDER BY t.n
    ),""",
        _BALANCE.format(
            lots="".join(
                (
                    """
    SELECT o.id, o.remaining - coalesce(t.take, 0) AS remaining, o.status, o.available_at,
           o.expires_at
      FROM (""",
                    _OPEN_LOTS,
                    """) AS o
      LEFT JOIN unnest(v_lots, v_takes) AS t(id, take) ON t.id = o.id""",
                )
            ),
            posting=0,
        ),
        "END $$",
    )
)

_VERSION = f"""
CREATE OR REPLACE FUNCTION kopilka_ledger_functions_version() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT {VERSION} $$
"""

STATEMENTS = (_ACCRUE, _REDEEM, _VERSION)

_DROP = (
    "DROP FUNCTION IF EXISTS kopilka_ledger_functions_version()",
    "DROP FUNCTION IF EXISTS kopilka_ledger_redeem(uuid, uuid, text, text, bigint, text,"
    " timestamptz, uuid, bigint, text, text, text, text, jsonb, uuid, text, timestamptz, jsonb)",
    "DROP FUNCTION IF EXISTS kopilka_ledger_accrue(uuid, uuid, text, text, bigint, text,"
    " timestamptz, uuid, uuid, text, bigint, text, text, text, text, jsonb, boolean,"
    " timestamptz, timestamptz, uuid, text, timestamptz, jsonb)",
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in STATEMENTS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in _DROP:
            op.execute(statement)
