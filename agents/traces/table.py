"""Reading a trace CSV into text columns, and checking rows column by column with a reason for each skip.

Every cell is read as text first so that a bad value in one row cannot change how the rest of the
column parses (pandas would otherwise turn a whole column into strings). A row is checked in the
order the loader asks; the first failed check names the reason it is skipped, so each skipped row is
counted exactly once.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from agents.traces.report import FileReport, TraceFormatError

if TYPE_CHECKING:
    import pandas as pd

GZIP_MAGIC = b"\x1f\x8b"
# Trace times must fall in [1970-01-01, 2100-01-01) UTC: inside the range every store can hold (int64 ns until
# 2262) with room to spare, and far enough out that no real trace is refused.
TIME_MIN_SECONDS, TIME_MAX_SECONDS = 0, 4_102_444_800


def read_bytes(path: Path, report: FileReport) -> bytes:
    """The file's bytes, gunzipped when it is gzip; a truncated or corrupt gzip keeps what decoded.

    The partial last line of a cut-off file is dropped and counted as skipped "truncated": its last
    value may itself be cut short (0.12 of 0.125) and would be wrong, not just missing.
    """
    raw = path.read_bytes()
    if not raw.startswith(GZIP_MAGIC):
        return raw
    out = bytearray()
    problem = _gunzip(raw, out)
    if problem:
        report.warnings.append(f"gzip stream is damaged ({problem}); kept the {len(out)} bytes before the damage")
        cut = out.rfind(b"\n") + 1
        tail = bytes(out[cut:])
        del out[cut:]
        if tail.strip():
            report.rows_read += 1
            report.skip("truncated")
    return bytes(out)


def _gunzip(raw: bytes, out: bytearray) -> str:
    """Decode every gzip member into out, chunk by chunk so that a cut-off stream keeps what came before it.

    Returns "" when the stream is whole, else what is wrong with it. A member that is cut short keeps what
    it decoded (deflate decodes a prefix exactly); a member whose data is damaged (a bad CRC, an invalid
    block) keeps nothing: its CRC covers the whole member, so none of what it decoded is verified, and a
    flipped bit decodes into plausible wrong numbers. Whole members before it are kept.
    """
    data = raw
    while data:
        d = zlib.decompressobj(wbits=31)
        verified = len(out)
        try:
            for start in range(0, len(data), 1 << 16):
                out += d.decompress(data[start:start + (1 << 16)])
                if d.eof:
                    break
        except zlib.error as e:
            del out[verified:]
            return f"{e}; nothing of the damaged gzip member is kept"
        if not d.eof:
            return "compressed file ended before the end-of-stream marker"
        data = d.unused_data.lstrip(b"\0")  # gzip allows zero padding between members
        if data and not data.startswith(GZIP_MAGIC):
            return "trailing garbage after the gzip stream"
    return ""


def _utf8_lines(path: Path, data: bytes, report: FileReport) -> bytes:
    """The data without its lines that are not UTF-8 (each counted as a skipped row "not_utf8"); a header that
    is not UTF-8 makes the file unreadable."""
    try:
        data.decode("utf-8")
        return data
    except UnicodeDecodeError:
        pass
    lines = data.split(b"\n")
    kept, bad = [], 0
    for number, line in enumerate(lines, 1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            if number == 1:
                raise TraceFormatError(f"{path}: line 1 is not UTF-8 text; is this a CSV file?") from None
            bad += 1
            continue
        kept.append(line)
    report.rows_read += bad
    report.skip("not_utf8", bad)
    return b"\n".join(kept)


def read_csv(path: Path, report: FileReport, required: Sequence[str], *,
             names: Sequence[str] | None = None) -> pd.DataFrame:
    """All rows as text (missing cells are ""), columns by name.

    names: the columns of a file without a header. Raises TraceFormatError when a required column is
    missing. Rows with more fields than the header are skipped as "extra_fields".
    """
    import pandas as pd

    data = _utf8_lines(path, read_bytes(path, report), report)
    if names is not None:
        first = next((line for line in data.splitlines() if line.strip()), b"")
        found = first.count(b",") + 1 if first else 0
        if found < len(names):
            raise TraceFormatError(f"{path}: has {found} columns, expected {len(names)}; "
                                   f"missing column {names[found]!r}")
    extra = 0

    def bad_line(fields: list[str]) -> None:
        nonlocal extra
        extra += 1
        return None  # skip it; counted above

    options = dict(dtype=str, keep_default_na=False, skip_blank_lines=True,
                   header=None if names is not None else "infer", names=list(names) if names else None)
    try:
        df = pd.read_csv(io.BytesIO(data), engine="c", on_bad_lines="error", **options)
    except pd.errors.EmptyDataError:
        df = pd.DataFrame({c: pd.Series([], dtype=str) for c in (names or required)})
    except pd.errors.ParserError:
        # Only a ragged file pays for the slower parser that can count the rows it skips.
        extra = 0
        df = pd.read_csv(io.BytesIO(data), engine="python", on_bad_lines=bad_line, **options)
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise TraceFormatError(f"{path}: missing required column {missing[0]!r}"
                               + (f" (and {', '.join(map(repr, missing[1:]))})" if missing[1:] else "")
                               + f"; found {', '.join(map(repr, df.columns))}")
    unknown = [c for c in df.columns if c not in required]
    if unknown and names is None:
        report.warnings.append(f"ignored unknown column(s) {', '.join(map(repr, unknown))}")
    report.rows_read += len(df) + extra
    report.skip("extra_fields", extra)
    # Rows shorter than the header come back as NaN; they are missing values like empty cells.
    return df.fillna("").reset_index(drop=True)


class RowCheck:
    """Validates a text table column by column, counting each row's first failure."""

    def __init__(self, df: pd.DataFrame, report: FileReport) -> None:
        self.df = df
        self.report = report
        self.ok = df.index == df.index  # all True, aligned with df

    def _fail(self, bad: pd.Series, reason: str) -> None:
        bad = bad & self.ok
        self.report.skip(reason, int(bad.sum()))
        self.ok = self.ok & ~bad

    def text(self, column: str, *, required: bool = True) -> pd.Series:
        values = self.df[column].str.strip()
        if required:
            self._fail(values == "", "missing_value")
        # A quoted cell may hold a newline; line protocol cannot carry it, nor a trailing backslash.
        self._fail(values.str.contains("[\r\n]", regex=True) | values.str.endswith("\\"), "unwritable_text")
        return values

    def number(self, column: str, *, required: bool = True, integer: bool = False,
               maximum: float | None = None, over_reason: str = "out_of_range") -> pd.Series:
        """Numbers as float (NaN where absent and optional); non-finite counts as non_numeric."""
        import numpy as np
        import pandas as pd

        text = self.df[column].str.strip()
        empty = text == ""
        values = pd.to_numeric(text.where(~empty, None), errors="coerce").astype("float64")
        if required:
            self._fail(empty, "missing_value")
        self._fail(~empty & ~np.isfinite(values), "non_numeric")
        if integer:
            self._fail(~empty & (values % 1 != 0), "non_integer")
        self._fail(~empty & (values < 0), "negative")
        if maximum is not None:
            self._fail(~empty & (values > maximum), over_reason)
        return values

    def time(self, seconds: pd.Series, offset_ns: int = 0) -> pd.Series:
        """Row times in ns since the Unix epoch from seconds (after offset_ns); a time before 1970 or from
        2100 on is a unit error (milliseconds read as seconds, 1e13 s) and skips the row as
        "time_out_of_range" rather than wrapping around int64 into a plausible-looking year."""
        import numpy as np

        t = offset_ns / 1e9 + seconds
        self._fail(seconds.notna() & ~((t >= TIME_MIN_SECONDS) & (t < TIME_MAX_SECONDS)), "time_out_of_range")
        ns = (np.round(t.where(self.ok & t.notna(), 0.0) * 1000).astype("int64") * 1_000_000)
        return ns

    def unique(self, columns: Sequence[str]) -> None:
        """Later rows that repeat an earlier valid row's key would overwrite it in InfluxDB: skip them."""
        dup = self.df[list(columns)].where(self.ok).duplicated(keep="first")
        self._fail(dup, "duplicate")

    def finish(self) -> pd.Series:
        """The mask of rows that passed; records them as written."""
        self.report.rows_written += int(self.ok.sum())
        return self.ok
