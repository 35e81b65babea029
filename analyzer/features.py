"""One row per job: what it held, what it used and what its hosts moved while it ran.

job_table(reader, start, end, every="5m") pushes every per-point computation down to the store
(agents.query Reader.aggregate: InfluxQL or DuckDB), so what comes back is one row per series (job x host,
job x GPU, GPU, ...) or per host/GPU and coarse bucket (HOST_ALIGN, GPU_ALIGN), never one row per point or
per 5-minute bucket:

- job, per (host, job): first and last sample time, CPUs allocated, memory peak and limit, mean and
  highest CPU cores;
- job_gpu, per (job, host, GPU): utilization (sum, count, highest, samples below IDLE_UTILIZATION) and
  the job's peak GPU memory;
- gpu, per GPU: model, memory size and highest power cap; per GPU and GPU_ALIGN (2 h): power, power cap
  and memory bandwidth;
- disk, lustre, net, infiniband, per host (device) and HOST_ALIGN (1 h): rates, and InfiniBand
  xmit_wait's last counter value (differenced per hour, resets dropped);
- job_progress, per (job, host, unit): throughput; job_info raw (one point per job): name, account, limits.

Time alignment: a job occupies each of its hosts, and the GPUs it holds there, from its first to its
last sample on that host without gaps (its span), in buckets of `every`. start is the start of the
bucket of the job's first sample, end the end of the bucket of its last one (as before the rewrite).
The coarse GPU and host means are turned back into one value per job on the unit by analyzer.unmix
(exclusive for a GPU, additive for a host; exact when a job's values are constant while it runs); host
rates are then rebuilt per bucket of `every` as the sum over the jobs there and split evenly among them.

Column meanings that differ from the per-bucket table this replaced (bench: docs/benchmarks.md "Analyzer
scale"; checked against it in tests/test_features.py with the tolerances stated there):
- cpu_cores_mean: sum over the job's hosts of each host's mean sample (was: mean over buckets of the sum);
  cpu_cores_peak: sum over hosts of each host's highest sample (was cpu_cores_p95, the 95th percentile over
  buckets; percentiles cost influxd 10 x a mean, so the peak, an upper bound of it, is used);
- gpu_utilization_mean: mean over all the job's GPU samples (equal when sampling >= every);
  gpu_utilization_peak: mean over the job's GPUs of each GPU's highest sample (was gpu_utilization_p95);
  gpu_idle_seconds: duration x the smallest share, over the job's GPUs, of samples below 5% busy (was:
  buckets in which all were below); the gpu series no longer fills in a utilization job_gpu lacks;
- power_watts_mean, power_limit_watts, gpu_memory_bandwidth_mean, energy_joules: unmixed from 2-hour GPU
  means (was: every-resolved means over the buckets the job held the GPU);
- disk/lustre/net/ib rates: unmixed from hourly host means; two jobs that always share their hours on a
  host cannot be told apart, and get the even split of what they moved together;
  ib_xmit_wait_per_second: per-hour counter differences (a reset inside an hour loses the increments
  before it);
- throughput: sum over hosts of each host's mean progress rate, in the unit with the most samples.
Rates are the agent's reset-safe rates, clipped at zero.
"""

from __future__ import annotations

import datetime as dt

from agents.schema.accelerators import accelerator_key
from analyzer import job_spans
from analyzer.jobtable_schema import NAMES, validate

JOB_KEYS = ["job", "scheduler", "user"]
IDLE_UTILIZATION = 0.05  # a GPU below this is idle (jobstats and NVIDIA's own "idle" throttle use ~5%)
# Resolution of the joins that need time. A GPU is held by one job at a time, so its coarse means unmix well
# even at a few hours (checked against the per-bucket table in tests/test_features.py); hosts run jobs side
# by side, and their rates need the finer grid. Each halving of a width halves what InfluxDB sends.
GPU_ALIGN = "2h"
HOST_ALIGN = "1h"

