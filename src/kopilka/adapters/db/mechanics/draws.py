"""Tables and store of the draws feature."""

from __future__ import annotations

from kopilka.adapters.db.tables import metadata

__all__ = ["metadata"]
