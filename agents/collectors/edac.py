"""edac: memory errors per memory controller from /sys/devices/system/edac/mc/mc*/{ce_count,ue_count}."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from agents.collectors.base import Collector, Cycle, listdir, read_int
from agents.points import FieldValue, Point
from agents.schema.host import EDAC


class EdacCollector(Collector):
    name = "edac"
    measurements = (EDAC,)

    def collect(self, cycle: Cycle) -> Iterator[Point]:
        base = self.sys("devices", "system", "edac", "mc")
        controllers = [c for c in listdir(base) if c.startswith("mc") and c[2:].isdigit()]
        if not controllers:
            self.log_once("absent", logging.DEBUG, "no EDAC memory controllers under %s", base)
        for mc in controllers:
            fields: dict[str, FieldValue] = {}
            for file_name, field in (("ce_count", "correctable_errors"), ("ue_count", "uncorrectable_errors")):
                value = read_int(base / mc / file_name)
                if value is not None:
                    fields[field] = value
            if fields:
                yield self.point(EDAC, {"controller": mc[2:]}, fields, cycle)
