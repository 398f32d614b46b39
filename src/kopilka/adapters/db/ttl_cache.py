"""A small process-local cache with a time to live, for rows read on every request
(API keys, tenants, outlets). Changes made in this process invalidate at once; other
processes see them within the TTL."""

from __future__ import annotations

import threading
import time
from typing import Any

DEFAULT_TTL_SECONDS = 5.0


class TtlCache:
    def __init__(self, ttl: float = DEFAULT_TTL_SECONDS, max_items: int = 100_000) -> None:
        self.ttl = ttl
        self.max_items = max_items
        self._items: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        item = self._items.get(key)
        if item is None or item[0] < time.monotonic():
            return None
        return item[1]

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            if len(self._items) >= self.max_items:
                self._items.clear()  # crude, but bounded; entries come back on next use
            self._items[key] = (time.monotonic() + self.ttl, value)

    def drop(self, key: Any) -> None:
        with self._lock:
            self._items.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
