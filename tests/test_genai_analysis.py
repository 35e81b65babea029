"""`fleetwise analyze` on the real Alibaba GenAI 2026 trace (per-pod GPU duty cycle and memory, no node, no
cgroups, no GPU inventory), every per-pod figure checked against pandas computing it straight from the CSV
files. The figures docs/validation.md reports come from `python -m tests.test_genai_analysis`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from agents.stores.writers import open_writer
from agents.traces import ingest
from analyzer.features import IDLE_UTILIZATION
from analyzer.pipeline import analyze
from analyzer.state import load_latest
from tests.conftest import require_data

BUCKET_S = 300  # analyze's default every="5m"


def from_csv(path: Path) -> pd.DataFrame:
    """Per pod, straight from the two CSV files: samples, busy share, idle share, span, peak memory."""
    duty = pd.read_csv(path / "pod_gpu_duty_cycle_anon.csv.gz")
    mem = pd.read_csv(path / "pod_gpu_memory_used_bytes_anon.csv.gz")
    t_ms = pd.concat([duty, mem])[["container_ip", "timestamp_anon"]].assign(
        ms=lambda d: (d["timestamp_anon"] * 1000).round().astype("int64"))
    span = t_ms.groupby("container_ip")["ms"].agg(["min", "max"])
    bucket_ms = BUCKET_S * 1000
    out = pd.DataFrame({
        "start_ms": (span["min"] // bucket_ms) * bucket_ms,
        "end_ms": (span["max"] // bucket_ms + 1) * bucket_ms,
    })
    g = duty.groupby("container_ip")["value"]
    out["samples"] = g.size()
    out["util_mean"] = g.mean() / 100
    out["idle_share"] = duty.assign(idle=duty["value"] < IDLE_UTILIZATION * 100).groupby("container_ip")["idle"].mean()
    out["zero_share"] = duty.assign(zero=duty["value"] == 0).groupby("container_ip")["zero"].mean()
    out["mem_max"] = mem.groupby("container_ip")["value"].max().round()
    out["duration_s"] = (out["end_ms"] - out["start_ms"]) / 1000
    out.attrs["duty"] = duty
    return out


@pytest.fixture(scope="module")
def genai_run(tmp_path_factory):
    path = require_data("alibaba-genai-2026")
    root = tmp_path_factory.mktemp("genai")
    store = f"embedded:{root / 'store'}"
    sink = open_writer(store)
    try:
        ingest("alibaba-genai", path, sink, store=store)
    finally:
        sink.close()
    result = analyze(store, state_dir=root / "state", n_jobs=1)
    run = load_latest(root / "state")
    return path, result, run


def test_genai_per_pod_figures_equal_pandas_on_the_csv(genai_run):
    path, result, run = genai_run
    truth = from_csv(path)
    jt = run.table("job_table").set_index("job")
    eff = run.table("efficiency").set_index("job")
    assert sorted(jt.index) == sorted(truth.index)  # every pod of either file, nothing guessed in
    assert result.jobs == len(truth)
    duty_pods = truth[truth["samples"].notna()].index
    pd.testing.assert_series_equal(jt.loc[duty_pods, "gpu_utilization_mean"], truth.loc[duty_pods, "util_mean"],
                                   check_names=False, rtol=1e-9)
    # GPU-hours held: one GPU from the bucket of the first sample to the end of the bucket of the last
    assert eff.loc[truth.index, "gpu_hours_held"].to_numpy() == pytest.approx(truth["duration_s"] / 3600)
    # idle GPU-hours: the share of duty-cycle samples below 5 % times the time held
    idle = truth.loc[duty_pods, "idle_share"] * truth.loc[duty_pods, "duration_s"] / 3600
    assert eff.loc[duty_pods, "gpu_hours_idle"].to_numpy() == pytest.approx(idle.to_numpy(), rel=1e-9)
    assert jt.loc[truth.index, "gpu_memory_used_max_bytes"].to_numpy() == pytest.approx(truth["mem_max"].to_numpy())
    # what the trace does not say stays unknown
    for col in ("cpus_allocated", "memory_peak_bytes", "gpu_memory_total_bytes", "power_watts_mean"):
        assert jt[col].isna().all(), col
    assert eff["gpu_memory_headroom_bytes"].isna().all()
    # notes: a pod whose every sample is below 5 % held its GPU and used none of it
    unused = truth.index[(truth["idle_share"] == 1.0)]
    assert all("held 1 GPU, used 0" in eff.loc[p, "notes"] for p in unused)


def test_genai_fleet_figures_and_what_the_run_lacked(genai_run):
    path, _, run = genai_run
    truth = from_csv(path)
    duty = truth.attrs["duty"]
    # the share of duty-cycle samples at zero, from the CSV, against the analyzer's per-pod idle shares
    # (samples below 5 %): pods' shares weighted by their sample counts give the fleet-wide share
    jt = run.table("job_table").set_index("job")
    n = truth["samples"].dropna()
    analyzer_idle = float((jt.loc[n.index, "gpu_idle_seconds"] / jt.loc[n.index, "duration_seconds"] * n).sum()
                          / n.sum())
    assert analyzer_idle == pytest.approx(float((duty["value"] < 5).mean()), rel=1e-12)
    assert float((duty["value"] == 0).mean()) <= analyzer_idle
    m = run.manifest
    lacked = " ".join(m["steps"]["features"].get("lacked", []))
    assert "job (cgroups)" in lacked and "gpu:" in lacked
    forecast = m["models"]["forecast"]
    assert forecast["status"] != "fitted" and "gpu:unknown" in forecast["reason"] and "need at least 2" in \
        forecast["reason"]
    assert m["summary_gpu_hours"]["held"] == pytest.approx(truth["duration_s"].sum() / 3600)
    # the default window ended at the trace's last point, not today
    assert pd.Timestamp(m["window"]["end"]) == pd.Timestamp(int(truth["end_ms"].max()), unit="ms", tz="UTC")

def report(path: Path, run) -> str:
    """The figures docs/validation.md quotes."""
    truth = from_csv(path)
    duty = truth.attrs["duty"]
    eff = run.table("efficiency").set_index("job")
    held, idle = eff["gpu_hours_held"].sum(), eff["gpu_hours_idle"].sum()
    notes = pd.Series([n for ns in eff["notes"] for n in ns])
    util = truth["util_mean"].dropna()
    mem_gib = truth["mem_max"].dropna() / 2**30
    lines = [
        f"pods: {len(truth)} ({int(truth['samples'].notna().sum())} with duty-cycle samples)",
        f"GPU-hours held: {held:.1f}; idle (samples < 5 %): {idle:.1f} ({idle / held:.1%})",
        f"duty-cycle samples at 0 %: {(duty['value'] == 0).mean():.1%}; below 5 %: {(duty['value'] < 5).mean():.1%}",
        f"pods idle in every sample: {int((truth['idle_share'] == 1).sum())}; "
        f"pods idle in half their samples or more: {int((truth['idle_share'] >= 0.5).sum())}",
        f"mean utilization per pod: median {util.median():.1%}, p90 {util.quantile(0.9):.1%}",
        f"peak GPU memory per pod (GiB): median {mem_gib.median():.1f}, p90 {mem_gib.quantile(0.9):.1f}, "
        f"max {mem_gib.max():.1f}",
        "notes: " + "; ".join(f"{k} x{v}" for k, v in notes.str.replace(r"\d+ h", "N h", regex=True)
                               .value_counts().items()),
        f"forecast: {run.manifest['models']['forecast'].get('reason')}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    import tempfile

    from tests.conftest import SHARED_DATA

    data = SHARED_DATA / "alibaba-genai-2026"
    with tempfile.TemporaryDirectory() as tmp:
        store = f"embedded:{Path(tmp) / 'store'}"
        sink = open_writer(store)
        ingest("alibaba-genai", data, sink, store=store)
        sink.close()
        analyze(store, state_dir=Path(tmp) / "state", n_jobs=1)
        print(report(data, load_latest(Path(tmp) / "state")))
