"""The Prometheus reader against a real Prometheus: dcgm-exporter and node_exporter series backfilled with
promtool at known times, read through agents.query as fleetwise measurements, must give the frames the
embedded store gives for the same quantities written in fleetwise's schema (the store contract), with
every unit converted by the mapping table."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from agents.points import Point
from agents.query import QueryError, open_reader, promql
from agents.query.identifiers import InvalidIdentifier
from agents.stores.embedded import EmbeddedWriter
from tests.conftest import REPO
from tests.prom_helpers import backfill, openmetrics, prometheus_on

pytestmark = pytest.mark.services

T0_MS = 1_795_651_200_000  # 2026-11-26T00:00:00Z
S = 1000
MIB = 2**20
A100 = "NVIDIA A100-SXM4-80GB"
# (host, gpu index, uuid, job labels dcgm-exporter adds, the job_gpu tags they stand for)
GPUS = [
    ("n1", "0", "GPU-a", {"pod": "train-0", "namespace": "ml", "container": "main"},
     {"job": "train-0", "scheduler": "kubernetes", "user": "ml"}),
    ("n1", "1", "GPU-b", {}, None),
    ("n2", "0", "GPU-c", {"hpc_job": "4242"}, {"job": "4242", "scheduler": "slurm", "user": ""}),
]
N = 30  # 5 minutes at 10 s


def present(i: int, k: int) -> bool:
    return not (i == 2 and 12 <= k < 18)  # GPU-c: minute 2 is a gap


def util_pct(i: int, k: int) -> int:
    return ((k * 37 + i * 11) % 10) * 10  # 0..90: some samples at 0 (idle)


def fb_used_mib(i: int, k: int) -> int:
    return 1000 + 37 * k + 100 * i


def power_w(i: int, k: int) -> float:
    return 100.0 + 2.5 * k + 10 * i


CORES, CPU_IDLE = 2, (0.25, 0.75)  # node_exporter: two cores, idle at these constant rates (s/s)
NET_RATE = 1e6  # bytes/s received on eth0


def dcgm_families():
    fams = {name: [] for name in ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE",
                                  "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_SM_CLOCK",
                                  "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION")}
    for i, (host, gpu, uuid, job, _) in enumerate(GPUS):
        labels = {"gpu": gpu, "UUID": uuid, "device": f"nvidia{gpu}", "modelName": A100, "Hostname": host,
                  "DCGM_FI_DRIVER_VERSION": "535.104.05", **job}
        ks = [k for k in range(N) if present(i, k)]
        t = [T0_MS + k * 10 * S for k in ks]
        values = {"DCGM_FI_DEV_GPU_UTIL": util_pct, "DCGM_FI_DEV_FB_USED": fb_used_mib,
                  "DCGM_FI_DEV_FB_FREE": lambda i, k: 81920 - fb_used_mib(i, k), "DCGM_FI_DEV_POWER_USAGE": power_w,
                  "DCGM_FI_DEV_SM_CLOCK": lambda i, k: 1410,
                  "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": lambda i, k: 2_500_000 * k}
        for name, fn in values.items():
            fams[name].append((labels, [(tt, fn(i, k)) for tt, k in zip(t, ks, strict=True)]))
    return fams


def node_families():
    cpu, net = [], []
    for host in ("n1", "n2"):
        for c in range(CORES):
            for mode, rate in (("idle", CPU_IDLE[c]), ("user", 1 - CPU_IDLE[c])):
                labels = {"cpu": str(c), "mode": mode, "instance": f"{host}:9100", "job": "node"}
                cpu.append((labels, [(T0_MS + k * 10 * S, 1000.0 + rate * 10 * k) for k in range(N)]))
        net.append(({"device": "eth0", "instance": f"{host}:9100", "job": "node"},
                    [(T0_MS + k * 10 * S, 5e9 + NET_RATE * 10 * k) for k in range(N)]))
    return {"node_cpu_seconds_total": cpu, "node_network_receive_bytes_total": net}


def fleetwise_points() -> list[Point]:
    """The same quantities as fleetwise's own agent would have written them, in base units."""
    pts = []
    for i, (host, gpu, uuid, _, job_tags) in enumerate(GPUS):
        for k in range(N):
            if not present(i, k):
                continue
            t = (T0_MS + k * 10 * S) * 10**6
            used = fb_used_mib(i, k) * MIB
            pts.append(Point("gpu", {"host": host, "gpu": gpu, "uuid": uuid, "vendor": "nvidia", "model": A100},
                             {"utilization_ratio": util_pct(i, k) / 100, "memory_used_bytes": used,
                              "memory_total_bytes": 81920 * MIB, "power_watts": power_w(i, k),
                              "sm_clock_hertz": 1410e6, "energy_joules": 2500.0 * k}, t))
            if job_tags:
                pts.append(Point("job_gpu", {"host": host, **job_tags, "gpu": gpu, "uuid": uuid},
                                 {"utilization_ratio": util_pct(i, k) / 100, "memory_used_bytes": used}, t))
    for host in ("n1", "n2"):
        for k in range(1, N):  # the agent's first read has no rate yet
            t = (T0_MS + k * 10 * S) * 10**6
            pts.append(Point("cpu", {"host": host, "cpu": "total"},
                             {"idle_ratio": sum(CPU_IDLE) / CORES, "user_ratio": 1 - sum(CPU_IDLE) / CORES}, t))
            pts.append(Point("net", {"host": host, "interface": "eth0"}, {"rx_bytes_per_second": NET_RATE}, t))
    return pts


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    work = tmp_path_factory.mktemp("prom")
    tsdb = backfill(openmetrics({**dcgm_families(), **node_families()}), work)
    root = tmp_path_factory.mktemp("embedded")
    EmbeddedWriter(root).write(fleetwise_points())
    with prometheus_on(tsdb, work) as server:
        prom = open_reader(server.url.replace("http://", "prometheus://"))
        embedded = open_reader(f"embedded:{root}")
        yield {"prometheus": prom, "embedded": embedded, "url": server.url}
        embedded.close()


