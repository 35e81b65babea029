"""disk: per block device counters from /proc/diskstats.

Kernel formats (Documentation/admin-guide/iostats.rst): major minor name, then 11 fields (14 in all),
15 since 4.18 (discards, 18 in all) and 17 since 5.5 (flushes, 20 in all). The discard and flush
fields are reported only when the line has them, so an older kernel's disk has no zeros that lie.
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
    reads_merged: int
    sectors_read: int
    read_ms: int
    writes: int
    writes_merged: int
    sectors_written: int
    write_ms: int
    in_progress: int
    io_ms: int
    weighted_io_ms: int
    # (discards, merged, sectors, ms) since 4.18 and (flushes, ms) since 5.5; None on older kernels.
    discard: tuple[int, int, int, int] | None = None
    flush: tuple[int, int] | None = None


def parse_line(line: str) -> DiskStats:
    """One diskstats line; ValueError when it has fewer than the 14 fields of the oldest format."""
    words = line.split()
    if len(words) < 14:
        raise ValueError(f"{len(words)} fields, expected 14, 18 or 20: {line.strip()!r}")
    n = [int(w) for w in words[3:20]]
    return DiskStats(device=words[2], reads=n[0], reads_merged=n[1], sectors_read=n[2], read_ms=n[3],
                     writes=n[4], writes_merged=n[5], sectors_written=n[6], write_ms=n[7],
                     in_progress=n[8], io_ms=n[9], weighted_io_ms=n[10],
                     discard=(n[11], n[12], n[13], n[14]) if len(n) >= 15 else None,
                     flush=(n[15], n[16]) if len(n) >= 17 else None)


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
            "reads_merged": s.reads_merged,
            "writes_merged": s.writes_merged,
            "read_seconds": s.read_ms / 1000.0,
            "write_seconds": s.write_ms / 1000.0,
        }
        if s.discard is not None:
            fields.update(discards=s.discard[0], discards_merged=s.discard[1],
                          discard_bytes=s.discard[2] * SECTOR_BYTES, discard_seconds=s.discard[3] / 1000.0)
        if s.flush is not None:
            fields.update(flushes=s.flush[0], flush_seconds=s.flush[1] / 1000.0)
        self.add_rate(fields, "read_bytes_per_second", (s.device, "read_bytes"), fields["read_bytes"], cycle)
        self.add_rate(fields, "write_bytes_per_second", (s.device, "write_bytes"), fields["write_bytes"], cycle)
        busy = self.rates.rate((s.device, "io_seconds"), s.io_ms / 1000.0, cycle.seconds)
        if busy is not None:
            # io_ticks can run slightly ahead of wall time (jiffy rounding, merged requests): cap at 1.
            fields["busy_ratio"] = min(busy, 1.0)
        for ops, ms, name in ((s.reads, s.read_ms, "read"), (s.writes, s.write_ms, "write")):
            await_seconds = self._await(s.device, name, ops, ms)
            if await_seconds is not None:
                fields[f"{name}_await_seconds"] = await_seconds
        return fields

    def _await(self, device: str, name: str, ops: int, ms: int) -> float | None:
        """Mean time of the operations completed since the last read (iostat's r_await / w_await), or
        None on the first read, after a reset, or when none completed (the mean of nothing is no value)."""
        done = self.rates.delta((device, name, "ops"), ops)
        took = self.rates.delta((device, name, "ms"), ms)
        if not done or took is None:
            return None
        return took / done / 1000.0
