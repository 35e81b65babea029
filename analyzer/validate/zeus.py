"""Leave-one-GPU-type-out validation on the Zeus (NSDI'23) measurements.

The held-out type shows the model exactly one configuration per workload (its largest batch size at the
type's highest power limit); every other configuration of that type is predicted from what was measured on
the other types. Two ratio baselines get the same information; MAPE is reported as a fraction.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analyzer.models.power import relative_slowdown
from analyzer.validate.zeus_model import StepTimeCurve, pooled_speeds

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


def split(data: pd.DataFrame, holdout: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(train: other types, profiled: one row per workload of the held-out type, test: the rest of it)."""
    holdout = holdout.lower()
    if holdout not in set(data.gpu):
        raise ZeusDataError(f"no measurements for GPU type {holdout!r}; have {', '.join(sorted(set(data.gpu)))}")
    train = data[data.gpu != holdout]
    held = data[data.gpu == holdout]
    held = held[held.workload.isin(set(train.workload))]
    pmax = held.power_limit.max()
    bmax = held.groupby("workload").batch_size.transform("max")
    is_prof = (held.batch_size == bmax) & (held.power_limit == pmax)
    profiled = held[is_prof]
    test = held[~is_prof & held.workload.isin(set(profiled.workload))]
    if profiled.empty or test.empty:
        raise ZeusDataError(f"{holdout}: no workload measured at its largest batch size and highest power limit")
    return train.reset_index(drop=True), profiled.reset_index(drop=True), test.reset_index(drop=True)


# ---------------------------------------------------------------- baselines

def _nearest(values: np.ndarray, target: float, log: bool) -> float:
    v = np.log2(values) if log else values
    t = math.log2(target) if log else target
    return float(values[np.argmin(np.abs(v - t))])


def _baseline_raw(train: pd.DataFrame, workload: str, batch: int, rel: float) -> float:
    """Geometric mean over the other types of the time at the same batch size (the nearest one, in log2,
    where a type lacks it) and the nearest relative power limit."""
    logs = []
    for _, g in train[train.workload == workload].groupby("gpu"):
        b = _nearest(g.batch_size.unique().astype(float), batch, log=True)
        gb = g[g.batch_size == b]
        r = _nearest(gb.relative_limit.unique(), rel, log=False)
        logs.append(math.log(float(gb[gb.relative_limit == r].time_per_epoch.iloc[0])))
    return math.exp(sum(logs) / len(logs)) if logs else float("nan")


