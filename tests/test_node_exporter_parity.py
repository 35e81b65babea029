"""The agent against the real node_exporter (Debian's prometheus-node-exporter), both reading one
fixture tree in the kernel's formats (--path.procfs / --path.sysfs), quantity by quantity.

Every field of the agent that node_exporter also reports is looked up in node_exporter's live output
and must be equal (after the documented unit conversion). The table below is the equivalence that
docs/metrics.md states, so a wrong name there fails here.
"""

from __future__ import annotations

import re
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agents import schema
from agents.collectors import load
from agents.collectors.base import Cycle, Roots
from agents.collectors.cpu import CpuOptions
from agents.points import Point
from tests.conftest import FIXTURES, require_binary
from tests.helpers import free_port, wait_http

pytestmark = pytest.mark.services

TREE = FIXTURES / "host" / "x86_64"
NE_COLLECTORS = ("cpu", "stat", "loadavg", "meminfo", "vmstat", "pressure", "diskstats", "netdev", "netclass",
                 "infiniband", "hwmon", "thermal_zone", "rapl", "edac", "mountstats")
OUR_COLLECTORS = ("cpu", "memory", "vmstat", "pressure", "disk", "net", "infiniband", "hwmon", "thermal", "rapl",
                  "edac", "nfs")

Samples = dict[str, list[tuple[dict[str, str], float]]]


@dataclass(frozen=True)
class Rule:
    """Field `field` of `measurement` is node_exporter's `metric` with labels from `labels(tags)`,
    times `scale`. `metric` may depend on the tags (node_pressure_<resource>_...)."""

    measurement: str
    field: str
    metric: Callable[[dict[str, str]], str] | str
    labels: Callable[[dict[str, str]], dict[str, str]] = lambda tags: {}
    scale: float = 1.0

    def name(self, tags: dict[str, str]) -> str:
        return self.metric(tags) if callable(self.metric) else self.metric


def _same(*keys: str, **renamed: str) -> Callable[[dict[str, str]], dict[str, str]]:
    """Label mapping: tags kept under their names, and ne_label=our_tag renames."""
    return lambda tags: {**{k: tags[k] for k in keys}, **{ne: tags[ours] for ne, ours in renamed.items()}}


