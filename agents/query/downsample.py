"""Server-side downsampling: the bucket width a figure asks the store for, so that a plot never receives
more points per series than it has pixels for."""

from __future__ import annotations

import datetime as dt

from agents.query.base import influx_duration, parse_every, time_ns

_S = 10**9
# Widths a person reads at a glance on a time axis; beyond four weeks, whole multiples of four weeks
# (months and years have no fixed length, and InfluxQL's GROUP BY time takes none).
NICE_NS = tuple(n * _S for n in (1, 5, 10, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600,
                                 86_400, 2 * 86_400, 7 * 86_400, 14 * 86_400, 28 * 86_400))


def choose_every(start, end, max_points: int, min_every: str | dt.timedelta = "10s") -> str:
    """The narrowest nice bucket width (10s, 30s, 1m, 5m, 15m, 30m, 1h, 3h, 6h, 12h, 1d, 2d, 1w, 2w, 4w,
    then multiples of 4w) no narrower than min_every such that (end - start) / every <= max_points.

    min_every itself is returned when it is already wide enough (e.g. the agents' 10 s interval), so a short
    range is never asked for finer buckets than the data has. The answer is an interval string that
    Reader.frame() and Reader.aggregate() take as `every` ("1m", "6h", "1w", ...)."""
    if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 1:
        raise ValueError(f"max_points must be a positive integer, got {max_points!r}")
    span = time_ns(end) - time_ns(start)
    if span <= 0:
        raise ValueError(f"end {end!r} is not after start {start!r}")
    floor_ns = parse_every(min_every)
    need = -(-span // max_points)  # the narrowest width giving at most max_points buckets
    for width in (floor_ns, *(n for n in NICE_NS if n > floor_ns)):
        if width >= need:
            return influx_duration(width)
    top = max(NICE_NS[-1], floor_ns)
    return influx_duration(-(-need // top) * top)
