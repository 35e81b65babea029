"""Plotly figures shared by the pages: one look, readable on light and dark page backgrounds.

Backgrounds are transparent (the page's theme shows through), text and grid lines mid-grey, and every
colour comes from colour-blind-safe sets: viridis for heatmaps (perceptually uniform, readable in grey and
by people with any common colour-vision deficiency) and the Okabe-Ito palette for lines.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

# Okabe & Ito (2008), "Color Universal Design": distinguishable under protanopia, deuteranopia, tritanopia.
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999"]
HEAT_SCALE = "Viridis"
TEXT = "#888888"  # readable on white and on near-black
GRID = "rgba(136,136,136,0.25)"


def style(fig: go.Figure, title: str = "", height: int | None = None) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.01, "font": {"size": 15}} if title else None,
        paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)", font={"color": TEXT},
        colorway=OKABE_ITO, margin={"l": 60, "r": 20, "t": 40 if title else 10, "b": 40},
        legend={"orientation": "h", "y": -0.18}, hovermode="closest", **({"height": height} if height else {}))
    fig.update_xaxes(gridcolor=GRID, zerolinecolor=GRID)
    fig.update_yaxes(gridcolor=GRID, zerolinecolor=GRID)
    return fig


def empty(message: str, height: int = 200) -> go.Figure:
    """A figure that says why there is nothing to draw (instead of blank axes)."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font={"size": 14, "color": TEXT})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return style(fig, height=height)


def heatmap(matrix: pd.DataFrame, title: str, zmax: float = 1.0) -> go.Figure:
    """Hosts x time, 0..zmax on viridis; each cell's customdata is its host (clicks open the node page)."""
    if matrix.empty:
        return empty(f"{title}: no data in this window")
    hosts = list(matrix.index)
    fig = go.Figure(go.Heatmap(
        z=matrix.to_numpy(dtype=float), x=list(matrix.columns), y=hosts, zmin=0.0, zmax=zmax,
        colorscale=HEAT_SCALE, colorbar={"title": {"text": ""}, "tickformat": ".0%"},
        customdata=[[h] * matrix.shape[1] for h in hosts], hoverongaps=False,
        hovertemplate="%{y}<br>%{x}<br>%{z:.1%}<extra>click for the node</extra>"))
    fig.update_yaxes(autorange="reversed", type="category")
    return style(fig, title, height=max(260, min(18 * len(hosts) + 120, 2400)))


def lines(frame: pd.DataFrame, x: str, y: str, series: str, title: str, yformat: str = "",
          band: tuple[str, str] | None = None, height: int = 300, mode: str = "lines") -> go.Figure:
    """One line per value of `series` (optionally with a shaded band between two columns)."""
    if frame.empty:
        return empty(f"{title}: no data")
    fig = go.Figure()
    for i, (name, g) in enumerate(frame.groupby(series, sort=True)):
        color = OKABE_ITO[i % len(OKABE_ITO)]
        if band is not None:
            fig.add_trace(go.Scatter(x=list(g[x]) + list(g[x])[::-1], y=list(g[band[1]]) + list(g[band[0]])[::-1],
                                     fill="toself", fillcolor=_alpha(color, 0.2), line={"width": 0},
                                     hoverinfo="skip", showlegend=False, name=f"{name} interval"))
        fig.add_trace(go.Scatter(x=g[x], y=g[y], name=str(name), mode=mode, line={"color": color}))
    if yformat:
        fig.update_yaxes(tickformat=yformat)
    return style(fig, title, height=height)


def _alpha(hex_color: str, a: float) -> str:
    h = hex_color.lstrip("#")
    return f"rgba({int(h[0:2], 16)},{int(h[2:4], 16)},{int(h[4:6], 16)},{a})"
