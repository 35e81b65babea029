"""Loaders for public cluster traces: each turns one trace format into points of our schema.

`ingest(kind, path, sink)` runs a loader and writes its points; docs/traces.md maps every format.
Loaders read with pandas, so this package belongs to the central host, never to the node agent.
"""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from pathlib import Path

from agents.traces.report import IngestReport, TraceFormatError
from agents.traces.sink import Sink

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
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if seconds != seconds or abs(seconds) > 1e11:  # NaN, inf, or beyond year 5000
            raise TraceFormatError(f"--epoch {text!r}: not a usable Unix time")
        return round(seconds) * 1_000_000_000
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise TraceFormatError(f"--epoch {text!r}: expected ISO 8601 (2023-01-01T00:00:00Z) or Unix seconds") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp()) * 1_000_000_000


def ingest(kind: str, path: Path | str, sink: Sink, epoch: str | None = None, store: str = "") -> IngestReport:
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
    for points in loader.load(path, report, epoch_ns):
        if points:
            report.points_written += sink.write(points)
    return report


__all__ = ["DEFAULT_EPOCH", "LOADERS", "IngestReport", "TraceFormatError", "ingest", "parse_epoch"]
