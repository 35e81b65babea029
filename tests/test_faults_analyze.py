"""`fleetwise analyze` on a store it cannot use: empty, or holding a damaged or foreign Parquet file. One line,
exit 1, and `latest` still names the last good run (the dashboard keeps showing it)."""

from __future__ import annotations

import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agents.simulate import simulate
from analyzer.pipeline import analyze
from analyzer.state import StateDir
from fleetwise.cli import main

START = "2026-11-20T00:00:00Z"


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A small simulated store and a state directory with one good run in it."""
    root = tmp_path_factory.mktemp("analyze-faults")
    simulate(nodes=4, days=1, interval=300, seed=2, store=f"embedded:{root / 'store'}", start=START)
    run = analyze(f"embedded:{root / 'store'}", since="2d", state_dir=root / "state", n_jobs=1).run
    return root, run.run_id


def _damage(store, how: str) -> None:
    if how == "wrong-schema":  # a well-formed Parquet file of another schema: time is no timestamp, job a number
        [victim] = sorted((store / "job").rglob("*.parquet"))[:1]
        pq.write_table(pa.table({"time": [1, 2], "job": [1.5, 2.5]}), victim)
        return
    # Every file damaged (a disk that lost its blocks): nothing is left to analyze.
    for victim in store.rglob("*.parquet"):
        victim.write_bytes(b"" if how == "zero-byte" else victim.read_bytes()[:300])


def _analyze(capsys, store, state) -> tuple[int, list[str]]:
    code = main(["analyze", "--store", f"embedded:{store}", "--state", str(state), "--since", "2d", "--jobs", "1"])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.strip()]


@pytest.mark.parametrize("how", ["empty", "zero-byte", "truncated", "wrong-schema"])
def test_analyze_on_a_store_it_cannot_use_keeps_latest(good, tmp_path, capsys, caplog, how):
    root, good_run = good
    state = tmp_path / "state"
    shutil.copytree(root / "state", state)
    store = tmp_path / "store"
    if how == "empty":
        store.mkdir()
    else:
        shutil.copytree(root / "store", store)
        _damage(store, how)
    code, lines = _analyze(capsys, store, state)
    assert code == 1
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    if how == "wrong-schema":  # a readable file the query cannot use: named, with what DuckDB found
        assert "cannot read embedded:" in lines[0] and "job: unreadable data" in lines[0]
    elif how == "empty":  # refused before a run starts: what was looked for, and that nothing was found
        assert "no measurement the analysis reads" in lines[0] and "no measurements at all" in lines[0]
    else:
        # Empty, or the only job file unreadable (skipped by the reader, which says so): nothing to fit.
        assert "not enough data" in lines[0] and f"latest still names run {good_run}" in lines[0]
    if how in ("zero-byte", "truncated"):
        assert any("skipping unreadable file" in r.getMessage() and "/job/" in r.getMessage()
                   for r in caplog.records)
    # The good run stays the one `latest` names, and no other completed run appeared.
    assert StateDir(state).latest_id() == good_run
    assert StateDir(state).run_ids() == [good_run]


def test_a_state_path_that_is_a_file_is_named_as_the_state_directory(good, tmp_path, capsys):
    root, _ = good
    state = tmp_path / "state-file"
    state.write_text("not a directory")
    code, lines = _analyze(capsys, root / "store", state)
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith("fleetwise analyze: --state: state directory") and str(state) in lines[0]
    assert "cannot read embedded:" not in lines[0]  # not blamed on the store
    assert main(["models", "show", "--state", str(state)]) == 2
    shown = capsys.readouterr().err.strip().splitlines()
    assert len(shown) == 1 and f"state directory {state}: not a directory" in shown[0]
