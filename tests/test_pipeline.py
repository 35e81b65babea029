"""`fleetwise analyze` end to end on simulated fleets: a fitted run, too little data, a broken step, the CLI."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from agents.simulate import simulate
from analyzer import pipeline
from analyzer.pipeline import analyze
from analyzer.state import StateDir, load_latest
from tests.helpers import run_cli

# Every model the pipeline is responsible for: each must appear in the manifest, fitted or with a reason.
MODELS = ("workloads", "bottleneck", "throughput", "power", "forecast")
START = "2026-11-20T00:00:00Z"


@pytest.fixture(scope="module")
def fleet(small_fleet):
    """24 nodes x 3 days at 60 s (the size the brief asks for; ~2 s to simulate; tests/conftest.py)."""
    return small_fleet


@pytest.fixture(scope="module")
def fitted(small_fleet_analyzed):
    return small_fleet_analyzed


def _check_entries(models: dict) -> None:
    for name, entry in models.items():
        if entry["status"] == "fitted":
            assert entry["n_train"] is None or entry["n_train"] > 0, name
            assert entry["window"] and entry["fitted_at"] and entry["file"].endswith(".joblib"), name
        else:
            assert entry["status"] == "skipped" and entry["reason"], name


def test_analyze_small_fleet(fitted):
    result, truth = fitted
    placed = [j for j in truth["jobs"] if j["placed"]]
    # The window ends at the end of the data (3 days after START) and reaches back 7 days.
    assert result.window == (pd.Timestamp("2026-11-16T00:00:00Z"), pd.Timestamp("2026-11-23T00:00:00Z"))
    assert result.jobs == len(placed) == truth["totals"]["jobs_placed"]
    m = load_latest(result.run.path.parent.parent).manifest
    assert m["run_id"] == result.run.run_id
    assert m["window"] == {"start": "2026-11-16T00:00:00+00:00", "end": "2026-11-23T00:00:00+00:00"}
    assert m["store"].startswith("embedded:") and m["summary"]["jobs"] == len(placed)
    for name in MODELS:
        assert name in m["models"], f"{name} missing from the manifest"
    assert any(n == "scaling" or n.startswith("scaling[") for n in m["models"])
    _check_entries(m["models"])
    # 3 days of hourly demand on several pools: the forecaster has enough history.
    assert m["models"]["forecast"]["status"] == "fitted"
    assert m["models"]["forecast"]["n_train"] >= 24
    assert m["steps"]["features"]["status"] == "ok"
    assert not result.failed, result.failed


def test_tables_saved_with_the_run(fitted):
    result, truth = fitted
    jobs = result.run.table("job_table")
    assert sorted(jobs["job"]) == sorted(j["job"] for j in truth["jobs"] if j["placed"])
    demand = result.run.table("demand")
    assert {"time", "pool", "demand", "capacity"} <= set(demand.columns)
    # Every pool is one accelerator type or one CPU architecture present in the fleet.
    gpu_pools = {p for p in demand["pool"] if p.startswith("gpu:")}
    assert gpu_pools == {"gpu:v100-32gb", "gpu:a100-80gb", "gpu:h100-80gb", "gpu:mi250"}


def test_fitted_models_load_back(fitted):
    result, _ = fitted
    run = load_latest(result.run.path.parent.parent)
    for name in run.model_names():
        model = run.model(name)
        assert type(model).__name__ == run.manifest["models"][name]["class"].rsplit(".", 1)[-1]
    fc = run.model("forecast")
    assert hasattr(fc, "pools_") and fc.pools_


def test_too_little_data_fits_nothing_and_says_why(tmp_path):
    # Two hours of a small fleet: no model has its minimum; none may crash or fit noise.
    simulate(nodes=6, days=2 / 24, interval=60, seed=3, store=f"embedded:{tmp_path / 'store'}", start=START)
    result = analyze(f"embedded:{tmp_path / 'store'}", state_dir=tmp_path / "state", n_jobs=1)
    m = result.run.manifest
    assert result.ok, result.failed
    assert m["models"]["forecast"]["status"] == "skipped"
    assert "need at least" in m["models"]["forecast"]["reason"]
    for name in ("throughput", "power", "forecast"):
        assert m["models"][name]["status"] == "skipped", name
    _check_entries(m["models"])
    assert result.window[1] == pd.Timestamp("2026-11-20T02:00:00Z")


def test_empty_window(tmp_path, fleet):
    # Nothing to fit: no run is committed, and the message says why in one line.
    with pytest.raises(pipeline.NotEnoughData, match=r"not enough data .* \(0 jobs, no model could be fitted\)"):
        analyze(f"embedded:{fleet / 'store'}", until="2026-01-01T00:00:00Z", since="1d",
                state_dir=tmp_path / "state")
    assert StateDir(tmp_path / "state").latest_id() is None
    assert StateDir(tmp_path / "state").run_ids() == []


def test_a_broken_step_is_recorded_and_the_run_completes(tmp_path, fleet, monkeypatch):
    def broken(run):
        raise RuntimeError("boom")

    monkeypatch.setattr(pipeline, "_power", broken)
    result = analyze(f"embedded:{fleet / 'store'}", state_dir=tmp_path / "state", n_jobs=1)
    assert not result.ok
    assert result.failed == {"power": "RuntimeError: boom"}
    m = load_latest(tmp_path / "state").manifest
    assert m["steps"]["power"]["status"] == "failed" and "boom" in m["steps"]["power"]["traceback"]
    assert m["models"]["power"]["reason"] == "step power failed: RuntimeError: boom"
    assert m["models"]["forecast"]["status"] == "fitted"


def test_resolve_window_since_as_time(fleet):
    from agents.query import open_reader

    with open_reader(f"embedded:{fleet / 'store'}") as reader:
        start, end = pipeline.resolve_window(reader, since="2026-11-21T00:00:00Z", until="2026-11-22T06:00:00Z")
        assert (start, end) == (pd.Timestamp("2026-11-21T00:00:00Z"), pd.Timestamp("2026-11-22T06:00:00Z"))
        with pytest.raises(ValueError, match="give a duration"):
            pipeline.resolve_window(reader, since="last tuesday")
        with pytest.raises(ValueError, match="window is empty"):
            pipeline.resolve_window(reader, since="2026-11-23T00:00:00Z", until="2026-11-22T00:00:00Z")


def test_cli_exit_codes(tmp_path, fleet):
    store = f"embedded:{fleet / 'store'}"
    state = tmp_path / "state"
    # No --store and no ./var/demo-store in the working directory: a clear message, exit 2.
    r = run_cli(["analyze"], cwd=tmp_path)
    assert r.returncode == 2 and "no store" in r.stderr
    r = run_cli(["analyze", "--store", "embedded:" + str(tmp_path / "missing")], cwd=tmp_path)
    assert r.returncode == 2 and "no such store directory" in r.stderr
    r = run_cli(["analyze", "--store", "postgres://x/y"], cwd=tmp_path)
    assert r.returncode == 2 and "unknown store URL" in r.stderr
    r = run_cli(["analyze", "--store", store, "--since", "soon"], cwd=tmp_path)
    assert r.returncode == 2 and "--since 'soon'" in r.stderr
    r = run_cli(["analyze", "--store", store, "--every", "5 minutes"], cwd=tmp_path)
    assert r.returncode == 2 and "bad interval '5 minutes'" in r.stderr
    r = run_cli(["analyze", "--store", store, "--jobs", "0"], cwd=tmp_path)
    assert r.returncode == 2 and "--jobs" in r.stderr
    r = run_cli(["models", "show", "--state", str(state)], cwd=tmp_path)
    assert r.returncode == 2 and "run `fleetwise analyze` first" in r.stderr
    assert not state.exists()  # refused before anything was written
    r = run_cli(["analyze", "--store", store, "--state", str(state), "--jobs", "1"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "jobs: 468 " in r.stdout  # placed jobs of the 24-node x 3-day seed-1 simulation
    r = run_cli(["models", "show", "--state", str(state), "--format", "json"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)
    assert set(MODELS) <= set(shown["models"])
    # every fitted model's score says what it measures (analyzer.show.SCORE_METRICS)
    assert all(e["score_metric"] for e in shown["models"].values() if e["status"] == "fitted"), shown["models"]
    assert shown["window"]["end"] == "2026-11-23T00:00:00+00:00"
    text = run_cli(["models", "show", "--state", str(state)], cwd=tmp_path)
    assert text.returncode == 0 and "forecast" in text.stdout and "fitted (" in text.stdout


def test_cli_default_store_is_the_demo_store(tmp_path, fleet):
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "demo-store").symlink_to(fleet / "store")
    r = run_cli(["analyze", "--since", "1d", "--jobs", "1"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "analyzed embedded:var/demo-store from 2026-11-22 00:00:00+00:00" in r.stdout
    assert (tmp_path / "var" / "state" / "latest").is_file()


@pytest.mark.services
def test_influxdb_and_embedded_agree(tmp_path, influxdb_server):
    """The same simulated fleet in both stores gives the same jobs and the same set of fitted models."""
    kw = {"nodes": 6, "days": 1, "interval": 300, "seed": 5, "start": START}
    simulate(store=f"embedded:{tmp_path / 'store'}", **kw)
    influx = f"influxdb://{influxdb_server.url[len('http://'):]}/sim"
    simulate(store=influx, **kw)
    a = analyze(f"embedded:{tmp_path / 'store'}", state_dir=tmp_path / "a", n_jobs=1)
    b = analyze(influx, state_dir=tmp_path / "b", n_jobs=1)
    assert a.window == b.window
    assert a.jobs == b.jobs > 0
    assert sorted(a.run.table("job_table")["job"]) == sorted(b.run.table("job_table")["job"])
    assert {n: e["status"] for n, e in a.run.manifest["models"].items()} == \
        {n: e["status"] for n, e in b.run.manifest["models"].items()}
    assert b.run.manifest["store"] == f"influxdb:{influxdb_server.url}/sim"


def test_demo_analyzes_the_simulated_fleet(tmp_path):
    # simulate, analyze, recommend: minutes on a loaded machine; --no-serve: no dashboard at the end
    r = run_cli(["demo", "--no-serve"], cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "analyzed embedded:var/demo-store from 2026-11-16 00:00:00+00:00 to 2026-11-23 00:00:00+00:00" in r.stdout
    assert "$ fleetwise models show" in r.stdout and "forecast" in r.stdout
    latest = load_latest(tmp_path / "var" / "state")
    assert latest.manifest["models"]["forecast"]["status"] == "fitted"
    # the ten largest recommendations, then the true idle GPU-hours beside what the recommender found
    assert "$ fleetwise recommend --limit 10" in r.stdout and r.stdout.count("     risk: ") == 10
    truth = json.loads((tmp_path / "var" / "demo-store" / "truth.json").read_text())
    true_idle = truth["totals"]["idle_gpu_hours_in_idle_jobs"]
    found = latest.manifest["recommend"]["idle_gpu_hours_found"]
    assert f"idle GPU-hours: {true_idle:,.0f} true (simulator's truth.json), {found:,.0f} found" in r.stdout
    # and the weekly capacity report of the analyzed week (docs/report.md)
    assert "$ fleetwise report --week 2026-W47 --out var/reports" in r.stdout
    assert "Weekly capacity report: demo fleet, 2026-W47" in (tmp_path / "var/reports" /
                                                              "capacity-report-2026-W47.html").read_text()
