"""`fleetwise alerts suggest`: per-pool GPU thresholds learned from the fleet's own baseline, written as
a rule file for the operator to review.

A pool is an accelerator model (the gpu measurement's `model` tag). Its baseline is the 2-hour mean
utilization of its GPUs over the 2-hour buckets in which a compute process ran the whole time (minimum of
`processes` above 0): the GPU was in use, so a low mean is a job doing badly, not an empty node. The
band shown is the 25th-75th percentile of those means; the page threshold is a third of the median
(the issue's "runs 60-80%, page below 20%"), never below GpuAllocatedIdle's 5%. One parameter, the
same for every pool; the thresholds differ only because the pools' own data differ."""

from __future__ import annotations

import math
import re

from agents.query import Reader
from agents.schema.accelerators import accelerator_key
from analyzer.efficiency import GPU_USED_UTILIZATION

BUCKET = "2h"
THRESHOLD_SHARE_OF_MEDIAN = 1 / 3
MIN_BUCKETS = 12  # busy GPU-2h buckets a pool needs (one GPU for a day) before it gets a threshold


class NoBaseline(RuntimeError):
    """The store holds no GPU series to learn from."""


def pool_baselines(reader: Reader, start, end):
    """Per pool (model): buckets, p25, median, p75 of busy 2-hour mean utilization, and the threshold."""
    import pandas as pd

    stats = {"u": ("utilization_ratio", "mean"), "p": ("processes", "min")}
    df = reader.aggregate("gpu", stats, start, end, every=BUCKET, by=["host", "gpu", "model"])
    busy = df[(df["p"] > 0) & df["u"].notna()]
    rows = []
    for model, g in busy.groupby("model", sort=True):
        u = g["u"].to_numpy()
        p25, med, p75 = (float(x) for x in pd.Series(u).quantile([0.25, 0.5, 0.75]))
        threshold = max(GPU_USED_UTILIZATION, math.floor(med * THRESHOLD_SHARE_OF_MEDIAN * 100) / 100)
        rows.append({"model": model, "buckets": len(u), "p25": p25, "median": med, "p75": p75,
                     "threshold": threshold})
    return pd.DataFrame(rows, columns=["model", "buckets", "p25", "median", "p75", "threshold"])


def _rule_name(model: str) -> str:
    parts = re.split(r"[^a-z0-9]+", accelerator_key(model))
    return "GpuBelowPoolBaseline" + "".join(p.capitalize() for p in parts if p)


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def suggest_rules(reader: Reader, since: str = "14d", until=None, source: str = "") -> str:
    """The rule file text (YAML with comments) for the window [until - since, until)."""
    import yaml

    from agents.query.base import to_timestamp
    from analyzer.alerts.expr import parse_duration
    from analyzer.alerts.rules import parse_rules

    bounds = reader.time_bounds("gpu")
    if bounds is None:
        raise NoBaseline("no gpu series in the store: nothing to learn thresholds from")
    import pandas as pd

    end = to_timestamp(until) if until else bounds[1] + pd.Timedelta(seconds=1)
    start = end - pd.Timedelta(seconds=parse_duration(since))
    base = pool_baselines(reader, start, end)
    lines = [
        "# Per-pool GPU thresholds suggested by `fleetwise alerts suggest` from "
        f"{source or 'the store'}, {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC.",
        "# Review before use: each threshold is a third of the pool's median 2-hour GPU utilization while a",
        "# process ran (never under 5%). Load with: fleetwise alerts run --rules THIS_FILE",
        "rules:",
    ]
    kept = 0
    for row in base.itertuples(index=False):
        if row.buckets < MIN_BUCKETS:
            lines.append(f"  # {row.model}: only {row.buckets} busy GPU-2h buckets (need {MIN_BUCKETS}); no rule")
            continue
        kept += 1
        sel = f'{{model="{_quoted(row.model)}"}}'
        rule = {
            "name": _rule_name(row.model),
            "severity": "warning",
            "expr": f"avg_over_time(gpu.utilization_ratio{sel}[{BUCKET}]) < {row.threshold:.2f} "
                    f"and min_over_time(gpu.processes{sel}[{BUCKET}]) > 0",
            "for": "0s",
            "labels": {"category": "baseline"},
            "runbook": "The job on this GPU runs far below what its pool usually does; check it for a stall, "
                       "a data-loading bottleneck or a wrong GPU count.",
            "summary": f"GPU {{gpu}} on {{host}} ({{model}}) averaged {{value}} over 2 h with a process on it; "
                       f"this pool usually runs {row.p25:.0%}-{row.p75:.0%}",
        }
        lines.append(f"  # {row.model}: busy GPUs ran {row.p25:.0%}-{row.p75:.0%} (median {row.median:.0%}) "
                     f"over {row.buckets} GPU-2h buckets; page below {row.threshold:.0%} for 2 h")
        dumped = yaml.safe_dump([rule], sort_keys=False, width=1000, allow_unicode=True)
        lines += ["  " + line for line in dumped.splitlines()]
    if not kept:
        raise NoBaseline(f"no pool has {MIN_BUCKETS} busy GPU-2h buckets between {start} and {end}")
    text = "\n".join(lines) + "\n"
    parse_rules(yaml.safe_load(text), "suggested rules")  # what we write, the loader must take
    return text
