"""The node page's numbers: any metric of one node per bucket, its GPUs and ports, and the jobs that ran on it.

Every query filters on the node with the query API's tag filter (`where_tags={"host": node}`), which both
stores bind or quote: the node name from the URL never becomes query text.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from agents.schema import MEASUREMENTS, Kind

SERIES_COLUMNS = ["time", "series", "value"]


@dataclass(frozen=True)
class Panel:
    title: str
    measurement: str
    fields: tuple[str, ...]
    by: tuple[str, ...] = ()
    only: tuple[tuple[str, str], ...] = ()  # further tag filters (the cpu="total" series, not per-core ones)
    unit: str = ""


# The overview, one figure each; every other metric is one pick away (metric_options).
PANELS = (
    Panel("CPU", "cpu", ("busy_ratio", "iowait_ratio"), only=(("cpu", "total"),), unit="ratio"),
    Panel("Memory", "memory", ("used_ratio",), unit="ratio"),
    Panel("Load", "system", ("load1",), unit=""),
    Panel("GPU utilization", "gpu", ("utilization_ratio",), ("gpu",), unit="ratio"),
    Panel("GPU memory used", "gpu", ("memory_used_bytes",), ("gpu",), unit="bytes"),
    Panel("GPU power", "gpu", ("power_watts",), ("gpu",), unit="W"),
    Panel("GPU temperature", "gpu", ("temperature_celsius",), ("gpu",), unit="°C"),
    Panel("InfiniBand", "infiniband", ("xmit_bytes_per_second", "rcv_bytes_per_second"), ("device", "port"),
          unit="bytes/s"),
    Panel("Network", "net", ("rx_bytes_per_second", "tx_bytes_per_second"), ("interface",), unit="bytes/s"),
    Panel("Disk", "disk", ("read_bytes_per_second", "write_bytes_per_second"), ("device",), unit="bytes/s"),
    Panel("File systems", "filesystem", ("used_ratio",), ("path",), unit="ratio"),
)


def metric_options(present: set[str]) -> list[str]:
    """Every numeric gauge and rate of the measurements the store holds, as "measurement.field"."""
    out = []
    for name in sorted(present & set(MEASUREMENTS)):
        m = MEASUREMENTS[name]
        out += [f"{name}.{f.name}" for f in m.fields.values()
                if f.kind in (Kind.GAUGE, Kind.RATE) and f.type in (float, int)]
    return out


def metric_panel(metric: str) -> Panel | None:
    """The panel for a "measurement.field" of the schema (None for anything else: the URL is user input)."""
    name, _, field = (metric or "").partition(".")
    m = MEASUREMENTS.get(name)
    if m is None or field not in m.fields or m.fields[field].kind not in (Kind.GAUGE, Kind.RATE):
        return None
    by = tuple(t for t in m.tags if t != "host")
    return Panel(metric, name, (field,), by)


def panel_frame(reader, node: str, panel: Panel, start, end, every: str) -> pd.DataFrame:
    """[time, series, value]: the panel's fields for one node, `every` buckets, one series per field and tag
    combination (e.g. "gpu 0 utilization_ratio")."""
    return panel_frames(reader, node, [panel], start, end, every)[0]


def panel_frames(reader, node: str, panels, start, end, every: str) -> list[pd.DataFrame]:
    """panel_frame() of each panel, asking the store once per (measurement, tags) for every field of the panels
    that read it (the four GPU panels are one query), the queries at once (dashboard.context.gather)."""
    return node_data(reader, node, panels, start, end, every, details=False)["panels"]


def node_data(reader, node: str, panels, start, end, every: str, details: bool = True) -> dict:
    """{"panels": [panel_frame() of each panel], "jobs", "gpus", "ports"} (the last three when details), every
    query of the page at once."""
    from dashboard.context import gather

    present = set(reader.measurements())
    groups: dict[tuple, dict[str, None]] = {}
    for p in panels:
        if p.measurement in present:
            groups.setdefault((p.measurement, p.by, p.only), {}).update(dict.fromkeys(p.fields))
    tasks = {key: (lambda r, key=key, fields=tuple(fields): r.frame(
        key[0], list(fields), start, end, every=every, by=list(key[1]), where_tags={"host": node, **dict(key[2])}))
        for key, fields in groups.items()}
    if details:
        tasks.update({"jobs": lambda r: jobs(r, node, start, end), "gpus": lambda r: gpus(r, node, start, end),
                      "ports": lambda r: ports(r, node, start, end)})
    got = gather(reader, tasks)
    out = {k: got[k] for k in ("jobs", "gpus", "ports") if k in got}
    out["panels"] = [_series(got.get((p.measurement, p.by, p.only)), p) for p in panels]
    return out


def _series(f: pd.DataFrame | None, panel: Panel) -> pd.DataFrame:
    if f is None:
        return pd.DataFrame({c: [] for c in SERIES_COLUMNS})
    parts = []
    for field in panel.fields:
        label = pd.Series("", index=f.index, dtype=object)
        for tag in panel.by:
            label = label + f"{tag} " + f[tag].astype(str) + " "
        if len(panel.fields) > 1 or not panel.by:
            label = label + field
        parts.append(pd.DataFrame({"time": f["time"], "series": label.str.strip(), "value": f[field]}))
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({c: [] for c in SERIES_COLUMNS})
    return out.dropna(subset=["value"]).reset_index(drop=True)


def known_nodes(reader) -> list[str]:
    """Every host the store has CPU, GPU or job series of."""
    present = set(reader.measurements())
    hosts: set[str] = set()
    for m in ("cpu", "gpu", "job", "job_gpu"):
        if m in present:
            hosts.update(reader.tag_values(m, "host"))
    return sorted(h for h in hosts if h)


def gpus(reader, node: str, start, end) -> pd.DataFrame:
    """[gpu, model, uuid, memory_total_bytes, utilization_ratio, power_watts] of one node over the window."""
    cols = ["gpu", "model", "uuid", "memory_total_bytes", "utilization_ratio", "power_watts"]
    if "gpu" not in set(reader.measurements()):
        return pd.DataFrame(columns=cols)
    g = reader.aggregate("gpu", {"memory_total_bytes": ("memory_total_bytes", "max"),
                                 "utilization_ratio": ("utilization_ratio", "mean"),
                                 "power_watts": ("power_watts", "mean")},
                         start, end, by=["gpu", "model", "uuid"], where_tags={"host": node})
    order = pd.to_numeric(g["gpu"], errors="coerce")
    return g.assign(_o=order).sort_values(["_o", "gpu"]).drop(columns="_o").reset_index(drop=True)[cols]


def ports(reader, node: str, start, end) -> pd.DataFrame:
    """[kind, port, rate_bytes_per_second, tx_bytes_per_second, rx_bytes_per_second]: the node's InfiniBand
    ports and network interfaces with their link rate and mean traffic over the window."""
    cols = ["kind", "port", "rate_bytes_per_second", "tx_bytes_per_second", "rx_bytes_per_second"]
    present = set(reader.measurements())
    parts = []
    if "infiniband" in present:
        f = reader.aggregate("infiniband", {"rate_bytes_per_second": ("rate_bytes_per_second", "max"),
                                            "tx_bytes_per_second": ("xmit_bytes_per_second", "mean"),
                                            "rx_bytes_per_second": ("rcv_bytes_per_second", "mean")},
                             start, end, by=["device", "port"], where_tags={"host": node})
        parts.append(f.assign(kind="infiniband", port=f["device"] + "/" + f["port"]))
    if "net" in present:
        f = reader.aggregate("net", {"rate_bytes_per_second": ("speed_bytes_per_second", "max"),
                                     "tx_bytes_per_second": ("tx_bytes_per_second", "mean"),
                                     "rx_bytes_per_second": ("rx_bytes_per_second", "mean")},
                             start, end, by=["interface"], where_tags={"host": node})
        parts.append(f.assign(kind="ethernet", port=f["interface"]))
    if not parts:
        return pd.DataFrame(columns=cols)
    return pd.concat([p[cols] for p in parts], ignore_index=True)


def jobs(reader, node: str, start, end) -> pd.DataFrame:
    """[job, user, scheduler, start, end, source]: each job seen on the node in the window, from its first to
    its last sample (cgroup series `job`, else per-job GPU series `job_gpu`)."""
    cols = ["job", "user", "scheduler", "start", "end", "source"]
    present = set(reader.measurements())
    parts = []
    for measurement, field in (("job", "cpus_allocated"), ("job_gpu", "utilization_ratio")):
        if measurement not in present:
            continue
        f = reader.aggregate(measurement, {"start": (field, "first_time"), "end": (field, "last_time")}, start, end,
                             by=["job", "user", "scheduler"], where_tags={"host": node})
        parts.append(f.assign(source=measurement))
    if not parts:
        return pd.DataFrame(columns=cols)
    both = pd.concat(parts, ignore_index=True).dropna(subset=["start"])
    both = both.sort_values("source").drop_duplicates(["job", "user", "scheduler"], keep="first")  # job wins
    return both.sort_values(["start", "job"]).reset_index(drop=True)[cols]
