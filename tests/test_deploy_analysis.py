"""deploy/ for the analysis side: the systemd units and timers, the weekly report script and its cron line,
every Kubernetes manifest against the Kubernetes schemas, the container build files, and the InfluxDB 1.x
retention/downsampling file against a real influxd."""

from __future__ import annotations

import configparser
import copy
import os
import re
import shlex
import subprocess
import time
import tomllib
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from agents.config import load_config
from fleetwise.cli import build_parser
from tests.conftest import REPO, require_binary
from tests.store_helpers import create_database, influx_query, write_lines
from tests.test_deploy_files import INSTALLED_BINARIES

DEPLOY = REPO / "deploy"
SYSTEMD = DEPLOY / "systemd"
REPORT_SCRIPT = DEPLOY / "report" / "fleetwise-weekly-report.sh"
# Kubernetes 1.30: CronJob.spec.timeZone is GA since 1.27; the bundled schemas go to 1.37.
K8S_VERSION = "1.30"


def read_unit(name: str) -> configparser.SectionProxy:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read_string((SYSTEMD / name).read_text())
    return unit


def unit_lines(name: str, key: str) -> list[str]:
    """Every value of a key that may repeat (configparser keeps only the last)."""
    return [line.split("=", 1)[1] for line in (SYSTEMD / name).read_text().splitlines()
            if line.startswith(key + "=")]


ANALYSIS_SERVICES = {
    # unit: where it may write (ReadWritePaths), or "" for nowhere
    "fleetwise-dashboard.service": "",
    "fleetwise-alerts.service": "/var/lib/fleetwise/alerts",
    "fleetwise-analyze.service": "/var/lib/fleetwise/state",
    "fleetwise-report.service": "/var/lib/fleetwise/reports /var/cache/fleetwise/report",
}


@pytest.mark.parametrize("name", sorted(ANALYSIS_SERVICES))
def test_analysis_units_are_hardened_and_write_only_where_they_must(name: str):
    service = read_unit(name)["Service"]
    assert service["ProtectSystem"] == "strict"
    assert service["NoNewPrivileges"] == "true"
    assert service["User"] == "fleetwise" and service.get("DynamicUser", "no") == "no"
    assert service["CapabilityBoundingSet"] == "" and service["PrivateTmp"] == "true"
    assert service.get("ReadWritePaths", "") == ANALYSIS_SERVICES[name]
    # StateDirectory= would make its directory writable too: only where the unit writes.
    state_dirs = ["/var/lib/" + d for d in service.get("StateDirectory", "").split()]
    assert all(d in ANALYSIS_SERVICES[name].split() for d in state_dirs), state_dirs
    # No secret on a command line: `ps` shows it to every user.
    assert not re.search(r"password|token|secret", service["ExecStart"], re.I), service["ExecStart"]
    assert service["EnvironmentFile"] == "-/etc/fleetwise/analysis.env"


# systemd's own exposure score (0 = locked down, 10 = unprotected), offline on the unit file. The report stays
# higher because Chromium needs namespaces and more system calls for the PDF's figures.
EXPOSURE_AT_MOST = {"fleetwise-dashboard.service": 2.0, "fleetwise-alerts.service": 2.0,
                    "fleetwise-analyze.service": 2.0, "fleetwise-report.service": 4.0, "fleetwise-agent.service": 4.0}


@pytest.mark.parametrize("name", sorted(EXPOSURE_AT_MOST))
def test_systemd_exposure_score(tmp_path: Path, name: str):
    analyze = require_binary("systemd-analyze")
    text = (SYSTEMD / name).read_text()
    for binary in INSTALLED_BINARIES:
        text = text.replace(binary, "/bin/true")
    (tmp_path / name).write_text(text)
    out = subprocess.run([analyze, "security", "--offline=true", "--no-pager", str(tmp_path / name)],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "LC_ALL": "C"})
    (score,) = re.findall(r"Overall exposure level for \S+: ([0-9.]+)", out.stdout + out.stderr)
    assert float(score) <= EXPOSURE_AT_MOST[name], out.stdout[-2000:]


