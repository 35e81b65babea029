"""The job table as analyzer.features built it before the per-series rewrite (commit fd6f739): per-bucket
frames joined in pandas. Kept only so tests/test_features.py can check the new table against it."""

from __future__ import annotations

import datetime as dt
import itertools

JOB_KEYS = ["job", "scheduler", "user"]
IDLE_UTILIZATION = 0.05  # a GPU below this is idle (jobstats and NVIDIA's own "idle" throttle use ~5%)

COLUMNS = [
    "job", "scheduler", "user", "workload", "hosts", "nodes", "accelerator", "gpus", "cpus_allocated", "start",
    "end", "duration_seconds", "gpu_utilization_mean", "gpu_utilization_p95", "gpu_memory_bandwidth_mean",
    "gpu_memory_used_max_bytes", "gpu_memory_total_bytes", "gpu_idle_seconds", "power_watts_mean",
    "power_limit_watts", "power_limit_max_watts", "energy_joules", "cpu_cores_mean", "cpu_cores_p95",
    "memory_peak_bytes", "memory_limit_bytes", "throughput", "unit", "disk_bytes_per_second",
    "lustre_bytes_per_second", "net_bytes_per_second", "ib_bytes_per_second", "ib_xmit_wait_per_second",
    "cpu_input_ratio",
    # from job_info when the scheduler reports it ("" / NaN otherwise)
    "name", "account", "partition", "command", "time_limit_seconds", "cpus_requested", "gpus_requested",
]
INFO_STRINGS = ("name", "account", "partition", "command")
INFO_NUMBERS = ("time_limit_seconds", "cpus_requested", "gpus_requested")


def job_table(reader, start, end, every: str | dt.timedelta = "5m"):
    """One row per job seen in [start, end) with the agreed columns (see COLUMNS); empty frame if none."""
    import numpy as np
    import pandas as pd

    from agents.query.base import parse_every

    bucket_s = parse_every(every) / 1e9
    measurements = set(reader.measurements())
    if "job" not in measurements:
        return pd.DataFrame(columns=COLUMNS)

    def frame(measurement, fields, by, agg="mean", step=every, lo=start, hi=end):
        if measurement not in measurements:
            return None
        f = reader.frame(measurement, fields, lo, hi, every=step, by=by, agg=agg)
        return f if len(f) else None

    jm = frame("job", ["cpu_cores"], ["host", *JOB_KEYS])
    jx = frame("job", ["cpus_allocated", "memory_peak_bytes", "memory_limit_bytes"], ["host", *JOB_KEYS], "max")
    if jx is None:
        return pd.DataFrame(columns=COLUMNS)
    jh = jx.merge(jm, on=["time", "host", *JOB_KEYS], how="left") if jm is not None else jx.assign(cpu_cores=np.nan)
    del jm, jx  # bucket-level frames: hold as few at once as possible
    jh["cpu_cores"] = jh["cpu_cores"].clip(lower=0)

    # -- per job: identity, time span, CPU and memory -------------------------------------------------------
    g = jh.groupby(JOB_KEYS, sort=True)
    out = g.agg(start=("time", "min"), last=("time", "max")).reset_index()
    out["end"] = out["last"] + pd.Timedelta(seconds=bucket_s)
    out = out.drop(columns="last")
    out["duration_seconds"] = (out["end"] - out["start"]).dt.total_seconds()
    pairs = jh[[*JOB_KEYS, "host"]].drop_duplicates().sort_values([*JOB_KEYS, "host"], kind="stable")
    hosts = pairs.groupby(JOB_KEYS, sort=True)["host"].agg(",".join).rename("hosts")
    del pairs
    out = out.merge(hosts, left_on=JOB_KEYS, right_index=True)
    out["nodes"] = out["hosts"].str.count(",") + 1
    per_host = jh.groupby([*JOB_KEYS, "host"]).agg(
        cpus_allocated=("cpus_allocated", "max"), memory_peak_bytes=("memory_peak_bytes", "max"),
        memory_limit_bytes=("memory_limit_bytes", "max")).groupby(JOB_KEYS).sum(min_count=1)
    out = out.merge(per_host, left_on=JOB_KEYS, right_index=True, how="left")
    cores_t = jh.groupby([*JOB_KEYS, "time"])["cpu_cores"].sum(min_count=1)
    cores_g = cores_t.groupby(JOB_KEYS)
    cores = pd.DataFrame({"cpu_cores_mean": cores_g.mean(), "cpu_cores_p95": cores_g.quantile(0.95)})
    del cores_t, cores_g
    out = out.merge(cores, left_on=JOB_KEYS, right_index=True, how="left")

    out = _gpu_columns(out, frame, bucket_s, _chunks(start, end, parse_every(every)))
    out = _host_rates(out, jh, frame, bucket_s)
    out = _throughput(out, frame)
    out = _job_info(out, frame)

    out["workload"] = ""
    alloc = out["cpus_allocated"].where(out["cpus_allocated"] > 0)
    out["cpu_input_ratio"] = out["cpu_cores_mean"] / alloc
    out["nodes"] = out["nodes"].astype("int64")
    out["gpus"] = out["gpus"].fillna(0).astype("int64")
    for c in COLUMNS:
        if c not in out:
            out[c] = np.nan
    return out[COLUMNS].sort_values("job", kind="stable").reset_index(drop=True)