COLUMNS = NAMES  # declared, with types, units and meanings, in analyzer/jobtable_schema.py
INFO_STRINGS = ("name", "account", "partition", "command")
INFO_NUMBERS = ("time_limit_seconds", "cpus_requested", "gpus_requested")
HOST_RATES = {  # column -> (measurement, series tags, fields summed)
    "disk_bytes_per_second": ("disk", ["device"], ["read_bytes_per_second", "write_bytes_per_second"]),
    "lustre_bytes_per_second": ("lustre", ["fs"], ["read_bytes_per_second", "write_bytes_per_second"]),
    "net_bytes_per_second": ("net", ["interface"], ["rx_bytes_per_second", "tx_bytes_per_second"]),
    "ib_bytes_per_second": ("infiniband", ["device", "port"], ["xmit_bytes_per_second", "rcv_bytes_per_second"]),
}
GPU_MEANS = {"power_watts_mean": "power_watts", "power_limit_watts": "power_limit_watts",
              "gpu_memory_bandwidth_mean": "memory_bandwidth_ratio"}


def job_table(reader, start, end, every: str | dt.timedelta = "5m"):
    """One row per job seen in [start, end) with the agreed columns (see COLUMNS); empty frame if none."""
    import numpy as np

    from agents.query.base import parse_every, time_ns

    every_ns = parse_every(every)
    present = set(reader.measurements())
    if not present & {"job", "job_gpu"}:
        return _empty(present)
    fetch = _Fetcher(reader, start, end, present)
    try:
        _submit_all(fetch)
        job_spans.submit(fetch)
        # jobs from cgroups, GPU-only jobs (pods in dcgm-exporter's labels, GPU traces) beside them
        jobs = job_spans.series(fetch.get("job"), fetch.get("job_gpu_span"))
        if jobs is None:
            return _empty(present)
        span = _Spans(jobs, every_ns, time_ns(start), time_ns(end))
        out = span.per_job()
        out = _gpu_columns(out, span, fetch)
        out = _host_rates(out, span, fetch)
        out = _throughput(out, fetch.get("progress"))
        out = _job_info(out, fetch.get("info"))
    finally:
        fetch.close()  # a failed query must not leave the others running

    out["workload"] = ""
    alloc = out["cpus_allocated"].where(out["cpus_allocated"] > 0)
    out["cpu_input_ratio"] = out["cpu_cores_mean"] / alloc
    out["nodes"] = out["nodes"].astype("int64")
    out["gpus"] = out["gpus"].fillna(0).astype("int64")
    out["gpus_used"] = out["gpus_used"].fillna(0).astype("int64")
    for c in COLUMNS:
        if c not in out:
            out[c] = np.nan
    out = out[COLUMNS].sort_values("job", kind="stable").reset_index(drop=True)
    out.attrs["lacked"] = job_spans.lacked(present)
    return out


def _empty(present: set[str]):
    import pandas as pd

    out = pd.DataFrame(columns=COLUMNS)
    out.attrs["lacked"] = job_spans.lacked(present)
    return out
    return validate(out[COLUMNS].sort_values("job", kind="stable").reset_index(drop=True))


