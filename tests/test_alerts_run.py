"""`fleetwise alerts run`: the built-in evaluator over the embedded store and a real InfluxDB, posting to an
Alertmanager-compatible webhook receiver this test runs on 127.0.0.1. Each evaluation is `--once --at T` on
data written beforehand, so nothing sleeps: for-durations, no duplicate while firing, a restart that
neither re-fires nor forgets, resolve notices with endsAt, the history table, credentials never shown."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from agents.points import Point
from agents.stores.writers import open_writer
from analyzer.alerts.history import COLUMNS, load_alert_history
from fleetwise.cli import main
from tests.conftest import REPO

T0 = pd.Timestamp("2026-11-20T00:00:00Z")
STEP = pd.Timedelta(minutes=5)
BUSY_FROM = T0 + pd.Timedelta(hours=2)  # job 42 starts using its GPU
SECRET = "s3cret-Pa55"


class Receiver:
    """An Alertmanager-compatible endpoint: records every POST (path, Authorization, JSON body) and answers
    with the next status of `answers` (204 once they run out)."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        self.answers: list[int] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = outer.answers.pop(0) if outer.answers else 204
                outer.posts.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                    "type": self.headers.get("Content-Type"), "body": json.loads(body),
                                    "status": status})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, credentials: bool = True) -> str:
        auth = f"alertbot:{SECRET}@" if credentials else ""
        return f"http://{auth}127.0.0.1:{self.server.server_port}/api/v2/alerts"

    def delivered(self) -> list[dict]:
        return [p for p in self.posts if p["status"] < 300]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def job_gpu_points(t0: pd.Timestamp = T0) -> list[Point]:
    """Three GPUs of n1 every 5 minutes for 3 hours: job 42 holds GPU 0 (prolog) idle until BUSY_FROM, then
    at 80%; job 43 runs a process on GPU 1 with no allocation record, idle (not a held GPU); job 44 holds
    GPU 2 (kubelet) at 90%."""
    rows = [("42", "0", "prolog"), ("43", "1", "process"), ("44", "2", "kubelet")]
    points = []
    for t in pd.date_range(t0, t0 + pd.Timedelta(hours=3), freq=STEP):
        for job, gpu, source in rows:
            util = {"42": 0.0 if t < t0 + (BUSY_FROM - T0) else 0.8, "43": 0.0, "44": 0.9}[job]
            points.append(Point("job_gpu", {"host": "n1", "job": job, "scheduler": "slurm", "user": "alice",
                                            "gpu": gpu, "uuid": f"GPU-{gpu}"},
                                {"allocation_source": source, "utilization_ratio": util,
                                 "memory_used_bytes": 0 if util == 0 else 2**30}, t.value))
    return points


def write(store: str, points: list[Point]) -> None:
    sink = open_writer(store)
    try:
        sink.write(points)
    finally:
        sink.close()


def evaluate_at(store: str, state, at: pd.Timestamp, webhook: str, capsys) -> tuple[int, str]:
    status = main(["alerts", "run", "--store", store, "--state-dir", str(state), "--webhook", webhook, "--once",
                   "--at", at.isoformat()])
    out = capsys.readouterr()
    return status, out.out + out.err


