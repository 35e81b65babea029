"""`fleetwise agent`: wire config, collectors, outputs and the /metrics server together."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agents.config import Config, ConfigError, first_error, load_config, parse_listen
from agents.points import InvalidPoint, Point
from agents.runner import Agent


def effective_config(path: str | None, agent_overrides: dict[str, Any]) -> Config:
    """File, then environment, then command-line options; all validated the same way."""
    config = load_config(Path(path) if path else None)
    if agent_overrides:
        merged = {**config.agent.model_dump(), **agent_overrides}
        try:
            agent = type(config.agent).model_validate(merged)
        except ValidationError as e:
            key, problem = first_error(e, ("agent",))
            raise ConfigError("command line", key, problem) from None
        config = config.model_copy(update={"agent": agent})
    return config


def print_points(points: list[Point], fmt: str, out=sys.stdout) -> None:
    for p in points:
        try:
            out.write((p.to_line() if fmt == "line" else p.to_json()) + "\n")
        except InvalidPoint as e:
            print(f"fleetwise: skipped a point: {e}", file=sys.stderr)
    out.flush()


def run_agent(config_path: str | None, overrides: dict[str, Any], once: bool, fmt: str) -> int:
    config = effective_config(config_path, overrides)
    agent = Agent(config)
    if once:
        print_points(agent.collect_once(), fmt)
        return 0

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    sinks = []
    if config.agent.listen:
        from agents.exposition import LatestSample, serve

        latest = LatestSample()
        host, port = parse_listen(config.agent.listen)
        serve(latest, host, port)
        latest.update(agent.collect())  # /metrics answers from the first scrape on
        sinks.append(latest.update)
    else:
        sinks.append(lambda points: print_points(points, fmt))
    agent.run(sinks, stop)
    return 0
