"""Plotly figures shared by the pages: one look, readable on light and dark page backgrounds.

Figures are plain dicts ({"data": [...], "layout": {...}}), which Dash sends as they are: plotly's
graph_objects validate every property in Python, which cost seconds per page on a large fleet.

Backgrounds are transparent (the page's theme shows through), text and grid lines mid-grey, and every
colour comes from colour-blind-safe sets: viridis for heatmaps (perceptually uniform, readable in grey and
by people with any common colour-vision deficiency) and the Okabe-Ito palette for lines and bars.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Okabe & Ito (2008), "Color Universal Design": distinguishable under protanopia, deuteranopia, tritanopia.
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999"]
HEAT_SCALE = "Viridis"
TEXT = "#888888"  # readable on white and on near-black
GRID = "rgba(136,136,136,0.25)"
AXIS = {"gridcolor": GRID, "zerolinecolor": GRID, "automargin": True}


def color(i: int) -> str:
    return OKABE_ITO[i % len(OKABE_ITO)]


def figure(data: list[dict], title: str = "", height: int | None = None, **layout) -> dict:
    """A figure dict in the dashboard's style; `layout` keys (xaxis=..., yaxis=...) are merged in."""
    base = {
        "title": {"text": title, "x": 0.01, "font": {"size": 15}} if title else None,
        "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)", "font": {"color": TEXT},
        "colorway": OKABE_ITO, "margin": {"l": 60, "r": 20, "t": 40 if title else 10, "b": 40},
        "legend": {"orientation": "h", "y": -0.28}, "hovermode": "closest",
        "xaxis": dict(AXIS), "yaxis": dict(AXIS)}
    if height:
        base["height"] = height
    for key, value in layout.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) and key.endswith("axis") else value
    return {"data": data, "layout": {k: v for k, v in base.items() if v is not None}}


def axis(**kw) -> dict:
    return {**AXIS, **kw}


def empty(message: str, height: int = 200) -> dict:
    """A figure that says why there is nothing to draw (instead of blank axes)."""
    return figure([], height=height, xaxis={"visible": False}, yaxis={"visible": False},
                  annotations=[{"text": message, "showarrow": False, "x": 0.5, "y": 0.5, "xref": "paper",
                                "yref": "paper", "font": {"size": 14, "color": TEXT}}])


def values(series) -> np.ndarray:
    """A column as an array Dash serializes compactly (times as ISO text plotly reads as dates)."""
    s = pd.Series(series)
    if isinstance(s.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(s):
        naive = pd.to_datetime(s, utc=True).dt.tz_localize(None).to_numpy("datetime64[s]")
        return np.datetime_as_string(naive, unit="s", timezone="UTC").astype(object)  # in C, not per value
    return s.to_numpy()


def heatmap(matrix: pd.DataFrame, title: str, zmax: float = 1.0) -> dict:
    """Hosts x time, 0..zmax on viridis; a click's y is the host (the fleet page opens its node page)."""
    if matrix.empty:
        return empty(f"{title}: no data in this window")
    hosts = [str(h) for h in matrix.index]
    trace = {"type": "heatmap", "z": matrix.to_numpy(dtype=float), "x": values(matrix.columns), "y": hosts,
             "zmin": 0.0, "zmax": zmax, "colorscale": HEAT_SCALE, "hoverongaps": False,
             "colorbar": {"tickformat": ".0%"},
             "hovertemplate": "%{y}<br>%{x}<br>%{z:.1%}<extra>click for the node</extra>"}
    return figure([trace], title, height=max(260, min(18 * len(hosts) + 120, 2400)),
                  yaxis={"autorange": "reversed", "type": "category"})


def band(x, low, high, fill: str, name: str) -> dict:
    """A shaded area between two lines (an interval)."""
    x = list(values(x))
    return {"type": "scatter", "x": x + x[::-1], "y": list(values(high)) + list(values(low))[::-1],
            "fill": "toself", "fillcolor": fill, "line": {"width": 0}, "hoverinfo": "skip", "showlegend": False,
            "name": name}


def lines(frame: pd.DataFrame, x: str, y: str, series: str, title: str, yformat: str = "",
          band_columns: tuple[str, str] | None = None, height: int = 300, mode: str = "lines", **layout) -> dict:
    """One line per value of `series` (optionally with a shaded band between two columns)."""
    if frame.empty:
        return empty(f"{title}: no data")
    data = []
    for i, (name, g) in enumerate(frame.groupby(series, sort=True)):
        if band_columns is not None:
            data.append(band(g[x], g[band_columns[0]], g[band_columns[1]], alpha(color(i), 0.2), f"{name} interval"))
        data.append({"type": "scatter", "x": values(g[x]), "y": values(g[y]), "name": str(name), "mode": mode,
                     "line": {"color": color(i)}})
    if yformat:
        layout["yaxis"] = {**layout.get("yaxis", {}), "tickformat": yformat}
    return figure(data, title, height=height, **layout)


def alpha(hex_color: str, a: float) -> str:
    h = hex_color.lstrip("#")
    return f"rgba({int(h[0:2], 16)},{int(h[2:4], 16)},{int(h[4:6], 16)},{a})"
