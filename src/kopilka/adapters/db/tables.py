"""The schema: one definition for SQLite and PostgreSQL.

Every tenant-owned table has ``tenant_id`` and it leads every unique key, so one merchant's
numbers never collide with another's and every lookup is scoped by tenant.
"""

from __future__ import annotations

import sqlalchemy as sa

from kopilka.adapters.db.types import BigIntPk, Json, UtcDateTime

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _tenant_fk() -> sa.Column[object]:
    return sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False)


def _hot_tenant_id() -> sa.Column[object]:
    """``tenant_id`` of a table every purchase writes to: no foreign key, since each row's
    check would lock the one tenant row shared by all tills (migration 0017); ``ledger
    verify`` checks for rows of unknown tenants instead."""
    return sa.Column("tenant_id", sa.Uuid, nullable=False)


tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("locale", sa.String(8), nullable=False),
    sa.Column("phone_region", sa.String(2), nullable=False),
    sa.Column("points_currency", sa.String(16), nullable=False),
    sa.Column("card_scheme", sa.String(8), nullable=False),
    sa.Column("card_prefix", sa.String(8), nullable=False),
    sa.Column("qr_secret", sa.String(64), nullable=False),
    sa.Column("qr_window_seconds", sa.Integer, nullable=False),
    sa.Column("hold_ttl_seconds", sa.Integer, nullable=False),
    sa.Column("pending_days", sa.Integer, nullable=False),
    sa.Column("expiry_policy", Json, nullable=False),
    sa.Column("allow_debt", sa.Boolean, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    # How many days back a till may date a receipt (older ones go through the import).
    sa.Column("backdate_days", sa.Integer, nullable=False, server_default=sa.text("30")),
    # Bumped by every product write: cached products are valid while it stays the same.
    sa.Column("catalogue_version", sa.BigInteger, nullable=False, server_default=sa.text("0")),
)

