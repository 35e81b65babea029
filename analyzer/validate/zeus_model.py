"""Step-time curve of one workload on one GPU type at full power, for moving it to another type.

Time per epoch over batch size b follows T(b) = A/b + B + C*b: A/b is the fixed per-step overhead (launches,
host work, synchronisation) spread over the epoch's S/b steps, B the per-sample compute, and C*b the penalty
that makes some curves U-shaped at large batches (cache and memory pressure). It is fitted by non-negative
least squares on relative error; what it misses at the measured batches is kept as a multiplicative residual,
interpolated in log2 batch size and held flat beyond the measured range, so the form only decides how the
curve is extrapolated.

On another type the per-sample terms scale with that type's speed s, and the overhead by s**beta
(beta = 1: everything scales; beta = 0: the overhead stays in absolute seconds); s is solved from the one
profiled point of the other type.
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

    def _form(self, b: np.ndarray, s: float, beta: float) -> np.ndarray:
        return s ** beta * self.A / b + s * (self.B + self.C * b)

    def at(self, batch: float | np.ndarray, s: float = 1.0, beta: float = 1.0) -> np.ndarray:
        """Time per epoch at batch on a type s times slower (per sample) than this one."""
        b = np.asarray(batch, float)
        res = np.exp(np.interp(np.log2(b), np.log2(self.batch), self.log_residual))
        return np.maximum(self._form(b, s, beta), 1e-12) * res

    def speed_from(self, batch: float, time: float, beta: float = 1.0) -> float:
        """The s for which at(batch, s) == time (bisection in log s; at() increases with s for beta >= 0)."""
        lo, hi = math.log(1e-4), math.log(1e4)
        for _ in range(100):
            mid = 0.5 * (lo + hi)
            if float(self.at(batch, math.exp(mid), beta)) < time:
                lo = mid
            else:
                hi = mid
        return math.exp(0.5 * (lo + hi))

    def relative(self, batch: float | np.ndarray, batch0: float, time0: float, beta: float = 1.0) -> np.ndarray:
        """log T(batch) - log T(batch0) on the other type, anchored at its profiled (batch0, time0)."""
        s = self.speed_from(batch0, time0, beta)
        return np.log(self.at(batch, s, beta)) - math.log(float(self.at(batch0, s, beta)))
