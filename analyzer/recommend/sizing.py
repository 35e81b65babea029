"""Size estimates from a usage history: fleetwise's own method and two faithful baselines (KRR, VPA).

Every method sees the same history (times in seconds, usage values) and returns one size. The batch
entry point, `estimate_sizes`, sizes many series at once with numpy (no Python loop per series), so a
fleet of 100,000 jobs sizes in seconds; `estimate_size` is the one-series view of it.

- ``fleetwise``: exponentially decayed statistics (24 h half-life). The size is a geometric blend of the
  decayed mean usage (the sustained level) and the decayed peak (the ``percentile`` of the history,
  1.0 = its maximum), times ``1 + margin``, times a short-history widening ``1 + short_history / sqrt(n_eff)``
  (n_eff: Kish's effective sample size of the decayed weights):

      size = (1 + margin) * sustained**(1 - spread_weight) * peak**spread_weight * (1 + short_history / sqrt(n_eff))

  The blend is how the size widens with noise: a flat series (peak == sustained) gets its level times
  (1 + margin); a spiky one more, but less than peak * (1 + margin), because an isolated spike far above
  the sustained level recurs less than its height says (inside the training parts of the Alibaba GenAI
  GPU-memory trace, the later peak over the earlier one falls as peak / median rises: Spearman -0.50).
  The mean rather than the median is the sustained level because a mostly idle series (a GPU duty cycle
  at 0 most of the time) has a median of 0 and would be sized at nothing. `default_settings(resource)`
  holds what nested validation chose on the traces (docs/validation.md, "Backtests on real traces").
- ``krr``: Robusta KRR's simple strategy: CPU at the 95th percentile of the history, memory at its
  maximum plus 15%, and no recommendation below 100 points.
- ``vpa``: the Kubernetes VPA recommender: a decaying histogram (24 h half-life) with exponential buckets
  (5% growth; first bucket 0.01 core for CPU, 10 MB for memory), memory as one peak per 24 h
  aggregation window, the 90th percentile as target, a 15% safety margin and VPA's minimum resources.
  Its lower and upper bounds (50th / 95th percentile, widened by the confidence of a short history) are
  reported in the reason, since the backtests score the target.

GPU resources have no KRR or VPA recipe; the baselines treat them like CPU (a compressible, sampled
resource) and VPA applies no minimum to them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

METHODS = ("fleetwise", "krr", "vpa")
RESOURCES = ("memory", "cpu", "gpu")
HOUR = 3600.0
DAY = 24 * HOUR


@dataclass(frozen=True)
class SizingSettings:
    """Parameters of the fleetwise method (the baselines keep their own published constants)."""

    half_life_hours: float = 24.0
    percentile: float = 1.0          # the peak: this decayed percentile of the history (1.0: the maximum)
    spread_weight: float = 0.25      # how far the size sits from the sustained mean (0) toward the peak (1)
    margin: float = 0.55
    min_points: int = 10
    short_history: float = 1.0       # widening 1 + short_history / sqrt(n_eff)

    def __post_init__(self) -> None:
        checks = {
            "half_life_hours": self.half_life_hours > 0,
            "percentile": 0.0 < self.percentile <= 1.0,
            "spread_weight": 0.0 <= self.spread_weight <= 1.0,
            "margin": self.margin > -1.0,
            "min_points": self.min_points >= 1,
            "short_history": self.short_history >= 0.0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"SizingSettings: {bad[0]}={getattr(self, bad[0])!r} is out of range")


# What nested validation inside the training parts chose (docs/validation.md, "Backtests on real traces"):
# on the GPU memory of the Alibaba GenAI pods for memory (also SizingSettings()'s defaults), on their GPU
# duty cycle for GPU utilisation. No CPU trace of that shape is at hand: CPU keeps the conservative memory
# choice (unvalidated). Callers opt in; estimate_size(s) without settings use SizingSettings().
_DEFAULTS = {
    "memory": SizingSettings(spread_weight=0.25, margin=0.55),
    "gpu": SizingSettings(spread_weight=1.0, margin=-0.475),
    "cpu": SizingSettings(spread_weight=0.25, margin=0.55),
}


def default_settings(resource: str) -> SizingSettings:
    """fleetwise's settings for a resource, as nested validation chose them on the real traces."""
    if resource not in _DEFAULTS:
        raise ValueError(f"unknown resource {resource!r}; choose one of {', '.join(RESOURCES)}")
    return _DEFAULTS[resource]