def test_dashboard_password_is_a_systemd_credential_and_it_binds_loopback():
    service = read_unit("fleetwise-dashboard.service")["Service"]
    assert unit_lines("fleetwise-dashboard.service", "LoadCredential") == [
        "dashboard-password:/etc/fleetwise/credentials/dashboard-password"]
    assert "FLEETWISE_DASHBOARD_PASSWORD_FILE=%d/dashboard-password" in unit_lines(
        "fleetwise-dashboard.service", "Environment")
    assert "--listen 127.0.0.1:8050" in service["ExecStart"]


def test_analyze_unit_and_cronjob_run_the_real_analyze_command_line():
    """The argument lists parse with fleetwise's own parser: a renamed option would fail here."""
    parser = build_parser()
    argv = shlex.split(read_unit("fleetwise-analyze.service")["Service"]["ExecStart"])[1:]
    args = parser.parse_args([a.replace("${FLEETWISE_STORE_URL}", "embedded:/x") for a in argv])
    assert (args.command, args.store, args.since, args.state) == ("analyze", "embedded:/x", "7d",
                                                                  "/var/lib/fleetwise/state")
    cron = manifests()["CronJob", "fleetwise-analyze"]
    (container,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    args = parser.parse_args([a.replace("$(FLEETWISE_STORE_URL)", "influxdb://i:8086/fleet")
                              for a in container["args"]])
    assert (args.command, args.state, args.jobs) == ("analyze", "/var/lib/fleetwise/state", 2)


@pytest.mark.parametrize(("unit", "expected"), [
    ("fleetwise-alerts.service", {"command": "alerts", "alerts_command": "run",
                                  "state_dir": "/var/lib/fleetwise/alerts", "webhook": None}),
    ("fleetwise-dashboard.service", {"command": "dashboard", "state": "/var/lib/fleetwise/state",
                                     "alerts": "/var/lib/fleetwise/alerts"}),
])
def test_long_running_units_and_pods_use_the_real_command_lines(unit: str, expected: dict):
    parser = build_parser()
    argv = shlex.split(read_unit(unit)["Service"]["ExecStart"])[1:]
    args = vars(parser.parse_args([a.replace("${FLEETWISE_STORE_URL}", "embedded:/x") for a in argv]))
    assert {k: args[k] for k in expected} == expected and args["store"] == "embedded:/x"
    (container,) = pod_specs()[unit.removesuffix(".service")]["containers"]
    pod_args = [a.replace("$(FLEETWISE_STORE_URL)", "influxdb://i:8086/fleet").replace("$(POD_IP)", "10.0.0.9")
                for a in container["args"]]
    args = vars(parser.parse_args(pod_args))
    assert args["command"] == expected["command"] and args["store"] == "influxdb://i:8086/fleet"


def next_elapses(spec: str) -> list[str]:
    analyze = require_binary("systemd-analyze")
    out = subprocess.run([analyze, "calendar", "--iterations=3", spec], capture_output=True, text=True,
                         timeout=30, env={**os.environ, "TZ": "UTC", "LC_ALL": "C"})
    assert out.returncode == 0, out.stderr
    return re.findall(r"(?:Next elapse|Iter\. #\d): (.+)", out.stdout)


def test_report_timer_fires_on_mondays_and_the_cron_line_says_the_same():
    timer = read_unit("fleetwise-report.timer")["Timer"]
    elapses = next_elapses(timer["OnCalendar"])
    assert len(elapses) == 3 and all(e.startswith("Mon ") and " 06:00:00 " in e for e in elapses), elapses
    assert timer["Unit"] == "fleetwise-report.service" and timer["Persistent"] == "true"
    # The cron alternative: same schedule (minute 0, hour 6, Monday), same script, the same user.
    entries = [line.split(None, 6) for line in (DEPLOY / "cron" / "fleetwise-report").read_text().splitlines()
               if line and not line.startswith("#") and "=" not in line.split()[0]]
    (entry,) = entries
    assert entry[:5] == ["0", "6", "*", "*", "1"] and entry[5] == "fleetwise"
    script = read_unit("fleetwise-report.service")["Service"]["ExecStart"]
    assert entry[6].split()[0] == script == "/opt/fleetwise/bin/fleetwise-weekly-report"
    # The analysis timer is daily and runs before the report's 06:00.
    daily = next_elapses(read_unit("fleetwise-analyze.timer")["Timer"]["OnCalendar"])
    assert all(" 02:15:00 " in e for e in daily), daily


# A stand-in for the fleetwise executable the script drives: it records its arguments in the --out directory
# (and fails when told to). Only the script's own logic is under test here.
STAND_IN = """#!/bin/sh
out=""; prev=""
for a in "$@"; do [ "$prev" = "--out" ] && out="$a"; prev="$a"; done
[ -n "${FAIL:-}" ] && { echo "report failed" >&2; exit 1; }
printf '%s\\n' "$@" > "$out/args"
echo '<html>report</html>' > "$out/report.html"
"""


def run_report(tmp_path: Path, now: str, **env: str) -> subprocess.CompletedProcess:
    stand_in = tmp_path / "fleetwise"
    stand_in.write_text(STAND_IN)
    stand_in.chmod(0o755)
    full = {"PATH": "/usr/bin:/bin", "FLEETWISE": str(stand_in), "FLEETWISE_REPORT_DIR": str(tmp_path / "reports"),
            "FLEETWISE_REPORT_NOW": now, **env}
    return subprocess.run(["/bin/sh", str(REPORT_SCRIPT)], env=full, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("now", "week"), [
    ("2026-11-30 06:00", "2026-W48"),  # a Monday: the week that ended yesterday (Mon 23 - Sun 29 Nov)
    ("2026-12-06 23:00", "2026-W48"),  # a Sunday: its own week is not complete yet
    ("2027-01-04 06:00", "2026-W53"),  # 2026 began on a Thursday, so it has 53 ISO weeks (28 Dec - 3 Jan)
    ("2026-01-05 06:00", "2026-W01"),  # ISO 2026-W01 starts Mon 29 Dec 2025: %G, not %Y
])
def test_weekly_report_builds_the_last_complete_iso_week(tmp_path: Path, now: str, week: str):
    done = run_report(tmp_path, now, FLEETWISE_STORE_URL="embedded:/s", FLEETWISE_REPORT_STATE="/st",
                      FLEETWISE_REPORT_ALERTS_STATE="/al", FLEETWISE_REPORT_FLEET_NAME="hpc one",
                      FLEETWISE_REPORT_PDF="1")
    assert done.returncode == 0, done.stderr
    out = tmp_path / "reports" / week
    assert (out / "args").read_text().split("\n")[:-1] == [
        "report", "--week", week, "--out", str(tmp_path / "reports" / f".{week}.partial"),
        "--store", "embedded:/s", "--state", "/st", "--alerts-state", "/al", "--fleet-name", "hpc one", "--pdf"]
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == [week]  # the partial was renamed
    # What the script passes is what `fleetwise report` accepts.
    args = build_parser().parse_args((out / "args").read_text().split("\n")[:-1])
    assert (args.week, args.alerts_state, args.fleet_name, args.pdf) == (week, "/al", "hpc one", True)


def test_weekly_report_keeps_the_newest_n_and_nothing_else_is_touched(tmp_path: Path):
    reports = tmp_path / "reports"
    for w in range(40, 48):
        (reports / f"2026-W{w}").mkdir(parents=True)
    (reports / "notes.txt").write_text("mine")
    (reports / "2026-W4").mkdir()  # not a week directory's name: left alone
    done = run_report(tmp_path, "2026-11-30", FLEETWISE_REPORT_KEEP="3")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in reports.iterdir()) == ["2026-W4", "2026-W46", "2026-W47", "2026-W48",
                                                          "notes.txt"]
    assert "removing" in done.stderr and "2026-W45" in done.stderr


