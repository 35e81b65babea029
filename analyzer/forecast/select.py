"""Choosing a pool's forecast structure by rolling-origin cross-validation on its training history.

The candidates (candidates()) are the obvious baselines - flat means of the whole history and of its last
7 days, the seasonal naive forecasts (yesterday / last week repeated) - and the regressions: level,
linear or damped trend, x daily Fourier order x weekly Fourier order x ridge strength.

Folds (folds()): forecast origins spread evenly from `min_train` days after the first point to `min_test`
before the last; each fold trains on everything before its origin and is scored on what follows, up to the
forecast horizon (or the end of the history). This is scikit-learn's TimeSeriesSplit with expanding
training windows, except that the test windows run as far out as the horizon and so overlap: a structure is
judged on the horizon it will be used for, not on the next few hours, which a trend fitted to a swing gets
right and the next week wrong. Every candidate is scored on the same folds: the grid holds only structures
the shortest fold can fit (weekly terms and last week's seasonal naive need a 14-day first fold).

Choice (choose()): the flat mean of the whole history stays unless some candidate's mean absolute error over
all folds' test points is lower by `margin` (model.MARGIN, 15%); then, among the candidates within
`tolerance` of the best, the one with the fewest coefficients wins: a difference that small is noise across a
handful of folds, and the simpler structure is the one that fails more gently.
"""

from __future__ import annotations

from analyzer.forecast.structures import DAY_NS, Structure
from analyzer.forecast.structures import fit as fit_structure
from analyzer.forecast.structures import predict as predict_structure

WEEKLY_MIN_DAYS = 14.0  # two weekly cycles, else a weekly term cannot be told from trend or a one-off week
DAILY_MIN_DAYS = 2.0
DAILY_MAX_STEP_DAYS = 0.25  # a daily cycle needs several points per day
MEAN_WINDOWS_DAYS = (7.0,)
ALPHAS_MORE = (1.0,)  # besides the estimator's own alpha: strong shrinkage of the seasonal terms


def orders_for(step_days: float, max_daily: int, max_weekly: int) -> tuple[int, int]:
    """The highest harmonics below the Nyquist rate of the sampling step."""
    daily = max(0, min(int(max_daily), int(1.0 / step_days / 2) - 1 or 1)) if step_days <= DAILY_MAX_STEP_DAYS else 0
    weekly = max(0, min(int(max_weekly), int(7.0 / step_days / 2) - 1 or 1))
    return daily, weekly


def plan(span_days: float, horizon_days: float, weekly: bool = True) -> tuple[float, float] | None:
    """(min_train, min_test) in days for the folds, or None when the history is too short to cross-validate.
    The last origin leaves a tenth of the history (at least 6 h, at most the horizon) to score on; the first
    is 14 days in when that leaves a day of origins (so weekly structures are judged), else halfway."""
    min_test = min(horizon_days, max(0.1 * span_days, 0.25))
    room = span_days - min_test
    if weekly and room >= WEEKLY_MIN_DAYS + 1.0:
        return WEEKLY_MIN_DAYS, min_test
    min_train = max(DAILY_MIN_DAYS, min(7.0, room / 2))
    if room - min_train < 0.25:
        return None
    return min_train, min_test


def candidates(min_train_days: float, step_days: float, seasonalities, max_daily: int, max_weekly: int,
               trends, alpha: float) -> list[Structure]:
    """Every structure the shortest fold (min_train_days of history) can fit."""
    out = [Structure()]
    out += [Structure(window_days=w) for w in MEAN_WINDOWS_DAYS if w < min_train_days]
    daily, weekly = orders_for(step_days, max_daily, max_weekly)
    use_daily = "daily" in seasonalities and daily > 0 and min_train_days >= DAILY_MIN_DAYS
    use_weekly = "weekly" in seasonalities and weekly > 0 and min_train_days >= WEEKLY_MIN_DAYS
    if use_daily:
        out.append(Structure(kind="snaive", period_days=1.0))
    if use_weekly:
        out.append(Structure(kind="snaive", period_days=7.0))
    dailies = sorted({0, *([min(2, daily), daily] if use_daily else [])})
    weeklies = sorted({0, *([1, weekly] if use_weekly else [])})
    for trend in trends:
        for d in dailies:
            for w in weeklies:
                if trend is None and d == 0 and w == 0:
                    continue  # that is mean(all), already in
                for a in ([alpha] if d == 0 and w == 0 else sorted({alpha, *ALPHAS_MORE})):
                    out.append(Structure(trend=trend, daily=d, weekly=w, alpha=a))
    return out


def folds(t_ns, min_train_days: float, min_test_days: float, horizon_ns: int, n_folds: int):
    """[(train_mask, test_mask)] for origins spread evenly over the history (see the module doc)."""
    import numpy as np

    t_ns = np.asarray(t_ns, dtype=np.int64)
    first, last = int(t_ns[0]), int(t_ns[-1])
    lo, hi = first + int(min_train_days * DAY_NS), last - int(min_test_days * DAY_NS)
    origins = np.unique(np.linspace(lo, hi, n_folds).astype(np.int64)) if hi > lo else np.array([lo])
    out = []
    for o in origins:
        train, test = t_ns < o, (t_ns >= o) & (t_ns < o + horizon_ns)
        if train.sum() >= 2 and test.any():
            out.append((train, test))
    return out


def cross_validate(t_ns, y, cands: list[Structure], fold_masks, interval: float) -> list[dict]:
    """Per candidate: MAE and WAPE over every fold's test points, and the interval's coverage there.
    A candidate that cannot be fitted in some fold gets an infinite error (it is never chosen)."""
    import numpy as np

    t_ns = np.asarray(t_ns, dtype=np.int64)
    y = np.asarray(y, dtype=float)
    ys = np.concatenate([y[te] for _, te in fold_masks])
    scale = max(float(np.mean(np.abs(ys))), 1e-12)
    out = []
    for s in cands:
        errs, covered = [], []
        try:
            for tr, te in fold_masks:
                state = fit_structure(s, t_ns[tr], y[tr], interval)
                mean, lo, hi = predict_structure(s, state, t_ns[te])
                mean, lo, hi = np.clip(mean, 0, None), np.clip(lo, 0, None), np.clip(hi, 0, None)
                errs.append(np.abs(mean - y[te]))
                covered.append((y[te] >= lo) & (y[te] <= hi))
        except (ValueError, np.linalg.LinAlgError):
            out.append({"structure": s, "mae": float("inf"), "wape": float("inf"), "coverage": float("nan")})
            continue
        mae = float(np.mean(np.concatenate(errs)))
        out.append({"structure": s, "mae": mae, "wape": mae / scale, "fold_mae": [float(e.mean()) for e in errs],
                    "coverage": float(np.mean(np.concatenate(covered)))})
    return out


def choose(scores: list[dict], tolerance: float, margin: float = 0.0) -> dict:
    """The flat mean of the whole history unless another candidate beats its CV error by `margin` (a
    fraction); among those, the fewest coefficients within (1 + tolerance) x the best MAE."""
    flat = next(s for s in scores if s["structure"] == Structure())
    best = min(s["mae"] for s in scores)
    if best > (1 - margin) * flat["mae"]:
        return flat
    near = [s for s in scores if s["mae"] <= best * (1 + tolerance)]
    return min(near, key=lambda s: (s["structure"].n_params, s["mae"]))
