"""Rates from cumulative counters, without ever producing a negative rate."""

from __future__ import annotations

from collections.abc import Hashable


class CounterRates:
    """Remembers the last reading of each counter and turns the next one into a rate.

    A counter that went down (reset on reboot or driver reload, or wrapped) gives no rate for that
    interval: the new reading becomes the base and the caller leaves the rate field out.
    """

    def __init__(self) -> None:
        self._last: dict[Hashable, tuple[float, float]] = {}
        self._seen: set[Hashable] = set()

    def rate(self, key: Hashable, value: float, t_seconds: float) -> float | None:
        previous = self._last.get(key)
        self._last[key] = (value, t_seconds)
        self._seen.add(key)
        if previous is None:
            return None
        last_value, last_t = previous
        dt = t_seconds - last_t
        if dt <= 0 or value < last_value:
            return None
        return (value - last_value) / dt

    def delta(self, key: Hashable, value: float) -> float | None:
        """The increase since the last reading, None on the first reading or after a reset."""
        previous = self._last.get(key)
        self._last[key] = (value, 0.0)
        self._seen.add(key)
        if previous is None or value < previous[0]:
            return None
        return value - previous[0]

    def sweep(self) -> None:
        """Forget series not read since the last sweep (ended jobs, unplugged devices).

        The runner calls it after each cycle, so memory stays bounded by the live series.
        """
        for key in self._last.keys() - self._seen:
            del self._last[key]
        self._seen.clear()

    def __len__(self) -> int:
        return len(self._last)
