"""Agent-side cost of the durable spool: CPU and memory per batch enqueue + ack (no network).

One cycle = encode the round's points (LineEncoder, = Point.to_line()), commit them to the spool
(SQLite WAL, synchronous=FULL: durable against power loss), read the batch back as the shipper does,
and ack it (delete + counters). Rounds are shaped like an agent's: a GPU node's ~300 points, and the
largest batch the shipper sends (5000 points). RSS is read from /proc/self/status before and after,
so the growth over many cycles (a leak would show) is reported next to the absolute size.

    .venv/bin/python bench/spool_overhead.py [--cycles 500]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.points import Point
from agents.stores.lineproto import LineEncoder
from agents.stores.spool import Spool


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def round_points(n: int, t: int) -> list[Point]:
    return [Point("accelerator", {"host": "node001", "gpu": str(i % 8), "uuid": f"GPU-{i % 8}", "vendor": "nvidia",
                                  "model": "H100"},
                  {"utilization_ratio": 0.5, "memory_used_bytes": 40_000_000_000 + i, "power_watts": 350.5,
                   "energy_joules": 1_000_000 + i, "temperature_celsius": 61}, t + i) for i in range(n)]


def measure(points_per_round: int, cycles: int, synchronous: str) -> dict:
    encoder = LineEncoder()
    encode_cpu = spool_cpu = spool_wall = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        spool = Spool(Path(tmp) / "s.sqlite", synchronous=synchronous)
        warm_rss = 0
        for c in range(cycles):
            points = round_points(points_per_round, 1_795_000_000 * 10**9 + c * 10**10)  # not timed
            c0 = time.process_time()
            payload = "\n".join(encoder.encode(p) for p in points).encode()
            c1, w1 = time.process_time(), time.perf_counter()
            spool.enqueue(payload, "line", len(points))
            spool.ack(spool.peek(5000))
            spool_cpu += time.process_time() - c1
            spool_wall += time.perf_counter() - w1
            encode_cpu += c1 - c0
            if c == 9:
                warm_rss = rss_kib()
        end_rss = rss_kib()
        spool.close()
    return {"points": points_per_round, "synchronous": synchronous, "bytes": len(payload), "cycles": cycles,
            "encode_cpu_ms": round(encode_cpu / cycles * 1e3, 3),
            "spool_cpu_ms": round(spool_cpu / cycles * 1e3, 3),
            "spool_wall_ms": round(spool_wall / cycles * 1e3, 3),
            "cpu_us_per_point": round((encode_cpu + spool_cpu) / cycles / points_per_round * 1e6, 2),
            "rss_kib": end_rss, "rss_growth_kib_after_warmup": end_rss - warm_rss}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=500)
    args = ap.parse_args()
    baseline = rss_kib()
    results = [measure(n, args.cycles if n < 5000 else max(20, args.cycles // 10), sync)
               for n in (300, 5000) for sync in ("FULL", "NORMAL")]
    print(json.dumps({"rss_kib_at_start": baseline, "cpu_count": os.cpu_count(), "results": results}, indent=1))


if __name__ == "__main__":
    main()
