"""disk: per block device counters from /proc/diskstats.

Kernel formats (Documentation/admin-guide/iostats.rst): major minor name, then 11 fields (14 in all),
15 since 4.18 (discards, 18 in all) and 17 since 5.5 (flushes, 20 in all). Only the first 11 are used,
so every format reads the same.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from agents.collectors.base import Collector, Cycle, Regex, read_text
from agents.points import FieldValue, Point
from agents.schema.storage import DISK

log = logging.getLogger("fleetwise.collectors.disk")

SECTOR_BYTES = 512  # diskstats counts 512-byte sectors whatever the device's logical block size
DEFAULT_EXCLUDE = r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$"


class DiskOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    exclude: Regex = Field(DEFAULT_EXCLUDE, description="Regex of device names to leave out (partitions, loop and "
                                                      "ram devices by default; whole disks, dm-* and md* stay).")



@dataclass(frozen=True)
class DiskStats:
    device: str
    reads: int
    sectors_read: int
    writes: int
    sectors_written: int
    in_progress: int
    io_ms: int
    weighted_io_ms: int


def parse_line(line: str) -> DiskStats:
    """One diskstats line; ValueError when it has fewer than the 14 fields of the oldest format."""
    words = line.split()
    if len(words) < 14:
        raise ValueError(f"{len(words)} fields, expected 14, 18 or 20: {line.strip()!r}")
    n = [int(w) for w in words[3:14]]
    return DiskStats(device=words[2], reads=n[0], sectors_read=n[2], writes=n[4], sectors_written=n[6],
                     in_progress=n[8], io_ms=n[9], weighted_io_ms=n[10])


class DiskCollector(Collector):
    name = "disk"
    measurements = (DISK,)
    Options = DiskOptions

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self._exclude = re.compile(self.options.exclude)
        self._bad_lines: set[str] = set()

    def collect(self, cycle: Cycle) -> Iterator[Point]:
        for line in read_text(self.proc("diskstats")).splitlines():
            if not line.strip():
                continue
            try:
                s = parse_line(line)
            except ValueError as e:
                # One garbled line (a driver bug, a truncated read) must not hide the other devices.
                if line not in self._bad_lines:
                    self._bad_lines.add(line)
                    log.warning("skipping a diskstats line: %s", e)
                continue
            if self._exclude.match(s.device):
                continue
            yield self.point(DISK, {"device": s.device}, self._fields(s, cycle), cycle)

    def _fields(self, s: DiskStats, cycle: Cycle) -> dict[str, FieldValue]:
        fields: dict[str, FieldValue] = {
            "read_bytes": s.sectors_read * SECTOR_BYTES,
            "write_bytes": s.sectors_written * SECTOR_BYTES,
            "reads": s.reads,
            "writes": s.writes,
            "io_seconds": s.io_ms / 1000.0,
            "weighted_io_seconds": s.weighted_io_ms / 1000.0,
            "in_progress": s.in_progress,
        }
        self.add_rate(fields, "read_bytes_per_second", (s.device, "read_bytes"), fields["read_bytes"], cycle)
        self.add_rate(fields, "write_bytes_per_second", (s.device, "write_bytes"), fields["write_bytes"], cycle)
        busy = self.rates.rate((s.device, "io_seconds"), s.io_ms / 1000.0, cycle.seconds)
        if busy is not None:
            # io_ticks can run slightly ahead of wall time (jiffy rounding, merged requests): cap at 1.
            fields["busy_ratio"] = min(busy, 1.0)
        return fields
