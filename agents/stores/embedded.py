"""The embedded store: an append-only Parquet dataset, one directory per measurement and UTC day.

    ROOT/<encoded measurement>/day=YYYY-MM-DD/part-<first time_ns>-<uuid>.parquet
    ROOT/<encoded measurement>/day=YYYY-MM-DD/compact-<first time_ns>-<uuid>.parquet

Files never change once visible: each is written under a name starting with "." (readers skip
those), fsynced, then renamed into place. A compacted file lists the files it replaces in its
Parquet footer (key "fleetwise.supersedes"); readers drop those from what they listed, so a reader
never counts a row twice, and a reader that listed a file compaction then deleted retries with a
fresh listing (see agents.query.embedded). One writer, any number of readers in other processes.

pyarrow is imported inside functions: the agent process must stay light until it writes.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from agents.points import InvalidPoint, Point

log = logging.getLogger(__name__)

TIME = "time"
TAGS_KEY = b"fleetwise.tags"
SUPERSEDES_KEY = b"fleetwise.supersedes"
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_NS_PER_DAY = 86_400 * 10**9


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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


def supersedes(path: Path) -> list[str]:
    """Names of the files a compacted file replaces (empty for a plain part file)."""
    if not path.name.startswith("compact-"):
        return []
    import pyarrow.parquet as pq

    meta = pq.read_metadata(path).metadata or {}
    return json.loads(meta.get(SUPERSEDES_KEY, b"[]"))


def live_files(day_dir: Path, supersedes_of=supersedes) -> list[Path]:
    """The files of one day partition a reader should read: visible, and not replaced by a compacted file.

    Raises FileNotFoundError when a file vanished while listing (compaction or retention ran): callers retry.
    """
    try:
        names = sorted(n for n in os.listdir(day_dir) if _is_data_file(n))
    except FileNotFoundError:
        return []  # the whole day was removed by retention
    replaced: set[str] = set()
    for name in names:
        if name.startswith("compact-"):
            replaced.update(supersedes_of(day_dir / name))
    return [day_dir / n for n in names if n not in replaced]


class EmbeddedWriter:
    """Appends points to the embedded store at `path`. Use one writer per store."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    # -- writing --------------------------------------------------------------------------------
    def write(self, points: Iterable[Point], key: str | None = None) -> int:
        """Write points, one new file per (measurement, UTC day). Returns the number of points written.

        Every point is checked first (what line protocol cannot carry raises InvalidPoint), so a
        bad batch writes nothing. `key` (hex) names the files instead of a random id: writing the same
        batch again with the same key replaces its files rather than adding rows, which makes the
        spool's resend after a crash idempotent, as it is for InfluxDB.
        """
        if key is not None and not re.fullmatch(r"[0-9a-f]{8,64}", key):
            raise ValueError(f"file key must be 8-64 lowercase hex digits, got {key!r}")
        groups: dict[tuple[str, str], list[Point]] = defaultdict(list)
        for p in points:
            _validate(p)
            groups[(p.measurement, day_of(p.time_ns))].append(p)
        tables = [(m, day, _to_table(m, pts)) for (m, day), pts in groups.items()]
        written = 0
        for m, day, table in tables:
            self._publish(m, day, table, prefix="part", key=key)
            written += table.num_rows
        return written

    def write_table(self, measurement: str, table, tags: Iterable[str]) -> int:
        """Write a ready pyarrow table (column "time" timestamp[ns, UTC], tag columns as strings),
        split by UTC day. For bulk loads (benchmarks, trace import) that skip Point objects."""
        import pyarrow as pa
        import pyarrow.compute as pc

        tags = list(tags)
        table = table.replace_schema_metadata({TAGS_KEY: json.dumps(tags).encode()})
        days = pc.floor_temporal(table[TIME], unit="day")
        written = 0
        for day_start in pc.unique(days).to_pylist():
            part = table.filter(pc.equal(days, pa.scalar(day_start, days.type)))
            self._publish(measurement, day_start.strftime("%Y-%m-%d"), part, prefix="part")
            written += part.num_rows
        return written

    def _publish(self, measurement: str, day: str, table, prefix: str, extra_meta: dict | None = None,
                 key: str | None = None) -> Path:
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        day_dir = self.path / encode_name(measurement) / _day_dirname(day)
        new_dir = not day_dir.exists()
        day_dir.mkdir(parents=True, exist_ok=True)
        if extra_meta:
            meta = dict(table.schema.metadata or {})
            meta.update(extra_meta)
            table = table.replace_schema_metadata(meta)
        first_ns = pc.min(table[TIME]).cast("int64").as_py() if table.num_rows else 0
        final = day_dir / f"{prefix}-{first_ns:020d}-{key or uuid.uuid4().hex}.parquet"
        tmp = day_dir / f".tmp-{final.name}"
        with open(tmp, "wb") as fh:
            pq.write_table(table, fh, compression="zstd")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)  # atomic: readers see the whole file or none of it
        _fsync_dir(day_dir)
        if new_dir:
            _fsync_dir(day_dir.parent)
        return final

    # -- maintenance ----------------------------------------------------------------------------
    def compact(self, measurement: str | None = None, day: str | None = None, min_files: int = 8) -> int:
        """Merge each partition with at least min_files live files into one file. Returns partitions compacted.

        Order of steps is what keeps readers exact: (1) write the merged file, naming the files it
        replaces in its footer, and rename it into place; (2) only then delete the replaced files.
        A reader listing between (1) and (2) sees both and drops the replaced ones; a reader that
        listed before (1) and opens a file deleted in (2) gets FileNotFoundError and re-lists.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        names = [measurement] if measurement is not None else sorted(measurement_dirs(self.path))
        done = 0
        for m in names:
            for d, day_dir in day_dirs(self.path, m):
                if day is not None and d != day:
                    continue
                files = live_files(day_dir)
                if len(files) < max(min_files, 2):
                    continue
                tables = [pq.read_table(f) for f in files]
                tags = list(dict.fromkeys(
                    t for tb in tables for t in json.loads((tb.schema.metadata or {}).get(TAGS_KEY, b"[]"))))
                merged = pa.concat_tables([tb.replace_schema_metadata(None) for tb in tables],
                                          promote_options="permissive")
                merged = merged.sort_by(TIME).replace_schema_metadata({TAGS_KEY: json.dumps(tags).encode()})
                self._publish(m, d, merged, prefix="compact",
                              extra_meta={SUPERSEDES_KEY: json.dumps([f.name for f in files]).encode()})
                for f in files:
                    f.unlink(missing_ok=True)
                _fsync_dir(day_dir)
                done += 1
        return done

    def retain(self, max_age_days: float, now: float | None = None) -> list[str]:
        """Delete whole day partitions that ended more than max_age_days ago. Returns "measurement/day" removed.

        A day is renamed to a hidden name first, so readers listing meanwhile see all of it or none.
        """
        if max_age_days <= 0:
            raise ValueError("max_age_days must be positive")
        cutoff_ns = int(((time.time() if now is None else now) - max_age_days * 86_400) * 10**9)
        removed = []
        for m in sorted(measurement_dirs(self.path)):
            for d, day_dir in day_dirs(self.path, m):
                if day_of_start_ns(d) + _NS_PER_DAY > cutoff_ns:
                    continue
                doomed = day_dir.parent / f".deleting-{day_dir.name}-{uuid.uuid4().hex}"
                os.replace(day_dir, doomed)
                shutil.rmtree(doomed)
                removed.append(f"{m}/{d}")
        return removed


def _validate(p: Point) -> None:
    # Line protocol is the contract both stores honour: what it cannot carry is refused here too.
    p.to_line()
    for key in (*p.tags, *p.fields):
        if key == TIME:
            raise InvalidPoint(f"{p.measurement}: 'time' cannot be a tag or field name")
    clash = {k for k, v in p.tags.items() if v != ""} & set(p.fields)
    if clash:
        raise InvalidPoint(f"{p.measurement}: {sorted(clash)} are both tags and fields")


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


def _to_table(measurement: str, points: list[Point]):
    import math

    import pyarrow as pa

    from agents.schema import MEASUREMENTS

    schema = MEASUREMENTS.get(measurement)
    tag_keys = list(schema.tags) if schema else []
    seen = set(tag_keys)
    field_keys: list[str] = []
    seen_fields: set[str] = set()
    for p in points:
        for k in p.tags:
            if k not in seen:
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
        try:
            columns[k] = pa.array(values, _field_type(values, declared))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise InvalidPoint(f"{measurement}.{k}: {e}") from None
    table = pa.table(columns)
    return table.replace_schema_metadata({TAGS_KEY: json.dumps(tag_keys).encode()})
