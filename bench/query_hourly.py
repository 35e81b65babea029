"""Benchmark: hourly means per host over N days, embedded store vs InfluxDB, in one run.

Generates HOSTS hosts x DAYS days at INTERVAL seconds of cpu busy_ratio (cpu="total") and gpu
utilization_ratio (gpu="0"), loads them into the embedded store (pyarrow, straight from numpy) and
into a real influxd started here (line protocol over HTTP /write in batches), then times
Reader.frame(..., every="1h", by=["host"]) for both measurements through agents.query on each store.

InfluxDB loading is slow on small machines, so --influx-hosts can load fewer hosts there; the
embedded store is then measured at both sizes, and the frames at the common size must be equal.

    .venv/bin/python bench/query_hourly.py --hosts 256 --days 7 --influx-hosts 64
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402

from agents.query import open_reader  # noqa: E402
from agents.stores.embedded import EmbeddedWriter  # noqa: E402

T0 = pd.Timestamp("2026-11-16T00:00:00Z").value  # a Monday, so 7 days are whole UTC days
DB = "bench"


def series(hosts: int, day: int, interval_s: int, seed: int):
    """times (ns), host index, value arrays for one day of all hosts."""
    per_host = 86_400 // interval_s
    t = T0 + day * 86_400 * 10**9 + np.arange(per_host, dtype=np.int64) * interval_s * 10**9
    rng = np.random.default_rng(seed * 1000 + day)
    times = np.tile(t, hosts)
    host = np.repeat(np.arange(hosts), per_host)
    base = rng.uniform(0.05, 0.9, hosts)[host]
    values = np.clip(base + rng.normal(0, 0.08, hosts * per_host), 0.0, 1.0)
    return times, host, values


def host_names(hosts: int) -> np.ndarray:
    return np.array([f"node{i:04d}" for i in range(hosts)], dtype=object)


MEASUREMENTS = {  # name -> (field, constant tags, seed)
    "cpu": ("busy_ratio", {"cpu": "total"}, 1),
    "gpu": ("utilization_ratio", {"gpu": "0", "uuid": "GPU-0", "vendor": "nvidia", "model": "H100"}, 2),
}


def load_embedded(root: Path, hosts: int, days: int, interval_s: int) -> float:
    start = time.perf_counter()
    writer = EmbeddedWriter(root)
    names = host_names(hosts)
    for m, (field, consts, seed) in MEASUREMENTS.items():
        for day in range(days):
            times, host, values = series(hosts, day, interval_s, seed)
            cols = {"time": pa.array(times, pa.timestamp("ns", tz="UTC")),
                    "host": pa.DictionaryArray.from_arrays(pa.array(host, pa.int32()), pa.array(names, pa.string()))
                    .cast(pa.string())}
            for k, v in consts.items():
                cols[k] = pa.array(np.full(len(times), v, dtype=object), pa.string())
            cols[field] = pa.array(values, pa.float64())
            writer.write_table(m, pa.table(cols), tags=["host", *consts])
    return time.perf_counter() - start


def load_influx(base_url: str, hosts: int, days: int, interval_s: int, batch: int) -> float:
    start = time.perf_counter()
    urllib.request.urlopen(base_url + "/query", data=f"q=CREATE DATABASE {DB}".encode()).read()
    names = host_names(hosts)
    for m, (field, consts, seed) in MEASUREMENTS.items():
        const = "".join(f",{k}={v}" for k, v in sorted(consts.items()))
        for day in range(days):
            times, host, values = series(hosts, day, interval_s, seed)
            # Series order (host-major) lets influxd append to one series at a time.
            prefix = np.array([f"{m}{const},host={n} {field}=" for n in names], dtype=object)[host]
            lines = prefix + np.char.mod("%.17g", values).astype(object) + " " + times.astype(str).astype(object)
            for i in range(0, len(lines), batch):
                body = "\n".join(lines[i:i + batch]).encode()
                req = urllib.request.Request(f"{base_url}/write?db={DB}&precision=ns", data=body, method="POST")
                with urllib.request.urlopen(req, timeout=300) as r:
                    assert r.status == 204
    return time.perf_counter() - start


def time_query(reader, days: int, repeats: int) -> tuple[list[float], dict]:
    start, end = pd.Timestamp(T0, tz="UTC"), pd.Timestamp(T0 + days * 86_400 * 10**9, tz="UTC")
    timings, frames = [], {}
    for _ in range(repeats):
        t = time.perf_counter()
        for m, (field, _, _) in MEASUREMENTS.items():
            frames[m] = reader.frame(m, [field], start, end, every="1h", by=["host"], agg="mean")
        timings.append(time.perf_counter() - t)
    return timings, frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=256)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--interval", type=int, default=10, help="seconds between points")
    ap.add_argument("--influx-hosts", type=int, default=None, help="hosts loaded into InfluxDB (default: --hosts)")
    ap.add_argument("--no-influx", action="store_true")
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    influx_hosts = args.influx_hosts or args.hosts
    work = args.workdir or Path(tempfile.mkdtemp(prefix="fleetwise-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    result: dict = {"hosts": args.hosts, "days": args.days, "interval_s": args.interval,
                    "points_per_measurement": args.hosts * args.days * 86_400 // args.interval}
    try:
        sizes = sorted({args.hosts} | ({influx_hosts} if not args.no_influx else set()))
        for hosts in sizes:
            root = work / f"embedded-{hosts}"
            load_s = load_embedded(root, hosts, args.days, args.interval)
            with open_reader(f"embedded:{root}") as reader:
                timings, frames = time_query(reader, args.days, args.repeats)
            result[f"embedded_{hosts}"] = {"load_s": round(load_s, 2), "query_s": [round(t, 3) for t in timings],
                                           "rows": {m: len(f) for m, f in frames.items()}}
            if hosts == influx_hosts:
                embedded_frames = frames
        if not args.no_influx:
            from tests.services import influxd

            (work / "influxd").mkdir(exist_ok=True)
            with influxd(work / "influxd") as server:
                load_s = load_influx(server.url, influx_hosts, args.days, args.interval, args.batch)
                reader = open_reader(server.url.replace("http://", "influxdb://") + f"/{DB}")
                timings, frames = time_query(reader, args.days, args.repeats)
            for m in MEASUREMENTS:
                pd.testing.assert_frame_equal(frames[m], embedded_frames[m], check_exact=False, rtol=1e-9)
            result[f"influxdb_{influx_hosts}"] = {
                "load_s": round(load_s, 1), "points_loaded": 2 * influx_hosts * args.days * 86_400 // args.interval,
                "query_s": [round(t, 3) for t in timings], "rows": {m: len(f) for m, f in frames.items()},
                "frames_equal_embedded": True}
            emb = statistics.median(result[f"embedded_{influx_hosts}"]["query_s"])
            result["speedup_same_size"] = round(statistics.median(timings) / emb, 1)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
