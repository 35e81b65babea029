"""Benchmark: `fleetwise analyze`, local engine vs `--engine dask` with N worker processes, on one simulated store.

The anchor is the local engine on the same store in the same run: the Dask figure is given as a ratio to it.

1. The fleet is simulated into an embedded store (bench/analyze_scale.py's simulate_embedded: `fleetwise
   simulate` in a child), or reused from --workdir.
2. Local: analyze() in a child process (bench/analyze_scale.py's measure: wall time, the child's VmHWM, the
   sampled RSS of its process tree).
3. Dask: a scheduler and N workers (`python -m distributed.cli.dask_scheduler` / `dask_worker --no-nanny
   --nthreads 1`, 127.0.0.1, no dashboard) started fresh for the run, then the same analyze() child as a Dask
   client (`engine=DaskEngine`); each process's peak RSS (VmHWM) is read from /proc before they are stopped.
   The child also reports the scheduler's task stream: compute seconds per store partition task (`run_task`:
   one measurement x one UTC day) and per batch of per-workload fits, and the client's per-query wall times.

    .venv/bin/python bench/analyze_dask.py --nodes 1000 --days 7 --workdir /tmp/fw-dask/n1000
    .venv/bin/python bench/analyze_dask.py --nodes 50 --days 2 --json          # quick check
    .venv/bin/python bench/analyze_dask.py --nodes 1000 --days 7 --workdir /tmp/fw-dask/n1000 --partition-costs
"""

from __future__ import annotations

import argparse
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

from bench.analyze_scale import measure, simulate_embedded  # noqa: E402 - after the path is set


def _vm_hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Cluster:
    """A dask scheduler and n single-threaded worker processes on 127.0.0.1, each its own OS process."""

    def __init__(self, workers: int, work: Path) -> None:
        self.file = work / "scheduler.json"
        self.file.unlink(missing_ok=True)
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": REPO}
        self.scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host",
                                           "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file",
                                           str(self.file)], **quiet)
        deadline = time.monotonic() + 120
        while not self.file.exists():
            if time.monotonic() > deadline or self.scheduler.poll() is not None:
                raise RuntimeError("the dask scheduler did not start")
            time.sleep(0.2)
        self.address = json.loads(self.file.read_text())["address"]
        self.workers = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", self.address,
                                          "--no-nanny", "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"],
                                         **quiet) for _ in range(workers)]
        from distributed import Client

        with Client(self.address, timeout=120) as c:
            c.wait_for_workers(workers, timeout=120)

    def peaks(self) -> dict:
        """Peak RSS and CPU seconds (user + system since start) of the scheduler and each worker."""
        import psutil

        def cpu(pid: int) -> float | None:
            try:
                return sum(psutil.Process(pid).cpu_times()[:2])
            except psutil.Error:
                return None

        return {"scheduler_mb": _vm_hwm_mb(self.scheduler.pid),
                "workers_mb": [_vm_hwm_mb(w.pid) for w in self.workers],
                "scheduler_cpu_seconds": cpu(self.scheduler.pid),
                "workers_cpu_seconds": [cpu(w.pid) for w in self.workers]}

    def stop(self) -> None:
        for p in [*self.workers, self.scheduler]:
            p.terminate()
        for p in [*self.workers, self.scheduler]:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def partitions(store: Path) -> dict:
    """Measurement -> number of day partitions (what one query over the whole window runs as tasks)."""
    from agents.stores import embedded

    return {m: len(embedded.day_dirs(store, m)) for m in sorted(embedded.measurement_dirs(store))}


def partition_costs(store: Path, days: float) -> dict:
    """In this process, no Dask: the job table through the single-query reader, then the job table and the demand
    series through PartitionedReader with a serial map that records each task's CPU seconds (getrusage: DuckDB's
    threads included), per measurement. What a Dask task costs without the transport and the machine's load."""
    import collections

    import pandas as pd

    from agents.query import open_reader
    from agents.query.partitioned import PartitionedReader, serial_map
    from analyzer.features import job_table
    from analyzer.forecast.demand import demand_series

    def cpu() -> float:
        u = resource.getrusage(resource.RUSAGE_SELF)
        return u.ru_utime + u.ru_stime

    per: dict = collections.defaultdict(lambda: {"tasks": 0, "cpu_seconds": 0.0})

    def timed(fn, items):
        out = []
        for task in items:
            c0 = cpu()
            out.append(fn(task))
            per[task.query.measurement]["tasks"] += 1
            per[task.query.measurement]["cpu_seconds"] += cpu() - c0
        return out

    result: dict = {}
    with open_reader(f"embedded:{store}") as local:
        end = local.time_bounds("job")[1].ceil("1D")
        start = end - pd.Timedelta(days=days)
        for name, reader in (("job_table_single_queries", local),
                             ("job_table_day_tasks", PartitionedReader(local, serial_map))):
            c0, t0 = cpu(), time.perf_counter()
            job_table(reader, start, end)
            result[name] = {"cpu_seconds": cpu() - c0, "wall_seconds": time.perf_counter() - t0,
                            "tasks": getattr(reader, "tasks_run", None)}
        timed_reader = PartitionedReader(local, timed)
        c0 = cpu()
        result["jobs"] = len(job_table(timed_reader, start, end))
        result["job_table_cpu_seconds"] = cpu() - c0
        c0 = cpu()
        demand_series(timed_reader, start, end)
        result["demand_cpu_seconds"] = cpu() - c0
    result["tasks"] = dict(per)
    return result


def _checkpoint(work: Path, result: dict) -> None:
    """What has been measured so far, in work/result.json: a long run cut short still leaves its figures."""
    (work / "result.json").write_text(json.dumps(result, indent=2))