def test_weekly_report_failure_keeps_the_older_reports(tmp_path: Path):
    reports = tmp_path / "reports"
    for w in (46, 47):
        (reports / f"2026-W{w}").mkdir(parents=True)
    done = run_report(tmp_path, "2026-11-30", FLEETWISE_REPORT_KEEP="1", FAIL="1")
    assert done.returncode == 1
    assert "fleetwise report failed (exit 1); older reports kept" in done.stderr
    assert sorted(p.name for p in reports.iterdir()) == ["2026-W46", "2026-W47"]


@pytest.mark.parametrize(("env", "message"), [
    ({"FLEETWISE_REPORT_KEEP": "0"}, "FLEETWISE_REPORT_KEEP must be a whole number of at least 1, not '0'"),
    ({"FLEETWISE_REPORT_KEEP": "3; rm -rf /"}, "FLEETWISE_REPORT_KEEP must be a whole number"),
    ({"FLEETWISE_REPORT_WEEK": "../../etc"}, "FLEETWISE_REPORT_WEEK must look like 2026-W48, not '../../etc'"),
])
def test_weekly_report_refuses_bad_settings_in_one_line(tmp_path: Path, env: dict, message: str):
    done = run_report(tmp_path, "2026-11-30", **env)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert message in line
    assert not (tmp_path / "reports").exists()


