"""Rollups of the embedded store: per measurement and UTC day, count / sum / min / max of every numeric field
per series (the full tag set) and fixed bucket, so that bucketed means, sums, counts and extremes over days
read a few rows per series and bucket instead of every point.

    ROOT/.rollups/<encoded measurement>/day=YYYY-MM-DD/rollup-300s-<first ns>-<uuid>.parquet
    ROOT/.rollups/<encoded measurement>/day=YYYY-MM-DD/rollup-3600s-<first ns>-<uuid>.parquet

The tree is hidden: the store's readers and anything globbing ROOT/<measurement>/day=*/*.parquet never take
a rollup for data. Columns: `time` (the bucket's start, timestamp[ns, UTC], buckets at epoch multiples), the
tag columns verbatim (null where a point had no such tag), and per numeric field F the columns
"F\\ncount" (int64), "F\\nsum" (float64), "F\\nmin" and "F\\nmax" (the field's type), and "time\\nmin" /
"time\\nmax" (int64 epoch ns: the first and last point of the series in the bucket, so that a reader knows
whether a window's edge cuts the bucket's points). No name in the store can hold a newline (line protocol
refuses it) and no field is called time, so these never clash with a tag or field.

A rollup is exact for exactly the source files it was computed from: their names are in its footer
(`fleetwise.rollup`: {"bucket_ns", "of", "fields", "skipped"}). A reader uses it for a day only while every
one of those files is still live (agents.query.embedded_rollup); files added since (new part files) and
pending rows are read raw and combined with it, and a compaction that replaced its sources makes the day raw
until the next maintenance rolls it up again. Building happens under the writer lock (EmbeddedWriter.rollup).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

ROLLUP_DIR = ".rollups"
ROLLUP_KEY = b"fleetwise.rollup"
# Bucket widths kept per day, finest first. 5 minutes: the dashboard's day view (choose_every on 1400 px) and
# every 5m multiple (15m for a week, 30m, ...); 1 hour: longer windows and per-series totals. A query uses the
# coarsest level whose width divides its bucket width.
LEVELS_NS = (300 * 10**9, 900 * 10**9, 3600 * 10**9)
SEP = "\n"
TIME = "time"
_NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
            "UBIGINT", "FLOAT", "DOUBLE")


def column(field: str, stat: str) -> str:
    """The rollup column holding `stat` of `field`."""
    return f"{field}{SEP}{stat}"


def quoted(field: str, stat: str) -> str:
    """column() as a DuckDB identifier (agents.query.identifiers refuses the newline in it, rightly so for
    names from outside; this one is made here from a validated field name)."""
    return '"' + column(field, stat).replace('"', '""') + '"'


def is_numeric(duckdb_type: str) -> bool:
    return duckdb_type in _NUMERIC or duckdb_type.startswith("DECIMAL")


def rollup_root(root: Path, encoded_measurement: str) -> Path:
    return root / ROLLUP_DIR / encoded_measurement


def day_dir(root: Path, encoded_measurement: str, day: str) -> Path:
    return rollup_root(root, encoded_measurement) / f"day={day}"


def prefix(bucket_ns: int) -> str:
    return f"rollup-{bucket_ns // 10**9}s"


def list_rollups(directory: Path) -> list[Path]:
    """The visible rollup files of one rollup day directory ([] when there is none)."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return [directory / n for n in sorted(names) if n.startswith("rollup-") and n.endswith(".parquet")]


def footer(path: Path) -> dict:
    """The rollup's footer: bucket_ns, of (source file names), fields (rolled up), skipped (non-numeric)."""
    import pyarrow.parquet as pq

    meta = pq.read_metadata(path).metadata or {}
    info = json.loads(meta.get(ROLLUP_KEY, b"{}"))
    return {"bucket_ns": int(info.get("bucket_ns", 0)), "of": list(info.get("of", ())),
            "fields": list(info.get("fields", ())), "skipped": list(info.get("skipped", ()))}


