"""Tenants, outlets, API keys, members, cards, audit log and idempotency records."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from kopilka.adapters.db.driver_sql import DriverStatement, driver_rows
from kopilka.adapters.db.driver_sqlite import sqlite_rows
from kopilka.adapters.db.mechanics.families import family_key, family_members
from kopilka.adapters.db.mechanics.referrals import referral_key, referrals
from kopilka.adapters.db.tables import (
    api_keys,
    audit_log,
    card_batches,
    cards,
    idempotency_keys,
    members,
    outlets,
    tenants,
)
from kopilka.adapters.db.ttl_cache import MISSING, ScopedCache
from kopilka.ids import new_id

Row = dict[str, Any]


def _as_dict(row: Any) -> Row | None:
    return dict(row._mapping) if row is not None else None


# Hot statements are built once (see ledger_store for why).
_MEMBER = sa.select(members).where(
    members.c.tenant_id == sa.bindparam("t"), members.c.id == sa.bindparam("m")
)
_LOCK_MEMBER = _MEMBER.with_for_update()
_CARD = sa.select(cards).where(
    cards.c.tenant_id == sa.bindparam("t"), cards.c.number == sa.bindparam("n")
)
_LOCK_CARD = _CARD.with_for_update()
_OUTLET = sa.select(outlets).where(
    outlets.c.tenant_id == sa.bindparam("t"), outlets.c.id == sa.bindparam("o")
)
_OUTLET_BY_CODE = sa.select(outlets).where(
    outlets.c.tenant_id == sa.bindparam("t"), outlets.c.code == sa.bindparam("c")
)
# The till's member reads bring along what two mechanics would otherwise look up again on
# every purchase, each by its primary or unique key: the member's active family membership
# (where the points live) and the referral that brought the member (rewarded on a first
# purchase). They are kept in the unit of work's ``prefetched`` (read by families.pool_of
# and ReferralService.confirmed).
_FM = family_members.c
_REF = referrals.c
_TILL_EXTRAS = (
    _FM.family_id.label("x_family_id"),
    _FM.can_spend.label("x_can_spend"),
    _REF.status.label("x_referral_status"),
)


def _with_till_extras(joined: Any, member_id: Any) -> Any:
    return joined.outerjoin(
        family_members,
        sa.and_(
            _FM.tenant_id == members.c.tenant_id,
            _FM.member_id == member_id,
            _FM.status == "active",
        ),
    ).outerjoin(
        referrals, sa.and_(_REF.tenant_id == members.c.tenant_id, _REF.referee_id == member_id)
    )


# A card and its member in one statement (the till's card lookup): the card's columns, then
# the member's, all NULL when the card has no member, then the extras above.
_CARD_NAMES = tuple(c.name for c in cards.c)
_MEMBER_NAMES = tuple(c.name for c in members.c)
_CARD_AND_MEMBER = (
    sa.select(
        *(c.label(f"card_{c.name}") for c in cards.c),
        *(c.label(f"member_{c.name}") for c in members.c),
        *_TILL_EXTRAS,
    )
    .select_from(
        _with_till_extras(
            cards.outerjoin(
                members,
                sa.and_(
                    members.c.tenant_id == cards.c.tenant_id, members.c.id == cards.c.member_id
                ),
            ),
            members.c.id,
        )
    )
    .where(cards.c.tenant_id == sa.bindparam("t"), cards.c.number == sa.bindparam("n"))
)
_TILL_MEMBER = (
    sa.select(*members.c, *_TILL_EXTRAS)
    .select_from(_with_till_extras(members, members.c.id))
    .where(members.c.tenant_id == sa.bindparam("t"), members.c.id == sa.bindparam("m"))
)
_CARD_AND_MEMBER_PG = DriverStatement(_CARD_AND_MEMBER)
_TILL_MEMBER_PG = DriverStatement(_TILL_MEMBER)
_IDEMPOTENCY = sa.select(idempotency_keys).where(
    idempotency_keys.c.tenant_id == sa.bindparam("t"), idempotency_keys.c.key == sa.bindparam("k")
)


class SqlDirectoryStore:
    """Plain CRUD; every method that touches tenant data takes the tenant id first.

    Outlets are read on every purchase and change rarely: with ``cache`` (the unit of work's
    view of the process cache) they are kept for the cache's TTL per tenant, and forgotten
    at once in this process when this store writes one (see ``ttl_cache``)."""

    def __init__(
        self,
        conn: sa.Connection,
        cache: ScopedCache | None = None,
        prefetched: dict[tuple[Any, ...], Any] | None = None,
    ) -> None:
        self.conn = conn
        self.dialect = conn.dialect.name
        self._cache = cache
        self.prefetched = prefetched

    # ---- tenants -----------------------------------------------------------------------
    def insert_tenant(self, row: Row) -> None:
        self.conn.execute(sa.insert(tenants), row)

    def tenant(self, tenant_id: uuid.UUID) -> Row | None:
        return _as_dict(
            self.conn.execute(sa.select(tenants).where(tenants.c.id == tenant_id)).first()
        )

    def tenant_by_name(self, name: str) -> Row | None:
        return _as_dict(self.conn.execute(sa.select(tenants).where(tenants.c.name == name)).first())

    def update_tenant(self, tenant_id: uuid.UUID, values: Row) -> None:
        self.conn.execute(sa.update(tenants).where(tenants.c.id == tenant_id).values(**values))

    def list_tenants(self) -> list[Row]:
        return [
            dict(r._mapping) for r in self.conn.execute(sa.select(tenants).order_by(tenants.c.name))
        ]

    # ---- outlets -----------------------------------------------------------------------
    # Every write to outlets must go through a method that calls _outlets_change first.
    def insert_outlet(self, row: Row) -> None:
        self._outlets_change(row["tenant_id"])
        self.conn.execute(sa.insert(outlets), row)

    def update_outlet(self, tenant_id: uuid.UUID, outlet_id: uuid.UUID, values: Row) -> None:
        self._outlets_change(tenant_id)
        self.conn.execute(
            sa.update(outlets)
            .where(outlets.c.tenant_id == tenant_id, outlets.c.id == outlet_id)
            .values(**values)
        )

    def outlet(self, tenant_id: uuid.UUID, outlet_id: uuid.UUID) -> Row | None:
        key = ("outlet", tenant_id, outlet_id)
        return self._outlet(tenant_id, key, _OUTLET, {"t": tenant_id, "o": outlet_id})

    def outlet_by_code(self, tenant_id: uuid.UUID, code: str) -> Row | None:
        key = ("outlet_code", tenant_id, code)
        return self._outlet(tenant_id, key, _OUTLET_BY_CODE, {"t": tenant_id, "c": code})

    def _outlets_change(self, tenant_id: uuid.UUID) -> None:
        if self._cache is not None:
            self._cache.writes(("outlets", tenant_id))

    def _outlet(
        self, tenant_id: uuid.UUID, key: tuple[Any, ...], stmt: Any, params: Row
    ) -> Row | None:
        """One outlet from the process cache, else from the database (then cached under
        both its id and its code). Unknown outlets are not cached: a till naming a wrong
        code is rare, and an outlet created elsewhere must be found at once."""
        scope = ("outlets", tenant_id)
        scoped = self._cache
        if scoped is None or not scoped.usable(scope):
            return _as_dict(self.conn.execute(stmt, params).first())
        hit = scoped.cache.get_scoped(scope, key)
        if hit is not MISSING:
            return dict(hit)  # a copy: callers may not change the cached row
        stamp = scoped.cache.stamp(scope)
        row = _as_dict(self.conn.execute(stmt, params).first())
        if row is not None:
            scoped.cache.put_scoped(
                scope,
                stamp,
                {
                    ("outlet", tenant_id, row["id"]): row,
                    ("outlet_code", tenant_id, row["code"]): row,
                },
            )
            return dict(row)
        return None

    def list_outlets(self, tenant_id: uuid.UUID) -> list[Row]:
        rows = self.conn.execute(
            sa.select(outlets).where(outlets.c.tenant_id == tenant_id).order_by(outlets.c.code)
        )
        return [dict(r._mapping) for r in rows]

    # ---- api keys ----------------------------------------------------------------------
    def insert_api_key(self, row: Row) -> None:
        self.conn.execute(sa.insert(api_keys), row)

    def api_key_by_key_id(self, key_id: str) -> Row | None:
        return _as_dict(
            self.conn.execute(sa.select(api_keys).where(api_keys.c.key_id == key_id)).first()
        )

    def api_key(self, tenant_id: uuid.UUID, api_key_id: uuid.UUID) -> Row | None:
        return _as_dict(
            self.conn.execute(
                sa.select(api_keys).where(
                    api_keys.c.tenant_id == tenant_id, api_keys.c.id == api_key_id
                )
            ).first()
        )

    def list_api_keys(self, tenant_id: uuid.UUID) -> list[Row]:
        rows = self.conn.execute(
            sa.select(api_keys).where(api_keys.c.tenant_id == tenant_id).order_by(api_keys.c.id)
        )
        return [dict(r._mapping) for r in rows]

    def revoke_api_key(self, tenant_id: uuid.UUID, api_key_id: uuid.UUID, at: datetime) -> None:
        self.conn.execute(
            sa.update(api_keys)
            .where(
                api_keys.c.tenant_id == tenant_id,
                api_keys.c.id == api_key_id,
                api_keys.c.revoked_at.is_(None),
            )
            .values(revoked_at=at)
        )

    def touch_api_key(self, api_key_id: uuid.UUID, at: datetime, stale_before: datetime) -> None:
        """Record use, at most once per staleness window: a till must not rewrite its key's
        row on every request."""
        self.conn.execute(
            sa.update(api_keys)
            .where(
                api_keys.c.id == api_key_id,
                sa.or_(api_keys.c.last_used_at.is_(None), api_keys.c.last_used_at < stale_before),
            )
            .values(last_used_at=at)
        )

    # ---- members -----------------------------------------------------------------------
    def insert_member(self, row: Row) -> None:
        self.conn.execute(sa.insert(members), row)

    def insert_members(self, rows: list[Row]) -> None:
        if rows:
            self.conn.execute(sa.insert(members), rows)

    def member(self, tenant_id: uuid.UUID, member_id: uuid.UUID, lock: bool = False) -> Row | None:
        stmt = _LOCK_MEMBER if lock and self.dialect == "postgresql" else _MEMBER
        return _as_dict(self.conn.execute(stmt, {"t": tenant_id, "m": member_id}).first())

    def member_by(self, tenant_id: uuid.UUID, field: str, value: str) -> Row | None:
        column = members.c[field]
        return _as_dict(
            self.conn.execute(
                sa.select(members).where(members.c.tenant_id == tenant_id, column == value)
            ).first()
        )

    def members_by(self, tenant_id: uuid.UUID, field: str, values: Sequence[str]) -> list[Row]:
        if not values:
            return []
        column = members.c[field]
        rows = self.conn.execute(
            sa.select(members).where(members.c.tenant_id == tenant_id, column.in_(list(values)))
        )
        return [dict(r._mapping) for r in rows]

    def list_members(
        self,
        tenant_id: uuid.UUID,
        filters: Row,
        after: uuid.UUID | None,
        limit: int,
    ) -> list[Row]:
        stmt = sa.select(members).where(members.c.tenant_id == tenant_id)
        for field, value in filters.items():
            if field == "card":
                stmt = stmt.where(
                    members.c.id.in_(
                        sa.select(cards.c.member_id).where(
                            cards.c.tenant_id == tenant_id, cards.c.number == value
                        )
                    )
                )
            elif field == "status":
                stmt = stmt.where(members.c.status == value)
            else:
                stmt = stmt.where(members.c[field] == value)
        if after is not None:
            stmt = stmt.where(members.c.id > after)
        rows = self.conn.execute(stmt.order_by(members.c.id).limit(limit))
        return [dict(r._mapping) for r in rows]

    def update_member(self, tenant_id: uuid.UUID, member_id: uuid.UUID, values: Row) -> None:
        self.conn.execute(
            sa.update(members)
            .where(members.c.tenant_id == tenant_id, members.c.id == member_id)
            .values(**values)
        )

    def merged_into(self, tenant_id: uuid.UUID, member_id: uuid.UUID) -> list[uuid.UUID]:
        """Ids of every profile merged into ``member_id``, directly or through a chain."""
        found: list[uuid.UUID] = []
        frontier = [member_id]
        while frontier:
            rows = self.conn.execute(
                sa.select(members.c.id).where(
                    members.c.tenant_id == tenant_id, members.c.merged_into_id.in_(frontier)
                )
            ).scalars()
            frontier = [r for r in rows if r not in found]
            found.extend(frontier)
        return found

    # ---- cards -------------------------------------------------------------------------
    def insert_card(self, row: Row) -> None:
        self.conn.execute(sa.insert(cards), row)

    def insert_cards(self, rows: list[Row]) -> None:
        if rows:
            self.conn.execute(sa.insert(cards), rows)

    def card_by_number(self, tenant_id: uuid.UUID, number: str, lock: bool = False) -> Row | None:
        stmt = _LOCK_CARD if lock and self.dialect == "postgresql" else _CARD
        return _as_dict(self.conn.execute(stmt, {"t": tenant_id, "n": number}).first())

    def card_with_member(self, tenant_id: uuid.UUID, number: str) -> tuple[Row | None, Row | None]:
        """The card and its member in one statement (no lock): (None, None) without such
        a card, (card, None) for a card without a member. The member's family and
        referral facts are kept in ``prefetched`` (the till's read)."""
        row = self._till_read(_CARD_AND_MEMBER, _CARD_AND_MEMBER_PG, {"t": tenant_id, "n": number})
        if row is None:
            return None, None
        values = tuple(row)
        split = len(_CARD_NAMES)
        extras = split + len(_MEMBER_NAMES)
        card = dict(zip(_CARD_NAMES, values[:split], strict=True))
        member = dict(zip(_MEMBER_NAMES, values[split:extras], strict=True))
        if member["id"] is None:
            return card, None
        self._prefetch(tenant_id, member["id"], *values[extras:])
        return card, member

    def member_for_till(self, tenant_id: uuid.UUID, member_id: uuid.UUID) -> Row | None:
        """The member (no lock), with the family and referral facts kept in
        ``prefetched``, in one statement."""
        row = self._till_read(_TILL_MEMBER, _TILL_MEMBER_PG, {"t": tenant_id, "m": member_id})
        if row is None:
            return None
        values = tuple(row)
        split = len(_MEMBER_NAMES)
        self._prefetch(tenant_id, member_id, *values[split:])
        return dict(zip(_MEMBER_NAMES, values[:split], strict=True))

    def _till_read(
        self, statement: Any, on_driver: DriverStatement, params: dict[str, Any]
    ) -> Any | None:
        """The first row of a till read, on the driver connection (psycopg or sqlite3)."""
        if self.dialect == "postgresql":
            rows = driver_rows(self.conn, on_driver, params)
        else:
            rows = sqlite_rows(self.conn, statement, params)
        return rows[0] if rows else None

    def _prefetch(
        self,
        tenant_id: uuid.UUID,
        member_id: uuid.UUID,
        family_id: uuid.UUID | None,
        can_spend: bool | None,
        referral_status: str | None,
    ) -> None:
        if self.prefetched is None:
            return
        self.prefetched[family_key(tenant_id, member_id)] = (
            None if family_id is None else (family_id, bool(can_spend))
        )
        self.prefetched[referral_key(tenant_id, member_id)] = referral_status

    def existing_card_numbers(self, tenant_id: uuid.UUID, numbers: Sequence[str]) -> set[str]:
        if not numbers:
            return set()
        rows = self.conn.execute(
            sa.select(cards.c.number).where(
                cards.c.tenant_id == tenant_id, cards.c.number.in_(list(numbers))
            )
        ).scalars()
        return set(rows)

    def has_cards(self, tenant_id: uuid.UUID) -> bool:
        return (
            self.conn.execute(
                sa.select(cards.c.id).where(cards.c.tenant_id == tenant_id).limit(1)
            ).first()
            is not None
        )

    def cards_of(self, tenant_id: uuid.UUID, member_id: uuid.UUID) -> list[Row]:
        rows = self.conn.execute(
            sa.select(cards)
            .where(cards.c.tenant_id == tenant_id, cards.c.member_id == member_id)
            .order_by(cards.c.created_at, cards.c.number)
        )
        return [dict(r._mapping) for r in rows]

    def update_card(self, tenant_id: uuid.UUID, card_id: uuid.UUID, values: Row) -> None:
        self.conn.execute(
            sa.update(cards)
            .where(cards.c.tenant_id == tenant_id, cards.c.id == card_id)
            .values(**values)
        )

    def move_cards(
        self, tenant_id: uuid.UUID, from_member: uuid.UUID, to_member: uuid.UUID
    ) -> None:
        self.conn.execute(
            sa.update(cards)
            .where(cards.c.tenant_id == tenant_id, cards.c.member_id == from_member)
            .values(member_id=to_member)
        )

    def insert_card_batch(self, row: Row) -> None:
        self.conn.execute(sa.insert(card_batches), row)

    def card_batch_by_name(self, tenant_id: uuid.UUID, name: str) -> Row | None:
        return _as_dict(
            self.conn.execute(
                sa.select(card_batches).where(
                    card_batches.c.tenant_id == tenant_id, card_batches.c.name == name
                )
            ).first()
        )

    # ---- audit -------------------------------------------------------------------------
    def audit(
        self,
        tenant_id: uuid.UUID,
        actor: str,
        action: str,
        subject_type: str,
        subject_id: uuid.UUID | str,
        details: Row,
        at: datetime,
    ) -> None:
        self.conn.execute(
            sa.insert(audit_log),
            {
                "id": new_id(),
                "tenant_id": tenant_id,
                "actor": actor,
                "action": action,
                "subject_type": subject_type,
                "subject_id": str(subject_id),
                "details": details,
                "created_at": at,
            },
        )

    def audit_trail(self, tenant_id: uuid.UUID, subject_type: str, subject_id: str) -> list[Row]:
        rows = self.conn.execute(
            sa.select(audit_log)
            .where(
                audit_log.c.tenant_id == tenant_id,
                audit_log.c.subject_type == subject_type,
                audit_log.c.subject_id == subject_id,
            )
            .order_by(audit_log.c.id)
        )
        return [dict(r._mapping) for r in rows]

    # ---- idempotency -------------------------------------------------------------------
    def idempotency_record(self, tenant_id: uuid.UUID, key: str) -> Row | None:
        return _as_dict(self.conn.execute(_IDEMPOTENCY, {"t": tenant_id, "k": key}).first())

    def save_idempotency_record(
        self, tenant_id: uuid.UUID, key: str, request_hash: str, response: Row, at: datetime
    ) -> None:
        self.conn.execute(
            sa.insert(idempotency_keys),
            {
                "tenant_id": tenant_id,
                "key": key,
                "request_hash": request_hash,
                "response": response,
                "created_at": at,
            },
        )