def _submit_all(fetch) -> None:
    """Every query job_table needs, independent of each other: submitted at once so that a store that can
    answer two at a time (InfluxDB: influxd computes one while this process parses the other) does."""
    g = [*JOB_KEYS, "host", "gpu", "uuid"]
    fetch.submit("job", "job", {
        # the value at the first and last sample comes with their times at no extra cost (InfluxDB: one
        # selector each); a cpuset does not change while a job runs, so the larger of the two is its size
        "since": ("cpus_allocated", "first_time"), "until": ("cpus_allocated", "last_time"),
        "cpus": ("cpus_allocated", "first"), "cpus_end": ("cpus_allocated", "last"),
        "peak": ("memory_peak_bytes", "max"), "limit": ("memory_limit_bytes", "max"), "cores": ("cpu_cores", "mean"),
        "cores_max": ("cpu_cores", "max"),
    }, by=["host", *JOB_KEYS])
    fetch.submit("job_gpu", "job_gpu", {
        "n": ("utilization_ratio", "count"), "s": ("utilization_ratio", "sum"), "hi": ("utilization_ratio", "max"),
        "mem": ("memory_used_bytes", "max")}, by=g)
    fetch.submit("job_gpu_idle", "job_gpu", {"idle": ("utilization_ratio", "count")}, by=g,
                 where=[("utilization_ratio", "<", IDLE_UTILIZATION)])
    fetch.submit("gpu", "gpu", {"total": ("memory_total_bytes", "max"), "cap_max": ("power_limit_watts", "max")},
                 by=["host", "uuid", "model"])
    fetch.submit("gpu_means", "gpu", {c: (f, "mean") for c, f in GPU_MEANS.items()}, by=["host", "uuid"],
                 every=GPU_ALIGN)
    for col, (m, tags, fields) in HOST_RATES.items():
        fetch.submit(col, m, {f: (f, "mean") for f in fields}, by=["host", *tags], every=HOST_ALIGN)
    fetch.submit("xmit_wait", "infiniband", {"xmit_wait": ("xmit_wait", "last")}, by=["host", "device", "port"],
                 every=HOST_ALIGN)
    fetch.submit("progress", "job_progress", {"n": ("progress_per_second", "count"),
                                              "rate": ("progress_per_second", "mean")}, by=[*JOB_KEYS, "host", "unit"])
    # one point per job (written by the prolog): raw points are cheaper than one aggregate group per job
    fetch.submit("info", "job_info", [*INFO_STRINGS, *INFO_NUMBERS], by=JOB_KEYS, raw=True)


class _Fetcher:
    """Named aggregate queries, run two at a time where the reader allows it (parallel_queries), else one
    after the other when asked for; get() gives None for an absent measurement or an empty answer."""

    def __init__(self, reader, start, end, present: set[str]) -> None:
        self.reader, self.start, self.end, self.present = reader, start, end, present
        self.requests: dict[str, tuple] = {}
        self.results: dict = {}
        workers = getattr(reader, "parallel_queries", 1)
        self.pool = None
        if workers > 1:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(max_workers=workers)

    def _run(self, measurement, stats, by, every, where, raw):
        if raw:
            f = self.reader.frame(measurement, stats, self.start, self.end, by=by)
        else:
            f = self.reader.aggregate(measurement, stats, self.start, self.end, every=every, by=by, where=where)
        return f if len(f) else None

    def submit(self, name: str, measurement: str, stats, by, every=None, where=(), raw: bool = False) -> None:
        """An aggregate query (stats: Reader.aggregate's), or raw points of the fields in stats if raw."""
        args = (measurement, stats, by, every, where, raw)
        if measurement not in self.present:
            self.results[name] = None
        elif self.pool is not None:
            self.results[name] = self.pool.submit(self._run, *args)
        else:
            self.requests[name] = args

    def get(self, name: str):
        if name in self.requests:
            return self._run(*self.requests.pop(name))
        r = self.results.pop(name)
        return r.result() if hasattr(r, "result") else r

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


