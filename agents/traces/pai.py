"""alibaba-pai-spec (cluster-trace-gpu-v2020, pai_machine_spec.csv): one node_inventory point per machine.

The file has no header. cap_mem is "GB" in the trace's schema; the values (384, 512) are binary DIMM
totals, so we read them as GiB (docs/traces.md says why).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from agents.points import Point
from agents.traces.report import IngestReport
from agents.traces.table import RowCheck, read_csv

KIND = "alibaba-pai-spec"
POOL = "alibaba-pai"
FILE = "pai_machine_spec.csv"
COLUMNS = ("machine", "gpu_type", "cap_cpu", "cap_mem", "cap_gpu")
GIB = 1 << 30
# gpu_type CPU marks machines without GPUs; node_inventory spells that as an empty gpu_model.
CPU_ONLY = "CPU"


def load(path: Path, report: IngestReport, epoch_ns: int) -> Iterator[list[Point]]:
    file = path / FILE if path.is_dir() else path
    fr = report.file(str(file))
    df = read_csv(file, fr, COLUMNS, names=COLUMNS)
    check = RowCheck(df, fr)
    machine = check.text("machine")
    gpu_type = check.text("gpu_type")
    cpu = check.number("cap_cpu")
    mem = check.number("cap_mem")
    gpus = check.number("cap_gpu", integer=True)
    check.unique(["machine"])
    ok = check.finish()
    yield [
        Point("node_inventory", {"host": h, "gpu_model": "" if t == CPU_ONLY else t, "arch": "", "pool": POOL},
              {"cpu_cores": float(c), "memory_bytes": round(m * GIB), "gpus": int(g)}, epoch_ns)
        for h, t, c, m, g in zip(machine[ok].tolist(), gpu_type[ok].tolist(), cpu[ok].tolist(), mem[ok].tolist(),
                                 gpus[ok].tolist(), strict=True)
    ]
