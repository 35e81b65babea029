"""Benchmark: hourly GPU means per host over a week through the Prometheus reader, beside the embedded store.

Generates HOSTS hosts x DAYS days at INTERVAL seconds of GPU utilization (bench/query_hourly.py's series),
backfills it into a real Prometheus as dcgm-exporter's DCGM_FI_DEV_GPU_UTIL (percent, with dcgm-exporter's
labels) with `promtool tsdb create-blocks-from openmetrics` (one file per 2-hour block), loads the same
values into the embedded store as fleetwise's gpu.utilization_ratio, then times
Reader.frame("gpu", ["utilization_ratio"], every="1h", by=["host"]) on both,
after checking that the two frames are equal (rtol 1e-9).

    .venv/bin/python bench/prometheus_query.py --hosts 256 --days 7 --interval 30 --repeats 5

Goal (issue 16): under 5 s against the real Prometheus.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from query_hourly import T0, host_names, load_embedded, series  # noqa: E402

from agents.query import open_reader  # noqa: E402

GOAL_S = 5.0
SEED = 2  # query_hourly's seed for the gpu measurement


BLOCK_S = 7200  # promtool's block width: one OpenMetrics file per block


def openmetrics_windows(hosts: int, days: int, interval_s: int):
    """Per 2-hour block, DCGM_FI_DEV_GPU_UTIL in percent, one series per host in time order, as OpenMetrics."""
    names = host_names(hosts)
    per_host = 86_400 // interval_s
    per_block = BLOCK_S // interval_s
    labels = [f'{{gpu="0",UUID="GPU-{h:08d}",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="{n}"}}'
              for h, n in enumerate(names)]
    for day in range(days):
        times, _, values = series(hosts, day, interval_s, SEED)
        ts = times // 10**6
        seconds = np.char.add(np.char.add((ts // 1000).astype(str), "."), np.char.zfill((ts % 1000).astype(str), 3))
        pct = np.char.mod("%.17g", values * 100)
        for block in range(86_400 // BLOCK_S):
            yield _block_lines(labels, pct, seconds, per_host, block * per_block, (block + 1) * per_block)


def _block_lines(labels, pct, seconds, per_host: int, lo: int, hi: int):
    yield "# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %)."
    yield "# TYPE DCGM_FI_DEV_GPU_UTIL gauge"
    for h, lab in enumerate(labels):
        sl = slice(h * per_host + lo, h * per_host + hi)
        yield "\n".join(f"DCGM_FI_DEV_GPU_UTIL{lab} {v} {t}" for v, t in zip(pct[sl], seconds[sl], strict=True))
    yield "# EOF"


def wait_compacted(tsdb: Path, quiet_s: float = 30.0, timeout_s: float = 1800.0) -> None:
    print("waiting for Prometheus to compact the backfilled blocks ...", file=sys.stderr)
    deadline, last, since = time.monotonic() + timeout_s, None, time.monotonic()
    while time.monotonic() < deadline:
        blocks = sorted(p.name for p in tsdb.iterdir() if p.is_dir() and len(p.name) == 26)
        if blocks != last:
            last, since = blocks, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(2)


def time_query(reader, days: int, repeats: int):
    start, end = pd.Timestamp(T0, tz="UTC"), pd.Timestamp(T0 + days * 86_400 * 10**9, tz="UTC")
    timings, frame = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        frame = reader.frame("gpu", ["utilization_ratio"], start, end, every="1h", by=["host"], agg="mean")
        timings.append(time.perf_counter() - t)
    return timings, frame


def main() -> None:
    from tests.prom_helpers import backfill_windows, prometheus_on

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=256)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--interval", type=int, default=30, help="seconds between samples")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--reuse", action="store_true", help="query the stores a previous run left in --workdir")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="fleetwise-prom-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    samples = args.hosts * args.days * 86_400 // args.interval
    result: dict = {"hosts": args.hosts, "days": args.days, "interval_s": args.interval, "samples": samples}
    if not args.reuse:
        print(f"loading {samples:,} samples into the embedded store ...", file=sys.stderr)
        result["embedded_load_s"] = round(load_embedded(work / "embedded", args.hosts, args.days, args.interval), 2)
    with open_reader(f"embedded:{work / 'embedded'}") as reader:
        emb_times, emb_frame = time_query(reader, args.days, args.repeats)
    tsdb = work / "tsdb"
    if not args.reuse:
        print("backfilling Prometheus with promtool ...", file=sys.stderr)
        t = time.perf_counter()
        backfill_windows(openmetrics_windows(args.hosts, args.days, args.interval), work)
        result["promtool_backfill_s"] = round(time.perf_counter() - t, 2)
    with prometheus_on(tsdb, work) as server:
        # Prometheus compacts backfilled 2-hour blocks into larger ones after it starts, as a running server
        # long since has: time the queries once the block directories stop changing
        wait_compacted(tsdb)
        reader = open_reader(server.url.replace("http://", "prometheus://"))
        prom_times, prom_frame = time_query(reader, args.days, args.repeats)
    pd.testing.assert_frame_equal(prom_frame, emb_frame, check_exact=False, rtol=1e-9)
    result["rows"] = len(prom_frame)
    result["embedded_query_s"] = [round(x, 3) for x in emb_times]
    result["prometheus_query_s"] = [round(x, 3) for x in prom_times]
    p, e = statistics.median(prom_times), statistics.median(emb_times)
    result["prometheus_median_s"], result["embedded_median_s"] = round(p, 3), round(e, 3)
    result["ratio_prometheus_to_embedded"] = round(p / e, 2)
    result["ratio_to_goal"] = round(p / GOAL_S, 3)
    result["goal_met"] = p < GOAL_S
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