def _rules() -> list[Rule]:
    rules: list[Rule] = []
    add = rules.append
    for mode in schema.get("cpu").fields:
        if mode.endswith("_seconds") and not mode.startswith("guest"):
            m = mode.removesuffix("_seconds")
            add(Rule("cpu", mode, "node_cpu_seconds_total", lambda t, m=m: {"cpu": t["cpu"], "mode": m}))
    add(Rule("cpu", "guest_seconds", "node_cpu_guest_seconds_total", lambda t: {"cpu": t["cpu"], "mode": "user"}))
    add(Rule("cpu", "guest_nice_seconds", "node_cpu_guest_seconds_total",
             lambda t: {"cpu": t["cpu"], "mode": "nice"}))
    for field, metric in (("load1", "node_load1"), ("load5", "node_load5"), ("load15", "node_load15"),
                          ("procs_running", "node_procs_running"), ("procs_blocked", "node_procs_blocked"),
                          ("context_switches", "node_context_switches_total"),
                          ("boot_time_seconds", "node_boot_time_seconds")):
        add(Rule("system", field, metric))
    for field, key in (("total_bytes", "MemTotal"), ("available_bytes", "MemAvailable"), ("free_bytes", "MemFree"),
                       ("cached_bytes", "Cached"), ("buffers_bytes", "Buffers"), ("swap_total_bytes", "SwapTotal")):
        add(Rule("memory", field, f"node_memory_{key}_bytes"))
    for field, key in (("oom_kills", "oom_kill"), ("major_page_faults", "pgmajfault"), ("page_faults", "pgfault"),
                       ("swap_in_pages", "pswpin"), ("swap_out_pages", "pswpout")):
        add(Rule("vmstat", field, f"node_vmstat_{key}"))
    add(Rule("pressure", "some_stall_seconds", lambda t: f"node_pressure_{t['resource']}_waiting_seconds_total"))
    add(Rule("pressure", "full_stall_seconds", lambda t: f"node_pressure_{t['resource']}_stalled_seconds_total"))
    disk = _same("device")
    for field, metric, scale in (
        ("read_bytes", "node_disk_read_bytes_total", 1), ("write_bytes", "node_disk_written_bytes_total", 1),
        ("reads", "node_disk_reads_completed_total", 1), ("writes", "node_disk_writes_completed_total", 1),
        ("io_seconds", "node_disk_io_time_seconds_total", 1),
        ("weighted_io_seconds", "node_disk_io_time_weighted_seconds_total", 1),
        ("in_progress", "node_disk_io_now", 1),
        ("reads_merged", "node_disk_reads_merged_total", 1), ("writes_merged", "node_disk_writes_merged_total", 1),
        ("read_seconds", "node_disk_read_time_seconds_total", 1),
        ("write_seconds", "node_disk_write_time_seconds_total", 1),
        ("discards", "node_disk_discards_completed_total", 1),
        ("discards_merged", "node_disk_discards_merged_total", 1),
        ("discard_bytes", "node_disk_discarded_sectors_total", 512),
        ("discard_seconds", "node_disk_discard_time_seconds_total", 1),
        ("flushes", "node_disk_flush_requests_total", 1),
        ("flush_seconds", "node_disk_flush_requests_time_seconds_total", 1),
    ):
        add(Rule("disk", field, metric, disk, scale))
    net = _same(device="interface")
    for field, metric in (("rx_bytes", "receive_bytes_total"), ("tx_bytes", "transmit_bytes_total"),
                          ("rx_packets", "receive_packets_total"), ("tx_packets", "transmit_packets_total"),
                          ("rx_errors", "receive_errs_total"), ("tx_errors", "transmit_errs_total"),
                          ("rx_drops", "receive_drop_total"), ("tx_drops", "transmit_drop_total"),
                          ("up", "up"), ("speed_bytes_per_second", "speed_bytes"), ("mtu_bytes", "mtu_bytes")):
        add(Rule("net", field, f"node_network_{metric}", net))
    ib = _same("device", "port")
    for field, metric, scale in (
        ("xmit_bytes", "port_data_transmitted_bytes_total", 1), ("rcv_bytes", "port_data_received_bytes_total", 1),
        ("xmit_packets", "port_packets_transmitted_total", 1), ("rcv_packets", "port_packets_received_total", 1),
        ("xmit_wait", "port_transmit_wait_total", 1), ("symbol_error", "symbol_error_total", 1),
        ("link_downed", "link_downed_total", 1), ("link_error_recovery", "link_error_recovery_total", 1),
        ("rcv_errors", "port_errors_received_total", 1),
        ("rcv_remote_physical_errors", "port_receive_remote_physical_errors_total", 1),
        ("rcv_switch_relay_errors", "port_receive_switch_relay_errors_total", 1),
        ("xmit_discards", "port_discards_transmitted_total", 1),
        ("xmit_constraint_errors", "port_constraint_errors_transmitted_total", 1),
        ("rcv_constraint_errors", "port_constraint_errors_received_total", 1),
        ("local_link_integrity_errors", "local_link_integrity_errors_total", 1),
        ("excessive_buffer_overrun_errors", "excessive_buffer_overrun_errors_total", 1),
        ("vl15_dropped", "vl15_dropped_total", 1),
        ("state", "state_id", 1), ("physical_state", "physical_state_id", 1),
        ("rate_bytes_per_second", "rate_bytes_per_second", 1),
    ):
        add(Rule("infiniband", field, f"node_infiniband_{metric}", ib, scale))
    hw = _same("chip", "sensor")
    for field, metric in (("temp_celsius", "temp_celsius"), ("temp_max_celsius", "temp_max_celsius"),
                          ("temp_crit_celsius", "temp_crit_celsius"), ("power_watts", "power_average_watt")):
        add(Rule("hwmon", field, f"node_hwmon_{metric}", hw))
    add(Rule("thermal_zone", "temp_celsius", "node_thermal_zone_temp", _same("zone", "type")))
    # node_exporter names the family after the zone's name without its package suffix and labels the
    # sample with the zone's sysfs path.
    add(Rule("rapl", "energy_joules", lambda t: f"node_rapl_{t['domain'].split('-')[0]}_joules_total",
             lambda t: {"path": f"{TREE}/sys/class/powercap/intel-rapl:{t['zone']}"}))
    edac = _same("controller")
    add(Rule("edac", "correctable_errors", "node_edac_correctable_errors_total", edac))
    add(Rule("edac", "uncorrectable_errors", "node_edac_uncorrectable_errors_total", edac))
    return rules


