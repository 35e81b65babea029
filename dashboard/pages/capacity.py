"""/capacity: demand per pool with the forecast and its prediction interval, and the date each pool saturates
(the first time the interval's upper bound exceeds the pool's capacity), from the latest analyze run."""

from __future__ import annotations

import dash_bootstrap_components as dbc
import pandas as pd
from dash import Input, Output, dcc, html

from dashboard import controls, figures, urlstate
from dashboard.data import runs

PATH = "/capacity"
NAME = "Capacity"
P = "capacity"
HORIZONS = {"7d": "7 days", "14d": "14 days", "30d": "30 days", "90d": "90 days"}
DEFAULTS = {"pool": None, "horizon": "14d"}


def read(query: dict) -> dict[str, str | None]:
    return {"pool": urlstate.value(query.get("pool")),  # checked against the forecaster's pools
            "horizon": urlstate.choice(query.get("horizon"), HORIZONS, DEFAULTS["horizon"])}


def layout(**query) -> html.Div:
    s = read(query)
    return html.Div([
        controls.page_header("Capacity", "Demand per pool, its forecast with the prediction interval, and when "
                                         "each pool runs out."),
        html.Div(id=f"{P}-status"),
        dbc.Row([
            controls.picker(f"{P}-pool", "Pool", s["pool"], "every pool", 4),
            dbc.Col([dbc.Label("Horizon", html_for=f"{P}-horizon"),
                     dcc.Dropdown(id=f"{P}-horizon", value=s["horizon"], clearable=False,
                                  options=[{"label": v, "value": k} for k, v in HORIZONS.items()])], md=3),
        ], className="g-3 mb-2"),
        html.Div(id=f"{P}-summary"),
        dcc.Loading(html.Div(id=f"{P}-figures")),
        *urlstate.components(P),
    ])


def pool_figure(pool: str, history: pd.DataFrame, forecast: pd.DataFrame, capacity: float) -> dict:
    h = history[history["pool"] == pool] if len(history) else history
    f = forecast[forecast["pool"] == pool]
    traces = []
    if len(f):
        traces.append(figures.band(f["time"], f["lower"], f["upper"], figures.alpha(figures.color(1), 0.2),
                                   "prediction interval") | {"showlegend": True})
        traces.append({"type": "scatter", "mode": "lines", "x": figures.values(f["time"]),
                       "y": f["forecast"].to_numpy(), "name": "forecast", "line": {"color": figures.color(1)}})
    if len(h):
        traces.append({"type": "scatter", "mode": "lines", "x": figures.values(h["time"]),
                       "y": h["demand"].to_numpy(), "name": "demand", "line": {"color": figures.color(0)}})
    shapes = []
    if capacity is not None and capacity == capacity:
        shapes.append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": capacity, "y1": capacity,
                       "line": {"dash": "dash", "color": figures.TEXT}})
    unit = "GPUs" if pool.startswith("gpu:") else "CPUs"
    return figures.figure(traces, f"{pool} (dashed: capacity)" if shapes else pool, height=300, shapes=shapes,
                          yaxis={"title": {"text": f"busy {unit}"}, "rangemode": "tozero"})


def summary_table(summary: pd.DataFrame) -> dbc.Table:
    cols = ["pool", "structure", "capacity", "peak_forecast", "peak_upper", "shortfall_time", "headroom", "cv_wape"]
    shown = summary.reindex(columns=cols).copy()
    shown["shortfall_time"] = pd.to_datetime(shown["shortfall_time"], utc=True).dt.strftime("%Y-%m-%d %H:%M")
    shown["shortfall_time"] = shown["shortfall_time"].fillna("not within the horizon")
    for c in ("capacity", "peak_forecast", "peak_upper", "headroom", "cv_wape"):
        shown[c] = pd.to_numeric(shown[c], errors="coerce").map(lambda v: "" if v != v else f"{v:,.2f}")
    shown.columns = ["pool", "model", "capacity", "peak forecast", "peak upper bound", "saturates at", "headroom",
                     "CV WAPE"]
    return dbc.Table.from_dataframe(shown, size="sm", striped=True, id=f"{P}-table")


def update(run, state: dict) -> tuple:
    """(status, summary, figures, pool options, search)."""
    if run is None:
        return controls.message(runs.why_missing(None, ""), "warning"), None, [], [], ""
    history, forecast, summary = runs.capacity(run, state["horizon"])
    pools = sorted(set(forecast["pool"])) if len(forecast) else []
    pool = state["pool"] if state["pool"] in pools else None
    search = urlstate.search({**state, "pool": pool}, DEFAULTS)
    options = [{"label": p, "value": p} for p in pools]
    if not pools:
        return (controls.message(f"No capacity forecast in run {run.run_id}: {runs.why_missing(run, 'forecast')}",
                                 "warning"), None, [], options, search)
    caps = dict(zip(summary["pool"], summary["capacity"], strict=False)) if len(summary) else {}
    graphs = [dbc.Col(dcc.Graph(figure=pool_figure(p, history, forecast, caps.get(p, float("nan"))),
                                config={"displaylogo": False}), lg=6) for p in ([pool] if pool else pools)]
    shown = summary[summary["pool"] == pool] if pool else summary
    return None, summary_table(shown), dbc.Row(graphs, className="g-2"), options, search


def register(app, ctx) -> None:
    @app.callback(Output(f"{P}-status", "children"), Output(f"{P}-summary", "children"),
                  Output(f"{P}-figures", "children"), Output(f"{P}-pool", "options"), Output(f"{P}-search", "data"),
                  Input(f"{P}-pool", "value"), Input(f"{P}-horizon", "value"))
    def _update(pool, horizon):
        return update(ctx.run(), read({"pool": pool, "horizon": horizon}))

    urlstate.register(app, P)