def connect():
    """The DuckDB connection one maintenance pass computes its rollups with."""
    import duckdb

    con = duckdb.connect(":memory:")
    con.execute("SET threads TO 2")  # maintenance runs next to the agent (nice 10): two cores at most
    con.execute("SET enable_progress_bar = false")
    return con


def compute(con, files: list[Path], tags: list[str],
            levels: tuple[int, ...] = LEVELS_NS) -> list[tuple[int, object, dict]]:
    """(bucket_ns, pyarrow table, footer info) per level for one day's live files, computed by DuckDB (con).

    The finest level comes from the points, each coarser one from the finest (counts and sums add, extremes
    take the extreme), so one scan of the day makes every level."""
    import pyarrow as pa

    from agents.query.identifiers import duckdb as qi

    try:
        params = {"files": [str(f) for f in files]}
        src = "read_parquet($files, union_by_name=true, hive_partitioning=false)"
        described = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {src}", params).fetchall()}
        tag_cols = [t for t in tags if t in described]
        others = [c for c in described if c != "time" and c not in tag_cols]
        fields = [f for f in others if is_numeric(described[f])]
        skipped = [f for f in others if f not in fields]
        names = [str(Path(f).name) for f in files]
        out = []
        finest = None
        tag_sql = "".join(f", {qi(t)}" for t in tag_cols)
        span = f", min(__t) AS {quoted(TIME, 'min')}, max(__t) AS {quoted(TIME, 'max')}"
        for bucket_ns in sorted(levels):
            if finest is None:  # from the points
                stats = span + "".join(
                    f", count({qi(f)}) AS {quoted(f, 'count')}"
                    f", CAST(sum({qi(f)}) AS DOUBLE) AS {quoted(f, 'sum')}"
                    f", min({qi(f)}) AS {quoted(f, 'min')}, max({qi(f)}) AS {quoted(f, 'max')}"
                    for f in fields)
                inner = f"SELECT epoch_ns(time) AS __t{tag_sql}{''.join(', ' + qi(f) for f in fields)} FROM {src}"
                run_params = params
            else:  # from the finest level
                con.register("__finest", finest)
                stats = (f", min({quoted(TIME, 'min')}) AS {quoted(TIME, 'min')}"
                         f", max({quoted(TIME, 'max')}) AS {quoted(TIME, 'max')}") + "".join(
                    f", CAST(sum({quoted(f, 'count')}) AS BIGINT) AS {quoted(f, 'count')}"
                    f", sum({quoted(f, 'sum')}) AS {quoted(f, 'sum')}"
                    f", min({quoted(f, 'min')}) AS {quoted(f, 'min')}"
                    f", max({quoted(f, 'max')}) AS {quoted(f, 'max')}" for f in fields)
                inner = "SELECT * FROM __finest"
                run_params = {}
            bucket = f"(__t - ((__t % {int(bucket_ns)}) + {int(bucket_ns)}) % {int(bucket_ns)})"
            # sorted by time: a reader's time filter skips whole row groups
            sql = f"SELECT {bucket} AS __t{tag_sql}{stats} FROM ({inner}) GROUP BY ALL ORDER BY __t{tag_sql}"
            table = con.sql(sql, params=run_params).to_arrow_table()
            if finest is None:
                finest = table
            stored = table.set_column(0, TIME, table.column(0).cast(pa.int64()).cast(pa.timestamp("ns", tz="UTC")))
            out.append((bucket_ns, stored, {"bucket_ns": bucket_ns, "of": sorted(names), "fields": fields,
                                            "skipped": skipped}))
        return out
    finally:
        con.unregister("__finest")


def remove_day(root: Path, encoded_measurement: str, day: str) -> None:
    """Delete a day's rollups (retention removed the day). Readers that listed one retry, as for data files."""
    shutil.rmtree(day_dir(root, encoded_measurement, day), ignore_errors=True)
