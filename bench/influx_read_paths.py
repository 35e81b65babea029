"""Benchmark: how the InfluxDB reader reads the deploy's rollups, A/B on the dashboard's pages.

On dashboard_speed.py's fleet and influxd (run it first with --store influxdb: it loads the points and the
three rollup levels), the telemetry pages are timed with the reader as it was and with each change, the
variants alternated call by call in one process so that all see the same load:

- before: the five-minute level only, influxd grouping by time (GROUP BY time(...)), JSON answers;
- the three levels (the coarsest whose width divides the bucket), still grouped by influxd;
- the three levels, the level's points read as they are and summed here (agents.query.influx._rollup_read);
- the same with MessagePack answers;
- the same with Python's garbage collector paused while answers decode (agents.query.gc_pause: the
  reader's default).

Per variant: the median page time (callbacks, dashboard caches cleared before each call), the median CPU
seconds influxd spent on the call (its /proc stat) and this process spent (its process time: the callbacks'
decoding and pandas work), the anchor: the goal of 3 s a page.

    .venv/bin/python bench/influx_read_paths.py --workdir /tmp/fw-dash [--repeat 3]
    .venv/bin/python bench/influx_read_paths.py --workdir /tmp/fw-dash --last 2   # the newest change alone
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

PAGES = ("/fleet (24h)", "/fleet (7d)", "/node (24h)", "/node (7d)")


def variants() -> dict[str, tuple[str, int, str, bool]]:
    """name -> (rollup URL suffix, the reader's SCAN_POINTS, the Accept type asked for, collector paused)."""
    from dashboard_speed import ROLLUP_URL

    json_type, msgpack_type = "application/json", "application/x-msgpack"
    return {"before: five_minutes, GROUP BY time, JSON": ("?rollup=five_minutes", 0, json_type, False),
            "three levels, GROUP BY time, JSON": (ROLLUP_URL, 0, json_type, False),
            "three levels, points summed here, JSON": (ROLLUP_URL, 3, json_type, False),
            "three levels, points summed here, MessagePack": (ROLLUP_URL, 3, msgpack_type, False),
            "the same, collector paused while decoding (now)": (ROLLUP_URL, 3, msgpack_type, True)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, required=True, help="dashboard_speed.py's --workdir, loaded")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--last", type=int, default=None,
                    help="only the last N variants (the oldest take minutes a call over the week)")
    args = ap.parse_args()
    if not (args.workdir / "influx-load.json").exists():
        raise SystemExit(f"{args.workdir}: no influxd load; run bench/dashboard_speed.py --store influxdb first")

    from dashboard_speed import page_calls, process_cpu

    from agents.query import gc_pause, influx
    from tests.services import influxd

    with influxd(args.workdir / "influxd") as server:
        store = "influxdb://" + server.url.split("://", 1)[1] + "/fleet"
        cpu = process_cpu(server.proc.pid)
        chosen = dict(list(variants().items())[-args.last if args.last else 0:])
        contexts = {name: page_calls(store + url, args.workdir / "state") for name, (url, *_) in chosen.items()}
        print(f"load average before: {os.getloadavg()[0]:.1f}", flush=True)
        for page in PAGES:
            times: dict[str, list] = {name: [] for name in contexts}
            for _ in range(args.repeat):
                for name, (_, scan, accept, paused) in chosen.items():
                    calls, ctx = contexts[name]
                    influx.SCAN_POINTS = scan
                    influx.InfluxReader.accept = accept
                    gc_pause.ENABLED = paused
                    ctx.cache.clear()
                    c0, p0, t0 = cpu(), time.process_time(), time.perf_counter()
                    calls[page]()
                    times[name].append((time.perf_counter() - t0, cpu() - c0, time.process_time() - p0))
            for name, got in times.items():
                wall = statistics.median(t for t, _, _ in got)
                print(f"{page:<14} {name:<54} {wall:7.2f} s ({wall / 3.0:.2f} of 3 s), influxd CPU "
                      f"{statistics.median(c for _, c, _ in got):6.2f} s, ours "
                      f"{statistics.median(p for _, _, p in got):6.2f} s", flush=True)
        gc_pause.ENABLED = True
        print(f"load average after: {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
