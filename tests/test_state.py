"""The versioned state directory: runs, manifest, atomic `latest`, pickle round trip, pruning."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator
from sklearn.linear_model import LinearRegression

from analyzer.minimums import InsufficientData, require
from analyzer.state import DEFAULT_KEEP, StateDir, StateError, load_latest, new_run_id, safe_store_url
from tests.conftest import REPO


class Line(BaseEstimator):
    """A minimal model following the project's conventions (parameters in __init__, fitted attributes with _)."""

    MIN_POINTS = 3

    def __init__(self, fit_intercept: bool = True) -> None:
        self.fit_intercept = fit_intercept

    def fit(self, x, y):
        require(len(x), self.MIN_POINTS, "points")
        self.lr_ = LinearRegression(fit_intercept=self.fit_intercept).fit(np.asarray(x).reshape(-1, 1), y)
        self.score_ = float(self.lr_.score(np.asarray(x).reshape(-1, 1), y))
        self.n_train_ = len(x)
        self.min_points = self.MIN_POINTS
        return self

    def predict(self, x):
        return self.lr_.predict(np.asarray(x).reshape(-1, 1))


def _run(state: StateDir, y=(1.0, 3.0, 5.0, 7.0)):
    run = state.new_run(store="influxdb://alice@127.0.0.1:8086/fleet", window=("2026-11-20T00:00:00+00:00",
                                                                             "2026-11-27T00:00:00+00:00"))
    run.save_model("line", Line().fit([0, 1, 2, 3], list(y)))
    run.skip_model("scaling[resnet]", "2 distinct device counts for resnet; need at least 3",
                   model_class="analyzer.models.scaling.ScalingModel")
    run.save_table("jobs", pd.DataFrame({"job": ["a", "b"], "gpus": [4, 1]}))
    return run


def test_round_trip_and_manifest(tmp_path):
    state = StateDir(tmp_path / "state")
    saved = _run(state).commit()
    latest = load_latest(tmp_path / "state")
    assert latest.run_id == saved.run_id
    m = latest.manifest
    assert m["fleetwise_version"] == "0.1.0"
    # No user name, no secret in the recorded store.
    assert m["store"] == "influxdb:http://127.0.0.1:8086/fleet"
    line = m["models"]["line"]
    assert line["status"] == "fitted"
    assert line["class"].endswith("test_state.Line")
    assert line["parameters"] == {"fit_intercept": True}
    assert line["score"] == pytest.approx(1.0)
    assert line["n_train"] == 4 and line["minimum"] == 3
    assert line["window"] == {"start": "2026-11-20T00:00:00+00:00", "end": "2026-11-27T00:00:00+00:00"}
    assert line["fitted_at"] and m["completed_at"]
    model = latest.model("line")
    # y = 2x + 1 exactly: the unpickled model predicts 21 at x = 10.
    assert model.predict([10])[0] == pytest.approx(21.0)
    skipped = m["models"]["scaling[resnet]"]
    assert skipped == {"status": "skipped", "class": "analyzer.models.scaling.ScalingModel",
                       "reason": "2 distinct device counts for resnet; need at least 3"}
    with pytest.raises(KeyError, match="need at least 3"):
        latest.model("scaling[resnet]")
    with pytest.raises(KeyError, match="no model 'nope'"):
        latest.model("nope")
    assert latest.table("jobs")["gpus"].tolist() == [4, 1]
    assert latest.model_names() == ["line"]


def test_state_dir_is_private(tmp_path):
    _run(StateDir(tmp_path / "state")).commit()
    assert stat.S_IMODE(os.stat(tmp_path / "state").st_mode) & 0o077 == 0


def test_latest_moves_only_on_commit(tmp_path):
    state = StateDir(tmp_path / "s")
    first = _run(state).commit()
    # A run whose process dies before commit(): a real process, killed by its own exit.
    code = (f"import os; from analyzer.state import StateDir; r = StateDir({str(tmp_path / 's')!r}).new_run(); "
            "(r.path / 'models').mkdir(); os._exit(9)")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=60).returncode == 9
    in_flight = _run(state, y=(0.0, 1.0, 2.0, 3.0))  # this process, still writing
    (crashed,) = [p for p in state.runs_dir.iterdir() if p.name not in (first.run_id, in_flight.run_id)]
    assert load_latest(tmp_path / "s").run_id == first.run_id
    assert state.run_ids() == [first.run_id]
    second = _run(state).commit()
    assert load_latest(tmp_path / "s").run_id == second.run_id
    # The crashed run sorts before the new latest, has no manifest and its writer is gone: pruned.
    assert not crashed.exists()
    # The run still being written by a live process is left alone, and can still commit.
    assert in_flight.path.exists()
    assert in_flight.commit().run_id in state.run_ids()
    assert (tmp_path / "s" / "latest").read_text() == second.run_id + "\n"
    assert not [p for p in (tmp_path / "s").iterdir() if p.name.endswith(".tmp")]


def test_prune_keeps_newest(tmp_path):
    state = StateDir(tmp_path / "s", keep=2)
    ids = [_run(state).commit().run_id for _ in range(4)]
    assert state.run_ids() == sorted(ids)[-2:]
    assert load_latest(tmp_path / "s").run_id == ids[-1]
    assert DEFAULT_KEEP == 10
    with pytest.raises(ValueError):
        StateDir(tmp_path / "s", keep=0)


def test_tampered_pickle_is_refused(tmp_path):
    saved = _run(StateDir(tmp_path / "s")).commit()
    path = saved.path / saved.manifest["models"]["line"]["file"]
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(StateError, match="checksum"):
        load_latest(tmp_path / "s").model("line")


def test_no_run_yet(tmp_path):
    with pytest.raises(StateError, match="run `fleetwise analyze` first"):
        load_latest(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "latest").write_text("../../etc\n")
    with pytest.raises(StateError, match="not a run id"):
        load_latest(tmp_path / "bad")


def test_run_ids_sort_by_time():
    import datetime as dt

    a = new_run_id(dt.datetime(2026, 11, 27, 7, 0, 0, tzinfo=dt.UTC))
    b = new_run_id(dt.datetime(2026, 11, 27, 7, 0, 1, tzinfo=dt.UTC))
    assert a.startswith("20261127T070000.000000Z-") and len(a) == len("20261127T070000.000000Z-") + 6
    assert a < b


def test_model_names_with_odd_characters_get_distinct_files(tmp_path):
    run = StateDir(tmp_path / "s").new_run()
    a = run.save_model("scaling[a/b]", Line().fit([0, 1, 2], [0, 1, 2]))
    b = run.save_model("scaling[a_b]", Line().fit([0, 1, 2], [0, 2, 4]))
    assert a["file"] != b["file"] and "/" not in a["file"].split("/", 1)[1]
    saved = run.commit()
    assert saved.model("scaling[a_b]").predict([3])[0] == pytest.approx(6.0)
    assert json.loads((saved.path / "manifest.json").read_text())["models"].keys() == {"scaling[a/b]", "scaling[a_b]"}


def test_require_message():
    with pytest.raises(InsufficientData, match=r"^2 jobs for resnet; need at least 5$"):
        require(2, 5, "jobs", "for resnet")
    with pytest.raises(InsufficientData, match=r"^none days of history; need at least 2$"):
        require(float("nan"), 2, "days of history")
    require(5, 5, "jobs")
    assert safe_store_url("embedded:/tmp/x") == "embedded:/tmp/x"
