"""Tenants, outlets and API keys: the operator's and the merchant's set-up."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError

from kopilka.clock import Clock
from kopilka.domain.errors import Conflict, ErrorCollector, NotFound, Unauthorized
from kopilka.domain.ledger.expiry import policy_from_input
from kopilka.domain.members.card_numbers import LENGTH, CardScheme
from kopilka.ids import new_id
from kopilka.services.context import Actor, Role
from kopilka.services.ports import UnitOfWorkFactory

KEY_PREFIX = "kp"
# Recording "last used" on every request would rewrite a till's key row per purchase.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_secret(secret: str) -> str:
    """API key secrets are 256-bit random, so a fast hash is as safe as a slow one."""
    return hashlib.sha256(secret.encode()).hexdigest()


def split_key(raw: str) -> tuple[str, str] | None:
    """``kp_<key id>_<secret>`` -> (key id, secret)."""
    parts = raw.strip().split("_")
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


@dataclass(frozen=True)
class IssuedKey:
    id: uuid.UUID
    key: str  # shown once, never stored
    role: Role
    outlet_code: str | None
    name: str


def _validate_timezone(errors: ErrorCollector, path: str, value: str) -> None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        errors.add((path,), f"Unknown time zone {value!r}.", "invalid_timezone")


MAX_BACKDATE_DAYS = 3650


def _validate_tenant_settings(values: dict[str, Any], errors: ErrorCollector) -> None:
    """Collect what is wrong with ``values``; a valid ``expiry_policy`` is replaced, in
    place, by its canonical form."""
    if "currency" in values:
        cur = values["currency"]
        if not (isinstance(cur, str) and len(cur) == 3 and cur.isalpha() and cur.isupper()):
            errors.add(("currency",), "Use an ISO 4217 code such as RUB.", "invalid_currency")
    if "timezone" in values:
        _validate_timezone(errors, "timezone", values["timezone"])
    if "backdate_days" in values and not 0 <= values["backdate_days"] <= MAX_BACKDATE_DAYS:
        errors.add(
            ("backdate_days",), f"From 0 to {MAX_BACKDATE_DAYS} days.", "invalid_backdate_days"
        )
    if "card_scheme" in values:
        try:
            CardScheme(values["card_scheme"])
        except ValueError:
            errors.add(("card_scheme",), "Use ean13 or luhn.", "invalid_card_scheme")
    if "card_prefix" in values:
        prefix = values["card_prefix"]
        scheme = (
            CardScheme(values.get("card_scheme", "ean13"))
            if values.get("card_scheme", "ean13") in ("ean13", "luhn")
            else CardScheme.EAN13
        )
        if not (
            isinstance(prefix, str) and prefix.isdigit() and 1 <= len(prefix) <= LENGTH[scheme] - 6
        ):
            errors.add(("card_prefix",), "Use 1 to 6 digits.", "invalid_card_prefix")
    if "expiry_policy" in values:
        try:
            # Stored in its canonical form: {"kind": "never"} for none, defaults spelled out.
            policy = policy_from_input(values["expiry_policy"])
            values["expiry_policy"] = policy.model_dump(mode="json")
        except ValidationError as exc:
            for err in exc.errors():
                errors.add(("expiry_policy", *err["loc"]), str(err["msg"]), "invalid_expiry_policy")


class TenantService:
    def __init__(self, uow_factory: UnitOfWorkFactory, clock: Clock) -> None:
        self.uow_factory = uow_factory
        self.clock = clock

    # ---- tenants -----------------------------------------------------------------------
    def create_tenant(
        self,
        name: str,
        *,
        currency: str = "RUB",
        timezone: str = "Europe/Moscow",
        locale: str = "ru",
        phone_region: str = "RU",
        points_currency: str = "points",
        card_scheme: str = "ean13",
        card_prefix: str = "2",
        pending_days: int = 0,
        expiry_policy: dict[str, Any] | None = None,
        allow_debt: bool = False,
        hold_ttl_seconds: int = 900,
        qr_window_seconds: int = 60,
        backdate_days: int = 30,
    ) -> dict[str, Any]:
        errors = ErrorCollector()
        if not name.strip() or len(name) > 200:
            errors.add(("name",), "A name of 1 to 200 characters is required.")
        settings: dict[str, Any] = {
            "currency": currency,
            "timezone": timezone,
            "card_scheme": card_scheme,
            "card_prefix": card_prefix,
            "expiry_policy": expiry_policy,
            "backdate_days": backdate_days,
        }
        _validate_tenant_settings(settings, errors)
        errors.raise_if_any()
        now = self.clock.now()
        row: dict[str, Any] = {
            "id": new_id(),
            "name": name.strip(),
            "currency": currency,
            "timezone": timezone,
            "locale": locale,
            "phone_region": phone_region,
            "points_currency": points_currency,
            "card_scheme": card_scheme,
            "card_prefix": card_prefix,
            "qr_secret": secrets.token_hex(32),
            "qr_window_seconds": qr_window_seconds,
            "hold_ttl_seconds": hold_ttl_seconds,
            "pending_days": pending_days,
            "expiry_policy": settings["expiry_policy"],
            "allow_debt": allow_debt,
            "backdate_days": backdate_days,
            "created_at": now,
        }
        with self.uow_factory(write=True) as uow:
            if uow.directory.tenant_by_name(row["name"]) is not None:
                raise Conflict(f"A tenant named {name!r} exists.", code="tenant_exists")
            uow.directory.insert_tenant(row)
            uow.ledger.tenant_accounts(row["id"], points_currency, now)
            uow.commit()
        return row

    def tenant_by_name(self, name: str) -> dict[str, Any]:
        with self.uow_factory(write=False) as uow:
            row = uow.directory.tenant_by_name(name)
        if row is None:
            raise NotFound(f"No tenant named {name!r}.", code="tenant_not_found")
        return row

    def get_tenant(self, actor: Actor) -> dict[str, Any]:
        with self.uow_factory(write=False) as uow:
            row = uow.directory.tenant(actor.tenant_id)
        if row is None:
            raise NotFound("Tenant not found.", code="tenant_not_found")
        return row

    def update_tenant(self, actor: Actor, values: dict[str, Any]) -> dict[str, Any]:
        errors = ErrorCollector()
        _validate_tenant_settings(values, errors)
        errors.raise_if_any()
        with self.uow_factory(write=True) as uow:
            current = uow.directory.tenant(actor.tenant_id)
            if (
                current is not None
                and "card_scheme" in values
                and values["card_scheme"] != current["card_scheme"]
                and uow.directory.has_cards(actor.tenant_id)
            ):
                # Existing numbers carry the old check digit: they would all stop scanning.
                raise Conflict(
                    "The card number scheme cannot change once cards exist.",
                    code="card_scheme_locked",
                )
            if values:
                uow.directory.update_tenant(actor.tenant_id, values)
                uow.cache.drop(("tenant", actor.tenant_id))
                uow.directory.audit(
                    actor.tenant_id,
                    actor.name,
                    "tenant.update",
                    "tenant",
                    actor.tenant_id,
                    _jsonable(values),
                    self.clock.now(),
                )
            row = uow.directory.tenant(actor.tenant_id)
            uow.commit()
        assert row is not None
        return row

    # ---- outlets -----------------------------------------------------------------------
    def create_outlet(
        self,
        actor: Actor,
        code: str,
        *,
        name: str | None = None,
        timezone: str | None = None,
        region: str | None = None,
        tags: list[str] | None = None,
    ) -> dict[str, Any]:
        errors = ErrorCollector()
        if not code or len(code) > 64 or not code.replace("-", "").replace("_", "").isalnum():
            errors.add(("code",), "Use 1 to 64 letters, digits, '-' or '_'.", "invalid_code")
        if timezone is not None:
            _validate_timezone(errors, "timezone", timezone)
        errors.raise_if_any()
        with self.uow_factory(write=True) as uow:
            tenant = uow.directory.tenant(actor.tenant_id)
            if tenant is None:
                raise NotFound("Tenant not found.", code="tenant_not_found")
            if uow.directory.outlet_by_code(actor.tenant_id, code) is not None:
                raise Conflict(f"Outlet {code!r} exists.", code="outlet_exists")
            row: dict[str, Any] = {
                "id": new_id(),
                "tenant_id": actor.tenant_id,
                "code": code,
                "name": name or code,
                "timezone": timezone or tenant["timezone"],
                "region": region,
                "tags": sorted(set(tags or [])),
                "created_at": self.clock.now(),
            }
            uow.directory.insert_outlet(row)
            uow.directory.audit(
                actor.tenant_id,
                actor.name,
                "outlet.create",
                "outlet",
                row["id"],
                {"code": code},
                row["created_at"],
            )
            uow.commit()
        return row

    def list_outlets(self, actor: Actor) -> list[dict[str, Any]]:
        with self.uow_factory(write=False) as uow:
            return uow.directory.list_outlets(actor.tenant_id)

    def outlet_by_code(self, actor: Actor, code: str) -> dict[str, Any]:
        with self.uow_factory(write=False) as uow:
            row = uow.directory.outlet_by_code(actor.tenant_id, code)
        if row is None:
            raise NotFound(f"No outlet {code!r}.", code="outlet_not_found")
        return row

    # ---- API keys ----------------------------------------------------------------------
    def create_api_key(
        self, actor: Actor, role: Role, *, outlet_code: str | None = None, name: str | None = None
    ) -> IssuedKey:
        errors = ErrorCollector()
        if role is Role.POS and not outlet_code:
            errors.add(("outlet",), "A pos key is tied to one outlet.", "outlet_required")
        if role is not Role.POS and outlet_code:
            errors.add(("outlet",), "Only pos keys are tied to an outlet.", "outlet_not_allowed")
        errors.raise_if_any()
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32).replace("_", "x")
        with self.uow_factory(write=True) as uow:
            outlet_id = None
            if outlet_code:
                outlet = uow.directory.outlet_by_code(actor.tenant_id, outlet_code)
                if outlet is None:
                    raise NotFound(f"No outlet {outlet_code!r}.", code="outlet_not_found")
                outlet_id = outlet["id"]
            row: dict[str, Any] = {
                "id": new_id(),
                "tenant_id": actor.tenant_id,
                "key_id": key_id,
                "secret_hash": hash_secret(secret),
                "role": role.value,
                "outlet_id": outlet_id,
                "name": name or f"{role.value} key",
                "created_at": self.clock.now(),
                "revoked_at": None,
                "last_used_at": None,
            }
            uow.directory.insert_api_key(row)
            uow.directory.audit(
                actor.tenant_id,
                actor.name,
                "apikey.create",
                "api_key",
                row["id"],
                {"role": role.value, "outlet": outlet_code},
                row["created_at"],
            )
            uow.commit()
        return IssuedKey(
            row["id"], f"{KEY_PREFIX}_{key_id}_{secret}", role, outlet_code, row["name"]
        )

    def list_api_keys(self, actor: Actor) -> list[dict[str, Any]]:
        with self.uow_factory(write=False) as uow:
            return uow.directory.list_api_keys(actor.tenant_id)

    def revoke_api_key(self, actor: Actor, api_key_id: uuid.UUID) -> dict[str, Any]:
        with self.uow_factory(write=True) as uow:
            if uow.directory.api_key(actor.tenant_id, api_key_id) is None:
                raise NotFound("API key not found.", code="api_key_not_found")
            now = self.clock.now()
            uow.directory.revoke_api_key(actor.tenant_id, api_key_id, now)
            uow.cache.clear()  # revocation takes effect at once in this process
            uow.directory.audit(
                actor.tenant_id, actor.name, "apikey.revoke", "api_key", api_key_id, {}, now
            )
            row = uow.directory.api_key(actor.tenant_id, api_key_id)
            uow.commit()
        assert row is not None
        return row

    def authenticate(self, raw_key: str) -> Actor:
        """Resolve a presented key to its actor; any failure is the same 401."""
        actor = self.authenticate_cached(raw_key)
        if actor is not None:
            return actor
        key_id, secret = self._split(raw_key)
        now = self.clock.now()
        row = self.uow_factory.cache.get(("api_key", key_id))
        if row is None:
            with self.uow_factory(write=False) as uow:
                row = uow.directory.api_key_by_key_id(key_id)
                if row is not None:
                    uow.cache.put(("api_key", key_id), row)
        row = self._checked(row, secret)
        last = row["last_used_at"]
        if last is None or last < now - LAST_USED_RESOLUTION:
            with self.uow_factory(write=True) as uow:
                uow.directory.touch_api_key(row["id"], now, now - LAST_USED_RESOLUTION)
                uow.commit()
                uow.cache.put(("api_key", key_id), {**row, "last_used_at": now})
        return _actor(key_id, row)

    def authenticate_cached(self, raw_key: str) -> Actor | None:
        """:meth:`authenticate` without the database: the actor when this process has the
        key cached and its last-used time is recent; None when the database is needed.
        Errors are the same. (The API calls it on the event loop, and the full
        :meth:`authenticate` in a worker thread only when this answers None.)"""
        key_id, secret = self._split(raw_key)
        row = self.uow_factory.cache.get(("api_key", key_id))
        if row is None:
            return None
        row = self._checked(row, secret)
        last = row["last_used_at"]
        if last is None or last < self.clock.now() - LAST_USED_RESOLUTION:
            return None
        return _actor(key_id, row)

    @staticmethod
    def _split(raw_key: str) -> tuple[str, str]:
        parts = split_key(raw_key)
        if parts is None:
            raise Unauthorized("Missing or invalid API key.", code="invalid_api_key")
        return parts

    @staticmethod
    def _checked(row: dict[str, Any] | None, secret: str) -> dict[str, Any]:
        if row is None or not hmac.compare_digest(row["secret_hash"], hash_secret(secret)):
            raise Unauthorized("Missing or invalid API key.", code="invalid_api_key")
        if row["revoked_at"] is not None:
            raise Unauthorized("This API key was revoked.", code="api_key_revoked")
        return row


def _actor(key_id: str, row: dict[str, Any]) -> Actor:
    return Actor(
        tenant_id=row["tenant_id"],
        name=f"apikey:{key_id}",
        role=Role(row["role"]),
        outlet_id=row["outlet_id"],
    )


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in values.items()}
