"""`fleetwise agent`: wire config, collectors, outputs and the /metrics server together."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from agents.config import Config, ConfigError, first_error, load_config, parse_listen
from agents.points import InvalidPoint, Point
from agents.runner import Agent, Sink

if TYPE_CHECKING:
    from agents.stores.writers import AgentStore

log = logging.getLogger("fleetwise.agent")


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


def open_store(config: Config) -> AgentStore | None:
    """The configured store output, or None; problems become one clear config error."""
    if not config.store.url:
        return None
    from agents.stores.secrets import SecretError
    from agents.stores.spool import SpoolError
    from agents.stores.url import StoreURLError
    from agents.stores.writers import open_sink

    try:
        return open_sink(config.store.url, config.store)
    except (StoreURLError, SecretError, SpoolError, ValueError) as e:
        raise ConfigError("store", "store.url", str(e)) from None
    except ImportError as e:
        raise ConfigError("store", "store.url", f"this store needs a package that is not installed: {e}") from None


def run_agent(config_path: str | None, overrides: dict[str, Any], once: bool, fmt: str,
              store_url: str | None = None) -> int:
    config = effective_config(config_path, overrides)
    if store_url is not None:
        config = config.model_copy(update={"store": _store_with_url(config, store_url)})
    agent = Agent(config)
    store = open_store(config)
    if once:
        return _once_to_store(agent, store, config) if store else _once_to_stdout(agent, fmt)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    outputs: list[Sink] = []
    if config.agent.listen:
        from agents.exposition import LatestSample, serve

        latest = LatestSample()
        host, port = parse_listen(config.agent.listen)
        try:
            serve(latest, host, port)
        except OSError as e:  # the port is taken, or this host has no such address
            raise ConfigError("listen", "agent.listen", f"cannot listen on {config.agent.listen}: "
                              f"{e.strerror or e}") from None
        outputs.append(latest.update)
    elif store is None:
        outputs.append(lambda points: print_points(points, fmt))
    sink = _SpoolingSink(agent, store, outputs) if store else _fan_out(outputs)

    if store:
        store.start()
    try:
        sink(agent.collect())  # /metrics answers, and the store has a round, from the start
        agent.run([sink], stop)
    finally:
        if store:
            empty = store.close()
            log.info("stopped after %d rounds; spool %s", sink.rounds,
                     "empty" if empty else "keeps the unsent batches")
    return 0


def _fan_out(outputs: list[Sink]) -> Sink:
    def sink(points: list[Point]) -> None:
        for output in outputs:
            output(points)

    return sink


class _SpoolingSink:
    """Each round, with the spool's own status, is committed to the spool (quick, in the loop thread); the
    store's shipper thread drains it. On SIGTERM the loop stops and close() sends what it can within
    shutdown_flush_seconds; the rest stays in the spool for the next start."""

    def __init__(self, agent: Agent, store: AgentStore, outputs: list[Sink]) -> None:
        self.agent, self.store, self.outputs = agent, store, outputs
        self.rounds = 0

    def __call__(self, points: list[Point]) -> None:
        time_ns = points[0].time_ns if points else None
        points = points + self.store.status_points(self.agent.host, time_ns)
        self.store.enqueue(points)
        self.rounds += 1
        log.info("round %d (time_ns %s): %d points committed to the spool", self.rounds, time_ns, len(points))
        for output in self.outputs:
            output(points)


def _store_with_url(config: Config, url: str):
    try:
        return type(config.store).model_validate({**config.store.model_dump(), "url": url})
    except ValidationError as e:
        key, problem = first_error(e, ("store",))
        raise ConfigError("command line", key, problem) from None


def _once_to_stdout(agent: Agent, fmt: str) -> int:
    print_points(agent.collect_once(), fmt)
    return 0


def _once_to_store(agent: Agent, store: AgentStore, config: Config) -> int:
    """One sample (with rates) through the spool to the store; unsent points stay spooled for the next run."""
    points = agent.collect_once()
    store.enqueue(points + store.status_points(agent.host, points[0].time_ns if points else None))
    if not store.close(max(config.store.shutdown_flush_seconds, config.store.timeout_seconds)):
        print(f"fleetwise: {store.label} did not take the sample now; it stays in the spool", file=sys.stderr)
    return 0
