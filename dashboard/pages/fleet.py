"""/ and /fleet: utilization per pool and resource, a node x time heatmap, idle/busy/saturated node counts,
and GPU-hours allocated vs used."""

from __future__ import annotations

import dash_bootstrap_components as dbc
import pandas as pd
from dash import Input, Output, State, dcc, html, no_update

from dashboard import controls, figures, timerange, urlstate
from dashboard.context import cached
from dashboard.data import fleet as data

PATH = "/fleet"
NAME = "Fleet"
P = "fleet"
DEFAULTS = {**controls.DEFAULTS, "resource": "gpu", "pool": None}


def read(query: dict) -> dict[str, str | None]:
    state = controls.read(query)
    state["resource"] = urlstate.choice(query.get("resource"), data.RESOURCES, "gpu")
    state["pool"] = urlstate.value(query.get("pool"))  # checked against the store's pools in compute()
    return state


def layout(**query) -> html.Div:
    s = read(query)
    return html.Div([
        controls.page_header("Fleet", "Utilization per pool (accelerator type, CPU architecture), node by node "
                                      "over time, and the GPU-hours jobs held against those they used."),
        controls.time_bar(P, s),
        dbc.Row([
            controls.picker(f"{P}-pool", "Pool", s["pool"], "all pools", 4),
            dbc.Col([dbc.Label("Heatmap resource", html_for=f"{P}-resource"),
                     dbc.RadioItems(id=f"{P}-resource", value=s["resource"], inline=True,
                                    options=[{"label": v.split(" (")[0], "value": k}
                                             for k, v in data.RESOURCES.items()])], md=8),
        ], className="g-3 mb-2"),
        html.Div(id=f"{P}-window", className="small text-body-secondary mb-2"),
        dcc.Loading(html.Div(id=f"{P}-counts", className="mb-3")),
        dcc.Graph(id=f"{P}-heatmap", config={"displaylogo": False}),
        dbc.Row([dbc.Col(dcc.Graph(id=f"{P}-pools", config={"displaylogo": False}), lg=8),
                 dbc.Col(dcc.Graph(id=f"{P}-gpu-hours", config={"displaylogo": False}), lg=4)]),
        dcc.Location(id=f"{P}-nav", refresh="callback-nav"),
        *urlstate.components(P),
    ])


def compute(reader, state: dict, width: int | None = None) -> dict:
    """Every number the page shows, for a checked state (see read()). What the store answers for a window is
    kept for the auto-refresh interval (dashboard.context.cached): another pool for the same window asks the
    store nothing, another heatmap resource asks for that resource alone."""
    ttl = controls.ttl(state)
    w = timerange.resolve(reader, state["range"], state["end"], width, ttl)
    line = timerange.line_every(w, width)
    key = ("fleet", w.start, w.end, w.every, line)
    resource = state["resource"]
    d = cached(reader, key, lambda: _window_data(reader, w, line, resource), ttl)
    heat = cached(reader, (*key, "heat", resource),
                  lambda: d["heat"] if d["heat_resource"] == resource else
                  data.resource_frame(reader, resource, w.start, w.end, w.every), ttl)
    pools = d["pools"]
    pool = state["pool"] if state["pool"] in set(pools["pool"]) else None
    hosts = set(pools.loc[pools["pool"] == pool, "host"]) if pool else None
    states = d["states"]
    if hosts is not None:
        heat = heat[heat["host"].isin(hosts)]
        states = states[states["host"].isin(hosts)]
    return {"window": w, "line_every": line, "pools": pools, "pool": pool, "utilization": d["utilization"],
            "heat": data.heatmap_matrix(heat), "states": states, "gpu_hours": d["gpu_hours"]}


def _window_data(reader, w: timerange.Window, line: str, resource: str) -> dict:
    """What the page shows of a window whatever the pool picked: the lines per pool and the node states at
    the line width, the GPU-hours, and the heatmap of `resource` at the window's width, asked at once."""
    d = data.fleet_data(reader, w.start, w.end, line, heat=resource, heat_every=w.every)
    return {**d, "heat_resource": resource, "utilization": data.pool_utilization(d["frames"], d["pools"]),
            "states": data.node_states(d["frames"], d["pools"], (w.start, w.end, line))}