def test_slurm_prolog_and_epilog_work_without_a_path(tmp_path: Path):
    """slurmd runs them with no PATH (Slurm's prolog guide): /bin/sh's default search path must do."""
    env = {"FLEETWISE_ROOT": str(tmp_path), "FLEETWISE_GPUSTAT": str(tmp_path / "gpustat"), "SLURM_JOB_ID": "77",
           "SLURM_JOB_UID": str(os.getuid()), "SLURM_JOB_GPUS": "3", "SLURM_JOB_NAME": 'say "hi"'}
    for name in ("prolog", "epilog"):
        done = subprocess.run(["/bin/sh", str(DEPLOY / "slurm" / f"{name}.d" / "fleetwise-job.sh")], env=env,
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0 and done.stderr == "", done.stderr
        if name == "prolog":
            assert (tmp_path / "gpustat" / "3").read_text() == f"77 {os.getuid()}\n"
            assert 'name="say \\"hi\\""' in (tmp_path / "textfile" / "jobinfo-77.prom").read_text()
    assert list((tmp_path / "gpustat").iterdir()) == [] and not (tmp_path / "jobs" / "77").exists()


# --- Kubernetes -----------------------------------------------------------------------------------------

def manifests() -> dict[tuple[str, str], dict]:
    docs = {}
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            docs[doc["kind"], doc["metadata"]["name"]] = doc
    return docs


def test_every_manifest_passes_the_kubernetes_schema():
    docs = manifests()
    assert {("DaemonSet", "fleetwise-agent"), ("Deployment", "fleetwise-dashboard"), ("Service", "fleetwise-dashboard"),
            ("CronJob", "fleetwise-analyze"), ("CronJob", "fleetwise-report"), ("ConfigMap", "fleetwise-analysis"),
            ("PersistentVolumeClaim", "fleetwise-state"), ("Deployment", "fleetwise-alerts")} <= set(docs)
    for key, doc in docs.items():
        # strict: no field the schema does not know (a typo such as `readOnlyRootFileSystem` fails).
        assert kubernetes_validate.validate(doc, K8S_VERSION, strict=True) == K8S_VERSION, key


@pytest.mark.parametrize(("where", "breakage"), [
    ("Deployment", lambda d: d["spec"].__setitem__("replicas", "one")),                       # wrong type
    ("CronJob", lambda d: d["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
     ["securityContext"].__setitem__("readOnlyRootFileSystem", True)),                       # unknown field
    ("DaemonSet", lambda d: d["spec"]["template"]["spec"]["containers"][0].pop("name")),     # required field
    ("Service", lambda d: d["spec"]["ports"][0].__setitem__("port", "http")),                # wrong type
])
def test_the_schema_check_fails_on_a_broken_manifest(where: str, breakage):
    doc = copy.deepcopy(next(d for (kind, _), d in manifests().items() if kind == where))
    breakage(doc)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def pod_specs() -> dict[str, dict]:
    specs = {}
    for (kind, name), doc in manifests().items():
        if kind in ("Deployment", "DaemonSet"):
            specs[name] = doc["spec"]["template"]["spec"]
        elif kind == "CronJob":
            specs[name] = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return specs


def test_every_pod_is_hardened_and_sized():
    specs = pod_specs()
    assert set(specs) == {"fleetwise-agent", "fleetwise-dashboard", "fleetwise-alerts", "fleetwise-analyze",
                          "fleetwise-report"}
    for name, spec in specs.items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert (sc["readOnlyRootFilesystem"], sc["allowPrivilegeEscalation"], sc["capabilities"]) == (
                True, False, {"drop": ["ALL"]}), name
            assert set(c["resources"]) == {"requests", "limits"}, name
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]) <= set(c["resources"]["limits"]), name
            # No secret as a literal value: only *_FILE paths to mounted Secrets, or secretKeyRef.
            for e in c.get("env", []):
                assert not (re.search(r"PASSWORD$|TOKEN$", e["name"]) and "value" in e), (name, e["name"])


