"""Controls every telemetry page shares: the time range, its end, and auto-refresh."""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

from dashboard import timerange
from dashboard.urlstate import choice, value

REFRESH = {"off": 0, "30s": 30_000, "1m": 60_000, "5m": 300_000}
DEFAULTS = {"range": timerange.DEFAULT_RANGE, "end": None, "refresh": "off"}


def read(query: dict) -> dict[str, str | None]:
    """range, end and refresh from a page's query string, each checked (bad values fall back to defaults)."""
    end = value(query.get("end"))
    return {"range": choice(query.get("range"), timerange.RANGES, timerange.DEFAULT_RANGE),
            "end": end if timerange.parse_end(end) is not None else None,
            "refresh": choice(query.get("refresh"), REFRESH, "off")}


def ttl(state: dict) -> float | None:
    """Seconds a page's store answers are kept (dashboard.cache): its auto-refresh interval, so each refresh
    sees new data; None (the cache's default) when auto-refresh is off."""
    ms = REFRESH.get(state.get("refresh") or "off", 0)
    return ms / 1000.0 if ms else None


def time_bar(prefix: str, state: dict[str, str | None]) -> dbc.Row:
    """Range picker, end time (ISO, empty = the newest data) and auto-refresh, with its timer."""
    refresh = REFRESH[state["refresh"] or "off"]
    return dbc.Row([
        dbc.Col([dbc.Label("Time range", html_for=f"{prefix}-range"),
                 dcc.Dropdown(id=f"{prefix}-range", clearable=False, value=state["range"],
                              options=[{"label": v, "value": k} for k, v in timerange.RANGES.items()])], md=3),
        dbc.Col([dbc.Label("Ending at (UTC, ISO 8601)", html_for=f"{prefix}-end"),
                 dbc.Input(id=f"{prefix}-end", type="text", value=state["end"] or "", debounce=True,
                           placeholder="the newest data")], md=4),
        dbc.Col([dbc.Label("Auto-refresh", html_for=f"{prefix}-refresh"),
                 dcc.Dropdown(id=f"{prefix}-refresh", clearable=False, value=state["refresh"],
                              options=[{"label": k, "value": k} for k in REFRESH])], md=2),
        dcc.Interval(id=f"{prefix}-tick", interval=refresh or 60_000, disabled=not refresh),
    ], className="g-3 mb-3")


def picker(id_: str, label: str, value: str | None, placeholder: str, md: int) -> dbc.Col:
    """A labelled dropdown whose options the page's callback fills, starting on the URL's value."""
    return dbc.Col([dbc.Label(label, html_for=id_),
                    dcc.Dropdown(id=id_, value=value, options=keep(value), placeholder=placeholder)], md=md)


def keep(value: str | None) -> list[dict]:
    """Initial options of a dropdown whose options the callback fills: the URL's value, so the dropdown does
    not drop it as unknown before the server has said which values exist."""
    return [{"label": value, "value": value}] if value else []


def checked_end(raw) -> str | None:
    """The end box's text when it is a time, else None (the newest data)."""
    v = value(raw)
    return v if timerange.parse_end(v) is not None else None


def viewport_width(data) -> int | None:
    try:
        return int(data) if data is not None else None
    except (TypeError, ValueError):
        return None


def message(text: str, color: str = "secondary") -> dbc.Alert:
    return dbc.Alert(text, color=color, className="my-2")


def page_header(title: str, lead: str) -> html.Div:
    return html.Div([html.H2(title, className="h4 mt-3"), html.P(lead, className="text-body-secondary")])


def register(app, prefix: str) -> None:
    """The auto-refresh timer follows its dropdown."""
    from dash import Input, Output

    @app.callback(Output(f"{prefix}-tick", "disabled"), Output(f"{prefix}-tick", "interval"),
                  Input(f"{prefix}-refresh", "value"))
    def _refresh(refresh):
        ms = REFRESH.get(refresh, 0)
        return not ms, ms or 60_000


def export_button(prefix: str, class_name: str) -> dbc.Button:
    """"Export CSV" for the page's AgGrid (prefix-grid); register_export() wires it."""
    return dbc.Button("Export CSV", id=f"{prefix}-export", size="sm", color="secondary", className=class_name)


def register_export(app, prefix: str) -> None:
    """A click on prefix-export has the grid prefix-grid download its rows (sorted and filtered) as CSV."""
    from dash import Input, Output

    @app.callback(Output(f"{prefix}-grid", "exportDataAsCsv"), Input(f"{prefix}-export", "n_clicks"),
                  prevent_initial_call=True)
    def _export(_n):
        return True
