"""Validation figures for the capacity forecast (docs/validation.md, "Capacity forecast").

    python -m analyzer.forecast.validate [--alibaba DIR] [--seeds 1,2,3]

1. Synthetic back-test: 28 days hourly of known trend + daily + weekly + noise, train on 21, forecast 7;
   MAPE and 90%-interval coverage over seeds.
2. Simulated fleet: demand_series against the scheduler's placements in truth.json (GPU-hours per hour
   per accelerator type), and a back-test (train 7 days, forecast 2) per pool. Then a growing fleet
   (job arrivals rising by mix.gpu/cpu_growth_per_week): train 21 days, forecast 7, against a flat mean and
   the seasonal naive, per pool, with the structure each pool's cross-validation chose.
3. Real trace (optional): the Alibaba GenAI fleet's GPU duty cycle, summed over pods per 5 minutes.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


def synthetic_backtest(seeds=range(10)) -> dict:
    import numpy as np
    import pandas as pd

    from analyzer.forecast.model import CapacityForecaster

    mapes, covers = [], []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        t = pd.date_range("2026-10-01", periods=28 * 24, freq="h", tz="UTC")
        d = np.asarray((t - t[0]) / pd.Timedelta(days=1), dtype=float)
        y = (100 + 0.5 * d + 20 * np.sin(2 * np.pi * (d - 0.3)) + 6 * np.cos(4 * np.pi * d)
             + 10 * np.sin(2 * np.pi * d / 7) + rng.normal(0, 4, len(d)))
        df = pd.DataFrame({"time": t, "pool": "gpu:A100", "demand": y})
        m = CapacityForecaster().fit(df.iloc[:21 * 24])
        p = m.predict("7d")
        yt = y[21 * 24:]
        mapes.append(float(np.mean(np.abs(p["forecast"].to_numpy() - yt) / yt)))
        covers.append(float(np.mean((yt >= p["lower"].to_numpy()) & (yt <= p["upper"].to_numpy()))))
    return {"seeds": len(mapes), "mape_mean": float(np.mean(mapes)), "mape_max": float(np.max(mapes)),
            "coverage_mean": float(np.mean(covers)), "coverage_min": float(np.min(covers)),
            "coverage_max": float(np.max(covers))}


def simulated_fleet(nodes: int = 24, days: int = 9, train_days: int = 7, seed: int = 1) -> dict:
    import numpy as np
    import pandas as pd

    from agents.query import open_reader
    from agents.simulate import DEFAULT_START, simulate
    from analyzer.forecast.demand import demand_series
    from analyzer.forecast.model import CapacityForecaster

    start = pd.Timestamp(DEFAULT_START)
    with tempfile.TemporaryDirectory() as tmp:
        simulate(nodes=nodes, days=days, interval=60, seed=seed, store=f"embedded:{tmp}")
        truth = json.loads(Path(tmp, "truth.json").read_text(encoding="utf-8"))
        with open_reader(f"embedded:{tmp}") as reader:
            ds = demand_series(reader, start, start + pd.Timedelta(days=days), every="1h")
    hours = days * 24
    alloc: dict[str, np.ndarray] = {}
    for j in truth["jobs"]:
        if j["placed"] and j["accelerator"]:
            n = sum(len(g) for g in j["gpus"].values())
            a = alloc.setdefault(f"gpu:{j['accelerator_key']}", np.zeros(hours))
            for h in range(hours):
                a[h] += n * max(0.0, min(j["end_seconds"], (h + 1) * 3600) - max(j["start_seconds"], h * 3600)) / 3600
    err = 0.0
    for pool, a in alloc.items():
        got = ds[ds["pool"] == pool].set_index("time")["demand"].reindex(
            start + pd.to_timedelta(np.arange(hours), unit="h")).fillna(0).to_numpy()
        err = max(err, float(np.max(np.abs(got - a))))
    cut = start + pd.Timedelta(days=train_days)
    train, test = ds[ds["time"] < cut], ds[ds["time"] >= cut]
    model = CapacityForecaster().fit(train)
    pred = model.predict(pd.Timedelta(days=days - train_days))
    flat = CapacityForecaster(trend=None).fit(train).predict(pd.Timedelta(days=days - train_days))
    joined = test.merge(pred, on=["time", "pool"]).merge(
        flat.rename(columns={"forecast": "flat"})[["time", "pool", "flat"]], on=["time", "pool"])
    per_pool = {}
    for pool, g in joined.groupby("pool"):
        y = g["demand"].to_numpy()
        # Baseline: the last training day's mean, held flat (what a capacity planner eyeballs).
        last = train[(train["pool"] == pool) & (train["time"] >= cut - pd.Timedelta(days=1))]["demand"].mean()

        def wape(f, y=y):  # sum |error| / sum demand: MAPE is meaningless for pools idle part of the time
            return float(np.sum(np.abs(np.asarray(f) - y)) / max(np.sum(y), 1e-9))

        per_pool[pool] = {
            "mean_demand": float(y.mean()), "capacity": model.capacity_.get(pool),
            "wape": wape(g["forecast"]), "wape_no_trend": wape(g["flat"]), "wape_last_day_mean": wape(last),
            "coverage": float(np.mean((y >= g["lower"].to_numpy() - 1e-9) & (y <= g["upper"].to_numpy() + 1e-9))),
            "terms": ",".join(model.pools_[pool]["terms"]), "structure": model.pools_[pool]["model"]}
    return {"nodes": nodes, "days": days, "train_days": train_days, "seed": seed,
            "gpu_demand_max_abs_error_vs_truth": err, "pools": per_pool}


def growth_backtest(nodes: int = 128, days: int = 28, train_days: int = 21, seed: int = 1,
                    growth_per_week: float | None = None, interval: float = 600) -> dict:
    """A simulated fleet whose job arrivals grow (profile mix.gpu/cpu_growth_per_week; None = the default
    profile's): fit on train_days (long enough for weekly terms), forecast the rest, against a flat mean
    of each pool's training history and last week repeated. WAPE pooled over all pools and per pool; MAPE per
    pool (growth_scores)."""
    import pandas as pd

    from agents.query import open_reader
    from agents.simulate import DEFAULT_START, simulate
    from agents.simulate.profile import load_profile
    from analyzer.forecast.demand import demand_series

    prof = load_profile(None).model_copy(deep=True)
    if growth_per_week is not None:
        prof.mix.gpu_growth_per_week = prof.mix.cpu_growth_per_week = growth_per_week
    start = pd.Timestamp(DEFAULT_START)
    with tempfile.TemporaryDirectory() as tmp:
        simulate(nodes=nodes, days=days, interval=interval, seed=seed, profile=prof, store=f"embedded:{tmp}")
        with open_reader(f"embedded:{tmp}") as reader:
            ds = demand_series(reader, start, start + pd.Timedelta(days=days), every="1h")
    return growth_scores(ds, start + pd.Timedelta(days=train_days), pd.Timedelta(days=days - train_days)) | {
        "nodes": nodes, "days": days, "train_days": train_days, "seed": seed, "interval": interval,
        "growth_per_week": prof.mix.gpu_growth_per_week}


def growth_scores(ds, cut, horizon) -> dict:
    """Train on ds before cut, forecast `horizon`: WAPE pooled and per pool of the forecaster (structure
    chosen by CV), the same estimator with no trend, each pool's training mean held flat, and last week
    repeated (seasonal naive); the structure each pool got and the forecaster's interval coverage."""
    import numpy as np
    import pandas as pd

    from analyzer.forecast.model import CapacityForecaster

    train, test = ds[ds["time"] < cut], ds[ds["time"] >= cut]
    model = CapacityForecaster(horizon=horizon).fit(train)
    preds = {"model": model.predict(horizon),
             "no_trend": CapacityForecaster(trend=None, horizon=horizon).fit(train).predict(horizon)}
    flat = train.groupby("pool")["demand"].mean()
    joined = test.merge(preds["model"][["time", "pool", "forecast", "lower", "upper"]], on=["time", "pool"]).merge(
        preds["no_trend"][["time", "pool", "forecast"]].rename(columns={"forecast": "no_trend"}), on=["time", "pool"])
    joined["flat_mean"] = joined["pool"].map(flat)
    # Seasonal naive: the demand one week before (the last training week repeated for a 7-day horizon).
    week = train.assign(time=train["time"] + pd.Timedelta(days=7))[["time", "pool", "demand"]]
    joined = joined.merge(week.rename(columns={"demand": "seasonal_naive"}), on=["time", "pool"], how="left")
    methods = ("forecast", "no_trend", "flat_mean", "seasonal_naive")
    per_pool = {}
    for pool, g in joined.groupby("pool"):
        y = g["demand"].to_numpy()
        m = model.pools_[pool]
        row = {"train_mean": float(flat[pool]), "test_mean": float(y.mean()), "structure": m["model"],
               "cv_wape": m["cv"].get("wape"), "cv_wape_flat_mean": m["cv"].get("wape_flat_mean"),
               "coverage": float(np.mean((y >= g["lower"].to_numpy() - 1e-9) & (y <= g["upper"].to_numpy() + 1e-9)))}
        for meth in methods:
            err = np.abs(g[meth].to_numpy() - y)
            row[f"wape_{meth}"] = float(np.nansum(err) / max(y.sum(), 1e-9))
            row[f"mape_{meth}"] = float(np.nanmean(err / y)) if (y > 0).all() else None
        row["ratio_to_flat_mean"] = row["wape_forecast"] / max(row["wape_flat_mean"], 1e-12)
        per_pool[pool] = row
    y = joined["demand"].to_numpy()
    pooled = {meth: float(np.nansum(np.abs(joined[meth].to_numpy() - y)) / y.sum()) for meth in methods}
    cover = float(np.mean((y >= joined["lower"].to_numpy() - 1e-9) & (y <= joined["upper"].to_numpy() + 1e-9)))
    return {"wape": pooled, "coverage": cover, "pools": per_pool}


def alibaba(path: str) -> dict:
    import pandas as pd

    from analyzer.forecast.model import CapacityForecaster
    from analyzer.minimums import InsufficientData

    df = pd.read_csv(f"{path}/pod_gpu_duty_cycle_anon.csv.gz")
    df["time"] = pd.to_datetime(df["timestamp_anon"], unit="s", utc=True).dt.floor("5min")
    # Busy GPUs per 5 minutes: mean duty cycle per pod in the bucket, summed over pods.
    per_pod = df.groupby(["time", "container_ip"])["value"].mean() / 100.0
    series = per_pod.groupby("time").sum().rename("demand").reset_index().assign(pool="gpu:genai")
    span_h = (series["time"].max() - series["time"].min()) / pd.Timedelta(hours=1)
    try:
        CapacityForecaster().fit(series)
        outcome = "fitted"
    except InsufficientData as e:
        outcome = f"InsufficientData: {e}"
    return {"pods": int(df["container_ip"].nunique()), "buckets": len(series), "span_hours": float(span_h),
            "mean_busy_gpus": float(series["demand"].mean()), "fit": outcome}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alibaba", help="directory with pod_gpu_duty_cycle_anon.csv.gz (alibaba-genai-2026)")
    ap.add_argument("--seeds", default="1", help="comma-separated simulator seeds for the growing fleet (1)")
    args = ap.parse_args(argv)
    seeds = [int(x) for x in args.seeds.split(",")]
    out = {"synthetic": synthetic_backtest(), "simulated": simulated_fleet(),
           "simulated_growth": {f"seed {k} growth {g}": growth_backtest(seed=k, growth_per_week=g)
                                for k in seeds for g in (None, 0.10)}}
    if args.alibaba:
        out["alibaba_genai"] = alibaba(args.alibaba)
    print(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
