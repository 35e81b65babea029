"""The pages' callbacks called directly (as the browser's requests would) on a simulated, analyzed fleet:
what they show is checked against the saved run and the store, and a quote and a semicolon in every URL
parameter reach no query (each value is checked against what it may be and dropped otherwise)."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import numpy as np
import pandas as pd
import pytest

from dashboard import timerange, urlstate
from dashboard.context import Context
from dashboard.data import alerts as alerts_data
from dashboard.data import runs
from dashboard.pages import alerts, capacity, fleet, node, recommendations, workloads

NASTY = "x'\";-- DROP MEASUREMENT cpu"


@pytest.fixture(scope="module")
def ctx(small_fleet, small_fleet_analyzed):
    return Context(f"embedded:{small_fleet / 'store'}", small_fleet / "state")


def _nasty(page, keys) -> dict:
    return page.read(dict.fromkeys(keys, NASTY))


def _no_nasty(search: str) -> None:
    assert NASTY not in json.dumps(parse_qs(search.lstrip("?")))


def test_every_page_survives_quotes_and_semicolons_in_every_parameter(ctx):
    reader = ctx.reader()
    hosts_before = sorted(reader.tag_values("cpu", "host"))
    out = fleet.update(reader, _nasty(fleet, ("range", "end", "refresh", "resource", "pool")), 1000)
    assert out[0].endswith("UTC, 5m buckets")  # the default range (24h) at the default width
    _no_nasty(out[-1])
    status, body, *_, search = node.update(ctx.reader(), _nasty(node, ("range", "end", "refresh", "node", "metric")))
    assert body == [] and "No node named" in str(status)
    _no_nasty(search)
    run = ctx.run()
    status, detail, *_, search = workloads.update(run, _nasty(workloads, ("workload",)))
    assert "No workload named" in str(status) and "Pick a workload" in str(detail)
    _no_nasty(search)
    out = recommendations.update(run, _nasty(recommendations, ("kind",)))
    assert len(out[4]) == len(run.table("recommendations"))  # the filter fell back to every kind
    _no_nasty(out[-1])
    out = capacity.update(run, _nasty(capacity, ("pool", "horizon")))
    _no_nasty(out[-1])
    body, search = alerts.update(ctx.reader(), None, _nasty(alerts, ("range", "end", "refresh")))
    _no_nasty(search)
    assert sorted(ctx.reader().tag_values("cpu", "host")) == hosts_before


def test_fleet_page_figures_carry_the_store_data(ctx):
    reader = ctx.reader()
    v = fleet.compute(reader, fleet.read({"range": "3d", "resource": "cpu"}), 1000)
    hosts = sorted(reader.tag_values("cpu", "host"))
    assert list(v["heat"].index) == hosts
    # 3 days in at most 500 buckets (a 1000-pixel plot) need 8.64 minutes: the next nice width is 15 minutes
    assert v["window"].every == "15m"
    assert v["heat"].shape[1] <= 500
    # one cell against the store asked directly, without the dashboard's code: host 0, the window's 5th bucket
    t = v["heat"].columns[4]
    raw = reader.frame("cpu", ["busy_ratio"], t, t + pd.Timedelta(minutes=15), by=["host", "cpu"])
    raw = raw[(raw["host"] == hosts[0]) & (raw["cpu"] == "total")]
    assert v["heat"].iloc[0, 4] == pytest.approx(raw["busy_ratio"].mean())
    assert len(v["states"]) == len(hosts)


def test_heatmap_click_opens_the_node_page():
    click = {"points": [{"x": "2026-11-22T10:00:00Z", "y": "a100-epyc-0004", "z": 0.5}]}
    assert fleet.node_link(click, "3d", None) == "/node?node=a100-epyc-0004&range=3d"
    assert fleet.node_link(click, "24h", "2026-11-22T00:00:00Z") == \
        "/node?node=a100-epyc-0004&end=2026-11-22T00%3A00%3A00Z"
    assert fleet.node_link(None, "3d", None) is None
    assert fleet.node_link({"points": [{"y": 3}]}, "3d", None) is None


def test_url_state_round_trip():
    state = fleet.read({"range": "7d", "resource": "storage", "pool": "gpu:a100-80gb", "refresh": "1m"})
    search = urlstate.search(state, fleet.DEFAULTS)
    again = fleet.read({k: v[0] for k, v in parse_qs(search.lstrip("?")).items()})
    assert again == state
    assert urlstate.search(fleet.read({}), fleet.DEFAULTS) == ""  # defaults make the shortest link
    assert urlstate.value(["a", "b"]) == "a" and urlstate.value("x" * 500) is None


def test_workloads_and_recommendations_match_the_run(ctx):
    run = ctx.run()
    tm = run.model("throughput")
    w = sorted(tm.matrix_.index)[0]
    row = runs.throughput_row(run, w).set_index("accelerator")
    assert row["throughput"].to_dict() == pytest.approx(tm.matrix_.loc[w].to_dict())
    assert (row["low"] <= row["throughput"]).all() and (row["throughput"] <= row["high"]).all()
    eff = runs.efficiency(run)
    assert len(eff) == len(run.table("efficiency")) and {"user", "accelerator"} <= set(eff.columns)
    recs = run.table("recommendations")
    totals = runs.weekly_totals(runs.recommendations(run)).set_index("kind")
    assert totals.loc["all", "actions"] == len(recs)
    assert totals.loc["all", "gpu_hours_week"] == pytest.approx(recs["gpu_hours_week"].sum())
    for kind, g in recs.groupby("kind"):
        assert totals.loc[kind, "kwh_week"] == pytest.approx(g["kwh_week"].sum())


def test_capacity_shows_each_fitted_pool_and_when_it_saturates(ctx):
    run = ctx.run()
    fc = run.model("forecast")
    status, table, graphs, options, _ = capacity.update(run, capacity.read({}))
    assert status is None and [o["value"] for o in options] == sorted(fc.pools_)
    assert len(graphs.children) == len(fc.pools_) and table.id == "capacity-table"  # a figure per pool
    summary = fc.summary("14d").set_index("pool")
    _, _, pred_summary = runs.capacity(run, "14d")
    assert pred_summary.set_index("pool")["shortfall_time"].equals(summary["shortfall_time"])


def test_alerts_page_says_when_the_component_is_missing(ctx):
    body, _ = alerts.update(ctx.reader(), None, alerts.read({}))
    if alerts_data.installed():
        assert alerts_data.NOT_INSTALLED not in str(body)
    else:
        assert alerts_data.NOT_INSTALLED in str(body)


def test_pages_without_an_analyze_run_say_so(tmp_path, ctx):
    empty = Context(ctx.store, tmp_path / "no-state")
    assert empty.run() is None
    for page in (workloads, recommendations, capacity):
        out = page.update(None, page.read({}))
        assert "run `fleetwise analyze` first" in str(out[0])


def test_alerts_page_lists_firing_then_resolved_alerts(tmp_path, ctx):
    from analyzer.alerts.state import StateDir

    end = ctx.reader().time_bounds("cpu")[1]
    t = (end - pd.Timedelta(hours=5)).timestamp()
    events = [
        {"event": "firing", "fingerprint": "a" * 16, "rule": "GpuIdle", "severity": "warning", "starts_at": t,
         "labels": {"alertname": "GpuIdle", "host": "a100-epyc-0004"}, "summary": "GPUs idle for 1 h"},
        {"event": "firing", "fingerprint": "b" * 16, "rule": "NodeDown", "severity": "critical",
         "starts_at": t + 600, "labels": {"host": "v100-power9-0001"}, "summary": "no data"},
        {"event": "resolved", "fingerprint": "b" * 16, "rule": "NodeDown", "severity": "critical",
         "starts_at": t + 600, "ends_at": t + 1200, "labels": {"host": "v100-power9-0001"}, "summary": "no data"},
    ]
    StateDir(tmp_path).append_history(events)
    body, _ = alerts.update(ctx.reader(), tmp_path, alerts.read({}))
    assert body[0].children == "1 firing, 1 resolved"
    rows = alerts_data.load(tmp_path)
    assert rows["rule"].tolist() == ["GpuIdle", "NodeDown"] and rows["state"].tolist() == ["firing", "resolved"]
    # a window that ends before both started shows none
    body, _ = alerts.update(ctx.reader(), tmp_path, alerts.read({"range": "6h", "end": (end - pd.Timedelta(
        hours=12)).isoformat()}))
    assert "No alerts fired or resolved" in str(body)


def _colours(obj, found: list[str]) -> list[str]:
    """Every colour in a page's output (components, figures): values of *color* keys and colour scales."""
    if hasattr(obj, "to_plotly_json"):
        obj = obj.to_plotly_json().get("props", {})
    if isinstance(obj, dict):
        for key, value in obj.items():
            if ("color" in key.lower() and key != "colorbar") or key == "colorway":
                found.extend(v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str))
            else:
                _colours(value, found)
    elif isinstance(obj, list | tuple):
        for item in obj:
            _colours(item, found)
    return found


