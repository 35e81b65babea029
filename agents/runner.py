"""The agent loop: run every enabled collector each tick, keep their health, hand points to sinks."""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agents import collectors
from agents.collectors.base import Collector, Cycle, Roots
from agents.config import Config
from agents.points import Point
from agents.schema.agent import AGENT

log = logging.getLogger("fleetwise.agent")

Sink = Callable[[list[Point]], None]


@dataclass
class Health:
    up: int = 0
    duration_seconds: float = 0.0
    errors: int = 0
    points: int = 0
    last_success: float = 0.0


class Agent:
    """Builds the enabled collectors and runs them; a failing collector never stops the others."""

    def __init__(self, config: Config) -> None:
        self.config = config
        settings = config.agent
        self.host = settings.host or socket.gethostname()
        roots = Roots(proc=settings.proc_root, sys=settings.sys_root)
        self.collectors: list[Collector] = []
        for name in collectors.REGISTRY:  # registry order, so jobs run after the GPU collectors
            if name in settings.collectors:
                cls = collectors.load(name)
                self.collectors.append(cls(roots, self.host, config.collector_options(name)))
        self.health = {c.name: Health() for c in self.collectors}
        self._logged_errors: set[tuple[str, str]] = set()

    def collect(self) -> list[Point]:
        cycle = Cycle(time_ns=time.time_ns())
        points: list[Point] = []
        for collector in self.collectors:
            health = self.health[collector.name]
            started = time.perf_counter()
            try:
                produced = list(collector.collect(cycle))
            except Exception as exc:  # a broken source must never stop the agent
                health.up = 0
                health.errors += 1
                self._log_once(collector.name, exc)
            else:
                collector.rates.sweep()
                points.extend(produced)
                health.up = 1
                health.points = len(produced)
                health.last_success = cycle.seconds
            health.duration_seconds = time.perf_counter() - started
        points.extend(self._health_points(cycle))
        return points

    def _log_once(self, name: str, exc: Exception) -> None:
        # Once per distinct error: a collector that fails every 10 s must not flood the journal.
        key = (name, f"{type(exc).__name__}: {exc}")
        if key not in self._logged_errors:
            self._logged_errors.add(key)
            log.warning("collector %s failed: %s (logged once; further identical errors are counted)",
                        name, key[1])

    def _health_points(self, cycle: Cycle) -> list[Point]:
        return [
            Point(AGENT.name, {"host": self.host, "collector": name}, {
                "up": h.up,
                "duration_seconds": h.duration_seconds,
                "errors": h.errors,
                "points": h.points,
                "last_success_timestamp_seconds": h.last_success,
            }, cycle.time_ns)
            for name, h in self.health.items()
        ]

    def collect_once(self) -> list[Point]:
        """A sample with rates: read, pause, read again, return the second read."""
        self.collect()
        time.sleep(self.config.agent.once_pause_seconds)
        return self.collect()

    def run(self, sinks: Sequence[Sink], stop: threading.Event) -> None:
        """Collect at wall-clock multiples of the interval plus a fixed per-process jitter, so a
        fleet's agents sample at comparable instants without hitting a server all at once."""
        interval = self.config.agent.interval_seconds
        offset = random.uniform(0, min(self.config.agent.jitter_seconds, interval))
        while not stop.is_set():
            now = time.time()
            next_tick = (now // interval + 1) * interval + offset
            if stop.wait(next_tick - now):
                break
            points = self.collect()
            for sink in sinks:
                try:
                    sink(points)
                except Exception as exc:
                    self._log_once(f"sink {getattr(sink, '__name__', sink)}", exc)
