"""What every page reads from: the store (through the query API) and the state directory (the latest run).

The embedded store's reader holds one DuckDB connection, which must not be shared between threads, and the
server answers callbacks from several threads: each thread gets its own reader. A page's independent
queries run at once on the context's worker threads (`gather`), each worker with its own reader too: DuckDB
and influxd's HTTP answers release the GIL, so one query's pandas work overlaps another's scan. What a
page computed for a window is kept for its auto-refresh interval (`cached`, dashboard/cache.py). The latest
run is loaded again only when `latest` names another run.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analyzer.state import DEFAULT_STATE_DIR, SavedRun, StateDir, StateError
from dashboard.cache import DEFAULT_TTL, TTLCache

WORKERS = 4  # queries of one callback in flight at once (a page has up to ~12 independent ones)


class RequestReader:
    """A Reader for one callback: the list of measurements and the tag values are asked of the store once,
    however many data functions ask (a page's functions each check which measurements exist)."""

    def __init__(self, reader, ctx: Context | None = None) -> None:
        self._reader = reader
        self._ctx = ctx
        self._measurements: list[str] | None = None
        self._tags: dict[tuple[str, str], list[str]] = {}

    @property
    def cache(self) -> TTLCache | None:
        return None if self._ctx is None else self._ctx.cache

    def gather(self, tasks: dict[str, Callable[[Any], Any]]) -> dict[str, Any]:
        """{name: task(reader)} for every task, run at once on the context's workers, each with that worker's
        own reader (sharing this callback's list of measurements and tag values); in turn on this reader
        when there is no context. The first task's error is raised, as a sequential run would."""
        if self._ctx is None or len(tasks) < 2:
            return {name: task(self) for name, task in tasks.items()}

        def run(task):
            worker = RequestReader(self._ctx.worker_reader())
            worker._measurements, worker._tags = self.measurements(), self._tags
            return task(worker)

        futures = {name: self._ctx.pool().submit(run, task) for name, task in tasks.items()}
        return {name: f.result() for name, f in futures.items()}

    def measurements(self) -> list[str]:
        if self._measurements is None:
            self._measurements = self._reader.measurements()
        return self._measurements

    def tag_values(self, measurement: str, tag: str) -> list[str]:
        key = (measurement, tag)
        if key not in self._tags:
            self._tags[key] = self._reader.tag_values(measurement, tag)
        return self._tags[key]

    def __getattr__(self, name: str):
        return getattr(self._reader, name)


def gather(reader, tasks: dict[str, Callable[[Any], Any]]) -> dict[str, Any]:
    """RequestReader.gather for any reader (a plain Reader, as the tests hand the data functions, runs the
    tasks in turn)."""
    if isinstance(reader, RequestReader):
        return reader.gather(tasks)
    return {name: task(reader) for name, task in tasks.items()}


def cached(reader, key: Hashable, compute: Callable[[], Any], ttl: float | None = None) -> Any:
    """compute(), or what it returned for key within ttl seconds (DEFAULT_TTL when None) when the reader
    comes from a Context (its cache); always compute() otherwise."""
    cache = reader.cache if isinstance(reader, RequestReader) else None
    if cache is None:
        return compute()
    return cache.get_or_compute(key, compute, ttl or DEFAULT_TTL)


@dataclass
class Context:
    store: str
    state_dir: Path = DEFAULT_STATE_DIR
    alerts_dir: Path | None = None  # None: the alerts component's default
    settings: object | None = None  # agents.stores.settings.StoreSettings ([store]: CA file, timeouts)
    _local: threading.local = field(default_factory=threading.local, repr=False)
    _run: tuple[str, SavedRun] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    cache: TTLCache = field(default_factory=TTLCache, repr=False)
    _pool: ThreadPoolExecutor | None = field(default=None, repr=False)

    def reader(self) -> RequestReader:
        """This thread's reader, behind a fresh RequestReader (one per callback)."""
        return RequestReader(self.thread_reader(), self)

    def thread_reader(self):
        """This thread's agents.query Reader, opened on first use."""
        reader = getattr(self._local, "reader", None)
        if reader is None:
            from agents.query import open_reader

            reader = self._local.reader = open_reader(self.store, self.settings)
        return reader

    def worker_reader(self):
        """A query worker's reader: thread_reader(), its queries on one thread each where the store runs them
        in this process (the embedded store's DuckDB: the workers are the parallelism; a query's own threads
        on top of them were slower and dearer: /fleet's week fetched in 0.77 s by two one-thread workers,
        1.02 s by four of two threads, on the 2-core machine at load 4)."""
        reader = self.thread_reader()
        if not getattr(self._local, "limited", False):
            limit = getattr(reader, "limit_threads", None)
            if limit is not None:
                limit(1)
            self._local.limited = True
        return reader

    def workers(self) -> int:
        """How many queries run at once: WORKERS against a server (its waits overlap); for the embedded store
        (its queries run here) no more than the cores, and two at least."""
        if self.store.startswith("embedded:"):
            return max(2, min(WORKERS, os.cpu_count() or 1))
        return WORKERS

    def pool(self) -> ThreadPoolExecutor:
        """The workers RequestReader.gather runs a callback's queries on (started on first use)."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.workers(), thread_name_prefix="fleetwise-query")
            return self._pool

    def run(self) -> SavedRun | None:
        """The newest completed analyze run, or None when there is none (the pages say so)."""
        state = StateDir(self.state_dir)
        try:
            latest = state.latest_id()
        except StateError:
            return None
        if latest is None:
            return None
        with self._lock:
            if self._run is None or self._run[0] != latest:
                try:
                    self._run = (latest, state.load(latest))
                except StateError:
                    return None
            return self._run[1]