START, END = pd.Timestamp(T0_MS, unit="ms", tz="UTC"), pd.Timestamp(T0_MS + 300 * S, unit="ms", tz="UTC")
GPU_FIELDS = ["utilization_ratio", "memory_used_bytes", "memory_total_bytes", "power_watts", "sm_clock_hertz",
              "energy_joules"]
CASES = {
    **{f"gpu_{agg}_1m": dict(measurement="gpu", fields=GPU_FIELDS, every="1m", by=["host", "uuid"], agg=agg)
       for agg in ("mean", "max", "min", "sum", "count", "last")},
    "gpu_mean_by_host": dict(measurement="gpu", fields=["utilization_ratio", "power_watts"], every="1m",
                             by=["host"]),
    "gpu_mean_by_model_vendor": dict(measurement="gpu", fields=["power_watts"], every="2m", by=["vendor", "model"]),
    "gpu_cut_window": dict(measurement="gpu", fields=["power_watts"], every="1m", by=["host", "uuid"], agg="max",
                           start=START + pd.Timedelta(seconds=30), end=START + pd.Timedelta(seconds=260)),
    "gpu_raw": dict(measurement="gpu", fields=["utilization_ratio", "memory_used_bytes"], by=["host", "gpu"]),
    "job_gpu_mean_1m": dict(measurement="job_gpu", fields=["utilization_ratio", "memory_used_bytes"], every="1m",
                            by=["job", "scheduler", "user"]),
    "job_gpu_raw": dict(measurement="job_gpu", fields=["memory_used_bytes"], by=["job", "uuid"]),
    "cpu_mean_1m": dict(measurement="cpu", fields=["idle_ratio", "user_ratio"], every="1m", by=["host", "cpu"]),
    "net_mean_1m": dict(measurement="net", fields=["rx_bytes_per_second"], every="1m", by=["host", "interface"]),
    "net_raw": dict(measurement="net", fields=["rx_bytes_per_second"], by=["host", "interface"]),
    # where_tags through the mapping: a label (UUID), host from instance without its port, constants
    "gpu_tags_host_1m": dict(measurement="gpu", fields=GPU_FIELDS, every="1m", by=["host", "uuid"],
                             where_tags={"host": "n1"}),
    "gpu_tags_uuids_raw": dict(measurement="gpu", fields=["power_watts"], by=["host", "gpu"],
                               where_tags={"uuid": ["GPU-c", "GPU-a"], "vendor": "nvidia", "model": A100}),
    "job_gpu_tags_scheduler": dict(measurement="job_gpu", fields=["utilization_ratio"], every="1m", by=["job"],
                                   where_tags={"scheduler": "slurm"}),
    "cpu_tags_host": dict(measurement="cpu", fields=["idle_ratio"], every="1m", by=["host"],
                          where_tags={"host": ["n2", "n1:9100"], "cpu": "total"}),
    "net_tags_host_raw": dict(measurement="net", fields=["rx_bytes_per_second"], by=["host"],
                              where_tags={"host": "n1"}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_frames_equal_the_embedded_store(stores, case):
    kw = dict(CASES[case])
    m = kw.pop("measurement")
    kw.setdefault("start", START)
    kw.setdefault("end", END)
    prom, emb = (stores[s].frame(m, **kw) for s in ("prometheus", "embedded"))
    assert len(emb), "the embedded side must have rows for the comparison to mean anything"
    pd.testing.assert_frame_equal(prom, emb, check_exact=False, rtol=1e-9)


def test_aggregates_equal_the_embedded_store(stores):
    """The job table's own job_gpu queries, per series over the window and with a where condition."""
    by = ["job", "scheduler", "user", "host", "gpu", "uuid"]
    stats = {"n": ("utilization_ratio", "count"), "s": ("utilization_ratio", "sum"),
             "hi": ("utilization_ratio", "max"), "mem": ("memory_used_bytes", "max"),
             "since": ("utilization_ratio", "first_time"), "until": ("memory_used_bytes", "last_time")}
    for kw in (dict(stats=stats), dict(stats={"idle": ("utilization_ratio", "count")},
                                       where=[("utilization_ratio", "<", 0.05)]),
               dict(stats={"m": ("power_watts", "mean"), "c": ("power_watts", "count")}, every="2m")):
        measurement = "job_gpu" if "every" not in kw else "gpu"
        b = by if measurement == "job_gpu" else ["host", "uuid"]
        prom, emb = (stores[s].aggregate(measurement, start=START, end=END, by=b, **kw)
                     for s in ("prometheus", "embedded"))
        assert len(emb)
        pd.testing.assert_frame_equal(prom, emb, check_exact=False, rtol=1e-9)


def test_where_tags_match_the_embedded_store_and_bind_odd_values(stores):
    prom, emb = stores["prometheus"], stores["embedded"]
    for kw in (dict(where_tags={"host": "n1"}), dict(where_tags={"uuid": ["GPU-c"]}, where=[
            ("utilization_ratio", "<", 0.5)]), dict(where_tags={"scheduler": "kubernetes", "user": "ml"})):
        stats = {"n": ("utilization_ratio", "count"), "m": ("memory_used_bytes", "max")}
        a, b = (r.aggregate("job_gpu", stats, START, END, by=["job", "uuid"], **kw) for r in (prom, emb))
        assert len(b) == 1
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9)
    # by hand: n1's GPU-a holds train-0 for all 30 samples
    n1 = prom.aggregate("job_gpu", {"n": ("utilization_ratio", "count")}, START, END, by=["job"],
                        where_tags={"host": "n1"})
    assert n1.job.tolist() == ["train-0"] and n1.n.tolist() == [N]
    odd = 'n1"} or vector(1) or up{a="\\'
    for r in (prom, emb):
        assert r.frame("gpu", ["power_watts"], START, END, where_tags={"host": odd}).empty
        assert r.frame("cpu", ["idle_ratio"], START, END, every="1m", where_tags={"host": [odd, "[::1]"]}).empty
        assert r.frame("gpu", ["power_watts"], START, END, where_tags={"scheduler": "slurm"}).empty  # not a gpu tag


def test_units_are_converted_by_the_mapping(stores):
    """Worked by hand from the served values: MiB, %, W, mJ and MHz become bytes, ratios, W, J and Hz."""
    f = stores["prometheus"].frame("gpu", GPU_FIELDS, START, END, by=["uuid"])
    a0 = f[(f.uuid == "GPU-a") & (f.time == START)].iloc[0]
    assert a0["memory_used_bytes"] == 1000 * 1_048_576  # 1000 MiB
    assert a0["memory_total_bytes"] == 81920 * 1_048_576  # FB_FREE + FB_USED
    assert a0["utilization_ratio"] == 0.0 and a0["sm_clock_hertz"] == 1.41e9
    a3 = f[(f.uuid == "GPU-a") & (f.time == START + pd.Timedelta(seconds=30))].iloc[0]
    assert a3["utilization_ratio"] == pytest.approx(0.10)  # (3 * 37) % 10 = 1 -> 10 %
    assert a3["energy_joules"] == pytest.approx(7500.0)  # 3 x 2,500,000 mJ
    assert a3["power_watts"] == 107.5
    cpu = stores["prometheus"].frame("cpu", ["idle_ratio"], START, END, every="5m", by=["host"])
    assert cpu["idle_ratio"].tolist() == pytest.approx([0.5, 0.5])  # mean of 0.25 and 0.75 s/s per core


def test_percentile_is_interpolated(stores):
    """quantile_over_time interpolates (InfluxQL takes the nearest rank): documented, checked by hand."""
    f = stores["prometheus"].frame("gpu", ["power_watts"], START, START + pd.Timedelta(minutes=1), every="1m",
                                   by=["uuid"], agg="p50")
    values = sorted(power_w(0, k) for k in range(6))
    assert f[f.uuid == "GPU-a"]["power_watts"].iloc[0] == pytest.approx(np.quantile(values, 0.5))


def test_metadata(stores):
    prom = stores["prometheus"]
    assert prom.measurements() == ["cpu", "gpu", "job_gpu", "net"]
    assert prom.tag_values("job_gpu", "job") == ["4242", "train-0"]
    assert prom.tag_values("job_gpu", "scheduler") == ["kubernetes", "slurm"]
    assert prom.tag_values("cpu", "host") == ["n1", "n2"]  # instance without its port
    assert prom.time_bounds("gpu") == (START, START + pd.Timedelta(seconds=290))
    assert prom.time_bounds("gpu") == stores["embedded"].time_bounds("gpu")
    assert prom.time_bounds("memory") is None


def test_promql_is_built_from_validated_names_and_escaped_values():
    assert promql.string('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'
    assert promql.selector("DCGM_FI_DEV_GPU_UTIL", {"pod": 'x"} or up{a="'}, ("hpc_job",)) == \
        'DCGM_FI_DEV_GPU_UTIL{pod="x\\"} or up{a=\\"",hpc_job!=""}'
    for bad in ("up or vector(1)", "a{b}", "", "1abc"):
        with pytest.raises(InvalidIdentifier):
            promql.metric_name(bad)
    for bad in ("__name__", "a-b", "a b"):
        with pytest.raises(InvalidIdentifier):
            promql.label_name(bad)
    with pytest.raises(ValueError):
        promql.number(float("nan"))
    assert promql.one_of("host", ('a"b',)) == 'host="a\\"b"'
    assert promql.one_of("host", ("a.b", "c|d")) == 'host=~"(?:a\\\\.b)|(?:c\\\\|d)"'
    assert promql.regex_literal("n1:9100 (x)*") == "n1\\:9100\\ \\(x\\)\\*"


def test_host_matchers_agree_with_strip_port():
    """The regular expressions that stand for host = strip_port(instance) select exactly the instances
    whose stripped value is asked for (checked with Python's re, which reads these patterns as RE2 does)."""
    import re

    from agents.query.mapped import strip_port
    from agents.query.prometheus import _tag_matchers
    from agents.schema.equivalents import NODE, views

    view = views(NODE, "cpu")[0]
    instances = ["n1", "n1:9100", "n10:9100", "a:1", "a:1:2", "[::1]", "[::1]:9100", "[::1]x", ":9100", ""]
    for wanted in ["n1", "a:1", "a", "[::1]", "", "[::1", "n1:9100", "x.y"]:
        (matcher,) = _tag_matchers(view, (("host", (wanted,)),)) or ("instance=~\"(?!)\"",)
        pattern = matcher.split("=~", 1)[1][1:-1].encode().decode("unicode_escape")
        chosen = {i for i in instances if re.fullmatch(pattern, i)}
        assert chosen == {i for i in instances if strip_port(i) == wanted}, wanted


def test_nothing_mapped_is_one_line_and_exit_1(tmp_path):
    work = tmp_path / "p"
    work.mkdir()
    tsdb = backfill(openmetrics({"some_app_requests_total": [({"instance": "x:1"}, [(T0_MS, 1.0)])]},
                                types={"some_app_requests_total": "counter"}), work)
    with prometheus_on(tsdb, work) as server:
        proc = subprocess.run([sys.executable, "-m", "fleetwise", "analyze", "--store",
                               server.url.replace("http://", "prometheus://"), "--state", str(tmp_path / "state")],
                              cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "DCGM_FI_DEV_GPU_UTIL" in lines[0] and "node_cpu_seconds_total" in lines[0]  # looked for
    assert "found some_app_requests_total" in lines[0]
    assert "Traceback" not in proc.stderr


def test_unreachable_prometheus_is_a_query_error():
    from tests.helpers import free_port

    reader = open_reader(f"prometheus://127.0.0.1:{free_port()}")
    with pytest.raises(QueryError, match="unreachable"):
        reader.measurements()
