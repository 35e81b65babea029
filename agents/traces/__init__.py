"""Loaders for public cluster traces: each turns one trace format into points of our schema.

`ingest(kind, path, sink)` runs a loader and writes its points; docs/traces.md maps every format.
Loaders read with pandas, so this package belongs to the central host, never to the node agent.
"""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from agents.traces.report import IngestReport, TraceFormatError

if TYPE_CHECKING:
    from agents.stores.writers import StoreWriter

# kind -> module with load(path, report, epoch_ns) yielding lists of points
LOADERS: dict[str, str] = {
    "alibaba-genai": "agents.traces.genai",
    "alibaba-openb": "agents.traces.openb",
    "alibaba-pai-spec": "agents.traces.pai",
    "zeus": "agents.traces.zeus",
}
# Traces that count time from their own start, or have no time, are placed at this instant unless
# --epoch says otherwise. Fixed, so that ingesting twice writes the same points.
DEFAULT_EPOCH = "2023-01-01T00:00:00Z"
ABSOLUTE_TIME = {"alibaba-genai"}


def parse_epoch(text: str) -> int:
    """Unix nanoseconds from ISO 8601 (no offset means UTC) or from Unix seconds."""
    from agents.traces.table import TIME_MAX_SECONDS, TIME_MIN_SECONDS

    try:
        seconds = float(text)
    except ValueError:
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise TraceFormatError(f"--epoch {text!r}: expected ISO 8601 (2023-01-01T00:00:00Z) or Unix seconds") \
                from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp()
    # The same range as every row's time (agents.traces.table.RowCheck.time); NaN fails both comparisons.
    if not TIME_MIN_SECONDS <= seconds < TIME_MAX_SECONDS:
        raise TraceFormatError(f"--epoch {text!r}: out of range; give a time from 1970 to 2099")
    return round(seconds) * 1_000_000_000


def ingest(kind: str, path: Path | str, sink: StoreWriter, epoch: str | None = None, store: str = "") -> IngestReport:
    """Load a trace into `sink` (agents.stores.writers.open_writer): points the store refuses are counted
    in the report's points_rejected, never written and never blocking the rest."""
    if kind not in LOADERS:
        raise TraceFormatError(f"unknown trace kind {kind!r}; known: {', '.join(LOADERS)}")
    path = Path(path)
    if not path.exists():
        raise TraceFormatError(f"{path}: no such file or directory")
    if kind in ABSOLUTE_TIME:
        if epoch is not None:
            raise TraceFormatError(f"{kind} timestamps are absolute; --epoch does not apply")
        epoch_ns = None
    else:
        epoch_ns = parse_epoch(epoch or DEFAULT_EPOCH)
    loader = importlib.import_module(LOADERS[kind])
    report = IngestReport(kind=kind, store=store)
    rejected_before = getattr(sink, "rejected_points", 0)
    for points in loader.load(path, report, epoch_ns):
        if points:
            report.points_written += sink.write(points)
    report.points_rejected = getattr(sink, "rejected_points", 0) - rejected_before
    return report


__all__ = ["DEFAULT_EPOCH", "LOADERS", "IngestReport", "TraceFormatError", "ingest", "parse_epoch"]
