"""The visible time window and its bucket width, from URL parameters.

A view is `range` (how far back, one of RANGES) ending at `end` (an ISO time; default the newest point of the
store, so a simulated or ingested fleet in the past opens on its data, not on an empty "now"). The bucket
width comes from the window and the plot's width in pixels (`agents.query.choose_every`), so a figure never
carries more buckets than it has pixels to draw them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

RANGES = {"6h": "6 hours", "24h": "24 hours", "3d": "3 days", "7d": "7 days", "14d": "14 days", "30d": "30 days"}
DEFAULT_RANGE = "24h"
PLOT_PIXELS = 800  # plot width the server assumes when the browser did not say (a heatmap column per 2 px)
MAX_PIXELS = 4000
LINE_PIXELS = 8  # a line chart's point per 8 px of the plot: a line needs fewer points than a heatmap has columns
MIN_EVERY = "1m"  # below the agent's usual 10-60 s sampling a bucket holds one point or none
# measurements whose newest point says where the data ends, in order of preference
CLOCK_MEASUREMENTS = ("cpu", "gpu", "job", "job_gpu", "memory")


@dataclass(frozen=True)
class Window:
    start: pd.Timestamp
    end: pd.Timestamp
    every: str

    @property
    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / 3600.0

    @property
    def every_hours(self) -> float:
        from agents.query.base import parse_every

        return parse_every(self.every) / 3.6e12


def parse_range(value: str | None) -> str:
    """A known range key; anything else (a typo, an injection attempt) is the default."""
    return value if value in RANGES else DEFAULT_RANGE


def parse_end(value: str | None) -> pd.Timestamp | None:
    """An ISO time as a UTC Timestamp, or None (= the end of the data) for a missing or unparsable value."""
    if not value or len(value) > 40:
        return None
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        return None
    if ts is pd.NaT:
        return None
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def data_end(reader) -> pd.Timestamp | None:
    """The newest point of the first clock measurement the store holds (None for an empty store)."""
    present = set(reader.measurements())
    for m in CLOCK_MEASUREMENTS:
        if m in present:
            bounds = reader.time_bounds(m)
            if bounds is not None:
                return bounds[1]
    return None


def _pixels(pixels: int | None) -> int:
    return min(max(int(pixels or PLOT_PIXELS), 100), MAX_PIXELS)


def resolve(reader, range_key: str | None, end: str | None, pixels: int | None = None,
            ttl: float | None = None) -> Window:
    """The window [end - range, end) and the bucket width for a plot `pixels` wide. The end of the data is
    asked of the store once per `ttl` seconds (dashboard.context.cached)."""
    from agents.query import choose_every
    from agents.query.base import parse_every
    from dashboard.context import cached

    span = pd.Timedelta(parse_every(parse_range(range_key)), unit="ns")
    stop = parse_end(end) or cached(reader, ("data_end",), lambda: data_end(reader), ttl) or \
        pd.Timestamp(dt.datetime.now(dt.UTC))
    # the newest point belongs inside the window: [start, end) excludes end itself
    stop = stop.floor("min") + pd.Timedelta(minutes=1)
    every = choose_every(stop - span, stop, max_points=_pixels(pixels) // 2, min_every=MIN_EVERY)
    # Whole buckets: the window ends on a multiple of the bucket width (the last bucket, holding the newest
    # point, is not cut short) and, the ranges being multiples of the widths chosen for them, starts on one, so
    # no bucket straddles the window's start and a store's rollup can answer it (agents.query.influx).
    step = parse_every(every)
    stop = pd.Timestamp(-(-stop.value // step) * step, unit="ns", tz="UTC")
    return Window(stop - span, stop, every)


def line_every(w: Window, pixels: int | None = None) -> str:
    """The bucket width of a line chart over w on a plot `pixels` wide: a point per LINE_PIXELS, never
    narrower than w.every and a multiple of it (a store's rollup answering w.every answers it too)."""
    from agents.query import choose_every
    from agents.query.base import parse_every

    every = choose_every(w.start, w.end, max_points=max(_pixels(pixels) // LINE_PIXELS, 1), min_every=w.every)
    return every if parse_every(every) % parse_every(w.every) == 0 else w.every
