"""A two-node fleet of real agent processes for the end-to-end test (tests/test_end_to_end.py).

Each node is a copy of fixture trees in the kernel's and Slurm's own formats (tests/fixtures/host/x86_64 for
procfs/sysfs, tests/fixtures/cgroup_v2_slurm for the jobs' cgroups) under a temp dir, with its own host name,
configuration, spool and /metrics port. The GPU node adds the Slurm prolog's record /run/gpustat/0 = "42 1000"
(job 42 holds GPU 0) and the NVIDIA driver's /proc/driver/nvidia/version, and runs the agent under a fake NVML
(tests/fake_nvml_agent.py) whose one A100 has no process and 0% utilization: a GPU the job holds and leaves
idle, which only the allocation record reveals.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import FIXTURES, REPO
from tests.fake_nvml import GiB, MiB
from tests.helpers import free_port, wait_http
from tests.store_helpers import influx_query

DB = "fleet"
GPU_HOST, CPU_HOST = "e2e-gpu01", "e2e-cpu01"
IDLE_JOB, IDLE_GPU_SLOT = "42", 0
IDLE_GPU = {  # NVML's units: bytes, percent, mW, mJ, MHz; an idle A100 as nvidia-smi shows one
    "uuid": "GPU-e2e00000-0000-4000-8000-000000000000", "name": "NVIDIA A100-SXM4-80GB",
    "memory_total": 80 * GiB, "memory_used": 4 * MiB, "util_gpu": 0, "util_memory": 0,
    "power_mw": 61_000, "power_limit_mw": 400_000, "energy_mj": 5_000_000, "temperature_c": 33,
    "sm_clock_mhz": 210, "processes": [], "mig_mode": 0,
}
GPU_NODE_COLLECTORS = ("cpu", "memory", "vmstat", "pressure", "disk", "net", "nvidia", "jobs")
CPU_NODE_COLLECTORS = ("cpu", "memory", "vmstat", "pressure", "disk", "net", "jobs")
# cgroup v2 job directories of the fixture, per node: job 42 (holds the GPU) and 43 on the GPU node, 77 (under a
# multi-slurmd scope) on the CPU node, so that no job id appears on both hosts.
SCOPES = {GPU_HOST: "system.slice/node01_slurmstepd.scope", CPU_HOST: "system.slice/slurmstepd.scope"}
ROUND = re.compile(r"round (\d+) \(time_ns (\d+)\): (\d+) points committed to the spool")


def build_node(root: Path, host: str) -> Path:
    """The node's trees under root: proc/, sys/ (with fs/cgroup), run/gpustat/."""
    host_tree = FIXTURES / "host" / "x86_64"
    shutil.copytree(host_tree / "proc", root / "proc", symlinks=True)
    shutil.copytree(host_tree / "sys", root / "sys", symlinks=True)  # sysfs links stay links
    shutil.copytree(FIXTURES / "cgroup_v2_slurm" / "sys" / "fs" / "cgroup", root / "sys" / "fs" / "cgroup")
    shutil.rmtree(root / "sys" / "fs" / "cgroup" / SCOPES[host])  # the other node's jobs
    for pid_dir in (FIXTURES / "cgroup_v2_slurm" / "proc").iterdir():
        shutil.copytree(pid_dir, root / "proc" / pid_dir.name)
    gpustat = root / "run" / "gpustat"
    gpustat.mkdir(parents=True)
    if host == GPU_HOST:
        (gpustat / str(IDLE_GPU_SLOT)).write_text(f"{IDLE_JOB} 1000\n")  # what the jobstats prolog writes
        # the loaded NVIDIA kernel module's procfs file, without which the agent does not load NVML
        shutil.copytree(FIXTURES / "gpu_alloc" / "proc" / "driver", root / "proc" / "driver")
    return root


@dataclass
class Agent:
    host: str
    root: Path
    port: int
    log: Path
    proc: subprocess.Popen | None = None
    rounds: list[tuple[int, int, int]] = field(default_factory=list)  # (round, time_ns, points)

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def logged_rounds(self) -> list[tuple[int, int, int]]:
        return [(int(a), int(b), int(c)) for a, b, c in ROUND.findall(self.log.read_text(errors="replace"))]

    def metric(self, name: str) -> float | None:
        """One sample of the agent's own /metrics (first series of that name)."""
        with urllib.request.urlopen(self.metrics_url, timeout=10) as r:
            text = r.read().decode()
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
        return None

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM (the agent flushes what it can and exits 0), SIGKILL only if it hangs."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.rounds = self.logged_rounds()
        return self.proc.returncode