def scenario(store: str, tmp_path, receiver: Receiver, capsys, caplog) -> None:
    write(store, job_gpu_points())
    state = tmp_path / "alerts"
    hook = receiver.url()
    caplog.set_level("INFO", logger="fleetwise.alerts")

    # T0+10m: job 42's GPU idle since T0 -> pending; GpuAllocatedIdle needs 60 minutes
    assert evaluate_at(store, state, T0 + pd.Timedelta(minutes=10), hook, capsys)[0] == 0
    assert receiver.posts == []
    pending = json.loads((state / "state.json").read_text())["alerts"]
    assert [a["state"] for a in pending.values()] == ["pending"]
    assert evaluate_at(store, state, T0 + pd.Timedelta(minutes=65), hook, capsys)[0] == 0
    assert receiver.posts == []  # 55 minutes pending: not yet

    # T0+70m: 60 minutes since the first evaluation that saw it -> fires, one POST with one alert
    fire_at = T0 + pd.Timedelta(minutes=70)
    status, out = evaluate_at(store, state, fire_at, hook, capsys)
    assert status == 0 and "1 fired, 0 resolved, 1 sent" in out
    (post,) = receiver.posts
    assert post["path"] == "/api/v2/alerts" and post["type"] == "application/json"
    assert post["auth"] == "Basic " + base64.b64encode(f"alertbot:{SECRET}".encode()).decode()
    (alert,) = post["body"]
    assert alert["labels"] == {"alertname": "GpuAllocatedIdle", "severity": "warning", "category": "waste",
                               "host": "n1", "job": "42", "scheduler": "slurm", "user": "alice", "gpu": "0",
                               "uuid": "GPU-0", "allocation_source": "prolog"}
    assert alert["annotations"]["summary"] == \
        "GPU 0 on n1 held by job 42 (alice, from prolog) ran under 5% for an hour"
    assert alert["annotations"]["runbook"].startswith("Ask the job's owner")
    assert pd.Timestamp(alert["startsAt"]) == fire_at
    assert "endsAt" not in alert
    assert alert["generatorURL"] == "http://127.0.0.1:8050/alerts?rule=GpuAllocatedIdle"

    # the next evaluation: still firing, nothing sent again
    status, out = evaluate_at(store, state, T0 + pd.Timedelta(minutes=75), hook, capsys)
    assert status == 0 and "0 fired, 0 resolved, 0 sent" in out
    assert len(receiver.posts) == 1

    # a restart: a new process on the same state directory neither re-fires nor forgets
    proc = subprocess.run([sys.executable, "-m", "fleetwise", "--log-level", "INFO", "alerts", "run", "--store",
                           store, "--state-dir", str(state), "--webhook", hook, "--once", "--at",
                           (T0 + pd.Timedelta(minutes=80)).isoformat()],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "0 fired, 0 resolved, 0 sent" in proc.stdout
    assert len(receiver.posts) == 1
    assert SECRET not in proc.stdout + proc.stderr

    # the receiver fails once: the resolve notice is kept and sent by the next evaluation
    receiver.answers = [500]
    resolve_at = BUSY_FROM + pd.Timedelta(minutes=10)
    status, out = evaluate_at(store, state, resolve_at, hook, capsys)
    assert status == 1 and "0 fired, 1 resolved, 0 sent" in out and "answered HTTP 500" in out
    assert len(receiver.delivered()) == 1
    status, out = evaluate_at(store, state, resolve_at + STEP, hook, capsys)
    assert status == 0 and "0 fired, 0 resolved, 1 sent" in out
    (resolved,) = receiver.delivered()[1]["body"]
    assert resolved["labels"] == alert["labels"]
    assert pd.Timestamp(resolved["startsAt"]) == fire_at
    assert pd.Timestamp(resolved["endsAt"]) == resolve_at
    # resolved and told: gone from the state (job 42's hourly mean now climbs through jobstats' bands, so
    # its efficiency rules may be pending, nothing else)
    left = json.loads((state / "state.json").read_text())["alerts"].values()
    assert {(a["rule"], a["state"]) for a in left} <= {("JobGpuEfficiencyPoor", "pending"),
                                                       ("JobGpuEfficiencyRed", "pending")}

    # nothing logged or printed shows the webhook's password
    logged = caplog.text + out
    assert SECRET not in logged and "alertbot:***@127.0.0.1" in logged

    # the history the dashboard and the weekly report read
    hist = load_alert_history(state)
    assert list(hist.columns) == COLUMNS and len(hist) == 1
    row = hist.iloc[0]
    assert (row.rule, row.severity, row.state) == ("GpuAllocatedIdle", "warning", "resolved")
    assert (row.starts_at, row.ends_at) == (fire_at, resolve_at)
    assert json.loads(row.labels) == {k: v for k, v in alert["labels"].items() if k not in ("alertname", "severity")}
    assert row.summary == alert["annotations"]["summary"]


def test_evaluator_on_the_embedded_store(tmp_path, receiver, capsys, caplog):
    scenario(f"embedded:{tmp_path / 'store'}", tmp_path, receiver, capsys, caplog)


@pytest.mark.services
def test_evaluator_on_a_real_influxdb(influxdb_server, tmp_path, receiver, capsys, caplog):
    from tests.store_helpers import create_database

    create_database(influxdb_server.url, "fleet")
    store = influxdb_server.url.replace("http://", "influxdb://") + "/fleet"
    scenario(store, tmp_path, receiver, capsys, caplog)


def test_history_while_firing_and_window_filter(tmp_path, receiver, capsys):
    store = f"embedded:{tmp_path / 'store'}"
    write(store, job_gpu_points())
    state = tmp_path / "alerts"
    for minutes in (0, 60):
        assert evaluate_at(store, state, T0 + pd.Timedelta(minutes=minutes), receiver.url(False), capsys)[0] == 0
    hist = load_alert_history(state)
    assert list(hist.columns) == COLUMNS
    assert hist["state"].tolist() == ["firing"] and hist["ends_at"].isna().all()
    assert str(hist["starts_at"].dtype) == "datetime64[ns, UTC]" and str(hist["ends_at"].dtype) == "datetime64[ns, UTC]"
    assert hist["starts_at"].iloc[0] == T0 + pd.Timedelta(minutes=60)
    # a firing alert is in every window from its start on, and in none that ends before it
    assert len(load_alert_history(state, start="2026-11-27", end="2026-11-28")) == 1
    assert len(load_alert_history(state, start="2026-11-19", end=T0 + pd.Timedelta(minutes=60))) == 0
    # a half-written last line (a crash mid-append) is skipped, the rest still counts
    with open(state / "history.jsonl", "a") as fh:
        fh.write('{"event": "resolved", "fingerp')
    assert len(load_alert_history(state)) == 1
    empty = load_alert_history(tmp_path / "nowhere")
    assert list(empty.columns) == COLUMNS and empty.empty


def test_running_loop_evaluates_and_stops_on_sigterm(tmp_path, receiver):
    import os
    import signal

    from tests.prom_helpers import wait_until

    store = f"embedded:{tmp_path / 'store'}"
    write(store, job_gpu_points())
    state = tmp_path / "alerts"
    # the webhook (with its password) from the environment, as the docs advise, not from argv
    env = {**os.environ, "FLEETWISE_ALERTS_WEBHOOK": receiver.url()}
    proc = subprocess.Popen([sys.executable, "-m", "fleetwise", "alerts", "run", "--store", store, "--state-dir",
                             str(state), "--interval", "0.5"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        # the data is days old: nothing is within the lookback now, so evaluations find nothing and say so in
        # an empty state file
        wait_until(lambda: (state / "state.json").exists(), timeout=60, what="the first evaluation")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert json.loads((state / "state.json").read_text()) == {"version": 1, "alerts": {}}
    assert receiver.posts == [] and SECRET not in out + err


def test_missing_store_and_bad_at_are_usage_errors(tmp_path, capsys):
    assert main(["alerts", "run", "--store", f"embedded:{tmp_path / 'none'}", "--once"]) == 2
    assert capsys.readouterr().err.strip() == \
        f"fleetwise alerts run: embedded:{tmp_path / 'none'}: no such store directory"
    assert main(["alerts", "run", "--store", f"embedded:{tmp_path}", "--once", "--at", "yesterday-ish"]) == 2
    assert "--at 'yesterday-ish': not a time" in capsys.readouterr().err
    assert main(["alerts", "run", "--store", "prometheus://127.0.0.1:9090", "--once"]) == 2
    assert "a Prometheus evaluates the rules itself" in capsys.readouterr().err


@pytest.mark.services
def test_a_real_alertmanager_takes_the_notices(tmp_path, receiver, capsys):
    """fleetwise -> Debian's Alertmanager (its v2 API validates the payload) -> the receiver, firing then
    resolved, on data ending now (Alertmanager keeps alerts by wall-clock time)."""
    from tests.prom_helpers import wait_until
    from tests.services import alertmanager

    t0 = pd.Timestamp.now(tz="UTC").floor("min") - pd.Timedelta(hours=3)
    store = f"embedded:{tmp_path / 'store'}"
    write(store, job_gpu_points(t0))
    state = tmp_path / "alerts"
    hook_for_am = receiver.url(credentials=False).replace("/api/v2/alerts", "/hook")
    with alertmanager(tmp_path, hook_for_am) as am:
        api = am.url + "/api/v2/alerts"
        for minutes in (10, 70):
            assert evaluate_at(store, state, t0 + pd.Timedelta(minutes=minutes), api, capsys)[0] == 0

        def am_alerts() -> list[dict]:
            with urllib.request.urlopen(api, timeout=10) as r:
                return [a for a in json.load(r) if a["labels"].get("alertname") == "GpuAllocatedIdle"]

        (held,) = wait_until(am_alerts, timeout=60, what="Alertmanager to hold the alert")
        assert held["labels"]["job"] == "42" and held["status"]["state"] == "active"
        assert pd.Timestamp(held["startsAt"]) == t0 + pd.Timedelta(minutes=70)
        assert held["annotations"]["summary"].startswith("GPU 0 on n1 held by job 42")

        def forwarded(status: str) -> list[dict]:
            return [p["body"] for p in receiver.posts if p["path"] == "/hook" and p["body"]["status"] == status]

        (group,) = wait_until(lambda: forwarded("firing"), timeout=60, what="Alertmanager to forward it")
        assert [a["labels"]["job"] for a in group["alerts"]] == ["42"]

        assert evaluate_at(store, state, t0 + pd.Timedelta(minutes=130), api, capsys)[0] == 0
        (done,) = wait_until(lambda: forwarded("resolved"), timeout=60, what="Alertmanager to forward the resolve")
        assert pd.Timestamp(done["alerts"][0]["endsAt"]) == t0 + pd.Timedelta(minutes=130)
        wait_until(lambda: not am_alerts(), timeout=60, what="the resolved alert to leave Alertmanager's list")


@pytest.mark.parametrize("content, problem", [
    ("{not json", "cannot read the alert state"),
    ('{"version": 1, "alerts": {"x": {"rule": "R", "colour": "red"}}}', "an alert entry is not one this version"),
])
def test_a_damaged_state_file_is_one_line_exit_1(tmp_path, capsys, content, problem):
    store = f"embedded:{tmp_path / 'store'}"
    write(store, job_gpu_points())
    state = tmp_path / "alerts"
    state.mkdir()
    (state / "state.json").write_text(content)
    assert main(["alerts", "run", "--store", store, "--state-dir", str(state), "--once",
                 "--at", T0.isoformat()]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(state / "state.json") in err[0] and problem in err[0], err
    assert (state / "state.json").read_text() == content  # left for the operator to look at


def test_resend_keeps_a_real_alertmanager_from_timing_the_alert_out(tmp_path, receiver, capsys):
    store = f"embedded:{tmp_path / 'store'}"
    write(store, job_gpu_points())
    state = tmp_path / "alerts"

    def at(minutes: int) -> int:
        t = T0 + pd.Timedelta(minutes=minutes)
        return main(["alerts", "run", "--store", store, "--state-dir", str(state), "--webhook",
                     receiver.url(False), "--once", "--at", t.isoformat(), "--resend", "120"])

    assert at(0) == 0 and at(60) == 0  # fires at 60
    assert at(61) == 0  # 1 minute later: within the resend period, nothing
    assert at(62) == 0  # 2 minutes after the last send: sent again
    capsys.readouterr()
    bodies = [p["body"] for p in receiver.posts]
    assert len(bodies) == 2
    for body, sent in zip(bodies, (60, 62), strict=True):
        (alert,) = body
        assert pd.Timestamp(alert["startsAt"]) == T0 + pd.Timedelta(minutes=60)
        # open until four resend periods after this send, as Prometheus sets it
        assert pd.Timestamp(alert["endsAt"]) == T0 + pd.Timedelta(minutes=sent + 8)


def test_an_unreachable_store_keeps_the_alerts_and_says_so_once(tmp_path, caplog, capsys):
    from tests.helpers import free_port

    state = tmp_path / "alerts"
    state.mkdir()
    firing = {"rule": "GpuAllocatedIdle", "severity": "warning", "labels": {"alertname": "GpuAllocatedIdle"},
              "annotations": {"summary": "s"}, "value": 0.0, "state": "firing", "active_since": 0.0,
              "starts_at": 3600.0}
    (state / "state.json").write_text(json.dumps({"version": 1, "alerts": {"f": firing}}))
    caplog.set_level("ERROR", logger="fleetwise.alerts")
    store = f"influxdb://127.0.0.1:{free_port()}/fleet"  # nothing listens there
    assert main(["alerts", "run", "--store", store, "--state-dir", str(state), "--once", "--at",
                 T0.isoformat()]) == 1
    assert "19 rules failed" in capsys.readouterr().out
    errors = [r for r in caplog.records if r.name == "fleetwise.alerts"]
    assert len(errors) == 1 and errors[0].getMessage().startswith("19 rule(s) not evaluated (GpuAllocatedIdle, ")
    # a missing answer resolves nothing
    assert json.loads((state / "state.json").read_text())["alerts"]["f"]["state"] == "firing"
