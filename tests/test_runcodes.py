"""analyzer.runcodes.factorize_runs gives pd.factorize(sort=True)'s codes, in any order of the values."""

from __future__ import annotations

import numpy as np

from analyzer.runcodes import factorize_runs


def test_codes_rank_like_the_values_in_runs_or_not():
    codes, uniques = factorize_runs(["n2", "n2", "n1", "n1", "n3", "n1"])
    assert codes.tolist() == [1, 1, 0, 0, 2, 0] and uniques.tolist() == ["n1", "n2", "n3"]
    codes, uniques = factorize_runs(np.asarray(["x", None, None, "x"], dtype=object))
    assert codes.tolist() == [0, -1, -1, 0] and uniques.tolist() == ["x"]
    codes, uniques = factorize_runs([])
    assert codes.tolist() == [] and uniques.tolist() == []
    shuffled = np.random.default_rng(3).choice(np.asarray(list("dcba"), dtype=object), 500)
    codes, uniques = factorize_runs(shuffled)
    assert uniques.tolist() == ["a", "b", "c", "d"]
    assert (uniques[codes] == shuffled).all()
