"""Benchmark: `fleetwise analyze` on a 1,000-node week, from the embedded store and from InfluxDB, in one run.

Goal (issue 5): analyze 1,000 nodes x 7 days from InfluxDB (aggregation pushed down to InfluxQL) and from the
embedded store in under 60 s on a 2-core machine, peak memory under 4 GB.

1. The simulator writes the fleet into an embedded store at --interval seconds (every measurement the agent
   emits), in a child process (`fleetwise simulate`).
2. The same fleet (same seed, so the same nodes and jobs) is simulated again at --influx-interval seconds and
   loaded into a real influxd started here (Debian's 1.6.7, 127.0.0.1, temp dir), keeping only the
   measurements the analyzer reads (INFLUX_MEASUREMENTS); line protocol is built column-wise with pyarrow and
   posted in batches, since Point-by-Point encoding would dominate the load time.
3. analyze() runs in a child process per store; wall time, the child's own peak RSS (VmHWM) and
   the peak RSS summed over the child and its joblib workers (psutil, sampled every 50 ms) are recorded, with
   the per-step seconds from the run's manifest.

    .venv/bin/python bench/analyze_scale.py --nodes 1000 --days 7 --interval 120 --influx-interval 300
    .venv/bin/python bench/analyze_scale.py --nodes 50 --days 2 --json          # quick check
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

START = "2026-11-16T00:00:00Z"  # a Monday: 7 days are whole UTC days (one embedded partition each)
DB = "fleet"
# What analyzer.features, analyzer.forecast.demand and the pipeline's window query read.
INFLUX_MEASUREMENTS = ("job", "job_gpu", "job_progress", "job_info", "gpu", "cpu", "cpu_info", "disk", "lustre",
                       "net", "infiniband")
BATCH_LINES = 20_000


# -- InfluxDB loading ----------------------------------------------------------------------------------------------

def _escape_tag(arr):
    import pyarrow.compute as pc

    for a, b in (("\\", "\\\\"), (",", "\\,"), ("=", "\\="), (" ", "\\ ")):
        arr = pc.replace_substring(arr, a, b)
    return arr


def _join_present(arrays):
    """Comma-join the non-null strings of each row (pyarrow's null_handling="skip" drops rows on some
    versions, so the skip is done pairwise here)."""
    import pyarrow.compute as pc

    acc = arrays[0]
    for nxt in arrays[1:]:
        both = pc.binary_join_element_wise(acc, nxt, ",", null_handling="emit_null")
        acc = pc.if_else(pc.is_null(acc), nxt, pc.if_else(pc.is_null(nxt), acc, both))
    return acc


def line_protocol(name: str, table, tags: tuple[str, ...]):
    """The table as InfluxDB line protocol, one string per row, built column-wise (nulls, NaNs, empty tags
    left out exactly as agents.points.Point.to_line leaves them out)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = table.combine_chunks()
    parts = [pa.array([name] * table.num_rows, pa.string())]
    tag_parts = []
    for t in tags:
        if t not in table.column_names:
            continue
        v = pc.cast(table.column(t).chunk(0) if table.num_rows else table.column(t).combine_chunks(), pa.string())
        v = pc.if_else(pc.equal(v, ""), pa.scalar(None, pa.string()), v)
        tag_parts.append(pc.binary_join_element_wise(f"{t}=", _escape_tag(v), "", null_handling="emit_null"))
    field_parts = []
    for f in table.column_names:
        if f == "time" or f in tags:
            continue
        col = table.column(f).combine_chunks()
        typ = col.type
        if pa.types.is_floating(typ):
            col = pc.if_else(pc.is_finite(col), col, pa.scalar(None, typ))
            text = pc.cast(col, pa.string())
        elif pa.types.is_integer(typ):
            text = pc.binary_join_element_wise(pc.cast(col, pa.string()), "i", "", null_handling="emit_null")
        elif pa.types.is_boolean(typ):
            text = pc.cast(col, pa.string())
        else:
            s = pc.cast(col, pa.string())
            s = pc.replace_substring(pc.replace_substring(s, "\\", "\\\\"), '"', '\\"')
            text = pc.binary_join_element_wise('"', s, '"', "", null_handling="emit_null")
        field_parts.append(pc.binary_join_element_wise(f"{f}=", text, "", null_handling="emit_null"))
    series = _join_present(parts + tag_parts)
    fields = _join_present(field_parts)
    if not field_parts:
        return pa.array([], pa.string())
    fields = pc.fill_null(fields, "")
    times = pc.cast(pc.cast(table.column("time").combine_chunks(), pa.int64()), pa.string())
    lines = pc.binary_join_element_wise(series, fields, times, " ")
    return lines.filter(pc.greater(pc.utf8_length(fields), 0))


