"""Ingest throughput into a real influxd: our writer path vs posting pre-serialized line protocol.

Ours = the agent's own path: AgentStore.enqueue() serializes (LineEncoder, byte-identical to
Point.to_line()) and commits each batch to the SQLite spool in the calling thread, while the shipper
thread reads batches back, POSTs them (gzip or not) and acks them: timed until the last ack.
Drain = the same with the spool filled first (a backlog after an outage): writer + spool + HTTP only.
Raw  = the same line protocol, serialized (and for raw_gzip compressed) beforehand, POSTed over one
kept-alive connection: the ceiling any client can reach against this influxd. Both run in the same process
against the same influxd, alternating, into separate databases (so neither overwrites the other).

    .venv/bin/python bench/influx_ingest.py [--points 200000] [--batch 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.config import StoreSettings
from agents.points import Point
from agents.stores.influxdb import InfluxV1Writer
from agents.stores.lineproto import LineEncoder
from agents.stores.url import parse_store_url
from agents.stores.writers import open_sink
from tests.services import influxd

T0 = 1_795_000_000 * 10**9


def make_points(n: int) -> list[Point]:
    # Shaped like agent output: 64 hosts x 8 GPUs, 6 fields each, 10 s apart.
    out = []
    for i in range(n):
        host, gpu, step = i % 64, (i // 64) % 8, i // 512
        out.append(Point("accelerator", {"host": f"node{host:03d}", "gpu": str(gpu), "vendor": "nvidia",
                                         "model": "H100", "uuid": f"GPU-{host:03d}-{gpu}"},
                         {"utilization_ratio": (i % 100) / 100, "memory_used_bytes": 40_000_000_000 + i,
                          "power_watts": 350.5 + i % 7, "temperature_celsius": 60 + i % 20,
                          "energy_joules": 1_000_000 + i, "sm_clock_hertz": 1_980_000_000},
                         T0 + step * 10 * 10**9))
    return out


def raw_post(base: str, db: str, bodies: list[bytes], gzipped: bool = False) -> float:
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    path = "/write?" + urlencode({"db": db, "precision": "ns"})
    started = time.perf_counter()
    for body in bodies:
        headers = {"Content-Type": "text/plain", **({"Content-Encoding": "gzip"} if gzipped else {})}
        conn.request("POST", path, body=body, headers=headers)
        answer = conn.getresponse()
        answer.read()
        if answer.status != 204:
            raise RuntimeError(f"raw write failed: {answer.status}")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def ours(base: str, db: str, points: list[Point], batch: int, use_gzip: bool, spool_dir: Path,
         drain_only: bool = False) -> float:
    """The agent's path: enqueue() (serialize + commit) in this thread, the shipper thread drains the spool.

    drain_only: the spool is filled first (like after an outage) and only the draining is timed.
    """
    settings = StoreSettings(spool_dir=spool_dir / db, batch_max_points=batch, flush_interval_seconds=0.05,
                             gzip=use_gzip)
    store = open_sink(base.replace("http://", "influxdb://") + f"/{db}", settings)
    store.sink.ensure_database()
    if drain_only:
        for start in range(0, len(points), batch):
            store.enqueue(points[start:start + batch])
    store.start()
    started = time.perf_counter()
    if not drain_only:
        for start in range(0, len(points), batch):
            store.enqueue(points[start:start + batch])
    while store.spool.stats().sent_points < len(points):
        time.sleep(0.002)
    elapsed = time.perf_counter() - started
    store.close()
    return elapsed


def count(base: str, db: str) -> int:
    w = InfluxV1Writer(parse_store_url(base.replace("http://", "influxdb://") + f"/{db}"))
    return w.query('SELECT count("power_watts") FROM "accelerator"')["results"][0]["series"][0]["values"][0][1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    points = make_points(args.points)
    bodies = ["\n".join(p.to_line() for p in points[i:i + args.batch]).encode()
              for i in range(0, len(points), args.batch)]
    bodies_gz = [gzip.compress(b, compresslevel=1) for b in bodies]
    results: dict[str, list[float]] = {"raw": [], "raw_gzip": [], "ours_gzip": [], "ours_plain": [], "drain_gzip": [],
                                       "drain_plain": []}
    with tempfile.TemporaryDirectory() as tmp, influxd(Path(tmp)) as server:
        spool_dir = Path(tmp) / "spool"
        for r in range(args.rounds):
            for name in results:
                db = f"{name}{r}"
                if name.startswith("raw"):
                    InfluxV1Writer(parse_store_url(server.url.replace("http://", "influxdb://") + f"/{db}")) \
                        .ensure_database()
                    gz = name == "raw_gzip"
                    elapsed = raw_post(server.url, db, bodies_gz if gz else bodies, gzipped=gz)
                else:
                    elapsed = ours(server.url, db, points, args.batch, name.endswith("gzip"), spool_dir,
                                   drain_only=name.startswith("drain"))
                assert count(server.url, db) == args.points, name
                results[name].append(args.points / elapsed)
    summary = {name: round(statistics.median(v)) for name, v in results.items()}
    for name in list(results)[2:]:
        # like for like: gzip runs against pre-compressed raw posts, plain runs against plain ones
        baseline = summary["raw_gzip" if name.endswith("gzip") else "raw"]
        summary[f"ratio_{name}"] = round(summary[name] / baseline, 3)
    encoder = LineEncoder()
    started = time.process_time()
    for p in points:
        encoder.encode(p)
    summary["encode_us_per_point"] = round((time.process_time() - started) / len(points) * 1e6, 2)
    summary["cpu_count"] = os.cpu_count()
    summary.update(points=args.points, batch=args.batch, rounds=args.rounds,
                   body_bytes_per_point=round(sum(map(len, bodies)) / args.points, 1))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
