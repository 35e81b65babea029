"""`fleetwise alerts suggest` on a simulated fleet: every pool (accelerator model) gets its threshold from its
own GPUs' data, recomputed here from the raw points without the store's aggregation, and the loader takes
the file it writes."""

from __future__ import annotations

import math
import subprocess
import sys

import pandas as pd
import pytest

from agents.query import open_reader
from analyzer.alerts.rules import load_rules
from fleetwise.cli import main
from tests.conftest import REPO


@pytest.fixture(scope="module")
def sim_store(tmp_path_factory) -> str:
    store = f"embedded:{tmp_path_factory.mktemp('suggest') / 'store'}"
    proc = subprocess.run([sys.executable, "-m", "fleetwise", "simulate", "--nodes", "16", "--days", "3",
                           "--interval", "600", "--seed", "3", "--store", store],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return store


def thresholds_from_raw_points(store: str) -> dict[str, float]:
    """Per model: a third of the median 2-hour mean utilization over the 2-hour buckets (aligned to the epoch)
    in which every sample had a compute process, floored at 5% and rounded down to a percent."""
    with open_reader(store) as r:
        start, end = r.time_bounds("gpu")
        raw = r.frame("gpu", ["utilization_ratio", "processes"], start, end + pd.Timedelta(seconds=1),
                      by=["host", "gpu", "model"])
    raw["bucket"] = raw["time"].dt.floor("2h")
    b = raw.groupby(["host", "gpu", "model", "bucket"]).agg(u=("utilization_ratio", "mean"),
                                                            p=("processes", "min")).reset_index()
    busy = b[b["p"] > 0]
    out = {}
    for model, g in busy.groupby("model"):
        if len(g) >= 12:
            out[model] = max(0.05, math.floor(g["u"].median() / 3 * 100) / 100)
    return out


def test_each_pool_gets_a_threshold_from_its_own_baseline(sim_store, tmp_path, capsys):
    out = tmp_path / "suggested.yaml"
    assert main(["alerts", "suggest", "--store", sim_store, "--since", "7d", "--out", str(out)]) == 0
    rules = load_rules(out)  # the operator's file loads like any rule file
    got = {}
    for r in rules.rules:
        util, procs = r.expr.conditions
        (m,) = util.value.selector.matchers
        assert (util.value.func, util.value.window, util.op) == ("avg_over_time", 7200.0, "<")
        assert (procs.value.selector.field, procs.value.func, procs.op, procs.threshold) == \
            ("processes", "min_over_time", ">", 0)
        assert m.name == "model" and r.for_seconds == 0
        got[m.value] = util.threshold
    expected = thresholds_from_raw_points(sim_store)
    assert got == pytest.approx(expected, abs=1e-9)
    # the simulated pools run at different levels, so their thresholds differ
    assert len(got) >= 3 and len(set(got.values())) >= 3, got
    assert max(got.values()) >= 2 * min(got.values())
    text = out.read_text()
    for model in got:
        assert f"# {model}: busy GPUs ran " in text


def test_suggest_without_gpus_says_so(tmp_path, capsys):
    from agents.points import Point
    from agents.stores.writers import open_writer

    store = f"embedded:{tmp_path / 'cpu-only'}"
    sink = open_writer(store)
    sink.write([Point("memory", {"host": "n1"}, {"total_bytes": 1e9}, 1_795_000_000 * 10**9)])
    sink.close()
    assert main(["alerts", "suggest", "--store", store]) == 1
    assert capsys.readouterr().err.strip() == \
        "fleetwise alerts suggest: no gpu series in the store: nothing to learn thresholds from"