def test_every_figure_draws_with_colour_blind_safe_colours(ctx):
    """Lines, bars, bands and heatmaps of every page use the Okabe-Ito palette (or a translucent shade of it)
    and viridis, and grey for text and grid: nothing else (a red/green pair would be unreadable to many)."""
    from dashboard import figures

    def rgb(hex_colour: str) -> str:
        h = hex_colour.lstrip("#")
        return ",".join(str(int(h[i:i + 2], 16)) for i in (0, 2, 4))

    safe = {c.upper() for c in figures.OKABE_ITO} | {figures.TEXT.upper(), figures.GRID, "rgba(0,0,0,0)", "Viridis"}
    shades = {rgb(c) for c in figures.OKABE_ITO}
    run = ctx.run()
    workload = sorted(run.model("throughput").matrix_.index)[0]
    node_name = sorted(ctx.reader().tag_values("gpu", "host"))[0]
    outputs = [fleet.update(ctx.reader(), fleet.read({"range": "3d", "resource": r}), 1000)
               for r in ("gpu", "interconnect")]
    outputs.append(node.update(ctx.reader(), node.read({"node": node_name, "range": "3d"}), 1000))
    outputs += [workloads.update(run, workloads.read({"workload": workload})),
                recommendations.update(run, {"kind": None}), capacity.update(run, capacity.read({}))]
    used = _colours(outputs, [])
    assert len(used) > 30 and "Viridis" in used
    odd = sorted({c for c in used if c.upper() not in safe and c not in safe
                  and not (c.startswith("rgba(") and ",".join(c[5:-1].split(",")[:3]) in shades)})
    assert odd == []