class InfluxLoader:
    """sink(name, table) for agents.simulate.simulate: posts the analyzer's measurements to /write."""

    def __init__(self, base_url: str) -> None:
        from urllib.parse import urlsplit

        u = urlsplit(base_url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
        self.points = 0
        self.seconds_posting = 0.0
        self._query(f'CREATE DATABASE "{DB}"')

    def _query(self, q: str) -> None:
        from urllib.parse import urlencode

        self.conn.request("POST", "/query?" + urlencode({"q": q}))
        r = self.conn.getresponse()
        r.read()
        if r.status != 200:
            raise RuntimeError(f"influxd refused {q!r}: HTTP {r.status}")

    def __call__(self, name: str, table) -> None:
        from agents.schema import MEASUREMENTS

        if name not in INFLUX_MEASUREMENTS:
            return
        lines = line_protocol(name, table, tuple(MEASUREMENTS[name].tags))
        for off in range(0, len(lines), BATCH_LINES):
            chunk = lines.slice(off, BATCH_LINES).to_pylist()
            body = ("\n".join(chunk) + "\n").encode()
            t0 = time.perf_counter()
            self.conn.request("POST", f"/write?db={DB}&precision=ns", body=body)
            r = self.conn.getresponse()
            text = r.read()
            self.seconds_posting += time.perf_counter() - t0
            if r.status != 204:
                raise RuntimeError(f"influxd rejected a {name} batch: HTTP {r.status} {text[:300]!r}")
            self.points += len(chunk)


# -- measuring analyze() in a child process -----------------------------------------------------------------------

def _vm_hwm_mb() -> float:
    """This process's peak RSS since exec (VmHWM). Not getrusage's ru_maxrss: Linux carries that across fork
    and exec, so a child of a large parent would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(store: str, state: str, since: str, every: str, scheduler: str | None = None) -> None:
    """Runs in the child: analyze (on the Dask cluster at scheduler when given: bench/analyze_dask.py), then
    print one JSON line with its own figures."""
    from analyzer.pipeline import analyze

    extra: dict = {}
    engine = None
    if scheduler:
        from distributed import get_task_stream

        from analyzer.dask_engine import DaskEngine

        engine = DaskEngine.connect(scheduler)
    t0 = time.perf_counter()
    if engine is None:
        r = analyze(store, since=since, state_dir=state, n_jobs=-1, every=every)
    else:
        with get_task_stream(client=engine.client) as stream:
            r = analyze(store, since=since, state_dir=state, n_jobs=-1, every=every, engine=engine)
        extra = {"tasks": _task_costs(stream.data), "queries": engine.last_reader.log}
        engine.close()
    seconds = time.perf_counter() - t0
    m = r.run.manifest
    usage = resource.getrusage(resource.RUSAGE_SELF)
    extra["cpu_seconds"] = usage.ru_utime + usage.ru_stime  # this process's CPU, whatever the machine's load
    print(json.dumps({**extra,
        "seconds": seconds, "maxrss_self_mb": _vm_hwm_mb(),
        "jobs": r.jobs, "workloads": r.workloads, "fitted": len(r.fitted), "skipped": len(r.skipped),
        "failed": r.failed, "steps": {k: v["seconds"] for k, v in m["steps"].items()},
        "step_status": {k: v["status"] for k, v in m["steps"].items()},
    }))


def _task_costs(stream: list[dict]) -> dict:
    """Compute seconds of the Dask tasks by function (run_task: one store partition; _fit_one: per-workload
    fits, batched by joblib), from the scheduler's task stream."""
    out: dict = {}
    for t in stream:
        name = str(t["key"]).strip("('\"").split("-")[0]
        name = "run_task" if "run_task" in name else "_fit_one" if "_fit_one" in str(t["key"]) else name
        compute = sum(s["stop"] - s["start"] for s in t["startstops"] if s["action"] == "compute")
        c = out.setdefault(name, {"tasks": 0, "compute_seconds": 0.0, "max_seconds": 0.0})
        c["tasks"] += 1
        c["compute_seconds"] += compute
        c["max_seconds"] = max(c["max_seconds"], compute)
    return out


def measure_repeated(store: str, state: Path, since: str, every: str, cap_mb: float, repeat: int,
                     server_pid: int | None = None) -> dict:
    """measure() `repeat` times; the first run is reported, later ones under "repeats" (a freshly started
    influxd answers its first queries from cold caches), each with the machine's load average and, for
    InfluxDB, the CPU seconds influxd spent meanwhile (the machine is shared: say what else ran)."""
    import psutil

    runs = []
    for _ in range(max(repeat, 1)):
        server = psutil.Process(server_pid) if server_pid else None
        cpu0 = sum(server.cpu_times()[:2]) if server else 0.0
        load0 = os.getloadavg()[0]
        r = measure(store, state, since, every, cap_mb)
        r["loadavg_1m_before_after"] = [load0, os.getloadavg()[0]]
        if server:
            r["influxd_cpu_seconds"] = sum(server.cpu_times()[:2]) - cpu0
        runs.append(r)
    first = dict(runs[0])
    if len(runs) > 1:
        first["repeats"] = runs[1:]
    return first


def measure(store: str, state: Path, since: str, every: str, cap_mb: float, scheduler: str | None = None) -> dict:
    """analyze() in a child (a Dask client of scheduler when given); a child whose process tree passes cap_mb
    is killed (the machine is shared) and reported as such, with how far it got."""
    import psutil

    proc = subprocess.Popen([sys.executable, __file__, "--child", store, str(state), since, every,
                             *(["--child-scheduler", scheduler] if scheduler else [])],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    ps = psutil.Process(proc.pid)
    peak_tree = 0
    t0 = time.perf_counter()
    while proc.poll() is None:
        try:
            rss = ps.memory_info().rss + sum(c.memory_info().rss for c in ps.children(recursive=True))
            peak_tree = max(peak_tree, rss)
        except psutil.Error:
            pass
        if peak_tree > cap_mb * 2**20:
            for c in ps.children(recursive=True):
                c.kill()
            proc.kill()
            proc.wait()
            return {"killed_at_mb": peak_tree / 2**20, "seconds_until_killed": time.perf_counter() - t0,
                    "stderr_tail": proc.stderr.read()[-2000:]}
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"analyze child failed ({proc.returncode}):\n{err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result["wall_seconds_with_startup"] = wall
    result["peak_rss_tree_mb"] = peak_tree / 2**20
    return result


def simulate_embedded(store: Path, nodes: int, days: float, interval: float, seed: int) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "fleetwise", "simulate", "--nodes", str(nodes), "--days", str(days),
                          "--interval", str(interval), "--seed", str(seed), "--start", START,
                          "--store", f"embedded:{store}"], capture_output=True, text=True, cwd=REPO, check=True)
    size = sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
    return {"seconds": time.perf_counter() - t0, "output": out.stdout.strip().splitlines()[0],
            "size_mb": size / 2**20, "interval": interval}


