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
    rollup_seconds: float = 0.0  # of seconds, the part spent rolling up the embedded store's days


def parse_start(text: str) -> int:
    """ISO 8601 (naive = UTC) -> ns since the epoch."""
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--start {text!r} is not an ISO 8601 time, e.g. 2026-11-20T00:00:00Z") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return int(t.timestamp()) * 10**9 + t.microsecond * 1000


# Bounds that keep a typo from becoming a hang or an out-of-memory kill: 100,000 nodes is beyond the largest
# fleets in the public traces; below one second a sample says nothing a real agent could (its floor is 0.1 s
# for collection, and nothing is sampled faster than 1 s in practice); ten years of days.
MAX_NODES, MAX_DAYS, MIN_INTERVAL, MAX_INTERVAL = 100_000, 3660, 1.0, 86400.0


def check_size(n_nodes: int, days: float, interval: float) -> None:
    """Raise ValueError naming the option that is out of range."""
    import math

    if not 1 <= n_nodes <= MAX_NODES:
        raise ValueError(f"--nodes {n_nodes}: give 1 to {MAX_NODES:,}")
    if not (math.isfinite(days) and 0 < days <= MAX_DAYS):
        raise ValueError(f"--days {days:g}: give a number of days above 0 and at most {MAX_DAYS}")
    if not (math.isfinite(interval) and MIN_INTERVAL <= interval <= MAX_INTERVAL):
        raise ValueError(f"--interval {interval:g}: give {MIN_INTERVAL:g} to {MAX_INTERVAL:g} seconds")
    if round(days * 86400 / interval) < 1:
        raise ValueError(f"--days {days:g} is shorter than one --interval {interval:g} s")


def plan(n_nodes: int, days: float, interval: float, seed: int, profile=None):
    """Fleet, jobs (placed, with truth) and the number of rounds; no emission."""
    import numpy as np

    from agents.simulate import scheduler, truth
    from agents.simulate.over_request import over_request_jobs
    from agents.simulate.profile import Profile, load_profile

    check_size(n_nodes, days, interval)
    prof = profile if isinstance(profile, Profile) else load_profile(profile)
    rounds = round(days * 86400 / interval)
    rng = np.random.Generator(np.random.PCG64(seed))
    nodes = scheduler.build_fleet(prof, n_nodes, rounds, rng)
    jobs = scheduler.generate_jobs(prof, nodes, rounds, interval, rng)
    jobs += over_request_jobs(prof.mix, nodes, rounds, interval, len(jobs))
    scheduler.Scheduler(nodes, rounds).run(jobs)
    for j in jobs:
        if j.start is not None:
            truth.derive(j, nodes)
    return prof, nodes, jobs, rounds


def simulate(nodes: int = 32, days: float = 3, interval: float = 60, seed: int = 1, store: str | None = None,
             profile=None, start: str = DEFAULT_START, truth_path: str | Path | None = None,
             sink=None, settings=None, rollup: bool = True) -> SimulationResult:
    """Generate the fleet into `store` (embedded:PATH or influxdb://...) or hand tables to `sink(name, table)`.

    An embedded store's days are complete once simulated: they are rolled up at the end (rollup=False: not),
    as maintenance would, so that the dashboard reads it as fast as a maintained store."""
    from agents.simulate import truth
    from agents.simulate.emit import Emitter

    t0 = time.perf_counter()
    start_ns = parse_start(start)
    prof, fleet, jobs, rounds = plan(nodes, days, interval, seed, profile)
    write, close, store_dir = _open_store(store, sink, settings)
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
    rolled = time.perf_counter()
    if store_dir is not None and rollup:
        from agents.stores.embedded import EmbeddedWriter

        EmbeddedWriter(store_dir).rollup()
    rolled = time.perf_counter() - rolled
    summary = summarize(fleet, jobs, em, rounds, interval)
    if truth_path is None and store_dir is not None:
        truth_path = store_dir / "truth.json"
    if truth_path is not None:
        meta = {"seed": seed, "node_count": len(fleet), "days": days, "interval_seconds": interval, "start": start,
                "profile": prof.name, "rounds": rounds}
        truth.write_truth(Path(truth_path), meta, fleet, jobs, interval, rounds,
                          {**summary, "job_used_gpu_hours": em.used_gpu_hours})
    return SimulationResult(len(fleet), rounds, sum(by_measurement.values()), time.perf_counter() - t0,
                            dict(by_measurement), Path(truth_path) if truth_path else None, summary, rolled)


def used_share(job) -> float:
    """The share of a job's held GPUs its program runs on (1 except for over-requested jobs)."""
    return 1.0 if job.devices_used is None else job.devices_used / job.devices_per_node


def summarize(fleet, jobs, em, rounds: int, interval: float) -> dict:
    placed = [j for j in jobs if j.start is not None]
    hours = rounds * interval / 3600
    total_gpu_hours = sum(n.cls.devices for n in fleet) * hours
    alloc = {j.id: j.devices_per_node * len(j.hosts) * (min(j.end, rounds) - j.start) * interval / 3600
             for j in placed}
    idle = sum(alloc[j.id] for j in placed if j.truth["bottleneck"] == "idle")
    unused = sum(alloc[j.id] * (1 - used_share(j)) for j in placed)
    return {
        "nodes_by_class": dict(Tally(n.cls.name for n in fleet)),
        "jobs_by_kind": dict(Tally(j.kind for j in jobs)),
        "jobs_placed": len(placed), "jobs_queued_at_end": len(jobs) - len(placed),
        "bottlenecks": dict(Tally(j.truth["bottleneck"] for j in placed)),
        "gpu_hours_total": total_gpu_hours,
        "gpu_hours_allocated": sum(alloc.values()),
        "gpu_hours_used": sum(em.used_gpu_hours.values()),
        "idle_gpu_hours_in_idle_jobs": idle,
        "unused_gpu_hours_in_over_requested_jobs": unused,
        "unallocated_gpu_hours": total_gpu_hours - sum(alloc.values()),
    }


def _open_store(store: str | None, sink, settings=None):
    """(write(name, table), close(), embedded directory or None), through the one store writer
    (agents.stores.writers.open_writer): the same batches, retries and quarantine as the agent and ingest."""
    if sink is not None:
        return sink, lambda: None, None
    if store is None:
        raise ValueError("give a store URL (embedded:PATH or influxdb://host:port/db)")
    from agents.schema import MEASUREMENTS
    from agents.stores.writers import open_writer

    writer = open_writer(store, settings)
    directory = writer.url.path if writer.url.kind == "embedded" else None
    return (lambda name, table: writer.write_table(name, table, MEASUREMENTS[name].tags)), writer.close, directory


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
