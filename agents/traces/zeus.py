"""zeus (NSDI'23 trace, summary_power_<gpu>.csv): time and power per epoch per workload configuration.

One workload_profile point per row. The rows have no time: row i of a file is written at
anchor + i seconds, so no two rows of one series (workload, gpu_model, optimizer) share a timestamp.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from agents.points import Point
from agents.traces.report import IngestReport, TraceFormatError
from agents.traces.table import RowCheck, read_csv

KIND = "zeus"
HOST = "zeus"
COLUMNS = ("dataset", "network", "batch_size", "optimizer", "power_limit", "time_per_epoch", "average_power")
NAME = re.compile(r"^summary_power_([A-Za-z0-9]+)\.csv$")
NS = 1_000_000_000


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if NAME.match(p.name))
        if not files:
            raise TraceFormatError(f"{path}: holds no summary_power_<gpu>.csv file")
        return files
    if not NAME.match(path.name):
        raise TraceFormatError(f"{path}: the GPU model comes from the file name, which must be summary_power_<gpu>.csv")
    return [path]


def load(path: Path, report: IngestReport, epoch_ns: int) -> Iterator[list[Point]]:
    for file in _files(path):
        gpu_model = NAME.match(file.name).group(1).upper()
        fr = report.file(str(file))
        df = read_csv(file, fr, COLUMNS)
        check = RowCheck(df, fr)
        dataset = check.text("dataset")
        network = check.text("network")
        batch = check.number("batch_size", integer=True)
        optimizer = check.text("optimizer")
        limit = check.number("power_limit")
        seconds = check.number("time_per_epoch")
        watts = check.number("average_power")
        ok = check.finish()
        rows = df.index[ok].tolist()
        yield [
            Point("workload_profile", {"host": HOST, "workload": f"{d}/{n}", "gpu_model": gpu_model, "optimizer": o},
                  {"batch_size": int(b), "power_limit_watts": pl, "time_per_epoch_seconds": t,
                   "average_power_watts": w, "energy_per_epoch_joules": t * w}, epoch_ns + i * NS)
            for i, d, n, o, b, pl, t, w in zip(rows, dataset[ok].tolist(), network[ok].tolist(),
                                                optimizer[ok].tolist(), batch[ok].tolist(), limit[ok].tolist(),
                                                seconds[ok].tolist(), watts[ok].tolist(), strict=True)
        ]
