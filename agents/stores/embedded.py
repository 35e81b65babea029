"""The embedded store: an append-only Parquet dataset, one directory per measurement and UTC day.

    ROOT/<encoded measurement>/day=YYYY-MM-DD/part-<first time_ns>-<key>.parquet
    ROOT/<encoded measurement>/day=YYYY-MM-DD/compact-<first time_ns>-<uuid>.parquet
    ROOT/.pending/batch-<key>.jsonl      the agent's batches, not yet folded (agents.stores.embedded_rows)
    ROOT/.lock                           the writer lock (agents.stores.embedded_files)

Files never change once visible: each is written under a name starting with "." (readers skip
those), fsynced, then renamed into place. A compacted file lists the files it replaces in its
Parquet footer (key "fleetwise.supersedes"); readers drop those from what they listed, so a reader
never counts a row twice, and a reader that listed a file compaction then deleted retries with a
fresh listing (see agents.query.embedded). A file written for a keyed batch carries the key in its
name, and a compacted file lists every key it holds ("fleetwise.batches"): a batch whose key a
partition already holds is not written again, before or after compaction. Every change happens
under the writer lock, so several writing processes interleave safely; readers need no lock.

pyarrow is imported inside functions; the agent process itself never writes Parquet.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.util
import json
import logging
import os
import shutil
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

from agents.points import InvalidPoint, Point
from agents.stores import embedded_rollup as rollups
from agents.stores.embedded_files import (
    fsync_dir,
    make_dirs,
    make_root,
    open_new,
    quarantine,
    writer_lock,
)
from agents.stores.embedded_rows import (
    NS_PER_DAY,
    TIME,
    check_key,
    check_points,
    expired,
    list_pending,
    pending_key,
    read_pending,
    retained_before,
    set_retained_before,
)

log = logging.getLogger(__name__)

TAGS_KEY = b"fleetwise.tags"
SUPERSEDES_KEY = b"fleetwise.supersedes"
BATCHES_KEY = b"fleetwise.batches"
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")

def encode_name(name: str) -> str:
    """A measurement name as one safe directory name: every byte outside [A-Za-z0-9_-] as %XX.

    "." is encoded too, so no name can become ".", ".." or a hidden (temp-looking) entry.
    """
    if not name:
        raise InvalidPoint("empty measurement")
    return "".join(c if c in _SAFE else "".join(f"%{b:02X}" for b in c.encode()) for c in name)


def decode_name(encoded: str) -> str:
    from urllib.parse import unquote

    return unquote(encoded, errors="strict")


def day_of(time_ns: int) -> str:
    return dt.datetime.fromtimestamp(time_ns // 10**9, dt.UTC).strftime("%Y-%m-%d")


def day_of_start_ns(day: str) -> int:
    return int(dt.datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=dt.UTC).timestamp()) * 10**9


def _day_dirname(day: str) -> str:
    return f"day={day}"


def _is_data_file(name: str) -> bool:
    return not name.startswith(".") and name.endswith(".parquet") and name.startswith(("part-", "compact-"))


def measurement_dirs(root: Path) -> dict[str, Path]:
    """Measurement name -> its directory, for every measurement directory under root."""
    out = {}
    if not root.is_dir():
        return out
    for entry in os.scandir(root):
        if entry.is_dir() and not entry.name.startswith("."):
            out[decode_name(entry.name)] = Path(entry.path)
    return out


def day_dirs(root: Path, measurement: str) -> list[tuple[str, Path]]:
    """(day, directory) pairs of a measurement, oldest first."""
    mdir = root / encode_name(measurement)
    if not mdir.is_dir():
        return []
    days = []
    for entry in os.scandir(mdir):
        if entry.is_dir() and entry.name.startswith("day="):
            days.append((entry.name[4:], Path(entry.path)))
    return sorted(days)


def footer(path: Path) -> tuple[list[str], list[str]]:
    """(names of the files a compacted file replaces, batch keys it holds); both empty for a part file.

    Raises ValueError (pyarrow's ArrowInvalid) when the file is not Parquet."""
    if not path.name.startswith("compact-"):
        return [], []
    import pyarrow.parquet as pq

    meta = pq.read_metadata(path).metadata or {}
    return json.loads(meta.get(SUPERSEDES_KEY, b"[]")), json.loads(meta.get(BATCHES_KEY, b"[]"))


def supersedes(path: Path) -> list[str]:
    """Names of the files a compacted file replaces (empty for a plain part file)."""
    return footer(path)[0]


def file_key(name: str) -> str | None:
    """The batch key (or random id) a part file is named after: part-<first ns>-<key>.parquet."""
    if name.startswith("part-") and name.endswith(".parquet"):
        return name[:-len(".parquet")].rsplit("-", 1)[1]
    return None


Footer = Callable[[Path], tuple[list[str], list[str]]]
OnBad = Callable[[Path, Exception], None]


def live_files(day_dir: Path, footer_of: Footer = footer, on_bad: OnBad | None = None) -> list[Path]:
    """The files of one day partition a reader should read: visible, and not replaced by a compacted file.

    A compacted file whose footer cannot be read is left out and passed to on_bad. Raises
    FileNotFoundError when a file vanished while listing (compaction or retention ran): callers retry.
    """
    return live_files_and_keys(day_dir, footer_of, on_bad)[0]


def live_files_and_keys(day_dir: Path, footer_of: Footer = footer,
                        on_bad: OnBad | None = None) -> tuple[list[Path], set[str]]:
    """live_files, and the batch keys the partition holds (from part names and compacted footers)."""
    try:
        names = sorted(n for n in os.listdir(day_dir) if _is_data_file(n))
    except FileNotFoundError:
        return [], set()  # the whole day was removed by retention
    replaced: set[str] = set()
    keys: set[str] = set()
    bad: set[str] = set()
    for name in names:
        if name.startswith("compact-"):
            try:
                gone, held = footer_of(day_dir / name)
            except FileNotFoundError:
                raise
            except (ValueError, OSError) as e:  # not Parquet (ArrowInvalid is a ValueError), unreadable
                bad.add(name)
                if on_bad is not None:
                    on_bad(day_dir / name, e)
                continue
            replaced.update(gone)
            keys.update(held)
        else:
            keys.add(file_key(name))
    return [day_dir / n for n in names if n not in replaced and n not in bad], keys


class EmbeddedWriter:
    """Writes the embedded store at `path`. Any number of writers, in any processes: each change takes
    the store's writer lock (ROOT/.lock), so they serialize instead of racing."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        make_root(self.path)

    def lock(self, wait: bool = True):
        """The store's writer lock, for a caller that runs several steps as one (wait=False: StoreBusy)."""
        return writer_lock(self.path, wait)

    # -- writing --------------------------------------------------------------------------------
    def write(self, points: Iterable[Point], key: str | None = None) -> int:
        """Write points, one new file per (measurement, UTC day). Returns the number of points written.

        Every point is checked first (check_points), so a bad batch writes nothing; all files of the
        batch are written under temp names before any is renamed into place, so a full disk publishes
        nothing either. `key` (hex) names the files instead of a random id and is remembered through
        compaction: writing the same batch again with the same key adds nothing, which makes the
        spool's resend after a crash idempotent, as it is for InfluxDB.
        """
        if key is not None:
            check_key(key)
        points = list(points)
        problems = check_points(points)
        if problems:
            raise InvalidPoint(next(iter(problems.values())))
        with self.lock():
            return self._write_locked(points, key)

    def _write_locked(self, points: list[Point], key: str | None) -> int:
        watermark = retained_before(self.path)
        groups: dict[tuple[str, str], list[Point]] = defaultdict(list)
        dropped = 0
        for p in points:
            if expired(p.time_ns, watermark):
                dropped += 1
                continue
            groups[(p.measurement, day_of(p.time_ns))].append(p)
        if dropped:
            log.warning("embedded store %s: dropped %d point(s) in days retention already removed",
                        self.path, dropped)
        if key is not None:
            for m, day in list(groups):
                if key in live_files_and_keys(self._day_dir(m, day))[1]:
                    del groups[(m, day)]  # this batch is already there (a resend after a crash)
        tables = [(m, day, points_to_table(m, pts)) for (m, day), pts in groups.items()]
        self._publish_all([(m, day, table, "part", None, key) for m, day, table in tables])
        return sum(t.num_rows for _, _, t in tables)

    def write_table(self, measurement: str, table, tags: Iterable[str]) -> int:
        """Write a ready pyarrow table (column "time" timestamp[ns, UTC], tag columns as strings),
        split by UTC day. For bulk loads (benchmarks, trace import) that skip Point objects."""
        import pyarrow as pa
        import pyarrow.compute as pc

        tags = list(tags)
        table = table.replace_schema_metadata({TAGS_KEY: json.dumps(tags).encode()})
        days = pc.floor_temporal(table[TIME], unit="day")
        parts = []
        for day_start in pc.unique(days).to_pylist():
            part = table.filter(pc.equal(days, pa.scalar(day_start, days.type)))
            parts.append((measurement, day_start.strftime("%Y-%m-%d"), part, "part", None, None))
        with self.lock():
            self._publish_all(parts)
        return sum(p[2].num_rows for p in parts)

    def _day_dir(self, measurement: str, day: str, base: Path | None = None) -> Path:
        return (base or self.path) / encode_name(measurement) / _day_dirname(day)

    def _publish_all(self, parts: list, base: Path | None = None, split_floats: bool = False) -> list[Path]:
        """Write every (measurement, day, table, prefix, extra footer, key) to its temp name, then rename
        them all: a failure while writing (disk full) publishes nothing and leaves no temp file.
        base: the tree to write into instead of the store's own (the rollups' hidden tree); split_floats:
        float columns byte-stream-split (a quarter smaller for the rollups' sums and extremes)."""
        staged: list[tuple[Path, Path]] = []
        try:
            for m, day, table, prefix, extra_meta, key in parts:
                staged.append(self._stage(m, day, table, prefix, extra_meta, key, base, split_floats))
        except BaseException:
            for tmp, _ in staged:
                tmp.unlink(missing_ok=True)
            raise
        for tmp, final in staged:
            os.replace(tmp, final)  # atomic: readers see the whole file or none of it
        for directory in {final.parent for _, final in staged}:
            fsync_dir(directory)
        return [final for _, final in staged]

    def _stage(self, measurement: str, day: str, table, prefix: str, extra_meta: dict | None,
               key: str | None, base: Path | None = None, split_floats: bool = False) -> tuple[Path, Path]:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        day_dir = self._day_dir(measurement, day, base)
        make_dirs(day_dir, self.path)
        if extra_meta:
            meta = dict(table.schema.metadata or {})
            meta.update(extra_meta)
            table = table.replace_schema_metadata(meta)
        first_ns = pc.min(table[TIME]).cast("int64").as_py() if table.num_rows else 0
        final = day_dir / f"{prefix}-{first_ns:020d}-{key or uuid.uuid4().hex}.parquet"
        tmp = day_dir / f".tmp-{final.name}"
        try:
            with open_new(tmp) as fh:
                options = {}
                if split_floats:
                    floats = [f.name for f in table.schema if pa.types.is_floating(f.type)]
                    options = {"use_byte_stream_split": floats,
                               "use_dictionary": [n for n in table.column_names if n not in floats]}
                pq.write_table(table, fh, compression="zstd", **options)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp, final

    # -- maintenance ----------------------------------------------------------------------------
    def fold(self) -> int:
        """Turn the agent's pending row files into Parquet (one file per measurement and day, named by the
        batch key, so a batch already folded is not added twice). Returns the files folded."""
        done = 0
        with self.lock():
            for path in list_pending(self.path):
                try:
                    points = read_pending(path)
                    problems = check_points(points)
                except FileNotFoundError:
                    continue
                except ValueError as e:
                    quarantine(path, e)
                    continue
                if problems:  # the agent checked them; a changed schema or a damaged file can still get here
                    log.warning("embedded store: %s: %d point(s) cannot be stored, left out (first: %s)",
                                path, len(problems), next(iter(problems.values())))
                    points = [p for i, p in enumerate(points) if i not in problems]
                try:
                    self._write_locked(points, pending_key(path))
                except (ValueError, TypeError) as e:  # rows pyarrow still refuses: set the batch aside, go on
                    quarantine(path, e)
                    continue
                path.unlink()
                done += 1
            if done:
                fsync_dir(path.parent)
        return done

    def compact(self, measurement: str | None = None, day: str | None = None, min_files: int = 8) -> int:
        """Merge each partition with at least min_files live files into one file. Returns partitions compacted.

        Order of steps is what keeps readers exact: (1) write the merged file, naming the files it
        replaces in its footer, and rename it into place; (2) only then delete the replaced files.
        A reader listing between (1) and (2) sees both and drops the replaced ones; a reader that
        listed before (1) and opens a file deleted in (2) gets FileNotFoundError and re-lists.
        A file that is not Parquet is set aside (renamed to .bad-<name>) and the rest is merged.
        """
        names = [measurement] if measurement is not None else sorted(measurement_dirs(self.path))
        done = 0
        with self.lock():
            for m in names:
                for d, day_dir in day_dirs(self.path, m):
                    if (day is None or d == day) and self._compact_partition(m, d, day_dir, min_files):
                        done += 1
        return done

    def _compact_partition(self, m: str, d: str, day_dir: Path, min_files: int) -> bool:
        import pyarrow as pa
        import pyarrow.parquet as pq

        files, keys = live_files_and_keys(day_dir, on_bad=quarantine)
        if len(files) < max(min_files, 2):
            return False
        tables, merged_files, leftovers = [], [], []
        for f in files:
            try:
                tables.append(pq.read_table(f))
                merged_files.append(f)
            except FileNotFoundError:
                raise
            except (ValueError, OSError) as e:  # ArrowInvalid: not Parquet, truncated
                quarantine(f, e)
                continue
            # Files an earlier compaction merged but could not delete (it was killed): hidden by f's footer
            # today, they would come back once f is merged away, so the new file supersedes them too.
            leftovers += [day_dir / n for n in footer(f)[0] if (day_dir / n).exists()]
        if len(tables) < 2:
            return False
        tags = list(dict.fromkeys(
            t for tb in tables for t in json.loads((tb.schema.metadata or {}).get(TAGS_KEY, b"[]"))))
        try:
            merged = pa.concat_tables([tb.replace_schema_metadata(None) for tb in tables],
                                      promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            log.warning("embedded store: %s/%s not compacted: its files disagree on column types: %s", m, d, e)
            return False
        merged = merged.sort_by(TIME).replace_schema_metadata({TAGS_KEY: json.dumps(tags).encode()})
        keys.discard(None)
        self._publish_all([(m, d, merged, "compact", {
            SUPERSEDES_KEY: json.dumps([f.name for f in merged_files + leftovers]).encode(),
            BATCHES_KEY: json.dumps(sorted(keys)).encode()}, None)])
        for f in merged_files + leftovers:
            f.unlink(missing_ok=True)
        fsync_dir(day_dir)
        return True

    def retain(self, max_age_days: float, now: float | None = None) -> list[str]:
        """Delete whole day partitions that ended more than max_age_days ago. Returns "measurement/day" removed.

        A day is renamed to a hidden name first, so readers listing meanwhile see all of it or none.
        The cutoff is remembered (ROOT/.retained-before): rows of a removed day that arrive later (a
        batch resent after a crash, a pending file) are dropped rather than bring the day back.
        """
        if max_age_days <= 0:
            raise ValueError("max_age_days must be positive")
        cutoff_ns = int(((time.time() if now is None else now) - max_age_days * 86_400) * 10**9)
        removed = []
        with self.lock():
            set_retained_before(self.path, cutoff_ns)
            for m in sorted(measurement_dirs(self.path)):
                for d, day_dir in day_dirs(self.path, m):
                    if day_of_start_ns(d) + NS_PER_DAY > cutoff_ns:
                        continue
                    doomed = day_dir.parent / f".deleting-{day_dir.name}-{uuid.uuid4().hex}"
                    os.replace(day_dir, doomed)
                    shutil.rmtree(doomed)
                    rollups.remove_day(self.path, encode_name(m), d)
                    removed.append(f"{m}/{d}")
        return removed

    def rollup(self, measurement: str | None = None, day: str | None = None) -> int:
        """Roll up every day partition whose rollups are missing or no longer match its live files
        (agents.stores.embedded_rollup), and delete rollups of days that have no data any more. Returns
        the partitions rolled up. A day whose files DuckDB cannot read together is logged and left raw."""
        import duckdb

        names = [measurement] if measurement is not None else sorted(measurement_dirs(self.path))
        done = 0
        with self.lock(), contextlib.closing(rollups.connect()) as con:
            for m in names:
                days = day_dirs(self.path, m)
                for d, day_dir in days:
                    if day is not None and d != day:
                        continue
                    try:
                        done += self._rollup_partition(con, m, d, day_dir)
                    except (duckdb.Error, ValueError, OSError) as e:
                        log.warning("embedded store: %s/%s not rolled up: %s", m, d, str(e).splitlines()[0])
                have = {d for d, _ in days}
                gone = rollups.rollup_root(self.path, encode_name(m))
                if gone.is_dir() and day is None:
                    for entry in os.scandir(gone):
                        if entry.name.startswith("day=") and entry.name[4:] not in have:
                            rollups.remove_day(self.path, encode_name(m), entry.name[4:])
        return done

    def _rollup_partition(self, con, m: str, d: str, day_dir: Path) -> bool:
        import pyarrow.parquet as pq

        files = live_files(day_dir, on_bad=quarantine)
        names = sorted(f.name for f in files)
        existing = rollups.list_rollups(rollups.day_dir(self.path, encode_name(m), d))
        current = set()
        for p in existing:
            try:
                info = rollups.footer(p)
            except (ValueError, OSError):
                continue  # unreadable: replaced below
            if info["of"] == names:
                current.add(info["bucket_ns"])
        if files and current >= set(rollups.LEVELS_NS):
            return False
        made = []
        if files:
            tags = list(dict.fromkeys(
                t for f in files for t in json.loads((pq.read_schema(f).metadata or {}).get(TAGS_KEY, b"[]"))))
            from agents.schema import MEASUREMENTS

            schema = MEASUREMENTS.get(m)
            tags += [t for t in (schema.tags if schema else ()) if t not in tags]
            made = self._publish_all(
                [(m, d, table, rollups.prefix(bucket_ns), {rollups.ROLLUP_KEY: json.dumps(info).encode()}, None)
                 for bucket_ns, table, info in rollups.compute(con, files, tags)],
                base=self.path / rollups.ROLLUP_DIR, split_floats=True)
        for p in existing:  # only after the new ones are in place: a reader always finds a rollup or raw files
            p.unlink(missing_ok=True)
        if existing:
            fsync_dir(existing[0].parent)
        return bool(made)

    def maintain(self, min_files: int = 16, retention_days: float | None = None,
                 rollup: bool = True) -> tuple[int, int, list[str], int]:
        """Fold pending batches, compact, apply retention, roll up what changed: (files folded, partitions
        compacted, days removed, partitions rolled up). Rollups come last, so they are computed from the
        compacted files; without duckdb (the store extra) there are none and readers read raw."""
        folded = self.fold()
        compacted = self.compact(min_files=min_files)
        removed = self.retain(retention_days) if retention_days else []
        rolled = self.rollup() if rollup and importlib.util.find_spec("duckdb") is not None else 0
        return folded, compacted, removed, rolled


def _field_type(values: list, declared: type | None):
    import pyarrow as pa

    mapping = {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string()}
    if declared in mapping:
        return mapping[declared]
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return pa.float64()
    if kinds <= {int}:
        return pa.int64()
    if kinds <= {int, float}:
        return pa.float64()
    if len(kinds) == 1:
        return mapping[kinds.pop()]
    raise InvalidPoint(f"field values of mixed types {sorted(k.__name__ for k in kinds)}")


def points_to_table(measurement: str, points: list[Point]):
    """Points of one measurement as a pyarrow table in the store's layout (also how readers see pending rows)."""
    import math

    import pyarrow as pa

    from agents.schema import MEASUREMENTS

    schema = MEASUREMENTS.get(measurement)
    tag_keys = list(schema.tags) if schema else []
    seen = set(tag_keys)
    field_keys: list[str] = []
    seen_fields: set[str] = set()
    for p in points:
        for k, v in p.tags.items():
            if v != "" and k not in seen:  # an empty tag is no tag (InfluxDB drops it)
                seen.add(k)
                tag_keys.append(k)
        for k in p.fields:
            if k not in seen_fields:
                seen_fields.add(k)
                field_keys.append(k)
    clash = set(tag_keys) & set(field_keys)
    if clash:
        raise InvalidPoint(f"{measurement}: {sorted(clash)} are both tags and fields")
    columns = {TIME: pa.array([p.time_ns for p in points], pa.timestamp("ns", tz="UTC"))}
    for k in tag_keys:
        # "" and absent are the same to InfluxDB (it drops empty tag values): store null.
        columns[k] = pa.array([p.tags.get(k) or None for p in points], pa.string())
    for k in field_keys:
        values = []
        for p in points:
            v = p.fields.get(k)
            if isinstance(v, float) and not math.isfinite(v):
                v = None  # line protocol has no NaN; keep both stores alike
            values.append(v)
        declared = schema.fields[k].type if schema and k in schema.fields else None
        kind = _field_type(values, declared)
        if kind == pa.float64():  # pyarrow refuses ints beyond 2**53 in a float column; Python rounds them
            values = [None if v is None else float(v) for v in values]
        try:
            columns[k] = pa.array(values, kind)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise InvalidPoint(f"{measurement}.{k}: {e}") from None
    table = pa.table(columns)
    return table.replace_schema_metadata({TAGS_KEY: json.dumps(tag_keys).encode()})
