"""The alert expression language: a small PromQL-shaped grammar over the schema's names, parsed into a
tree that both the Prometheus exporter (promql.py) and the built-in evaluator (evaluate.py) walk.

    expr      := cond ("and" cond)*
    cond      := value CMP threshold                 CMP: < <= > >= == !=
    value     := AGG ["by" "(" tag, ... ")"] "(" inner ")" | inner       AGG: avg min max sum count
    inner     := FUNC "(" selector "[" DURATION "]" ")"  FUNC: increase rate delta avg_over_time
                                                          min_over_time max_over_time time_since
               | "bitand" "(" selector "," NUMBER ")"
               | selector
    selector  := measurement "." field ["{" name ("="|"!=") "string", ... "}"]
    threshold := NUMBER [UNIT]                        UNIT: s m h d w, or "intervals" (of the agent)

Selectors name measurements and fields of agents.schema, so an unknown metric fails at load; matcher
names are the measurement's tags or its string (info) fields (job_gpu.allocation_source). Every metric
must be served on the agent's /metrics so the same rule runs in Prometheus and in the evaluator."""

from __future__ import annotations

import re
from dataclasses import dataclass

from agents import schema
from agents.schema import Kind, Measurement

COMPARATORS = ("<=", ">=", "==", "!=", "<", ">")
AGGREGATIONS = ("avg", "min", "max", "sum", "count")
COUNTER_FUNCS = ("increase", "rate")
WINDOW_FUNCS = (*COUNTER_FUNCS, "delta", "avg_over_time", "min_over_time", "max_over_time", "time_since")
UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$")
_TOKEN = re.compile(r"""\s*(?:
    (?P<string>"[^"\\]*"|'[^'\\]*')
  | (?P<number>0x[0-9a-fA-F]+|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?:ms|s|m|h|d|w)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)
  | (?P<op><=|>=|==|!=|<|>|=)
  | (?P<punct>[(){}\[\],])
)""", re.VERBOSE)


class ExprError(ValueError):
    """A bad expression, with the reason in words."""


def parse_duration(text: str) -> float:
    """Seconds in a duration literal: 90s, 5m, 1.5h, 1d, 1w, 500ms. Raises ValueError otherwise."""
    m = _DURATION.match(str(text).strip())
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"bad duration {text!r}: use e.g. 30s, 5m, 1h, 1d")
    return float(m.group(1)) * UNIT_SECONDS[m.group(2)]


def format_duration(seconds: float) -> str:
    """The shortest exact duration literal (Prometheus style) for whole seconds."""
    s = round(seconds)
    if s <= 0:
        return "0s"
    for unit in ("w", "d", "h", "m"):
        if s % UNIT_SECONDS[unit] == 0:
            return f"{s // UNIT_SECONDS[unit]}{unit}"
    return f"{s}s"


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str  # "=" or "!="
    value: str
    info: bool  # True: a string field of the measurement, not a tag


@dataclass(frozen=True)
class Selector:
    measurement: str
    field: str
    matchers: tuple[Matcher, ...] = ()

    @property
    def schema(self) -> Measurement:
        return schema.MEASUREMENTS[self.measurement]

    @property
    def tags(self) -> tuple[str, ...]:
        return self.schema.tags

    @property
    def info_matchers(self) -> tuple[Matcher, ...]:
        return tuple(m for m in self.matchers if m.info)

    @property
    def tag_matchers(self) -> tuple[Matcher, ...]:
        return tuple(m for m in self.matchers if not m.info)


@dataclass(frozen=True)
class Value:
    selector: Selector
    func: str = ""  # "" (latest value), one of WINDOW_FUNCS, or "bitand"
    window: float = 0.0  # seconds, for WINDOW_FUNCS
    mask: int = 0  # for bitand
    agg: str = ""  # one of AGGREGATIONS, or ""
    by: tuple[str, ...] = ()

    @property
    def labels(self) -> tuple[str, ...]:
        """The label names (schema tag names and info fields) of this value's series."""
        if self.agg:
            return self.by
        return (*self.selector.tags, *(m.name for m in self.selector.info_matchers))


@dataclass(frozen=True)
class Condition:
    value: Value
    op: str
    threshold: float


