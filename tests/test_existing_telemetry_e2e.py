"""Analysis on the telemetry a site already has, end to end with real servers:

- Debian's prometheus scrapes Debian's prometheus-node-exporter and a small exporter started here that
  serves a dcgm-exporter exposition in its real format (names, HELP/TYPE, labels with pod / namespace and
  hpc_job, units: %, MiB, W); `fleetwise analyze --store prometheus://...` gives a job table whose per-job
  GPU figures equal the served values;
- Telegraf-format line protocol (nvidia_smi, cpu, mem, diskio, net, as Telegraf's plugin docs describe
  them) in a real influxd, beside fleetwise's own job series: analyze gives the same job table as on the
  same quantities written in fleetwise's schema.
"""

from __future__ import annotations

import contextlib
import http.server
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest

from agents.points import Point
from agents.query import open_reader
from agents.schema.accelerators import accelerator_key
from analyzer.state import load_latest
from tests.conftest import REPO, require_binary
from tests.helpers import free_ports, wait_http
from tests.prom_helpers import DCGM_FAMILIES, labels_text, prom_query, wait_until
from tests.services import influxd, prometheus
from tests.store_helpers import create_database, write_lines, write_points

pytestmark = pytest.mark.services

MIB = 2**20
MODEL = "NVIDIA H100 80GB HBM3"
# what the exporter serves per GPU: labels and values in dcgm-exporter's units
SERVED = [
    ({"gpu": "0", "UUID": "GPU-aaa", "device": "nvidia0", "modelName": MODEL, "Hostname": "gpu-node-1",
      "container": "server", "namespace": "serving", "pod": "infer-7"},
     {"DCGM_FI_DEV_GPU_UTIL": 63, "DCGM_FI_DEV_MEM_COPY_UTIL": 21, "DCGM_FI_DEV_FB_USED": 30000,
      "DCGM_FI_DEV_FB_FREE": 51920, "DCGM_FI_DEV_POWER_USAGE": 250.5, "DCGM_FI_DEV_POWER_MGMT_LIMIT": 400,
      "DCGM_FI_DEV_SM_CLOCK": 1980, "DCGM_FI_DEV_GPU_TEMP": 54}),
    ({"gpu": "1", "UUID": "GPU-bbb", "device": "nvidia1", "modelName": MODEL, "Hostname": "gpu-node-1",
      "hpc_job": "1234"},
     {"DCGM_FI_DEV_GPU_UTIL": 0, "DCGM_FI_DEV_MEM_COPY_UTIL": 0, "DCGM_FI_DEV_FB_USED": 500,
      "DCGM_FI_DEV_FB_FREE": 81420, "DCGM_FI_DEV_POWER_USAGE": 70.25, "DCGM_FI_DEV_POWER_MGMT_LIMIT": 700,
      "DCGM_FI_DEV_SM_CLOCK": 345, "DCGM_FI_DEV_GPU_TEMP": 31}),
    ({"gpu": "2", "UUID": "GPU-ccc", "device": "nvidia2", "modelName": MODEL, "Hostname": "gpu-node-1"},
     {"DCGM_FI_DEV_GPU_UTIL": 100, "DCGM_FI_DEV_MEM_COPY_UTIL": 80, "DCGM_FI_DEV_FB_USED": 70000,
      "DCGM_FI_DEV_FB_FREE": 11920, "DCGM_FI_DEV_POWER_USAGE": 690.0, "DCGM_FI_DEV_POWER_MGMT_LIMIT": 700,
      "DCGM_FI_DEV_SM_CLOCK": 1980, "DCGM_FI_DEV_GPU_TEMP": 70}),
]


def dcgm_exposition() -> bytes:
    lines = []
    for name, (kind, help_text) in DCGM_FAMILIES.items():
        rows = [(labels, values[name]) for labels, values in SERVED if name in values]
        if not rows:
            continue
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for labels, value in rows:
            lines.append(f"{name}{labels_text({**labels, 'DCGM_FI_DRIVER_VERSION': '550.54.15'})} {value}")
    return ("\n".join(lines) + "\n").encode()


