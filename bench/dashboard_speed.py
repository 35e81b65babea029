"""Benchmark: every dashboard page's callbacks, timed server-side, on 256 nodes x 7 days in the embedded store.

Goal (issue 10): each page's callbacks answer in under 1 s of server time from the embedded store.
The callbacks are called directly (what a browser's request runs, minus HTTP and JSON), each page at its
default view and the telemetry pages also over the whole week, on a 1400-pixel-wide plot.

Anchor, in the same run: the biggest figure's data (GPU utilization per host and bucket, the fleet
heatmap) computed the cheapest way there is, one raw DuckDB scan of the same Parquet files, and the query
API's own frame() call for it; the page's time is printed as a ratio to both.

    .venv/bin/python bench/dashboard_speed.py --workdir /tmp/fw-dash          # 256 nodes x 7 days at 60 s
    .venv/bin/python bench/dashboard_speed.py --nodes 32 --days 2 --workdir /tmp/fw-dash-small   # quick check

The fleet is simulated and analyzed once into --workdir (`fleetwise simulate`, `fleetwise analyze`) and reused.
With --influx the same fleet (same seed) is also simulated at --influx-interval into a real influxd started
here (Debian's 1.6.7 on 127.0.0.1, bench/analyze_scale.py's loader: the measurements the analyzer reads, so
the node page has no memory, load or file-system panels there) and the telemetry pages are timed on it
against the 3 s goal; the run-backed pages do not read the store.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

START = "2026-11-16T00:00:00Z"
WIDTH = 1400


def prepare(work: Path, nodes: int, days: float, interval: float, seed: int) -> dict:
    """Simulate and analyze into work/ unless an earlier run with the same options did."""
    marker = work / "prepared.json"
    wanted = {"nodes": nodes, "days": days, "interval": interval, "seed": seed, "start": START}
    if marker.exists() and json.loads(marker.read_text()).get("fleet") == wanted:
        return {**json.loads(marker.read_text()), "reused": True}
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fleetwise", "simulate", "--nodes", str(nodes), "--days", str(days),
                    "--interval", str(interval), "--seed", str(seed), "--start", START,
                    "--store", f"embedded:{work / 'store'}"], check=True, cwd=REPO, capture_output=True)
    t1 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fleetwise", "analyze", "--store", f"embedded:{work / 'store'}",
                    "--state", str(work / "state"), "--every", "15m"], check=True, cwd=REPO, capture_output=True)
    done = {"fleet": wanted, "simulate_seconds": t1 - t0, "analyze_seconds": time.perf_counter() - t1}
    marker.write_text(json.dumps(done))
    return done


def timed(fn, repeat: int, before=None) -> dict:
    """First call (cold: DuckDB's file metadata and the OS cache not yet warm for this query) and the median of
    `repeat` more, each after before() (the dashboard's cache cleared: every call asks the store)."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    runs = []
    for _ in range(repeat):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return {"first": first, "median": statistics.median(runs) if runs else first}


def timed_pages(calls: dict, ctx, repeat: int) -> dict:
    """Each page: first call (a cold Context: its readers not yet open, nothing cached), median with the cache
    cleared before each call (every call asks the store), and, for the telemetry pages, the median of calls
    the cache answers (the same window again: auto-refresh within its interval, another resource or pool)."""
    from dashboard.data import runs

    def forget():
        ctx.cache.clear()
        runs.forget()

    out = {}
    for name, fn in calls.items():
        forget()
        r = timed(fn, repeat, forget)
        if name.startswith(("/fleet", "/node", "/workloads")):
            fn()
            r["cached"] = timed(fn, repeat)["median"]
        out[name] = r
    return out


def influx_pages(work: Path, args, state: Path) -> dict:
    """The telemetry pages timed on a real influxd holding the same fleet."""
    sys.path.insert(0, str(REPO / "bench"))
    from analyze_scale import DB, load_influx
    from analyze_scale import START as SCALE_START

    from tests.services import influxd

    assert SCALE_START == START
    load_args = argparse.Namespace(nodes=args.nodes, days=args.days, influx_interval=args.influx_interval,
                                   seed=args.seed)
    (work / "influxd").mkdir(exist_ok=True)
    with influxd(work / "influxd") as server:
        load = load_influx(server.url, work, load_args)
        store = "influxdb://" + server.url.split("://", 1)[1] + "/" + DB
        calls, _ = page_calls(store, state)
        times = {name: timed(fn, args.repeat) for name, fn in calls.items()
                 if name.startswith(("/fleet", "/node", "/alerts"))}
    return {"load": load, "pages": times}


def page_calls(store: str, state: Path) -> tuple[dict, object]:
    """(name -> zero-argument function running that page's callback(s) as the server would, the Context).
    The callbacks get what the server's get: ctx.reader() (its worker threads and cache) and ctx.run()."""
    from dashboard.context import Context
    from dashboard.pages import alerts, capacity, fleet, node, recommendations, workloads

    ctx = Context(store, state)
    gpu_host = sorted(ctx.reader().tag_values("gpu", "host"))[0]
    run = ctx.run()
    workload = sorted(run.model("throughput").matrix_.index)[0] if "throughput" in run.model_names() else None
    ctx._run = None  # the first /workloads call loads the run, as the server's first request does

    return {
        "/fleet (24h)": lambda: fleet.update(ctx.reader(), fleet.read({}), WIDTH),
        "/fleet (7d)": lambda: fleet.update(ctx.reader(), fleet.read({"range": "7d"}), WIDTH),
        "/fleet (7d, another resource)": lambda: fleet.update(ctx.reader(), fleet.read({"range": "7d",
                                                                                        "resource": "cpu"}), WIDTH),
        "/fleet (7d, click -> link)": lambda: fleet.node_link({"points": [{"y": gpu_host}]}, "7d", None),
        "/node (24h)": lambda: node.update(ctx.reader(), node.read({"node": gpu_host}), WIDTH),
        "/node (7d)": lambda: node.update(ctx.reader(), node.read({"node": gpu_host, "range": "7d"}), WIDTH),
        "/workloads": lambda: workloads.update(ctx.run(), workloads.read({"workload": workload})),
        "/recommendations": lambda: recommendations.update(ctx.run(), recommendations.read({})),
        "/alerts": lambda: alerts.update(ctx.reader(), None, alerts.read({})),
        "/capacity": lambda: capacity.update(ctx.run(), capacity.read({})),
    }, ctx


def anchors(store_dir: Path, reader, range_key: str) -> dict:
    """The fleet heatmap's data two ways: a raw DuckDB scan of the Parquet files, and Reader.frame()."""
    import duckdb

    from agents.query.base import parse_every
    from dashboard import timerange

    w = timerange.resolve(reader, range_key, None, WIDTH)
    every_s = parse_every(w.every) // 10**9
    files = [str(p) for p in sorted((store_dir / "gpu").rglob("*.parquet"))]
    con = duckdb.connect()
    sql = ("SELECT host, time_bucket(to_seconds(?), time) AS t, avg(utilization_ratio) "
           "FROM read_parquet(?) WHERE time >= ? AND time < ? GROUP BY 1, 2")

    def raw():
        return con.execute(sql, [every_s, files, w.start.to_pydatetime(), w.end.to_pydatetime()]).fetchall()

    def api():
        return reader.frame("gpu", ["utilization_ratio"], w.start, w.end, every=w.every, by=["host"])

    return {"window": f"{w.start} .. {w.end}, {w.every} buckets", "rows": len(raw()), "duckdb": raw, "api": api}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=256)
    ap.add_argument("--days", type=float, default=7)
    ap.add_argument("--interval", type=float, default=60)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", type=Path, required=True, help="where the fleet and its analysis are kept")
    ap.add_argument("--influx", action="store_true", help="also time the telemetry pages on a real influxd")
    ap.add_argument("--influx-interval", type=float, default=300)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    prep = prepare(args.workdir, args.nodes, args.days, args.interval, args.seed)
    store = f"embedded:{args.workdir / 'store'}"
    calls, ctx = page_calls(store, args.workdir / "state")
    results = timed_pages(calls, ctx, args.repeat)
    reader = ctx.thread_reader()
    anchor = {}
    for range_key in ("24h", "7d"):
        a = anchors(args.workdir / "store", reader, range_key)
        anchor[range_key] = {"window": a["window"], "rows": a["rows"], "duckdb": timed(a["duckdb"], args.repeat),
                             "api": timed(a["api"], args.repeat)}
    out = {"prepared": prep, "pages": results, "anchors": anchor, "goal_seconds": 1.0}
    if args.influx:
        out["influx"] = influx_pages(args.workdir, args, args.workdir / "state")
    if args.json:
        print(json.dumps(out, indent=1, default=str))
        return
    print(f"fleet: {args.nodes} nodes x {args.days:g} days at {args.interval:g} s "
          f"({'reused' if prep.get('reused') else 'prepared'}: simulate {prep['simulate_seconds']:.0f} s, "
          f"analyze {prep['analyze_seconds']:.0f} s)")
    for key, a in anchor.items():
        print(f"anchor {key}: {a['window']}, {a['rows']:,} cells: raw DuckDB scan {a['duckdb']['median']:.3f} s, "
              f"Reader.frame {a['api']['median']:.3f} s")
    print(f"{'page':<30} {'first s':>8} {'median s':>9} {'/ goal 1 s':>10} {'/ DuckDB scan':>13} {'/ frame()':>9}")
    for name, r in results.items():
        a = anchor["7d" if "7d" in name else "24h"]
        print(f"{name:<30} {r['first']:>8.3f} {r['median']:>9.3f} {r['median'] / 1.0:>10.2f} "
              f"{r['median'] / a['duckdb']['median']:>13.1f} {r['median'] / a['api']['median']:>9.1f}")
    if args.influx:
        inf = out["influx"]
        print(f"InfluxDB 1.6.7, the same fleet at {args.influx_interval:g} s ({inf['load'].get('points', '?')} points"
              f"{', reused' if inf['load'].get('reused') else ''}):")
        print(f"{'page':<30} {'first s':>8} {'median s':>9} {'/ goal 3 s':>10} {'/ embedded':>10}")
        for name, r in inf["pages"].items():
            print(f"{name:<30} {r['first']:>8.3f} {r['median']:>9.3f} {r['median'] / 3.0:>10.2f} "
                  f"{r['median'] / max(results[name]['median'], 1e-9):>10.1f}")


if __name__ == "__main__":
    main()
