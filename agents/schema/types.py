"""The vocabulary of the schema: kinds of field, fields and measurements."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Kind(StrEnum):
    GAUGE = "gauge"  # a value as read now
    RATE = "rate"  # computed by the agent from two reads of a counter
    COUNTER = "counter"  # cumulative since some start (boot, driver load); may reset
    INFO = "info"  # a string describing the series (model, architecture)


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind
    help: str
    type: type = float
    telegraf: str = ""
    node_exporter: str = ""
    dcgm: str = ""
    # Rates are left out of /metrics by default: Prometheus derives them from the counters.
    prometheus: bool | None = None
    # Several fields can share one Prometheus family told apart by a label, as node_exporter's
    # node_cpu_seconds_total{mode=...}: family "seconds" with labels (("mode", "user"),) gives
    # fleetwise_<measurement>_seconds_total{mode="user"}.
    family: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    family_help: str = ""  # the family's HELP on /metrics (a field's own help names one label value)

    @property
    def exposed(self) -> bool:
        if self.prometheus is not None:
            return self.prometheus
        return self.kind is not Kind.RATE


@dataclass(frozen=True)
class Measurement:
    name: str
    help: str
    tags: tuple[str, ...]
    fields: dict[str, Field] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # InfluxDB 3 forbids a name that is both a tag and a field in one measurement.
        clash = set(self.tags) & set(self.fields)
        if clash:
            raise ValueError(f"{self.name}: {sorted(clash)} are both tags and fields")
        if "host" not in self.tags:
            raise ValueError(f"{self.name}: every measurement has a host tag")
        # A field label must not shadow a tag, and fields of one family must share their label keys
        # (a Prometheus family has one label set).
        keys: dict[str, tuple[str, ...]] = {}
        for f in self.fields.values():
            label_keys = tuple(k for k, _ in f.labels)
            if set(label_keys) & set(self.tags):
                raise ValueError(f"{self.name}.{f.name}: labels {label_keys} clash with tags")
            if f.family and keys.setdefault(f.family, label_keys) != label_keys:
                raise ValueError(f"{self.name}: family {f.family!r} has fields with different label keys")

    def prometheus_name(self, field_name: str) -> str:
        f = self.fields[field_name]
        base = f"fleetwise_{self.name}_{f.family or field_name}"
        if f.kind is Kind.COUNTER and not base.endswith("_total"):
            base += "_total"
        return base

    def prometheus_sample(self, field_name: str) -> str:
        """The sample's name with its field labels, as docs/metrics.md shows it."""
        f = self.fields[field_name]
        labels = ",".join(f'{k}="{v}"' for k, v in f.labels)
        return self.prometheus_name(field_name) + (f"{{{labels}}}" if labels else "")

    @property
    def info_name(self) -> str:
        """Prometheus info metric that carries the string fields as labels."""
        return f"fleetwise_{self.name}"


def measurement(name: str, help: str, tags: tuple[str, ...], *fields: Field) -> Measurement:
    return Measurement(name=name, help=help, tags=("host", *tags), fields={f.name: f for f in fields})


def gauge(name: str, help: str, **kw) -> Field:
    return Field(name, Kind.GAUGE, help, **kw)


def counter(name: str, help: str, **kw) -> Field:
    return Field(name, Kind.COUNTER, help, **kw)


def rate(name: str, help: str, **kw) -> Field:
    return Field(name, Kind.RATE, help, **kw)


def info(name: str, help: str, **kw) -> Field:
    return Field(name, Kind.INFO, help, type=str, **kw)
