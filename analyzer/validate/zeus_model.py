"""Step-time curve of one workload on one GPU type at full power, for moving it to another type.

Time per epoch over batch size b follows T(b) = A/b + B + C*b: A/b is the fixed per-step overhead (launches,
host work, synchronisation) spread over the epoch's S/b steps, B the per-sample compute, and C*b the penalty
that makes some curves U-shaped at large batches (cache and memory pressure). It is fitted by non-negative
least squares on relative error; what it misses at the measured batches is kept as a multiplicative residual,
interpolated in log2 batch size and held flat beyond the measured range, so the form only decides how the
curve is extrapolated.

On another type the per-sample terms scale with that workload's speed s on that type, and the overhead with
o, a speed shared by every workload of the type: per-step overhead is host, driver and launch work, which is
the same machine whatever the model trains. Each workload's profiled point gives its s for a given o, and o is
their geometric mean (`pooled_speeds`), so one workload's odd large-batch point moves its own compute speed
but not the overhead every workload shares.
"""

from __future__ import annotations

import math

import numpy as np


class StepTimeCurve:
    """T(b) = (A/b + B + C*b) * residual(b), fitted on one type's full-power times."""

    def __init__(self, batch: np.ndarray, time: np.ndarray):
        from scipy.optimize import nnls

        order = np.argsort(batch)
        self.batch = np.asarray(batch, float)[order]
        self.time = np.asarray(time, float)[order]
        b, t = self.batch, self.time
        X = np.column_stack([1.0 / b, np.ones_like(b), b])
        (self.A, self.B, self.C), _ = nnls(X / t[:, None], np.ones_like(t))
        self.log_residual = np.log(t / np.maximum(self._form(b, 1.0, 1.0), 1e-12))

    def _form(self, b: np.ndarray, s: float, o: float) -> np.ndarray:
        return o * self.A / b + s * (self.B + self.C * b)

    def _residual(self, batch: float | np.ndarray) -> np.ndarray:
        return np.exp(np.interp(np.log2(batch), np.log2(self.batch), self.log_residual))

    def at(self, batch: float | np.ndarray, s: float = 1.0, o: float = 1.0) -> np.ndarray:
        """Time per epoch at batch on a type whose per-sample compute is s times and per-step overhead o times
        this one's."""
        b = np.asarray(batch, float)
        return np.maximum(self._form(b, s, o), 1e-12) * self._residual(b)

    def speed_from(self, batch: float, time: float, o: float) -> float:
        """The compute speed s for which at(batch, s, o) == time, given the overhead speed o (floored at 1e-3
        where the overhead alone already exceeds time)."""
        compute = self.B + self.C * batch
        left = time / float(self._residual(batch)) - o * self.A / batch
        if compute <= 0:  # a pure-overhead fit has no compute term to solve for: the plain time ratio
            return float(time / self.at(batch))
        return max(left / compute, 1e-3)


def pooled_speeds(curves: dict[str, StepTimeCurve], profiled: dict[str, tuple[float, float]]
                  ) -> tuple[float, dict[str, float]]:
    """(o, {workload: s}): the type-level overhead speed and each workload's compute speed on the profiled type
    relative to the curves' type, from one profiled (batch, time) per workload. o is the geometric mean of the
    s it implies: log o - mean(log s(o)) increases with o (a faster overhead leaves more of each profiled time
    to compute), so its one root is found by bisection in log o."""
    names = [w for w in profiled if w in curves]
    if not names:
        return 1.0, {}

    def speeds(o: float) -> dict[str, float]:
        return {w: curves[w].speed_from(*profiled[w], o) for w in names}

    lo, hi = math.log(1e-4), math.log(1e4)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid - float(np.mean(np.log(list(speeds(math.exp(mid)).values())))) < 0:
            lo = mid
        else:
            hi = mid
    o = math.exp(0.5 * (lo + hi))
    return o, speeds(o)
