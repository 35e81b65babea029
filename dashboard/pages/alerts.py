"""/alerts: firing and recently resolved alerts (the alerts component's history), or, until that component
is installed, a sentence saying so."""

from __future__ import annotations

import dash_bootstrap_components as dbc
import pandas as pd
from dash import Input, Output, dcc, html

from dashboard import controls, timerange, urlstate
from dashboard.data import alerts as data

PATH = "/alerts"
NAME = "Alerts"
P = "alerts"
DEFAULTS = {**controls.DEFAULTS, "range": "7d"}


def read(query: dict) -> dict[str, str | None]:
    state = controls.read(query)
    if urlstate.value(query.get("range")) is None:
        state["range"] = DEFAULTS["range"]
    return state


def layout(**query) -> html.Div:
    s = read(query)
    return html.Div([
        controls.page_header("Alerts", "Alerts firing now and those resolved in the time range."),
        controls.time_bar(P, s),
        dcc.Loading(html.Div(id=f"{P}-body")),
        *urlstate.components(P),
    ])


def table(hist: pd.DataFrame) -> dbc.Table:
    shown = hist.copy()
    for c in ("starts_at", "ends_at"):
        shown[c] = pd.to_datetime(shown[c], utc=True).dt.strftime("%Y-%m-%d %H:%M").fillna("")
    return dbc.Table.from_dataframe(shown, size="sm", striped=True, hover=True, id=f"{P}-table")


def update(reader, alerts_dir, state: dict) -> tuple:
    """(body, search)."""
    search = urlstate.search(state, DEFAULTS)
    if not data.installed():  # looked for first: without it the store is not read
        return controls.message(data.NOT_INSTALLED, "info"), search
    w = timerange.resolve(reader, state["range"], state["end"])
    hist = data.load(alerts_dir, w.start, w.end)
    if hist.empty:
        return controls.message(f"No alerts fired or resolved from {w.start:%Y-%m-%d %H:%M} to "
                                f"{w.end:%Y-%m-%d %H:%M} UTC.", "success"), search
    firing = int((hist["state"] == "firing").sum())
    return [html.P(f"{firing} firing, {len(hist) - firing} resolved", id=f"{P}-summary"), table(hist)], search


def register(app, ctx) -> None:
    @app.callback(Output(f"{P}-body", "children"), Output(f"{P}-search", "data"),
                  Input(f"{P}-range", "value"), Input(f"{P}-end", "value"), Input(f"{P}-refresh", "value"),
                  Input(f"{P}-tick", "n_intervals"))
    def _update(range_key, end, refresh, _tick):
        state = read({"range": range_key, "end": controls.checked_end(end), "refresh": refresh})
        return update(ctx.reader(), ctx.alerts_dir, state)

    controls.register(app, P)
    urlstate.register(app, P)
