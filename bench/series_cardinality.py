"""Series cardinality and points per second per node: from the simulator and from this machine's real agent.

A series is InfluxDB's: one measurement and one set of tag values (the database's series index holds one entry
each; InfluxDB 1.x refuses writes past `max-series-per-database` series and past `max-values-per-tag` values
of one tag key). Counted here:

- simulated: the fleet simulator's tables (`agents.simulate.simulate(sink=...)`, every measurement the agent
  writes) for --nodes nodes over --days at --interval: distinct series per node that last (host, GPU, device,
  interface, ...), distinct series a job adds (those with a `job` tag), points per node-round, and distinct
  values of the `job` tag per day;
- real agent: one `fleetwise agent --once --format json` on this machine (its real /proc and /sys), parsed.

The anchor is InfluxDB 1.x's default limits (max-series-per-database 1,000,000, max-values-per-tag 100,000, as
`influxd config` prints them), given as ratios for 1,000 and 10,000 nodes.

    .venv/bin/python bench/series_cardinality.py [--nodes 64] [--days 2] [--interval 60] [--agent-interval 10]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MAX_SERIES_PER_DATABASE = 1_000_000  # InfluxDB 1.x defaults (docs/scale.md cites them)
MAX_VALUES_PER_TAG = 100_000


class SeriesCounter:
    """sink(name, table) for agents.simulate.simulate: distinct series and points per measurement."""

    def __init__(self) -> None:
        self.series: dict[str, set] = defaultdict(set)
        self.points: dict[str, int] = defaultdict(int)
        self.jobs_by_day: dict[str, set] = defaultdict(set)

    def __call__(self, name: str, table) -> None:
        import pyarrow.compute as pc

        from agents.schema import MEASUREMENTS

        tags = [t for t in MEASUREMENTS[name].tags if t in table.column_names] if name in MEASUREMENTS else \
            [c for c in table.column_names if table.schema.field(c).type == "string"]
        self.points[name] += table.num_rows
        cols = [table.column(t).to_pylist() for t in tags]
        self.series[name].update(zip(*cols, strict=True) if cols else [()])
        if "job" in tags:
            days = pc.strftime(table.column("time"), format="%Y-%m-%d").to_pylist()
            for day, job in zip(days, table.column("job").to_pylist(), strict=True):
                self.jobs_by_day[day].add(job)


def simulated(nodes: int, days: float, interval: float, seed: int) -> dict:
    import tempfile

    from agents.schema import MEASUREMENTS
    from agents.simulate import simulate

    counter = SeriesCounter()
    with tempfile.TemporaryDirectory(prefix="fw-cardinality-") as tmp:  # the truth file is not needed; not /dev/null
        simulate(nodes=nodes, days=days, interval=interval, seed=seed, sink=counter,
                 truth_path=Path(tmp) / "truth.json")
    rounds = round(days * 86400 / interval)
    per_job = {m for m in counter.series if m in MEASUREMENTS and "job" in MEASUREMENTS[m].tags}
    node_series = sum(len(s) for m, s in counter.series.items() if m not in per_job)
    job_series = sum(len(s) for m, s in counter.series.items() if m in per_job)
    jobs = set().union(*counter.jobs_by_day.values()) if counter.jobs_by_day else set()
    full_days = sorted(counter.jobs_by_day)
    return {
        "nodes": nodes, "days": days, "interval": interval, "rounds": rounds,
        "points_per_node_round": sum(counter.points.values()) / (nodes * rounds),
        "node_series_per_node": node_series / nodes,
        "job_series": job_series, "jobs": len(jobs), "job_series_per_job": job_series / max(len(jobs), 1),
        "jobs_per_node_day": len(jobs) / (nodes * days),
        "job_tag_values_per_day": {d: len(counter.jobs_by_day[d]) for d in full_days},
        "series_by_measurement": {m: len(s) for m, s in sorted(counter.series.items())},
        "points_by_measurement": dict(sorted(counter.points.items())),
    }


def real_agent() -> dict:
    """One real collection on this machine: series and points it printed."""
    out = subprocess.run([sys.executable, "-m", "fleetwise", "agent", "--once", "--format", "json"],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1:] or [f"exit {out.returncode}"]}
    series, points = defaultdict(set), defaultdict(int)
    for line in out.stdout.splitlines():
        if not line.strip().startswith("{"):
            continue
        p = json.loads(line)
        m = p["measurement"]
        series[m].add(tuple(sorted(p.get("tags", {}).items())))
        points[m] += 1
    return {"points_per_round": sum(points.values()), "series": sum(len(s) for s in series.values()),
            "series_by_measurement": {m: len(s) for m, s in sorted(series.items())}}


def influx_limits(limit: int = 50) -> dict:
    """What a real influxd (Debian's 1.6.7, started here on 127.0.0.1) does at max-values-per-tag = limit (set
    through INFLUXDB_DATA_MAX_VALUES_PER_TAG): 1.5 x limit new `job` values in one week, then as many new ones
    four weeks later (another shard group): how many points each write kept, and the error it answered; then the
    first week's shard is dropped (what retention does) and new values are written once more."""
    import os
    import tempfile
    import urllib.error
    import urllib.request
    from urllib.parse import urlencode

    from tests.services import influxd

    os.environ["INFLUXDB_DATA_MAX_VALUES_PER_TAG"] = str(limit)
    out: dict = {"max_values_per_tag": limit}
    week_ns = 7 * 86400 * 10**9
    t0 = 1_795_000_000 * 10**9
    try:
        with tempfile.TemporaryDirectory(prefix="fw-limits-") as tmp, influxd(Path(tmp)) as server:
            def post(path: str, body: bytes = b"") -> tuple[int, str]:
                try:
                    with urllib.request.urlopen(urllib.request.Request(server.url + path, data=body), timeout=60) as r:
                        return r.status, r.read().decode()
                except urllib.error.HTTPError as e:
                    return e.code, e.read().decode()

            post("/query?" + urlencode({"q": 'CREATE DATABASE "lim"'}))
            n = limit * 3 // 2
            for label, base, offset in (("first_week", t0, 0), ("four_weeks_later", t0 + 4 * week_ns, n)):
                lines = "\n".join(f"job,host=h,job=j{offset + i} cpu_cores=1 {base + i * 10**9}" for i in range(n))
                status, text = post("/write?db=lim&precision=ns", lines.encode())
                count = post("/query?" + urlencode({"db": "lim", "q": f"SELECT count(cpu_cores) FROM job WHERE "
                                                    f"time >= {base} AND time < {base + week_ns}"}))[1]
                values = json.loads(count)["results"][0].get("series", [{}])[0].get("values", [[0, 0]])[0][1]
                out[label] = {"written": n, "kept": values, "status": status, "answer": text.strip()[:200]}
                if label == "first_week":
                    shards = json.loads(post("/query?" + urlencode({"q": "SHOW SHARDS"}))[1])
                    first_shard = [row[0] for ser in shards["results"][0]["series"] if ser["name"] == "lim"
                                   for row in ser["values"]]
            # what retention does to the values: drop the first week's shard, then write new values again
            drops = [post("/query?" + urlencode({"q": f"DROP SHARD {int(shard)}"})) for shard in first_shard]
            left = json.loads(post("/query?" + urlencode({"q": "SHOW SHARDS"}))[1])["results"][0]["series"]
            base = t0 + 8 * week_ns
            lines = "\n".join(f"job,host=h,job=k{i} cpu_cores=1 {base + i * 10**9}" for i in range(n))
            status, text = post("/write?db=lim&precision=ns", lines.encode())
            out["after_dropping_the_first_shard"] = {"written": n, "status": status, "answer": text.strip()[:200],
                                                     "dropped_shards": first_shard, "drop_answers": drops,
                                                     "shards_left": [row[0] for ser in left if ser["name"] == "lim"
                                                                     for row in ser.get("values", [])]}
    finally:
        os.environ.pop("INFLUXDB_DATA_MAX_VALUES_PER_TAG", None)
    return out


