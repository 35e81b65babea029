"""agents.exposition: metric families built from points, rendered and parsed back by prometheus-client."""

from __future__ import annotations

import gzip
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agents import collectors
from agents.collectors.base import Collector, Cycle
from agents.config import AgentSettings, Config
from agents.exposition import LatestSample, families, serve
from agents.points import Point
from agents.runner import Agent
from agents.schema.host import MEMORY
from tests.helpers import free_port

T = 1_700_000_000 * 10**9

# /proc/meminfo as the kernel writes it (fs/proc/meminfo.c: "%-16s%8lu kB"), trimmed.
MEMINFO = """\
MemTotal:       16318480 kB
MemFree:         1234560 kB
MemAvailable:    8000000 kB
Buffers:          204800 kB
Cached:          6000000 kB
SwapCached:            0 kB
SwapTotal:       2097148 kB
SwapFree:        2000000 kB
HugePages_Total:       0
"""


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} from an exposition, via prometheus-client's own parser."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def render(points: list[Point]) -> str:
    latest = LatestSample()
    latest.update(points)
    return generate_latest(latest.registry).decode()


def by_name(fams) -> dict:
    return {f.name: f for f in fams}


def test_names_host_dropped_and_values_exact():
    p = Point("memory", {"host": "n1"}, {"total_bytes": 16318480 * 1024, "used_ratio": 0.25}, T)
    fams = by_name(families([p]))
    assert set(fams) == {"fleetwise_memory_total_bytes", "fleetwise_memory_used_ratio"}
    assert isinstance(fams["fleetwise_memory_total_bytes"], GaugeMetricFamily)
    assert fams["fleetwise_memory_total_bytes"].documentation == "MemTotal."
    values = samples(render([p]))
    # No host label: Prometheus adds instance itself. Large integers survive the float formatting exactly.
    assert values == {("fleetwise_memory_total_bytes", ()): 16710123520.0,
                      ("fleetwise_memory_used_ratio", ()): 0.25}


def test_counters_end_in_total_and_are_counter_families():
    p = Point("agent", {"host": "n1", "collector": "cpu"}, {"errors": 3, "up": 1}, T)
    fams = by_name(families([p]))
    # prometheus-client keeps a counter family's name without _total and appends it to the sample.
    assert isinstance(fams["fleetwise_agent_errors"], CounterMetricFamily)
    assert isinstance(fams["fleetwise_agent_up"], GaugeMetricFamily)
    text = render([p])
    assert "# TYPE fleetwise_agent_errors_total counter" in text
    assert 'fleetwise_agent_errors_total{collector="cpu"} 3.0' in text
    assert samples(text)[("fleetwise_agent_up", (("collector", "cpu"),))] == 1.0


def test_labels_from_tags_in_schema_order_whatever_the_dict_order():
    a = Point("job", {"host": "n1", "job": "17", "scheduler": "slurm", "user": "ada"}, {"memory_bytes": 100}, T)
    b = Point("job", {"user": "bob", "scheduler": "slurm", "job": "18", "host": "n1"}, {"memory_bytes": 200}, T)
    fam = by_name(families([a, b]))["fleetwise_job_memory_bytes"]
    assert [s.labels for s in fam.samples] == [
        {"job": "17", "scheduler": "slurm", "user": "ada"},
        {"job": "18", "scheduler": "slurm", "user": "bob"},
    ]
    values = samples(render([a, b]))
    assert values[("fleetwise_job_memory_bytes", (("job", "18"), ("scheduler", "slurm"), ("user", "bob")))] == 200


def test_rates_only_when_the_field_asks_for_prometheus():
    # job_progress: progress is a counter with prometheus=False, progress_per_second a plain rate.
    progress = Point("job_progress", {"host": "n1", "job": "5", "scheduler": "slurm", "user": "ada",
                                      "unit": "steps"}, {"progress": 1000, "progress_per_second": 12.5}, T)
    # job.cpu_cores is a rate with prometheus=True; cpu_seconds a counter.
    job = Point("job", {"host": "n1", "job": "5", "scheduler": "slurm", "user": "ada"},
                {"cpu_seconds": 90.5, "cpu_cores": 1.5}, T)
    cpu = Point("cpu", {"host": "n1", "cpu": "total"}, {"busy_ratio": 0.75, "idle_ratio": 0.25}, T)
    values = samples(render([progress, job, cpu]))
    assert {name for name, _ in values} == {
        "fleetwise_job_cpu_seconds_total", "fleetwise_job_cpu_cores",
        "fleetwise_cpu_busy_ratio", "fleetwise_cpu_idle_ratio",
    }
    assert values[("fleetwise_cpu_busy_ratio", (("cpu", "total"),))] == 0.75
    assert values[("fleetwise_job_cpu_cores", (("job", "5"), ("scheduler", "slurm"), ("user", "ada")))] == 1.5


def test_cpu_seconds_are_one_family_with_a_mode_label_beside_the_ratios():
    p = Point("cpu", {"host": "n1", "cpu": "total"}, {"user_seconds": 120.5, "system_seconds": 30.25,
                                                      "guest_seconds": 4.0, "guest_nice_seconds": 1.0,
                                                      "user_ratio": 0.5}, T)
    fams = by_name(families([p]))
    assert isinstance(fams["fleetwise_cpu_seconds"], CounterMetricFamily)
    assert fams["fleetwise_cpu_seconds"].documentation.startswith("CPU time by mode")
    values = samples(render([p]))
    # Guest time is inside user and nice already: its own family, as node_exporter does, so that
    # sum by (cpu) (rate(fleetwise_cpu_seconds_total[5m])) is the whole time.
    assert values == {
        ("fleetwise_cpu_seconds_total", (("cpu", "total"), ("mode", "user"))): 120.5,
        ("fleetwise_cpu_seconds_total", (("cpu", "total"), ("mode", "system"))): 30.25,
        ("fleetwise_cpu_guest_seconds_total", (("cpu", "total"), ("mode", "user"))): 4.0,
        ("fleetwise_cpu_guest_seconds_total", (("cpu", "total"), ("mode", "nice"))): 1.0,
        ("fleetwise_cpu_user_ratio", (("cpu", "total"),)): 0.5,
    }


