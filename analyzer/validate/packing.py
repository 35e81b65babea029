"""Packing backtest on the Alibaba GPU 2023 trace (openb): place its pods on its nodes in arrival order.

Every method starts from empty nodes and tries each pod once, in creation_time order (pods never leave:
the question is how much of the cluster each method can fill before fragmentation stops it). Figures per
method: pods placed, GPUs allocated (the GPU capacity the placed pods hold, in GPUs), and GPUs stranded
(free GPU capacity on nodes where neither a pod still pending nor a typical pod fits).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from agents.traces.report import TraceFormatError
from analyzer.recommend.packing import METHODS, Nodes, Pods, State, pack, typical_pods
from analyzer.validate.series import read_strict

NODE_COLUMNS = ("sn", "cpu_milli", "memory_mib", "gpu", "model")
POD_COLUMNS = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli", "gpu_spec", "creation_time")


def _numbers(df: pd.DataFrame, path: str | Path, column: str, *, integer: bool = True,
             maximum: float | None = None) -> np.ndarray:
    text = df[column].str.strip()
    v = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(v) | (v < 0)
    if integer:
        bad |= np.isfinite(v) & (v % 1 != 0)
    if maximum is not None:
        bad |= v > maximum
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        kind = "non-negative integers" if integer else "non-negative numbers"
        raise TraceFormatError(f"{path}: column {column!r}: {int(bad.sum())} row(s) are not {kind}"
                               + (f" up to {maximum:g}" if maximum is not None else "")
                               + f", first on line {i + 2}: {text.iloc[i]!r}")
    return v.astype(np.int64) if integer else v


def read_nodes(path: str | Path) -> Nodes:
    df = read_strict(path, NODE_COLUMNS)
    return Nodes(df["sn"].str.strip().to_numpy(), _numbers(df, path, "cpu_milli"), _numbers(df, path, "memory_mib"),
                 _numbers(df, path, "gpu"), df["model"].str.strip().to_numpy().astype(str))


def read_pods(path: str | Path) -> Pods:
    """The pods in arrival order (creation_time; the file's order among equal times)."""
    df = read_strict(path, POD_COLUMNS)
    created = _numbers(df, path, "creation_time", integer=False)
    order = np.argsort(created, kind="stable")
    num = _numbers(df, path, "num_gpu")
    milli = _numbers(df, path, "gpu_milli", maximum=1000)
    bad = np.flatnonzero((num > 0) & (milli == 0))
    if len(bad):
        raise TraceFormatError(f"{path}: column 'gpu_milli': {len(bad)} row(s) ask for GPUs with 0 milli-GPU, "
                               f"first on line {bad[0] + 2}")
    return Pods(df["name"].str.strip().to_numpy()[order], _numbers(df, path, "cpu_milli")[order],
                _numbers(df, path, "memory_mib")[order], num[order], np.where(num > 0, milli, 0)[order],
                df["gpu_spec"].str.strip().to_numpy().astype(str)[order])


def backtest(nodes: Nodes, pods: Pods, methods: tuple[str, ...] = METHODS,
             progress: Callable[[str, int, int], None] | None = None) -> dict:
    """{"methods": {method: {pods_placed, pods_failed, gpus_allocated, gpus_stranded, seconds}}, ...}."""
    typ = typical_pods(pods, State.empty(nodes).models)
    out = {}
    for m in methods:
        start = time.perf_counter()
        r = pack(m, nodes, pods, typ, None if progress is None else (lambda i, n, m=m: progress(m, i, n)))
        out[m] = {**r.summary(nodes, pods, typ), "seconds": round(time.perf_counter() - start, 2)}
    return {"methods": out, "pods": len(pods), "nodes": len(nodes.names), "gpus": int(nodes.gpus.sum()),
            "gpus_requested": round(float((pods.num_gpu * pods.gpu_milli).sum()) / 1000, 3),
            "typical_pods": len(typ.p)}
