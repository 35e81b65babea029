"""PromQL text built safely: metric and label names validated, label values quoted and escaped.

Nothing a user or a store hands over is pasted into a query raw: names must match Prometheus's own
grammar, values become PromQL string literals.
"""

from __future__ import annotations

import re

from agents.query.identifiers import InvalidIdentifier

_METRIC = re.compile(r"^[A-Za-z_:][A-Za-z0-9_:]*$")
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def metric_name(name: str) -> str:
    if not isinstance(name, str) or not _METRIC.match(name):
        raise InvalidIdentifier(f"not a Prometheus metric name: {name!r}")
    return name


def label_name(name: str) -> str:
    if not isinstance(name, str) or not _LABEL.match(name) or name.startswith("__"):
        raise InvalidIdentifier(f"not a Prometheus label name: {name!r}")
    return name


def string(value: str) -> str:
    """A PromQL double-quoted string literal holding value exactly."""
    if not isinstance(value, str):
        raise InvalidIdentifier(f"label value must be a string, got {type(value).__name__}")
    return '"' + "".join(_ESCAPES.get(c, c) for c in value) + '"'


def selector(metric: str, equal: dict[str, str] | None = None, nonempty: tuple[str, ...] = (),
             extra: tuple[str, ...] = ()) -> str:
    """metric{label="value", ..., label!="", *extra} (extra: matchers built by one_of)."""
    matchers = [f"{label_name(k)}={string(v)}" for k, v in (equal or {}).items()]
    matchers += [f'{label_name(k)}!=""' for k in nonempty]
    matchers += list(extra)
    return metric_name(metric) + ("{" + ",".join(matchers) + "}" if matchers else "")


def regex_literal(value: str) -> str:
    """An RE2 pattern matching value literally: RE2 reads a backslash before any ASCII character that is not
    a letter or digit as that character itself."""
    return "".join("\\" + c if c.isascii() and not c.isalnum() else c for c in value)


def one_of(label: str, values: tuple[str, ...], patterns: tuple[str, ...] = ()) -> str:
    """A matcher keeping series whose label is one of values (label="v" for one), or matches one of the
    RE2 patterns (built with regex_literal). Prometheus anchors the regular expression at both ends; a
    missing label is "", so "" among the values keeps series without the label."""
    if len(values) == 1 and not patterns:
        return f"{label_name(label)}={string(values[0])}"
    alternatives = [regex_literal(v) for v in values] + list(patterns)
    return f"{label_name(label)}=~{string('|'.join(f'(?:{a})' for a in alternatives))}"


def by(labels: list[str] | tuple[str, ...]) -> str:
    return "by (" + ", ".join(label_name(lb) for lb in labels) + ")"


def duration_ms(ms: int) -> str:
    if ms <= 0:
        raise ValueError(f"a PromQL range must be positive, got {ms} ms")
    return f"{int(ms)}ms"


def number(value: float) -> str:
    """A PromQL number literal (repr round-trips a float exactly; PromQL reads exponents)."""
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"not a finite number: {value!r}")
    return repr(value)
