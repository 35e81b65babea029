"""Rows on their way into the embedded store, without pyarrow: point checks, pending row files, the
retention watermark. The agent's sink uses this module only, so the agent process stays light.

Pending row files: the agent publishes each spooled batch, as it came out of the spool (one JSON
point per line), as ONE file ROOT/.pending/batch-<key>.jsonl, where key is a hash of the batch. One
rename publishes the whole batch or nothing. A separate step (agents.stores.embedded_maintain,
which the agent starts as a child process, or `fleetwise store compact`) folds pending files into
the Parquet partitions; readers read the pending files that are not folded yet, so they see every
round the agent wrote.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

from agents.points import InvalidPoint, Point
from agents.stores.embedded_files import make_dirs, make_root, publish_bytes

TIME = "time"
PENDING_DIR = ".pending"
WATERMARK_NAME = ".retained-before"
NS_PER_DAY = 86_400 * 10**9
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_KEY = re.compile(r"[0-9a-f]{8,64}")
_PENDING = re.compile(r"batch-([0-9a-f]{8,64})\.jsonl")


def check_key(key: str) -> str:
    if not _KEY.fullmatch(key):
        raise ValueError(f"file key must be 8-64 lowercase hex digits, got {key!r}")
    return key


# -- checks -----------------------------------------------------------------------------------------
def _kind(value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    raise InvalidPoint(f"field value {value!r} is not a number, string or bool")


def _value_problem(key: str, value, declared: type | None) -> str | None:
    kind = _kind(value)
    if isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
        return f"field {key!r}: integer {value} does not fit in 64 bits"
    if declared is int and isinstance(value, float) and math.isfinite(value) and not (
            value.is_integer() and INT64_MIN <= value <= INT64_MAX):
        return f"field {key!r}: {value!r} is not a 64-bit integer"
    wanted = {int: "number", float: "number", str: "string", bool: "bool"}.get(declared)
    if wanted is not None and kind != wanted and not (declared is float and kind == "bool"):
        return f"field {key!r}: a {kind} where the schema has {declared.__name__}"
    return None


def check_points(points: Sequence[Point]) -> dict[int, str]:
    """Index -> why that point cannot be stored; empty when every point can be.

    What line protocol cannot carry is refused here too, and so are integers beyond 64 bits (a NIC
    counter of 2**64-1, a textfile value of 1e30), values of the wrong type for the schema, and, within a
    measurement, a field whose values mix types, a name used both as tag and as field, or two names that
    differ only in case (DuckDB reads them as one column): the first
    point to use a name decides, later ones that disagree are refused. Checking point by point lets a
    caller set aside exactly the bad points and store the rest.
    """
    from agents.schema import MEASUREMENTS

    problems: dict[int, str] = {}
    kinds: dict[tuple[str, str], str] = {}  # (measurement, field) -> kind of its first value
    roles: dict[tuple[str, str], str] = {}  # (measurement, name) -> "tag" or "field"
    spellings: dict[tuple[str, str], str] = {}  # (measurement, lower-case name) -> the first point's spelling
    for i, p in enumerate(points):
        try:
            p.to_line()
        except (InvalidPoint, TypeError, AttributeError) as e:
            problems[i] = str(e)
            continue
        schema = MEASUREMENTS.get(p.measurement)
        problem = None
        if TIME in p.tags or TIME in p.fields:
            problem = f"{p.measurement}: 'time' cannot be a tag or field name"
        names = {TIME, *p.tags, *p.fields}
        folded: dict[str, str] = {}
        for k in sorted(names):
            # DuckDB resolves column names without regard to case: "Host" and "host" in one measurement
            # would be one ambiguous column to every reader, so the second spelling is refused.
            first = folded.setdefault(k.lower(), spellings.get((p.measurement, k.lower()), k))
            if first != k:
                problem = problem or f"{p.measurement}: {k!r} and {first!r} differ only in case"
        for k, v in p.fields.items():
            problem = problem or _value_problem(k, v, schema.fields[k].type if schema and k in schema.fields
                                                else None)
        if problem is None:
            wanted_roles = {**{k: "tag" for k in (schema.tags if schema else ())},
                            **{k: "tag" for k, v in p.tags.items() if v != ""}}
            for k in p.fields:
                if wanted_roles.get(k) == "tag":
                    problem = f"{p.measurement}: {k!r} is both a tag and a field"
                wanted_roles[k] = "field"
            for k, role in wanted_roles.items():
                seen = roles.get((p.measurement, k))
                if seen is not None and seen != role:
                    problem = problem or f"{p.measurement}: {k!r} is a {role} here and a {seen} in another point"
            for k, v in p.fields.items():
                if not (schema and k in schema.fields) and not (isinstance(v, float) and not math.isfinite(v)):
                    seen = kinds.get((p.measurement, k))
                    if seen is not None and seen != _kind(v):
                        problem = problem or (f"{p.measurement}.{k}: field values of mixed types "
                                              f"({_kind(v)} after {seen})")
        if problem is not None:
            problems[i] = problem
            continue
        for k in names:
            spellings.setdefault((p.measurement, k.lower()), k)
        for k, v in p.tags.items():
            if v != "":
                roles.setdefault((p.measurement, k), "tag")
        for k, v in p.fields.items():
            roles.setdefault((p.measurement, k), "field")
            if not (isinstance(v, float) and not math.isfinite(v)):
                kinds.setdefault((p.measurement, k), _kind(v))
    return problems


def parse_line(line: bytes | str) -> Point:
    """One JSON point (Point.to_json) back to a Point; ValueError when the line is not one."""
    try:
        data = json.loads(line)
        point = Point(**data)
    except (ValueError, TypeError) as e:
        raise ValueError(f"not a JSON point: {e}") from None
    if not (isinstance(point.measurement, str) and isinstance(point.tags, dict) and isinstance(point.fields, dict)
            and isinstance(point.time_ns, int) and not isinstance(point.time_ns, bool)):
        raise ValueError("not a JSON point: wrong types")
    return point


# -- pending row files ------------------------------------------------------------------------------
def pending_dir(root: Path) -> Path:
    return root / PENDING_DIR


def write_pending(root: Path, payload: bytes, key: str) -> Path:
    """Publish one batch of JSON point lines as one file, atomically; the same key replaces the same file."""
    make_root(root)
    directory = pending_dir(root)
    make_dirs(directory, root)
    final = directory / f"batch-{check_key(key)}.jsonl"
    publish_bytes(final, payload)
    return final


def list_pending(root: Path) -> list[Path]:
    try:
        names = os.listdir(pending_dir(root))
    except FileNotFoundError:
        return []
    return [pending_dir(root) / n for n in sorted(names) if _PENDING.fullmatch(n)]


def pending_key(path: Path) -> str:
    match = _PENDING.fullmatch(path.name)
    if not match:
        raise ValueError(f"{path}: not a pending batch file")
    return match.group(1)


def read_pending(path: Path) -> list[Point]:
    """The points of one pending file; ValueError naming the file and line when one is not a point."""
    points = []
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, 1):
            if line.strip():
                try:
                    points.append(parse_line(line))
                except ValueError as e:
                    raise ValueError(f"{path}:{number}: {e}") from None
    return points


# -- retention watermark ----------------------------------------------------------------------------
def retained_before(root: Path) -> int:
    """Retention removed every day that ended at or before this time (ns); 0 when it never ran."""
    try:
        return int((root / WATERMARK_NAME).read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def set_retained_before(root: Path, cutoff_ns: int) -> None:
    if cutoff_ns > retained_before(root):
        publish_bytes(root / WATERMARK_NAME, f"{cutoff_ns}\n".encode())


def expired(time_ns: int, watermark_ns: int) -> bool:
    """Whether a row at time_ns falls in a day that retention already removed (so it must not come back)."""
    return watermark_ns > 0 and time_ns - time_ns % NS_PER_DAY + NS_PER_DAY <= watermark_ns
