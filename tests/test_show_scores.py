"""`fleetwise models show` names each score's metric, unit and direction, in text and JSON."""

from __future__ import annotations

import json
from pathlib import Path

from analyzer.show import SCORE_METRICS, render, score_metric
from analyzer.state import SavedRun


def _run() -> SavedRun:
    fitted = {"status": "fitted", "n_train": 10, "minimum": 4, "window": None, "fitted_at": None,
              "parameters": {}, "scores": None}
    manifest = {"models": {
        "throughput": fitted | {"class": "analyzer.models.throughput.ThroughputMatrix", "score": 2.12},
        "power": fitted | {"class": "analyzer.models.power.PowerCapModel", "score": 1.39},
        "workloads": fitted | {"class": "analyzer.workloads.WorkloadIdentifier", "score": 0.41},
        "mystery": fitted | {"class": "somewhere.Unknown", "score": 3.0},
    }, "window": {"start": "a", "end": "b"}}
    return SavedRun("r1", Path("."), manifest)


def test_every_saved_model_class_is_described():
    # the classes analyze saves (analyzer/pipeline.py), each with a metric, a unit and a direction
    for cls in ("ThroughputMatrix", "PowerCapModel", "ScalingModel", "WorkloadIdentifier", "CapacityForecaster",
                "BottleneckClassifier"):
        metric, unit, higher = SCORE_METRICS[cls]
        assert metric and unit and isinstance(higher, bool)
    assert score_metric("analyzer.models.throughput.ThroughputMatrix")["higher_is_better"] is False
    assert score_metric("analyzer.workloads.WorkloadIdentifier")["higher_is_better"] is True
    assert score_metric("x.Unknown") is None and score_metric(None) is None


def test_json_and_text_name_the_metric():
    run = _run()
    shown = json.loads(render(run, "json"))["models"]
    assert shown["throughput"]["score"] == 2.12
    assert shown["throughput"]["score_metric"] == {
        "metric": SCORE_METRICS["ThroughputMatrix"][0], "unit": SCORE_METRICS["ThroughputMatrix"][1],
        "higher_is_better": False}
    assert shown["mystery"]["score_metric"] is None
    text = render(run, "text").splitlines()
    # the line under each model names what its score is
    i = next(k for k, line in enumerate(text) if line.strip().startswith("power "))
    assert "1.39" in text[i]
    assert text[i + 1].strip() == (f"score: {SCORE_METRICS['PowerCapModel'][0]} [{SCORE_METRICS['PowerCapModel'][1]}],"
                                   " lower is better")
    i = next(k for k, line in enumerate(text) if line.strip().startswith("workloads "))
    assert text[i + 1].strip().endswith("higher is better")
    i = next(k for k, line in enumerate(text) if line.strip().startswith("mystery "))
    assert "no description" in text[i + 1]
