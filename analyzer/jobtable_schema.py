"""The job table's declared schema: every column of analyzer.features.job_table, with its type, unit, meaning
and whether it may be missing; one source of truth the way agents.schema declares telemetry.

job_table() validates what it returns against it (validate()), docs/jobtable.md is generated from it
(`fleetwise docs jobtable`, `make docs`), and readers (efficiency, models, recommender) rely on it instead of
checking columns defensively. Missing values: NaN for numbers, "" for strings (`nullable` says which may be
missing; a column that is never missing holds a value in every row).
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("string", "int", "float", "time")


class JobTableError(ValueError):
    """A job table that does not match the declared schema; the message names the column and the problem."""


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # one of KINDS: string (str/object, "" = missing), int (int64), float (NaN = missing), time (UTC)
    unit: str  # base unit ("" for none): bytes, seconds, watts, joules, ratio (0-1), cores, bytes/s, ...
    meaning: str
    nullable: bool = True


def _c(name: str, kind: str, unit: str, meaning: str, nullable: bool = True) -> Column:
    if kind not in KINDS:
        raise ValueError(f"column {name}: kind {kind!r} is not one of {KINDS}")
    return Column(name, kind, unit, meaning, nullable)


COLUMNS: tuple[Column, ...] = (
    _c("job", "string", "", "Job id as the scheduler gives it (unique per scheduler).", False),
    _c("scheduler", "string", "", "slurm, kubernetes, ... (the job tag's scheduler).", False),
    _c("user", "string", "", "User (name, or uid on cgroup v1 paths)."),
    _c("workload", "string", "", "Recurring workload the job belongs to (analyzer.workloads; \"\" before that "
       "step ran)."),
    _c("hosts", "string", "", "Comma-separated hosts the job ran on, sorted.", False),
    _c("nodes", "int", "", "Number of hosts.", False),
    _c("accelerator", "string", "", "Canonical accelerator key (agents.schema.accelerators.accelerator_key, e.g. "
       "a100-80gb) of the GPUs it held most; \"\" for a CPU job."),
    _c("gpus", "int", "", "GPUs held (distinct host x uuid).", False),
    _c("gpus_used", "int", "", "GPUs held on which the job's mean utilization reached 5% (the rest it held idle: "
       "job_gpu has a row for every GPU a job holds, 0 where nothing of it runs).", False),
    _c("cpus_allocated", "float", "cores", "Logical CPUs in the job's cpusets, summed over hosts."),
    _c("start", "time", "", "Start of the bucket of the job's first sample (UTC).", False),
    _c("end", "time", "", "End of the bucket of the job's last sample (UTC).", False),
    _c("duration_seconds", "float", "seconds", "end - start.", False),
    _c("gpu_utilization_mean", "float", "ratio", "Mean over all the job's GPU samples of utilization (0-1)."),
    _c("gpu_utilization_peak", "float", "ratio", "Mean over the job's GPUs of each GPU's highest sample."),
    _c("gpu_memory_bandwidth_mean", "float", "ratio", "Memory-bandwidth busy fraction, unmixed from 2 h GPU means."),
    _c("gpu_memory_used_max_bytes", "float", "bytes", "Highest GPU memory used on any of its GPUs."),
    _c("gpu_memory_total_bytes", "float", "bytes", "Memory of one of its GPUs (the largest)."),
    _c("gpu_idle_seconds", "float", "seconds", "duration x the smallest share, over its GPUs, of samples below "
       "5% busy (analyzer.features.IDLE_UTILIZATION)."),
    _c("power_watts_mean", "float", "watts", "Mean board power per GPU, unmixed from 2 h GPU means."),
    _c("power_limit_watts", "float", "watts", "Mean enforced power cap per GPU."),
    _c("power_limit_max_watts", "float", "watts", "Highest power cap seen on its accelerator type (the maximum)."),
    _c("energy_joules", "float", "joules", "GPU energy: each GPU's mean power x the seconds the job held it, "
       "summed over its GPUs."),
    _c("cpu_cores_mean", "float", "cores", "Sum over hosts of each host's mean cores busy."),
    _c("cpu_cores_peak", "float", "cores", "Sum over hosts of each host's highest cores busy."),
    _c("memory_peak_bytes", "float", "bytes", "Sum over hosts of the cgroup's peak memory."),
    _c("memory_limit_bytes", "float", "bytes", "Sum over hosts of the cgroup's memory limit."),
    _c("throughput", "float", "units/s", "Progress rate (sum over hosts of each host's mean), in `unit`."),
    _c("unit", "string", "", "Unit of throughput (samples, tokens, requests, ...); \"\" without progress."),
    _c("disk_bytes_per_second", "float", "bytes/s", "Local disk read + write, the job's share of its hosts'."),
    _c("lustre_bytes_per_second", "float", "bytes/s", "Lustre read + write, the job's share."),
    _c("net_bytes_per_second", "float", "bytes/s", "Ethernet rx + tx (no loopback), the job's share."),
    _c("ib_bytes_per_second", "float", "bytes/s", "InfiniBand xmit + rcv, the job's share."),
    _c("ib_xmit_wait_per_second", "float", "ticks/s", "InfiniBand xmit_wait counter rate, the job's share."),
    _c("cpu_input_ratio", "float", "ratio", "cpu_cores_mean / cpus_allocated."),
    _c("name", "string", "", "Job name (job_info)."),
    _c("account", "string", "", "Account (job_info)."),
    _c("partition", "string", "", "Partition or queue (job_info)."),
    _c("command", "string", "", "Command (job_info)."),
    _c("time_limit_seconds", "float", "seconds", "Requested time limit (job_info)."),
    _c("cpus_requested", "float", "cores", "Requested CPUs (job_info)."),
    _c("gpus_requested", "float", "", "Requested GPUs (job_info)."),
)
BY_NAME = {c.name: c for c in COLUMNS}
NAMES = [c.name for c in COLUMNS]


def validate(frame, extra_ok: bool = True):
    """Check a job table against COLUMNS: every column present, of its kind, non-nullable ones complete.
    Returns the frame; raises JobTableError naming the first bad column. Extra columns (bottleneck, ...) are
    allowed unless extra_ok is False."""
    import pandas as pd
    from pandas.api import types

    missing = [c.name for c in COLUMNS if c.name not in frame.columns]
    if missing:
        raise JobTableError(f"job table lacks column(s) {', '.join(missing)}")
    if not extra_ok:
        extra = [c for c in frame.columns if c not in BY_NAME]
        if extra:
            raise JobTableError(f"job table has undeclared column(s) {', '.join(map(str, extra))}")
    for c in COLUMNS:
        s = frame[c.name]
        if len(s) == 0:
            continue
        ok = {"string": lambda x: types.is_string_dtype(x) or types.is_object_dtype(x),
              "int": types.is_integer_dtype, "float": types.is_float_dtype,
              "time": types.is_datetime64_any_dtype}[c.kind](s.dtype)
        if c.kind == "string" and ok:
            ok = bool(s.map(lambda v: isinstance(v, str)).all())
        if not ok:
            raise JobTableError(f"job table column {c.name}: {s.dtype} is not {c.kind}")
        if c.kind == "time" and getattr(s.dtype, "tz", None) is None:
            raise JobTableError(f"job table column {c.name}: times must be UTC (tz-aware)")
        if not c.nullable:
            empty = (s == "") if c.kind == "string" else pd.isna(s)
            if bool(empty.any()):
                raise JobTableError(f"job table column {c.name}: {int(empty.sum())} row(s) missing a value that "
                                    f"is never missing")
    return frame


def render_markdown() -> str:
    """docs/jobtable.md."""
    out = ["# The job table", "",
           "Generated by `fleetwise docs jobtable` from `analyzer/jobtable_schema.py`; do not edit by hand.", "",
           "One row per job seen in the analysis window (`analyzer.features.job_table`, saved as table `job_table` "
           "in every analyze run). Missing values are NaN for numbers and \"\" for strings; a column marked "
           "*never missing* has a value in every row. Later steps add columns (`bottleneck`); the recommender "
           "reads only these. See docs/analyzer.md for how each is computed.", "",
           "| column | type | unit | meaning |", "|---|---|---|---|"]
    for c in COLUMNS:
        meaning = c.meaning + ("" if c.nullable else " *Never missing.*")
        out.append(f"| `{c.name}` | {c.kind} | {c.unit} | {meaning.replace('|', '/')} |")
    return "\n".join(out) + "\n"
