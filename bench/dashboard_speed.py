"""Benchmark: every dashboard page's callbacks, timed server-side, on 256 nodes x 7 days, in the embedded store
and in a real influxd holding the same points.

Goal (issue 10): each page's callbacks answer in under 1 s of server time from the embedded store, under 3 s
from InfluxDB. The callbacks are called directly (what a browser's request runs, minus HTTP and JSON) through a
dashboard Context, as the server calls them (its query workers, its cache), each page at its default view and
the telemetry pages also over the whole week, on a 1400-pixel-wide plot. Per page: the first call (a fresh
Context: readers not yet open, nothing cached), the median of --repeat calls with the dashboard's caches
cleared before each (every call asks the store), and the median of calls the cache answers (the same window
again: a refresh within its interval, another heatmap resource or pool).

Anchors, in the same run: the biggest figure's data (GPU utilization per host and bucket, the fleet heatmap)
computed the cheapest way there is: one raw DuckDB scan of the same Parquet files (and the query API's own
frame() call), and on InfluxDB one raw InfluxQL statement (mean GROUP BY time, host); each page's median is
printed as a ratio to the anchor of its window.

    .venv/bin/python bench/dashboard_speed.py --workdir /tmp/fw-dash                  # embedded, 256 nodes x 7 days
    .venv/bin/python bench/dashboard_speed.py --workdir /tmp/fw-dash --store both     # and on influxd
    .venv/bin/python bench/dashboard_speed.py --nodes 32 --days 2 --workdir /tmp/fw-dash-small   # quick check

The fleet is simulated and analyzed once into --workdir (`fleetwise simulate`, `fleetwise analyze`) and reused
(a prepared.json written by hand for a fleet prepared elsewhere is honoured too).
With --store influxdb (or both) Debian's influxd 1.6.7 is started on 127.0.0.1 with its data in
--workdir/influxd, the deploy's database, retention policies and continuous queries created from
deploy/influxdb/influxdb-1x.iql, the embedded store's points of the fields the dashboard reads copied in
(bench/influx_bulk_load.py), and the week's rollups at the deploy's three levels (5 minutes, 15 minutes, 1
hour) written as the continuous queries would have (sums and counts per series, computed by DuckDB: influxd
1.6.7 running the queries' own SELECT ... INTO over the week is too slow on a 2-core machine); all reused on
a rerun (influx-load.json). Every page is then timed through the rollups
(`?rollup=five_minutes,fifteen_minutes,one_hour`), with the CPU seconds influxd spent on each uncached call
(read from /proc); with --influx-raw the telemetry pages also once each on the raw points alone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agents.query.base import parse_every  # noqa: E402
from agents.query.influx import DEPLOY_COMPANIONS as COMPANIONS  # noqa: E402 - the companions beside each level
from agents.query.influx import DEPLOY_ROLLUPS  # noqa: E402

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


def timed(fn, repeat: int, before=None, cpu=None) -> dict:
    """First call (cold: DuckDB's file metadata and the OS cache not yet warm for this query) and the median of
    `repeat` more, each after before() (the dashboard's cache cleared: every call asks the store); with cpu (a
    function giving a server's CPU seconds so far), also the median CPU seconds the server spent on a call."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    runs, spent = [], []
    for _ in range(repeat):
        if before is not None:
            before()
        c0 = cpu() if cpu else 0.0
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
        spent.append(cpu() - c0 if cpu else 0.0)
    out = {"first": first, "median": statistics.median(runs) if runs else first}
    if cpu and spent:
        out["server_cpu"] = statistics.median(spent)
    return out


def process_cpu(pid: int):
    """A function giving the CPU seconds (user + system) process pid has used so far (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")

    def seconds() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick

    return seconds


def timed_pages(calls: dict, ctx, repeat: int, cpu=None) -> dict:
    """Each page: first call (a cold Context: its readers not yet open, nothing cached), median with the cache
    cleared before each call (every call asks the store; with cpu, see timed(), and the server's CPU seconds
    for it), and, for the telemetry pages, the median of calls the cache answers (the same window again:
    auto-refresh within its interval, another resource or pool)."""
    from dashboard.data import runs

    def forget():
        ctx.cache.clear()
        runs.forget()

    out = {}
    for name, fn in calls.items():
        forget()
        r = timed(fn, repeat, forget, cpu)
        if name.startswith(("/fleet", "/node", "/workloads")):
            fn()
            r["cached"] = timed(fn, repeat)["median"]
        out[name] = r
        print(f"{name}: first {r['first']:.3f} s, median {r['median']:.3f} s"
              + (f", cached {r['cached']:.3f} s" if "cached" in r else "")
              + (f", server CPU {r['server_cpu']:.3f} s" if "server_cpu" in r else ""), file=sys.stderr, flush=True)
    return out


# What the dashboard reads of each measurement (dashboard/data/fleet.py's queries, node.PANELS, node.jobs,
# gpus and ports): the fields copied into influxd. InfluxDB keeps each field apart, so the agents' other
# fields would change the load's time, not a query's.
DASHBOARD_FIELDS = {
    "cpu": ["busy_ratio", "iowait_ratio"], "cpu_info": ["arch", "threads"], "memory": ["used_ratio"],
    "system": ["load1"],
    "gpu": ["utilization_ratio", "memory_used_bytes", "memory_total_bytes", "power_watts", "temperature_celsius"],
    "infiniband": ["xmit_bytes_per_second", "rcv_bytes_per_second", "rate_bytes_per_second"],
    "net": ["rx_bytes_per_second", "tx_bytes_per_second", "speed_bytes_per_second"],
    "disk": ["read_bytes_per_second", "write_bytes_per_second", "busy_ratio"], "filesystem": ["used_ratio"],
    "job": ["cpus_allocated"], "job_gpu": ["utilization_ratio"],
}
IQL = REPO / "deploy" / "influxdb" / "influxdb-1x.iql"


def influx_query(base: str, q: str, db: str = "") -> dict:
    import urllib.parse
    import urllib.request

    body = urllib.parse.urlencode({"q": q, **({"db": db} if db else {})}).encode()
    with urllib.request.urlopen(urllib.request.Request(base + "/query", data=body, method="POST"), timeout=3600) as r:
        doc = json.loads(r.read())
    for result in doc.get("results", []):
        if result.get("error"):
            raise RuntimeError(f"influxd: {result['error']} ({q[:120]})")
    return doc


def influx_prepare(base: str, work: Path, store_dir: Path, prep: dict) -> dict:
    """The deploy's database, retention policies and continuous query (deploy/influxdb/influxdb-1x.iql), the
    embedded store's points copied in (bench/influx_bulk_load.py), and the five-minute rollup of the week
    written as the continuous query would have; reused when work/influx-load.json says so."""
    from influx_bulk_load import load

    marker = work / "influx-load.json"
    wanted = {"fleet": prep["fleet"], "fields": DASHBOARD_FIELDS}
    done = json.loads(marker.read_text()) if marker.exists() else None
    if done is not None and done.get("wanted") != wanted:
        raise SystemExit(f"{work / 'influxd'} holds another load ({done.get('wanted')}); use another --workdir")
    if done is None:
        for line in IQL.read_text().splitlines():
            if line.strip() and not line.startswith("--"):
                influx_query(base, line)
        done = {"wanted": wanted, "load": load(store_dir, base, "fleet", DASHBOARD_FIELDS)}
        marker.write_text(json.dumps(done))  # a failed backfill does not load the points again
    # The rollups, as the deploy's continuous queries would have written them over the week: their sums and
    # counts per series and bucket of the fields read in buckets, computed by DuckDB from the same Parquet files
    # and written into each level's retention policy. Running the continuous query's own SELECT ... INTO over
    # the week took influxd 1.6.7 over four minutes for part of the first day on this machine
    # (tests/test_influx_rollup.py runs them, on a small fleet, and checks the reader against the raw points).
    # Each level is written once (a level added later is written on the next run, the others reused).
    rolled = {m: f for m, f in DASHBOARD_FIELDS.items() if m not in ("cpu_info", "job")}  # read whole-window only
    done.setdefault("rollups", {})
    if "rollup" in done:  # the five-minute level of an earlier run
        done["rollups"].setdefault("five_minutes", done["rollup"])
    reused = True
    for rp, seconds in ROLLUP_LEVELS.items():
        if rp not in done["rollups"]:
            for line in IQL.read_text().splitlines():  # an influxd loaded before this level was deployed lacks it
                if line.startswith(f'CREATE RETENTION POLICY "{rp}"'):
                    influx_query(base, line)
            done["rollups"][rp] = load(store_dir, base, "fleet", rolled, rp=rp, rollup_every_s=seconds)
            marker.write_text(json.dumps(done))
            reused = False
        by = f"{rp} by {ROLLUP_BY}"  # the level's companions (gpu per host, job_gpu per GPU)
        if by not in done["rollups"]:
            done["rollups"][by] = load(store_dir, base, "fleet", rolled, rp=rp, rollup_every_s=seconds,
                                       companions=COMPANIONS)
            marker.write_text(json.dumps(done))
            reused = False
    return {**done, "reused": reused}


# the deploy's rollup levels (deploy/influxdb/influxdb-1x.iql) and their bucket widths in seconds
ROLLUP_LEVELS = {rp: parse_every(width) // 10**9 for rp, width in DEPLOY_ROLLUPS.items()}
ROLLUP_BY = ",".join(":".join((m, *tags)) for m, tags in COMPANIONS.items())
ROLLUP_URL = "?rollup=" + ",".join(ROLLUP_LEVELS) + "&rollup_by=" + ROLLUP_BY


def influx_pages(work: Path, args, state: Path, prep: dict) -> dict:
    """Every page timed on a real influxd holding the same fleet, reading the deploy's rollups where a query
    allows (ROLLUP_URL: the coarsest level whose bucket divides the query's) and, with --influx-raw, the
    telemetry pages once each on the raw points alone."""
    sys.path.insert(0, str(REPO / "bench"))
    from tests.services import influxd

    (work / "influxd").mkdir(exist_ok=True)
    out: dict = {}
    with influxd(work / "influxd") as server:
        out["prepared"] = influx_prepare(server.url, work, work / "store", prep)
        store = "influxdb://" + server.url.split("://", 1)[1] + "/fleet"
        out["anchor"] = influx_anchor(store)
        # raw: one (cold) call a page: a week's gpu aggregate at full resolution takes influxd minutes here
        modes = [("rollup", store + ROLLUP_URL, args.repeat)] + ([("raw", store, 0)] if args.influx_raw else [])
        for label, url, repeat in modes:
            calls, ctx = page_calls(url, state)
            calls = {k: v for k, v in calls.items()
                     if label == "rollup" or (k.startswith(("/fleet", "/node")) and "another resource" not in k)}
            print(f"InfluxDB, {label}:", file=sys.stderr, flush=True)
            out[label] = timed_pages(calls, ctx, repeat, process_cpu(server.proc.pid))
    return out


def influx_anchor(store: str) -> dict:
    """One raw InfluxQL statement for the fleet heatmap's data (mean GPU utilization per host and bucket over
    the window), timed as influxd answers it (the HTTP answer read, not parsed), and the same numbers from the
    rollup level the reader picks for that bucket (sum of sums over sum of counts)."""
    from agents.query import open_reader
    from agents.query.base import AggregateQuery
    from dashboard import timerange

    out = {}
    with open_reader(store + ROLLUP_URL) as reader:
        for key in ("24h", "7d"):
            w = timerange.resolve(reader, key, None, WIDTH)
            where = f' WHERE time >= {w.start.value} AND time < {w.end.value} GROUP BY time({w.every}), "host"'
            level = reader._rollup_level(AggregateQuery.build("gpu", {"m": ("utilization_ratio", "mean")}, w.start,
                                                              w.end, w.every, (), ()), [("mean", "utilization_ratio")])
            statements = {"raw": 'SELECT mean("utilization_ratio") FROM "gpu"' + where,
                          "rollup": 'SELECT sum("sum_utilization_ratio") / sum("count_utilization_ratio") FROM '
                                    f'"fleet"."{level}"."gpu"' + where}
            base = reader.url.base_url

            def run(q, base=base):
                import urllib.parse
                import urllib.request

                body = urllib.parse.urlencode({"q": q, "db": "fleet", "epoch": "ns"}).encode()
                with urllib.request.urlopen(urllib.request.Request(base + "/query", data=body), timeout=600) as r:
                    return len(r.read())

            out[key] = {"window": f"{w.start} .. {w.end}, {w.every} buckets", "level": level, "query": statements,
                        **timed(lambda q=statements["raw"]: run(q), 2),
                        "rollup": timed(lambda q=statements["rollup"]: run(q), 2)}
    return out


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
    ap.add_argument("--store", choices=("embedded", "influxdb", "both"), default="embedded",
                    help="time the pages on the embedded store, on a real influxd holding the same points, or both")
    ap.add_argument("--influx-raw", action="store_true",
                    help="also time the telemetry pages once each on influxd's raw points (a week takes minutes)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    prep = prepare(args.workdir, args.nodes, args.days, args.interval, args.seed)
    out: dict = {"prepared": prep, "date": time.strftime("%Y-%m-%d", time.gmtime()), "loadavg": os.getloadavg()}
    if args.store in ("embedded", "both"):
        calls, ctx = page_calls(f"embedded:{args.workdir / 'store'}", args.workdir / "state")
        out["pages"] = timed_pages(calls, ctx, args.repeat)
        reader = ctx.thread_reader()
        out["anchors"] = {}
        for range_key in ("24h", "7d"):
            a = anchors(args.workdir / "store", reader, range_key)
            out["anchors"][range_key] = {"window": a["window"], "rows": a["rows"],
                                         "duckdb": timed(a["duckdb"], args.repeat), "api": timed(a["api"], args.repeat)}
    if args.store in ("influxdb", "both"):
        out["influx"] = influx_pages(args.workdir, args, args.workdir / "state", prep)
    out["loadavg_after"] = os.getloadavg()
    if args.json:
        print(json.dumps(out, indent=1, default=str))
        return
    report(out, args)


def report(out: dict, args) -> None:
    prep = out["prepared"]
    nan = float("nan")  # a marker written by hand (a fleet prepared elsewhere) has no times
    print(f"fleet: {args.nodes} nodes x {args.days:g} days at {args.interval:g} s "
          f"({'reused' if prep.get('reused') else 'prepared'}: simulate {prep.get('simulate_seconds', nan):.0f} s, "
          f"analyze {prep.get('analyze_seconds', nan):.0f} s); load average {out['loadavg'][0]:.1f} / "
          f"{out['loadavg'][1]:.1f} / {out['loadavg'][2]:.1f} before, {out['loadavg_after'][0]:.1f} (1 min) after")
    head = f"{'page':<32} {'first s':>8} {'median s':>9} {'cached s':>9} {'/ goal':>7} {'/ anchor':>9}"
    if "pages" in out:
        for key, a in out["anchors"].items():
            print(f"anchor {key}: {a['window']}, {a['rows']:,} cells: raw DuckDB scan {a['duckdb']['median']:.3f} s, "
                  f"Reader.frame {a['api']['median']:.3f} s")
        print("embedded store (goal 1 s; anchor: the raw DuckDB scan of the same window)")
        print(head)
        for name, r in out["pages"].items():
            a = out["anchors"]["7d" if "7d" in name else "24h"]["duckdb"]["median"]
            _row(name, r, 1.0, a)
    if "influx" in out:
        inf = out["influx"]
        p = inf["prepared"]
        levels = ", ".join(f"{rp} {r['lines']:,} lines in {r['seconds']:.0f} s" for rp, r in p["rollups"].items())
        print(f"InfluxDB (Debian's influxd 1.6.7), the same points ({p['load']['lines']:,} lines loaded in "
              f"{p['load']['seconds']:.0f} s; rollups written: {levels}{'; reused' if p.get('reused') else ''})")
        for key, a in inf["anchor"].items():
            print(f"anchor {key}: {a['window']}: InfluxQL mean GROUP BY time, host: raw points first {a['first']:.3f}"
                  f" s, median {a['median']:.3f} s; from {a['level']} median {a['rollup']['median']:.3f} s")
        for label in ("rollup", "raw"):
            if label not in inf:
                continue
            print(f"InfluxDB, {label} (goal 3 s; anchor: the raw InfluxQL statement of the same window)")
            print(head + f" {'influxd CPU s':>14}")
            for name, r in inf[label].items():
                _row(name, r, 3.0, inf["anchor"]["7d" if "7d" in name else "24h"]["median"])


def _row(name: str, r: dict, goal: float, anchor: float) -> None:
    cached = f"{r['cached']:>9.3f}" if "cached" in r else f"{'-':>9}"
    server = f" {r['server_cpu']:>14.3f}" if "server_cpu" in r else ""
    print(f"{name:<32} {r['first']:>8.3f} {r['median']:>9.3f} {cached} {r['median'] / goal:>7.2f} "
          f"{r['median'] / max(anchor, 1e-9):>9.1f}{server}")


if __name__ == "__main__":
    main()
