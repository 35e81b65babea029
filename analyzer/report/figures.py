"""The report's charts (plotly), each from one of ReportData's tables; a chart without data is not made, so an
empty week or a missing model never gives an empty chart."""

from __future__ import annotations

from typing import Any

from analyzer.report.gather import ReportData

RESOURCE_NAMES = {"gpu": "GPU busy", "gpu_memory": "GPU memory used", "gpu_allocated": "GPUs allocated",
                  "cpu": "CPU busy", "memory": "memory used"}
LAYOUT = {"template": "plotly_white", "height": 360, "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
          "legend": {"orientation": "h", "y": -0.2}}


def figures(data: ReportData) -> dict[str, Any]:
    """name -> plotly Figure, in the order the report shows them."""
    makers = {"utilization_hourly": _hourly, "utilization_trend": _trend, "gpu_hours": _gpu_hours,
              "underused_workloads": _underused, "forecast": _forecast, "recommendations": _recommendations}
    out = {}
    if data.empty:
        return out
    for name, make in makers.items():
        fig = make(data)
        if fig is not None:
            out[name] = fig
    return out


def _hourly(data: ReportData):
    import plotly.graph_objects as go

    h = data.hourly
    if h is None or h.empty:
        return None
    h = h[h["resource"].isin(["gpu", "cpu"])]
    if h.empty:
        return None
    fig = go.Figure()
    for (pool, res), g in h.groupby(["pool", "resource"], sort=True):
        fig.add_trace(go.Scatter(x=g["time"], y=g["value"] * 100, mode="lines",
                                 name=f"{pool} {RESOURCE_NAMES[res]}"))
    fig.update_layout(title=f"Hourly utilization per pool, {data.week}", yaxis_title="% busy", **LAYOUT)
    return fig


def _trend(data: ReportData):
    import plotly.graph_objects as go

    t = data.trend
    if t is None or t.empty or t["week"].nunique() < 2:
        return None  # one week is no trend
    t = t[t["resource"].isin(["gpu", "gpu_allocated", "cpu"])]
    fig = go.Figure()
    for (pool, res), g in t.groupby(["pool", "resource"], sort=True):
        fig.add_trace(go.Scatter(x=g["week"], y=g["mean"] * 100, mode="lines+markers",
                                 name=f"{pool} {RESOURCE_NAMES[res]}"))
    fig.update_layout(title="Weekly mean utilization", yaxis_title="%", xaxis_type="category", **LAYOUT)
    return fig


def _gpu_hours(data: ReportData):
    import plotly.graph_objects as go

    g = data.gpu_hours
    if g is None or g.empty:
        return None
    g = g[g["pool"] != "all"]
    if g.empty or not (g["allocated_gpu_hours"] > 0).any():
        return None
    fig = go.Figure()
    if g["available_gpu_hours"].notna().any():
        fig.add_trace(go.Bar(x=g["pool"], y=g["available_gpu_hours"], name="available"))
    fig.add_trace(go.Bar(x=g["pool"], y=g["allocated_gpu_hours"], name="allocated"))
    fig.add_trace(go.Bar(x=g["pool"], y=g["used_gpu_hours"], name="used"))
    fig.update_layout(title="GPU-hours per pool", yaxis_title="GPU-hours", barmode="group", **LAYOUT)
    return fig


def _underused(data: ReportData):
    import plotly.graph_objects as go

    w = data.workloads
    if w is None or w.empty or not (w["unused_gpu_hours"] > 0).any():
        return None
    w = w[w["unused_gpu_hours"] > 0].iloc[::-1]
    fig = go.Figure(go.Bar(x=w["unused_gpu_hours"], y=w["workload"], orientation="h", name="unused"))
    fig.update_layout(title="Workloads by GPU-hours held but unused", xaxis_title="GPU-hours", **LAYOUT)
    return fig


def _forecast(data: ReportData):
    """Demand and forecast as a share of each pool's capacity, so GPU pools (a few devices) and CPU pools (hundreds
    of cores) share one axis, and saturation is the 100% line for all of them."""
    import plotly.graph_objects as go

    f = data.forecast
    if f.table is None or f.table.empty or f.history is None:
        return None
    from plotly.colors import qualitative

    fig = go.Figure()
    for i, r in enumerate(f.table.itertuples()):
        if not r.capacity or r.capacity != r.capacity:
            continue
        h = f.history[f.history["pool"] == r.pool]
        p = f.prediction[f.prediction["pool"] == r.pool]
        color = qualitative.Plotly[i % len(qualitative.Plotly)]  # a pool's history and forecast in one colour
        fig.add_trace(go.Scatter(x=h["time"], y=h["demand"] / r.capacity * 100, mode="lines",
                                 line={"color": color}, name=f"{r.pool} demand"))
        fig.add_trace(go.Scatter(x=p["time"], y=p["forecast"] / r.capacity * 100, mode="lines",
                                 line={"dash": "dash", "color": color}, name=f"{r.pool} forecast"))
    if not fig.data:
        return None
    fig.add_hline(y=100, line_dash="dot", line_color="#c0392b", annotation_text="capacity")
    fig.update_layout(title=f"Demand and forecast ({f.horizon} ahead), % of each pool's capacity",
                      yaxis_title="% of capacity", **LAYOUT)
    return fig


def _recommendations(data: ReportData):
    import plotly.graph_objects as go

    k = data.recommendations.by_kind
    if k is None or k.empty:
        return None
    money = k["money_week"] > 0
    y, label = (k["money_week"], f"{data.recommendations.currency} per week") if money.any() else \
        (k["gpu_hours_week"], "GPU-hours per week")
    if not (y > 0).any():
        return None
    fig = go.Figure(go.Bar(x=k["kind"], y=y))
    fig.update_layout(title="Savings of the recommendations by kind", yaxis_title=label, **LAYOUT)
    return fig