@dataclass(frozen=True)
class Expr:
    conditions: tuple[Condition, ...]
    text: str

    @property
    def labels(self) -> tuple[str, ...]:
        return self.conditions[0].value.labels


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ExprError(f"unexpected {text[pos:pos + 12]!r} at character {pos + 1}")
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str, interval: float) -> None:
        self.text = text
        self.interval = interval
        self.toks = _tokens(text)
        self.i = 0

    def peek(self, offset: int = 0) -> tuple[str, str]:
        j = self.i + offset
        return self.toks[j] if j < len(self.toks) else ("end", "")

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        k, v = self.peek()
        if (value is not None and v != value) or (kind is not None and k != kind):
            want = repr(value) if value is not None else f"a {kind}"
            raise ExprError(f"expected {want}, found {v!r}" if v else f"expected {want} at the end")
        self.i += 1
        return v

    def parse(self) -> Expr:
        conds = [self.condition()]
        while self.peek() == ("name", "and"):
            self.take("and")
            conds.append(self.condition())
        if self.peek()[0] != "end":
            raise ExprError(f"unexpected {self.peek()[1]!r} after a complete condition")
        labels = {c.value.labels for c in conds}
        if len({c.value.selector.measurement for c in conds}) > 1 or len(labels) > 1:
            raise ExprError("conditions joined by 'and' must read one measurement with the same labels")
        return Expr(tuple(conds), self.text)

    def condition(self) -> Condition:
        value = self.value()
        op = self.take(kind="op")
        if op not in COMPARATORS:
            raise ExprError(f"unknown comparison {op!r}: use one of {' '.join(COMPARATORS)}")
        return Condition(value, op, self.threshold())

    def threshold(self) -> float:
        num = self.take(kind="number")
        if num.startswith("0x"):
            return float(int(num, 16))
        m = re.match(r"^([\d.eE+-]+?)(ms|s|m|h|d|w)?$", num)
        value = float(m.group(1)) * (UNIT_SECONDS[m.group(2)] if m.group(2) else 1)
        if self.peek() in (("name", "intervals"), ("name", "interval")):
            self.take()
            value *= self.interval
        return value

    def value(self) -> Value:
        k, v = self.peek()
        if k == "name" and v in AGGREGATIONS and self.peek(1)[1] in ("(", "by"):
            self.take()
            by: tuple[str, ...] = ()
            if self.peek()[1] == "by":
                self.take("by")
                self.take("(")
                names = [self.take(kind="name")]
                while self.peek()[1] == ",":
                    self.take(",")
                    names.append(self.take(kind="name"))
                self.take(")")
                by = tuple(names)
            self.take("(")
            inner = self.inner()
            self.take(")")
            missing = [t for t in by if t not in inner.selector.tags]
            if missing:
                raise ExprError(f"{v} by ({', '.join(missing)}): not a tag of {inner.selector.measurement}")
            return Value(inner.selector, inner.func, inner.window, inner.mask, v, by)
        return self.inner()

    def inner(self) -> Value:
        k, v = self.peek()
        if k == "name" and self.peek(1)[1] == "(":
            if v not in (*WINDOW_FUNCS, "bitand"):
                raise ExprError(f"unknown function {v!r}: use one of {', '.join((*WINDOW_FUNCS, 'bitand'))}")
            self.take()
            self.take("(")
            sel = self.selector()
            if v == "bitand":
                self.take(",")
                mask = self.take(kind="number")
                self.take(")")
                try:
                    mask_value = int(mask, 0)
                except ValueError:
                    raise ExprError(f"bitand needs an integer mask, got {mask!r}") from None
                self._check_kind(sel, v)
                return Value(sel, "bitand", mask=mask_value)
            self.take("[")
            dur = self.take(kind="number")
            self.take("]")
            self.take(")")
            try:
                window = parse_duration(dur)
            except ValueError as e:
                raise ExprError(str(e)) from None
            self._check_kind(sel, v)
            return Value(sel, v, window)
        sel = self.selector()
        self._check_kind(sel, "")
        return Value(sel)

    def selector(self) -> Selector:
        name = self.take(kind="name")
        if "." not in name:
            raise ExprError(f"{name!r} is not a metric: write measurement.field (e.g. gpu.utilization_ratio)")
        meas, field = name.split(".", 1)
        m = schema.MEASUREMENTS.get(meas)
        if m is None:
            raise ExprError(f"unknown metric {name!r}: no measurement {meas!r} in the schema")
        f = m.fields.get(field)
        if f is None:
            raise ExprError(f"unknown metric {name!r}: {meas} has no field {field!r}")
        if f.kind is Kind.INFO:
            raise ExprError(f"{name} is a string; match it in braces ({meas}.<field>{{{field}=\"...\"}})")
        if not f.exposed:
            raise ExprError(f"{name} is not served on /metrics (a rate the agent computes): use the counter "
                            "it comes from with rate() or increase()")
        matchers = []
        if self.peek()[1] == "{":
            self.take("{")
            while True:
                label = self.take(kind="name")
                op = self.take(kind="op")
                if op not in ("=", "!="):
                    raise ExprError(f"matcher {label}{op}: use = or !=")
                value = self.take(kind="string")[1:-1]
                info = label not in m.tags
                if info and (label not in m.fields or m.fields[label].kind is not Kind.INFO):
                    raise ExprError(f"{label!r} is neither a tag nor a string field of {meas}")
                if label == "host":
                    raise ExprError("match hosts in the evaluator's or Prometheus' own configuration, not in rules")
                matchers.append(Matcher(label, op, value, info))
                if self.peek()[1] != ",":
                    break
                self.take(",")
            self.take("}")
        return Selector(meas, field, tuple(matchers))

    @staticmethod
    def _check_kind(sel: Selector, func: str) -> None:
        kind = sel.schema.fields[sel.field].kind
        name = f"{sel.measurement}.{sel.field}"
        if kind is Kind.COUNTER and func not in COUNTER_FUNCS:
            raise ExprError(f"{name} is a counter: use increase({name}[10m]) or rate({name}[5m])")
        if func in COUNTER_FUNCS and kind is not Kind.COUNTER:
            raise ExprError(f"{func}() needs a counter; {name} is a {kind.value}")
        if func == "time_since" and not sel.field.endswith("_timestamp_seconds"):
            raise ExprError(f"time_since() needs a *_timestamp_seconds field, got {name}")


def parse(text: str, interval: float = 10.0) -> Expr:
    """Parse and check an expression; interval is the agent's collection interval in seconds (the unit
    of `3 intervals`). Raises ExprError with the reason."""
    if not isinstance(text, str) or not text.strip():
        raise ExprError("empty expression")
    return _Parser(text, interval).parse()
