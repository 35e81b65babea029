"""A real headless Chromium (Debian's chromium + chromium-driver) driven by selenium, for dashboard tests.

Offline-safe flags: without --disable-background-networking / --disable-component-update / --disable-sync,
Chromium keeps trying to reach Google's servers, which a closed network refuses. A fresh profile per session.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import require_binary

FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--window-size=1400,1000")

# Every plotly graph on the page: its id and how many values its traces carry (0 = an empty figure). From
# _fullData: plotly.js has decoded the server's base64 typed arrays there, while `data` may still hold them.
PLOTTED_JS = """return Array.from(document.querySelectorAll('.js-plotly-plot')).map(function (gd) {
  var n = 0;
  (gd._fullData || []).forEach(function (t) {
    var v = t.z || t.y || t.x || [];
    n += (v.length || 0);
  });
  var holder = gd.closest('[id]');
  return {id: holder ? holder.id : '', values: n};
});"""
LOADING_JS = "return document.querySelectorAll('[data-dash-is-loading=\"true\"]').length;"


@contextlib.contextmanager
def chromium(profile: Path) -> Iterator:
    """A selenium Chrome session on /usr/bin/chromium (skipped without it, failed under
    FLEETWISE_REQUIRE_SERVICES=1), quit afterwards."""
    binary = require_binary("chromium")
    driver_path = require_binary("chromedriver")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = binary
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver) -> list[str]:
    """SEVERE entries of the browser console since the last call."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def dash_errors(driver) -> list[str]:
    """Dash's callback error list (the dev tools' error count and its messages)."""
    count = driver.find_elements("css selector", ".test-devtools-error-count")
    messages = driver.find_elements("css selector", ".dash-fe-error__title")
    return [e.text for e in count + messages if e.text.strip()]


def wait_page(driver, ready_id: str, graphs: int = 0, timeout: float = 120.0) -> list[dict]:
    """Wait until the element `ready_id` shows text, no Dash component is loading, and at least `graphs`
    plotly graphs carry values; returns every graph's {id, values}."""
    from selenium.webdriver.support.ui import WebDriverWait

    def ready(d):
        found = d.find_elements("id", ready_id)
        if not found or not found[0].text.strip() or d.execute_script(LOADING_JS):
            return False
        plotted = d.execute_script(PLOTTED_JS)
        return {"plotted": plotted} if sum(1 for p in plotted if p["values"]) >= graphs else False

    return WebDriverWait(driver, timeout, poll_frequency=0.25).until(ready)["plotted"]
