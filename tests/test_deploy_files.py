"""deploy/: the files parse, say what the docs promise, and the Slurm scripts work on a temp tree."""

from __future__ import annotations

import configparser
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from agents.collectors.base import Cycle, Roots
from agents.collectors.textfile import TextfileCollector, TextfileOptions
from agents.config import Config, load_config
from tests.conftest import REPO, require_binary

DEPLOY = REPO / "deploy"
T = 1_700_000_000 * 10**9


def test_prometheus_config_passes_promtool():
    promtool = require_binary("promtool")
    checked = subprocess.run([promtool, "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
                             capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout
    assert "WARNING" not in checked.stdout + checked.stderr


def test_prometheus_configs_scrape_the_agent_port():
    conf = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in conf["scrape_configs"] if j["job_name"] == "fleetwise")
    assert all(t.endswith(":9464") for c in job["static_configs"] for t in c["targets"])
    assert any(r.get("target_label") == "instance" for r in job["relabel_configs"])
    k8s = yaml.safe_load((DEPLOY / "prometheus" / "kubernetes-scrape.yml").read_text())
    (k8s_job,) = k8s["scrape_configs"]
    assert k8s_job["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": ["fleetwise"]}}]


def test_daemonset_mounts_host_trees_read_only_and_points_the_agent_at_them():
    docs = {d["kind"]: d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "agent-daemonset.yaml").read_text())}
    assert set(docs) == {"Namespace", "ConfigMap", "DaemonSet"}
    pod = docs["DaemonSet"]["spec"]["template"]["spec"]
    assert pod["hostPID"] is True
    (container,) = pod["containers"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    host_paths = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    assert host_paths == {"proc": "/proc", "sys": "/sys", "device-plugins": "/var/lib/kubelet/device-plugins"}
    assert (mounts["proc"]["mountPath"], mounts["sys"]["mountPath"]) == ("/host/proc", "/host/sys")
    assert all(mounts[n]["readOnly"] for n in mounts)
    assert "--proc-root=/host/proc" in container["args"] and "--sys-root=/host/sys" in container["args"]
    env = {e["name"]: e for e in container["env"]}
    assert env["NVIDIA_VISIBLE_DEVICES"]["value"] == "all"
    assert container["resources"]["requests"]["memory"] == "50Mi"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # The embedded agent.toml is a valid configuration (same validation as `fleetwise config check`).
    toml_text = docs["ConfigMap"]["data"]["agent.toml"]
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"fleetwise-daemonset-{os.getpid()}.toml"
    path.write_text(toml_text)
    try:
        config: Config = load_config(path, env={})
    finally:
        path.unlink()
    assert "textfile" not in config.agent.collectors and "nvidia" in config.agent.collectors


def test_systemd_unit_is_hardened_and_takes_secrets_from_a_file():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read_string((DEPLOY / "systemd" / "fleetwise-agent.service").read_text())
    service = unit["Service"]
    assert service["ExecStart"] == "/opt/fleetwise/.venv/bin/fleetwise agent --config /etc/fleetwise/agent.toml"
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"] == "/var/lib/fleetwise"
    assert service["Restart"] == "always"
    assert service["EnvironmentFile"] == "-/etc/fleetwise/agent.env"
    assert service["NoNewPrivileges"] == "true"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


# verify insists that ExecStart exists: the installed paths become /bin/true, the rest is checked as written.
INSTALLED_BINARIES = ("/opt/fleetwise/.venv/bin/fleetwise", "/opt/fleetwise/bin/fleetwise-weekly-report")


def verify_units(directory: Path, texts: dict[str, str]) -> tuple[int, list[str], str]:
    """systemd-analyze verify on every unit together (a timer needs its service beside it); returns the exit
    code, the lines that name one of the units (verify only warns, exit 0, about a setting it ignores), and
    the whole output."""
    analyze = require_binary("systemd-analyze")
    for name, text in texts.items():
        for binary in INSTALLED_BINARIES:
            text = text.replace(binary, "/bin/true")
        (directory / name).write_text(text)
    checked = subprocess.run([analyze, "verify", "--man=no", *(str(directory / n) for n in sorted(texts))],
                             capture_output=True, text=True, timeout=120)
    output = checked.stdout + checked.stderr
    return checked.returncode, [line for line in output.splitlines() if any(n in line for n in texts)], output


def deploy_units() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((DEPLOY / "systemd").iterdir())
            if p.suffix in (".service", ".timer")}


def test_systemd_units_verify(tmp_path: Path):
    units = deploy_units()
    assert {"fleetwise-agent.service", "fleetwise-dashboard.service", "fleetwise-alerts.service",
            "fleetwise-analyze.service", "fleetwise-analyze.timer", "fleetwise-report.service",
            "fleetwise-report.timer"} <= set(units)
    code, problems, output = verify_units(tmp_path, units)
    assert code == 0 and not problems, output