def test_dashboard_service_and_its_secret():
    docs = manifests()
    service = docs["Service", "fleetwise-dashboard"]["spec"]
    assert service["type"] == "ClusterIP"
    spec = pod_specs()["fleetwise-dashboard"]
    (container,) = spec["containers"]
    assert service["selector"] == docs["Deployment", "fleetwise-dashboard"]["spec"]["selector"]["matchLabels"]
    assert [p["containerPort"] for p in container["ports"]] == [8050]
    secrets = {v["name"]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    env = {e["name"]: e for e in container["env"]}
    assert env["FLEETWISE_DASHBOARD_PASSWORD_FILE"]["value"] == mounts["dashboard-auth"] + "/password"
    assert secrets["dashboard-auth"] == "fleetwise-dashboard-auth"
    assert env["FLEETWISE_DASHBOARD_USER"]["valueFrom"]["secretKeyRef"]["name"] == "fleetwise-dashboard-auth"
    # The state the analysis writes is only read here.
    assert next(m for m in container["volumeMounts"] if m["name"] == "state")["readOnly"] is True


def test_report_cronjob_runs_on_mondays_and_keeps_n_from_the_configmap():
    docs = manifests()
    cron = docs["CronJob", "fleetwise-report"]
    assert cron["spec"]["schedule"] == "0 6 * * 1" and cron["spec"]["concurrencyPolicy"] == "Forbid"
    (container,) = pod_specs()["fleetwise-report"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["FLEETWISE_REPORT_KEEP"]["valueFrom"]["configMapKeyRef"] == {"name": "fleetwise-analysis",
                                                                            "key": "report_keep"}
    assert int(docs["ConfigMap", "fleetwise-analysis"]["data"]["report_keep"]) >= 1
    assert container["command"] == ["/usr/local/bin/fleetwise-weekly-report"]


def test_analysis_configmap_toml_validates(tmp_path: Path):
    path = tmp_path / "analysis.toml"
    path.write_text(manifests()["ConfigMap", "fleetwise-analysis"]["data"]["analysis.toml"])
    config = load_config(path, env={})
    assert config.recommend.method == "fleetwise"


# --- container build files ------------------------------------------------------------------------------

def instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


@pytest.mark.parametrize("name", ["Containerfile", "Containerfile.analysis"])
def test_containerfiles_copy_what_exists_and_run_unprivileged(name: str):
    steps = instructions(DEPLOY / "container" / name)
    for op, arg in steps:
        if op == "COPY" and "--from=" not in arg:
            *sources, _dest = [a for a in arg.split() if not a.startswith("--")]
            assert all((REPO / s).exists() for s in sources), arg
    # `COPY . .` takes the repository as the context: .dockerignore keeps the venv, data and caches out.
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", "var", ".git", "tests"} <= set(ignored)
    (user,) = [arg for op, arg in steps if op == "USER"]
    assert not user.startswith(("0", "root"))
    assert [op for op, _ in steps][-2:] == ["ENTRYPOINT", "CMD"]


def test_agent_image_installs_the_base_only_and_the_base_is_light():
    installs = [arg for op, arg in instructions(DEPLOY / "container" / "Containerfile")
                if op == "RUN" and "pip install" in arg]
    (install,) = installs
    assert "[" not in install, install  # no extras
    base = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    heavy = {"pandas", "numpy", "pyarrow", "duckdb", "scikit-learn", "dash", "scipy", "plotly"}
    assert not {re.split(r"[<>=\[ ]", d)[0].lower() for d in base} & heavy, base
    analysis = " ".join(arg for op, arg in instructions(DEPLOY / "container" / "Containerfile.analysis")
                        if op in ("RUN", "COPY"))
    assert "[all]" in analysis and "chromium" in analysis and "fleetwise-weekly-report" in analysis


# --- InfluxDB 1.x retention policies and the continuous query ------------------------------------------

def iql_statements() -> list[str]:
    return [line for line in (DEPLOY / "influxdb" / "influxdb-1x.iql").read_text().splitlines()
            if line.strip() and not line.startswith("--")]


@pytest.mark.services
def test_influxdb_1x_file_creates_the_policies_and_its_continuous_query_downsamples(influxdb_server):
    url = influxdb_server.url
    for statement in iql_statements():
        answer = influx_query(url, statement)
        assert "error" not in answer["results"][0], (statement, answer)
    rps = {r[0]: r[1] for r in influx_query(url, 'SHOW RETENTION POLICIES ON "fleet"')["results"][0]["series"][0]
           ["values"]}
    # 15 days, 400 days, 400 days, 3 years
    assert rps == {"raw": "360h0m0s", "five_minutes": "9600h0m0s", "fifteen_minutes": "9600h0m0s",
                   "one_hour": "26280h0m0s"}
    (cq_series,) = [s for s in influx_query(url, "SHOW CONTINUOUS QUERIES")["results"][0]["series"]
                    if s["name"] == "fleet"]
    cqs = dict(cq_series["values"])
    levels = (("5m", "five_minutes"), ("15m", "fifteen_minutes"), ("1h", "one_hour"))
    companions = {"gpu_by_host": ("gpu", "host"), "job_gpu_by_host_gpu": ("job_gpu", "host, gpu")}
    assert sorted(cqs) == sorted([f"fleet_{w}" for w, _ in levels] + [f"fleet_{c}_{w}" for c in companions
                                                                      for w, _ in levels])
    assert all(f'INTO fleet.{rp}.:MEASUREMENT' in cqs[f"fleet_{width}"] and f"time({width})" in cqs[f"fleet_{width}"]
               for width, rp in levels)
    # the companions: one measurement each, rolled up by time and their tags alone, into every level
    assert all(f"INTO fleet.{rp}.{c} FROM fleet.raw.{m}" in cqs[f"fleet_{c}_{w}"]
               and cqs[f"fleet_{c}_{w}"].endswith(f"GROUP BY time({w}), {tags} END")
               for c, (m, tags) in companions.items() for w, rp in levels)
    cq_text = cqs["fleet_5m"]
    # The CQ's own SELECT, run once over explicit bounds (what a backfill does): 5-minute means per series.
    # An hour ago, on a 5-minute boundary: inside the 15-day raw policy whenever the test runs.
    now = int(time.time())
    t0 = now - now % 300 - 3600
    lines = [f"gpu,host=n{h},gpu=0 utilization_ratio={v},model=\"H100\" {(t0 + 10 * i) * 10**9}"
             for h, vals in ((1, (0.2, 0.4)), (2, (1.0, 0.0))) for i, v in enumerate(vals * 15)]
    create_database(url, "fleet")  # a no-op on the existing database; waits until a loaded influxd lists it
    write_lines(url, "fleet", lines)
    select = cq_text[cq_text.index("SELECT"):cq_text.rindex(" END")]
    select = select.replace("GROUP BY", f"WHERE time >= {t0}s AND time < {t0 + 300}s GROUP BY")
    assert "error" not in influx_query(url, select, db="fleet")["results"][0]
    rows = influx_query(url, 'SELECT * FROM "fleet"."five_minutes"."gpu" GROUP BY host', db="fleet")
    means = {s["tags"]["host"]: s["values"] for s in rows["results"][0]["series"]}
    columns = rows["results"][0]["series"][0]["columns"]
    assert "mean_utilization_ratio" in columns and "mean_model" not in columns  # strings have no mean
    col = columns.index("mean_utilization_ratio")
    # 30 points each, alternating 0.2/0.4 and 1.0/0.0: means 0.3 and 0.5, one 5-minute bucket each.
    assert [round(v[col], 6) for v in means["n1"]] == [0.3] and [round(v[col], 6) for v in means["n2"]] == [0.5]