def _gpu_columns(out, frame, bucket_s: float, chunks):
    """GPU columns, one time chunk at a time: job_gpu and gpu are the largest bucket-level frames (one row per
    GPU and bucket), so each chunk is joined and reduced to per-job partial aggregates before the next is read."""
    import numpy as np
    import pandas as pd

    cols = {"accelerator": "", "gpus": 0, "gpu_utilization_mean": np.nan, "gpu_utilization_p95": np.nan,
            "gpu_memory_bandwidth_mean": np.nan, "gpu_memory_used_max_bytes": np.nan,
            "gpu_memory_total_bytes": np.nan, "gpu_idle_seconds": np.nan, "power_watts_mean": np.nan,
            "power_limit_watts": np.nan, "power_limit_max_watts": np.nan, "energy_joules": np.nan}
    parts = [p for lo, hi in chunks if (p := _gpu_chunk(frame, lo, hi, bucket_s)) is not None]
    if not parts:
        return out.assign(**cols)
    per_gpu = pd.concat([p["per_gpu"] for p in parts]).groupby(level=[*JOB_KEYS, "host", "uuid"]).max()
    per_t = pd.concat([p["per_t"] for p in parts])
    sums = pd.concat([p["sums"] for p in parts]).groupby(level=JOB_KEYS).sum()
    models = pd.concat([p["models"] for p in parts]).groupby([*JOB_KEYS, "model"], sort=True)["n"].sum()
    cap_max = pd.concat([p["cap_max"] for p in parts]).groupby(level=0).max()
    del parts
    idle_buckets = (per_t["max"] < IDLE_UTILIZATION).groupby(JOB_KEYS).sum()

    def mean(c):
        n = sums[(c, "count")]
        return (sums[(c, "sum")] / n).where(n > 0)

    energy = sums[("energy", "sum")].where(sums[("energy", "count")] > 0)
    res = pd.DataFrame({
        "gpus": per_gpu.groupby(level=JOB_KEYS).size(),
        "accelerator": _top(models),
        "gpu_utilization_mean": mean("utilization_ratio"),
        "gpu_utilization_p95": per_t["mean"].groupby(JOB_KEYS).quantile(0.95),
        "gpu_memory_bandwidth_mean": mean("memory_bandwidth_ratio").clip(0, 1),
        "gpu_memory_used_max_bytes": per_gpu["memory_used_bytes"].groupby(level=JOB_KEYS).max(),
        "gpu_memory_total_bytes": per_gpu["memory_total_bytes"].groupby(level=JOB_KEYS).max(),
        "gpu_idle_seconds": idle_buckets * bucket_s,
        "power_watts_mean": mean("power_watts"),
        "power_limit_watts": mean("power_limit_watts"),
        "energy_joules": energy,
    })
    res["accelerator"] = res["accelerator"].fillna("")
    res["power_limit_max_watts"] = res["accelerator"].map(cap_max).astype(float)
    out = out.merge(res, left_on=JOB_KEYS, right_index=True, how="left")
    out["accelerator"] = out["accelerator"].fillna("")
    return out