def load_influx(base_url: str, work: Path, args) -> dict:
    """Simulate the fleet into influxd, or reuse what an earlier run with the same options loaded into
    work/influxd (influxd keeps its data dir there; a marker is written only after a complete load)."""
    from agents.simulate import simulate

    marker = work / "influx-load.json"
    wanted = {"nodes": args.nodes, "days": args.days, "interval": args.influx_interval, "seed": args.seed,
              "start": START, "measurements": list(INFLUX_MEASUREMENTS)}
    if marker.exists():
        done = json.loads(marker.read_text())
        if {k: done.get(k) for k in wanted} == wanted:
            return {**done, "reused": True}
        raise SystemExit(f"{work / 'influxd'} holds a fleet loaded with other options ({done}); "
                         "use another --workdir")
    loader = InfluxLoader(base_url)
    t0 = time.perf_counter()
    simulate(nodes=args.nodes, days=args.days, interval=args.influx_interval, seed=args.seed,
             start=START, sink=loader, truth_path=work / "influx-truth.json")
    done = {**wanted, "seconds": time.perf_counter() - t0, "points": loader.points,
            "seconds_posting": loader.seconds_posting}
    marker.write_text(json.dumps(done))
    return done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--days", type=float, default=7)
    ap.add_argument("--interval", type=float, default=120, help="embedded store sampling interval (s)")
    ap.add_argument("--influx-interval", type=float, default=300, help="InfluxDB sampling interval (s)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--skip-influx", action="store_true")
    ap.add_argument("--skip-embedded", action="store_true", help="measure InfluxDB only")
    ap.add_argument("--repeat", type=int, default=1,
                    help="analyze each store this many times (later runs: warm caches); all are reported")
    ap.add_argument("--load-only", action="store_true",
                    help="create (or reuse) the stores in --workdir, measure nothing")
    ap.add_argument("--workdir", help="keep the stores here (default: a temp dir, removed afterwards)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--every", default="5m",
                    help="analyze()'s bucket width(s), comma-separated: each is measured (default 5m, as analyze)")
    ap.add_argument("--cap-mb", type=float, default=8000,
                    help="kill an analyze child whose process tree passes this RSS (default 8000 MB)")
    ap.add_argument("--child", nargs=4, metavar=("STORE", "STATE", "SINCE", "EVERY"), help=argparse.SUPPRESS)
    ap.add_argument("--child-scheduler", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child, scheduler=args.child_scheduler)
        return
    since = f"{round(args.days * 24)}h"
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="fleetwise-analyze-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    result: dict = {"nodes": args.nodes, "days": args.days, "date": time.strftime("%Y-%m-%d", time.gmtime()),
                    "cpus": os.cpu_count(), "every": args.every}
    try:
        store = work / "embedded"
        if not args.skip_embedded and not (store / "truth.json").exists():
            result["embedded_simulate"] = simulate_embedded(store, args.nodes, args.days, args.interval, args.seed)
        for every in [] if args.skip_embedded or args.load_only else args.every.split(","):
            key = "embedded" if every == "5m" else f"embedded/{every}"
            result[key] = measure_repeated(f"embedded:{store}", work / "state-embedded", since, every, args.cap_mb,
                                           args.repeat)
            result[key].update(interval=args.interval, every=every)
        if not args.skip_influx:
            from tests.services import influxd

            (work / "influxd").mkdir(exist_ok=True)
            with influxd(work / "influxd") as server:
                result["influx_load"] = load_influx(server.url, work, args)
                url = server.url.replace("http://", "influxdb://") + f"/{DB}"
                for every in [] if args.load_only else args.every.split(","):
                    key = "influxdb" if every == "5m" else f"influxdb/{every}"
                    result[key] = measure_repeated(url, work / "state-influx", since, every, args.cap_mb,
                                                   args.repeat, server.proc.pid)
                    result[key].update(interval=args.influx_interval, every=every)
                import psutil

                result["influxd_rss_mb"] = psutil.Process(server.proc.pid).memory_info().rss / 2**20 \
                    if hasattr(server, "proc") else None
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{args.nodes} nodes x {args.days:g} days, {result['cpus']} CPUs, {result['date']}, every {args.every}")
    for key, r in result.items():
        if not (key.startswith("embedded") or key.startswith("influxdb")) or key == "embedded_simulate":
            continue
        if "killed_at_mb" in r:
            print(f"  {key:<9} KILLED at {r['killed_at_mb']:.0f} MB after {r['seconds_until_killed']:.0f} s "
                  "-> GOAL MISSED")
            continue
        for i, run in enumerate([r, *r.get("repeats", [])]):
            peak = max(run["maxrss_self_mb"], run["peak_rss_tree_mb"])
            ok = run["seconds"] < 60 and peak < 4096
            label = key if not i else f"  run {i + 1}"
            print(f"  {label:<12} interval {r['interval']:g} s: analyze {run['seconds']:.1f} s "
                  f"(process {run['wall_seconds_with_startup']:.1f} s), peak RSS {run['maxrss_self_mb']:.0f} MB "
                  f"(sampled, with workers {run['peak_rss_tree_mb']:.0f} MB), {run['jobs']} jobs, "
                  f"{run['workloads']} workloads, {run['fitted']} fitted / {run['skipped']} not, load average "
                  f"{run['loadavg_1m_before_after'][0]:.1f}->{run['loadavg_1m_before_after'][1]:.1f}"
                  + (f", influxd CPU {run['influxd_cpu_seconds']:.0f} s" if "influxd_cpu_seconds" in run else "")
                  + f" -> {'goal met' if ok else 'GOAL MISSED'}")
            print("            steps: " + ", ".join(f"{k} {v:.1f}s" for k, v in run["steps"].items()))
    if "embedded_simulate" in result:
        sim = result["embedded_simulate"]
        print(f"  embedded store: {sim['output']} ({sim['size_mb']:.0f} MB on disk)")
    if "influx_load" in result:
        lo = result["influx_load"]
        rate = lo["points"] / lo["seconds"]
        print(f"  influx load: {lo['points']:,} points in {lo['seconds']:.0f} s ({rate:,.0f}/s)"
              + (f" (loaded earlier into {work / 'influxd'}, reused)" if lo.get("reused") else ""))


if __name__ == "__main__":
    main()
