"""Integer codes of a string column whose equal values come in runs.

The query API's bucketed frames come sorted by their tags, so a host's (or model's) rows are contiguous:
comparing each row with the one before finds the runs in one pass over pointers, and only the runs' values
(a few hundred hosts, not a week of buckets) are hashed. Any order is answered correctly (unsorted values are
just many short runs), only not faster."""

from __future__ import annotations

import numpy as np
import pandas as pd


def factorize_runs(values) -> tuple[np.ndarray, np.ndarray]:
    """(codes, uniques) as pd.factorize(values, sort=True) gives them, uniques an object array: codes rank
    like the values; a missing value (None, NaN) is code -1."""
    a = np.asarray(values, dtype=object)
    if not len(a):
        return np.zeros(0, dtype=np.intp), np.asarray([], dtype=object)
    change = np.empty(len(a), dtype=bool)
    change[0] = True
    change[1:] = a[1:] != a[:-1]
    starts = np.flatnonzero(change)
    run_codes, uniques = pd.factorize(a[starts], sort=True)
    return np.repeat(run_codes, np.diff(np.append(starts, len(a)))), np.asarray(uniques, dtype=object)
