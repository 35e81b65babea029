"""A point of telemetry and its two text forms: InfluxDB line protocol and JSON."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

FieldValue = float | int | str | bool

_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})
_KEY_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_STRING_ESCAPES = str.maketrans({'"': r"\"", "\\": r"\\"})


class InvalidPoint(ValueError):
    """A point that line protocol cannot carry (newline in a name or tag, no fields, ...)."""


def _check_name(kind: str, text: str) -> None:
    if not text:
        raise InvalidPoint(f"empty {kind}")
    if "\n" in text or "\r" in text:
        raise InvalidPoint(f"{kind} {text!r} contains a newline, which line protocol cannot carry")
    if text.endswith("\\"):
        raise InvalidPoint(f"{kind} {text!r} ends with a backslash, which line protocol cannot carry")


def check_tag_value(key: str, value: str) -> None:
    """Raise InvalidPoint when line protocol cannot carry `value` as the value of tag `key`."""
    _check_name(f"tag {key!r} value", value)


def _check_backslash_before(kind: str, text: str, specials: str) -> None:
    # InfluxDB 1.x drops the backslash of backslash-space in a measurement and refuses it in a field key:
    # no escaping gets such names back unchanged, so refuse them rather than store a different name.
    for c in specials:
        if "\\" + c in text:
            raise InvalidPoint(f"{kind} {text!r} has a backslash before {c!r}, which InfluxDB cannot read back")


def _format_value(value: FieldValue) -> str | None:
    # bool before int: bool is a subclass of int.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    return '"' + str(value).translate(_STRING_ESCAPES) + '"'


@dataclass(slots=True)
class Point:
    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    time_ns: int

    def to_line(self) -> str:
        """Line protocol with nanosecond precision; tags sorted as InfluxDB prefers.

        Non-finite floats are left out (line protocol has no NaN); a point left with no field
        raises InvalidPoint.
        """
        _check_name("measurement", self.measurement)
        if self.measurement.startswith("#"):
            raise InvalidPoint(f"measurement {self.measurement!r} starts with '#': InfluxDB reads it as a comment")
        _check_backslash_before("measurement", self.measurement, " ,")
        parts = [self.measurement.translate(_MEASUREMENT_ESCAPES)]
        for key in sorted(self.tags):
            value = self.tags[key]
            if value == "":
                continue  # InfluxDB drops empty tag values; writing them is an error in 1.x
            _check_name("tag key", key)
            _check_name(f"tag {key!r} value", value)
            parts.append(f"{key.translate(_KEY_ESCAPES)}={value.translate(_KEY_ESCAPES)}")
        fields = []
        for key, value in self.fields.items():
            text = _format_value(value)
            if text is None:
                continue
            _check_name("field key", key)
            _check_backslash_before("field key", key, " ,=")
            fields.append(f"{key.translate(_KEY_ESCAPES)}={text}")
        if not fields:
            raise InvalidPoint(f"{self.measurement}: no field with a value line protocol can carry")
        return f"{','.join(parts)} {','.join(fields)} {self.time_ns}"

    def to_dict(self) -> dict:
        return {
            "measurement": self.measurement,
            "tags": self.tags,
            "fields": {k: v for k, v in self.fields.items() if not (isinstance(v, float) and not math.isfinite(v))},
            "time_ns": self.time_ns,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)
