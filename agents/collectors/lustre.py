"""lustre: Lustre client (llite) statistics per file system.

Older clients publish proc/fs/lustre/llite/<fsname>-<client id>/stats; newer ones (2.12+) moved the
stats to debugfs, sys/kernel/debug/lustre/llite/<instance>/stats. Lines look like
    read_bytes   42 samples [bytes] 4096 1048576 44040192
i.e. name, sample count, "samples", [unit], then min, max, sum (and sum of squares on some counters).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

from agents.collectors.base import Collector, Cycle, listdir, read_text
from agents.points import FieldValue, Point
from agents.schema.storage import LUSTRE

# The client id the kernel appends to the instance name is a kernel pointer: ffff8881234abcd0.
_CLIENT_ID = re.compile(r"-ffff[0-9a-fA-F]*$")
SUMMED = ("read_bytes", "write_bytes")  # the sum of the samples is the byte count
COUNTED = ("open", "close", "getattr", "setattr")  # the sample count is the call count


def fs_name(instance: str) -> str:
    return _CLIENT_ID.sub("", instance)


def parse_stats(text: str) -> dict[str, int]:
    """The counters the schema carries; ValueError on a line that does not have llite's shape."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        words = line.split()
        if not words or words[0] not in SUMMED + COUNTED:
            continue
        if len(words) < 4 or words[2] != "samples":
            raise ValueError(f"unexpected llite stats line {line.strip()!r}")
        if words[0] in SUMMED:
            # min, max, sum follow the unit; a sum-of-squares column may come after, so index, not [-1].
            if len(words) < 7:
                raise ValueError(f"no sum in llite stats line {line.strip()!r}")
            out[words[0]] = int(words[6])
        else:
            out[words[0]] = int(words[1])
    return out


class LustreCollector(Collector):
    name = "lustre"
    measurements = (LUSTRE,)

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)

    def _instances(self) -> dict[str, Path]:
        """instance dir name -> stats file; procfs wins when a client shows an instance in both places."""
        found: dict[str, Path] = {}
        for base in (self.sys("kernel", "debug", "lustre", "llite"), self.proc("fs", "lustre", "llite")):
            for instance in listdir(base):
                stats = base / instance / "stats"
                if stats.is_file():
                    found[instance] = stats
        return found

    def collect(self, cycle: Cycle) -> Iterator[Point]:
        instances = self._instances()
        if not instances:
            self.log_once("absent", logging.DEBUG, "no Lustre client statistics under %s or %s",
                           self.proc("fs", "lustre", "llite"), self.sys("kernel", "debug", "lustre", "llite"))
            return
        # A file system mounted twice has two instances: add them up, the fs tag names the file system.
        totals: dict[str, dict[str, int]] = {}
        for instance, path in sorted(instances.items()):
            try:
                counters = parse_stats(read_text(path))
            except (OSError, ValueError) as e:
                self.log_once(f"bad:{path}", logging.WARNING, "skipping Lustre instance %s: %s", instance, e)
                continue
            total = totals.setdefault(fs_name(instance), {})
            for key, value in counters.items():
                total[key] = total.get(key, 0) + value
        for fs, counters in sorted(totals.items()):
            fields: dict[str, FieldValue] = {key: counters.get(key, 0) for key in SUMMED + COUNTED}
            self.add_rate(fields, "read_bytes_per_second", (fs, "read"), counters.get("read_bytes", 0), cycle)
            self.add_rate(fields, "write_bytes_per_second", (fs, "write"), counters.get("write_bytes", 0), cycle)
            yield self.point(LUSTRE, {"fs": fs}, fields, cycle)

