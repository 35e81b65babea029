"""`fleetwise analyze --engine dask`: the same job table and models as the local engine, from a real Dask cluster.

The store is a simulated fleet plus one agent batch still pending (`.pending/batch-*.jsonl`, not folded into
Parquet): both engines must see its job. The cluster is a real `distributed.LocalCluster` with two worker
processes on 127.0.0.1; the fits go through joblib's Dask backend, the aggregates through one task per
measurement and day (agents.query.partitioned).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from agents.points import Point
from agents.query import open_reader
from agents.query.partitioned import PartitionedReader, serial_map
from agents.simulate import simulate
from agents.stores.embedded_rows import write_pending
from analyzer.features import job_table
from analyzer.pipeline import analyze
from analyzer.state import load_latest
from tests.helpers import run_cli

START = "2026-11-20T00:00:00Z"
PENDING_JOB = "pending-77"
# The pending job: 4 CPUs on one host from 2026-11-21 10:00:30 to 10:10:30 (11 samples a minute apart), busy
# 1, 2, ..., 11 cores -> mean 6, peak 11; peak memory the largest sample, 2**30 + 10 * 2**20.
T0 = pd.Timestamp("2026-11-21T10:00:30Z").value


def _pending_batch(root) -> None:
    points = [Point("job", {"host": "late-node", "job": PENDING_JOB, "scheduler": "slurm", "user": "ann"},
                    {"cpus_allocated": 4, "cpu_cores": float(i + 1), "memory_peak_bytes": 2**30 + i * 2**20,
                     "memory_limit_bytes": 2**32}, T0 + i * 60 * 10**9) for i in range(11)]
    write_pending(root, b"\n".join(p.to_json().encode() for p in points), "c" * 32)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """12 nodes x 3 days at 300 s (enough for every model but the per-workload scaling curves, whose fits still
    run, and are refused, on the workers), and one pending batch."""
    root = tmp_path_factory.mktemp("dask-fleet")
    simulate(nodes=12, days=3, interval=300, seed=1, store=f"embedded:{root / 'store'}", start=START)
    _pending_batch(root / "store")
    return root


def test_day_tasks_give_the_embedded_readers_frames(fleet):
    """Without Dask: the per-day tasks combined equal the single queries, for every kind of combination."""
    start, end = pd.Timestamp("2026-11-19T00:00:00Z"), pd.Timestamp("2026-11-23T00:00:00Z")
    with open_reader(f"embedded:{fleet / 'store'}") as local:
        split = PartitionedReader(local, serial_map)
        # the pending rows' day is the last one (2026-11-22 is the data's end); asked twice, then queried: a
        # DuckDB result left open by the first answer once made every later query with pending rows fail
        assert split.time_bounds("job") == local.time_bounds("job")
        assert local.time_bounds("job")[1] == pd.Timestamp("2026-11-22T23:55:00Z")
        stats = {"n": ("cpu_cores", "count"), "s": ("cpu_cores", "sum"), "m": ("cpu_cores", "mean"),
                 "hi": ("cpu_cores", "max"), "lo": ("cpu_cores", "min"), "f": ("cpus_allocated", "first"),
                 "l": ("cpus_allocated", "last"), "t0": ("cpus_allocated", "first_time"),
                 "t1": ("cpus_allocated", "last_time")}
        by = ["host", "job", "scheduler", "user"]
        one, days = local.aggregate("job", stats, start, end, by=by), split.aggregate("job", stats, start, end, by=by)
        # 3 days of data (+ the pending day among them): more than one task per query
        assert split.tasks_run == 3
        assert len(one) > 100 and PENDING_JOB in set(one["job"])
        pd.testing.assert_frame_equal(days, one, check_exact=False, rtol=1e-12)
        for col in ("n", "hi", "lo", "f", "l", "t0", "t1"):  # no floating-point sum involved: exact
            pd.testing.assert_series_equal(days[col], one[col], check_exact=True)
        row = days[days["job"] == PENDING_JOB].iloc[0]
        assert (row["n"], row["m"], row["hi"], row["f"]) == (11, 6.0, 11.0, 4.0)
        assert row["t1"] - row["t0"] == pd.Timedelta(minutes=10)
        # 7-minute buckets straddle midnight (1440 / 7 is not whole): combined across days, not concatenated
        for every in ("1h", "7m"):
            a = local.aggregate("job", {"m": ("cpu_cores", "mean"), "n": ("cpu_cores", "count")}, start, end,
                                every=every, by=["host"])
            b = split.aggregate("job", {"m": ("cpu_cores", "mean"), "n": ("cpu_cores", "count")}, start, end,
                                every=every, by=["host"])
            pd.testing.assert_frame_equal(b, a, check_exact=False, rtol=1e-12)
        # a percentile cannot be combined from days: one task over the window
        a = local.aggregate("job", {"p": ("cpu_cores", "p90")}, start, end, by=["host"])
        pd.testing.assert_frame_equal(split.aggregate("job", {"p": ("cpu_cores", "p90")}, start, end, by=["host"]), a)
        raw = local.frame("job", ["cpu_cores", "cpus_allocated"], start, end, by=["host", "job"])
        pd.testing.assert_frame_equal(split.frame("job", ["cpu_cores", "cpus_allocated"], start, end,
                                                  by=["host", "job"]), raw)
        # the whole job table through day tasks
        jt_local = job_table(local, start, end)
        pd.testing.assert_frame_equal(job_table(split, start, end), jt_local, check_exact=False, rtol=1e-9)


def _grid_predictions(run) -> dict:
    """Every fitted model's answers on a fixed grid."""
    out = {}
    for name in run.model_names():
        m = run.model(name)
        if name.startswith("scaling["):
            out[name] = m.predict(np.array([1, 2, 4, 8, 16]), nodes=np.array([1, 1, 1, 1, 2]))
        elif name == "throughput":
            out[name] = m.matrix_.sort_index().sort_index(axis=1).to_numpy(float)
        elif name == "power":
            out[name] = m.params_.sort_index().to_numpy(float)
        elif name == "forecast":
            out[name] = {p: m.predict_at(pd.date_range("2026-11-24", periods=48, freq="h", tz="UTC"), p)
                         for p in sorted(m.pools_)}
        elif name == "workloads":
            out[name] = list(m.labels_)
    return out