def _find(component, id_: str):
    """The component with id `id_` in a layout tree (None when absent)."""
    if getattr(component, "id", None) == id_:
        return component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, list | tuple) else [children]:
        if child is not None and not isinstance(child, str | int | float):
            found = _find(child, id_)
            if found is not None:
                return found
    return None


def test_auto_refresh_re_runs_each_telemetry_page_at_the_chosen_period(ctx):
    from dashboard import controls
    from dashboard.app import create_app

    app = create_app(ctx)
    drawn = {fleet: "fleet-heatmap.figure", node: "node-body.children", alerts: "alerts-body.children"}
    for page, shown in drawn.items():
        off = _find(page.layout(), f"{page.P}-tick")
        assert off.disabled is True  # no refresh unless asked for
        on = _find(page.layout(refresh="5m"), f"{page.P}-tick")  # a shared link keeps its refresh
        assert on.disabled is False and on.interval == 300_000
        # each tick re-runs the callback that draws the page
        ticked = [cb["output"] for cb in app._callback_list
                  if {"id": f"{page.P}-tick", "property": "n_intervals"} in cb["inputs"]]
        assert len(ticked) == 1 and shown in ticked[0], page.PATH
        # and the dropdown starts and stops the timer
        outputs = f"..{page.P}-tick.disabled...{page.P}-tick.interval.."
        timer = next(cb for cb in app._callback_list if cb["output"] == outputs)
        assert timer["inputs"] == [{"id": f"{page.P}-refresh", "property": "value"}]
    assert controls.REFRESH == {"off": 0, "30s": 30_000, "1m": 60_000, "5m": 300_000}