class _Exporter(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def scraped(tmp_path):
    """prometheus (1 s scrapes) <- node_exporter + the dcgm exposition, until each GPU series has samples."""
    node = require_binary("prometheus-node-exporter")
    ne_port, dcgm_port = free_ports(2)
    handler = type("Handler", (_Exporter,), {"body": dcgm_exposition()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", dcgm_port), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    with open(tmp_path / "node_exporter.log", "wb") as log:
        ne = subprocess.Popen([node, f"--web.listen-address=127.0.0.1:{ne_port}", "--collector.disable-defaults",
                               "--collector.cpu", "--collector.meminfo", "--collector.netdev", "--collector.loadavg"],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{ne_port}/metrics", timeout=30, proc=ne)
        with prometheus(tmp_path, [f"127.0.0.1:{ne_port}", f"127.0.0.1:{dcgm_port}"], "1s") as server:
            # enough scrapes: every GPU series and node_exporter's CPU counters hold 5+ samples
            wait_until(lambda: len([s for s in prom_query(server.url, "count_over_time(DCGM_FI_DEV_GPU_UTIL[10m])")
                                    if float(s["value"][1]) >= 5]) == 3 and
                       prom_query(server.url, "count_over_time(node_cpu_seconds_total[10m]) >= 5"),
                       timeout=180, what="5 scrapes of every GPU series and node_exporter")
            yield server
    finally:
        ne.terminate()
        ne.wait(timeout=15)
        httpd.shutdown()


def analyze(store: str, state: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fleetwise", "analyze", "--store", store, "--state", str(state),
                           *extra], cwd=REPO, capture_output=True, text=True, timeout=600)


def test_prometheus_job_table_equals_the_served_values(scraped, tmp_path):
    proc = analyze(scraped.url.replace("http://", "prometheus://"), tmp_path / "state")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    jt = load_latest(tmp_path / "state").table("job_table").set_index("job")
    assert sorted(jt.index) == ["1234", "infer-7"]  # GPU-ccc has no pod or job label: no job
    pod, slurm = jt.loc["infer-7"], jt.loc["1234"]
    assert (pod["scheduler"], pod["user"], pod["hosts"]) == ("kubernetes", "serving", "gpu-node-1")
    assert (slurm["scheduler"], slurm["user"]) == ("slurm", "")
    for row, (_, served) in ((pod, SERVED[0]), (slurm, SERVED[1])):
        assert row["gpus"] == 1 and row["accelerator"] == accelerator_key(MODEL)
        assert row["gpu_utilization_mean"] == pytest.approx(served["DCGM_FI_DEV_GPU_UTIL"] / 100)
        assert row["gpu_utilization_peak"] == pytest.approx(served["DCGM_FI_DEV_GPU_UTIL"] / 100)
        assert row["gpu_memory_used_max_bytes"] == served["DCGM_FI_DEV_FB_USED"] * MIB
        assert row["gpu_memory_total_bytes"] == 81920 * MIB  # FB_USED + FB_FREE
        assert row["power_watts_mean"] == pytest.approx(served["DCGM_FI_DEV_POWER_USAGE"])
        assert row["power_limit_watts"] == pytest.approx(served["DCGM_FI_DEV_POWER_MGMT_LIMIT"])
        assert row["gpu_memory_bandwidth_mean"] == pytest.approx(served["DCGM_FI_DEV_MEM_COPY_UTIL"] / 100)
        # cgroups are not in Prometheus here: unknown, not zero
        assert pd.isna(row["cpus_allocated"]) and pd.isna(row["memory_peak_bytes"])
    assert pod["gpu_idle_seconds"] == 0
    # served 0 %: idle throughout; idle samples are counted on a 1 s subquery grid against 1 s scrapes whose
    # timestamps jitter, so a sample or two can fall out (docs/existing-telemetry.md)
    assert 0.9 * slurm["duration_seconds"] <= slurm["gpu_idle_seconds"] <= slurm["duration_seconds"]
    eff = load_latest(tmp_path / "state").table("efficiency").set_index("job")
    assert eff.loc["infer-7", "gpu_memory_headroom_bytes"] == 51920 * MIB
    assert any(n.startswith("held 1 GPU, used 0") for n in eff.loc["1234", "notes"])


# -- Telegraf in InfluxDB --------------------------------------------------------------------------------------
T0 = int(pd.Timestamp("2026-11-20T00:00:00Z").value)
SEC = 10**9
# uuid, %, MiB, disk B/s; t3's GPU is an AMD one, reported by amd_rocm_smi (memory in bytes, no power limit)
HOSTS = {"t1": ("GPU-t1a", 45, 12000, 2000.0), "t2": ("GPU-t2a", 2, 40000, 500.0), "t3": ("0x5e1f00d", 30, 9000, 0.0)}
AMD = {"t3"}


def telegraf_lines(n: int) -> list[str]:
    """What Telegraf's nvidia_smi, cpu, mem, diskio and net plugins write (their READMEs' names and units)."""
    lines = []
    for host, (uuid, util, mib, disk_rate) in HOSTS.items():
        for k in range(n):
            t = T0 + k * 30 * SEC
            if host in AMD:
                lines.append(f"amd_rocm_smi,gpu_id=card0,gpu_unique_id={uuid},host={host},name=card0 "
                             f"utilization_gpu={util}i,memory_used={mib * MIB}i,memory_total={65536 * MIB}i,"
                             f"power_draw=200.5,temperature_sensor_edge=40.0 {t}")
            else:
                lines.append(f"nvidia_smi,compute_mode=Default,host={host},index=0,name=NVIDIA\\ A100-SXM4-80GB,"
                             f"pstate=P0,uuid={uuid} utilization_gpu={util}i,utilization_memory=10i,memory_used={mib}i,"
                             f"memory_total=81920i,memory_free={81920 - mib}i,power_draw=301.5,power_limit=400,"
                             f"temperature_gpu=50i,clocks_current_sm=1410i {t}")
            lines.append(f"cpu,cpu=cpu-total,host={host} usage_idle=75,usage_user=20,usage_system=5 {t}")
            lines.append(f"cpu,cpu=cpu0,host={host} usage_idle=10,usage_user=90 {t}")
            lines.append(f"mem,host={host} total=68719476736i,available=34359738368i,used=34359738368i,"
                         f"used_percent=50 {t}")
            lines.append(f"diskio,host={host},name=nvme0n1 read_bytes={int(1e9 + disk_rate * 30 * k)}i,"
                         f"write_bytes=0i,reads=0i,writes=0i {t}")
            lines.append(f"net,host={host},interface=eth0 bytes_recv={int(5e9 + 1e6 * 30 * k)}i,"
                         f"bytes_sent={int(1e9 + 5e5 * 30 * k)}i {t}")
    return lines


def fleetwise_points(n: int) -> list[Point]:
    """The same quantities in fleetwise's own schema (rates from the agent start at the second read)."""
    pts = []
    for host, (uuid, util, mib, disk_rate) in HOSTS.items():
        for k in range(n):
            t = T0 + k * 30 * SEC
            if host in AMD:
                pts.append(Point("gpu", {"host": host, "gpu": "card0", "uuid": uuid, "vendor": "amd",
                                         "model": "card0"},
                                 {"utilization_ratio": util / 100, "memory_used_bytes": mib * MIB,
                                  "memory_total_bytes": 65536 * MIB, "power_watts": 200.5,
                                  "temperature_celsius": 40.0}, t))
            else:
                pts.append(Point("gpu", {"host": host, "gpu": "0", "uuid": uuid, "vendor": "nvidia",
                                         "model": "NVIDIA A100-SXM4-80GB"},
                                 {"utilization_ratio": util / 100, "memory_bandwidth_ratio": 0.1,
                                  "memory_used_bytes": mib * MIB, "memory_total_bytes": 81920 * MIB,
                                  "power_watts": 301.5, "power_limit_watts": 400.0, "temperature_celsius": 50.0,
                                  "sm_clock_hertz": 1410e6}, t))
            pts.append(Point("cpu", {"host": host, "cpu": "total"}, {"idle_ratio": 0.75, "user_ratio": 0.2,
                                                                     "system_ratio": 0.05}, t))
            if k:
                pts.append(Point("disk", {"host": host, "device": "nvme0n1"},
                                 {"read_bytes_per_second": disk_rate, "write_bytes_per_second": 0.0}, t))
                pts.append(Point("net", {"host": host, "interface": "eth0"},
                                 {"rx_bytes_per_second": 1e6, "tx_bytes_per_second": 5e5}, t))
    return pts


def job_points(n: int) -> list[Point]:
    """fleetwise's own job collector, run beside Telegraf: one job per host holding its GPU."""
    pts = []
    for host, (uuid, util, mib, _) in HOSTS.items():
        tags = {"host": host, "job": f"job-{host}", "scheduler": "slurm", "user": "u"}
        for k in range(n):
            t = T0 + k * 30 * SEC
            pts.append(Point("job", tags, {"cpus_allocated": 16, "cpu_cores": 4.0, "memory_peak_bytes": 10**9,
                                           "memory_limit_bytes": 4 * 10**9}, t))
            pts.append(Point("job_gpu", {**tags, "gpu": "card0" if host in AMD else "0", "uuid": uuid},
                             {"utilization_ratio": util / 100, "memory_used_bytes": mib * MIB}, t))
    return pts


@contextlib.contextmanager
def telegraf_beside_fleetwise(tmp_path, n: int, jobs: bool):
    """A real influxd holding Telegraf's lines (database telegraf) and the same quantities in fleetwise's
    schema (database fw); with jobs, fleetwise's own job collector's points in both."""
    with influxd(tmp_path) as server:
        create_database(server.url, "telegraf")
        create_database(server.url, "fw")
        write_lines(server.url, "telegraf", telegraf_lines(n))
        own = job_points(n) if jobs else []
        if own:
            write_points(server.url, "telegraf", own)
        write_points(server.url, "fw", fleetwise_points(n) + own)
        yield server


def test_telegraf_schema_gives_the_job_table_of_fleetwise_schema(tmp_path):
    n = 240  # two hours at 30 s
    with telegraf_beside_fleetwise(tmp_path, n, jobs=True) as server:
        base = server.url.replace("http://", "influxdb://")
        tables = {}
        for name, url in (("telegraf", f"{base}/telegraf?schema=telegraf"), ("detected", f"{base}/telegraf"),
                          ("fleetwise", f"{base}/fw")):
            proc = analyze(url, tmp_path / name, "--until", "2026-11-20T02:00:00Z", "--since", "1d")
            assert proc.returncode == 0, proc.stdout + proc.stderr
            tables[name] = load_latest(tmp_path / name).table("job_table")
        # bad input: a database with none of the mapped series -> one line naming both sides, exit 1
        create_database(server.url, "other")
        write_lines(server.url, "other", [f"app_requests,host=x count=1i {T0}"])
        for url, looked_for in ((f"{base}/other?schema=telegraf", "nvidia_smi"), (f"{base}/other", "job_gpu")):
            proc = analyze(url, tmp_path / "bad")
            lines = proc.stderr.strip().splitlines()
            assert proc.returncode == 1 and len(lines) == 1, proc.stderr
            assert looked_for in lines[0] and "found app_requests" in lines[0], lines[0]
    fw = tables["fleetwise"]
    assert len(fw) == 3  # the gpu series joined: memory size and power from nvidia_smi and amd_rocm_smi
    assert fw["gpu_memory_total_bytes"].tolist() == [81920 * MIB, 81920 * MIB, 65536 * MIB]
    assert fw["disk_bytes_per_second"].tolist() == pytest.approx([2000.0, 500.0, 0.0])
    assert fw["net_bytes_per_second"].tolist() == pytest.approx([1.5e6, 1.5e6, 1.5e6])
    assert fw["power_watts_mean"].tolist() == pytest.approx([301.5, 301.5, 200.5])
    assert fw["accelerator"].tolist() == ["a100-80gb", "a100-80gb", "card0"]  # canonical keys
    for name in ("telegraf", "detected"):
        pd.testing.assert_frame_equal(tables[name], fw, check_exact=False, rtol=1e-9, obj=name)


def test_telegraf_where_tags(tmp_path):
    """Tag filters through the Telegraf mapping (tags renamed, a constant vendor, counters' rates) keep exactly
    the rows of the unfiltered frame that have those tags, and equal fleetwise's schema where both hold
    the same gauges."""
    n = 20  # ten minutes at 30 s
    with telegraf_beside_fleetwise(tmp_path, n, jobs=False) as server:
        base = server.url.replace("http://", "influxdb://")
        telegraf, fw = open_reader(f"{base}/telegraf?schema=telegraf"), open_reader(f"{base}/fw")
        start, end = pd.Timestamp(T0, tz="UTC"), pd.Timestamp(T0 + n * 30 * SEC, tz="UTC")
        cases = [  # (measurement, fields, every, by, where_tags, gauges: compare with fleetwise's schema too)
            ("gpu", ["utilization_ratio", "memory_used_bytes"], "5m", ["host", "uuid", "vendor"],
             {"host": ["t1", "t3"]}, True),
            ("gpu", ["power_watts"], None, ["host", "vendor"], {"vendor": "amd"}, True),
            ("gpu", ["power_watts"], "5m", ["host", "gpu", "model"], {"gpu": "0", "model": "NVIDIA A100-SXM4-80GB"},
             True),
            ("cpu", ["idle_ratio"], "5m", ["host", "cpu"], {"host": "t2", "cpu": "total"}, True),
            ("net", ["rx_bytes_per_second"], "5m", ["host", "interface"], {"host": ["t2", "t3"]}, False),
            ("disk", ["read_bytes_per_second"], None, ["host", "device"], {"host": "t1", "device": "nvme0n1"}, False),
        ]
        for m, fields, every, by, where_tags, gauges in cases:
            got = telegraf.frame(m, fields, start, end, every=every, by=by, where_tags=where_tags)
            whole = telegraf.frame(m, fields, start, end, every=every, by=by)
            keep = pd.Series(True, index=whole.index)
            for tag, values in where_tags.items():
                keep &= whole[tag].isin([values] if isinstance(values, str) else values)
            assert len(got) and len(got) < len(whole), (m, where_tags)
            pd.testing.assert_frame_equal(got, whole[keep].reset_index(drop=True), obj=f"{m} {where_tags}")
            if gauges:
                pd.testing.assert_frame_equal(got, fw.frame(m, fields, start, end, every=every, by=by,
                                                            where_tags=where_tags), check_exact=False, rtol=1e-9)
        # a constant tag outside the values, or a tag no view has, matches nothing (no query needed)
        assert telegraf.frame("gpu", ["power_watts"], start, end, where_tags={"vendor": "intel"}).empty
        assert telegraf.frame("gpu", ["power_watts"], start, end, where_tags={"job": "x"}).empty
        assert len(telegraf.aggregate("gpu", {"n": ("power_watts", "count")}, start, end, by=["host"],
                                      where_tags={"host": "t3", "job": ""})) == 1
