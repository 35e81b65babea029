"""Page state in the URL: each page's controls start from its query string and write it back, so a view
can be shared as a link.

Values are read as plain strings and checked by the page against what it knows (a range key, a resource
name, a node the store has); nothing read here reaches a query except as a bound value. The browser's
address is rewritten with history.replaceState (a clientside callback): no reload, no new history entry
per click, and the pages router does not render the page again.
"""

from __future__ import annotations

from urllib.parse import urlencode

from dash import Input, Output, dcc

MAX_VALUE = 200  # longer query values are not a node, workload or time: ignore them


def value(raw) -> str | None:
    """A query-string value as one string (Dash hands repeated keys over as a list: the first wins)."""
    if isinstance(raw, list | tuple):
        raw = raw[0] if raw else None
    if raw is None:
        return None
    text = str(raw)
    return text if 0 < len(text) <= MAX_VALUE else None


def choice(raw, allowed, default: str | None = None) -> str | None:
    v = value(raw)
    return v if v in allowed else default


def search(params: dict[str, str | None], defaults: dict[str, str | None] | None = None) -> str:
    """"?k=v&..." of the values that are set and differ from their default ("" when none)."""
    defaults = defaults or {}
    kept = {k: v for k, v in params.items() if v not in (None, "") and v != defaults.get(k)}
    return "?" + urlencode(kept) if kept else ""


def components(prefix: str) -> list:
    """The store a page writes its query string into, and the sink of the clientside callback."""
    return [dcc.Store(id=f"{prefix}-search"), dcc.Store(id=f"{prefix}-search-sink")]


def register(app, prefix: str) -> None:
    app.clientside_callback(
        """function (search) {
            if (typeof search === "string" && window.location.search !== search) {
                window.history.replaceState(window.history.state, "", window.location.pathname + search);
            }
            return search;
        }""",
        Output(f"{prefix}-search-sink", "data"), Input(f"{prefix}-search", "data"))