def fleet(n: int, per_node_series: float, job_series_per_job: float, jobs_per_node_day: float,
          points_per_node_round: float, interval: float, retention_days: float) -> dict:
    """One fleet size: points/s, series held over a retention (a job's series stay in the index until their
    shard is dropped), distinct job tag values over it, and the ratios to InfluxDB 1.x's default limits."""
    jobs = n * jobs_per_node_day * retention_days
    series = n * per_node_series + jobs * job_series_per_job
    return {"nodes": n, "points_per_second": n * points_per_node_round / interval,
            "series_static": n * per_node_series, "series_over_retention": series, "job_values": jobs,
            "ratio_series_limit": series / MAX_SERIES_PER_DATABASE, "ratio_job_values_limit": jobs / MAX_VALUES_PER_TAG}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=64)
    ap.add_argument("--days", type=float, default=2)
    ap.add_argument("--interval", type=float, default=60, help="simulated sampling interval (s)")
    ap.add_argument("--agent-interval", type=float, default=10, help="the agent's default interval_seconds")
    ap.add_argument("--retention-days", type=float, default=7, help="series held in the index (shard duration)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--influx-limits", action="store_true",
                    help="also check max-values-per-tag on a real influxd (Debian's, started here)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    sim = simulated(args.nodes, args.days, args.interval, args.seed)
    agent = real_agent()
    limits = influx_limits() if args.influx_limits else None
    sizes = [fleet(n, sim["node_series_per_node"], sim["job_series_per_job"], sim["jobs_per_node_day"],
                   sim["points_per_node_round"], args.agent_interval, args.retention_days) for n in (1000, 10000)]
    result = {"simulated": sim, "real_agent": agent, "fleets": sizes, "influx_limits": limits,
              "retention_days": args.retention_days, "agent_interval": args.agent_interval}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"simulated {sim['nodes']} nodes x {sim['days']:g} days at {sim['interval']:g} s: "
          f"{sim['points_per_node_round']:.1f} points per node-round, {sim['node_series_per_node']:.1f} lasting "
          f"series per node, {sim['job_series_per_job']:.2f} series per job, {sim['jobs_per_node_day']:.2f} jobs "
          f"per node-day ({sim['jobs']} jobs)")
    print("  series by measurement: " + ", ".join(f"{m} {n}" for m, n in sim["series_by_measurement"].items()))
    if "error" in agent:
        print(f"real agent: failed: {agent['error']}")
    else:
        print(f"real agent on this machine (--once): {agent['points_per_round']} points, {agent['series']} series: "
              + ", ".join(f"{m} {n}" for m, n in agent["series_by_measurement"].items()))
    if limits:
        print(f"influxd at max-values-per-tag = {limits['max_values_per_tag']}: " + "; ".join(
            f"{k}: kept {v.get('kept', '?')} of {v['written']} (HTTP {v['status']} {v['answer'][:90]!r})"
            for k, v in limits.items() if isinstance(v, dict)))
    for f in sizes:
        print(f"  {f['nodes']:>6,} nodes at {args.agent_interval:g} s: {f['points_per_second']:,.0f} points/s; "
              f"series {f['series_static']:,.0f} lasting + jobs over {args.retention_days:g} days = "
              f"{f['series_over_retention']:,.0f} ({f['ratio_series_limit']:.2f} x max-series-per-database); "
              f"job tag values {f['job_values']:,.0f} ({f['ratio_job_values_limit']:.2f} x max-values-per-tag)")


if __name__ == "__main__":
    main()
