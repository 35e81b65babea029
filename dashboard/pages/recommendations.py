"""/recommendations: the recommender's actions from the latest analyze run, with gain, risk and evidence,
gains per week summed per kind, and CSV export."""

from __future__ import annotations

import dash_ag_grid as dag
import dash_bootstrap_components as dbc
import pandas as pd
from dash import Input, Output, dcc, html

from dashboard import controls, figures, urlstate
from dashboard.data import runs
from dashboard.pages.workloads import column_defs, grid_rows

PATH = "/recommendations"
NAME = "Recommendations"
P = "recs"
DEFAULTS = {"kind": None}
SHOWN = ("kind", "target_type", "target", "action", "gpu_hours_week", "core_hours_week", "memory_gib_hours_week",
         "kwh_week", "money_week", "currency", "risk", "exceed_probability", "evidence", "method", "owner",
         "accelerator", "id")


def read(query: dict) -> dict[str, str | None]:
    return {"kind": urlstate.value(query.get("kind"))}  # checked against the run's kinds


def layout(**query) -> html.Div:
    s = read(query)
    return html.Div([
        controls.page_header("Recommendations", "What the recommender proposes, largest gain first, with the risk "
                                                "and the evidence behind each action."),
        html.Div(id=f"{P}-status"),
        dbc.Row([controls.picker(f"{P}-kind", "Kind", s["kind"], "every kind", 4)], className="mb-2"),
        dbc.Row([dbc.Col(dcc.Graph(id=f"{P}-totals-figure", config={"displaylogo": False}), lg=6),
                 dbc.Col(html.Div(id=f"{P}-totals"), lg=6)]),
        controls.export_button(P, "my-2"),
        dag.AgGrid(id=f"{P}-grid", rowData=[], columnDefs=[], csvExportParams={"fileName": "recommendations.csv"},
                   defaultColDef={"sortable": True, "filter": True, "resizable": True, "wrapText": False},
                   dashGridOptions={"pagination": True, "paginationPageSize": 50, "tooltipShowDelay": 300},
                   style={"height": "560px"}),
        *urlstate.components(P),
    ])


def totals_figure(totals: pd.DataFrame) -> dict:
    per = totals[totals["kind"] != "all"] if len(totals) else totals
    if per.empty:
        return figures.empty("no recommendations")
    bars = [{"type": "bar", "x": per["kind"].tolist(), "y": per["gpu_hours_week"].to_numpy(),
             "name": "GPU-hours / week", "marker": {"color": figures.color(0)}},
            {"type": "bar", "x": per["kind"].tolist(), "y": per["kwh_week"].to_numpy(), "name": "kWh / week",
             "marker": {"color": figures.color(1)}}]
    return figures.figure(bars, "Gains per week by kind", height=320, barmode="group")


def totals_table(totals: pd.DataFrame) -> dbc.Table:
    shown = totals.copy()
    for c in shown.columns:
        if shown[c].dtype.kind == "f":
            shown[c] = shown[c].map(lambda v: f"{v:,.1f}")
    shown.columns = [c.replace("_week", " /week").replace("_", " ") for c in shown.columns]
    return dbc.Table.from_dataframe(shown, size="sm", striped=True, id=f"{P}-totals-table")


def update(run, state: dict) -> tuple:
    """(status, totals figure, totals table, kind options, grid rows, grid columns, search)."""
    if run is None:
        return (controls.message(runs.why_missing(None, ""), "warning"), figures.empty("no analyze run"), None,
                [], [], [], "")
    kinds = runs.recommendation_kinds(run)
    kind = state["kind"] if state["kind"] in kinds else None
    recs = runs.recommendations(run, kind)
    totals = runs.weekly_totals(recs)
    step = run.manifest.get("steps", {}).get("recommend", {})
    status = None
    if recs.empty:
        status = controls.message(f"No recommendations in run {run.run_id}"
                                  + (f": {step['reason']}" if step.get("reason") else "."))
    shown = recs[[c for c in SHOWN if c in recs]] if len(recs) else recs
    return (status, totals_figure(totals), totals_table(totals) if len(totals) else None,
            [{"label": k, "value": k} for k in kinds], grid_rows(shown), column_defs(shown),
            urlstate.search({"kind": kind}, DEFAULTS))


def register(app, ctx) -> None:
    @app.callback(Output(f"{P}-status", "children"), Output(f"{P}-totals-figure", "figure"),
                  Output(f"{P}-totals", "children"), Output(f"{P}-kind", "options"), Output(f"{P}-grid", "rowData"),
                  Output(f"{P}-grid", "columnDefs"), Output(f"{P}-search", "data"), Input(f"{P}-kind", "value"))
    def _update(kind):
        return update(ctx.run(), read({"kind": kind}))

    controls.register_export(app, P)

    urlstate.register(app, P)