def run(args, work: Path) -> dict:
    store = work / "embedded"
    since = f"{round(args.days * 24)}h"
    result: dict = {"nodes": args.nodes, "days": args.days, "interval": args.interval, "workers": args.workers,
                    "date": time.strftime("%Y-%m-%d", time.gmtime()), "cpus": os.cpu_count()}
    if not (store / "truth.json").exists():
        result["simulate"] = simulate_embedded(store, args.nodes, args.days, args.interval, args.seed)
        _checkpoint(work, result)
    result["store_mb"] = sum(p.stat().st_size for p in store.rglob("*") if p.is_file()) / 2**20
    result["partitions"] = partitions(store)
    if args.partition_costs:
        result["partition_costs"] = partition_costs(store, args.days)
        return result
    load0 = os.getloadavg()[0]
    result["local"] = measure(f"embedded:{store}", work / "state-local", since, args.every, args.cap_mb)
    result["local"]["loadavg_1m_before_after"] = [load0, os.getloadavg()[0]]
    _checkpoint(work, result)
    cluster = Cluster(args.workers, work)
    try:
        result["cluster_idle"] = cluster.peaks()  # started and connected, before any task: the baseline
        load0 = os.getloadavg()[0]
        result["dask"] = measure(f"embedded:{store}", work / "state-dask", since, args.every, args.cap_mb,
                                 scheduler=cluster.address)
        result["dask"]["loadavg_1m_before_after"] = [load0, os.getloadavg()[0]]
        result["dask"].update(cluster.peaks())
    finally:
        cluster.stop()
    return result


def report(r: dict) -> None:
    if "partition_costs" in r:
        pc = r["partition_costs"]
        print(f"{r['nodes']} nodes x {r['days']:g} days, in-process: job table "
              f"{pc['job_table_single_queries']['cpu_seconds']:.1f} CPU s with single queries, "
              f"{pc['job_table_day_tasks']['cpu_seconds']:.1f} CPU s as {pc['job_table_day_tasks']['tasks']} day "
              f"tasks; job table + demand {pc['job_table_cpu_seconds'] + pc['demand_cpu_seconds']:.1f} CPU s, of "
              f"which store tasks {sum(t['cpu_seconds'] for t in pc['tasks'].values()):.1f} s:")
        for m, t in sorted(pc["tasks"].items()):
            print(f"  {m:<14} {t['tasks']:>4} tasks {t['cpu_seconds']:6.2f} CPU s "
                  f"({t['cpu_seconds'] / t['tasks']:.3f} s a task)")
        return
    lo, da = r["local"], r["dask"]
    print(f"{r['nodes']} nodes x {r['days']:g} days at {r['interval']:g} s ({r['store_mb']:.0f} MB, "
          f"{sum(r['partitions'].values())} measurement-day partitions), {r['cpus']} CPUs, {r['date']}")
    if "killed_at_mb" in lo or "killed_at_mb" in da:
        print(f"  killed: local {lo.get('killed_at_mb')}, dask {da.get('killed_at_mb')}")
        return
    print(f"  local       analyze {lo['seconds']:.1f} s, peak RSS {lo['maxrss_self_mb']:.0f} MB "
          f"(with joblib workers {lo['peak_rss_tree_mb']:.0f} MB), load {lo['loadavg_1m_before_after']}")
    idle = r.get("cluster_idle", {})
    print(f"  CPU seconds: local client {lo.get('cpu_seconds', float('nan')):.0f}; dask client "
          f"{da.get('cpu_seconds', float('nan')):.0f}, workers "
          + ", ".join(f"{b - a:.0f}" for a, b in zip(idle.get("workers_cpu_seconds", []),
                                                       da.get("workers_cpu_seconds", []), strict=False))
          + f", scheduler {da['scheduler_cpu_seconds'] - idle.get('scheduler_cpu_seconds', 0):.0f} (during the run)")
    print(f"  dask x{r['workers']}     analyze {da['seconds']:.1f} s (ratio to local "
          f"{da['seconds'] / lo['seconds']:.2f}), client peak RSS {da['maxrss_self_mb']:.0f} MB, scheduler "
          f"{da['scheduler_mb']:.0f} MB, workers {', '.join(f'{w:.0f}' for w in da['workers_mb'])} MB, "
          f"load {da['loadavg_1m_before_after']}")
    for name, t in da.get("tasks", {}).items():
        print(f"    {name}: {t['tasks']} tasks, {t['compute_seconds']:.1f} s compute "
              f"({t['compute_seconds'] / max(t['tasks'], 1) * 1000:.0f} ms mean, max {t['max_seconds']:.2f} s)")
    print("  steps local: " + ", ".join(f"{k} {v:.1f}s" for k, v in lo["steps"].items()))
    print("  steps dask:  " + ", ".join(f"{k} {v:.1f}s" for k, v in da["steps"].items()))
    same = (lo["jobs"], lo["workloads"], lo["fitted"]) == (da["jobs"], da["workloads"], da["fitted"])
    print(f"  jobs {lo['jobs']} / {da['jobs']}, workloads {lo['workloads']} / {da['workloads']}, fitted "
          f"{lo['fitted']} / {da['fitted']}: {'same' if same else 'DIFFERENT'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--days", type=float, default=7)
    ap.add_argument("--interval", type=float, default=120, help="simulated sampling interval (s)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--every", default="5m")
    ap.add_argument("--cap-mb", type=float, default=8000, help="kill an analyze client tree above this RSS")
    ap.add_argument("--workdir", help="keep the store here (default: a temp dir, removed afterwards)")
    ap.add_argument("--partition-costs", action="store_true",
                    help="no Dask: CPU seconds of each store partition task, in this process (see partition_costs)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="fleetwise-dask-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        result = run(args, work)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)


if __name__ == "__main__":
    main()
