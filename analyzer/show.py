"""`fleetwise models show`: what the latest analyze run fitted, and how well, as text or JSON."""

from __future__ import annotations

import json
from typing import Any

from analyzer.state import SavedRun


def models_report(run: SavedRun) -> dict[str, Any]:
    """The manifest's facts about every model, in a stable shape for --format json."""
    m = run.manifest
    models = {}
    for name, e in sorted(m.get("models", {}).items()):
        entry = {"status": e["status"], "class": e.get("class")}
        if e["status"] == "fitted":
            entry.update({k: e.get(k) for k in ("score", "scores", "n_train", "minimum", "window", "fitted_at",
                                                 "parameters")})
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
