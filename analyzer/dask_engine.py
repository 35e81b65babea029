"""`fleetwise analyze --engine dask --scheduler tcp://HOST:8786`: the analyzer's heavy steps on a Dask cluster.

- The store's aggregates (the job table's per-series queries, the demand series, the hosts) run as Dask tasks,
  one per measurement and UTC day partition of the embedded store (agents.query.partitioned: each task is the
  embedded reader's own DuckDB query over one day, pending rows included; the client combines the answers).
  Every worker must see the store at the same path (a shared file system).
- The per-workload model fits run through joblib's Dask backend (`joblib.parallel_config(backend="dask")`).
- Everything else (joining the per-series rows into the job table, the models fitted once) runs in this
  process, on the same code as the local engine.

Only the embedded store is split this way: InfluxDB already aggregates in influxd.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

ENGINES = ("local", "dask")
# Aggregate queries the job table keeps in flight at once: each is one task per day, so two or more keep
# every worker busy while the client combines the answers of the previous one.
PARALLEL_QUERIES = 4


class EngineError(Exception):
    """The engine asked for cannot be used (not installed, scheduler unreachable, wrong store): a usage error."""


class DaskEngine:
    """A connected Dask client: a map for partition tasks and the joblib backend for per-workload fits."""

    def __init__(self, client) -> None:
        self.client = client
        self.last_reader = None  # the reader of the last run, with its per-query log (bench/analyze_dask.py)

    @classmethod
    def connect(cls, scheduler: str, timeout: float | None = None) -> DaskEngine:
        """Connect to a running scheduler (tcp://HOST:PORT). timeout: seconds (None: Dask's
        distributed.comm.timeouts.connect, 30 s unless configured)."""
        try:
            import distributed
        except ImportError as e:
            raise EngineError(f"--engine dask needs dask and distributed ({e}): "
                              "pip install 'fleetwise[dask]'") from None
        try:
            kwargs = {} if timeout is None else {"timeout": timeout}
            client = distributed.Client(scheduler, set_as_default=True, **kwargs)
        except (OSError, TimeoutError, ValueError) as e:
            raise EngineError(f"--scheduler {scheduler}: cannot reach the Dask scheduler: "
                              f"{' '.join(str(e).split()) or type(e).__name__}") from None
        return cls(client)

    def map(self, fn: Callable, items: list) -> list:
        """fn over items as Dask tasks (pure=False: a store's files change between runs), results in order."""
        if not items:
            return []
        return self.client.gather(self.client.map(fn, items, pure=False))

    def reader(self, local):
        """The reader the pipeline uses: local's queries split by day and run on the cluster."""
        from agents.query.partitioned import PartitionedReader

        self.last_reader = PartitionedReader(local, self.map, parallel_queries=PARALLEL_QUERIES)
        return self.last_reader

    @contextlib.contextmanager
    def fits(self) -> Iterator[None]:
        """joblib.Parallel inside this block (analyzer.models.scaling.fit_per_workload) runs on the cluster."""
        import joblib

        with joblib.parallel_config(backend="dask"):
            yield

    def workers(self) -> int:
        return len(self.client.scheduler_info().get("workers", {}))

    def close(self) -> None:
        self.client.close()


def check_store(store_url: str) -> None:
    """The Dask engine reads the embedded store's files: any other store is refused (EngineError)."""
    from agents.stores.url import parse_store_url
    from analyzer.state import safe_store_url

    if parse_store_url(store_url).kind != "embedded":
        raise EngineError(f"--engine dask reads the embedded store's Parquet files (embedded:DIR), not "
                          f"{safe_store_url(store_url)}; "
                          "InfluxDB aggregates in influxd already: use --engine local")