def _gpu_chunk(frame, lo, hi, bucket_s: float):
    """Per-job partial aggregates of the job_gpu and gpu buckets in [lo, hi), or None without job_gpu data."""
    import numpy as np
    import pandas as pd

    gkeys = ["host", "uuid"]
    ju = frame("job_gpu", ["utilization_ratio"], [*JOB_KEYS, "host", "gpu", "uuid"], lo=lo, hi=hi)
    if ju is None:
        return None
    jmem = frame("job_gpu", ["memory_used_bytes"], [*JOB_KEYS, "host", "gpu", "uuid"], "max", lo=lo, hi=hi)
    rows = ju
    if jmem is not None:
        rows = rows.merge(jmem, on=["time", *JOB_KEYS, "host", "gpu", "uuid"], how="outer")
    else:
        rows = rows.assign(memory_used_bytes=np.nan)
    del ju, jmem
    rows = rows.drop(columns="gpu")
    gm = frame("gpu", ["utilization_ratio", "memory_bandwidth_ratio", "power_watts", "power_limit_watts",
                       "memory_total_bytes"], ["host", "uuid", "model"], lo=lo, hi=hi)
    if gm is not None:
        gm = gm.rename(columns={"utilization_ratio": "gpu_util"})
        rows = rows.merge(gm, on=["time", *gkeys], how="left")
        # job_gpu's utilization is the GPU's; fall back on the gpu series where job_gpu left it out
        rows["utilization_ratio"] = rows["utilization_ratio"].fillna(rows["gpu_util"])
        rows = rows.drop(columns="gpu_util")
        cap_max = gm.groupby("model")["power_limit_watts"].max()
        del gm
    else:
        for c in ("memory_bandwidth_ratio", "power_watts", "power_limit_watts", "memory_total_bytes"):
            rows[c] = np.nan
        rows["model"] = ""
        cap_max = pd.Series(dtype=float)
    rows["utilization_ratio"] = rows["utilization_ratio"].clip(0, 1)
    rows["energy"] = rows["power_watts"].clip(lower=0) * bucket_s
    means = ["utilization_ratio", "memory_bandwidth_ratio", "power_watts", "power_limit_watts", "energy"]
    named = rows.loc[rows["model"].notna() & (rows["model"] != ""), [*JOB_KEYS, "model"]]
    return {
        "per_gpu": rows.groupby([*JOB_KEYS, *gkeys]).agg(memory_total_bytes=("memory_total_bytes", "max"),
                                                         memory_used_bytes=("memory_used_bytes", "max")),
        "per_t": rows.groupby([*JOB_KEYS, "time"])["utilization_ratio"].agg(["mean", "max"]),
        "sums": rows.groupby(JOB_KEYS)[means].agg(["sum", "count"]),
        "models": named.groupby([*JOB_KEYS, "model"]).size().rename("n").reset_index(),
        "cap_max": cap_max,
    }


def _top(counts):
    """Per job, the model seen most often (ties: the smallest, as Series.mode); from (job keys, model) -> n."""
    n = counts.reset_index()
    n = n.sort_values([*JOB_KEYS, "n", "model"], ascending=[True] * len(JOB_KEYS) + [False, True], kind="stable")
    return n.drop_duplicates(JOB_KEYS).set_index(JOB_KEYS)["model"].astype(str)


