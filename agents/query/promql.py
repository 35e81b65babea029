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


def selector(metric: str, equal: dict[str, str] | None = None, nonempty: tuple[str, ...] = ()) -> str:
    """metric{label="value", ..., label!=""}."""
    matchers = [f"{label_name(k)}={string(v)}" for k, v in (equal or {}).items()]
    matchers += [f'{label_name(k)}!=""' for k in nonempty]
    return metric_name(metric) + ("{" + ",".join(matchers) + "}" if matchers else "")


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
