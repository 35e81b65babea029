"""alibaba-genai (cluster-trace-v2026-GenAI): per-pod GPU duty cycle and GPU memory used.

Each container_ip (hashed) is a pod: job_gpu points with job=container_ip, scheduler=kubernetes,
host=alibaba-genai (the trace names no node) and gpu=0. The two files sample at different instants,
so duty-cycle and memory samples are separate points; timestamps are already absolute (shifted).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from agents.points import Point
from agents.traces.report import IngestReport, TraceFormatError
from agents.traces.table import RowCheck, read_csv

KIND = "alibaba-genai"
HOST = "alibaba-genai"
DUTY_CYCLE = "pod_gpu_duty_cycle_anon.csv.gz"
MEMORY = "pod_gpu_memory_used_bytes_anon.csv.gz"
COLUMNS = ("timestamp_anon", "value", "container_ip")
CHUNK = 50_000


def _files(path: Path) -> list[tuple[Path, str]]:
    """(file, field) pairs; a single file is told apart by its name."""
    if path.is_dir():
        found = [(path / name, field) for name, field in ((DUTY_CYCLE, "utilization_ratio"),
                                                           (MEMORY, "memory_used_bytes"))
                 if (path / name).exists()]
        if not found:
            raise TraceFormatError(f"{path}: holds neither {DUTY_CYCLE} nor {MEMORY}")
        return found
    if "duty_cycle" in path.name:
        return [(path, "utilization_ratio")]
    if "memory" in path.name:
        return [(path, "memory_used_bytes")]
    raise TraceFormatError(f"{path}: cannot tell from the name whether it is the duty-cycle or the memory file "
                           f"(expected {DUTY_CYCLE} or {MEMORY})")


def load(path: Path, report: IngestReport, epoch_ns: int | None = None) -> Iterator[list[Point]]:
    if epoch_ns is not None:
        raise TraceFormatError(f"{KIND} timestamps are absolute; --epoch does not apply")
    for file, field in _files(path):
        fr = report.file(str(file))
        df = read_csv(file, fr, COLUMNS)
        check = RowCheck(df, fr)
        pod = check.text("container_ip")
        ts = check.number("timestamp_anon")
        if field == "utilization_ratio":
            value = check.number("value", maximum=100, over_reason="percent_over_100") / 100.0
        else:
            value = check.number("value")
        # Milliseconds first (in check.time): seconds * 1e9 as a float would lose precision at Unix-epoch magnitudes.
        times = check.time(ts)
        check.unique(["container_ip", "timestamp_anon"])
        ok = check.finish()
        time_ns = times[ok].tolist()
        values = value[ok].tolist() if field == "utilization_ratio" else value[ok].round().astype("int64").tolist()
        pods = pod[ok].tolist()
        for start in range(0, len(pods), CHUNK):
            yield [
                Point("job_gpu", {"host": HOST, "job": p, "scheduler": "kubernetes", "user": "", "gpu": "0",
                                  "uuid": ""}, {field: v}, t)
                for p, v, t in zip(pods[start:start + CHUNK], values[start:start + CHUNK],
                                   time_ns[start:start + CHUNK], strict=True)
            ]
