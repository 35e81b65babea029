"""What every page reads from: the store (through the query API) and the state directory (the latest run).

The embedded store's reader holds one DuckDB connection, which must not be shared between threads, and the
server answers callbacks from several threads: each thread gets its own reader. The latest run is loaded
again only when `latest` names another run.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from analyzer.state import DEFAULT_STATE_DIR, SavedRun, StateDir, StateError


class RequestReader:
    """A Reader for one callback: the list of measurements and the tag values are asked of the store once,
    however many data functions ask (a page's functions each check which measurements exist)."""

    def __init__(self, reader) -> None:
        self._reader = reader
        self._measurements: list[str] | None = None
        self._tags: dict[tuple[str, str], list[str]] = {}

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


@dataclass
class Context:
    store: str
    state_dir: Path = DEFAULT_STATE_DIR
    alerts_dir: Path | None = None  # None: the alerts component's default
    settings: object | None = None  # agents.stores.settings.StoreSettings ([store]: CA file, timeouts)
    _local: threading.local = field(default_factory=threading.local, repr=False)
    _run: tuple[str, SavedRun] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def reader(self) -> RequestReader:
        """This thread's reader, behind a fresh RequestReader (one per callback)."""
        reader = getattr(self._local, "reader", None)
        if reader is None:
            from agents.query import open_reader

            reader = self._local.reader = open_reader(self.store, self.settings)
        return RequestReader(reader)

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
