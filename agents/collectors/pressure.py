"""pressure: pressure stall information from /proc/pressure/{cpu,memory,io} (Linux 4.20+, CONFIG_PSI).

Each file has one or two lines (kernel/sched/psi.c, psi_show):
    some avg10=1.53 avg60=0.87 avg300=0.22 total=13146215
    full avg10=0.00 avg60=0.00 avg300=0.00 total=0
avgN are percentages, total is microseconds of stall since boot. cpu has a "full" line since 5.13
(always zero at system level). Kernels without PSI, or booted with psi=0 (the file reads EOPNOTSUPP),
give no series.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from agents.collectors.base import Collector, Cycle, read_text
from agents.points import FieldValue, Point
from agents.schema.host import PRESSURE, PSI_RESOURCES

_US = 1e-6


def parse_pressure(text: str) -> dict[str, dict[str, float]]:
    """{'some': {'avg10': 1.53, ..., 'total': 13146215}, 'full': {...}}; ValueError on a malformed line."""
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        words = line.split()
        if not words or words[0] not in ("some", "full"):
            continue
        values: dict[str, float] = {}
        for word in words[1:]:
            key, sep, value = word.partition("=")
            if not sep:
                raise ValueError(f"unexpected pressure entry {word!r}")
            values[key] = float(value)
        if not {"avg10", "avg60", "avg300", "total"} <= set(values):
            raise ValueError(f"incomplete pressure line {line.strip()!r}")
        out[words[0]] = values
    return out


class PressureCollector(Collector):
    name = "pressure"
    measurements = (PRESSURE,)

    def collect(self, cycle: Cycle) -> Iterator[Point]:
        for resource in PSI_RESOURCES:
            path = self.proc("pressure", resource)
            try:
                lines = parse_pressure(read_text(path))
            except OSError as e:
                self.log_once(("absent", resource), logging.DEBUG, "no pressure stall information: %s", e)
                continue
            except ValueError as e:
                self.log_once(("bad", resource), logging.WARNING, "skipping %s: %s", path, e)
                continue
            fields: dict[str, FieldValue] = {}
            for kind, values in lines.items():
                for window in (10, 60, 300):
                    fields[f"{kind}_avg{window}_ratio"] = values[f"avg{window}"] / 100.0
                stall = values["total"] * _US
                fields[f"{kind}_stall_seconds"] = stall
                self.add_rate(fields, f"{kind}_stall_ratio", (resource, kind), stall, cycle)
            if fields:
                yield self.point(PRESSURE, {"resource": resource}, fields, cycle)
