"""`fleetwise models show`: what the latest analyze run fitted, and how well, as text or JSON."""

from __future__ import annotations

import json
from typing import Any

from analyzer.state import SavedRun

# What each model class's score_ measures: (metric, unit, higher is better). Keyed by class name so that runs
# written before this table existed are described too. A class missing here shows its score unnamed ("?").
SCORE_METRICS: dict[str, tuple[str, str, bool]] = {
    "ThroughputMatrix": ("cross-validated RMSE of log throughput on held-out observed (workload, accelerator) "
                         "cells", "natural log (0.1 ~ 10 % error)", False),
    "PowerCapModel": ("RMSE of log time per unit of work over the fitted (workload, accelerator) pairs, "
                      "in-sample, weighted by observations", "natural log (0.1 ~ 10 % error)", False),
    "ScalingModel": ("leave-one-device-count-out RMSE of log throughput of the chosen scaling form",
                     "natural log (0.1 ~ 10 % error)", False),
    "WorkloadIdentifier": ("silhouette of the chosen clustering of unnamed jobs (NaN: every job was named)",
                           "unitless, -1 to 1", True),
    "CapacityForecaster": ("rolling-origin CV skill over the flat mean, 1 - MAE / MAE(flat mean), mean over pools",
                           "unitless; 0 = as good as the flat mean, 1 = perfect", True),
    "BottleneckClassifier": ("accuracy on the labelled training jobs (in-sample; the held-out figures are in "
                             "docs/validation.md)", "fraction, 0 to 1", True),
}


def score_metric(model_class: str | None) -> dict[str, Any] | None:
    """{"metric", "unit", "higher_is_better"} for a model class path (module.Class), None if unknown."""
    known = SCORE_METRICS.get((model_class or "").rsplit(".", 1)[-1])
    if known is None:
        return None
    metric, unit, higher = known
    return {"metric": metric, "unit": unit, "higher_is_better": higher}


def models_report(run: SavedRun) -> dict[str, Any]:
    """The manifest's facts about every model, in a stable shape for --format json."""
    m = run.manifest
    models = {}
    for name, e in sorted(m.get("models", {}).items()):
        entry = {"status": e["status"], "class": e.get("class")}
        if e["status"] == "fitted":
            entry.update({k: e.get(k) for k in ("score", "scores", "n_train", "minimum", "window", "fitted_at",
                                                 "parameters")})
            entry["score_metric"] = score_metric(e.get("class"))
            if e.get("partial"):
                entry["partial"] = e["partial"]
        else:
            entry["reason"] = e.get("reason")
        models[name] = entry
    return {"run_id": run.run_id, "fleetwise_version": m.get("fleetwise_version"), "store": m.get("store"),
            "window": m.get("window"), "completed_at": m.get("completed_at"), "summary": m.get("summary"),
            "models": models}


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


SHOWN = 5  # reasons listed per group in text; --format json has all of them


def _capped(lines: list[str], indent: str) -> list[str]:
    if len(lines) <= SHOWN:
        return lines
    return [*lines[:SHOWN], f"{indent}... and {len(lines) - SHOWN} more (--format json lists them all)"]


def _structures(scores: Any, pad: str) -> list[str]:
    """One line per sub-model that chose its structure (the forecaster's pools): which, and its CV error
    against the flat mean's, so a planner sees where the forecast is only a flat mean and why."""
    if not isinstance(scores, dict):
        return []
    out = []
    for part, sc in scores.items():
        if isinstance(sc, dict) and "structure" in sc:
            cv = "" if sc.get("wape") is None else \
                f" (CV WAPE {_num(sc['wape'])}, flat mean {_num(sc.get('wape_flat_mean'))})"
            out.append(f"{pad}{part}: {sc['structure']}{cv}")
    return out


def render_text(run: SavedRun) -> str:
    r = models_report(run)
    w = r["window"] or {}
    lines = [f"run {r['run_id']} (fleetwise {r['fleetwise_version']}, completed {r['completed_at']})",
             f"store {r['store']}, window {w.get('start')} .. {w.get('end')}"]
    fitted = {n: e for n, e in r["models"].items() if e["status"] == "fitted"}
    skipped = {n: e for n, e in r["models"].items() if e["status"] != "fitted"}
    if fitted:
        width = max(len(n) for n in fitted)
        lines.append(f"fitted ({len(fitted)}):")
        lines.append(f"  {'model':<{width}}  {'score':>7}  {'n_train':>7}  {'minimum':>7}  class")
        for n, e in fitted.items():
            lines.append(f"  {n:<{width}}  {_num(e['score']):>7}  {_num(e['n_train']):>7}  {_num(e['minimum']):>7}"
                         f"  {(e['class'] or '').rsplit('.', 1)[-1]}")
            pad = f"  {'':<{width}}    "
            sm = e.get("score_metric")
            lines.append(f"{pad}score: " + ("? (no description for this model class)" if sm is None else
                         f"{sm['metric']} [{sm['unit']}], {'higher' if sm['higher_is_better'] else 'lower'} is better"))
            lines += _structures(e.get("scores"), pad)  # a handful of pools: all of them
            partial = (e.get("partial") or {}).items()
            lines += _capped([f"{pad}not fitted for {part}: {reason}" for part, reason in partial], pad)
    else:
        lines.append("fitted nothing")
    if skipped:
        lines.append(f"not fitted ({len(skipped)}):")
        lines += _capped([f"  {n}: {e['reason']}" for n, e in skipped.items()], "  ")
    return "\n".join(lines) + "\n"


def render(run: SavedRun, fmt: str = "text") -> str:
    if fmt == "json":
        return json.dumps(models_report(run), indent=2, sort_keys=True) + "\n"
    if fmt == "text":
        return render_text(run)
    raise ValueError(f"unknown format {fmt!r}: use text or json")
