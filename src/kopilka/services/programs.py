"""Programs as versioned documents: validate, publish (immutable versions), schedule, and
find the versions in force at a moment, compiled once and cached."""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from kopilka.clock import Clock
from kopilka.domain.errors import BusinessRuleViolation, NotFound, ValidationFailed
from kopilka.domain.rules.document import CompiledProgram, compile_program, validate_document
from kopilka.ids import new_id
from kopilka.services.context import Actor
from kopilka.services.ports import UnitOfWork, UnitOfWorkFactory
from kopilka.services.views import View

CODE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# How long a process trusts its list of program versions; publishing in this process
# refreshes it at once, other processes within this many seconds.
DIRECTORY_TTL_SECONDS = 2.0


class ProgramVersionView(View):
    code: str
    version: int
    starts_at: datetime
    ends_at: datetime | None
    published_at: datetime
    digest: str
    actor: str
    # The version the till uses now: the highest version whose window contains this moment.
    in_force: bool = False
    document: dict[str, Any] | None = None


def versions_in_force(rows: Iterable[dict[str, Any]], at: datetime) -> dict[str, int]:
    """Per program code, the version in force at ``at``: the highest whose window has it."""
    best: dict[str, int] = {}
    for row in rows:
        in_window = row["starts_at"] <= at and (row["ends_at"] is None or at < row["ends_at"])
        if in_window and row["version"] > best.get(row["code"], 0):
            best[row["code"]] = row["version"]
    return best


def digest_of(document: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


class ProgramService:
    def __init__(
        self, uow_factory: UnitOfWorkFactory, clock: Clock, cache: dict[Any, Any] | None = None
    ) -> None:
        self.uow_factory = uow_factory
        self.clock = clock
        self.cache: dict[Any, Any] = cache if cache is not None else {}

    def validate(self, document: Any) -> list[dict[str, Any]]:
        return validate_document(document)

    def publish(
        self,
        actor: Actor,
        code: str,
        document: dict[str, Any],
        *,
        starts_at: datetime | None = None,
        ends_at: datetime | None = None,
    ) -> ProgramVersionView:
        """Publish a new immutable version. Publishing the same document and schedule again
        returns the existing version (a natural idempotency key)."""
        if not CODE.match(code):
            raise ValidationFailed(
                "A program code: lower-case letters, digits, '-' or '_'.",
                code="invalid_program_code",
            )
        compile_program(document, code, 0, at_input=True)  # raises with every error, its path
        now = self.clock.now()
        starts = starts_at or now
        if ends_at is not None and ends_at <= starts:
            raise BusinessRuleViolation("ends_at must be after starts_at.", code="invalid_schedule")
        digest = digest_of(document)
        with self.uow_factory(write=True) as uow:
            uow.commerce.lock_program_code(actor.tenant_id, code)
            latest = uow.commerce.latest_program(actor.tenant_id, code)
            if (
                latest is not None
                and latest["digest"] == digest
                and latest["ends_at"] == ends_at
                and (starts_at is None or latest["starts_at"] == starts_at)
            ):
                live = versions_in_force(uow.commerce.program_versions(actor.tenant_id, code), now)
                return _view(latest, live, with_document=True)
            row = {
                "id": new_id(),
                "tenant_id": actor.tenant_id,
                "code": code,
                "version": (latest["version"] + 1) if latest else 1,
                "document": document,
                "digest": digest,
                "starts_at": starts,
                "ends_at": ends_at,
                "published_at": now,
                "actor": actor.name,
            }
            uow.commerce.insert_program(row)
            uow.directory.audit(
                actor.tenant_id,
                actor.name,
                "program.publish",
                "program",
                code,
                {"version": row["version"], "digest": digest},
                now,
            )
            live = versions_in_force(uow.commerce.program_versions(actor.tenant_id, code), now)
            uow.commit()
        self.cache.pop(("directory", actor.tenant_id), None)
        return _view(row, live, with_document=True)

    def get(
        self, actor: Actor, code: str, version: int | None = None, *, in_force: bool = False
    ) -> ProgramVersionView:
        """A version by number, the one in force now (``in_force``), or the latest published
        (which may be scheduled for later, or over)."""
        with self.uow_factory(write=False) as uow:
            live = versions_in_force(
                uow.commerce.program_versions(actor.tenant_id, code), self.clock.now()
            )
            if in_force and version is None:
                if code not in live:
                    raise NotFound(
                        "No version of this program is in force now.",
                        code="program_not_in_force",
                    )
                version = live[code]
            row = (
                uow.commerce.program_version(actor.tenant_id, code, version)
                if version
                else uow.commerce.latest_program(actor.tenant_id, code)
            )
        if row is None:
            raise NotFound("Program not found.", code="program_not_found")
        return _view(row, live, with_document=True)

    def versions(self, actor: Actor, code: str | None = None) -> list[ProgramVersionView]:
        with self.uow_factory(write=False) as uow:
            rows = uow.commerce.program_versions(actor.tenant_id, code)
        if code is not None and not rows:
            raise NotFound("Program not found.", code="program_not_found")
        live = versions_in_force(rows, self.clock.now())
        return [_view(r, live) for r in rows]

    # ---- for evaluation ----------------------------------------------------------------
    def in_force(
        self, uow: UnitOfWork, tenant_id: uuid.UUID, at: datetime, only: str | None = None
    ) -> list[CompiledProgram]:
        """The version of each program in force at ``at`` (the highest version whose
        window contains it), compiled."""
        key = ("directory", tenant_id)
        cached = self.cache.get(key)
        if cached is None or cached[0] < time.monotonic():
            rows = uow.commerce.program_versions(tenant_id)
            cached = (time.monotonic() + DIRECTORY_TTL_SECONDS, rows)
            self.cache[key] = cached
        rows = cached[1] if only is None else [r for r in cached[1] if r["code"] == only]
        best = versions_in_force(rows, at)
        return [self.compiled(uow, tenant_id, code, best[code]) for code in sorted(best)]

    def compiled(
        self, uow: UnitOfWork, tenant_id: uuid.UUID, code: str, version: int
    ) -> CompiledProgram:
        key = ("program", tenant_id, code, version)
        program = self.cache.get(key)
        if program is None:
            row = uow.commerce.program_version(tenant_id, code, version)
            if row is None:
                raise NotFound("Program version not found.", code="program_not_found")
            program = compile_program(row["document"], code, version)
            self.cache[key] = program
        assert isinstance(program, CompiledProgram)
        return program


def _view(
    row: dict[str, Any], live: dict[str, int], with_document: bool = False
) -> ProgramVersionView:
    return ProgramVersionView(
        code=row["code"],
        version=row["version"],
        starts_at=row["starts_at"],
        ends_at=row["ends_at"],
        published_at=row["published_at"],
        digest=row["digest"],
        actor=row["actor"],
        in_force=live.get(row["code"]) == row["version"],
        document=row.get("document") if with_document else None,
    )
