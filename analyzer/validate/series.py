"""Reading a long-format usage trace (one row per series, time and value) for the right-sizing backtest.

Bad input stops the backtest with one line naming the file and the column: a missing column, or a row
whose time or value does not parse as a finite number (the backtest scores every row it is given, so a
row it cannot read would silently change the figures).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from agents.traces.report import FileReport, TraceFormatError
from agents.traces.table import read_csv


@dataclass(frozen=True)
class SeriesTable:
    ids: np.ndarray      # series number per row (an index into names): integers keep grouping fast
    times: np.ndarray    # seconds
    values: np.ndarray
    names: np.ndarray | None = None  # the series' labels as the file spells them


def _number(df: pd.DataFrame, path: Path, column: str) -> np.ndarray:
    text = df[column].str.strip()
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        # Line numbers count the header as line 1.
        raise TraceFormatError(f"{path}: column {column!r}: {len(bad)} row(s) are not finite numbers, "
                               f"first on line {bad[0] + 2}: {text.iloc[bad[0]]!r}")
    return values


def read_strict(path: str | Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """All rows as text, or TraceFormatError naming the file (and the column) when one is missing or a row
    cannot be parsed: a backtest scores every row, so it refuses what the ingest would skip."""
    path = Path(path)
    if not path.is_file():
        raise TraceFormatError(f"{path}: no such file")
    report = FileReport(str(path))
    df = read_csv(path, report, columns)
    if report.skipped:
        reason, count = sorted(report.skipped.items())[0]
        raise TraceFormatError(f"{path}: {count} row(s) cannot be parsed ({reason.replace('_', ' ')})")
    return df


def read_series(path: str | Path, id_col: str, time_col: str, value_col: str) -> SeriesTable:
    """The trace's rows; raises TraceFormatError (one line naming the file and column) on bad input."""
    path = Path(path)
    df = read_strict(path, (id_col, time_col, value_col))
    ids = df[id_col].str.strip().to_numpy()
    empty = np.flatnonzero(ids == "")
    if len(empty):
        raise TraceFormatError(f"{path}: column {id_col!r}: {len(empty)} row(s) have no series id, "
                               f"first on line {empty[0] + 2}")
    codes, names = pd.factorize(ids)
    return SeriesTable(codes.astype(np.int64), _number(df, path, time_col), _number(df, path, value_col),
                       np.asarray(names))
