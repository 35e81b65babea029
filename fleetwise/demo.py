"""`make demo`: the main job on the embedded default. For now: one agent sample of this machine."""

from __future__ import annotations

from collections import Counter

from agents.agent_main import effective_config
from agents.runner import Agent


def run_demo() -> int:
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

    simulate_demo()
    from analyzer.pipeline import analyze
    from analyzer.show import render

    result = analyze("embedded:./var/demo-store", state_dir="var/state")
    print("\n" + result.summary())
    print("\n$ fleetwise models show\n" + render(result.run), end="")
    return 0
