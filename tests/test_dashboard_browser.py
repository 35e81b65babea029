"""Every dashboard page in a real headless Chromium over a simulated, analyzed fleet: it loads, draws figures
with data, logs no error in the browser console or in Dash's callback error list; a screenshot of each page
lands in the test's output folder; a click on a node in the fleet heatmap opens /node for it; page state
survives in the URL; quotes and semicolons in every URL parameter change nothing."""

from __future__ import annotations

from urllib.parse import parse_qs, quote, urlparse

import pandas as pd
import pytest

from agents.query import open_reader
from dashboard.app import create_app
from dashboard.context import Context
from dashboard.data import alerts as alerts_data
from dashboard.serve import serve_in_thread, url_of
from tests.browser import chromium, console_errors, dash_errors, wait_page

pytestmark = pytest.mark.services
NASTY = "x'\";--"  # a quote of each kind and a comment / statement separator


@pytest.fixture(scope="module")
def site(small_fleet, small_fleet_analyzed):
    ctx = Context(f"embedded:{small_fleet / 'store'}", small_fleet / "state")
    app = create_app(ctx, debug=True)  # debug: Dash's dev tools show callback errors in the page
    server = serve_in_thread(app)
    try:
        yield url_of(server).rstrip("/"), small_fleet, small_fleet_analyzed[0].run
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    return tmp_path_factory.mktemp("screenshots")


def _hosts(store) -> list[str]:
    with open_reader(f"embedded:{store / 'store'}") as r:
        return sorted(r.tag_values("cpu", "host"))


def _gpus_per_host(store) -> dict[str, int]:
    """Distinct GPUs per host over all the data (no tag filter: the node page's filter is what is tested)."""
    with open_reader(f"embedded:{store / 'store'}") as r:
        first, last = r.time_bounds("gpu")
        g = r.aggregate("gpu", {"n": ("utilization_ratio", "count")}, first, last + pd.Timedelta(seconds=1),
                        by=["host", "gpu"])
    return g.groupby("host")["gpu"].nunique().to_dict()


def _open(browser, url: str, ready_id: str, graphs: int, shots=None, name: str = ""):
    browser.get(url)
    plotted = wait_page(browser, ready_id, graphs)
    if shots is not None:
        assert browser.save_screenshot(str(shots / f"{name}.png")), name
    assert dash_errors(browser) == [], url
    assert console_errors(browser) == [], url
    return plotted


@pytest.fixture(scope="module")
def expect(site):
    """What each page must show on this fleet, worked out from the store and the run, not from the pages."""
    _, fleet, run = site
    tm = run.model("throughput")
    return {"hosts": _hosts(fleet), "gpus": _gpus_per_host(fleet), "workload": sorted(tm.matrix_.index)[0],
            "accelerators": len(tm.matrix_.columns), "recs": len(run.table("recommendations")),
            "pools": sorted(run.model("forecast").pools_)}


def test_fleet_page(site, browser, shots, expect):
    base, _, _ = site
    plotted = _open(browser, base + "/", "fleet-window", 3, shots, "fleet")
    assert {"fleet-heatmap", "fleet-pools", "fleet-gpu-hours"} <= {p["id"] for p in plotted if p["values"]}
    # every node with CPU or GPU data is counted once: idle + busy + saturated = the simulated fleet
    counts = [int(browser.find_element("id", f"fleet-count-{s}").text) for s in ("idle", "busy", "saturated")]
    assert sum(counts) == len(expect["hosts"]) == 24


def test_node_page(site, browser, shots, expect):
    base, _, _ = site
    host = sorted(expect["gpus"])[0]  # a GPU node: GPU panels and a GPU table
    plotted = _open(browser, f"{base}/node?node={host}", "node-body", 6, shots, "node")
    assert any(p["id"] == "node-timeline" and p["values"] for p in plotted)
    assert browser.find_element("id", "node-body").text.startswith(f"{host}: ")
    assert len(browser.find_elements("css selector", "#node-gpus tbody tr")) == expect["gpus"][host]


def test_workloads_page(site, browser, shots, expect):
    base, _, _ = site
    plotted = _open(browser, f"{base}/workloads?workload={quote(expect['workload'])}", "workloads-detail", 1, shots,
                    "workloads")
    assert {"id": "workloads-throughput", "values": expect["accelerators"]} in plotted
    assert browser.find_elements("css selector", "#workloads-grid .ag-row"), "the efficiency grid shows no job"


def test_recommendations_page(site, browser, shots, expect):
    base, _, _ = site
    _open(browser, base + "/recommendations", "recs-totals", 1, shots, "recommendations")
    assert browser.find_elements("css selector", "#recs-grid .ag-row")
    total = browser.find_elements("css selector", "#recs-totals-table tbody tr")[-1].text.split()
    assert total[:2] == ["all", str(expect["recs"])]  # the "all" row counts every action of the run


def test_alerts_page(site, browser, shots):
    base, _, _ = site
    _open(browser, base + "/alerts", "alerts-body", 0, shots, "alerts")
    text = browser.find_element("id", "alerts-body").text
    if alerts_data.installed():
        assert "firing" in text or "No alerts" in text
    else:
        assert text == alerts_data.NOT_INSTALLED