class _Spans:
    """Each (host, job) series' span in buckets of `every`, and the per-bucket expansion of those spans
    (one entry per job, host and bucket: ~2 M at 1,000 nodes x 7 days x 5 min, int arrays only)."""

    def __init__(self, jobs, every_ns: int, start_ns: int, end_ns: int) -> None:
        import pandas as pd

        self.every_ns, self.start_ns, self.end_ns = every_ns, start_ns, end_ns
        jobs = jobs.reset_index(drop=True)
        self.series = jobs
        self.job_index = pd.MultiIndex.from_frame(jobs[JOB_KEYS]).drop_duplicates().sort_values()
        self.job = self.job_index.get_indexer(pd.MultiIndex.from_frame(jobs[JOB_KEYS]))
        since = jobs["since"].to_numpy("datetime64[ns]").view("int64")
        until = jobs["until"].to_numpy("datetime64[ns]").view("int64")
        self.b0, self.b1 = since // every_ns, until // every_ns  # floor, also before 1970
        self.origin = int(self.b0.min())
        # What the store covers: hourly means are over the samples there are, so an hour that the data only
        # partly covers (the window's last hour, while the fleet is still reporting) weighs what is inside
        self.data_start = max(start_ns, self.origin * every_ns)
        self.data_end = min(end_ns, (int(self.b1.max()) + 1) * every_ns)
        self.hosts = pd.Index(sorted(jobs["host"].unique()))
        self.host = self.hosts.get_indexer(jobs["host"])

    def per_job(self):
        import numpy as np
        import pandas as pd

        s = self.series
        out = pd.DataFrame(index=self.job_index)
        first = pd.Series(self.b0, index=self.job).groupby(level=0).min()
        last = pd.Series(self.b1, index=self.job).groupby(level=0).max()
        out["start"] = pd.to_datetime(first.to_numpy() * self.every_ns, unit="ns", utc=True)
        out["end"] = pd.to_datetime((last.to_numpy() + 1) * self.every_ns, unit="ns", utc=True)
        out["duration_seconds"] = (out["end"] - out["start"]).dt.total_seconds().to_numpy()
        ordered = s[["host"]].assign(_j=self.job).sort_values(["_j", "host"], kind="stable")["host"].to_numpy(object)
        nodes = np.bincount(self.job, minlength=len(self.job_index))
        first = np.cumsum(nodes) - nodes
        hosts = ordered[first].copy()
        for j in np.flatnonzero(nodes > 1):  # few jobs span hosts: join only theirs in Python
            hosts[j] = ",".join(ordered[first[j]:first[j] + nodes[j]])
        out["hosts"] = hosts
        out["nodes"] = nodes
        cores = s["cores"].clip(lower=0)
        cpus = s[["cpus", "cpus_end"]].max(axis=1)
        sums = pd.DataFrame({"cpus_allocated": cpus, "memory_peak_bytes": s["peak"],
                             "memory_limit_bytes": s["limit"], "cpu_cores_mean": cores,
                             "cpu_cores_peak": s["cores_max"].clip(lower=0)}).groupby(self.job).sum(min_count=1)
        out = out.join(sums.set_axis(self.job_index[sums.index]))
        out = out.reset_index()
        for c in ("cpus_allocated", "memory_peak_bytes", "memory_limit_bytes"):
            out[c] = out[c].astype(float)
        self.n_jobs = len(out)
        self.durations = out["duration_seconds"].to_numpy()
        return out

    def series_of(self, frame):
        """Row of self.series for each row of frame (by host and job keys), -1 where the job is unknown."""
        import pandas as pd

        keys = pd.MultiIndex.from_frame(self.series[["host", *JOB_KEYS]])
        return keys.get_indexer(pd.MultiIndex.from_frame(frame[["host", *JOB_KEYS]]))

    def hours(self, rows, align: int):
        """(index into rows, hour, seconds in that hour, the hour's seconds the data covers) for every hour (of
        width align) the spans of rows touch, clipped to the window."""
        import numpy as np

        lo = np.maximum(self.b0[rows] * self.every_ns, self.start_ns)
        hi = np.minimum((self.b1[rows] + 1) * self.every_ns, self.end_ns)
        h0, h1 = lo // align, (hi - 1) // align
        count = np.maximum(h1 - h0 + 1, 0).astype(np.int64)
        rep = np.repeat(np.arange(len(rows)), count)
        hour = h0[rep] + (np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count))
        seconds = (np.minimum(hi[rep], (hour + 1) * align) - np.maximum(lo[rep], hour * align)) / 1e9
        window = (np.minimum(self.data_end, (hour + 1) * align) - np.maximum(self.data_start, hour * align)) / 1e9
        return rep, hour, seconds, window

    def buckets(self):
        """(series row, absolute bucket) for every bucket of every span."""
        import numpy as np

        n = (self.b1 - self.b0 + 1).astype(np.int64)
        rows = np.repeat(np.arange(len(n)), n)
        offsets = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        return rows, self.b0[rows] + offsets


