"""The Dash app: the shell (navigation, theme, viewport width) around the pages of dashboard/pages/."""

from __future__ import annotations

from pathlib import Path

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, dcc, html

from dashboard.context import Context
from dashboard.pages import alerts, capacity, fleet, node, recommendations, workloads

PAGES = (fleet, node, workloads, recommendations, alerts, capacity)
ASSETS = Path(__file__).resolve().parent / "assets"
# Bootstrap's CSS is served by this server from the bootstrap-flask wheel: a dashboard on a closed network
# must not depend on a CDN.
BOOTSTRAP_URL = "/_fleetwise/bootstrap.min.css"

# Bootstrap 5.3 and AG Grid follow the browser's light or dark preference (prefers-color-scheme), set before
# the first paint so a dark browser never flashes white.
THEME_SCRIPT = """<script>(function () {
  var m = window.matchMedia("(prefers-color-scheme: dark)");
  function apply() {
    var mode = m.matches ? "dark" : "light";
    document.documentElement.setAttribute("data-bs-theme", mode);
    document.documentElement.setAttribute("data-ag-theme-mode", mode);
  }
  apply();
  if (m.addEventListener) { m.addEventListener("change", apply); }
})();</script>"""

INDEX = """<!DOCTYPE html>
<html lang="en">
<head>{%metas%}<title>{%title%}</title>{%favicon%}""" + THEME_SCRIPT + """{%css%}</head>
<body>{%app_entry%}<footer>{%config%}{%scripts%}{%renderer%}</footer></body>
</html>"""


def create_app(ctx: Context, auth=None, debug: bool = False) -> dash.Dash:
    """The app over a store and a state directory; `auth` (dashboard.auth.BasicAuth) guards every request."""
    app = dash.Dash(__name__, use_pages=True, pages_folder="", assets_folder=str(ASSETS), title="fleetwise",
                    external_stylesheets=[BOOTSTRAP_URL], suppress_callback_exceptions=True,
                    update_title=None, serve_locally=True)
    app.index_string = INDEX
    _serve_bootstrap(app.server)
    for i, page in enumerate(PAGES):
        dash.register_page(page.__name__, path=page.PATH, name=page.NAME, title=f"fleetwise: {page.NAME}",
                           layout=page.layout, order=i + 1)
        page.register(app, ctx)
    # "/" is the fleet page too (same layout, same callbacks)
    dash.register_page("dashboard.pages.home", path="/", name="Fleet", title="fleetwise: Fleet", layout=fleet.layout,
                       order=0)
    app.layout = shell()
    app.clientside_callback("function (_path) { return window.innerWidth; }", Output("viewport", "data"),
                            Input("_pages_location", "pathname"))
    if auth is not None:
        from dashboard.auth import protect

        protect(app.server, auth)
    if debug:
        app.enable_dev_tools(debug=True, dev_tools_hot_reload=False, dev_tools_props_check=True,
                             dev_tools_disable_version_check=True)
    return app


def _serve_bootstrap(server) -> None:
    from importlib.resources import files

    from flask import send_from_directory

    folder = str(files("flask_bootstrap") / "static" / "bootstrap5" / "css")

    @server.route(BOOTSTRAP_URL)
    def _bootstrap_css():
        return send_from_directory(folder, "bootstrap.min.css", max_age=86400)


def shell() -> html.Div:
    links = [dbc.NavItem(dbc.NavLink(p.NAME, href=p.PATH, active="exact", id=f"nav-{p.P}")) for p in PAGES]
    return html.Div([
        dbc.Navbar(dbc.Container([dbc.NavbarBrand("fleetwise", href="/"), dbc.Nav(links, navbar=True)], fluid=True),
                   color="body-tertiary", dark=False, className="mb-2 border-bottom"),
        dbc.Container(dash.page_container, fluid=True, className="pb-5"),
        dcc.Store(id="viewport"),
    ])