def test_capacity_page(site, browser, shots, expect):
    base, _, _ = site
    plotted = _open(browser, base + "/capacity", "capacity-summary", len(expect["pools"]), shots, "capacity")
    assert sum(1 for p in plotted if p["values"]) >= len(expect["pools"])
    rows = browser.find_elements("css selector", "#capacity-table tbody tr")
    assert sorted(r.text.split()[0] for r in rows) == expect["pools"]


def test_clicking_a_node_in_the_heatmap_opens_its_page(site, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import WebDriverWait

    base, _, _ = site
    _open(browser, base + "/fleet?range=3d", "fleet-window", 3)
    # the pixel of row 2 in the heatmap's plot area, from plotly's own axis (category index -> pixel)
    row = 2
    host, offset_y = browser.execute_script("""
        var gd = document.querySelector('#fleet-heatmap .js-plotly-plot');
        var ya = gd._fullLayout.yaxis;
        return [gd.data[0].y[arguments[0]], ya.l2p(arguments[0]) - ya._length / 2];""", row)
    drag = browser.find_element("css selector", "#fleet-heatmap .nsewdrag")
    ActionChains(browser).move_to_element_with_offset(drag, 0, int(offset_y)).click().perform()
    WebDriverWait(browser, 60).until(lambda d: "/node?" in d.current_url)
    query = parse_qs(urlparse(browser.current_url).query)
    assert query["node"] == [host] and query["range"] == ["3d"]
    wait_page(browser, "node-body", 2)
    assert browser.find_element("id", "node-body").text.startswith(f"{host}: ")
    assert dash_errors(browser) == [] and console_errors(browser) == []


def test_page_state_lives_in_the_url(site, browser):
    from selenium.webdriver.support.ui import WebDriverWait

    base, _, _ = site
    _open(browser, base + "/fleet", "fleet-window", 3)
    browser.find_element("css selector", "#fleet-resource input[value='cpu']").click()
    WebDriverWait(browser, 60).until(lambda d: "resource=cpu" in d.current_url)
    shared = browser.current_url
    _open(browser, shared, "fleet-window", 3)  # the shared link opens the same view
    assert browser.find_element("css selector", "#fleet-resource input[value='cpu']").is_selected()
    assert "CPU busy per node" in browser.execute_script(
        "return document.querySelector('#fleet-heatmap .js-plotly-plot').layout.title.text;")


# Every visible piece of text whose contrast with what lies behind it is under WCAG AA (4.5:1; 3:1 for large
# text, 24 px or 18.66 px bold): page text over the nearest opaque background (translucent layers blended), and
# figure text (titles, ticks, legends, colour bars; not hover labels, which plotly colours against their own
# background) over the page. Dash's dev-tools bar (debug mode, tests only) is not the dashboard's.
CONTRAST_JS = """
function rgba(c) {
  var m = c.match(/[\\d.]+/g).map(Number);
  if (c.indexOf('color(') === 0) { m = m.slice(0, 3).map(function (v) { return 255 * v; }).concat(m.slice(3)); }
  return m.length > 3 ? m : m.concat([1]);
}
function over(c, bg) { return [0, 1, 2].map(function (i) { return c[3] * c[i] + (1 - c[3]) * bg[i]; }); }
function lum(c) {
  var a = c.map(function (v) { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
  return 0.2126 * a[0] + 0.7152 * a[1] + 0.0722 * a[2];
}
function ratio(a, b) { var x = lum(a), y = lum(b); return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05); }
function behind(e) {
  var layers = [];
  for (var n = e; n && n.nodeType === 1; n = n.parentElement) {
    var c = rgba(getComputedStyle(n).backgroundColor);
    if (c[3] > 0) { layers.push(c); if (c[3] >= 1) { break; } }
  }
  var bg = [255, 255, 255];
  for (var i = layers.length - 1; i >= 0; i--) { bg = over(layers[i], bg); }
  return bg;
}
var page = behind(document.body), bad = [], checked = 0;
document.querySelectorAll('body *').forEach(function (e) {
  if (e.closest('.hoverlayer, [class*="dash-debug"], [class*="dash-fe-error"]')) { return; }
  var inSvg = e.namespaceURI === 'http://www.w3.org/2000/svg';
  if (inSvg ? e.tagName !== 'text' || !e.closest('.js-plotly-plot') : e.closest('svg')) { return; }
  var own = Array.from(e.childNodes).some(function (n) { return n.nodeType === 3 && n.textContent.trim(); });
  var box = e.getBoundingClientRect(), s = getComputedStyle(e);
  if (!own || !box.width || !box.height || s.visibility === 'hidden' || +s.opacity === 0) { return; }
  var bg = inSvg ? page : behind(e);
  var k = ratio(over(rgba(inSvg ? s.fill : s.color), bg), bg);
  var px = parseFloat(s.fontSize), large = px >= 24 || (px >= 18.66 && +s.fontWeight >= 700);
  checked += 1;
  if (k < (large ? 3 : 4.5)) { bad.push([e.id || e.getAttribute('class'), e.textContent.trim().slice(0, 40), k]); }
});
return {theme: document.documentElement.getAttribute('data-bs-theme'), background: lum(page), checked: checked,
        bad: bad};"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_text_is_readable_in_the_light_and_the_dark_theme(site, browser, shots, scheme):
    """The fleet page (cards, heatmap, figures) and the recommendations page (tables, AG Grid) under the
    browser's light and dark preference: the page follows it, and no text falls under WCAG AA contrast."""
    base, _, _ = site
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia",
                            {"features": [{"name": "prefers-color-scheme", "value": scheme}]})
    try:
        for path, ready, graphs in (("/fleet", "fleet-window", 3), ("/recommendations", "recs-totals", 1)):
            _open(browser, base + path, ready, graphs, shots, f"{path.strip('/')}-{scheme}")
            seen = browser.execute_script(CONTRAST_JS)
            assert seen["theme"] == scheme, path  # the page follows the browser's preference
            assert (seen["background"] > 0.5) == (scheme == "light"), path
            assert seen["checked"] > 50, path  # nav, controls, cards or tables, and the figures' labels
            assert seen["bad"] == [], path
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})


