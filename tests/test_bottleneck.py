"""BottleneckClassifier: rules by hand, and model/rules against the simulator's truth on a held-out seed."""

from __future__ import annotations

import pandas as pd
import pytest

from analyzer.bottleneck import CLASSES, BottleneckClassifier, evaluate, labelled_table
from analyzer.minimums import InsufficientData

END = "2026-11-22"


def job(**kw) -> dict:
    base = {"gpus": 4, "nodes": 1, "gpu_utilization_mean": 0.9, "gpu_utilization_peak": 0.95,
            "gpu_memory_bandwidth_mean": 0.4, "gpu_idle_seconds": 0.0, "duration_seconds": 3600.0,
            "cpu_input_ratio": 0.3, "disk_bytes_per_second": 1e6, "lustre_bytes_per_second": 1e7,
            "net_bytes_per_second": 1e5, "ib_bytes_per_second": 0.0, "ib_xmit_wait_per_second": 0.0}
    return {**base, **kw}


def test_rules_by_hand():
    jobs = pd.DataFrame([
        job(),
        job(gpu_memory_bandwidth_mean=0.8),
        job(cpu_input_ratio=0.97, gpu_utilization_mean=0.6),
        job(nodes=4, gpus=16, gpu_utilization_mean=0.35, ib_bytes_per_second=2e10),
        job(gpu_utilization_mean=0.01, gpu_idle_seconds=3600.0),
        job(gpus=0, gpu_utilization_mean=float("nan"), cpu_input_ratio=0.3, lustre_bytes_per_second=2e9),
        job(gpus=0, gpu_utilization_mean=float("nan"), cpu_input_ratio=0.95, lustre_bytes_per_second=5e6),
    ])
    got = BottleneckClassifier(method="rules").fit(jobs).predict(jobs)
    assert list(got) == ["gpu_compute", "gpu_memory_bandwidth", "cpu_input", "network", "idle", "storage_io",
                         "cpu_compute"]


def test_model_needs_labels_and_enough_of_them():
    jobs = pd.DataFrame([job()] * 5)
    with pytest.raises(ValueError, match="needs labels"):
        BottleneckClassifier(method="model").fit(jobs)
    with pytest.raises(InsufficientData, match="5 labelled jobs"):
        BottleneckClassifier(method="model").fit(jobs, ["gpu_compute"] * 5)
    with pytest.raises(ValueError, match="method"):
        BottleneckClassifier(method="magic").fit(jobs)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    from agents.simulate import simulate

    tables = {}
    for seed in (1, 2, 7):
        path = tmp_path_factory.mktemp(f"bottleneck-{seed}")
        simulate(nodes=24, days=2, interval=60, seed=seed, store=f"embedded:{path}")
        tables[seed] = labelled_table(path, "2026-11-20", END)
    return pd.concat([tables[1], tables[2]], ignore_index=True), tables[7]


MIN_SUPPORT = 5  # held-out jobs per class below which a recall says nothing (one miss in 4 is 0.75)


def test_every_class_is_represented_in_training_and_held_out(seeds):
    # The simulator's default mix must produce every bottleneck class often enough to learn and to measure:
    # network-bound (multi-node jobs on TCP or across a tapered spine) and input-bound (few cores per GPU,
    # heavy augmentation) included. Labels come from the simulator's physics, not from the mix.
    train, test = seeds
    for name, table in (("train", train), ("held out", test)):
        counts = table["true_bottleneck"].value_counts()
        short = {c: int(counts.get(c, 0)) for c in CLASSES if counts.get(c, 0) < MIN_SUPPORT}
        assert not short, (name, short, counts.to_dict())


@pytest.mark.parametrize("method", ["model", "rules"])
def test_held_out_seed(seeds, method):
    train, test = seeds
    clf = BottleneckClassifier(method=method).fit(train, train["true_bottleneck"])
    rep = evaluate(test["true_bottleneck"], clf.predict(test))
    assert rep["accuracy"] >= 0.85, rep
    assert set(rep["support"]) == set(CLASSES)
    for label in CLASSES:
        assert rep["support"][label] >= MIN_SUPPORT, (label, rep["support"])
        assert rep["recall"][label] >= 0.7, (label, rep)


@pytest.fixture(scope="module")
def shifted(tmp_path_factory):
    """A held-out fleet the classifier's authors did not shape: SHIFTED_PROFILE (other node classes, mix and three
    times the noise) from seed 1001, outside the seed range the tuning used (1-7)."""
    from agents.simulate import simulate
    from agents.simulate.profile import load_profile
    from analyzer.bottleneck import held_out_profile

    path = tmp_path_factory.mktemp("bottleneck-shifted")
    profile = held_out_profile("shifted")
    default = {(c.cpu, c.accelerator, c.network) for c in load_profile(None).node_class}
    assert profile.noise_scale == 3.0 and not default & {(c.cpu, c.accelerator, c.network) for c in profile.node_class}
    simulate(nodes=24, days=2, interval=60, seed=1001, store=f"embedded:{path}", profile=profile)
    return labelled_table(path, "2026-11-20", END)


@pytest.mark.parametrize("method", ["model", "rules"])
def test_shifted_profile(seeds, shifted, method):
    # docs/validation.md: model 0.997 and rules 0.985 on this seed (1.000 / 1.000 on the default's seed 7);
    # the floors below are the same as on the default profile's held-out seed.
    train, _ = seeds
    clf = BottleneckClassifier(method=method).fit(train, train["true_bottleneck"])
    rep = evaluate(shifted["true_bottleneck"], clf.predict(shifted))
    assert rep["accuracy"] >= 0.85, rep
    for label in CLASSES:
        if rep["support"].get(label, 0) >= MIN_SUPPORT:
            assert rep["recall"][label] >= 0.7, (label, rep)
