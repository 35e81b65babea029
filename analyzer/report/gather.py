"""Everything a weekly report shows, gathered once: the telemetry (agents.query), the analyze run that covers
the week (analyzer.state), the alert history. Figures, HTML, CSV and PDF are all made from this."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from analyzer.report.alerts import Alerts, week_alerts
from analyzer.report.outlook import Forecast, Recommendations, forecast, recommendations
from analyzer.report.runs import ChosenRun, choose_run
from analyzer.report.week import IsoWeek

DEFAULT_TREND_WEEKS = 4
STEPS = 5  # progress: telemetry of the week, the trend, the run, forecast and recommendations, alerts


@dataclass
class ReportData:
    week: IsoWeek
    fleet_name: str
    store: str | None
    generated_at: dt.datetime
    run: ChosenRun
    hourly: Any = None  # [time, pool, resource, value] in the week
    utilization: Any = None  # per pool and resource: mean, p95, peak, change against last week
    trend: Any = None  # [week, pool, resource, mean, days]
    jobs: Any = None  # per GPU job: GPU-hours held, used, idle in the week
    gpu_hours: Any = None  # per pool
    workloads: Any = None  # the most under-used
    users: Any = None
    forecast: Forecast = field(default_factory=Forecast)
    recommendations: Recommendations = field(default_factory=Recommendations)
    alerts: Alerts = field(default_factory=Alerts)
    notes: dict[str, list[str]] = field(default_factory=dict)
    data_bounds: tuple[Any, Any] | None = None  # first and last point of the store, for an empty week

    @property
    def empty(self) -> bool:
        """No telemetry in the week and no job of the run in it: a report that says so, without charts."""
        no_telemetry = self.hourly is None or len(self.hourly) == 0
        no_jobs = self.jobs is None or len(self.jobs) == 0
        return no_telemetry and no_jobs

    def tables(self) -> dict[str, Any]:
        """Every table of the report by name (each is also written as CSV)."""
        t = {"utilization": self.utilization, "utilization_trend": self.trend, "gpu_hours": self.gpu_hours,
             "underused_workloads": self.workloads, "underused_users": self.users,
             "forecast": self.forecast.table, "recommendation_totals": self.recommendations.totals,
             "recommendations_by_kind": self.recommendations.by_kind,
             "recommendations": self.recommendations.all, "alerts": self.alerts.table,
             "alerts_by_rule": self.alerts.by_rule}
        return {k: v for k, v in t.items() if v is not None and len(v.columns)}


def _note(data: ReportData, section: str, text: str) -> None:
    data.notes.setdefault(section, []).append(text)


def gather(week: IsoWeek, *, reader=None, store: str | None = None, state_dir=None, alerts_state=None,
           fleet_name: str = "fleet", trend_weeks: int = DEFAULT_TREND_WEEKS,
           progress: Callable[[int, int], None] | None = None, now: dt.datetime | None = None) -> ReportData:
    """reader: an open agents.query Reader over `store` (None: no telemetry sections)."""
    from analyzer.report import gpu_hours as gh
    from analyzer.report import utilization as ut

    tick = progress or (lambda done, total: None)
    start, end = week.start, week.end
    chosen = choose_run(state_dir, start, end) if state_dir is not None else ChosenRun(None, reason="no --state")
    data = ReportData(week, fleet_name, store, now or dt.datetime.now(dt.UTC), chosen)
    if reader is not None:
        first = week.shifted(-trend_weeks).start
        pools = ut.host_pools(reader, first, end)  # once for the week and the trend
        data.hourly = ut.pool_series(reader, start, end, every="1h", pools=pools)
        data.utilization = ut.week_stats(data.hourly)
        tick(1, STEPS)
        daily = ut.pool_series(reader, first, end, every="1d", pools=pools)
        data.trend = ut.weekly_means(daily)
        data.utilization = _with_change(data.utilization, data.trend, week)
        present = set(reader.measurements())
        bounds = [b for m in ("gpu", "cpu", "job") if m in present for b in [reader.time_bounds(m)] if b is not None]
        data.data_bounds = (min(b[0] for b in bounds), max(b[1] for b in bounds)) if bounds else None
    else:
        _note(data, "utilization", "no store given: utilization is not shown")
    tick(2, STEPS)
    available = None
    if chosen.run is not None:
        run = chosen.run
        if not chosen.exact:
            _note(data, "run", f"analyze run {run.run_id} covers {chosen.covered:.0%} of the week "
                               f"({chosen.start:%Y-%m-%d %H:%M} to {chosen.end:%Y-%m-%d %H:%M} UTC): job figures are "
                               "for that part of the week")
        try:
            data.jobs = gh.job_hours(run, start, end)
        except KeyError as e:
            _note(data, "gpu_hours", f"run {run.run_id} has no job table: {e.args[0] if e.args else e}")
        if "demand" in run.manifest.get("tables", {}):
            d = run.table("demand")
            d = d[(d["time"] >= start) & (d["time"] < end)]
            available = gh.available_gpu_hours(d)
        if data.jobs is not None:
            data.gpu_hours = gh.by_pool(data.jobs, available)
            data.workloads = gh.underused(data.jobs, "workload")
            data.users = gh.underused(data.jobs, "user")
        tick(3, STEPS)
        data.forecast = forecast(run, start, end)
        data.recommendations = recommendations(run)
    else:
        _note(data, "run", chosen.reason)
    tick(4, STEPS)
    data.alerts = week_alerts(alerts_state, start, end)
    tick(5, STEPS)
    return data


def _with_change(stats, trend, week: IsoWeek):
    """Adds the mean of the week before and the change in percentage points."""
    prev = str(week.shifted(-1))
    last = trend[trend["week"] == prev][["pool", "resource", "mean"]].rename(columns={"mean": "previous_week_mean"})
    out = stats.merge(last, on=["pool", "resource"], how="left")
    out["change_points"] = (out["mean"] - out["previous_week_mean"]) * 100
    return out