@dataclass(frozen=True)
class SizeEstimate:
    value: float | None          # recommended size (None when too little history)
    exceed_probability: float    # empirical P(usage > value) from the (decayed) history
    peak: float                  # observed peak
    n: int                       # points used
    reason: str | None           # why None / caveats (e.g. "below observed peak")


# --- KRR (robusta-dev/krr, strategies/simple.py) --------------------------------------------------------
KRR_CPU_PERCENTILE = 0.95
KRR_MEMORY_BUFFER = 0.15
KRR_POINTS_REQUIRED = 100

# --- VPA (kubernetes/autoscaler, vertical-pod-autoscaler/pkg/recommender) -------------------------------
VPA_HALF_LIFE_S = DAY                      # CPU and memory histogram decay half-life
VPA_BUCKET_GROWTH = 0.05                   # HistogramBucketSizeGrowth: each bucket 5% larger
VPA_CPU_FIRST_BUCKET = 0.01                # cores
VPA_CPU_MAX = 1000.0
VPA_MEMORY_FIRST_BUCKET = 1e7              # bytes
VPA_MEMORY_MAX = 1e12
VPA_MIN_SAMPLE_WEIGHT = 0.1                # CPU samples weigh max(request, 0.1); no request here
VPA_EPSILON = 0.001 * VPA_MIN_SAMPLE_WEIGHT
VPA_MEMORY_AGGREGATION_S = DAY             # one memory peak per 24 h window
VPA_TARGET_PERCENTILE = 0.9
VPA_LOWER_PERCENTILE = 0.5
VPA_UPPER_PERCENTILE = 0.95
VPA_SAFETY_MARGIN = 0.15
VPA_MIN_CPU_CORES = 0.025                  # pod-recommendation-min-cpu-millicores 25
VPA_MIN_MEMORY_BYTES = 250 * 1024 * 1024   # pod-recommendation-min-memory-mb 250 (MiB)


@dataclass(frozen=True)
class Groups:
    """Series laid out one after another, each sorted by time: rows start[g]:end[g] belong to series g."""

    times: np.ndarray
    values: np.ndarray
    code: np.ndarray
    start: np.ndarray
    end: np.ndarray

    @property
    def count(self) -> np.ndarray:
        return self.end - self.start

    def first(self, a: np.ndarray) -> np.ndarray:
        return a[np.minimum(self.start, len(a) - 1)] if len(a) else np.zeros(len(self.start))

    def last(self, a: np.ndarray) -> np.ndarray:
        return a[np.maximum(self.end - 1, 0)] if len(a) else np.zeros(len(self.start))

    def sum(self, a: np.ndarray) -> np.ndarray:
        c = np.concatenate([[0.0], np.cumsum(a, dtype=float)])
        return c[self.end] - c[self.start]

    def max(self, a: np.ndarray) -> np.ndarray:
        out = np.full(len(self.start), np.nan)
        ok = self.count > 0
        if ok.any():
            out[ok] = np.maximum.reduceat(a, self.start[ok])
        return out


def layout(codes: np.ndarray, times: np.ndarray, values: np.ndarray, n_groups: int) -> Groups:
    dc = np.diff(codes)
    if len(codes) and (dc >= 0).all() and ((np.diff(times) >= 0) | (dc > 0)).all():
        order = slice(None)          # already by series, then time: as stores return it; skip the sort
    else:
        order = np.lexsort((times, codes))
    code = codes[order]
    bounds = np.arange(n_groups)
    return Groups(times[order], values[order], code, np.searchsorted(code, bounds, "left"),
                   np.searchsorted(code, bounds, "right"))


