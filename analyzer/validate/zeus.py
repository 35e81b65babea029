"""Leave-one-GPU-type-out validation on the Zeus (NSDI'23) measurements: loading, the split and the baselines.

The held-out type shows the model K configurations per workload: its largest batch size at the type's highest
power limit (the anchor), plus K - 1 more drawn at random without replacement; every other configuration of
that type is predicted from what was measured on the other types. Two ratio baselines get the same points;
MAPE is reported as a fraction. The protocol and the result live in zeus_protocol.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

FILE_RE = re.compile(r"^summary_power_([A-Za-z0-9_-]+)\.csv$")
COLUMNS = ("dataset", "network", "batch_size", "optimizer", "power_limit", "time_per_epoch", "average_power")
KEY = ["gpu", "workload", "batch_size", "power_limit"]


class ZeusDataError(ValueError):
    """The directory does not hold usable Zeus summary files."""


def load(data_dir: str | Path) -> pd.DataFrame:
    """One row per (gpu, workload, batch_size, power_limit): time_per_epoch and average_power averaged
    (arithmetic mean) over optimizers. Rows with missing or non-positive measurements are dropped."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ZeusDataError(f"{data_dir}: not a directory")
    frames = []
    for path in sorted(data_dir.iterdir()):
        m = FILE_RE.match(path.name)
        if not m:
            continue
        df = pd.read_csv(path)
        missing = [c for c in COLUMNS if c not in df.columns]
        if missing:
            raise ZeusDataError(f"{path}: missing column(s) {', '.join(missing)}")
        df = df[list(COLUMNS)].copy()
        for c in ("batch_size", "power_limit", "time_per_epoch", "average_power"):
            df[c] = pd.to_numeric(df[c], errors="coerce")
        df = df.dropna(subset=["batch_size", "power_limit", "time_per_epoch"])
        df = df[(df.time_per_epoch > 0) & (df.batch_size > 0) & (df.power_limit > 0)]
        df["gpu"] = m.group(1).lower()
        df["workload"] = df["dataset"].astype(str) + "/" + df["network"].astype(str)
        frames.append(df)
    if not frames:
        raise ZeusDataError(f"{data_dir}: no summary_power_<gpu>.csv files")
    df = pd.concat(frames, ignore_index=True)
    out = (df.groupby(KEY, as_index=False)
             .agg(time_per_epoch=("time_per_epoch", "mean"), average_power=("average_power", "mean")))
    out["batch_size"] = out["batch_size"].astype(int)
    out["power_limit"] = out["power_limit"].astype(float)
    pmax = out.groupby("gpu")["power_limit"].transform("max")
    out["relative_limit"] = out["power_limit"] / pmax
    return out


def held_out(data: pd.DataFrame, holdout: str, train_types: list[str] | None = None
             ) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """(train, held, anchor): the training types' rows (default: every other type), the held-out type's rows of
    workloads that training measured and that have an anchor, sorted by workload, batch size and limit (index
    0..n-1), and the anchor mask: each workload's largest batch size at the type's highest power limit."""
    holdout = holdout.lower()
    types = sorted(set(data.gpu))
    if holdout not in types:
        raise ZeusDataError(f"no measurements for GPU type {holdout!r}; have {', '.join(types)}")
    train = data[data.gpu.isin([t for t in (train_types or types) if t != holdout])]
    held = data[(data.gpu == holdout) & data.workload.isin(set(train.workload))]
    pmax = held.power_limit.max()

    def anchors(h: pd.DataFrame) -> pd.Series:
        return (h.batch_size == h.groupby("workload").batch_size.transform("max")) & (h.power_limit == pmax)

    held = held[held.workload.isin(set(held[anchors(held)].workload))]
    held = held.sort_values(["workload", "batch_size", "power_limit"]).reset_index(drop=True)
    anchor = anchors(held).to_numpy()
    if not anchor.any() or anchor.all():
        raise ZeusDataError(f"{holdout}: no workload measured at its largest batch size and highest power limit")
    return train.reset_index(drop=True), held, anchor


def split(data: pd.DataFrame, holdout: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """K = 1: (train: other types, profiled: the anchor of each workload of the held-out type, test: the rest)."""
    train, held, anchor = held_out(data, holdout)
    return train, held[anchor].reset_index(drop=True), held[~anchor].reset_index(drop=True)


# ---------------------------------------------------------------- baselines

def raw_baseline(train: pd.DataFrame, rows: pd.DataFrame) -> np.ndarray:
    """Per row (workload, batch_size, relative_limit): the geometric mean over the other types of the time at
    the same batch size (the nearest one, in log2, where a type lacks it; the smaller on a tie) and the nearest
    relative power limit (the lower on a tie). NaN where no training type measured the workload."""
    logs = np.zeros(len(rows))
    count = np.zeros(len(rows))
    wl = rows.workload.to_numpy()
    b = np.log2(rows.batch_size.to_numpy(float))
    rel = rows.relative_limit.to_numpy(float)
    for (_gpu, w), g in train.groupby(["gpu", "workload"]):
        m = wl == w
        if not m.any():
            continue
        bs = np.sort(g.batch_size.unique()).astype(float)
        near_b = bs[np.argmin(np.abs(np.log2(bs)[None, :] - b[m][:, None]), axis=1)]
        out = np.empty(int(m.sum()))
        for bb in np.unique(near_b):
            gb = g[g.batch_size == bb].sort_values("relative_limit")
            rs = gb.relative_limit.to_numpy(float)
            k = near_b == bb
            pick = np.argmin(np.abs(rs[None, :] - rel[m][k][:, None]), axis=1)
            out[k] = np.log(gb.time_per_epoch.to_numpy(float)[pick])
        logs[m] += out
        count[m] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.exp(logs / np.maximum(count, 1)), np.nan)


def baselines(train: pd.DataFrame, profiled: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """test with columns global_ratio and per_workload_ratio: the raw baseline times a ratio learned from
    the profiled points (per workload: the geometric mean of its profiled points' ratios; globally: the
    geometric mean over all profiled points)."""
    log_ratio = np.log(profiled.time_per_epoch.to_numpy(float) / raw_baseline(train, profiled))
    per_wl = pd.Series(log_ratio).groupby(profiled.workload.to_numpy()).mean()
    raw = raw_baseline(train, test)
    out = test.copy()
    out["global_ratio"] = raw * float(np.exp(log_ratio.mean()))
    out["per_workload_ratio"] = raw * np.exp(test.workload.map(per_wl).to_numpy(float))
    return out


def mape(pred: np.ndarray, actual: np.ndarray) -> float:
    pred, actual = np.asarray(pred, float), np.asarray(actual, float)
    return float(np.mean(np.abs(pred - actual) / actual))