# String fields, compared with a label of a node_exporter info-like series.
INFO_RULES = (
    ("net", "operstate", "node_network_info", "operstate", _same(device="interface")),
    ("hwmon", "label", "node_hwmon_sensor_label", "label", _same("chip", "sensor")),
    ("hwmon", "chip_name", "node_hwmon_chip_names", "chip_name", _same("chip")),
)


@pytest.fixture(scope="module")
def node_exporter() -> Iterator[Samples]:
    binary = require_binary("prometheus-node-exporter")
    port = free_port()
    args = [binary, f"--web.listen-address=127.0.0.1:{port}", f"--path.procfs={TREE / 'proc'}",
            f"--path.sysfs={TREE / 'sys'}", "--collector.disable-defaults",
            # netdev reads this machine's interfaces over netlink unless told to read /proc/net/dev.
            "--no-collector.netdev.netlink",
            *(f"--collector.{c}" for c in NE_COLLECTORS)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_http(f"http://127.0.0.1:{port}/metrics", timeout=30, proc=proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            text = r.read().decode()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))
    yield samples


@pytest.fixture(scope="module")
def ours() -> list[Point]:
    roots = Roots(proc=TREE / "proc", sys=TREE / "sys")
    points: list[Point] = []
    for name in OUR_COLLECTORS:
        options = CpuOptions(per_core=True) if name == "cpu" else None
        points += load(name)(roots, "n1", options).collect(Cycle(time_ns=1_700_000_000 * 10**9))
    return points


def find(samples: Samples, name: str, labels: dict[str, str]) -> list[tuple[dict[str, str], float]]:
    return [(lab, v) for lab, v in samples.get(name, []) if all(lab.get(k) == v2 for k, v2 in labels.items())]


def test_every_node_exporter_collector_succeeded(node_exporter):
    success = {lab["collector"]: v for lab, v in node_exporter["node_scrape_collector_success"]}
    assert success == dict.fromkeys(NE_COLLECTORS, 1.0)


def test_shared_quantities_are_equal(node_exporter, ours):
    rules: dict[tuple[str, str], list[Rule]] = {}
    for rule in _rules():
        rules.setdefault((rule.measurement, rule.field), []).append(rule)
    compared: dict[str, int] = {}
    mismatches, missing = [], []
    for p in ours:
        for field, value in p.fields.items():
            for rule in rules.get((p.measurement, field), []):
                name, labels = rule.name(p.tags), rule.labels(p.tags)
                if p.measurement == "pressure" and field == "full_stall_seconds" and p.tags["resource"] == "cpu":
                    continue  # node_exporter 1.5 does not export cpu's "full" line (always 0 at system level)
                if p.measurement == "cpu" and p.tags["cpu"] == "total":
                    continue  # the agent's own sum over CPUs; node_exporter has per-CPU series only
                found = find(node_exporter, name, labels)
                if len(found) != 1:
                    missing.append(f"{p.measurement}.{field} {p.tags}: {name}{labels} found {len(found)} times")
                    continue
                expected = found[0][1] * rule.scale
                if value != pytest.approx(expected, rel=1e-9, abs=1e-9):
                    mismatches.append(f"{p.measurement}.{field} {p.tags}: {value} != {name}{labels} {expected}")
                compared[p.measurement] = compared.get(p.measurement, 0) + 1
    for measurement, field, name, label, mapping in INFO_RULES:
        for p in ours:
            if p.measurement == measurement and field in p.fields:
                found = find(node_exporter, name, mapping(p.tags))
                if [lab.get(label) for lab, _ in found] != [p.fields[field]]:
                    mismatches.append(f"{measurement}.{field} {p.tags}: {p.fields[field]!r} vs {found}")
                compared[measurement] = compared.get(measurement, 0) + 1
    assert not missing, "\n".join(missing)
    assert not mismatches, "\n".join(mismatches)
    # Worked out from the fixture tree: 16 CPUs x 10 modes; 7 system values; 6 memory; 5 vmstat;
    # 3 resources some + 2 full; 4 disks (sda, nvme0n1 with 17 values; dm-0 and md0, also 20-field lines:
    # 17 each); 3 interfaces x 8 counters + up + mtu + operstate, and speed for eth0 and ib0 (eth1 is
    # down); InfiniBand: mlx5_0 port 1 with 17 counters + state, physical_state, rate, mlx5_2 port 1 with
    # 7 + 3, i40iw0 (no PMA) 3; hwmon: 4 temperature sensors x 3 + 4 labels + 1 power + 5 chip names
    # (one per sensor point); 2 thermal zones; 4 RAPL zones; 2 EDAC controllers x 2.
    expected = {"cpu": 160, "system": 7, "memory": 6, "vmstat": 5, "pressure": 5, "disk": 4 * 17,
                "net": 3 * 11 + 2, "infiniband": 20 + 10 + 3, "hwmon": 12 + 4 + 1 + 5, "thermal_zone": 2,
                "rapl": 4, "edac": 4}
    assert compared == expected
    assert sum(expected.values()) == 351


