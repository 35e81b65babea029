"""A small time-bounded cache of what a page asked the store, shared by the server's threads.

A page's numbers depend on the store, the query and the window (start, end, bucket width) only: switching the
fleet heatmap's resource or pool, clicking back to a page, or a second browser tab asks for what an earlier
callback just computed. Each entry lives for the page's auto-refresh interval (DEFAULT_TTL when auto-refresh
is off), so a refreshing page still sees new data at its own pace; the oldest entries go first once there are
more than `max_entries`. Values are handed out as given: callers treat them as read-only (the data functions
never modify a frame in place).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

DEFAULT_TTL = 60.0  # seconds an entry lives when the page does not auto-refresh
MAX_ENTRIES = 32  # a fleet window of 256 nodes is a few MB of frames: 32 stay well under a GB


class TTLCache:
    def __init__(self, max_entries: int = MAX_ENTRIES, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._items: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._pending: dict[Hashable, threading.Lock] = {}
        self.hits = 0
        self.misses = 0

    def get_or_compute(self, key: Hashable, compute: Callable[[], Any], ttl: float = DEFAULT_TTL) -> Any:
        """The value cached under key if it is younger than ttl seconds, else compute() (kept for next time).
        Two threads asking for the same missing key compute it once: the second waits for the first."""
        with self._lock:
            found = self._fresh(key, ttl)
            if found is not None:
                self.hits += 1
                return found[1]
            pending = self._pending.setdefault(key, threading.Lock())
        with pending:
            with self._lock:
                found = self._fresh(key, ttl)
                if found is not None:
                    self.hits += 1
                    return found[1]
                self.misses += 1
            try:
                value = compute()
            except BaseException:
                with self._lock:
                    self._pending.pop(key, None)
                raise
            with self._lock:
                self._pending.pop(key, None)
                self._items[key] = (self._clock(), value)
                self._items.move_to_end(key)
                while len(self._items) > self.max_entries:
                    self._items.popitem(last=False)
            return value

    def _fresh(self, key: Hashable, ttl: float) -> tuple[float, Any] | None:
        found = self._items.get(key)
        if found is None:
            return None
        if self._clock() - found[0] >= ttl:
            del self._items[key]
            return None
        return found

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