def start_agent(workdir: Path, host: str, influx_url: str) -> Agent:
    root = build_node(workdir / host, host)
    port = free_port()
    config = root / "agent.toml"
    collectors = GPU_NODE_COLLECTORS if host == GPU_HOST else CPU_NODE_COLLECTORS
    config.write_text(f"""
[agent]
host = "{host}"
interval_seconds = 1
jitter_seconds = 0
proc_root = "{root / 'proc'}"
sys_root = "{root / 'sys'}"
collectors = {json.dumps(list(collectors))}
listen = "127.0.0.1:{port}"

[collectors.jobs]
gpustat_dir = "{root / 'run' / 'gpustat'}"
kubelet_checkpoint = "{root / 'var' / 'kubelet_internal_checkpoint'}"

[store]
url = "influxdb://{influx_url.removeprefix('http://')}/{DB}"
spool_dir = "{root / 'spool'}"
flush_interval_seconds = 0.5
retry_base_seconds = 0.2
retry_max_seconds = 1.0
timeout_seconds = 5
shutdown_flush_seconds = 20
""")
    args = ["--log-level", "INFO", "agent", "--config", str(config)]
    if host == GPU_HOST:
        gpus = root / "gpus.json"
        gpus.write_text(json.dumps([IDLE_GPU]))
        command = [sys.executable, "-m", "tests.fake_nvml_agent", str(gpus), "--", *args]
    else:
        command = [sys.executable, "-m", "fleetwise", *args]
    agent = Agent(host, root, port, root / "agent.log")
    with open(agent.log, "wb") as log:
        agent.proc = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    wait_http(agent.metrics_url, timeout=120, proc=agent.proc)
    return agent


def kill_influxd(server) -> None:
    """SIGKILL: no shutdown, no flush; what influxd acknowledged must be in its WAL already."""
    server.proc.kill()
    server.proc.wait()


def influx_series(influx_url: str) -> dict[tuple[str, str], dict[str, list[int]]]:
    """(host, measurement) -> series (its tags as JSON) -> the time (ns) of each of its points in InfluxDB."""
    measurements = influx_query(influx_url, "SHOW MEASUREMENTS", DB)["results"][0].get("series", [{}])[0]
    out: dict[tuple[str, str], dict[str, list[int]]] = {}
    for (name,) in measurements.get("values", []):
        quoted = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        answer = _query_ns(influx_url, f"SELECT * FROM {quoted} GROUP BY *")
        for series in answer.get("series", []):
            tags = series.get("tags", {})
            key = json.dumps(tags, sort_keys=True)
            out.setdefault((tags.get("host", ""), name), {}).setdefault(key, []).extend(
                int(row[0]) for row in series["values"])
    return out


def spool_rows(influx_url: str, host: str) -> list[dict]:
    """The agent's own spool status, as it wrote it every round: one dict per round (time in ns)."""
    literal = "'" + host.replace("\\", "\\\\").replace("'", "\\'") + "'"
    answer = _query_ns(influx_url, f'SELECT * FROM "spool" WHERE "host" = {literal}')
    series = answer["series"][0]
    return [dict(zip(series["columns"], row, strict=True)) for row in series["values"]]


def _query_ns(influx_url: str, q: str) -> dict:
    params = urllib.parse.urlencode({"q": q, "db": DB, "epoch": "ns"})
    with urllib.request.urlopen(f"{influx_url}/query", data=params.encode(), timeout=60) as r:
        body = json.loads(r.read())
    result = body["results"][0]
    assert "error" not in result, result
    return result


def wait_rounds(agents: list[Agent], at_least: int, timeout: float) -> None:
    """Until every agent has logged at_least more rounds than now (fails naming the slow one)."""
    start = {a.host: len(a.logged_rounds()) for a in agents}
    deadline = time.monotonic() + timeout
    while True:
        behind = [a.host for a in agents if len(a.logged_rounds()) < start[a.host] + at_least]
        if not behind:
            return
        for a in agents:
            assert a.proc is not None and a.proc.poll() is None, f"agent {a.host} exited: {a.log.read_text()[-2000:]}"
        if time.monotonic() > deadline:
            raise AssertionError(f"agents {behind} did not log {at_least} rounds within {timeout:.0f} s")
        time.sleep(0.2)