def grouped_weighted_quantile(code: np.ndarray, x: np.ndarray, w: np.ndarray, q: float | np.ndarray,
                              n_groups: int) -> np.ndarray:
    """Per group, the smallest x whose cumulative weight reaches q of the group's total weight.

    code: group index per row (0..n_groups-1, any order). q: one level, or one per group. NaN for empty
    groups. The inverse of the weighted empirical CDF, so P_w(X > result) <= 1 - q exactly.
    """
    out = np.full(n_groups, np.nan)
    if len(x) == 0:
        return out
    order = np.lexsort((x, code))
    gs, xs, cw = code[order], x[order], np.cumsum(w[order], dtype=float)
    bounds = np.arange(n_groups)
    start, end = np.searchsorted(gs, bounds, "left"), np.searchsorted(gs, bounds, "right")
    ok = end > start
    base = np.where(start > 0, cw[np.maximum(start - 1, 0)], 0.0)
    total = cw[np.maximum(end - 1, 0)] - base
    target = base + np.broadcast_to(np.asarray(q, dtype=float), (n_groups,)) * total
    # A tolerance so that q=1 lands on the last row despite rounding in the running sum.
    idx = np.searchsorted(cw, target - 1e-12 * np.maximum(np.abs(target), 1.0), "left")
    idx = np.clip(idx, start, np.maximum(end - 1, start))
    out[ok] = xs[idx[ok]]
    return out


