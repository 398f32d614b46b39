"""ASGI entry point for uvicorn: ``kopilka.api.asgi:app`` (a factory)."""

from __future__ import annotations

import gc

from fastapi import FastAPI

from kopilka.api.app import create_app
from kopilka.bootstrap import bootstrap
from kopilka.logging import configure_logging
from kopilka.settings import Settings


def app() -> FastAPI:
    """Build the app at server start, never at import."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    app = create_app(bootstrap(settings))
    # What start-up built (modules, the schema, routes, validators) lives as long as the
    # process: frozen, the collector stops re-scanning it in every full collection.
    gc.collect()
    gc.freeze()
    return app