URL_PARAMETERS = [
    ("/", ("range", "end", "refresh", "resource", "pool"), "fleet-window"),
    ("/node", ("range", "end", "refresh", "node", "metric"), "node-status"),
    ("/workloads", ("workload",), "workloads-detail"),
    ("/recommendations", ("kind",), "recs-totals"),
    ("/alerts", ("range", "end", "refresh"), "alerts-body"),
    ("/capacity", ("pool", "horizon"), "capacity-summary"),
]


def test_the_injection_test_covers_every_page_and_every_url_parameter():
    """A page that grows a URL parameter (its DEFAULTS: what it reads from and writes to the query string) or
    a new page must be added to URL_PARAMETERS, or the test below would silently stop covering it."""
    from dashboard.app import PAGES
    from dashboard.pages import fleet

    tested = {path: set(params) for path, params, _ in URL_PARAMETERS}
    pages = {("/" if page is fleet else page.PATH): set(page.DEFAULTS) for page in PAGES}
    assert tested == pages


@pytest.mark.parametrize("path, params, ready", URL_PARAMETERS)
def test_quotes_and_semicolons_in_every_url_parameter(site, browser, path, params, ready):
    from selenium.webdriver.support.ui import WebDriverWait

    base, fleet, _ = site
    before = _hosts(fleet)
    query = "&".join(f"{p}={quote(NASTY)}" for p in params)
    _open(browser, f"{base}{path}?{query}", ready, 0)

    def kept(d) -> list[str]:
        return [v for vs in parse_qs(urlparse(d.current_url).query).values() for v in vs if NASTY in v]

    # no page took any of them: each was checked against what it can be (a range, a node the store has, a
    # workload of the run...) and dropped, so the rewritten URL holds none; the store is as it was
    WebDriverWait(browser, 60).until(lambda d: not kept(d))
    assert _hosts(fleet) == before


def test_recommendations_grid_sorts_and_exports_csv(site, browser, tmp_path):
    """The grid sorts on header clicks, and Export CSV downloads every action of the run (all pages of the
    grid, not only the visible one) with the gain and risk columns."""
    from selenium.webdriver.support.ui import WebDriverWait

    base, _, run = site
    recs = run.table("recommendations")
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)})
    _open(browser, base + "/recommendations", "recs-totals", 1)
    cells = 'return Array.from(document.querySelectorAll(\'#recs-grid .ag-center-cols-container .ag-row\'))' \
            '.sort(function (a, b) { return +a.getAttribute("row-index") - +b.getAttribute("row-index"); })' \
            '.map(function (r) { return r.querySelector(\'[col-id="kwh_week"]\').textContent.trim(); });'
    header = browser.find_element("css selector", '#recs-grid .ag-header-cell[col-id="kwh_week"] .ag-header-cell-label')
    high = f"{recs['kwh_week'].max():,.2f}"
    assert browser.execute_script(cells)[0] != high  # the run's order: largest GPU-hour gain first
    header.click()  # ascending
    header.click()  # descending
    WebDriverWait(browser, 60).until(lambda d: (d.execute_script(cells) or [None])[0] == high)
    browser.find_element("id", "recs-export").click()
    target = tmp_path / "recommendations.csv"
    WebDriverWait(browser, 60).until(lambda d: target.exists() and target.stat().st_size > 0)
    exported = pd.read_csv(target)
    assert len(exported) == len(recs)
    assert {"kind", "target", "action", "gpu hours week", "kwh week", "risk", "evidence"} <= set(exported.columns)
    assert sorted(exported["kwh week"].round(2)) == sorted(recs["kwh_week"].round(2))
    assert exported["kwh week"].is_monotonic_decreasing  # exported as sorted on the page
    assert dash_errors(browser) == [] and console_errors(browser) == []