def pool_figure(util: pd.DataFrame, every: str | None = None) -> dict:
    """One panel per resource (stacked, shared time axis), one line per pool, the same colour in every panel."""
    if util.empty:
        return figures.empty("no utilization data in this window")
    resources = [r for r in data.RESOURCES if r in set(util["resource"])]
    colors = {p: figures.color(i) for i, p in enumerate(sorted(set(util["pool"])))}
    util = util.assign(time=figures.values(util["time"]))  # once, not per trace
    n, gap = len(resources), 0.05
    height = (1 - gap * (n - 1)) / n
    traces, layout = [], {}
    for row, r in enumerate(resources):
        suffix = "" if row == 0 else str(row + 1)
        top = 1 - row * (height + gap)
        layout[f"yaxis{suffix}"] = figures.axis(domain=[top - height, top], tickformat=".0%", rangemode="tozero",
                                                title={"text": data.RESOURCES[r].split(" (")[0], "font": {"size": 11}})
        for p, g in util[util["resource"] == r].groupby("pool", sort=True):
            traces.append({"type": "scatter", "mode": "lines", "x": g["time"].to_numpy(),
                           "y": g["value"].to_numpy(), "name": p, "legendgroup": p, "showlegend": row == 0,
                           "line": {"color": colors[p]}, "xaxis": "x", "yaxis": f"y{suffix}",
                           "hovertemplate": f"{p}: %{{y:.1%}}<extra>{data.RESOURCES[r]}</extra>"})
    title = "Utilization per pool" + (f" ({every} buckets)" if every else "")
    return figures.figure(traces, title, height=150 * n + 120, **layout)


def hours_figure(hours: pd.DataFrame) -> dict:
    if hours.empty:
        return figures.empty("no GPUs in this window")
    bars = [{"type": "bar", "x": hours["pool"].tolist(), "y": hours["allocated"].to_numpy(),
             "name": "allocated to jobs", "marker": {"color": figures.color(0)}},
            {"type": "bar", "x": hours["pool"].tolist(), "y": hours["used"].to_numpy(),
             "name": "used (utilization x time)", "marker": {"color": figures.color(1)}}]
    return figures.figure(bars, "GPU-hours: allocated vs used", height=420, barmode="group",
                          yaxis={"title": {"text": "GPU-hours"}})


def counts(states: pd.DataFrame) -> dbc.Row:
    n = states["state"].value_counts() if len(states) else pd.Series(dtype=int)
    colors = {"idle": "info", "busy": "success", "saturated": "warning"}
    text = {"idle": f"main resource under {data.IDLE_BELOW:.0%}", "busy": "in between",
            "saturated": f"main resource at {data.SATURATED_FROM:.0%} or more"}
    return dbc.Row([dbc.Col(dbc.Card(dbc.CardBody([
        html.Div(s.capitalize() + " nodes", className="small text-body-secondary"),
        html.Div(str(int(n.get(s, 0))), id=f"{P}-count-{s}", className=f"fs-3 fw-semibold text-{colors[s]}-emphasis"),
        html.Div(text[s], className="small text-body-secondary")])), md=4) for s in data.STATES], className="g-3")


def update(reader, state: dict, width: int | None = None) -> tuple:
    """The callback's outputs: window text, counts, heatmap, pool figure, GPU-hours figure, pool options, search."""
    v = compute(reader, state, width)
    w = v["window"]
    title = f"{data.RESOURCES[state['resource']]} per node"
    shown = {**state, "pool": v["pool"]}
    return (f"{w.start:%Y-%m-%d %H:%M} to {w.end:%Y-%m-%d %H:%M} UTC, {w.every} buckets",
            counts(v["states"]), figures.heatmap(v["heat"], title), pool_figure(v["utilization"], v["line_every"]),
            hours_figure(v["gpu_hours"]), [{"label": p, "value": p} for p in sorted(set(v["pools"]["pool"]))],
            urlstate.search(shown, DEFAULTS))


def node_link(click: dict | None, range_key: str | None, end: str | None) -> str | None:
    """/node?node=HOST&... for a click on a heatmap cell (its y is the host)."""
    try:
        host = click["points"][0]["y"]
    except (TypeError, KeyError, IndexError):
        return None
    if not isinstance(host, str):
        return None
    return "/node" + urlstate.search({"node": host, "range": range_key, "end": end}, controls.DEFAULTS)


def register(app, ctx) -> None:
    @app.callback(
        Output(f"{P}-window", "children"), Output(f"{P}-counts", "children"), Output(f"{P}-heatmap", "figure"),
        Output(f"{P}-pools", "figure"), Output(f"{P}-gpu-hours", "figure"), Output(f"{P}-pool", "options"),
        Output(f"{P}-search", "data"),
        Input(f"{P}-range", "value"), Input(f"{P}-end", "value"), Input(f"{P}-refresh", "value"),
        Input(f"{P}-resource", "value"), Input(f"{P}-pool", "value"), Input(f"{P}-tick", "n_intervals"),
        State("viewport", "data"))
    def _update(range_key, end, refresh, resource, pool, _tick, viewport):
        state = read({"range": range_key, "end": controls.checked_end(end), "refresh": refresh,
                      "resource": resource, "pool": pool})
        return update(ctx.reader(), state, controls.viewport_width(viewport))

    @app.callback(Output(f"{P}-nav", "href"), Input(f"{P}-heatmap", "clickData"), State(f"{P}-range", "value"),
                  State(f"{P}-end", "value"), prevent_initial_call=True)
    def _open_node(click, range_key, end):
        return node_link(click, range_key, controls.checked_end(end)) or no_update

    controls.register(app, P)
    urlstate.register(app, P)
