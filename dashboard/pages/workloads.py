"""/workloads: a jobstats-style efficiency table of every job (sortable, filterable, CSV export) and, for one
workload, its bottleneck, scaling curve with its confidence band, throughput across accelerator types with
uncertainty, and power-cap curve. Everything comes from the latest analyze run."""

from __future__ import annotations

import dash_ag_grid as dag
import dash_bootstrap_components as dbc
import pandas as pd
from dash import Input, Output, dcc, html

from dashboard import controls, figures, urlstate
from dashboard.data import runs

PATH = "/workloads"
NAME = "Workloads"
P = "workloads"
DEFAULTS = {"workload": None}
RATIOS = ("gpu_utilization", "gpu_memory_ratio", "cpu_ratio", "memory_ratio", "time_ratio")


def read(query: dict) -> dict[str, str | None]:
    return {"workload": urlstate.value(query.get("workload"))}  # checked against the run's workloads


def layout(**query) -> html.Div:
    s = read(query)
    return html.Div([
        controls.page_header("Workloads", "Efficiency of every job in the latest analyze run, and what the models "
                                          "learned about one workload."),
        html.Div(id=f"{P}-status"),
        dbc.Row([controls.picker(f"{P}-workload", "Workload", s["workload"], "pick a workload", 5)],
                className="mb-2"),
        dcc.Loading(html.Div(id=f"{P}-detail")),
        html.H3("Job efficiency", className="h5 mt-4"),
        controls.export_button(P, "mb-2"),
        dag.AgGrid(id=f"{P}-grid", rowData=[], columnDefs=[], csvExportParams={"fileName": "efficiency.csv"},
                   defaultColDef={"sortable": True, "filter": True, "resizable": True, "floatingFilter": True},
                   dashGridOptions={"pagination": True, "paginationPageSize": 50, "animateRows": False},
                   style={"height": "560px"}),
        *urlstate.components(P),
    ])


def column_defs(frame: pd.DataFrame) -> list[dict]:
    defs = []
    for c in frame.columns:
        d = {"field": c, "headerName": c.replace("_", " ")}
        if pd.api.types.is_numeric_dtype(frame[c]):
            d["filter"] = "agNumberColumnFilter"
            if c in RATIOS:
                d["valueFormatter"] = {"function": "params.value == null ? '' : d3.format('.0%')(params.value)"}
            elif frame[c].dtype.kind == "f":
                d["valueFormatter"] = {"function": "params.value == null ? '' : d3.format(',.2f')(params.value)"}
        if c in ("job", "workload"):
            d["pinned"] = "left"
        defs.append(d)
    return defs


def grid_rows(frame: pd.DataFrame) -> list[dict]:
    """Records a browser can take: NaN becomes null. Built from whole columns (tolist() in C); to_dict() boxed
    each of the 250 k cells of a week's job table in Python."""
    columns = [frame[c].astype(object).where(frame[c].notna(), None).tolist() for c in frame.columns]
    names = [str(c) for c in frame.columns]
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def throughput_figure(row: pd.DataFrame) -> dict:
    if row.empty:
        return figures.empty("no throughput matrix for this workload")
    bar = {"type": "bar", "x": row["accelerator"].tolist(), "y": row["throughput"].to_numpy(),
           "marker": {"color": [figures.color(0) if o else figures.color(7) for o in row["observed"]]},
           "error_y": {"type": "data", "symmetric": False, "array": (row["high"] - row["throughput"]).to_numpy(),
                       "arrayminus": (row["throughput"] - row["low"]).to_numpy()},
           "customdata": row["observed"].map({True: "measured", False: "completed by the model"}).tolist(),
           "hovertemplate": "%{x}: %{y:.3g} per device per second (%{customdata})<extra></extra>"}
    # completed cells' intervals span decades: a log axis keeps the measured bars readable
    return figures.figure([bar], "Throughput across accelerators (grey: never ran there; 95% interval)", height=320,
                          yaxis={"title": {"text": "throughput per device"}, "type": "log"})