def test_systemd_verify_catches_a_broken_unit(tmp_path: Path):
    """The check above can fail: a misspelt value in a copy of a real unit is reported by name."""
    text = deploy_units()["fleetwise-dashboard.service"].replace("ProtectSystem=strict", "ProtectSystem=strickt")
    _code, problems, output = verify_units(tmp_path, {"fleetwise-dashboard.service": text})
    assert any("ProtectSystem" in line or "protect system" in line for line in problems), output


def run_script(name: str, root: Path, job: str, **extra: str) -> subprocess.CompletedProcess:
    script = DEPLOY / "slurm" / f"{name}.d" / "fleetwise-job.sh"
    env = {"PATH": "/usr/bin:/bin", "FLEETWISE_ROOT": str(root), "SLURM_JOB_ID": job,
           "SLURM_JOB_UID": str(os.getuid()), "FLEETWISE_GPUSTAT": str(root / "gpustat"), **extra}
    return subprocess.run(["/bin/sh", str(script)], env=env, capture_output=True, text=True, timeout=30)


def test_slurm_prolog_gives_the_job_a_progress_file_the_agent_reads(tmp_path: Path):
    assert run_script("prolog", tmp_path, "4242").returncode == 0
    job_dir = tmp_path / "jobs" / "4242"
    assert job_dir.is_dir() and job_dir.stat().st_uid == os.getuid()
    assert oct(job_dir.stat().st_mode & 0o777) == "0o755"
    link = tmp_path / "textfile" / "job-4242.prom"
    assert os.readlink(link) == "../jobs/4242/progress.prom"

    # The job writes atomically in its own directory; the textfile collector reads it through the link.
    tmp = job_dir / "progress.prom.tmp"
    tmp.write_text('fleetwise_job_progress_total{job="4242",scheduler="slurm",user="ada",unit="steps"} 1500\n')
    tmp.rename(job_dir / "progress.prom")
    collector = TextfileCollector(Roots(), "n1", TextfileOptions(directory=tmp_path / "textfile"))
    (point,) = list(collector.collect(Cycle(time_ns=T)))
    assert point.tags == {"host": "n1", "job": "4242", "scheduler": "slurm", "user": "ada", "unit": "steps"}
    assert point.fields == {"progress": 1500}

    assert run_script("epilog", tmp_path, "4242").returncode == 0
    assert not link.is_symlink() and not job_dir.exists()
    assert list(collector.collect(Cycle(time_ns=T + 10**10))) == []


@pytest.mark.parametrize("job", ["", "12/../../etc", "1 2", "abc"])
def test_slurm_scripts_refuse_odd_job_ids_without_failing_the_job(tmp_path: Path, job: str):
    for name in ("prolog", "epilog"):
        done = run_script(name, tmp_path, job, SLURM_JOB_GPUS="0,1")  # and no GPU record either
        assert done.returncode == 0
        assert "bad SLURM_JOB_ID" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_slurm_prolog_records_the_jobs_gpus_and_the_epilog_removes_them(tmp_path: Path):
    """jobstats' convention: /run/gpustat/<index> holds "<job> <uid>"; the jobs collector reads it."""
    from agents.collectors.jobs import JobsCollector, JobsOptions
    from tests.conftest import FIXTURES

    gpustat = tmp_path / "gpustat"
    assert run_script("prolog", tmp_path, "42", SLURM_JOB_GPUS="0,2", CUDA_VISIBLE_DEVICES="5").returncode == 0
    assert run_script("prolog", tmp_path, "43", CUDA_VISIBLE_DEVICES="1,x").returncode == 0  # no SLURM_JOB_GPUS
    uid = os.getuid()
    assert {p.name: p.read_text() for p in gpustat.iterdir()} == {"0": f"42 {uid}\n", "2": f"42 {uid}\n",
                                                                  "1": f"43 {uid}\n"}
    tree = FIXTURES / "gpu_alloc"
    inventory = [{"vendor": "nvidia", "gpu": str(i), "uuid": f"GPU-{i}", "slot": i, "render_minor": None,
                  "ids": {f"GPU-{i}"}, "processes_known": True, "utilization_ratio": 0.0, "memory_used_bytes": 0}
                 for i in range(4)]
    jobs = JobsCollector(Roots(proc=tree / "proc", sys=tree / "sys"), "n1",
                         JobsOptions(gpustat_dir=gpustat, allocation_sources=["prolog"]))
    held = sorted((p.tags["job"], p.tags["gpu"], p.fields["allocation_source"])
                  for p in jobs.collect(Cycle(time_ns=T, shared={"gpus": inventory})) if p.measurement == "job_gpu")
    assert held == [("42", "0", "prolog"), ("42", "2", "prolog"), ("43", "1", "prolog")]

    assert run_script("epilog", tmp_path, "42").returncode == 0
    assert sorted(p.name for p in gpustat.iterdir()) == ["1"]  # job 43's record stays