def test_dask_engine_equals_local_engine(fleet):
    import distributed  # fleetwise[dask], part of the dev install: a missing install fails here, never skips

    from analyzer.dask_engine import DaskEngine

    store = f"embedded:{fleet / 'store'}"
    local = analyze(store, state_dir=fleet / "state-local", n_jobs=1)
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        engine = DaskEngine.connect(cluster.scheduler_address, timeout=60)
        try:
            assert engine.workers() == 2
            with distributed.get_task_stream(client=engine.client) as stream:
                on_dask = analyze(store, state_dir=fleet / "state-dask", n_jobs=-1, engine=engine)
            # the store's day tasks and the per-workload fits ran on the two workers, not in this process
            assert len({t["worker"] for t in stream.data}) == 2
            names = {str(t["key"]) for t in stream.data}
            assert any("run_task" in k for k in names) and any("_fit_one" in k for k in names), sorted(names)[:20]
        finally:
            engine.close()
    assert not local.failed and not on_dask.failed, (local.failed, on_dask.failed)
    assert on_dask.window == local.window and on_dask.jobs == local.jobs
    assert sorted(on_dask.fitted) == sorted(local.fitted) and on_dask.skipped == local.skipped
    assert {"workloads", "throughput", "power", "forecast"} <= set(local.fitted)
    assert any(n.startswith("scaling[") for n in local.skipped)  # fitted on the workers, refused for too few points
    a, b = load_latest(fleet / "state-local"), load_latest(fleet / "state-dask")
    assert b.manifest["engine"] == "dask" and a.manifest["engine"] == "local"
    jobs = a.table("job_table")
    assert PENDING_JOB in set(jobs["job"])  # the pending batch's job, seen by both engines
    pending = jobs[jobs["job"] == PENDING_JOB].iloc[0]
    assert (pending["cpus_allocated"], pending["cpu_cores_mean"], pending["nodes"]) == (4.0, 6.0, 1)
    for table in ("job_table", "efficiency", "observations", "demand"):
        pd.testing.assert_frame_equal(b.table(table), a.table(table), check_exact=False, rtol=1e-9)
    pa, pb = _grid_predictions(a), _grid_predictions(b)
    assert pa.keys() == pb.keys()
    for name in pa:
        if name == "workloads":
            assert pb[name] == pa[name]
        elif name == "forecast":
            assert pb[name].keys() == pa[name].keys()
            for pool in pa[name]:
                pd.testing.assert_frame_equal(pb[name][pool], pa[name][pool], check_exact=False, rtol=1e-9)
        else:
            np.testing.assert_allclose(pb[name], pa[name], rtol=1e-9, err_msg=name)


def test_cli_engine_usage_errors(fleet, tmp_path):
    store = f"embedded:{fleet / 'store'}"
    r = run_cli(["analyze", "--store", store, "--state", str(tmp_path / "s"), "--scheduler", "tcp://127.0.0.1:1"])
    assert r.returncode == 2 and "--scheduler tcp://127.0.0.1:1 is for --engine dask" in r.stderr, r.stderr
    r = run_cli(["analyze", "--store", store, "--state", str(tmp_path / "s"), "--engine", "dask"])
    assert r.returncode == 2 and "--engine dask needs --scheduler" in r.stderr, r.stderr
    r = run_cli(["analyze", "--store", "influxdb://127.0.0.1:1/fleet", "--state", str(tmp_path / "s"),
                 "--engine", "dask", "--scheduler", "tcp://127.0.0.1:1"])
    assert r.returncode == 2 and "reads the embedded store's Parquet files" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").rglob("manifest.json"))


def test_cli_unreachable_scheduler(fleet, tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = run_cli(["analyze", "--store", f"embedded:{fleet / 'store'}", "--state", str(tmp_path / "s"),
                 "--engine", "dask", "--scheduler", f"tcp://127.0.0.1:{port}"],
                env={**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "3s"})
    assert r.returncode == 2, r.stderr
    assert f"--scheduler tcp://127.0.0.1:{port}: cannot reach the Dask scheduler" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_cli_without_dask_installed(fleet, tmp_path):
    # distributed made unimportable the way Python itself marks a module absent (sys.modules[name] = None)
    code = ("import sys; sys.modules['distributed'] = None; from fleetwise.cli import main; "
            f"sys.exit(main(['analyze', '--store', 'embedded:{fleet / 'store'}', '--state', '{tmp_path / 's'}', "
            "'--engine', 'dask', '--scheduler', 'tcp://127.0.0.1:8786']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "--engine dask needs dask and distributed" in r.stderr and "fleetwise[dask]" in r.stderr
    assert "Traceback" not in r.stderr
