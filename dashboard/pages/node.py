"""/node: every metric of one node (an overview of panels, any other metric one pick away), its GPUs and
ports, and the jobs that ran on it as a timeline."""

from __future__ import annotations

import dash_bootstrap_components as dbc
import pandas as pd
from dash import Input, Output, State, dcc, html

from dashboard import controls, figures, timerange, urlstate
from dashboard.context import cached
from dashboard.data import node as data

PATH = "/node"
NAME = "Node"
P = "node"
DEFAULTS = {**controls.DEFAULTS, "node": None, "metric": None}
FORMATS = {"ratio": ".1%", "bytes": ".3s", "bytes/s": ".3s", "W": ".0f", "°C": ".0f"}


def read(query: dict) -> dict[str, str | None]:
    state = controls.read(query)
    state["node"] = urlstate.value(query.get("node"))  # checked against the store's hosts in update()
    state["metric"] = urlstate.value(query.get("metric"))
    if state["metric"] is not None and data.metric_panel(state["metric"]) is None:
        state["metric"] = None
    return state


def layout(**query) -> html.Div:
    s = read(query)
    return html.Div([
        controls.page_header("Node", "Every metric of one node, its GPUs and ports, and the jobs that ran on it."),
        controls.time_bar(P, s),
        dbc.Row([
            controls.picker(f"{P}-node", "Node", s["node"], "pick a node", 4),
            controls.picker(f"{P}-metric", "Another metric", s["metric"], "measurement.field", 5),
        ], className="g-3 mb-2"),
        html.Div(id=f"{P}-status"),
        dcc.Loading(html.Div(id=f"{P}-body")),
        *urlstate.components(P),
    ])


def _series_figure(frame: pd.DataFrame, title: str, unit: str) -> dict:
    named = {"yaxis": {"title": {"text": unit}}} if unit and unit != "ratio" else {}
    return figures.lines(frame, "time", "value", "series", title, yformat=FORMATS.get(unit, ""), height=260,
                         **named)


def _table(frame: pd.DataFrame, id_: str) -> dbc.Table:
    return dbc.Table.from_dataframe(frame, size="sm", striped=True, responsive=True, id=id_)


def timeline_figure(jobs: pd.DataFrame, start, end) -> dict:
    """One bar per job from its first to its last sample on the node."""
    if jobs.empty:
        return figures.empty("no jobs ran on this node in this window", height=160)
    labels = (jobs["job"].astype(str) + " (" + jobs["user"].astype(str) + ")").tolist()
    ms = ((jobs["end"] - jobs["start"]).dt.total_seconds().clip(lower=60) * 1000.0).to_numpy()
    info = list(zip(jobs["scheduler"].astype(str), jobs["source"].astype(str),
                    jobs["end"].dt.strftime("%Y-%m-%d %H:%M"), strict=True))
    bar = {"type": "bar", "orientation": "h", "base": figures.values(jobs["start"]), "x": ms, "y": labels,
           "marker": {"color": figures.color(0)}, "customdata": info,
           "hovertemplate": "%{y}<br>%{base|%Y-%m-%d %H:%M} to %{customdata[2]}<br>%{customdata[0]}, from "
                            "%{customdata[1]}<extra></extra>"}
    return figures.figure([bar], "Jobs on this node", height=max(200, min(22 * len(jobs) + 100, 1600)),
                          xaxis={"type": "date", "range": [f"{start:%Y-%m-%dT%H:%M:%SZ}", f"{end:%Y-%m-%dT%H:%M:%SZ}"]},
                          yaxis={"type": "category", "autorange": "reversed"})


def update(reader, state: dict, width: int | None = None) -> tuple:
    """(status, body, node options, metric options, search) for a checked state."""
    nodes = cached(reader, ("nodes",), lambda: data.known_nodes(reader), controls.ttl(state))
    present = set(reader.measurements())
    node_options = [{"label": n, "value": n} for n in nodes]
    metric_options = [{"label": m, "value": m} for m in data.metric_options(present)]
    node = state["node"] if state["node"] in nodes else None
    search = urlstate.search({**state, "node": node}, DEFAULTS)
    if node is None:
        text = ("Pick a node, or click a node in the fleet heatmap." if not state["node"] else
                f"No node named {state['node']!r} in the store; pick one of the {len(nodes)} it has.")
        return controls.message(text), [], node_options, metric_options, search
    ttl = controls.ttl(state)
    w = timerange.resolve(reader, state["range"], state["end"], width, ttl)
    panels = list(data.PANELS)
    extra = data.metric_panel(state["metric"]) if state["metric"] else None
    if extra is not None:
        panels.insert(0, extra)
    d = cached(reader, ("node", node, extra, w.start, w.end, w.every),
               lambda: data.node_data(reader, node, panels, w.start, w.end, w.every), ttl)
    graphs = []
    for panel, frame in zip(panels, d["panels"], strict=True):
        if panel.measurement not in present:
            continue
        if frame.empty and panel is not extra:
            continue  # a node without GPUs or InfiniBand shows no empty GPU or InfiniBand panels
        graphs.append(dbc.Col(dcc.Graph(figure=_series_figure(frame, panel.title, panel.unit),
                                        config={"displaylogo": False}), lg=6))
    jobs, gpus, ports = d["jobs"], d["gpus"], d["ports"]
    body = [
        html.Div(f"{node}: {w.start:%Y-%m-%d %H:%M} to {w.end:%Y-%m-%d %H:%M} UTC, {w.every} buckets",
                 className="small text-body-secondary mb-2"),
        dcc.Graph(id=f"{P}-timeline", figure=timeline_figure(jobs, w.start, w.end), config={"displaylogo": False}),
        dbc.Row(graphs, className="g-2"),
        dbc.Row([dbc.Col([html.H3("GPUs", className="h6 mt-3"),
                          _table(gpus.round(3), f"{P}-gpus") if len(gpus) else html.P("no GPUs")], lg=6),
                 dbc.Col([html.H3("Ports", className="h6 mt-3"),
                          _table(ports.round(1), f"{P}-ports") if len(ports) else html.P("no ports")], lg=6)]),
    ]
    return None, body, node_options, metric_options, search


def register(app, ctx) -> None:
    @app.callback(
        Output(f"{P}-status", "children"), Output(f"{P}-body", "children"), Output(f"{P}-node", "options"),
        Output(f"{P}-metric", "options"), Output(f"{P}-search", "data"),
        Input(f"{P}-range", "value"), Input(f"{P}-end", "value"), Input(f"{P}-refresh", "value"),
        Input(f"{P}-node", "value"), Input(f"{P}-metric", "value"), Input(f"{P}-tick", "n_intervals"),
        State("viewport", "data"))
    def _update(range_key, end, refresh, node, metric, _tick, viewport):
        state = read({"range": range_key, "end": controls.checked_end(end), "refresh": refresh, "node": node,
                      "metric": metric})
        return update(ctx.reader(), state, controls.viewport_width(viewport))

    controls.register(app, P)
    urlstate.register(app, P)
