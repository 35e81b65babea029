"""What every recommendation family reads: the job table, the window, the fleet's hosts, the fitted models and
the settings. Built by the analyze run's recommend step (from what the run just fitted) or from a saved run."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from agents.config_recommend import RecommendSettings
from analyzer.recommend.rows import WEEK_HOURS

HOST_COLUMNS = ["host", "accelerator", "gpus", "gpu_memory_bytes", "cpus"]


@dataclass
class Context:
    jobs: Any  # the job table (analyzer.jobtable_schema) with the workload column filled
    window: tuple[Any, Any]
    hosts: Any = None  # HOST_COLUMNS, one row per host; None: capacity unknown
    throughput: Any = None  # analyzer.models.throughput.ThroughputMatrix
    power: Any = None  # analyzer.models.power.PowerCapModel
    scaling: dict[tuple[str, str], Any] = field(default_factory=dict)  # (workload, accelerator) -> ScalingModel
    unfitted: dict[str, str] = field(default_factory=dict)  # model name -> why it was not fitted
    settings: RecommendSettings = field(default_factory=RecommendSettings)
    summary: dict[str, Any] = field(default_factory=dict)  # what the families report beside their rows
    _sizing: Any = field(default=None, repr=False)

    @property
    def sizing(self) -> Any:
        """The sizing estimator's settings ([recommend] overrides on the method's defaults), built once."""
        if self._sizing is None:
            from analyzer.recommend.usage import sizing_settings

            self._sizing = sizing_settings(self.settings)
        return self._sizing

    @property
    def window_hours(self) -> float:
        import pandas as pd

        return (pd.Timestamp(self.window[1]) - pd.Timestamp(self.window[0])).total_seconds() / 3600

    @property
    def per_week(self) -> float:
        """Factor from the window's amounts to a week's."""
        h = self.window_hours
        return WEEK_HOURS / h if h > 0 and math.isfinite(h) else math.nan

    def host_table(self):
        """The hosts (HOST_COLUMNS); empty when the store had no gpu / cpu_info measurements: capacity guessed
        from the jobs would invent free nodes, so the families that need capacity say it is unknown instead."""
        import pandas as pd

        if self.hosts is not None:
            return self.hosts
        return pd.DataFrame({c: pd.Series(dtype=object if c in ("host", "accelerator") else float)
                             for c in HOST_COLUMNS})

    def model_reason(self, name: str) -> str:
        return self.unfitted.get(name, f"model {name} was not fitted in this run")


def hosts_from_store(reader, start, end):
    """HOST_COLUMNS from the store: GPUs per host (distinct uuid), their type and memory, and the host's logical
    CPUs (cpu_info threads); hosts that reported neither are absent."""
    import pandas as pd

    from agents.schema.accelerators import accelerator_key

    present = set(reader.measurements())
    parts = []
    if "gpu" in present:
        g = reader.aggregate("gpu", {"mem": ("memory_total_bytes", "max")}, start, end, by=["host", "uuid", "model"])
        if len(g):
            g = g.assign(accelerator=g["model"].map(accelerator_key))
            parts.append(g.groupby("host").agg(accelerator=("accelerator", "max"), gpus=("uuid", "nunique"),
                                               gpu_memory_bytes=("mem", "max")))
    if "cpu_info" in present:
        c = reader.frame("cpu_info", ["threads"], start, end, by=["host"])
        if len(c):
            c = c.sort_values("time").groupby("host")[["threads"]].last().rename(columns={"threads": "cpus"})
            parts.append(c)
    if not parts:
        return None
    out = pd.concat(parts, axis=1).reset_index().rename(columns={"index": "host"})
    for col in HOST_COLUMNS:
        if col not in out:
            out[col] = math.nan
    out["accelerator"] = out["accelerator"].fillna("").astype(str)
    out["gpus"] = out["gpus"].fillna(0).astype(int)
    out["cpus"] = pd.to_numeric(out["cpus"], errors="coerce")
    return out[HOST_COLUMNS]
