"""rapl: CPU package and DRAM energy from the powercap framework, /sys/class/powercap/intel-rapl:N[:M].

energy_uj is a microjoule counter that wraps at max_energy_range_uj (about 262 kJ on many parts: at
300 W, every 15 minutes), so the agent's power adds the range back when the counter went down. The
intel_rapl driver serves AMD Zen as well. Since Linux 5.10 energy_uj is readable by root only
(CVE-2020-8694): an agent without the privilege logs it once and reports nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from agents.collectors.base import Collector, Cycle, listdir, read_int, read_str
from agents.points import FieldValue, Point
from agents.schema.host import RAPL

_PREFIX = "intel-rapl:"
_MICRO = 1e-6


def wrapped_delta(previous: int, current: int, max_range: int | None) -> int | None:
    """Energy used between two readings of a counter that wraps at max_range; None when it went down
    and the range is unknown (or the drop is larger than one wrap can explain)."""
    if current >= previous:
        return current - previous
    if max_range is None or max_range <= previous:
        return None
    return current + max_range - previous


class RaplCollector(Collector):
    name = "rapl"
    measurements = (RAPL,)

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self._last: dict[str, tuple[int, float]] = {}

    def collect(self, cycle: Cycle) -> Iterator[Point]:
        base = self.sys("class", "powercap")
        zones = [z for z in listdir(base) if z.startswith(_PREFIX)]
        if not zones:
            self.log_once("absent", logging.DEBUG, "no RAPL zones under %s", base)
        seen = set()
        for zone_dir in zones:
            zone = zone_dir[len(_PREFIX):]
            energy = read_int(base / zone_dir / "energy_uj")
            domain = read_str(base / zone_dir / "name")
            if energy is None or not domain:
                self.log_once(("unreadable", zone), logging.INFO,
                              "RAPL zone %s: energy_uj or name unreadable (root only since Linux 5.10)", zone_dir)
                continue
            seen.add(zone)
            fields: dict[str, FieldValue] = {"energy_joules": energy * _MICRO}
            previous = self._last.get(zone)
            self._last[zone] = (energy, cycle.seconds)
            if previous is not None and cycle.seconds > previous[1]:
                delta = wrapped_delta(previous[0], energy, read_int(base / zone_dir / "max_energy_range_uj"))
                if delta is not None:
                    fields["power_watts"] = delta * _MICRO / (cycle.seconds - previous[1])
            yield self.point(RAPL, {"zone": zone, "domain": domain}, fields, cycle)
        for gone in self._last.keys() - seen:
            del self._last[gone]
