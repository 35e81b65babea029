"""`make demo`: one agent sample of this machine, a simulated fleet, its analysis, the recommendations and the
weekly capacity report of the analyzed week, then the dashboard over them on 127.0.0.1 (until Ctrl-C;
`--no-serve` stops before serving)."""

from __future__ import annotations

from collections import Counter

from agents.agent_main import effective_config
from agents.runner import Agent

DEMO_STORE = "embedded:./var/demo-store"
DEMO_STATE = "var/state"
DEMO_LISTEN = "127.0.0.1:8050"


def run_demo(serve: bool = True) -> int:
    agent = Agent(effective_config(None, {"once_pause_seconds": 1.0}))
    points = agent.collect_once()
    per_measurement = Counter(p.measurement for p in points)
    print(f"fleetwise agent on {agent.host}: {len(points)} points")
    for name, n in sorted(per_measurement.items()):
        print(f"  {name:<16} {n:>4} series")
    for p in points:
        if p.measurement in ("cpu", "memory") and p.tags.get("cpu", "total") == "total":
            print(f"  {p.to_line()}")
    from agents.simulate import demo as simulate_demo

    sim = simulate_demo()
    from analyzer.pipeline import analyze
    from analyzer.show import render

    result = analyze(DEMO_STORE, state_dir=DEMO_STATE)
    print("\n" + result.summary())
    print("\n$ fleetwise models show\n" + render(result.run), end="")
    print_recommendations(result.run, sim.summary.get("idle_gpu_hours_in_idle_jobs"))
    print_report(result.run)
    if not serve:
        return 0
    return serve_dashboard()


def serve_dashboard() -> int:
    """The dashboard over the demo's store and state on 127.0.0.1:8050 (another free port when that one is
    taken), until Ctrl-C."""
    from dashboard.serve import run

    print("\n$ fleetwise dashboard", flush=True)
    try:
        return run(DEMO_STORE, DEMO_STATE, DEMO_LISTEN)
    except OSError as e:  # 8050 taken: the demo's work is done, serve it elsewhere rather than fail
        print(f"127.0.0.1:8050: {e.strerror or e}; serving on a free port instead", flush=True)
        return run(DEMO_STORE, DEMO_STATE, "127.0.0.1:0")


def print_report(run, out: str = "var/reports") -> None:
    """The weekly capacity report (HTML and CSV) of the last complete week of the analyzed window."""
    import datetime as dt

    from analyzer.report.build import build_report
    from analyzer.report.week import last_complete_week

    week = last_complete_week(dt.datetime.fromisoformat(run.manifest["window"]["end"]))
    print(f"\n$ fleetwise report --week {week} --out {out}")
    result = build_report(week, out, store=DEMO_STORE, state_dir=run.path.parent.parent,
                          fleet_name="demo fleet")
    print(result.summary())


def print_recommendations(run, true_idle_gpu_hours: float | None, top: int = 10) -> None:
    """The ten largest recommendations, and the simulated fleet's true idle GPU-hours beside those found."""
    from analyzer.recommend.formats import render

    try:
        recs, skipped = run.table("recommendations"), run.table("recommendations_skipped")
    except KeyError:
        step = run.manifest.get("steps", {}).get("recommend", {})
        print(f"\nno recommendations: {step.get('reason', 'the recommend step did not run')}")
        return
    print(f"\n$ fleetwise recommend --limit {top}   ({len(recs)} in all, largest gain first)")
    print(render("table", recs.head(top), skipped), end="")
    found = run.manifest.get("recommend", {}).get("idle_gpu_hours_found", 0.0)
    if true_idle_gpu_hours:
        print(f"\nidle GPU-hours: {true_idle_gpu_hours:,.0f} true (simulator's truth.json), {found:,.0f} found by the "
              f"recommender ({100 * found / true_idle_gpu_hours:.0f}%)")
