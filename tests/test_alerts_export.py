"""`fleetwise alerts export --format prometheus`: promtool accepts the rules and its unit tests (input series,
expected alerts, tests/fixtures/alerts/promtool_tests.yaml) pass for every rule of the default pack; a real
Prometheus scraping a real agent on a fixture tree fires the InfiniBand link-down alert."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest
import yaml

from analyzer.alerts.promql import export_prometheus
from analyzer.alerts.rules import RuleSet, default_rules_path, load_rules
from tests.conftest import FIXTURES, REPO, require_binary
from tests.helpers import free_port, wait_http
from tests.prom_helpers import wait_until
from tests.services import prometheus

PROMTOOL_TESTS = FIXTURES / "alerts" / "promtool_tests.yaml"


def promtool_tests(rules: RuleSet, workdir: Path, rules_text: str) -> Path:
    """The fixture's unit tests next to the exported rules, each expected alert given its rule's runbook line
    (the summaries are in the fixture, worked out by hand)."""
    (workdir / "rules.yaml").write_text(rules_text)
    doc = yaml.safe_load(PROMTOOL_TESTS.read_text())
    by = rules.by_name()
    for group in doc["tests"]:
        for t in group["alert_rule_test"]:
            for a in t["exp_alerts"]:
                a["exp_annotations"]["runbook"] = by[t["alertname"]].runbook
    path = workdir / "tests.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([require_binary("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_cli_export_passes_promtool_check_rules(tmp_path):
    out = tmp_path / "fleetwise.rules.yml"
    proc = subprocess.run([sys.executable, "-m", "fleetwise", "alerts", "export", "--format", "prometheus",
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    checked = promtool("check", "rules", str(out), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(load_rules().rules)} rules found" in checked.stdout
    doc = yaml.safe_load(out.read_text())
    exported = {r["alert"]: r for r in doc["groups"][0]["rules"]}
    # names as the agent serves them on /metrics (docs/metrics.md): counters end in _total
    assert exported["GpuEccUncorrectedErrors"]["expr"] == \
        "increase(fleetwise_gpu_ecc_uncorrected_errors_total[10m]) > 0"
    assert exported["GpuAllocatedIdle"]["for"] == "1h"
    assert exported["GpuAllocatedIdle"]["labels"] == {"severity": "warning", "category": "waste"}
    assert "group_left(allocation_source) fleetwise_job_gpu_info{allocation_source!=\"process\"}" in \
        exported["GpuAllocatedIdle"]["expr"]
    assert exported["FilesystemAlmostFull"]["expr"] == "fleetwise_filesystem_used_ratio > 0.9"


def test_export_writes_through_a_pipe_instead_of_replacing_it(tmp_path):
    # `--out /dev/null` as root once replaced the device with a regular file (write temp, rename over it):
    # a FIFO stands in for the device, so the test cannot break the machine when it fails.
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    proc = subprocess.run([sys.executable, "-m", "fleetwise", "alerts", "export", "--format", "prometheus",
                           "--out", str(fifo)], cwd=REPO, capture_output=True, text=True, timeout=120)
    reader.join(timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert received and yaml.safe_load(received[0])["groups"][0]["rules"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.fifo"]


def test_every_rule_has_a_promtool_unit_test_that_fires_it():
    doc = yaml.safe_load(PROMTOOL_TESTS.read_text())
    fired = {t["alertname"] for g in doc["tests"] for t in g["alert_rule_test"] if t["exp_alerts"]}
    assert fired == set(load_rules().by_name())


def test_promtool_unit_tests_pass_for_every_rule(tmp_path):
    rules = load_rules()
    tests = promtool_tests(rules, tmp_path, export_prometheus(rules))
    result = promtool("test", "rules", str(tests), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("rule, wrong", [
    ("GpuAllocatedIdle", 'job_gpu.utilization_ratio < 0.05'),  # forgets the allocation source
    ("GpuThermalThrottling", "bitand(gpu.throttle_reasons, 0x6C) > 0"),  # counts the power cap as heat
    ("InfinibandLinkDown", "infiniband.state != 4"),  # pages for a port disabled on purpose
    ("NodeSilent", "min by (host) (time_since(agent.last_success_timestamp_seconds[1d])) > 30 intervals"),
])
def test_promtool_unit_tests_catch_a_wrong_rule(tmp_path, rule, wrong):
    rules = load_rules()
    broken = tuple(dataclasses.replace(r, expr=_parse(wrong)) if r.name == rule else r for r in rules.rules)
    tests = promtool_tests(rules, tmp_path, export_prometheus(RuleSet(rules.path, rules.interval, broken)))
    result = promtool("test", "rules", str(tests), cwd=tmp_path)
    assert result.returncode != 0
    assert f"alertname: {rule}," in result.stdout + result.stderr


def _parse(text: str):
    from analyzer.alerts.expr import parse

    return parse(text, interval=10)


# ---------------------------------------------------------------- end to end: agent -> Prometheus -> alert

@pytest.mark.services
def test_prometheus_scraping_a_real_agent_fires_the_link_down_alert(tmp_path):
    # the x86_64 fixture tree, with mlx5_0 port 1 unplugged: DOWN and Polling, as the kernel shows it
    root = tmp_path / "node"
    shutil.copytree(FIXTURES / "host" / "x86_64", root, symlinks=True)
    port = root / "sys" / "class" / "infiniband" / "mlx5_0" / "ports" / "1"
    (port / "state").write_text("1: DOWN\n")
    (port / "phys_state").write_text("2: Polling\n")

    # the pack's rule as it stands, with a 1 s for-duration, exported by the command line
    (link_down,) = [r for r in yaml.safe_load(default_rules_path().read_text())["rules"]
                    if r["name"] == "InfinibandLinkDown"]
    source = tmp_path / "link.yaml"
    source.write_text(yaml.safe_dump({"rules": [{**link_down, "for": "1s"}]}))
    rule_file = tmp_path / "fleetwise.rules.yml"
    exported = subprocess.run([sys.executable, "-m", "fleetwise", "alerts", "export", "--rules", str(source),
                               "--out", str(rule_file)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert exported.returncode == 0, exported.stderr

    listen = free_port()
    with open(tmp_path / "agent.log", "wb") as log:
        agent = subprocess.Popen(
            [sys.executable, "-m", "fleetwise", "agent", "--listen", f":{listen}", "--interval", "1",
             "--proc-root", str(root / "proc"), "--sys-root", str(root / "sys"), "--collectors", "infiniband"],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{listen}/metrics", timeout=60, proc=agent)
        # scrapes every 3 s (each may take up to 3 s on a loaded machine: a failed scrape marks the series stale
        # and sends the alert back to inactive), rules evaluated as often
        with prometheus(tmp_path, [f"127.0.0.1:{listen}"], scrape_interval="3s", rule_files=[rule_file]) as prom:
            def get(path: str) -> dict:
                with urllib.request.urlopen(prom.url + "/api/v1" + path, timeout=10) as r:
                    return json.load(r)["data"]

            def firing():
                return [a for a in get("/alerts")["alerts"] if a["state"] == "firing"]

            try:
                (alert,) = wait_until(firing, timeout=150, what="InfinibandLinkDown firing in Prometheus")
            except AssertionError as e:
                raise AssertionError(f"{e}; alerts {get('/alerts')}; targets {get('/targets')['activeTargets']}; "
                                     f"rules {get('/rules')}") from None
            assert alert["labels"]["alertname"] == "InfinibandLinkDown"
            assert (alert["labels"]["device"], alert["labels"]["port"]) == ("mlx5_0", "1")
            assert alert["labels"]["severity"] == "critical"
            assert float(alert["value"]) == 1.0  # the port's state number: DOWN
            assert alert["annotations"]["summary"] == (
                f"InfiniBand port mlx5_0/1 on 127.0.0.1:{listen} is not active (state 1)")
            # the two ACTIVE ports of the tree (mlx5_2, i40iw0) stay quiet
            assert len(firing()) == 1
    finally:
        agent.kill()
        agent.wait()