def test_workload_detail_draws_the_scaling_band_and_the_power_cap_curve(ctx):
    """For a workload the run fitted a scaling model for (found in the manifest, not by the page): the scaling
    figure holds the model's prediction inside its band at each device count, and the power-cap figure holds
    the model's slowdown, 1 at full power."""
    run = ctx.run()
    fitted = [(e["workload"], e.get("accelerator") or "", name) for name, e in run.manifest["models"].items()
              if name.startswith("scaling[") and e.get("status") == "fitted"]
    assert fitted, "the small fleet's run fits no scaling model"
    workload, accelerator, name = sorted(fitted)[0]
    graphs = {g.id: g.figure for g in _graphs(workloads.detail(run, workload))}
    scaling = graphs["workloads-scaling"]
    line = next(t for t in scaling["data"] if t.get("name") == accelerator)
    band = next(t for t in scaling["data"] if t.get("fill") == "toself" and t["name"] == f"{accelerator} interval")
    n = np.asarray(line["x"], dtype=float)
    pred, low, high = run.model(name).predict(n, return_interval=True)
    assert np.asarray(line["y"], dtype=float) == pytest.approx(pred)
    assert np.all(low <= pred) and np.all(pred <= high) and np.any(low < high)
    assert np.asarray(band["y"], dtype=float) == pytest.approx(np.concatenate([high, low[::-1]]))
    pm = run.model("power")
    pairs = [acc for wl, acc in pm.params_.index if wl == workload]
    power = graphs["workloads-power"]["data"]
    if pairs:  # the model's slowdown vs the cap, per accelerator it was fitted on
        time = next(t for t in power if t["name"] == f"{pairs[0]} time")
        assert np.asarray(time["y"], dtype=float) == pytest.approx(np.asarray(pm.slowdown(
            np.asarray(time["x"], dtype=float), workload, pairs[0]), dtype=float))
        assert time["x"][-1] == 1.0 and time["y"][-1] == pytest.approx(1.0)


def _graphs(component) -> list:
    """Every dcc.Graph in a component tree."""
    from dash import dcc

    if isinstance(component, list | tuple):
        return [g for c in component for g in _graphs(c)]
    if isinstance(component, dcc.Graph):
        return [component]
    children = getattr(component, "children", None)
    return [] if children is None or isinstance(children, str | int | float) else _graphs(children)


def test_node_page_shows_any_metric_of_the_node_picked_in_the_url(ctx):
    """Beyond the overview panels, any gauge or rate of the schema is one pick away (?metric=): its figure
    comes first, one line per GPU, each equal to the store's bucket means of that node alone (asked here
    without the tag filter the page uses, and filtered in pandas)."""
    reader = ctx.reader()
    host = sorted(reader.tag_values("gpu", "host"))[0]
    status, body, _, metric_options, search = node.update(
        reader, node.read({"node": host, "range": "3d", "metric": "gpu.power_watts"}), 1000)
    assert status is None and "metric=gpu.power_watts" in search
    assert "gpu.power_watts" in [o["value"] for o in metric_options]
    first = _graphs(body)[1].figure  # after the job timeline
    assert first["layout"]["title"]["text"] == "gpu.power_watts"
    w = timerange.resolve(reader, "3d", None, 1000)
    raw = reader.frame("gpu", ["power_watts"], w.start, w.end, every=w.every, by=["host", "gpu"])
    raw = raw[raw["host"] == host].dropna(subset=["power_watts"])
    # a series per GPU, named by all its tags ("gpu 0 uuid GPU-... vendor nvidia model ...")
    lines = {t["name"].split(" uuid ")[0]: t for t in first["data"]}
    assert sorted(lines) == sorted(f"gpu {g}" for g in raw["gpu"].unique()) and len(lines) == len(first["data"])
    for g, part in raw.groupby("gpu"):
        assert np.asarray(lines[f"gpu {g}"]["y"], dtype=float) == pytest.approx(part["power_watts"].to_numpy())