def _chunks(start, end, every_ns: int):
    """[start, end) cut at UTC day boundaries when buckets tile a day (so no bucket is split), else whole."""
    import pandas as pd

    from agents.query.base import time_ns

    day = 86_400 * 10**9
    s, e = time_ns(start), time_ns(end)
    if day % every_ns:
        return [(start, end)]
    edges = [s, *range((s // day + 1) * day, e, day), e]
    return [(pd.Timestamp(a, unit="ns", tz="UTC"), pd.Timestamp(b, unit="ns", tz="UTC"))
            for a, b in itertools.pairwise(edges)]


def _host_rates(out, jh, frame, bucket_s: float):
    """Host-level rates per bucket, split evenly among the jobs on the host in that bucket."""
    import numpy as np
    import pandas as pd

    parts = []
    d = frame("disk", ["read_bytes_per_second", "write_bytes_per_second"], ["host", "device"])
    if d is not None:
        parts.append(_host_sum(d, ["read_bytes_per_second", "write_bytes_per_second"], "disk_bytes_per_second"))
    lu = frame("lustre", ["read_bytes_per_second", "write_bytes_per_second"], ["host", "fs"])
    if lu is not None:
        parts.append(_host_sum(lu, ["read_bytes_per_second", "write_bytes_per_second"], "lustre_bytes_per_second"))
    n = frame("net", ["rx_bytes_per_second", "tx_bytes_per_second"], ["host", "interface"])
    if n is not None:
        n = n[n["interface"] != "lo"]  # loopback traffic never leaves the host
        parts.append(_host_sum(n, ["rx_bytes_per_second", "tx_bytes_per_second"], "net_bytes_per_second"))
    ib = frame("infiniband", ["xmit_bytes_per_second", "rcv_bytes_per_second"], ["host", "device", "port"])
    if ib is not None:
        parts.append(_host_sum(ib, ["xmit_bytes_per_second", "rcv_bytes_per_second"], "ib_bytes_per_second"))
    wait = frame("infiniband", ["xmit_wait"], ["host", "device", "port"], "last")
    if wait is not None:
        parts.append(_counter_rate(wait, ["host", "device", "port"], "xmit_wait", bucket_s)
                     .groupby(["host", "time"]).sum(min_count=1).rename("ib_xmit_wait_per_second").reset_index())
    names = ["disk_bytes_per_second", "lustre_bytes_per_second", "net_bytes_per_second", "ib_bytes_per_second",
             "ib_xmit_wait_per_second"]
    if not parts:
        return out.assign(**{c: np.nan for c in names})
    host = parts[0]
    for p in parts[1:]:
        host = host.merge(p, on=["host", "time"], how="outer")
    present = [c for c in names if c in host]
    sharing = jh.groupby(["host", "time"])["job"].nunique().rename("sharing").reset_index()
    host = host.merge(sharing, on=["host", "time"], how="inner")
    for c in present:
        host[c] = host[c] / host["sharing"]
    j = jh[[*JOB_KEYS, "host", "time"]].drop_duplicates().merge(host, on=["host", "time"], how="left")
    per_t = j.groupby([*JOB_KEYS, "time"])[present].sum(min_count=1)
    res = per_t.groupby(JOB_KEYS).mean()
    out = out.merge(res, left_on=JOB_KEYS, right_index=True, how="left")
    for c in names:
        if c not in out:
            out[c] = np.nan
    return out.assign(**{c: pd.to_numeric(out[c]).clip(lower=0) for c in names})


def _host_sum(f, fields: list[str], name: str):
    f = f.assign(**{name: f[fields].clip(lower=0).sum(axis=1, min_count=1)})
    return f.groupby(["host", "time"])[name].sum(min_count=1).reset_index()


def _counter_rate(f, keys: list[str], field: str, bucket_s: float):
    """Per-bucket rate of a counter from its last value per bucket; a drop (reset, wrap) gives no rate."""
    import numpy as np

    f = f.sort_values([*keys, "time"])
    prev = f.groupby(keys)[field].shift()
    gap = f["time"].diff().dt.total_seconds()
    same = (f[keys] == f[keys].shift()).all(axis=1)
    rate = (f[field] - prev) / gap
    rate = rate.where(same & (rate >= 0) & np.isfinite(rate))
    return f[[*keys, "time"]].assign(rate=rate).set_index([*keys, "time"])["rate"]


def _throughput(out, frame):
    import numpy as np

    p = frame("job_progress", ["progress_per_second"], [*JOB_KEYS, "host", "unit"])
    if p is None:
        return out.assign(throughput=np.nan, unit="")
    p = p.assign(progress_per_second=p["progress_per_second"].clip(lower=0))
    per_t = p.groupby([*JOB_KEYS, "unit", "time"])["progress_per_second"].sum(min_count=1)
    per_unit = per_t.groupby([*JOB_KEYS, "unit"]).agg(["mean", "size"]).reset_index()
    # a job reporting two units: keep the one it reported most often
    # the job's progress file sets its own user label: match on job and scheduler only
    keys = ["job", "scheduler"]
    per_unit = per_unit.sort_values("size", ascending=False).drop_duplicates(keys)
    res = per_unit.set_index(keys).rename(columns={"mean": "throughput"})[["throughput", "unit"]]
    out = out.merge(res, left_on=keys, right_index=True, how="left")
    out["unit"] = out["unit"].fillna("")
    return out


def _job_info(out, frame):
    import numpy as np

    strings = frame("job_info", list(INFO_STRINGS), JOB_KEYS, "last", "1d")
    numbers = frame("job_info", list(INFO_NUMBERS), JOB_KEYS, "max", "1d")
    # job ids are unique per scheduler; the user tag may differ (a uid on cgroup v1 paths, a name here)
    keys = ["job", "scheduler"]
    for f, cols, fill in ((strings, INFO_STRINGS, ""), (numbers, INFO_NUMBERS, np.nan)):
        if f is None:
            out = out.assign(**{c: fill for c in cols})
            continue
        last = f.sort_values("time").groupby(keys)[list(cols)].last()
        out = out.merge(last, left_on=keys, right_index=True, how="left")
        for c in cols:
            out[c] = out[c].fillna("").astype(str) if fill == "" else out[c].astype(float)
    return out