outlets = sa.Table(
    "outlets",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    _tenant_fk(),
    sa.Column("code", sa.String(64), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("region", sa.String(100)),
    sa.Column("tags", Json, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("tenant_id", "code"),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    _tenant_fk(),
    # The public half of the key, used to find the row; the secret half is only hashed.
    sa.Column("key_id", sa.String(32), nullable=False),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("outlet_id", sa.Uuid, sa.ForeignKey("outlets.id")),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("revoked_at", UtcDateTime),
    sa.Column("last_used_at", UtcDateTime),
    sa.UniqueConstraint("tenant_id", "key_id"),
    sa.Index(None, "key_id"),
)

members = sa.Table(
    "members",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    _tenant_fk(),
    sa.Column("phone", sa.String(20)),
    sa.Column("email", sa.String(320)),
    sa.Column("name", sa.String(200)),
    sa.Column("birth_year", sa.SmallInteger),
    sa.Column("birth_month", sa.SmallInteger),
    sa.Column("birth_day", sa.SmallInteger),
    sa.Column("external_id", sa.String(128)),
    sa.Column("attributes", Json, nullable=False),
    sa.Column("consents", Json, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("block_reason", sa.String(500)),
    sa.Column("merged_into_id", sa.Uuid),
    sa.Column("erased_at", UtcDateTime),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("tenant_id", "phone"),
    sa.UniqueConstraint("tenant_id", "email"),
    sa.UniqueConstraint("tenant_id", "external_id"),
    # The status too: the ledger's status check is then an index-only scan (migration 0020).
    sa.Index(None, "tenant_id", "id", "status"),
)

card_batches = sa.Table(
    "card_batches",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    _tenant_fk(),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("first_number", sa.String(32), nullable=False),
    sa.Column("last_number", sa.String(32), nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("tenant_id", "name"),
)

cards = sa.Table(
    "cards",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    _tenant_fk(),
    sa.Column("number", sa.String(32), nullable=False),
    sa.Column("member_id", sa.Uuid, sa.ForeignKey("members.id")),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("batch_id", sa.Uuid, sa.ForeignKey("card_batches.id")),
    sa.Column("replaced_by_id", sa.Uuid),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("bound_at", UtcDateTime),
    sa.Column("status_changed_at", UtcDateTime),
    sa.UniqueConstraint("tenant_id", "number"),
    sa.Index(None, "tenant_id", "member_id"),
)

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    _tenant_fk(),
    # "tenant" for the tenant's own accounts, else "member:<uuid>"; a string, because a
    # unique key over a NULL member_id would not be unique on either database.
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("member_id", sa.Uuid, sa.ForeignKey("members.id")),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("currency", sa.String(16), nullable=False),
    # Cached for member accounts only; tenant accounts are summed from postings.
    sa.Column("balance", sa.BigInteger, nullable=False),
    sa.Column("allow_debt", sa.Boolean, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("tenant_id", "owner", "kind", "currency"),
    sa.Index(None, "tenant_id", "member_id"),
    sa.CheckConstraint("balance >= 0 OR allow_debt", name="no_negative_balance"),
)

ledger_transactions = sa.Table(
    "ledger_transactions",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    _hot_tenant_id(),
    sa.Column("member_id", sa.Uuid),
    sa.Column("counterparty_member_id", sa.Uuid),
    sa.Column("kind", sa.String(24), nullable=False),
    sa.Column("currency", sa.String(16), nullable=False),
    # The headline amount shown to people: positive, or signed for adjustments.
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.String(500)),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("source_type", sa.String(24), nullable=False),
    sa.Column("source_id", sa.String(128)),
    sa.Column("reverses_id", sa.Uuid),
    sa.Column("params", Json, nullable=False),
    sa.Column("occurred_at", UtcDateTime, nullable=False),
    sa.Column("recorded_at", UtcDateTime, nullable=False),
    sa.Index(None, "tenant_id", "member_id", "id"),
    # Only reversals: the column is NULL on nearly every transaction (migration 0016).
    sa.Index(
        None,
        "tenant_id",
        "reverses_id",
        postgresql_where=sa.text("reverses_id IS NOT NULL"),
        sqlite_where=sa.text("reverses_id IS NOT NULL"),
    ),
)

postings = sa.Table(
    "postings",
    metadata,
    sa.Column("id", BigIntPk, primary_key=True, autoincrement=True),
    _hot_tenant_id(),
    sa.Column("transaction_id", sa.Uuid, nullable=False),
    sa.Column("account_id", sa.Uuid, nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    # The account's balance after this posting; NULL for tenant accounts (never cached).
    sa.Column("balance_after", sa.BigInteger),
    sa.Index(None, "transaction_id"),
    sa.Index(None, "account_id", "id"),
)

OPEN_LOT = "status = 'pending' OR (status = 'active' AND remaining > 0)"

lots = sa.Table(
    "lots",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    _hot_tenant_id(),
    sa.Column("member_id", sa.Uuid, nullable=False),
    sa.Column("currency", sa.String(16), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("remaining", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("available_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime),
    sa.Column("source_transaction_id", sa.Uuid, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    # Pending, or active with points left (a lot spent to 0 stays active: a refund refills
    # it). Generated, so the indexes below skip spent lots while an update that only moves
    # ``remaining`` stays a HOT update on PostgreSQL (migration 0023).
    sa.Column("is_open", sa.Boolean, sa.Computed(OPEN_LOT, persisted=True), nullable=False),
    sa.Index(None, "member_id", "currency", "is_open"),
    sa.Index(None, "status", "available_at"),
    sa.Index(None, "is_open", "expires_at"),
    sa.Index(None, "source_transaction_id"),  # a reversal finds its accrual's lots
    sa.CheckConstraint("remaining >= 0 AND remaining <= amount", name="remaining_in_range"),
)

lot_movements = sa.Table(
    "lot_movements",
    metadata,
    sa.Column("id", BigIntPk, primary_key=True, autoincrement=True),
    _hot_tenant_id(),
    sa.Column("transaction_id", sa.Uuid, nullable=False),
    sa.Column("lot_id", sa.Uuid, nullable=False),
    # Negative: points taken from the lot; positive: points given back to it.
    sa.Column("amount", sa.BigInteger, nullable=False),
    # The transaction that first took the points (redemption or hold): refunds sum by it.
    sa.Column("origin_id", sa.Uuid, nullable=False),
    # No index on transaction_id or lot_id: nothing looks movements up by either
    # (migrations 0016 and 0019).
    sa.Index(None, "origin_id"),
)

holds = sa.Table(
    "holds",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    _tenant_fk(),
    sa.Column("member_id", sa.Uuid, nullable=False),
    sa.Column("currency", sa.String(16), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("captured", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reference", sa.String(200)),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Column("hold_transaction_id", sa.Uuid, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("closed_at", UtcDateTime),
    sa.Index(None, "status", "expires_at"),
    sa.Index(None, "tenant_id", "member_id"),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    _hot_tenant_id(),
    sa.Column("key", sa.String(255), nullable=False),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("response", Json, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "key"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    _tenant_fk(),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("subject_type", sa.String(32), nullable=False),
    sa.Column("subject_id", sa.String(64), nullable=False),
    sa.Column("details", Json, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Index(None, "tenant_id", "subject_type", "subject_id"),
)

# ---- programs, catalogue and receipts (issue 3) ----------------------------------------------

products = sa.Table(
    "products",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    _tenant_fk(),
    sa.Column("sku", sa.String(64), nullable=False),
    sa.Column("name", sa.String(300)),
    sa.Column("category", sa.String(300)),  # a path: "drinks/coffee"
    sa.Column("brand", sa.String(200)),
    sa.Column("tags", Json, nullable=False),
    sa.Column("attributes", Json, nullable=False),
    sa.Column("price", sa.BigInteger),
    sa.Column("min_price", sa.BigInteger),
    sa.Column("no_discount", sa.Boolean, nullable=False),
    sa.Column("no_points", sa.Boolean, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("tenant_id", "sku"),
)

programs = sa.Table(
    "programs",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    _tenant_fk(),
    sa.Column("code", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("document", Json, nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("starts_at", UtcDateTime, nullable=False),
    sa.Column("ends_at", UtcDateTime),
    sa.Column("published_at", UtcDateTime, nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.UniqueConstraint("tenant_id", "code", "version"),
)

receipts = sa.Table(
    "receipts",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    _hot_tenant_id(),
    sa.Column("outlet_id", sa.Uuid, nullable=False),  # no foreign key: see _hot_tenant_id
    sa.Column("receipt_number", sa.String(64), nullable=False),
    sa.Column("member_id", sa.Uuid),
    # held (points reserved, waiting for confirm/void), confirmed, voided, cancelled
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("payment_method", sa.String(32)),
    sa.Column("occurred_at", UtcDateTime, nullable=False),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("programs", Json, nullable=False),  # {code: version} the receipt was evaluated with
    sa.Column("total_amount", sa.BigInteger, nullable=False),
    sa.Column("total_discount", sa.BigInteger, nullable=False),
    sa.Column("points_redeemed", sa.BigInteger, nullable=False),
    sa.Column("points_money", sa.BigInteger, nullable=False),
    sa.Column("total_pay", sa.BigInteger, nullable=False),
    sa.Column("points_earned", sa.BigInteger, nullable=False),
    sa.Column("result", Json, nullable=False),
    sa.Column("hold_id", sa.Uuid),
    sa.Column("hold_expires_at", UtcDateTime),
    sa.Column("ledger", Json, nullable=False),  # transaction ids by role, for refunds
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("closed_at", UtcDateTime),
    sa.UniqueConstraint("tenant_id", "outlet_id", "receipt_number"),
    sa.Index(None, "tenant_id", "member_id", "id"),
    sa.Index(None, "status", "hold_expires_at"),
)

receipt_lines = sa.Table(
    "receipt_lines",
    metadata,
    sa.Column("id", BigIntPk, primary_key=True, autoincrement=True),
    _hot_tenant_id(),
    sa.Column("receipt_id", sa.Uuid, nullable=False),
    sa.Column("line_no", sa.Integer, nullable=False),
    sa.Column("sku", sa.String(64), nullable=False),
    sa.Column("category", sa.String(300)),
    sa.Column("qty", sa.Numeric(14, 3), nullable=False),
    sa.Column("price", sa.BigInteger, nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("discount", sa.BigInteger, nullable=False),
    sa.Column("points_spent", sa.BigInteger, nullable=False),
    sa.Column("points_money", sa.BigInteger, nullable=False),
    sa.Column("points_earned", Json, nullable=False),  # {program code: points}
    sa.Column("refunded_qty", sa.Numeric(14, 3), nullable=False),
    sa.UniqueConstraint("tenant_id", "receipt_id", "line_no"),
)

refunds = sa.Table(
    "refunds",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    _tenant_fk(),
    sa.Column("receipt_id", sa.Uuid, nullable=False),
    sa.Column("refund_key", sa.String(255), nullable=False),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # refund or cancel
    sa.Column("result", Json, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("tenant_id", "receipt_id", "refund_key"),
)

coupons = sa.Table(
    "coupons",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    _tenant_fk(),
    sa.Column("code", sa.String(64), nullable=False),
    sa.Column("member_id", sa.Uuid),
    sa.Column("benefit", Json, nullable=False),
    sa.Column("min_basket", sa.BigInteger, nullable=False),
    sa.Column("valid_from", UtcDateTime, nullable=False),
    sa.Column("valid_until", UtcDateTime),
    sa.Column("uses_left", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("source_type", sa.String(24), nullable=False),
    sa.Column("source_id", sa.String(128)),
    sa.Column("created_at", UtcDateTime, nullable=False),
    # slot:coupons - added by the coupons feature (migration 0012); inserts that predate it
    # get a personal single-use coupon with the default terms.
    sa.Column("kind", sa.String(16), nullable=False, server_default="personal"),
    sa.Column("batch_id", sa.Uuid),  # coupon_batches.id for the codes of a batch
    sa.Column("uses_total", sa.Integer, server_default="1"),  # NULL: no total limit
    sa.Column("per_member", sa.Integer),  # uses per member (public codes); NULL: no limit
    sa.Column("terms", Json),  # scope, outlets, channels...; NULL: the batch's or defaults
    sa.Column("voided_at", UtcDateTime),
    sa.UniqueConstraint("tenant_id", "code"),
    sa.Index(None, "tenant_id", "member_id"),
    sa.Index(None, "tenant_id", "batch_id", "code"),
)
