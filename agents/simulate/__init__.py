"""The fleet simulator: a heterogeneous fleet with known ground truth, written as the agent would.

    simulate(nodes=32, days=3, interval=60, seed=1, store="embedded:./var/demo-store")

Builds the fleet from a profile (profile.py, hardware.py), draws jobs and places them (scheduler.py),
derives each job's true behaviour (truth.py, workloads.py), then generates the agent's measurements
column-wise one UTC day at a time (emit.py) into the store, and writes truth.json beside the data.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter as Tally
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_START = "2026-11-20T00:00:00Z"


@dataclass
class SimulationResult:
    nodes: int
    rounds: int
    rows: int
    seconds: float
    rows_by_measurement: dict[str, int]
    truth_path: Path | None
    summary: dict = field(default_factory=dict)


def parse_start(text: str) -> int:
    """ISO 8601 (naive = UTC) -> ns since the epoch."""
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--start {text!r} is not an ISO 8601 time, e.g. 2026-11-20T00:00:00Z") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return int(t.timestamp()) * 10**9 + t.microsecond * 1000


def plan(n_nodes: int, days: float, interval: float, seed: int, profile=None):
    """Fleet, jobs (placed, with truth) and the number of rounds; no emission."""
    import numpy as np

    from agents.simulate import scheduler, truth
    from agents.simulate.profile import Profile, load_profile

    if n_nodes < 1 or days <= 0 or interval <= 0:
        raise ValueError("nodes, days and interval must be positive")
    prof = profile if isinstance(profile, Profile) else load_profile(profile)
    rounds = round(days * 86400 / interval)
    rng = np.random.Generator(np.random.PCG64(seed))
    nodes = scheduler.build_fleet(prof, n_nodes, rounds, rng)
    jobs = scheduler.generate_jobs(prof, nodes, rounds, interval, rng)
    scheduler.Scheduler(nodes, rounds).run(jobs)
    for j in jobs:
        if j.start is not None:
            truth.derive(j, nodes)
    return prof, nodes, jobs, rounds


def simulate(nodes: int = 32, days: float = 3, interval: float = 60, seed: int = 1, store: str | None = None,
             profile=None, start: str = DEFAULT_START, truth_path: str | Path | None = None,
             sink=None) -> SimulationResult:
    """Generate the fleet into `store` (embedded:PATH or influxdb://...) or hand tables to `sink(name, table)`."""
    from agents.simulate import truth
    from agents.simulate.emit import Emitter

    t0 = time.perf_counter()
    start_ns = parse_start(start)
    prof, fleet, jobs, rounds = plan(nodes, days, interval, seed, profile)
    write, close, store_dir = _open_store(store, sink)
    em = Emitter(fleet, jobs, start_ns, interval, rounds, seed, noise_scale=prof.noise_scale)
    by_measurement: Tally = Tally()
    # Chunks end at UTC midnights so each embedded day partition gets one file per measurement.
    # One writer thread: Parquet encoding and numpy both release the GIL, so writing day k overlaps
    # generating day k+1 on a second core; waiting before the next submit bounds memory to two days.
    from concurrent.futures import ThreadPoolExecutor

    def write_all(tables: dict) -> None:
        for name, table in tables.items():
            if table.num_rows:
                write(name, table)

    r0 = 0
    ns_day = 86400 * 10**9
    step_ns = int(interval * 1e9)
    pending = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="simulate-write") as pool:
        while r0 < rounds:
            t_start = start_ns + r0 * step_ns
            next_midnight = (t_start // ns_day + 1) * ns_day
            r1 = min(rounds, r0 + max(1, -(-(next_midnight - t_start) // step_ns)))
            tables = em.chunk(r0, r1)
            for name, table in tables.items():
                by_measurement[name] += table.num_rows
            if pending is not None:
                pending.result()
            pending = pool.submit(write_all, tables)
            r0 = r1
        if pending is not None:
            pending.result()
    close()
    summary = summarize(fleet, jobs, em, rounds, interval)
    if truth_path is None and store_dir is not None:
        truth_path = store_dir / "truth.json"
    if truth_path is not None:
        meta = {"seed": seed, "node_count": len(fleet), "days": days, "interval_seconds": interval, "start": start,
                "profile": prof.name, "rounds": rounds}
        truth.write_truth(Path(truth_path), meta, fleet, jobs, interval, rounds,
                          {**summary, "job_used_gpu_hours": em.used_gpu_hours})
    return SimulationResult(len(fleet), rounds, sum(by_measurement.values()), time.perf_counter() - t0,
                            dict(by_measurement), Path(truth_path) if truth_path else None, summary)


def summarize(fleet, jobs, em, rounds: int, interval: float) -> dict:
    placed = [j for j in jobs if j.start is not None]
    hours = rounds * interval / 3600
    total_gpu_hours = sum(n.cls.devices for n in fleet) * hours
    alloc = {j.id: j.devices_per_node * len(j.hosts) * (min(j.end, rounds) - j.start) * interval / 3600
             for j in placed}
    idle = sum(alloc[j.id] for j in placed if j.truth["bottleneck"] == "idle")
    return {
        "nodes_by_class": dict(Tally(n.cls.name for n in fleet)),
        "jobs_by_kind": dict(Tally(j.kind for j in jobs)),
        "jobs_placed": len(placed), "jobs_queued_at_end": len(jobs) - len(placed),
        "bottlenecks": dict(Tally(j.truth["bottleneck"] for j in placed)),
        "gpu_hours_total": total_gpu_hours,
        "gpu_hours_allocated": sum(alloc.values()),
        "gpu_hours_used": sum(em.used_gpu_hours.values()),
        "idle_gpu_hours_in_idle_jobs": idle,
        "unallocated_gpu_hours": total_gpu_hours - sum(alloc.values()),
    }


def _open_store(store: str | None, sink):
    if sink is not None:
        return sink, lambda: None, None
    if store is None:
        raise ValueError("give a store URL (embedded:PATH or influxdb://host:port/db)")
    from agents.stores.url import parse_store_url

    url = parse_store_url(store)
    if url.kind == "embedded":
        from agents.schema import MEASUREMENTS
        from agents.stores.embedded import EmbeddedWriter

        writer = EmbeddedWriter(url.path)
        return (lambda name, table: writer.write_table(name, table, MEASUREMENTS[name].tags)), (lambda: None), url.path
    return _influx_writer(url)


def _influx_writer(url):
    """Line protocol in small batches through the project's InfluxDB writers."""
    from agents.points import Point
    from agents.schema import MEASUREMENTS
    from agents.stores.influxdb import InfluxV1Writer, InfluxV2Writer
    from agents.stores.result import Outcome
    from agents.stores.secrets import influx_credentials

    creds = influx_credentials(url.user)
    w = InfluxV1Writer(url, creds) if url.kind == "influxdb" else InfluxV2Writer(url, creds)
    if url.kind == "influxdb":
        w.ensure_database()
    batch_lines = 5000

    def write(name: str, table) -> None:
        tags = MEASUREMENTS[name].tags
        for batch in table.to_batches(max_chunksize=batch_lines):
            cols = batch.to_pydict()
            times = batch.column("time").cast("int64").to_pylist()
            lines = []
            for k, t_ns in enumerate(times):
                fields = {f: cols[f][k] for f in cols if f != "time" and f not in tags and cols[f][k] is not None}
                if fields:
                    lines.append(Point(name, {t: cols[t][k] for t in tags}, fields, t_ns).to_line())
            result = w.send(("\n".join(lines) + "\n").encode())
            if result.outcome is not Outcome.OK:
                raise RuntimeError(f"InfluxDB rejected a {name} batch: {result}")

    return write, w.close, None


def demo(store: str = "embedded:./var/demo-store", nodes: int = 32, days: float = 3, interval: float = 60,
         seed: int = 1) -> SimulationResult:
    """The `make demo` part: simulate a small fleet and print what it is and what it wasted."""
    import shutil

    url_path = Path(store[len("embedded:"):]) if store.startswith("embedded:") else None
    if url_path is not None and (url_path / "truth.json").exists():
        shutil.rmtree(url_path)  # a rerun replaces the previous demo store instead of doubling it
    r = simulate(nodes=nodes, days=days, interval=interval, seed=seed, store=store)
    s = r.summary
    print(f"\nsimulated fleet: {r.nodes} nodes x {days:g} days at {interval:g} s -> {store} "
          f"({r.rows:,} rows in {r.seconds:.1f} s; ground truth in {r.truth_path})")
    print("  nodes by class: " + ", ".join(f"{k} {v}" for k, v in s["nodes_by_class"].items()))
    print("  jobs by kind:   " + ", ".join(f"{k} {v}" for k, v in sorted(s["jobs_by_kind"].items())))
    print(f"  GPU-hours: {s['gpu_hours_total']:,.0f} available, {s['gpu_hours_allocated']:,.0f} allocated, "
          f"{s['gpu_hours_used']:,.0f} used (utilization-weighted)")
    print(f"  true idle GPU-hours (allocated to jobs that never used them): {s['idle_gpu_hours_in_idle_jobs']:,.0f}")
    return r