def _exceed_share(g: Groups, w: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Weighted share of each series' history above its size (0 where the size is undefined)."""
    s = np.repeat(np.nan_to_num(size, nan=np.inf), g.count)
    over = g.sum(w * (g.values > s))
    total = g.sum(w)
    return np.divide(over, total, out=np.zeros_like(over), where=total > 0)


def _decay(g: Groups, half_life_s: float) -> np.ndarray:
    """2^((t - t_last) / half_life): the newest sample weighs 1 and weights halve every half-life back."""
    last = np.repeat(g.last(g.times), g.count)
    return np.exp2((g.times - last) / half_life_s)


def fleetwise_parts(g: Groups, n_groups: int, s: SizingSettings) -> tuple[np.ndarray, ...]:
    """(sustained, peak, widening, weights) per series: what the fleetwise size is built from. Separate
    from `fleetwise_size` so that a search over margin and spread_weight reuses them."""
    w = _decay(g, s.half_life_hours * HOUR)
    total = g.sum(w)
    sustained = g.sum(w * g.values) / np.maximum(total, 1e-300)
    # The weighted 100th percentile is the maximum (every weight is positive): no sort needed.
    peak = g.max(g.values) if s.percentile >= 1.0 else \
        grouped_weighted_quantile(g.code, g.values, w, s.percentile, n_groups)
    n_eff = total ** 2 / np.maximum(g.sum(w * w), 1e-300)
    widen = 1.0 + s.short_history / np.sqrt(np.maximum(n_eff, 1.0))
    return np.maximum(sustained, 0.0), np.maximum(peak, 0.0), widen, w


def fleetwise_size(sustained: np.ndarray, peak: np.ndarray, widen: np.ndarray, margin: float,
                   spread_weight: float) -> np.ndarray:
    """(1 + margin) * sustained^(1 - spread_weight) * peak^spread_weight * widen (0^0 taken as 1)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        lo = np.where(sustained > 0, sustained ** (1.0 - spread_weight), 1.0 if spread_weight >= 1.0 else 0.0)
        hi = np.where(peak > 0, peak ** spread_weight, 1.0 if spread_weight <= 0.0 else 0.0)
    return (1.0 + margin) * lo * hi * widen


def _fleetwise(g: Groups, n_groups: int, s: SizingSettings) -> tuple[np.ndarray, np.ndarray]:
    sustained, peak, widen, w = fleetwise_parts(g, n_groups, s)
    return fleetwise_size(sustained, peak, widen, s.margin, s.spread_weight), w


def _krr(g: Groups, n_groups: int, resource: str) -> tuple[np.ndarray, np.ndarray]:
    w = np.ones(len(g.values))
    if resource == "memory":
        size = g.max(g.values) * (1.0 + KRR_MEMORY_BUFFER)
    else:
        size = _linear_quantile(g, KRR_CPU_PERCENTILE)
    return size, w


def _linear_quantile(g: Groups, q: float) -> np.ndarray:
    """Per series, numpy's default (linear) quantile, as Prometheus quantile_over_time computes it."""
    out = np.full(len(g.start), np.nan)
    ok = g.count > 0
    order = np.lexsort((g.values, g.code))
    xs = g.values[order]
    pos = g.start + q * (g.count - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, np.maximum(g.end - 1, 0))
    frac = pos - lo
    out[ok] = xs[lo[ok]] + (xs[hi[ok]] - xs[lo[ok]]) * frac[ok]
    return out


class VpaBuckets:
    """VPA's exponential histogram buckets (util/histogram_options.go)."""

    def __init__(self, max_value: float, first_bucket: float, ratio: float = 1.0 + VPA_BUCKET_GROWTH) -> None:
        self.first, self.ratio = first_bucket, ratio
        self.num = math.ceil(math.log(max_value * (ratio - 1) / first_bucket + 1) / math.log(ratio)) + 1

    def find(self, v: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            b = np.floor(np.log(np.maximum(v, 0) * (self.ratio - 1) / self.first + 1) / math.log(self.ratio))
        b = np.where(v < self.first, 0, b)
        return np.clip(np.nan_to_num(b, nan=0), 0, self.num - 1).astype(np.int64)

    def start(self, b: np.ndarray) -> np.ndarray:
        b = np.asarray(b, dtype=float)
        return np.where(b == 0, 0.0, self.first * (self.ratio ** b - 1) / (self.ratio - 1))


def _vpa_samples(g: Groups, resource: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(series code, value, time) of what VPA adds to its histogram: every CPU sample, or one memory peak
    per 24 h aggregation window (the first window starts at the first sample; the peak is stamped with
    the window's end, as ContainerState.addMemorySample does)."""
    if resource != "memory":
        return g.code, g.values, g.times
    t0 = np.repeat(g.first(g.times), g.count)
    window = np.floor((g.times - t0) / VPA_MEMORY_AGGREGATION_S).astype(np.int64)
    key = g.code.astype(np.int64) * (1 << 32) + window
    change = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
    peaks = np.maximum.reduceat(g.values, change) if len(change) else np.zeros(0)
    wend = t0[change] + (window[change] + 1) * VPA_MEMORY_AGGREGATION_S
    return g.code[change], peaks, wend


def _vpa(g: Groups, n_groups: int, resource: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    memory = resource == "memory"
    buckets = VpaBuckets(VPA_MEMORY_MAX, VPA_MEMORY_FIRST_BUCKET) if memory else \
        VpaBuckets(VPA_CPU_MAX, VPA_CPU_FIRST_BUCKET)
    code, value, when = _vpa_samples(g, resource)
    # decayingHistogram: weight * 2^((t - reference) / halfLife), the reference being the first sample's
    # time rounded to a whole half-life; percentiles do not depend on the reference (a common factor).
    first = np.zeros(n_groups)
    first[g.count > 0] = g.first(g.times)[g.count > 0]
    ref = np.round(first / VPA_HALF_LIFE_S) * VPA_HALF_LIFE_S
    base_weight = 1.0 if memory else VPA_MIN_SAMPLE_WEIGHT
    weight = base_weight * np.exp2((when - ref[code]) / VPA_HALF_LIFE_S)
    bucket = buckets.find(value)
    # Sum the weight of each (series, bucket), then walk each series' buckets upwards.
    key = code.astype(np.int64) * buckets.num + bucket
    uniq, inverse = np.unique(key, return_inverse=True)
    bw = np.bincount(inverse, weights=weight)
    ucode, ubucket = uniq // buckets.num, uniq % buckets.num
    # Buckets below epsilon do not count (histogram.go updateMinAndMaxBucket); inner ones still add up.
    keep = bw >= VPA_EPSILON
    counted = np.zeros(n_groups, dtype=bool)
    counted[np.unique(ucode[keep])] = True

    def percentile(p: float) -> np.ndarray:
        q = grouped_weighted_quantile(ucode[keep], ubucket[keep].astype(float), bw[keep], p, n_groups)
        b = np.nan_to_num(q, nan=0).astype(np.int64)
        # Percentile returns the end of the bucket (the start of the next), except for the last bucket.
        end = np.where(b < buckets.num - 1, buckets.start(np.minimum(b + 1, buckets.num - 1)), buckets.start(b))
        return np.where(counted, end, np.nan)

    floor = VPA_MIN_MEMORY_BYTES if memory else (VPA_MIN_CPU_CORES if resource == "cpu" else 0.0)
    target = np.maximum(percentile(VPA_TARGET_PERCENTILE) * (1 + VPA_SAFETY_MARGIN), floor)
    # Confidence: min(history span in days, samples / (60 * 24)) (estimator.go getConfidence).
    span_days = (g.last(g.times) - g.first(g.times)) / DAY
    confidence = np.minimum(span_days, g.count / (60.0 * 24.0))
    with np.errstate(divide="ignore"):
        upper = percentile(VPA_UPPER_PERCENTILE) * (1 + VPA_SAFETY_MARGIN) * (1 + 1.0 / confidence)
        lower = percentile(VPA_LOWER_PERCENTILE) * (1 + VPA_SAFETY_MARGIN) * (1 + 0.001 / confidence) ** -2
    return target, np.maximum(lower, floor), np.maximum(upper, floor), np.ones(len(g.values))


def estimate_sizes(series: Sequence | np.ndarray, times_s: Sequence[float] | np.ndarray,
                   values: Sequence[float] | np.ndarray, method: str = "fleetwise", resource: str = "memory",
                   settings: SizingSettings | None = None) -> dict:
    """Size every series at once. series: a label per row. Returns columns (numpy arrays) keyed
    ``series`` (the distinct labels, sorted), ``value`` (NaN where too little history), ``exceed_probability``,
    ``peak``, ``n``, and for ``vpa`` also ``lower`` and ``upper``."""
    if method not in METHODS:
        raise ValueError(f"unknown sizing method {method!r}; choose one of {', '.join(METHODS)}")
    if resource not in RESOURCES:
        raise ValueError(f"unknown resource {resource!r}; choose one of {', '.join(RESOURCES)}")
    s = settings or SizingSettings()
    t = np.asarray(times_s, dtype=float)
    v = np.asarray(values, dtype=float)
    if not (len(t) == len(v) == len(series)):
        raise ValueError("series, times_s and values must have the same length")
    finite = np.isfinite(t) & np.isfinite(v)
    labels, codes = np.unique(np.asarray(series)[finite], return_inverse=True)
    g = layout(codes, t[finite], v[finite], len(labels))
    out: dict = {"series": labels, "n": g.count, "peak": g.max(g.values)}
    if method == "fleetwise":
        size, w = _fleetwise(g, len(labels), s)
    elif method == "krr":
        size, w = _krr(g, len(labels), resource)
    else:
        size, lower, upper, w = _vpa(g, len(labels), resource)
        out["lower"], out["upper"] = lower, upper
    required = KRR_POINTS_REQUIRED if method == "krr" else s.min_points
    size = np.where(g.count >= max(required, 1), size, np.nan)
    out["value"] = size
    out["exceed_probability"] = _exceed_share(g, w, size)
    out["min_points"] = required
    return out


def estimate_size(times_s: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray,
                  method: str = "fleetwise", resource: str = "memory",
                  settings: SizingSettings | None = None) -> SizeEstimate:
    """One series' size (see the module docstring for the methods)."""
    t = np.asarray(times_s, dtype=float)
    r = estimate_sizes(np.zeros(len(t), dtype=np.int8), t, values, method, resource, settings)
    if len(r["series"]) == 0:
        need = KRR_POINTS_REQUIRED if method == "krr" else (settings or SizingSettings()).min_points
        return SizeEstimate(None, 0.0, float("nan"), 0, f"no usable points (at least {need} needed)")
    value, n, peak = float(r["value"][0]), int(r["n"][0]), float(r["peak"][0])
    if math.isnan(value):
        return SizeEstimate(None, 0.0, peak, n, f"too little history: {n} points, at least {r['min_points']} needed")
    notes = []
    if value < peak:
        notes.append(f"below observed peak ({value:.6g} < {peak:.6g})")
    if method == "vpa":
        notes.append(f"VPA bounds [{float(r['lower'][0]):.6g}, {float(r['upper'][0]):.6g}]")
    return SizeEstimate(value, float(r["exceed_probability"][0]), peak, n, "; ".join(notes) or None)