def _per_job(values, job, n_jobs: int, how: str = "sum"):
    """Reduce per-row values to per-job (NaN rows skipped; NaN where a job has none)."""
    import numpy as np

    ok = ~np.isnan(values)
    cnt = np.bincount(job[ok], minlength=n_jobs)
    if how == "sum":
        red = np.bincount(job[ok], weights=values[ok], minlength=n_jobs)
    elif how == "max":
        red = np.full(n_jobs, -np.inf)
        np.maximum.at(red, job[ok], values[ok])
    elif how == "min":
        red = np.full(n_jobs, np.inf)
        np.minimum.at(red, job[ok], values[ok])
    else:
        raise ValueError(how)
    return np.where(cnt > 0, red, np.nan)


def _gpu_columns(out, span: _Spans, fetch):
    import numpy as np
    import pandas as pd

    jg, idle, gpus, means = fetch.get("job_gpu"), fetch.get("job_gpu_idle"), fetch.get("gpu"), \
        fetch.get("gpu_means")
    nan = np.full(span.n_jobs, np.nan)
    if jg is None:
        return out.assign(accelerator="", gpus=0, gpus_used=0, **{c: nan for c in (
            "gpu_utilization_mean", "gpu_utilization_peak", "gpu_memory_bandwidth_mean", "gpu_memory_used_max_bytes",
            "gpu_memory_total_bytes", "gpu_idle_seconds", "power_watts_mean", "power_limit_watts",
            "power_limit_max_watts", "energy_joules")})
    g = [*JOB_KEYS, "host", "gpu", "uuid"]
    jg = jg.merge(idle, on=g, how="left") if idle is not None else jg.assign(idle=0)
    jg["idle"] = jg["idle"].fillna(0)
    row = span.series_of(jg)
    jg, row = jg[row >= 0].reset_index(drop=True), row[row >= 0]  # GPUs of jobs without a job series
    job = span.job[row]
    n_jobs = span.n_jobs

    # one GPU = one (host, uuid) per job, whatever the gpu index tag said
    gpu_key = pd.MultiIndex.from_arrays([job, jg["host"], jg["uuid"]])
    out["gpus"] = np.bincount(job[~gpu_key.duplicated()], minlength=n_jobs)
    n = jg["n"].to_numpy(float)
    # job_gpu has a row for every GPU a job holds (0 where nothing of it runs): the GPUs it used are those whose
    # mean is not idle, so "held 4, used 1" is counted, not inferred from the mean over all four.
    gpu_mean = jg["s"].fillna(0).to_numpy(float) / np.where(n > 0, n, np.nan)
    used = ~gpu_key.duplicated() & (gpu_mean >= IDLE_UTILIZATION)
    out["gpus_used"] = np.bincount(job[used], minlength=n_jobs)
    util_n = np.bincount(job, weights=n, minlength=n_jobs)
    util_s = np.bincount(job, weights=jg["s"].fillna(0).to_numpy(float), minlength=n_jobs)
    out["gpu_utilization_mean"] = np.where(util_n > 0, util_s / np.where(util_n > 0, util_n, 1), np.nan).clip(0, 1)
    out["gpu_utilization_peak"] = _mean_per_job(jg["hi"].clip(0, 1).to_numpy(float), job, n_jobs)
    share = np.where(n > 0, jg["idle"].to_numpy(float) / np.where(n > 0, n, 1), np.nan)
    out["gpu_idle_seconds"] = _per_job(share, job, n_jobs, "min") * span.durations
    out["gpu_memory_used_max_bytes"] = _per_job(jg["mem"].to_numpy(float), job, n_jobs, "max")

    models = pd.Series(dtype=object)
    if gpus is not None:
        per_gpu = gpus.drop_duplicates(["host", "uuid"], keep="last").set_index(["host", "uuid"])
        at = per_gpu.index.get_indexer(pd.MultiIndex.from_frame(jg[["host", "uuid"]]))
        found = at >= 0
        total = np.where(found, per_gpu["total"].to_numpy(float)[np.where(found, at, 0)], np.nan)
        out["gpu_memory_total_bytes"] = _per_job(total, job, n_jobs, "max")
        model = np.where(found, per_gpu["model"].to_numpy(object)[np.where(found, at, 0)], "")
        models = gpus[gpus["model"] != ""].groupby("model")["cap_max"].max()
        named = model != ""
        weights = pd.DataFrame({"job": job[named], "model": model[named], "w": np.maximum(n[named], 1)})
        top = weights.groupby(["job", "model"], sort=True)["w"].sum().reset_index()
        top = top.sort_values(["job", "w", "model"], ascending=[True, False, True], kind="stable")
        top = top.drop_duplicates("job").set_index("job")["model"]
        out["accelerator"] = top.reindex(range(n_jobs)).fillna("").to_numpy(object)
    else:
        out["gpu_memory_total_bytes"] = nan
        out["accelerator"] = ""
    out["power_limit_max_watts"] = out["accelerator"].map(models).astype(float)
    out["accelerator"] = out["accelerator"].map(accelerator_key).astype(object)  # the one key joins use
    out = _gpu_unmixed(out, span, jg, row, means)
    return out


