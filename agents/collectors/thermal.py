"""thermal: thermal zones from /sys/class/thermal/thermal_zone*/ (temp in millidegrees, type)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from agents.collectors.base import Collector, Cycle, listdir, read_int, read_str
from agents.points import Point
from agents.schema.host import THERMAL_ZONE

_PREFIX = "thermal_zone"


class ThermalCollector(Collector):
    name = "thermal"
    measurements = (THERMAL_ZONE,)

    def collect(self, cycle: Cycle) -> Iterator[Point]:
        base = self.sys("class", "thermal")
        zones = [z for z in listdir(base) if z.startswith(_PREFIX) and z[len(_PREFIX):].isdigit()]
        if not zones:
            self.log_once("absent", logging.DEBUG, "no thermal zones under %s", base)
        for zone in zones:
            # A zone whose sensor is asleep or broken fails its read (EAGAIN, ENODATA): skip it this round.
            temp = read_int(base / zone / "temp")
            kind = read_str(base / zone / "type")
            if temp is None or not kind:
                continue
            yield self.point(THERMAL_ZONE, {"zone": zone[len(_PREFIX):], "type": kind},
                             {"temp_celsius": temp / 1000.0}, cycle)