def baselines(train: pd.DataFrame, profiled: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """test with columns global_ratio and per_workload_ratio: the raw baseline times a ratio learned from
    the profiled points (one geometric-mean ratio overall, or one per workload)."""
    ratio = {}
    for row in profiled.itertuples():
        ratio[row.workload] = row.time_per_epoch / _baseline_raw(train, row.workload, row.batch_size,
                                                                 row.relative_limit)
    global_ratio = math.exp(np.mean(np.log(list(ratio.values()))))
    raw = np.array([_baseline_raw(train, r.workload, r.batch_size, r.relative_limit) for r in test.itertuples()])
    out = test.copy()
    out["global_ratio"] = raw * global_ratio
    out["per_workload_ratio"] = raw * test.workload.map(ratio).to_numpy()
    return out


# ---------------------------------------------------------------- the model

def _interp_log2(x: np.ndarray, y: np.ndarray, at: float) -> float:
    """Piecewise-linear in log2(x); beyond the ends, continue the last segment's slope at half strength
    (a batch-size curve flattens, it does not keep bending)."""
    order = np.argsort(x)
    lx, y = np.log2(x[order]), y[order]
    t = math.log2(at)
    if len(lx) == 1:
        return float(y[0])
    if t < lx[0]:
        s = (y[1] - y[0]) / (lx[1] - lx[0])
        return float(y[0] + 0.5 * s * (t - lx[0]))
    if t > lx[-1]:
        s = (y[-1] - y[-2]) / (lx[-1] - lx[-2])
        return float(y[-1] + 0.5 * s * (t - lx[-1]))
    return float(np.interp(t, lx, y))


def _profiled_floor(g: pd.DataFrame) -> float:
    """The lowest average power among a type's profiled-like points (largest batch, highest limit): the same
    estimate of static power that the held-out type allows."""
    top = g[g.power_limit == g.power_limit.max()]
    top = top[top.batch_size == top.groupby("workload").batch_size.transform("max")]
    return float(top.average_power.min())


@dataclass
class CrossTypeModel:
    """log t(w, H, b, P) = log t_profiled(w, H) + g_w(b) + log s(x).

    g_w(b): log uncapped time at batch b relative to the profiled batch, averaged over the other types; each
    type's curve is a StepTimeCurve (A/b + B + C*b times its measured residual), which decides how the curve
    is extrapolated beyond the batch sizes that type measured. Moved to the held-out type, the per-sample
    terms take the workload's own speed and the overhead term the type's pooled speed (zeus_model).
    s(x): power-cap slowdown as a function of the dynamic power fraction x = (P - floor) / (demand - floor),
    where floor is the type's static power (the lowest average power seen on it) and demand the uncapped
    average power of (w, b); s is the PowerCapModel form fitted on the other types. The demand at other
    batch sizes follows the other types' dynamic-power curve, scaled to the profiled point's power.
    """

    alpha: float = 1.0
    p: float = 1.0
    floor_scale: float = 1.0

    def fit(self, train: pd.DataFrame) -> CrossTypeModel:
        from analyzer.models.power import fit_slowdown

        x, s = [], []
        for _gpu, g in train.groupby("gpu"):
            floor = self.floor_scale * _profiled_floor(g)
            pmax = g.power_limit.max()
            for (_, _), gb in g.groupby(["workload", "batch_size"]):
                top = gb[gb.power_limit == pmax]
                if top.empty:
                    continue
                demand = float(top.average_power.iloc[0])
                t1 = float(top.time_per_epoch.iloc[0])
                xs = (gb.power_limit.to_numpy() - floor) / max(demand - floor, 1e-9)
                x.extend(xs)
                s.extend(gb.time_per_epoch.to_numpy() / t1)
        self.alpha, self.p = fit_slowdown(np.clip(np.array(x), 0.02, None), np.array(s))
        self.train_ = train
        return self

    def predict(self, profiled: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
        train = self.train_
        floor_h = self.floor_scale * float(profiled.average_power.min())
        prof_by_wl = profiled.set_index("workload")
        anchors = {wl: (float(r.batch_size), float(r.time_per_epoch)) for wl, r in prof_by_wl.iterrows()}
        # per training type: its StepTimeCurves, the pooled speeds of the held-out type, its dynamic-power curves
        sources = []
        for _gpu, g in train.groupby("gpu"):
            top = g[g.power_limit == g.power_limit.max()]
            floor = self.floor_scale * _profiled_floor(g)
            curves, dyn = {}, {}
            for wl, t in top.groupby("workload"):
                bs = t.batch_size.to_numpy(float)
                curves[wl] = StepTimeCurve(bs, t.time_per_epoch.to_numpy(float))
                dyn[wl] = (bs, (t.average_power.to_numpy() - floor) / (top.power_limit.max() - floor))
            o, speeds = pooled_speeds(curves, anchors)
            sources.append((curves, dyn, o, speeds))
        out = np.empty(len(test))
        for wl, idx in test.groupby("workload").groups.items():
            prof = prof_by_wl.loc[wl]
            b0 = float(prof.batch_size)
            g_logt, g_dyn = {}, {}
            for b in test.loc[idx].batch_size.unique():
                gs, ds = [], []
                for curves, dyn, o, speeds in sources:
                    if wl not in curves:
                        continue
                    c = curves[wl]
                    gs.append(math.log(float(c.at(b, speeds[wl], o)) / float(c.at(b0, speeds[wl], o))))
                    bs, ld = dyn[wl]
                    ds.append(_interp_log2(bs, ld, b) - _interp_log2(bs, ld, b0))
                g_logt[b], g_dyn[b] = float(np.mean(gs)), float(np.mean(ds))
            span = float(prof.power_limit) - floor_h
            d0 = (float(prof.average_power) - floor_h) / span
            dyn0 = max(d0 * span, 1e-3)
            for i in idx:
                r = test.loc[i]
                demand_dyn = max((d0 + g_dyn[r.batch_size]) * span, 1e-3)
                x = max((r.power_limit - floor_h) / demand_dyn, 0.02)
                x0 = max((prof.power_limit - floor_h) / dyn0, 0.02)
                slow = relative_slowdown(x, self.alpha, self.p) / relative_slowdown(x0, self.alpha, self.p)
                out[test.index.get_loc(i)] = float(prof.time_per_epoch) * math.exp(g_logt[r.batch_size]) * slow
        return out


def mape(pred: np.ndarray, actual: np.ndarray) -> float:
    pred, actual = np.asarray(pred, float), np.asarray(actual, float)
    return float(np.mean(np.abs(pred - actual) / actual))


def validate(data_dir: str | Path, holdout: str, detail: bool = False) -> dict:
    """The leave-one-type-out result for one held-out GPU type: {"holdout", "n", "mape": {"model",
    "global_ratio", "per_workload_ratio"}}; with detail, also per-workload MAPEs and the fitted power curve."""
    data = load(data_dir)
    train, profiled, test = split(data, holdout)
    base = baselines(train, profiled, test)
    model = CrossTypeModel().fit(train)
    pred = model.predict(profiled, test)
    actual = test.time_per_epoch.to_numpy()
    result = {
        "holdout": holdout.lower(),
        "n": len(test),
        "mape": {
            "model": mape(pred, actual),
            "global_ratio": mape(base.global_ratio.to_numpy(), actual),
            "per_workload_ratio": mape(base.per_workload_ratio.to_numpy(), actual),
        },
    }
    if not detail:
        return result
    return result | {
        "per_workload": {
            wl: {
                "n": int(m.sum()),
                "model": mape(pred[m], actual[m]),
                "global_ratio": mape(base.global_ratio.to_numpy()[m], actual[m]),
                "per_workload_ratio": mape(base.per_workload_ratio.to_numpy()[m], actual[m]),
            }
            for wl in sorted(set(test.workload)) for m in [(test.workload == wl).to_numpy()]
        },
        "power_curve": {"alpha": model.alpha, "p": model.p},
    }
