"""Right-sizing backtest on real usage traces: fit on the first part of each series, score on the rest.

Per series, the first ``train_fraction`` of its time span is the history each method sees; the size it
recommends is scored on the later points:

- slack: the mean over series of mean((rec - used)+ / rec) over the later points. Where rec is 0 the
  term is its limit as rec falls to 0: 1 where usage is 0 too, 0 otherwise; so recommending nothing
  earns no credit.
- exceedance: the share of series whose later usage goes above rec at least once.

Series with fewer than 10 points in either part are skipped, and so are series a method cannot size
(KRR wants 100 points): every method is scored on the same series.

fleetwise's margin and spread weight are chosen by nested validation inside the training parts only
(`choose`): each training part is split again at several origins (INNER_FRACTIONS of its span), every
candidate on the grid is scored on those inner splits next to KRR and VPA, and the candidate with the
least mean inner slack whose inner exceedance is no higher than either baseline's at every inner origin
wins (failing that, the one with the least inner exceedance). `inner_goal_met` says whether that choice
also had less inner slack than both baselines. The test parts never take part in the choice.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from analyzer.recommend.sizing import (
    KRR_POINTS_REQUIRED,
    METHODS,
    SizingSettings,
    default_settings,
    estimate_sizes,
    fleetwise_parts,
    fleetwise_size,
    layout,
)
from analyzer.validate.series import SeriesTable

TRAIN_FRACTION = 0.7
MIN_POINTS = 10
INNER_FRACTIONS = (0.5, 0.6, 0.7)
SPREAD_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
MARGINS = tuple(round(float(m), 3) for m in np.arange(-0.9, 1.5001, 0.025))


def split(table: SeriesTable, fraction: float, min_points: int = MIN_POINTS) -> tuple[SeriesTable, SeriesTable]:
    """(train, test): rows at or before t0 + fraction * (t_last - t0) of their series train, later rows
    test. Series with fewer than min_points rows on either side are dropped from both."""
    n = int(table.ids.max()) + 1 if len(table.ids) else 0
    t0 = np.full(n, np.inf)
    t1 = np.full(n, -np.inf)
    np.minimum.at(t0, table.ids, table.times)
    np.maximum.at(t1, table.ids, table.times)
    with np.errstate(invalid="ignore"):  # numbers with no rows give inf - inf; no row looks them up
        cut = t0 + fraction * (t1 - t0)
    is_train = table.times <= cut[table.ids]
    n_train = np.bincount(table.ids, weights=is_train, minlength=n)
    n_test = np.bincount(table.ids, weights=~is_train, minlength=n)
    rows = ((n_train >= min_points) & (n_test >= min_points))[table.ids]

    def part(mask: np.ndarray) -> SeriesTable:
        m = rows & mask
        return SeriesTable(table.ids[m], table.times[m], table.values[m], table.names)

    return part(is_train), part(~is_train)


@dataclass(frozen=True)
class Case:
    """One train/test split, restricted to the series every method can size, ready to score sizes on."""

    labels: np.ndarray     # series numbers, sorted; sizes are aligned with them
    test_code: np.ndarray  # per test row, its index into labels
    used: np.ndarray       # per test row, the usage
    parts: tuple           # fleetwise_parts' (sustained, peak, widening)
    baselines: dict        # method -> (slack, exceedance)

    def __post_init__(self) -> None:
        # Each series' later usage sorted, with running sums, so that a size's slack needs one search per series
        # rather than a pass over every row: the nested search scores thousands of sizes. The sort key is exact
        # integers (series, rank of the value), so a search never crosses into the next series.
        k = len(self.labels)
        levels, rank = np.unique(self.used, return_inverse=True)
        key = self.test_code.astype(np.int64) * (len(levels) + 1) + rank
        order = np.argsort(key, kind="stable")
        count = np.bincount(self.test_code, minlength=k)
        peak = np.full(k, -np.inf)
        np.maximum.at(peak, self.test_code, self.used)
        object.__setattr__(self, "_sorted", {
            "levels": levels, "key": key[order], "csum": np.concatenate([[0.0], np.cumsum(self.used[order])]),
            "start": np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64), "count": count, "peak": peak})

    def _below(self, rec: np.ndarray, side: str) -> tuple[np.ndarray, np.ndarray]:
        """Per series, how many later points are below rec (side "left": used < rec; "right": used <= rec),
        and their sum."""
        st = self._sorted
        base = np.arange(len(self.labels), dtype=np.int64) * (len(st["levels"]) + 1)
        stop = np.searchsorted(st["key"], base + np.searchsorted(st["levels"], rec, side), "left")
        return stop - st["start"], st["csum"][stop] - st["csum"][st["start"]]

    def score(self, rec: np.ndarray) -> tuple[float, float]:
        """(slack, exceedance) of one size per label (NaN when there is no series)."""
        if len(self.labels) == 0:
            return float("nan"), float("nan")
        rec = np.asarray(rec, dtype=float)
        n_below, s_below = self._below(rec, "left")
        with np.errstate(divide="ignore", invalid="ignore"):
            total = (n_below * rec - s_below) / rec
        # where rec is 0, the term's limit is 1 at points that use 0 (or less) too, else 0
        total = np.where(rec > 0, total, self._below(np.zeros_like(rec), "right")[0])
        per_series = total / np.maximum(self._sorted["count"], 1)
        return float(per_series.mean()), float((self._sorted["peak"] > rec).mean())


def case(train: SeriesTable, test: SeriesTable, resource: str, settings: SizingSettings) -> Case:
    sizes = {}
    for m in ("krr", "vpa"):
        r = estimate_sizes(train.ids, train.times, train.values, m, resource, settings)
        sizes[m] = (r["series"], r["value"])
    labels = np.unique(train.ids)
    for lab, value in sizes.values():
        labels = np.intersect1d(labels, lab[np.isfinite(value)])
    tr = np.isin(train.ids, labels)
    te = np.isin(test.ids, labels)
    g = layout(np.searchsorted(labels, train.ids[tr]), train.times[tr], train.values[tr], len(labels))
    c = Case(labels, np.searchsorted(labels, test.ids[te]), test.values[te],
             fleetwise_parts(g, len(labels), settings)[:3], {})
    for m, (lab, value) in sizes.items():
        c.baselines[m] = c.score(value[np.searchsorted(lab, labels)])
    return c


def choose(train: SeriesTable, resource: str, settings: SizingSettings,
           progress: Callable[[int, int], None] | None = None) -> tuple[SizingSettings, dict]:
    """Nested validation inside the training parts: (chosen settings, what the choice saw)."""
    cases = [c for f in INNER_FRACTIONS if len((c := case(*split(train, f, settings.min_points), resource,
                                                             settings)).labels)]
    if not cases:
        return settings, {"note": "no series long enough for an inner split; default settings kept"}
    base = {m: np.mean([c.baselines[m] for c in cases], axis=0) for m in ("krr", "vpa")}
    # per inner origin, the lower of the two baselines' exceedance: a candidate must stay at or under it at
    # every origin, not only on average, so that one lucky origin cannot carry a riskier setting
    bounds = np.array([min(c.baselines["krr"][1], c.baselines["vpa"][1]) for c in cases])
    best = None
    grid = list(itertools.product(SPREAD_WEIGHTS, MARGINS))
    for i, (w, margin) in enumerate(grid):
        if progress is not None:
            progress(i + 1, len(grid))
        scores = np.array([c.score(fleetwise_size(*c.parts, margin, w)) for c in cases])
        slack, ex = scores.mean(axis=0)
        key = (0, slack, ex) if (scores[:, 1] <= bounds + 1e-12).all() else (1, ex, slack)
        if best is None or key < best[0]:
            best = (key, w, margin, slack, ex)
    key, w, margin, slack, ex = best
    inner = {"fleetwise": {"slack": float(slack), "exceedance": float(ex)}}
    inner.update({m: {"slack": float(b[0]), "exceedance": float(b[1])} for m, b in base.items()})
    return replace(settings, spread_weight=w, margin=margin), {
        "inner_origins": list(INNER_FRACTIONS), "inner_series": [len(c.labels) for c in cases],
        "spread_weight": w, "margin": margin, "inner": inner, "met_bound": key[0] == 0,
        # whether the choice also beats both baselines' slack inside the training parts: when it does not, no
        # setting of this method met the backtest's goal there, and the test part is not expected to either
        "inner_goal_met": bool(key[0] == 0 and slack < min(b[0] for b in base.values())),
    }


def backtest(table: SeriesTable, train_fraction: float = TRAIN_FRACTION, resource: str = "memory",
             settings: SizingSettings | None = None, nested: bool = True,
             progress: Callable[[int, int], None] | None = None) -> dict:
    """The backtest's figures (see the module docstring)."""
    settings = settings or default_settings(resource)
    train, test = split(table, train_fraction, MIN_POINTS)
    chosen, why = choose(train, resource, settings, progress) if nested else \
        (settings, {"note": "nested validation off"})
    c = case(train, test, resource, chosen)
    total = len(np.unique(table.ids))
    if len(c.labels) == 0:
        return {"series": 0, "methods": {m: {"slack": None, "exceedance": None} for m in METHODS},
                "resource": resource, "train_fraction": train_fraction, "skipped_series": total,
                "nested_validation": why,
                "note": f"no series has {MIN_POINTS} points on both sides of the split "
                        f"(and {KRR_POINTS_REQUIRED} in its history, which KRR needs)"}
    fw = c.score(fleetwise_size(*c.parts, chosen.margin, chosen.spread_weight))
    methods = {"fleetwise": fw, **c.baselines}
    return {"series": len(c.labels),
            "methods": {m: {"slack": methods[m][0], "exceedance": methods[m][1]} for m in METHODS},
            "resource": resource, "train_fraction": train_fraction,
            "skipped_series": total - len(c.labels),
            "nested_validation": why}