def scaling_figure(curves: pd.DataFrame) -> dict:
    if curves.empty:
        return figures.empty("no scaling model for this workload")
    return figures.lines(curves, "devices", "throughput", "accelerator", "Scaling with the device count (confidence "
                         "band)", band_columns=("low", "high"), height=320, mode="lines+markers",
                         xaxis={"title": {"text": "devices"}, "type": "log"}, yaxis={"title": {"text": "throughput"}})


def power_figure(curves: pd.DataFrame) -> dict:
    if curves.empty:
        return figures.empty("no power-cap model for this workload")
    traces = []
    for i, (acc, g) in enumerate(curves.groupby("accelerator")):
        traces.append({"type": "scatter", "mode": "lines", "x": g["cap"].to_numpy(), "y": g["slowdown"].to_numpy(),
                       "name": f"{acc} time", "line": {"color": figures.color(i)}})
        traces.append({"type": "scatter", "mode": "lines", "x": g["cap"].to_numpy(), "y": g["energy"].to_numpy(),
                       "name": f"{acc} energy", "line": {"color": figures.color(i), "dash": "dot"}, "yaxis": "y2"})
    return figures.figure(
        traces, "Power-cap curve", height=320,
        xaxis={"title": {"text": "power limit (fraction of the default)"}, "tickformat": ".0%"},
        yaxis={"title": {"text": "time vs full power"}, "tickformat": ".3f"},
        yaxis2=figures.axis(title={"text": "energy per unit of work (J)"}, tickformat=".3~s", overlaying="y",
                            side="right", showgrid=False))


def detail(run, workload: str | None) -> list:
    if workload is None:
        return [controls.message("Pick a workload for its bottleneck and models.")]
    b = runs.bottleneck(run, workload)
    verdict = ", ".join(f"{r.bottleneck} ({r.jobs} jobs)" for r in b.itertuples()) or "unknown"
    return [
        html.P([html.Strong("Bottleneck: "), verdict], id=f"{P}-bottleneck"),
        dbc.Row([
            dbc.Col(dcc.Graph(id=f"{P}-throughput", figure=throughput_figure(runs.throughput_row(run, workload))),
                    lg=4),
            dbc.Col(dcc.Graph(id=f"{P}-scaling", figure=scaling_figure(runs.scaling_curves(run, workload))), lg=4),
            dbc.Col(dcc.Graph(id=f"{P}-power", figure=power_figure(runs.power_curves(run, workload))), lg=4),
        ]),
    ]


def update(run, state: dict) -> tuple:
    """(status, detail, workload options, grid rows, grid columns, search)."""
    if run is None:
        return (controls.message(runs.why_missing(None, ""), "warning"), [], [], [], [], "")
    names = runs.workloads(run)
    workload = state["workload"] if state["workload"] in names else None
    rows, defs = runs.kept(run, ("workloads-grid",), lambda: _grid(runs.efficiency(run)))
    status = None if state["workload"] in (None, workload) else \
        controls.message(f"No workload named {state['workload']!r} in run {run.run_id}.", "warning")
    return (status, detail(run, workload), [{"label": n, "value": n} for n in names], rows, defs,
            urlstate.search({"workload": workload}, DEFAULTS))


def _grid(eff: pd.DataFrame) -> tuple[list[dict], list[dict]]:
    return grid_rows(eff), column_defs(eff)


def register(app, ctx) -> None:
    @app.callback(Output(f"{P}-status", "children"), Output(f"{P}-detail", "children"),
                  Output(f"{P}-workload", "options"), Output(f"{P}-grid", "rowData"),
                  Output(f"{P}-grid", "columnDefs"), Output(f"{P}-search", "data"),
                  Input(f"{P}-workload", "value"))
    def _update(workload):
        return update(ctx.run(), read({"workload": workload}))

    controls.register_export(app, P)

    urlstate.register(app, P)
