"""WorkloadIdentifier: names by hand, and grouping against the simulator's truth."""

from __future__ import annotations

import pandas as pd
import pytest

from analyzer.bottleneck import labelled_table
from analyzer.workloads import WorkloadIdentifier, normalize_name, purity


@pytest.mark.parametrize("raw,norm", [("train-resnet-0042", "train-resnet"), ("imagenet-resnet50_20261115",
                                      "imagenet-resnet50"), ("bert.run7", "bert"), ("llm-serving", "llm-serving"),
                                      ("job-3f9a2c1d", "job"), ("12345", ""), ("", "")])
def test_normalize_name(raw, norm):
    assert normalize_name(raw) == norm


def test_named_and_unnamed_jobs_by_hand():
    rows = [{"name": n, "user": "alice", "gpus": 4, "gpu_utilization_mean": u, "gpu_utilization_peak": u,
             "gpu_memory_used_max_bytes": 1e9, "gpu_memory_total_bytes": 8e10, "cpu_input_ratio": 0.1,
             "disk_bytes_per_second": 1e5, "lustre_bytes_per_second": 0.0, "net_bytes_per_second": 0.0,
             "ib_bytes_per_second": 0.0}
            for n, u in [("train-resnet-0001", 0.9), ("train-resnet-0002", 0.9), ("", 0.02), ("", 0.03),
                         ("", 0.04), ("", 0.95), ("", 0.96), ("", 0.97)]]
    rows[1]["user"] = "bob"
    wi = WorkloadIdentifier().fit(pd.DataFrame(rows))
    assert list(wi.labels_[:2]) == ["train-resnet"] * 2  # one workload, whoever runs it
    assert wi.explanation_["train-resnet"] == "2 jobs named train-resnet by alice, bob"
    per_user = WorkloadIdentifier(by_user=True).fit(pd.DataFrame(rows))
    assert list(per_user.labels_[:2]) == ["alice/train-resnet", "bob/train-resnet"]
    assert per_user.explanation_["bob/train-resnet"] == "1 job named train-resnet by bob"
    idle, busy = set(wi.labels_[2:5]), set(wi.labels_[5:])
    assert len(idle) == 1 and len(busy) == 1 and idle != busy
    assert "3 unnamed jobs, GPU util 0.02-0.04, 4 GPUs, low I/O" in wi.explanation_[idle.pop()]


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    from agents.simulate import simulate

    path = tmp_path_factory.mktemp("workloads-sim")
    simulate(nodes=24, days=2, interval=60, seed=5, store=f"embedded:{path}")
    return labelled_table(path, "2026-11-20", "2026-11-22")


def test_simulated_grouping(sim):
    wi = WorkloadIdentifier().fit(sim)
    labels = pd.Series(wi.labels_)
    named = (sim["name"] != "").to_numpy()
    # named jobs: the workload is exactly the truth's
    expected = sim["true_workload"].str.replace("/", "-")
    assert (labels[named].to_numpy() == expected[named].to_numpy()).all()
    # unnamed jobs: the simulator gives cfd-solver and genomics-align the same signature (both burn every core),
    # so workload purity tops out near 0.7 here; by kind of job the clusters should be nearly pure
    p = purity(labels[~named], sim["true_workload"][~named])
    pk = purity(labels[~named], sim["true_kind"][~named])
    print(f"clustering purity {p:.3f} (workload), {pk:.3f} (kind) over {(~named).sum()} unnamed jobs, "
          f"{wi.n_clusters_} clusters")
    assert p >= 0.6 and pk >= 0.9


def test_many_unnamed_jobs_are_clustered_on_a_silhouette_sample():
    """Above SILHOUETTE_SAMPLE unnamed jobs the silhouette is scored on a sample: three planted groups (idle,
    busy 1-GPU, busy 8-GPU with heavy I/O) still come back as exactly three clusters, each pure."""
    import numpy as np

    from analyzer.workloads import SILHOUETTE_SAMPLE

    rng = np.random.default_rng(3)
    n = SILHOUETTE_SAMPLE // 3 + 200  # per group: 3,600 jobs in all
    groups = [(0.02, 1, 1e5), (0.9, 1, 1e5), (0.6, 8, 5e9)]
    rows = [{"name": "", "user": "u", "gpus": g, "gpu_utilization_mean": u + rng.normal(0, 0.01),
             "gpu_utilization_peak": u + 0.02, "gpu_memory_used_max_bytes": 1e9, "gpu_memory_total_bytes": 8e10,
             "cpu_input_ratio": 0.2, "disk_bytes_per_second": io, "lustre_bytes_per_second": 0.0,
             "net_bytes_per_second": 0.0, "ib_bytes_per_second": 0.0, "truth": k}
            for k, (u, g, io) in enumerate(groups) for _ in range(n)]
    jobs = pd.DataFrame(rows)
    wi = WorkloadIdentifier().fit(jobs)
    assert len(jobs) > SILHOUETTE_SAMPLE
    assert wi.n_clusters_ == 3
    assert purity(wi.labels_, jobs["truth"]) == 1.0
