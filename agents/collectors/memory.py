"""memory: /proc/meminfo."""

from __future__ import annotations

from collections.abc import Iterator

from agents.collectors.base import Collector, Cycle, read_text
from agents.points import Point
from agents.schema.host import MEMORY


def parse_meminfo(text: str) -> dict[str, int]:
    """'MemTotal:  16318480 kB' lines -> {'MemTotal': bytes}. Lines without a unit are counts."""
    out = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        words = rest.split()
        if not words:
            continue
        value = int(words[0])
        if len(words) > 1 and words[1] == "kB":
            value *= 1024
        out[key.strip()] = value
    return out


class MemoryCollector(Collector):
    name = "memory"
    measurements = (MEMORY,)

    def collect(self, cycle: Cycle) -> Iterator[Point]:
        info = parse_meminfo(read_text(self.proc("meminfo")))
        total = info["MemTotal"]
        # MemAvailable exists since Linux 3.14; before that approximate it as free()'s old formula.
        available = info.get("MemAvailable", info["MemFree"] + info.get("Buffers", 0) + info.get("Cached", 0))
        used = total - available
        swap_total = info.get("SwapTotal", 0)
        yield self.point(MEMORY, {}, {
            "total_bytes": total,
            "available_bytes": available,
            "used_bytes": used,
            "free_bytes": info["MemFree"],
            "cached_bytes": info.get("Cached", 0),
            "buffers_bytes": info.get("Buffers", 0),
            "used_ratio": used / total if total else 0.0,
            "swap_total_bytes": swap_total,
            "swap_used_bytes": swap_total - info.get("SwapFree", 0),
        }, cycle)