def _mean_per_job(values, job, n_jobs: int):
    import numpy as np

    ok = ~np.isnan(values)
    cnt = np.bincount(job[ok], minlength=n_jobs)
    s = np.bincount(job[ok], weights=values[ok], minlength=n_jobs)
    return np.where(cnt > 0, s / np.where(cnt > 0, cnt, 1), np.nan)


def _gpu_unmixed(out, span: _Spans, jg, row, means):
    """GPU power, cap and bandwidth per job from the GPUs' coarse means: each GPU's buckets unmixed into one
    value per job that held it (analyzer.unmix, exclusive), averaged over the job's GPUs weighted by the
    time it held each; energy is power x that time."""
    import numpy as np
    import pandas as pd

    from agents.query.base import parse_every
    from analyzer.unmix import unmix

    n_jobs = span.n_jobs
    if means is None:
        return out.assign(energy_joules=np.nan, **{c: np.nan for c in GPU_MEANS})
    align = parse_every(GPU_ALIGN)
    # one entry per (job, host, uuid): a GPU listed under two gpu index tags is held once
    held = pd.DataFrame({"row": row, "host": jg["host"].to_numpy(object), "uuid": jg["uuid"].to_numpy(object)})
    held = held.drop_duplicates().reset_index(drop=True)
    gpu_index = pd.MultiIndex.from_frame(means[["host", "uuid"]]).drop_duplicates()
    gpu = gpu_index.get_indexer(pd.MultiIndex.from_frame(held[["host", "uuid"]]))
    rep, hour, seconds, window = span.hours(held["row"].to_numpy(), align)
    known = gpu[rep] >= 0
    obs = means.assign(power_watts_mean=means["power_watts_mean"].clip(lower=0))
    x, _ = unmix(gpu[rep][known], rep[known], hour[known], (seconds / window)[known],
                 gpu_index.get_indexer(pd.MultiIndex.from_frame(obs[["host", "uuid"]])),
                 obs["time"].to_numpy("datetime64[ns]").view("int64") // align,
                 obs[list(GPU_MEANS)].to_numpy(float), additive=False, n_occupants=len(held))
    held_s = np.bincount(rep, weights=seconds, minlength=len(held))
    job = span.job[held["row"].to_numpy()]
    for i, col in enumerate(GPU_MEANS):
        v = x[:, i]
        ok = ~np.isnan(v)
        w = np.bincount(job[ok], weights=held_s[ok], minlength=n_jobs)
        total = np.bincount(job[ok], weights=(v * held_s)[ok], minlength=n_jobs)
        out[col] = np.where(w > 0, total / np.where(w > 0, w, 1), np.nan)
        if col == "power_watts_mean":
            out["energy_joules"] = np.where(w > 0, total, np.nan)
    out["gpu_memory_bandwidth_mean"] = out["gpu_memory_bandwidth_mean"].clip(0, 1)
    out["power_watts_mean"] = out["power_watts_mean"].clip(lower=0)
    out["energy_joules"] = out["energy_joules"].clip(lower=0)
    return out