def test_schema_refuses_a_family_whose_fields_disagree_on_labels():
    from agents.schema.types import counter, measurement

    with pytest.raises(ValueError, match="different label keys"):
        measurement("m", "h", (), counter("a", "h", family="f", labels=(("mode", "a"),)),
                    counter("b", "h", family="f", labels=(("kind", "b"),)))
    with pytest.raises(ValueError, match="clash with tags"):
        measurement("m", "h", ("mode",), counter("a", "h", family="f", labels=(("mode", "a"),)))


def test_info_fields_become_one_info_series_with_value_1():
    p = Point("cpu_info", {"host": "n1"}, {"arch": "aarch64", "vendor": "ARM", "model": "Neoverse-V2",
                                           "sockets": 1, "cores": 72, "threads": 72}, T)
    values = samples(render([p]))
    assert values[("fleetwise_cpu_info", (("arch", "aarch64"), ("model", "Neoverse-V2"), ("vendor", "ARM")))] == 1
    assert values[("fleetwise_cpu_info_cores", ())] == 72
    assert values[("fleetwise_cpu_info_sockets", ())] == 1
    assert len(values) == 4


def test_unknown_measurements_and_fields_are_left_out():
    fams = families([Point("nosuch", {"host": "n1"}, {"x": 1}, T),
                     Point("memory", {"host": "n1"}, {"free_bytes": 5, "not_in_schema": 7}, T)])
    assert [f.name for f in fams] == ["fleetwise_memory_free_bytes"]


def test_label_values_are_escaped_and_parse_back():
    p = Point("job", {"host": "n1", "job": "1", "scheduler": "kubernetes", "user": 'a "quoted"\\ns\nx'},
              {"processes": 4}, T)
    values = samples(render([p]))
    assert values[("fleetwise_job_processes",
                   (("job", "1"), ("scheduler", "kubernetes"), ("user", 'a "quoted"\\ns\nx')))] == 4


class BrokenCollector(Collector):
    name = "broken"
    measurements = (MEMORY,)

    def collect(self, cycle: Cycle) -> Iterator[Point]:
        raise OSError("cannot read /proc/broken")


@pytest.fixture
def agent_with_broken(tmp_path: Path, monkeypatch) -> Agent:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "meminfo").write_text(MEMINFO)
    real_load = collectors.load
    monkeypatch.setattr(collectors, "REGISTRY", {"memory": collectors.REGISTRY["memory"], "broken": "x:y"})
    monkeypatch.setattr(collectors, "load", lambda name: BrokenCollector if name == "broken" else real_load(name))
    settings = AgentSettings(collectors=["memory", "broken"], proc_root=tmp_path / "proc", host="n1")
    return Agent(Config(agent=settings))


def test_agent_health_series_with_a_broken_collector(agent_with_broken: Agent):
    points = agent_with_broken.collect()
    values = samples(render(points))
    mem, broken = (("collector", "memory"),), (("collector", "broken"),)
    assert values[("fleetwise_agent_up", mem)] == 1
    assert values[("fleetwise_agent_up", broken)] == 0
    assert values[("fleetwise_agent_errors_total", mem)] == 0
    assert values[("fleetwise_agent_errors_total", broken)] == 1
    assert values[("fleetwise_agent_points", mem)] == 1
    assert values[("fleetwise_agent_last_success_timestamp_seconds", broken)] == 0
    last = values[("fleetwise_agent_last_success_timestamp_seconds", mem)]
    assert last == pytest.approx(points[0].time_ns / 1e9)
    assert 0 <= values[("fleetwise_agent_duration_seconds", mem)] < 5
    assert ("fleetwise_agent_duration_seconds", broken) in values
    # The working collector's values come from the fixture: MemTotal 16318480 kB, MemAvailable 8000000 kB.
    assert values[("fleetwise_memory_total_bytes", ())] == 16318480 * 1024
    assert values[("fleetwise_memory_used_bytes", ())] == (16318480 - 8000000) * 1024
    assert values[("fleetwise_memory_swap_used_bytes", ())] == (2097148 - 2000000) * 1024

    values = samples(render(agent_with_broken.collect()))
    assert values[("fleetwise_agent_errors_total", broken)] == 2


def test_served_bytes_are_the_rounds_rendering_plain_and_gzip():
    latest = LatestSample()
    server, _ = serve(latest, "127.0.0.1", free_port())
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
            assert r.read() == b""  # nothing collected yet: an empty but valid exposition
        latest.update([Point("memory", {"host": "n1"}, {"free_bytes": 4096}, T)])
        with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            plain = r.read().decode()
        assert samples(plain) == {("fleetwise_memory_free_bytes", ()): 4096}
        request = urllib.request.Request(url + "/metrics", headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(request, timeout=5) as r:
            assert r.headers["Content-Encoding"] == "gzip"
            assert gzip.decompress(r.read()).decode() == plain
        latest.update([Point("memory", {"host": "n1"}, {"free_bytes": 8192}, T)])
        with urllib.request.urlopen(request, timeout=5) as r:  # the gzip cache follows the new round
            assert samples(gzip.decompress(r.read()).decode()) == {("fleetwise_memory_free_bytes", ()): 8192}
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url + "/other", timeout=5)
        assert e.value.code == 404
    finally:
        server.shutdown()
        server.server_close()
