"""ASGI entry point for uvicorn: ``kopilka.api.asgi:app`` (a factory)."""

from __future__ import annotations

from fastapi import FastAPI

from kopilka.api.app import create_app
from kopilka.bootstrap import bootstrap
from kopilka.logging import configure_logging
from kopilka.settings import Settings


def app() -> FastAPI:
    """Build the app at server start, never at import."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    return create_app(bootstrap(settings))