def _host_rates(out, span: _Spans, fetch):
    """Host rates per job: each host's hourly means unmixed into one rate per job on it plus the host's own
    background (analyzer.unmix, additive), rebuilt per bucket of `every` as the sum over the jobs there, and
    split evenly among them bucket by bucket."""
    import numpy as np
    import pandas as pd

    from agents.query.base import parse_every
    from analyzer.unmix import unmix

    align = parse_every(HOST_ALIGN)
    names = ["disk_bytes_per_second", "lustre_bytes_per_second", "net_bytes_per_second", "ib_bytes_per_second",
             "ib_xmit_wait_per_second"]
    host_hour = {}
    for col, (_, _, fields) in HOST_RATES.items():
        f = fetch.get(col)
        if f is None:
            continue
        if col == "net_bytes_per_second":
            f = f[f["interface"] != "lo"]  # loopback traffic never leaves the host
        f = f.assign(_v=f[fields].clip(lower=0).sum(axis=1, min_count=1))
        host_hour[col] = f.groupby(["host", "time"])["_v"].sum(min_count=1)
    wait = fetch.get("xmit_wait")
    if wait is not None:
        host_hour["ib_xmit_wait_per_second"] = _counter_rate(wait, ["host", "device", "port"], "xmit_wait") \
            .groupby(["host", "time"]).sum(min_count=1)
    if not host_hour:
        return out.assign(**{c: np.nan for c in names})
    present = [c for c in names if c in host_hour]
    obs = pd.concat([host_hour[c].rename(c) for c in present], axis=1).reset_index()
    obs_host = span.hosts.get_indexer(obs["host"])
    obs_hour = obs["time"].to_numpy("datetime64[ns]").view("int64") // align
    obs_vals = obs[present].to_numpy(float)
    keep = obs_host >= 0
    obs_host, obs_hour, obs_vals = obs_host[keep], obs_hour[keep], obs_vals[keep]

    series = np.arange(len(span.series))
    rep, hour, seconds, window = span.hours(series, align)
    x, background = unmix(span.host[rep], rep, hour, seconds / window, obs_host, obs_hour, obs_vals,
                          additive=True, n_occupants=len(series))

    rows, bucket = span.buckets()
    host = span.host[rows]
    job = span.job[rows]
    rel = bucket - span.origin
    n_buckets = int(rel.max()) + 1
    slot = host * n_buckets + rel
    sharing = np.bincount(slot, minlength=len(span.hosts) * n_buckets)[slot]
    b_hour = (bucket * span.every_ns) // align
    h_origin = int(min(b_hour.min(), obs_hour.min())) if len(obs_hour) else int(b_hour.min())
    n_hours = int(max(b_hour.max(), obs_hour.max() if len(obs_hour) else 0)) - h_origin + 1
    # (job, bucket) cells: a job's value in a bucket is the sum over its hosts
    cell, cell_of = np.unique(job.astype(np.int64) * n_buckets + rel, return_inverse=True)
    cell_job = cell // n_buckets
    bg = np.zeros((len(span.hosts), len(present)))
    for u, v in background.items():
        bg[u] = v
    for m, col in enumerate(present):
        observed = np.zeros((len(span.hosts), n_hours), dtype=bool)
        observed[obs_host[~np.isnan(obs_vals[:, m])], obs_hour[~np.isnan(obs_vals[:, m])] - h_origin] = True
        rebuilt = np.bincount(slot, weights=np.nan_to_num(x[rows, m]), minlength=len(span.hosts) * n_buckets)
        value = rebuilt[slot] + np.nan_to_num(bg[host, m])
        share = np.where(observed[host, b_hour - h_origin], np.clip(value, 0, None) / sharing, np.nan)
        ok = ~np.isnan(share)
        cell_sum = np.bincount(cell_of[ok], weights=share[ok], minlength=len(cell))
        cell_ok = np.bincount(cell_of[ok], minlength=len(cell)) > 0
        total = np.bincount(cell_job[cell_ok], weights=cell_sum[cell_ok], minlength=span.n_jobs)
        cells = np.bincount(cell_job[cell_ok], minlength=span.n_jobs)
        out[col] = np.where(cells > 0, total / np.where(cells > 0, cells, 1), np.nan)
    for c in names:
        if c not in out:
            out[c] = np.nan
    return out.assign(**{c: pd.to_numeric(out[c]).clip(lower=0) for c in names})