def test_node_exporter_counts_a_down_links_speed_as_negative(node_exporter, ours):
    """Where the two differ on purpose: speed reads -1 on a down link; node_exporter 1.5 reports
    -125000 bytes/s, the agent leaves the field out."""
    (eth1,) = [p for p in ours if p.measurement == "net" and p.tags["interface"] == "eth1"]
    assert "speed_bytes_per_second" not in eth1.fields
    assert find(node_exporter, "node_network_speed_bytes", {"device": "eth1"})[0][1] == -125000


def test_nfs_matches_mountstats(node_exporter, ours):
    """mountstats labels by export; the agent by path, server and version. read_bytes is normal plus
    direct reads; rtt_seconds is the sum of the round trips (response_time), not of the execute time."""
    exports = {"/home": "nfs.example.com:/export/home", "/apps": "10.0.0.3:/export/apps"}
    for p in (p for p in ours if p.measurement == "nfs"):
        export = {"export": exports[p.tags["path"]]}

        def one(name: str, export: dict[str, str] = export, **labels: str) -> float:
            (found,) = find(node_exporter, name, {**export, **labels})
            return found[1]

        def total(name: str, export: dict[str, str] = export) -> float:
            return sum(v for _, v in find(node_exporter, name, export))

        f = p.fields
        assert f["read_bytes"] == one("node_mountstats_nfs_read_bytes_total") + one(
            "node_mountstats_nfs_direct_read_bytes_total")
        assert f["write_bytes"] == one("node_mountstats_nfs_write_bytes_total") + one(
            "node_mountstats_nfs_direct_write_bytes_total")
        assert f["read_ops"] == one("node_mountstats_nfs_operations_requests_total", operation="READ")
        assert f["write_ops"] == one("node_mountstats_nfs_operations_requests_total", operation="WRITE")
        assert f["ops"] == total("node_mountstats_nfs_operations_requests_total")
        assert f["rtt_seconds"] == pytest.approx(total("node_mountstats_nfs_operations_response_time_seconds_total"))
        assert f["rtt_seconds"] != pytest.approx(total("node_mountstats_nfs_operations_request_time_seconds_total"))


def test_docs_equivalences_name_metrics_node_exporter_serves(node_exporter):
    """Every plain node_exporter name the schema gives (no expression, no placeholder) for the families
    compared here is one node_exporter served on the fixture tree."""
    served = set(node_exporter)
    checked = 0
    for m in ("cpu", "system", "memory", "vmstat", "disk", "net", "infiniband", "hwmon", "thermal_zone", "edac"):
        for f in schema.get(m).fields.values():
            name = re.split(r"[{ ]", f.node_exporter, maxsplit=1)[0]
            if not name.startswith("node_") or "<" in name:
                continue
            assert name in served, f"{m}.{f.name}: {name} is not a node_exporter metric"
            checked += 1
    assert checked >= 80

