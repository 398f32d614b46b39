"""A small process-local cache with a time to live, for rows read on every request
(API keys, tenants, outlets, products). Changes made in this process invalidate at once;
other processes see them within the TTL.

Rows that a store caches on its own (outlets, products) are kept per *scope* (e.g. one
tenant's outlets) with a generation number, so that a write can never be undone by a reader
that raced it: a writer bumps the scope's generation when it starts and again once its
transaction is over (:meth:`TtlCache.begin_write` / :meth:`TtlCache.end_write`); while a
write is in flight nothing is cached for that scope, and a reader only caches what it read
if the generation did not move since it looked (:meth:`TtlCache.stamp`,
:meth:`TtlCache.put_scoped`). Entries of an older generation are never served.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Final

DEFAULT_TTL_SECONDS = 5.0


class _Missing:
    """The type of :data:`MISSING`."""

    def __repr__(self) -> str:
        return "MISSING"


# What get_scoped answers on a miss (None is a value: "known not to exist").
MISSING: Final = _Missing()


class TtlCache:
    def __init__(self, ttl: float = DEFAULT_TTL_SECONDS, max_items: int = 100_000) -> None:
        self.ttl = ttl
        self.max_items = max_items
        self._items: dict[Any, tuple[float, Any]] = {}
        # scope -> [generation, writers in flight]; never cleared (a few ints per tenant).
        self._scopes: dict[Any, list[int]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        item = self._items.get(key)
        if item is None or item[0] < time.monotonic():
            return None
        return item[1]

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._put(key, value)

    def _put(self, key: Any, value: Any, ttl: float | None = None) -> None:
        if len(self._items) >= self.max_items:
            self._items.clear()  # crude, but bounded; entries come back on next use
        self._items[key] = (time.monotonic() + (self.ttl if ttl is None else ttl), value)

    def drop(self, key: Any) -> None:
        with self._lock:
            self._items.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    # ---- scoped entries (rows a store caches; see the module's docstring) ------------------
    def stamp(self, scope: Any) -> int | None:
        """The scope's generation, to pass to :meth:`put_scoped` after reading the
        database; None while a write to the scope is in flight (read, do not cache)."""
        state = self._scopes.get(scope)
        if state is None:
            return 0
        return state[0] if state[1] == 0 else None

    def get_scoped(self, scope: Any, key: Any) -> Any:
        """The value cached under ``key`` in the scope's current generation, or MISSING."""
        item = self._items.get(key)
        if item is None or item[0] < time.monotonic():
            return MISSING
        generation, value = item[1]
        state = self._scopes.get(scope)
        if (state[0] if state is not None else 0) != generation:
            return MISSING
        return value

    def put_scoped(
        self, scope: Any, stamp: int | None, values: dict[Any, Any], ttl: float | None = None
    ) -> None:
        """Cache ``values`` (key -> value) read after :meth:`stamp` returned ``stamp``;
        nothing is cached if a write to the scope started since. ``ttl``: this entry's
        own time to live (the cache's by default)."""
        if stamp is None or not values:
            return
        with self._lock:
            state = self._scopes.get(scope)
            if (state[0] if state is not None else 0) != stamp or (state and state[1]):
                return
            for key, value in values.items():
                self._put(key, (stamp, value), ttl)

    def begin_write(self, scope: Any) -> None:
        """A transaction is about to change the scope's rows: forget them, cache none
        until :meth:`end_write`."""
        with self._lock:
            state = self._scopes.setdefault(scope, [0, 0])
            state[0] += 1
            state[1] += 1

    def end_write(self, scope: Any) -> None:
        """The transaction is over (committed or rolled back): what readers fetched
        while it ran may predate its commit, so forget that too."""
        with self._lock:
            state = self._scopes.setdefault(scope, [0, 1])
            state[0] += 1
            state[1] = max(state[1] - 1, 0)


class ScopedCache:
    """One unit of work's view of the process cache, shared by its stores: the scopes it
    has written to are neither read from nor filled (its own uncommitted rows must not
    reach other requests), and are released when the unit of work ends."""

    def __init__(self, cache: TtlCache) -> None:
        self.cache = cache
        self._writing: set[Any] = set()

    def usable(self, scope: Any) -> bool:
        return scope not in self._writing

    def writes(self, scope: Any) -> None:
        """Call before changing the scope's rows."""
        if scope not in self._writing:
            self._writing.add(scope)
            self.cache.begin_write(scope)

    def release(self) -> None:
        """Call once the transaction is over (after its commit or rollback)."""
        scopes, self._writing = self._writing, set()
        for scope in scopes:
            self.cache.end_write(scope)