def _counter_rate(f, keys: list[str], field: str):
    """Per-bucket rate of a counter from its last value per bucket; a drop (reset, wrap) gives no rate."""
    import numpy as np

    f = f.sort_values([*keys, "time"])
    prev = f.groupby(keys)[field].shift()
    gap = f["time"].diff().dt.total_seconds()
    same = (f[keys] == f[keys].shift()).all(axis=1)
    rate = (f[field] - prev) / gap
    rate = rate.where(same & (rate >= 0) & np.isfinite(rate))
    return f[[*keys, "time"]].assign(rate=rate).set_index([*keys, "time"])["rate"]


def _throughput(out, p):
    import numpy as np

    if p is None:
        return out.assign(throughput=np.nan, unit="")
    p = p.assign(rate=p["rate"].clip(lower=0))
    # the job's progress file sets its own user label: match on job and scheduler only
    keys = ["job", "scheduler"]
    g = p.groupby([*keys, "unit"])
    per_unit = g["rate"].sum(min_count=1).rename("throughput").to_frame().assign(size=g["n"].sum()).reset_index()
    # a job reporting two units: keep the one it reported most often
    per_unit = per_unit.sort_values("size", ascending=False, kind="stable").drop_duplicates(keys)
    res = per_unit.set_index(keys)[["throughput", "unit"]]
    out = out.merge(res, left_on=keys, right_index=True, how="left")
    out["unit"] = out["unit"].fillna("")
    return out


def _job_info(out, info):
    import numpy as np

    if info is None:
        return out.assign(**{c: "" for c in INFO_STRINGS}, **{c: np.nan for c in INFO_NUMBERS})
    # job ids are unique per scheduler; the user tag may differ (a uid on cgroup v1 paths, a name here).
    # Each field's latest value, as a re-run prolog overwrites what it wrote before.
    keys = ["job", "scheduler"]
    info = info.sort_values("time", kind="stable")
    last = info.groupby(keys)[[*INFO_STRINGS, *INFO_NUMBERS]].last()
    out = out.merge(last, left_on=keys, right_index=True, how="left")
    for c in INFO_STRINGS:
        out[c] = out[c].fillna("").astype(str)
    for c in INFO_NUMBERS:
        out[c] = out[c].astype(float)
    return out
