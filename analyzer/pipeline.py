"""`fleetwise analyze`: telemetry in, a versioned run of fitted models out (analyzer.state).

    job table (features) -> workloads -> efficiency -> bottlenecks -> observations
        -> ThroughputMatrix, ScalingModel per workload (joblib, in parallel), PowerCapModel
        -> demand series -> CapacityForecaster

Each step is isolated: a module that is not installed, a model that raises InsufficientData, or a step
that fails is written into the run's manifest with its reason, and the run goes on with what it has. A step
whose input is missing (e.g. no job table) is skipped and says which input it lacked. Only a store that
cannot be opened stops the run before anything is written.

The window is [until - since, until). When `until` is not given it is the end of the data (the last point
of any measurement a step reads, plus one bucket) if that is earlier than now, so an archived store is analysed as it
stands instead of through an empty week.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analyzer.minimums import InsufficientData
from analyzer.state import DEFAULT_KEEP, DEFAULT_STATE_DIR, SavedRun, StateDir, safe_store_url

log = logging.getLogger(__name__)

DEFAULT_SINCE = "7d"
DEFAULT_EVERY = "5m"
DEMAND_EVERY = "1h"
# Every measurement some step reads: the default window ends at the last point of any of them, so a store
# holding only GPU pod series (the GenAI trace, dcgm-exporter) is not analysed through an empty week.
_BOUND_MEASUREMENTS = ("job", "job_gpu", "gpu", "cpu", "cpu_info", "disk", "lustre", "net", "infiniband",
                       "job_progress", "job_info")


class Skip(Exception):
    """A step cannot run: its input is missing or its module is absent. The message is the reason."""


class NotEnoughData(Exception):
    """Nothing could be fitted (an empty window, an empty or unreadable store). The run is abandoned and
    `latest` keeps naming the previous good run, which the dashboard goes on showing."""


@dataclass
class AnalyzeResult:
    run: SavedRun
    seconds: float
    window: tuple[Any, Any]
    jobs: int = 0
    workloads: int = 0
    fitted: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        m = self.run.manifest
        lines = [f"analyzed {m['store']} from {self.window[0]} to {self.window[1]}",
                 f"  jobs: {self.jobs:,}   workloads: {self.workloads:,}",
                 f"  models fitted: {len(self.fitted)}" + (f" ({_names(self.fitted)})" if self.fitted else "")]
        if self.skipped:
            lines.append(f"  models not fitted: {len(self.skipped)}")
            families: dict[str, list[str]] = {}
            for name in self.skipped:
                families.setdefault(name.split("[", 1)[0], []).append(name)
            for family, names in families.items():
                # Per-workload models can number in the hundreds: one line per family, with one example.
                if len(names) == 1:
                    lines.append(f"    {names[0]}: {self.skipped[names[0]]}")
                else:
                    lines.append(f"    {family}: {len(names)} not fitted, e.g. {names[0]}: {self.skipped[names[0]]}")
        gpu = m.get("summary_gpu_hours")
        if gpu:
            lines.append(f"  GPU-hours held: {gpu['held']:,.1f}   idle: {gpu['idle']:,.1f}   per job: tables/efficiency"
                         ".parquet (gpu_hours_held, gpu_hours_idle, gpu_memory_headroom_bytes, notes)")
        rec = m.get("recommend")
        if rec:
            lines.append(f"  recommendations: {rec.get('recommendations', 0):,} (idle GPU-hours found: "
                         f"{rec.get('idle_gpu_hours_found', 0):,.0f}; `fleetwise recommend` lists them)")
        for step, s in m["steps"].items():
            if s["status"] != "ok":
                lines.append(f"  step {step} {s['status']}: {s.get('reason', '')}")
            for lack in s.get("lacked", []):
                lines.append(f"  step {step} lacked {lack}")
        lines.append(f"  run {self.run.run_id} in {self.run.path.parent.parent} ({self.seconds:.1f} s)")
        return "\n".join(lines)


def _names(names: list[str], limit: int = 8) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _until(until):
    """--until as a UTC Timestamp; a ValueError that names the option."""
    from agents.query.base import to_timestamp

    try:
        return to_timestamp(until)
    except ValueError:  # pandas' own words name neither the option nor the format
        raise ValueError(f"--until {until!r}: give an ISO 8601 time, e.g. 2026-11-20T00:00:00Z") from None


def resolve_window(reader, since: str | dt.timedelta = DEFAULT_SINCE, until=None,
                   now: dt.datetime | None = None, every: str = DEFAULT_EVERY):
    """(start, end) as UTC Timestamps. since: a duration ("7d", "36h") or an ISO time; until: ISO time or None."""
    import pandas as pd

    from agents.query.base import parse_every, to_timestamp

    now_ts = pd.Timestamp(now or dt.datetime.now(dt.UTC))
    now_ts = now_ts.tz_localize("UTC") if now_ts.tzinfo is None else now_ts.tz_convert("UTC")
    if until is not None:
        end = _until(until)
    else:
        end = now_ts
        present = set(reader.measurements())
        lasts = [b[1] for m in _BOUND_MEASUREMENTS if m in present
                 for b in [reader.time_bounds(m)] if b is not None]
        if lasts:
            step = pd.Timedelta(parse_every(every), unit="ns")
            # Round the last point up to a bucket edge so its bucket is inside the window.
            data_end = (max(lasts) + pd.Timedelta(1, unit="ns")).ceil(step)
            end = min(end, data_end)
    try:
        start = end - pd.Timedelta(parse_every(since), unit="ns")
    except ValueError:
        try:
            start = to_timestamp(since)
        except ValueError:
            raise ValueError(f"--since {since!r}: give a duration (7d, 36h) or an ISO 8601 time") from None
    if start >= end:
        ends = f"--until {until!r}" if until is not None else "the end of the data (or now)"
        raise ValueError(f"the window is empty: --since {since!r} starts at {start}, not before {ends} at {end}")
    return start, end


class _Run:
    """The mutable context of one analyze run: the state writer, intermediate tables, the result tallies."""

    def __init__(self, writer, window, n_jobs: int, fits: Callable[[], Any] = contextlib.nullcontext) -> None:
        self.writer = writer
        self.window = window
        self.n_jobs = n_jobs
        self.fits = fits  # the context the per-workload fits run in (the Dask engine: joblib's Dask backend)
        self.data: dict[str, Any] = {}
        self.models: dict[str, Any] = {}  # what this run fitted, for the recommend step
        self.fitted: list[str] = []
        self.skipped: dict[str, str] = {}
        self.failed: dict[str, str] = {}
        self.lacked: dict[str, list[str]] = {}

    def need(self, key: str, step: str) -> Any:
        value = self.data.get(key)
        if value is None:
            raise Skip(f"no {key.replace('_', ' ')} (step {step} did not produce one)")
        return value

    def step(self, name: str, fn: Callable[[], Any], model: str | None = None) -> Any:
        """Run one step; `model` names the model it fits, recorded as not fitted when the step cannot run."""
        t0 = time.perf_counter()
        try:
            out = fn()
        except (Skip, InsufficientData) as e:
            status = "skipped" if isinstance(e, Skip) else "insufficient data"
            self.writer.record_step(name, status, time.perf_counter() - t0, str(e))
            log.info("analyze: %s %s: %s", name, status, e)
            self._unfitted(model, str(e))
            return None
        except Exception as e:
            # A broken step must not cost the user the models the other steps fitted.
            reason = f"{type(e).__name__}: {e}"
            self.failed[name] = reason
            self.writer.record_step(name, "failed", time.perf_counter() - t0, reason,
                                    traceback=traceback.format_exc(limit=8))
            log.error("analyze: step %s failed: %s", name, reason, exc_info=log.isEnabledFor(logging.DEBUG))
            self._unfitted(model, f"step {name} failed: {reason}")
            return None
        lacked = self.lacked.get(name)  # an ok step that ran on partial telemetry says what it lacked
        self.writer.record_step(name, "ok", time.perf_counter() - t0, **({"lacked": lacked} if lacked else {}))
        return out

    def _unfitted(self, model: str | None, reason: str) -> None:
        if model is not None and model not in self.writer.manifest["models"]:
            self.skip(model, reason)

    def save(self, name: str, estimator: Any, **extra: Any) -> None:
        skipped = getattr(estimator, "skipped_", None)
        if skipped:
            extra["partial"] = {str(k if not isinstance(k, tuple) else "/".join(map(str, k))): str(v)
                                for k, v in dict(skipped).items()}
        self.writer.save_model(name, estimator, window=self.window, **extra)
        self.models[name] = estimator
        self.fitted.append(name)

    def skip(self, name: str, reason: str, model_class: type | str | None = None) -> None:
        cls = model_class if isinstance(model_class, str) or model_class is None else \
            f"{model_class.__module__}.{model_class.__qualname__}"
        self.writer.skip_model(name, reason, model_class=cls)
        self.skipped[name] = reason

    def fit(self, name: str, make: Callable[[], Any], X: Any, model_class: type | str | None = None) -> Any:
        """Fit one model; InsufficientData becomes a recorded skip, the run goes on."""
        try:
            est = make().fit(X)
        except InsufficientData as e:
            self.skip(name, str(e), model_class)
            return None
        self.save(name, est)
        return est


def _import(module: str, *names: str):
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise Skip(f"{module} is not available ({e})") from None
    missing = [n for n in names if not hasattr(mod, n)]
    if missing:
        raise Skip(f"{module} has no {', '.join(missing)}")
    if not names:
        return mod
    return [getattr(mod, n) for n in names] if len(names) > 1 else getattr(mod, names[0])


# -- the steps ---------------------------------------------------------------------------------------------------

def _features(run: _Run, reader, every: str) -> None:
    job_table = _import("analyzer.features", "job_table")
    jobs = job_table(reader, run.window[0], run.window[1], every=every)
    run.data["job_table"] = jobs
    run.lacked["features"] = list(jobs.attrs.get("lacked", []))


def _workloads(run: _Run) -> None:
    jobs = run.need("job_table", "features")
    if len(jobs) == 0:
        raise Skip("no jobs in the window")
    WorkloadIdentifier = _import("analyzer.workloads", "WorkloadIdentifier")
    ident = WorkloadIdentifier().fit(jobs)
    jobs = jobs.copy()
    jobs["workload"] = list(ident.labels_)
    run.data["job_table"] = jobs
    run.save("workloads", ident)


def _efficiency(run: _Run) -> None:
    jobs = run.need("job_table", "features")
    if len(jobs) == 0:
        raise Skip("no jobs in the window")
    eff = _import("analyzer.efficiency")

    for fname in ("job_efficiency", "efficiency", "efficiency_table"):
        fn = getattr(eff, fname, None)
        if callable(fn):
            run.data["efficiency"] = fn(jobs)
            break
    else:
        raise Skip("analyzer.efficiency has no job_efficiency()/efficiency() function")
    summarize = getattr(eff, "workload_efficiency", None)
    if callable(summarize):
        run.data["workload_efficiency"] = summarize(run.data["efficiency"])


def _bottlenecks(run: _Run) -> None:
    jobs = run.need("job_table", "features")
    if len(jobs) == 0:
        raise Skip("no jobs in the window")
    BottleneckClassifier = _import("analyzer.bottleneck", "BottleneckClassifier")
    # No labelled jobs in production telemetry: the rules, not a forest trained on the simulator's truth.
    clf = BottleneckClassifier(method="rules").fit(jobs)
    jobs = jobs.copy()
    jobs["bottleneck"] = list(clf.predict(jobs))
    run.data["job_table"] = jobs
    run.save("bottleneck", clf)


def _observations(run: _Run) -> None:
    jobs = run.need("job_table", "features")
    observations = _import("analyzer.models.observations", "observations")
    run.data["observations"] = observations(jobs)


def _throughput(run: _Run) -> None:
    obs = run.need("observations", "observations")
    ThroughputMatrix = _import("analyzer.models.throughput", "ThroughputMatrix")
    run.fit("throughput", ThroughputMatrix, obs, ThroughputMatrix)


def _scaling(run: _Run) -> None:
    obs = run.need("observations", "observations")
    ScalingModel, fit_per_workload = _import("analyzer.models.scaling", "ScalingModel", "fit_per_workload")
    with run.fits():
        models, skipped = fit_per_workload(obs, n_jobs=run.n_jobs)  # one fit per (workload, accelerator), joblib
    if not models and not skipped:
        run.skip("scaling", "no observations with a workload, an accelerator and a throughput", ScalingModel)
        return
    for key in sorted(set(models) | set(skipped)):
        name = f"scaling[{'/'.join(map(str, key))}]"
        if key in models:
            run.save(name, models[key], workload=key[0], accelerator=key[1] if len(key) > 1 else None)
        else:
            run.skip(name, skipped[key], ScalingModel)


def _power(run: _Run) -> None:
    obs = run.need("observations", "observations")
    PowerCapModel = _import("analyzer.models.power", "PowerCapModel")
    run.fit("power", PowerCapModel, obs, PowerCapModel)


def _forecast(run: _Run, reader) -> None:
    demand_series = _import("analyzer.forecast.demand", "demand_series")
    CapacityForecaster = _import("analyzer.forecast", "CapacityForecaster")
    demand = demand_series(reader, run.window[0], run.window[1], every=DEMAND_EVERY)
    run.data["demand"] = demand
    run.fit("forecast", CapacityForecaster, demand, CapacityForecaster)


def _recommend(run: _Run, reader, settings) -> None:
    jobs = run.need("job_table", "features")
    run_recommend, Context, hosts_from_store = (
        _import("analyzer.recommend", "run"),
        *_import("analyzer.recommend.context", "Context", "hosts_from_store"))
    # "scaling[squad/bert/a100-80gb]": workload names may hold "/", accelerator keys never do
    scaling = {tuple(m[len("scaling["):-1].rsplit("/", 1)): est for m, est in run.models.items()
               if m.startswith("scaling[")}
    # Gains are per week of data: a 7-day window over 3 days of store counts 3 days, not 7.
    firsts = [b[0] for m in _BOUND_MEASUREMENTS if m in set(reader.measurements())
              for b in [reader.time_bounds(m)] if b is not None]
    covered = (max(run.window[0], min(firsts)) if firsts else run.window[0], run.window[1])
    ctx = Context(jobs=jobs, window=covered, hosts=hosts_from_store(reader, *run.window),
                  throughput=run.models.get("throughput"), power=run.models.get("power"), scaling=scaling,
                  unfitted=dict(run.skipped), settings=settings)
    recs, skipped = run_recommend(ctx)
    run.writer.save_table("recommendations", recs)
    run.writer.save_table("recommendations_skipped", skipped)
    run.writer.manifest["recommend"] = ctx.summary


def _save_tables(run: _Run) -> None:
    for key in ("job_table", "efficiency", "workload_efficiency", "observations", "demand"):
        frame = run.data.get(key)
        if frame is not None and hasattr(frame, "to_parquet"):
            run.writer.save_table(key, frame)


def _not_enough(store_url: str, window, jobs: int, run: _Run, state: StateDir) -> str:
    why = next(iter(run.failed.items()), None)
    reason = f"step {why[0]} failed: {why[1]}" if why else f"{jobs} jobs, no model could be fitted"
    latest = state.latest_id()
    kept = f"latest still names run {latest}" if latest else "no run was saved"
    return (f"not enough data in {safe_store_url(store_url)} from {window[0]} to {window[1]} ({reason}); "
            f"{kept}")


def _check_something_to_analyze(reader) -> None:
    """A store holding none of what the analysis reads is refused in one line (QueryError: exit 1) that says
    what was looked for and what was found, instead of a run that fits nothing."""
    from agents.query import QueryError

    check = getattr(reader, "check_mapped", None)  # another tool's telemetry: is anything we map there?
    if check is not None:
        check()
    present = set(reader.measurements())
    if present & set(_BOUND_MEASUREMENTS):
        return
    from agents.query.telegraf import telegraf_measurements

    found = sorted(present)
    shown = ", ".join(found[:8]) + (f" and {len(found) - 8} more" if len(found) > 8 else "")
    raise QueryError(f"no measurement the analysis reads: looked for {', '.join(_BOUND_MEASUREMENTS)} (fleetwise's "
                     f"schema) or Telegraf's {', '.join(sorted(telegraf_measurements()))}; "
                     f"found {shown or 'no measurements at all'}")


def analyze(store_url: str, since: str | dt.timedelta = DEFAULT_SINCE, until=None,
            state_dir: str | Path = DEFAULT_STATE_DIR, n_jobs: int = -1, every: str = DEFAULT_EVERY,
            keep: int = DEFAULT_KEEP, now: dt.datetime | None = None, recommend=None,
            settings=None, engine=None) -> AnalyzeResult:
    """Fit every model on [until - since, until) of the store and save them as a new run in state_dir, with
    the recommendations (recommend: agents.config_recommend.RecommendSettings; None = the defaults). The store
    is read with `settings` ([store]: CA file, query timeout; None = the defaults). engine: None runs
    everything here; an analyzer.dask_engine.DaskEngine runs the store's aggregates as one task per
    measurement and day and the per-workload fits on its cluster (embedded stores only)."""
    from agents.config_recommend import RecommendSettings
    from agents.query import open_reader
    from agents.query.base import parse_every

    t0 = time.perf_counter()
    parse_every(every)  # a bad bucket width is the caller's mistake: refuse it before a run is started
    if until is not None:
        _until(until)  # so is a bad --until, whatever the store holds
    state = StateDir(state_dir, keep=keep)
    state.prepare()  # a bad --state is said before the store is read, and named as the state directory
    if engine is not None:
        from analyzer.dask_engine import check_store

        check_store(store_url)
    with open_reader(store_url, settings) as local:
        reader = local if engine is None else engine.reader(local)
        _check_something_to_analyze(reader)
        window = resolve_window(reader, since, until, now=now, every=every)
        writer = state.new_run(store=store_url, window=window, since=str(since), every=every, n_jobs=n_jobs,
                               engine="local" if engine is None else "dask")
        run = _Run(writer, window, n_jobs, fits=contextlib.nullcontext if engine is None else engine.fits)
        try:
            run.step("features", lambda: _features(run, reader, every))
            run.step("workloads", lambda: _workloads(run), model="workloads")
            run.step("efficiency", lambda: _efficiency(run))
            run.step("bottleneck", lambda: _bottlenecks(run), model="bottleneck")
            run.step("observations", lambda: _observations(run))
            run.step("throughput", lambda: _throughput(run), model="throughput")
            run.step("scaling", lambda: _scaling(run), model="scaling")
            run.step("power", lambda: _power(run), model="power")
            run.step("forecast", lambda: _forecast(run, reader), model="forecast")
            run.step("tables", lambda: _save_tables(run))
            run.step("recommend", lambda: _recommend(run, reader, recommend or RecommendSettings()))
            jobs = run.data.get("job_table")
            n_jobs_seen = 0 if jobs is None else len(jobs)
            n_workloads = 0 if jobs is None or "workload" not in getattr(jobs, "columns", ()) else \
                int(jobs["workload"].astype(str).replace("", None).dropna().nunique())
            eff = run.data.get("efficiency")
            if eff is not None and "gpu_hours_held" in eff and eff["gpu_hours_held"].notna().any():
                writer.manifest["summary_gpu_hours"] = {"held": float(eff["gpu_hours_held"].sum()),
                                                        "idle": float(eff["gpu_hours_idle"].sum())}
            writer.manifest["summary"] = {"jobs": n_jobs_seen, "workloads": n_workloads,
                                          "fitted": run.fitted, "skipped": run.skipped, "failed": run.failed,
                                          "seconds": round(time.perf_counter() - t0, 3)}
            if not run.fitted:
                raise NotEnoughData(_not_enough(store_url, window, n_jobs_seen, run, state))
            saved = writer.commit()
        except BaseException:
            writer.abandon()
            raise
    return AnalyzeResult(saved, time.perf_counter() - t0, window, n_jobs_seen, n_workloads, run.fitted,
                         run.skipped, run.failed)
