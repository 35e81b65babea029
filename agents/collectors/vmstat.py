"""vmstat: virtual memory event counters from /proc/vmstat ("name value" lines)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from agents.collectors.base import Collector, Cycle, read_text
from agents.points import FieldValue, Point
from agents.schema.host import VMSTAT

# /proc/vmstat key -> field. oom_kill exists since Linux 4.13; a missing key is a missing field.
KEYS = {
    "oom_kill": "oom_kills",
    "pgmajfault": "major_page_faults",
    "pgfault": "page_faults",
    "pswpin": "swap_in_pages",
    "pswpout": "swap_out_pages",
}


def parse_vmstat(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] in KEYS:
            try:
                out[words[0]] = int(words[1])
            except ValueError:
                continue
    return out


class VmstatCollector(Collector):
    name = "vmstat"
    measurements = (VMSTAT,)

    def collect(self, cycle: Cycle) -> Iterator[Point]:
        try:
            values = parse_vmstat(read_text(self.proc("vmstat")))
        except OSError as e:
            self.log_once("absent", logging.DEBUG, "no vmstat: %s", e)
            return
        fields: dict[str, FieldValue] = {KEYS[k]: v for k, v in values.items()}
        if "major_page_faults" in fields:
            self.add_rate(fields, "major_page_faults_per_second", "pgmajfault", values["pgmajfault"], cycle)
        if fields:
            yield self.point(VMSTAT, {}, fields, cycle)
