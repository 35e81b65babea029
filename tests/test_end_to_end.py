"""The whole system on real servers, end to end (issue 12, docs/validation.md "End to end on one machine").

One module-scoped fleet: a real influxd and a real Prometheus on 127.0.0.1, two agent processes as two nodes
(tests/e2e_fleet.py: fixture trees, different host names; the GPU node's one A100 is held by Slurm job 42 through
the prolog's /run/gpustat record and left idle), sampling every second. influxd is killed with SIGKILL while they
run and started again on the same data dir and port. Then each downstream step runs as the operator runs it, a
`fleetwise` subprocess against that InfluxDB, and is checked against what the agents wrote:

- storage: per host and measurement, InfluxDB holds exactly the points the agents committed (their log's per-round
  counts), every round's time, those of the outage included; the spools end empty, nothing dropped;
- Prometheus scraped both agents and sees the held GPU idle;
- analyze: job 42 in the efficiency table with 0% GPU utilization, its GPU-hours equal to its span in InfluxDB;
- recommend: an idle-GPU recommendation naming job 42's GPU-hours;
- alerts run: GpuAllocatedIdle fires once for the held GPU through a webhook receiver;
- report: the week's allocated GPU-hours equal job 42's, and the alert is listed;
- dashboard: in headless Chromium, /workloads shows job 42 at 0% and /alerts lists the firing alert.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import REPO, require_binary
from tests.e2e_fleet import (
    CPU_HOST,
    DB,
    GPU_HOST,
    IDLE_GPU,
    IDLE_JOB,
    Agent,
    influx_series,
    kill_influxd,
    spool_rows,
    start_agent,
    wait_rounds,
)
from tests.helpers import free_port, wait_http
from tests.prom_helpers import prom_query, wait_until
from tests.services import influxd, prometheus

pytestmark = pytest.mark.services

ROUNDS_BEFORE, ROUNDS_AFTER = 15, 15  # 1 s rounds before the kill and after the restart
OUTAGE_BATCHES = 3  # spooled batches each agent must hold before influxd comes back
ALERT_FOR_SECONDS = 15  # GpuAllocatedIdle's for-duration here (60 min in the shipped pack)
EVERY_SECONDS = 10  # the analyzer's bucket (--every): job spans are whole buckets


@dataclass
class Fleet:
    influx_url: str
    store: str
    workdir: Path
    agents: dict[str, Agent]
    outage_ns: tuple[int, int]  # influxd killed .. answering again
    series: dict[tuple[str, str], dict[str, list[int]]]  # (host, measurement) -> series -> its point times

    @property
    def stored(self) -> dict[tuple[str, str], list[int]]:
        """(host, measurement) -> the time of every point InfluxDB holds (one per series and time)."""
        return {k: [t for times in per.values() for t in times] for k, per in self.series.items()}
    prometheus: dict[str, list[dict]]  # PromQL -> result, asked while the agents ran
    state: Path
    analyze: subprocess.CompletedProcess


def fleetwise(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fleetwise", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def spool_metric(agent: Agent, name: str) -> float:
    value = agent.metric(f"fleetwise_spool_{name}")
    return -1.0 if value is None else value


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Iterator[Fleet]:
    require_binary("influxd")
    require_binary("prometheus")
    work = tmp_path_factory.mktemp("e2e")
    (work / "influxd").mkdir()
    (work / "prometheus").mkdir()
    with influxd(work / "influxd") as server:
        agents = {h: start_agent(work, h, server.url) for h in (GPU_HOST, CPU_HOST)}
        asked: dict[str, list[dict]] = {}
        try:
            targets = [f"127.0.0.1:{a.port}" for a in agents.values()]
            with prometheus(work / "prometheus", targets) as prom:
                fleet_agents = list(agents.values())
                wait_rounds(fleet_agents, ROUNDS_BEFORE, timeout=240)
                assert agents[GPU_HOST].metric("fleetwise_job_gpu_utilization_ratio") == 0.0, \
                    f"the GPU node's agent reports no idle held GPU: {agents[GPU_HOST].log.read_text()[-3000:]}"
                killed = time.time_ns()
                kill_influxd(server)
                # The outage is real for both agents: each spools rounds it cannot send.
                wait_until(lambda: all(spool_metric(a, "queued_batches") >= OUTAGE_BATCHES for a in fleet_agents),
                           timeout=120, what=f"{OUTAGE_BATCHES} spooled batches on every agent while influxd is down")
                server.start_again()
                wait_http(server.url + "/ping", timeout=120, proc=server.proc, header="X-Influxdb-Version")
                back = time.time_ns()
                wait_rounds(fleet_agents, ROUNDS_AFTER, timeout=240)
                wait_until(lambda: all(spool_metric(a, "queued_batches") == 0 for a in fleet_agents),
                           timeout=120, what="every agent's spool drained after the restart")
                for q in ('up{job="fleetwise"}', "fleetwise_job_gpu_utilization_ratio",
                          "fleetwise_gpu_utilization_ratio"):
                    asked[q] = wait_until(lambda q=q: prom_query(prom.url, q), timeout=60, what=f"Prometheus: {q}")
        finally:
            codes = {h: a.stop() for h, a in agents.items()}
        assert codes == {GPU_HOST: 0, CPU_HOST: 0}, {h: a.log.read_text()[-3000:] for h, a in agents.items()}
        store = f"influxdb://{server.url.removeprefix('http://')}/{DB}"
        state = work / "state"
        # A fleet of three jobs: a workload's size is recommended from one job, not the method's usual minimum.
        config = work / "analyze.toml"
        config.write_text("[recommend]\nmin_jobs = 1\n")
        analyzed = fleetwise("analyze", "--store", store, "--since", "30m", "--state", str(state), "--jobs", "1",
                             "--every", f"{EVERY_SECONDS}s", "--config", str(config))
        yield Fleet(server.url, store, work, agents, (killed, back), influx_series(server.url), asked, state,
                    analyzed)


# -- what the agents wrote, and what InfluxDB and Prometheus hold ----------------------------------------------


def test_no_point_lost_across_the_influxd_restart(fleet: Fleet):
    for host, agent in fleet.agents.items():
        assert "spool empty" in agent.log.read_text(), f"{host} stopped with unsent batches"
        rounds = {t for _, t, _ in agent.rounds}
        committed = sum(n for _, _, n in agent.rounds)
        assert len(rounds) == len(agent.rounds) >= ROUNDS_BEFORE + ROUNDS_AFTER
        per_measurement = {m: times for (h, m), times in fleet.stored.items() if h == host}
        held = sum(len(times) for times in per_measurement.values())
        assert held == committed, (host, held, committed, {m: len(t) for m, t in per_measurement.items()})
        # Measurements sampled every round hold every round, none twice; the others only rounds' times.
        for m in ("memory", "spool", "agent", "job", *(("gpu", "job_gpu") if host == GPU_HOST else ())):
            times = per_measurement.get(m, [])
            series = len(times) // max(len(set(times)), 1)
            assert sorted(set(times)) == sorted(rounds) and len(times) == series * len(rounds), (host, m)
        for m, times in per_measurement.items():
            assert set(times) <= rounds, (host, m, sorted(set(times) - rounds)[:3])
        # Every series, whatever its measurement, holds every round from its first to the last, once each
        # (a counter's rate starts one round late; the fixture trees hold still, so nothing ends early).
        ordered = sorted(rounds)
        for (h, m), per_series in fleet.series.items():
            if h != host:
                continue
            for tags, times in per_series.items():
                first = ordered.index(min(times))
                assert first <= 1 and sorted(times) == ordered[first:], (host, m, tags, first)
        killed, back = fleet.outage_ns
        during = [t for t in rounds if killed < t < back]
        assert during, f"{host}: no round fell inside the outage"
        assert set(during) <= set(per_measurement["memory"])


def test_spool_counted_nothing_dropped(fleet: Fleet):
    """The agents' own counters agree with their logs: whenever a round found the spool empty, every point of the
    rounds before it had been acknowledged, and counted once (sent_points), whatever the outage did in between."""
    for host, agent in fleet.agents.items():
        rows = spool_rows(fleet.influx_url, host)
        assert len(rows) == len(agent.rounds)
        settled = [r for r in rows if r["queued_batches"] == 0 and r["time"] > fleet.outage_ns[1]]
        assert settled, f"{host}: no round after the restart found its spool empty"
        for r in settled:
            before = sum(n for _, t, n in agent.rounds if t < r["time"])
            assert r["sent_points"] == before, (host, r, before)
        last = max(rows, key=lambda r: r["time"])
        assert (last["dropped_points"], last["dropped_batches"], last["dead_letter_points"]) == (0, 0, 0), last
        assert max(r["queued_batches"] for r in rows) >= OUTAGE_BATCHES  # the outage did reach the spool


def test_prometheus_scraped_both_agents(fleet: Fleet):
    up = {r["metric"]["instance"]: float(r["value"][1]) for r in fleet.prometheus['up{job="fleetwise"}']}
    assert up == {f"127.0.0.1:{a.port}": 1.0 for a in fleet.agents.values()}
    gpu_port = f"127.0.0.1:{fleet.agents[GPU_HOST].port}"
    # The agent's job label becomes exported_job: Prometheus keeps job for the scrape job's name.
    held = fleet.prometheus["fleetwise_job_gpu_utilization_ratio"]
    assert [(r["metric"]["instance"], r["metric"]["exported_job"], float(r["value"][1])) for r in held] == \
        [(gpu_port, IDLE_JOB, 0.0)], held
    gpu = fleet.prometheus["fleetwise_gpu_utilization_ratio"]
    assert [(r["metric"]["instance"], r["metric"]["uuid"], float(r["value"][1])) for r in gpu] == \
        [(gpu_port, IDLE_GPU["uuid"], 0.0)]


# -- downstream steps ----------------------------------------------------------------------------------------


def idle_job_gpu_hours(fleet: Fleet, within: tuple[int, int] | None = None) -> float:
    """Job 42's GPU-hours worked out from InfluxDB's points: one GPU held from the start of the analyzer's bucket
    (--every) of its first job_gpu point to the end of the bucket of its last one (docs/jobtable.md); with
    `within` (ns), only the part inside it."""
    times = fleet.stored[(GPU_HOST, "job_gpu")]
    every = EVERY_SECONDS * 10**9
    start, end = min(times) // every * every, (max(times) // every + 1) * every
    if within is not None:
        start, end = max(start, within[0]), min(end, within[1])
    return max(end - start, 0) / 3.6e12


def test_analyze_finds_the_idle_gpu(fleet: Fleet):
    assert fleet.analyze.returncode == 0, fleet.analyze.stderr[-3000:]
    from analyzer.state import load_latest

    eff = load_latest(fleet.state).table("efficiency")
    row = eff[eff["job"].astype(str) == IDLE_JOB]
    assert len(row) == 1, eff.to_string()
    row = row.iloc[0]
    assert row["gpu_utilization"] == pytest.approx(0.0, abs=1e-9)
    assert row["gpu_grade"] == "red"
    held = idle_job_gpu_hours(fleet)
    assert row["gpu_hours_held"] == pytest.approx(held, rel=1e-6), (row.to_dict(), held)
    assert row["gpu_hours_idle"] == pytest.approx(held, rel=1e-6)  # every sample of it at 0%


def idle_job_workload(fleet: Fleet) -> str:
    from analyzer.state import load_latest

    eff = load_latest(fleet.state).table("efficiency")
    return str(eff.loc[eff["job"].astype(str) == IDLE_JOB, "workload"].iloc[0])


def test_recommend_names_the_idle_gpu(fleet: Fleet):
    assert fleet.analyze.returncode == 0, fleet.analyze.stderr[-3000:]
    done = fleetwise("recommend", "--state", str(fleet.state), "--kind", "gpu", "--format", "json")
    assert done.returncode == 0, done.stderr
    recs = json.loads(done.stdout)["recommendations"]
    idle = [r for r in recs if r["evidence"].get("recommended_gpus") == 0]
    assert [(r["target"], r["accelerator"]) for r in idle] == [(idle_job_workload(fleet), "a100-80gb")], recs
    assert idle[0]["evidence"]["idle_gpu_hours"] == pytest.approx(idle_job_gpu_hours(fleet), abs=1e-5)
    assert idle[0]["evidence"]["utilization_peak"] == 0.0 and idle[0]["slowdown"] == 0.0


# -- alerts, report, dashboard (all landed: nothing in this module is skipped) -------------------------------


def iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat()


class Receiver:
    """An Alertmanager-compatible webhook receiver on 127.0.0.1: keeps every POSTed JSON body."""

    def __init__(self) -> None:
        bodies: list = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.bodies = bodies
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/api/v2/alerts"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class AlertsRun:
    state_dir: Path
    runs: list[subprocess.CompletedProcess]  # at the GPU job's start, then at its last round
    received: list  # webhook bodies


def e2e_rules(work: Path) -> Path:
    """The shipped rule pack with the agents' 1 s interval and GpuAllocatedIdle's for-duration cut from 60 min to
    FOR_SECONDS, which a one-minute fleet can reach; every expression as shipped."""
    import yaml

    spec = importlib.util.find_spec("analyzer.alerts")
    pack = yaml.safe_load((Path(next(iter(spec.submodule_search_locations))) / "rules" / "default.yaml").read_text())
    pack["interval"] = "1s"
    idle = [r for r in pack["rules"] if r["name"] == "GpuAllocatedIdle"]
    assert len(idle) == 1, [r["name"] for r in pack["rules"]]
    idle[0]["for"] = f"{ALERT_FOR_SECONDS}s"
    path = work / "rules.yaml"
    path.write_text(yaml.safe_dump(pack, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def alerts(fleet: Fleet) -> AlertsRun:
    """`fleetwise alerts run --once` twice over the fleet's InfluxDB, as an evaluator that ran through the job
    would have: shortly after the GPU job's first sample (GpuAllocatedIdle pending) and at its last one (firing,
    one notice to the webhook)."""
    times = fleet.stored[(GPU_HOST, "job_gpu")]
    first, last = min(times), max(times)
    assert last - first >= (ALERT_FOR_SECONDS + 5) * 10**9, "the fleet ran too short for the alert's for-duration"
    rules, state = e2e_rules(fleet.workdir), fleet.workdir / "alerts"
    receiver = Receiver()
    try:
        runs = [fleetwise("alerts", "run", "--store", fleet.store, "--rules", str(rules), "--webhook", receiver.url,
                          "--state-dir", str(state), "--once", "--at", iso(at))
                for at in (first + 2 * 10**9, last)]
    finally:
        receiver.close()
    return AlertsRun(state, runs, receiver.bodies)


def test_alerts_fire_for_the_idle_gpu(fleet: Fleet, alerts: AlertsRun):
    for done in alerts.runs:
        assert done.returncode == 0, done.stderr[-3000:]
    pushed = [a for body in alerts.received for a in body]
    # The rest of the shipped pack stays quiet on this fleet: the outage was shorter than any for-duration.
    assert {a["labels"].get("alertname") for a in pushed} == {"GpuAllocatedIdle"}, pushed
    idle = [a for a in pushed if a["labels"].get("alertname") == "GpuAllocatedIdle"]
    assert [(a["labels"]["host"], a["labels"]["job"], a["labels"]["gpu"]) for a in idle] == \
        [(GPU_HOST, IDLE_JOB, "0")], pushed
    assert "endsAt" not in idle[0]  # firing, not resolved
    # pending at the first evaluation, firing at the second: the notice went out once, at the second
    assert [b for b in alerts.received if any(a["labels"].get("alertname") == "GpuAllocatedIdle" for a in b)] \
        == [alerts.received[-1]]


def test_report_gpu_hours_equal_the_held_gpu(fleet: Fleet, alerts: AlertsRun):
    assert fleet.analyze.returncode == 0, fleet.analyze.stderr[-3000:]
    first = min(fleet.stored[(GPU_HOST, "job_gpu")])
    year, week, _ = dt.datetime.fromtimestamp(first / 1e9, dt.UTC).isocalendar()
    name = f"{year}-W{week:02d}"
    monday = dt.datetime.fromisocalendar(year, week, 1).replace(tzinfo=dt.UTC)
    week_ns = (int(monday.timestamp()) * 10**9, int((monday + dt.timedelta(days=7)).timestamp()) * 10**9)
    out = fleet.workdir / "report"
    args = ["report", "--week", name, "--store", fleet.store, "--state", str(fleet.state), "--out", str(out)]
    args += ["--alerts-state", str(alerts.state_dir)]
    done = fleetwise(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    print(done.stdout)
    import pandas as pd

    pools = pd.read_csv(next(out.glob(f"*{name}*gpu-hours*.csv")))
    row = pools[pools["pool"].astype(str).str.contains("a100-80gb")]
    assert len(row) == 1, pools.to_string()
    held = idle_job_gpu_hours(fleet, within=week_ns)  # all of it, unless the fleet ran across Sunday midnight
    assert row["allocated_gpu_hours"].iloc[0] == pytest.approx(held, rel=1e-6), pools.to_string()
    assert row["used_gpu_hours"].iloc[0] == pytest.approx(0.0, abs=1e-9)
    html = next(out.glob(f"*{name}*.html")).read_text()
    assert name in html
    assert "GpuAllocatedIdle" in html


# The efficiency grid's row for a job, as the browser shows it: (job cell, GPU utilization cell) per matching row.
GRID_ROW_JS = """var out = [], want = arguments[0];
document.querySelectorAll('#workloads-grid .ag-cell[col-id="job"]').forEach(function (cell) {
  if (cell.textContent.trim() !== want) { return; }
  var index = cell.closest('.ag-row').getAttribute('row-index');
  var util = document.querySelector('#workloads-grid .ag-row[row-index="' + index + '"] '
                                    + '.ag-cell[col-id="gpu_utilization"]');
  out.push([cell.textContent.trim(), util ? util.textContent.trim() : null]);
});
return out;"""


def test_dashboard_shows_the_idle_gpu_in_chromium(fleet: Fleet, alerts: AlertsRun, tmp_path: Path):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.browser import chromium, console_errors, dash_errors

    assert fleet.analyze.returncode == 0, fleet.analyze.stderr[-3000:]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "dashboard.log"
    args = ["dashboard", "--store", fleet.store, "--state", str(fleet.state), "--listen", f"127.0.0.1:{port}"]
    args += ["--alerts", str(alerts.state_dir)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "fleetwise", *args], cwd=REPO, stdout=log,
                                stderr=subprocess.STDOUT)

    def shown(browser, page: str, what: str, probe):
        """probe(driver)'s first truthy answer on `page`; on timeout, what the page and the server said."""
        browser.get(base + page)
        try:
            return WebDriverWait(browser, 120, poll_frequency=0.25).until(probe)
        except TimeoutException:
            raise AssertionError(f"{page}: no {what} after 120 s; the page says: "
                                 f"{browser.find_element('tag name', 'body').text[:2000]!r}; dashboard log: "
                                 f"{log_path.read_text()[-2000:]}") from None
        finally:
            browser.save_screenshot(str(tmp_path / f"{page.strip('/')}.png"))

    try:
        wait_http(base + "/", timeout=120, proc=proc)
        with chromium(tmp_path / "profile") as browser:
            rows = shown(browser, "/workloads", f"grid row for job {IDLE_JOB}",
                         lambda d: d.execute_script(GRID_ROW_JS, IDLE_JOB))
            assert rows == [[IDLE_JOB, "0%"]], rows
            assert dash_errors(browser) == [] and console_errors(browser) == []
            table = shown(browser, "/alerts", "alerts table",
                          lambda d: [e.text for e in d.find_elements("css selector", "#alerts-table tbody tr")])
            idle = [r for r in table if "GpuAllocatedIdle" in r]
            assert len(idle) == 1 and "firing" in idle[0] and GPU_HOST in idle[0], table
            assert dash_errors(browser) == [] and console_errors(browser) == []
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
