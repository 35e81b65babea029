"""`fleetwise agent`: wire config, collectors, outputs and the /metrics server together."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from agents.config import Config, ConfigError, first_error, load_config, parse_listen
from agents.points import InvalidPoint, Point
from agents.runner import Agent

if TYPE_CHECKING:
    from agents.stores.writers import AgentStore


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
    if config.store.url:
        return _run_once_to_store(config) if once else _run_with_store(config, fmt)
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


def _store_with_url(config: Config, url: str):
    try:
        return type(config.store).model_validate({**config.store.model_dump(), "url": url})
    except ValidationError as e:
        key, problem = first_error(e, ("store",))
        raise ConfigError("command line", key, problem) from None


def _run_with_store(config: Config, fmt: str) -> int:
    """Collect, commit each round to the spool (quick, in this thread); a shipper thread drains it.

    On SIGTERM: stop collecting, send what can be sent within shutdown_flush_seconds, exit 0; the rest
    stays in the spool for the next start.
    """
    import logging

    log = logging.getLogger("fleetwise.agent")
    agent = Agent(config)
    store = open_store(config)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    outputs = []
    if config.agent.listen:
        from agents.exposition import LatestSample, serve

        latest = LatestSample()
        host, port = parse_listen(config.agent.listen)
        serve(latest, host, port)
        outputs.append(latest.update)

    rounds = 0

    def to_store(points: list[Point]) -> None:
        nonlocal rounds
        time_ns = points[0].time_ns if points else None
        points = points + store.status_points(agent.host, time_ns)
        store.enqueue(points)
        rounds += 1
        log.info("round %d (time_ns %s): %d points committed to the spool", rounds, time_ns, len(points))
        for output in outputs:
            output(points)

    store.start()
    try:
        agent.run([to_store], stop)
    finally:
        empty = store.close()
        log.info("stopped after %d rounds; spool %s", rounds, "empty" if empty else "keeps the unsent batches")
    return 0


def _run_once_to_store(config: Config) -> int:
    """One sample (with rates) through the spool to the store; unsent points stay spooled for the next run."""
    agent = Agent(config)
    store = open_store(config)
    points = agent.collect_once()
    store.enqueue(points + store.status_points(agent.host, points[0].time_ns if points else None))
    if not store.close(max(config.store.shutdown_flush_seconds, config.store.timeout_seconds)):
        print(f"fleetwise: {store.label} did not take the sample now; it stays in the spool", file=sys.stderr)
    return 0
