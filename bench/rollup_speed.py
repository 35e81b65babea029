"""Benchmark: the embedded store's rollups (docs/storage-embedded.md#rollups) on the dashboard's fleet.

On the fleet bench/dashboard_speed.py prepares (256 nodes x 7 days at 60 s): the cost of the rollups (time to
build them, disk as a share of the raw Parquet data), then each telemetry page's callbacks and the time spent
inside the store's queries, with rollups and without (`EmbeddedReader.use_rollups`), alternated in one process
so that both see the same machine load. Anchor, in the same run: the fleet heatmap's data by one raw DuckDB scan
of the Parquet files (bench/dashboard_speed.py's anchor), and `Reader.frame()` for it with and without rollups.

    .venv/bin/python bench/dashboard_speed.py --workdir /tmp/fw-dash      # prepares the fleet once
    .venv/bin/python bench/rollup_speed.py --workdir /tmp/fw-dash [--rebuild]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

PAGES = ("/fleet (24h)", "/fleet (7d)", "/node (24h)", "/node (7d)")


def size(paths) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file())


def build(store: Path, rebuild: bool) -> dict:
    """Roll the store up (all of it when rebuild), timed; disk of the rollups and of the raw Parquet files."""
    import shutil

    from agents.stores import embedded_rollup as rollups
    from agents.stores.embedded import EmbeddedWriter

    if rebuild:
        shutil.rmtree(store / rollups.ROLLUP_DIR, ignore_errors=True)
    t0, c0 = time.perf_counter(), time.process_time()
    parts = EmbeddedWriter(store).rollup()
    out = {"partitions": parts, "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}
    raw = size(p for p in store.glob("*/day=*/*.parquet"))
    out["raw_bytes"] = raw
    for bucket_ns in rollups.LEVELS_NS:
        files = store.glob(f"{rollups.ROLLUP_DIR}/*/day=*/{rollups.prefix(bucket_ns)}-*")
        out[f"{bucket_ns // 10**9}s_bytes"] = size(files)
    out["rollup_bytes"] = sum(out[f"{b // 10**9}s_bytes"] for b in rollups.LEVELS_NS)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, required=True, help="bench/dashboard_speed.py's --workdir")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rebuild", action="store_true", help="delete the rollups and build them again (timed)")
    args = ap.parse_args()

    from dashboard_speed import anchors, page_calls, timed

    from agents.query import embedded

    store = args.workdir / "store"
    cost = build(store, args.rebuild)
    print(f"rollups: {cost['partitions']} partitions built in {cost['seconds']:.1f} s "
          f"({cost['cpu_seconds']:.1f} s CPU); "
          f"{cost['rollup_bytes'] / 1e6:.0f} MB = {cost['rollup_bytes'] / cost['raw_bytes']:.0%} of the raw "
          f"{cost['raw_bytes'] / 1e6:.0f} MB (" + ", ".join(
              f"{k[:-6]} {v / cost['raw_bytes']:.0%}" for k, v in cost.items() if k.endswith("s_bytes")) + ")")

    spent = [0.0]
    run = embedded.EmbeddedReader._run

    def timed_run(self, *a, **kw):  # the time inside the store's queries
        t0 = time.perf_counter()
        try:
            return run(self, *a, **kw)
        finally:
            spent[0] += time.perf_counter() - t0

    embedded.EmbeddedReader._run = timed_run
    calls, reader = page_calls(f"embedded:{store}", args.workdir / "state")
    got: dict = {}
    for rep in range(args.repeat + 1):
        for use in (True, False):
            reader.use_rollups = use
            for page in PAGES:
                spent[0] = 0.0
                t0 = time.perf_counter()
                calls[page]()
                if rep:  # the first round warms the caches
                    got.setdefault((page, use), []).append((time.perf_counter() - t0, spent[0]))
    for key in ("24h", "7d"):
        a = anchors(store, reader, key)
        reader.use_rollups = True
        on = timed(a["api"], args.repeat)["median"]
        reader.use_rollups = False
        off = timed(a["api"], args.repeat)["median"]
        scan = timed(a["duckdb"], args.repeat)["median"]
        print(f"anchor {key}: {a['window']}, {a['rows']:,} cells: raw DuckDB scan {scan:.3f} s; Reader.frame "
              f"{on:.3f} s with rollups ({on / scan:.2f} of the scan), {off:.3f} s without ({off / scan:.2f})")
    print(f"{'page':<14} {'page s':>7} {'raw':>7} {'store s':>8} {'raw':>7} {'raw/rollups':>11}")
    for page in PAGES:
        on, off = got[(page, True)], got[(page, False)]
        med = [statistics.median(x[i] for x in rows) for rows in (on, off) for i in (0, 1)]
        print(f"{page:<14} {med[0]:>7.2f} {med[2]:>7.2f} {med[1]:>8.2f} {med[3]:>7.2f} {med[3] / med[1]:>11.1f}")


if __name__ == "__main__":
    main()
