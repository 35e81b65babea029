"""The recommender: ranked actions with their gain, risk and evidence, from one analyze run.

One module per family, each with `recommend(ctx) -> (recommendations, skipped)`, enabled by name like the
agent's collectors; `run()` calls them in order and builds the tables saved with the run
(`recommendations`, `recommendations_skipped`). Families read only the Context (job table, window, hosts,
models, settings). See docs/recommender.md.
"""

from __future__ import annotations

import importlib
import logging
import time

log = logging.getLogger(__name__)

FAMILIES: dict[str, str] = {  # name -> module; the kind each produces is in its KIND
    "rightsize": "analyzer.recommend.rightsize",
    "gpu": "analyzer.recommend.gpu",
    "powercap": "analyzer.recommend.powercap",
    "rebalance": "analyzer.recommend.rebalance",
    "balance": "analyzer.recommend.balance",
    "consolidate": "analyzer.recommend.consolidate",
    "fragmentation": "analyzer.recommend.fragmentation",
}


def run(ctx, families: tuple[str, ...] | None = None):
    """(recommendations, skipped) DataFrames, largest gain first; ctx.summary gets per-family counts and
    times, the idle GPU-hours found, and what families report beside their rows (the MILP's gain)."""
    from analyzer.recommend.rows import skipped_frame, to_frame

    recs, skipped = [], []
    for name in families or tuple(FAMILIES):
        if name not in FAMILIES:
            raise ValueError(f"unknown recommendation family {name!r}; known: {', '.join(FAMILIES)}")
        t0 = time.perf_counter()
        r, s = importlib.import_module(FAMILIES[name]).recommend(ctx)
        recs += r
        skipped += s
        ctx.summary.setdefault("families", {})[name] = {"recommendations": len(r), "skipped": len(s),
                                                         "seconds": round(time.perf_counter() - t0, 3)}
        log.info("recommend: %s: %d recommendation(s), %d skipped", name, len(r), len(s))
    frame = to_frame(recs, ctx.settings.prices, ctx.window)
    ctx.summary["idle_gpu_hours_found"] = idle_gpu_hours(frame)
    ctx.summary["recommendations"] = len(frame)
    return frame, skipped_frame(skipped)


def idle_gpu_hours(frame) -> float:
    """GPU-hours over the window that the recommendations found held but idle (kind gpu, idle evidence)."""
    import json

    total = 0.0
    for kind, ev in zip(frame["kind"], frame["evidence"], strict=True):
        if kind == "gpu":
            total += float(json.loads(ev).get("idle_gpu_hours", 0.0) or 0.0)
    return total
