"""The "too little data" rule shared by every model: fit nothing rather than fit noise.

Each model states its minimum (a ``MIN_POINTS`` class attribute or a constant below) and raises
InsufficientData from ``fit()`` when it has less, with a message saying what it had and what it needs.
The pipeline records that message in the state manifest instead of failing the run.
"""

from __future__ import annotations


class InsufficientData(ValueError):
    """Too little data to fit a model: fit nothing rather than noise."""


# Defaults a model may use when it has no better-argued minimum of its own.
MIN_JOBS = 5  # jobs (rows of the job table) before characterizing workloads at all
MIN_OBSERVATIONS = 3  # (workload, accelerator) observations before a per-workload fit
MIN_DISTINCT_COUNTS = 3  # distinct device counts before a scaling curve (3 parameters)
MIN_DISTINCT_CAPS = 3  # distinct power caps before a power curve
MIN_HISTORY_DAYS = 2.0  # days of demand history before a forecast


def require(n: int | float, minimum: int | float, what: str, context: str = "") -> None:
    """Raise InsufficientData unless n >= minimum; the message says what was had and what is needed."""
    if n is None or n != n or n < minimum:  # n != n: NaN counts as nothing
        have = "none" if n is None or n != n else f"{n:g}"
        where = f" {context}" if context else ""
        raise InsufficientData(f"{have} {what}{where}; need at least {minimum:g}")
