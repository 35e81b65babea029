"""assert_schema: every point a collector emits must be exactly what agents/schema declares."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from agents.points import Point
from agents.schema import MEASUREMENTS


def _as_dict(point: Point | Mapping[str, Any]) -> dict[str, Any]:
    return point.to_dict() if isinstance(point, Point) else dict(point)


def _type_ok(value: object, expected: type) -> bool:
    # InfluxDB fixes a field's type on first write: an int where a float was declared (or the reverse) is a
    # write error later, so the check is exact. bool is an int subclass and is never a number here.
    if expected is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if expected is int:
        return isinstance(value, int)
    if expected is float:
        return isinstance(value, float)
    return isinstance(value, expected)


def schema_errors(points: Iterable[Point | Mapping[str, Any]]) -> list[str]:
    errors = []
    for raw in points:
        p = _as_dict(raw)
        name = p.get("measurement")
        m = MEASUREMENTS.get(name)
        if m is None:
            errors.append(f"unknown measurement {name!r}")
            continue
        tags = p.get("tags", {})
        if set(tags) != set(m.tags):
            errors.append(f"{name}: tag keys {sorted(tags)} != declared {sorted(m.tags)}")
        errors += [f"{name}: tag {k}={v!r} is not a string" for k, v in tags.items() if not isinstance(v, str)]
        fields = p.get("fields", {})
        if not fields:
            errors.append(f"{name} {tags}: no fields")
        for key, value in fields.items():
            declared = m.fields.get(key)
            if declared is None:
                errors.append(f"{name}: undeclared field {key!r}")
            elif not _type_ok(value, declared.type):
                errors.append(f"{name}.{key}: {value!r} is {type(value).__name__}, declared {declared.type.__name__}")
        if not isinstance(p.get("time_ns"), int):
            errors.append(f"{name}: time_ns {p.get('time_ns')!r} is not an int")
    return errors


def assert_schema(points: Iterable[Point | Mapping[str, Any]]) -> None:
    """Points or their to_dict()/JSON forms; fails listing every mismatch."""
    errors = schema_errors(points)
    assert not errors, "points do not match the schema:\n" + "\n".join(errors)
