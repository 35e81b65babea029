"""alibaba-openb (cluster-trace-gpu-v2023): the node list and the pods' requests.

Nodes become node_inventory points at the epoch anchor (the list has no time); pods become
job_request points at anchor + creation_time (the trace counts seconds from its own start).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from agents.points import Point
from agents.traces.report import FileReport, IngestReport, TraceFormatError
from agents.traces.table import RowCheck, read_csv

KIND = "alibaba-openb"
POOL = "alibaba-openb"
NODES = "openb_node_list_all_node.csv"
PODS = "openb_pod_list_default.csv"
NODE_COLUMNS = ("sn", "cpu_milli", "memory_mib", "gpu", "model")
POD_COLUMNS = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli", "gpu_spec", "qos", "pod_phase",
               "creation_time", "deletion_time", "scheduled_time")
MIB = 1 << 20
NS = 1_000_000_000


def _files(path: Path) -> list[tuple[Path, str]]:
    if path.is_dir():
        found = [(path / name, kind) for name, kind in ((NODES, "nodes"), (PODS, "pods")) if (path / name).exists()]
        if not found:
            raise TraceFormatError(f"{path}: holds neither {NODES} nor {PODS}")
        return found
    if path.name.startswith("openb_node_list"):
        return [(path, "nodes")]
    if path.name.startswith("openb_pod_list"):
        return [(path, "pods")]
    raise TraceFormatError(f"{path}: expected a file named openb_node_list*.csv or openb_pod_list*.csv")


def _nodes(file: Path, fr: FileReport, epoch_ns: int) -> list[Point]:
    df = read_csv(file, fr, NODE_COLUMNS)
    check = RowCheck(df, fr)
    sn = check.text("sn")
    cpu = check.number("cpu_milli")
    mem = check.number("memory_mib")
    gpus = check.number("gpu", integer=True)
    model = check.text("model", required=False)
    check.unique(["sn"])
    ok = check.finish()
    return [
        Point("node_inventory", {"host": h, "gpu_model": m, "arch": "", "pool": POOL},
              {"cpu_cores": c / 1000.0, "memory_bytes": round(b * MIB), "gpus": int(g)}, epoch_ns)
        for h, m, c, b, g in zip(sn[ok].tolist(), model[ok].tolist(), cpu[ok].tolist(), mem[ok].tolist(),
                                 gpus[ok].tolist(), strict=True)
    ]


def _pods(file: Path, fr: FileReport, epoch_ns: int) -> list[Point]:
    import math

    df = read_csv(file, fr, POD_COLUMNS)
    check = RowCheck(df, fr)
    name = check.text("name")
    cpu = check.number("cpu_milli")
    mem = check.number("memory_mib")
    gpus = check.number("num_gpu", integer=True)
    milli = check.number("gpu_milli", maximum=1000)
    spec = check.text("gpu_spec", required=False)
    qos = check.text("qos", required=False)
    phase = check.text("pod_phase", required=False)
    created = check.number("creation_time")
    # A pod still pending was never scheduled; one still running may have no deletion yet.
    deleted = check.number("deletion_time", required=False)
    scheduled = check.number("scheduled_time", required=False)
    check.time(created, epoch_ns)
    check.unique(["name", "creation_time"])
    ok = check.finish()
    epoch_s = epoch_ns / NS
    points = []
    for row in zip(name[ok].tolist(), spec[ok].tolist(), qos[ok].tolist(), phase[ok].tolist(), cpu[ok].tolist(),
                   mem[ok].tolist(), gpus[ok].tolist(), milli[ok].tolist(), created[ok].tolist(),
                   deleted[ok].tolist(), scheduled[ok].tolist(), strict=True):
        n, s, q, ph, c, m, g, gm, cr, de, sc = row
        fields: dict = {"cpu_cores": c / 1000.0, "memory_bytes": round(m * MIB), "gpus": int(g),
                        "gpu_fraction": gm / 1000.0, "creation_time_seconds": epoch_s + cr}
        if not math.isnan(sc):
            fields["scheduled_time_seconds"] = epoch_s + sc
        if not math.isnan(de):
            fields["deletion_time_seconds"] = epoch_s + de
        fields["phase"] = ph
        points.append(Point("job_request", {"host": POOL, "job": n, "scheduler": "kubernetes", "user": "",
                                            "qos": q, "gpu_spec": s}, fields, epoch_ns + round(cr) * NS))
    return points


def load(path: Path, report: IngestReport, epoch_ns: int) -> Iterator[list[Point]]:
    for file, kind in _files(path):
        fr = report.file(str(file))
        yield (_nodes if kind == "nodes" else _pods)(file, fr, epoch_ns)
