"""Settings read from the environment (``KOPILKA_*``); nothing is read at import time."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SQLITE_PATH = Path("var") / "kopilka.db"


class Settings(BaseSettings):
    """Process-wide settings; build one with ``Settings()`` in the entry point."""

    model_config = SettingsConfigDict(env_prefix="KOPILKA_", extra="ignore")

    database_url: str = f"sqlite:///{DEFAULT_SQLITE_PATH}"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    log_level: str = "INFO"
    log_json: bool = True
    db_pool_size: int = 10
    db_echo: bool = False
    # A stale idempotency key still "in progress" after this many seconds is taken over:
    # the first request died without finishing.
    idempotency_lock_seconds: int = 60
    # PostgreSQL: accruals and redemptions as one call of a database function (one round
    # trip) instead of a dozen statements; off = always the Python path.
    ledger_fast_path: bool = True
    # PostgreSQL: up to this many concurrent fast-path writes of one process share one
    # round trip and one commit (group commit); 1 = each write commits on its own.
    ledger_group_commit: int = 32
