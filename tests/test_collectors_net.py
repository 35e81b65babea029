"""net (/proc/net/dev) and infiniband (/sys/class/infiniband) collectors on fixture trees."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agents.collectors.base import Cycle, Roots
from agents.collectors.infiniband import InfinibandCollector, parse_rate, parse_state
from agents.collectors.net import NetCollector, NetOptions, parse_net_dev
from tests.conftest import FIXTURES
from tests.helpers import collect_twice
from tests.schema_check import assert_schema


def by(points, measurement: str, **tags) -> list:
    return [p for p in points if p.measurement == measurement and all(p.tags.get(k) == v for k, v in tags.items())]


# ---------------------------------------------------------------- net


def test_parse_net_dev_handles_wide_counters_without_space_after_colon():
    rows = parse_net_dev((FIXTURES / "net" / "net" / "dev").read_text())
    assert rows["eth0"]["rx_bytes"] == 1234567890
    assert rows["ib0"]["rx_bytes"] == 98765432109876  # "ib0:98765432109876" has no space after the colon
    assert rows["ib0"]["tx_bytes"] == 87654321098765
    assert rows["eth0"]["rx_drop"] == 17
    assert rows["eth0"]["tx_packets"] == 7654321


def test_net_excludes_virtual_interfaces_and_reports_counters():
    c = NetCollector(Roots(proc=FIXTURES / "net", sys=FIXTURES / "net"), "n1")
    points = list(c.collect(Cycle(time_ns=1)))
    assert_schema(points)
    assert sorted(p.tags["interface"] for p in points) == ["eth0", "ib0"]
    eth0 = by(points, "net", interface="eth0")[0]
    assert eth0.tags["host"] == "n1"
    assert eth0.fields == {"rx_bytes": 1234567890, "tx_bytes": 987654321, "rx_packets": 9876543,
                           "tx_packets": 7654321, "rx_errors": 2, "tx_errors": 1, "rx_drops": 17, "tx_drops": 3}


def test_net_exclude_option_is_configurable_and_validated():
    c = NetCollector(Roots(proc=FIXTURES / "net", sys=FIXTURES / "net"), "n1", NetOptions(exclude="^eth"))
    names = sorted(p.tags["interface"] for p in c.collect(Cycle(time_ns=1)))
    assert names == ["docker0", "ib0", "lo", "veth1a2b3c"]
    with pytest.raises(ValueError):
        NetOptions(exclude="(")
    with pytest.raises(ValueError):
        NetOptions(exclud="x")


def _rewrite_net(path: Path, iface: str, rx: int, tx: int) -> None:
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        name, sep, rest = line.partition(":")
        if sep and name.strip() == iface:
            words = rest.split()
            words[0], words[8] = str(rx), str(tx)
            lines[i] = f"{name}:" + " ".join(words)
    path.write_text("\n".join(lines) + "\n")


def test_net_rates_from_two_reads_and_no_rate_after_reset(tmp_path):
    shutil.copytree(FIXTURES / "net", tmp_path / "proc")
    dev = tmp_path / "proc" / "net" / "dev"
    c = NetCollector(Roots(proc=tmp_path / "proc", sys=tmp_path / "proc"), "n1")
    first, second = collect_twice(c, 10.0, between=lambda: _rewrite_net(dev, "eth0", 1234567890 + 50_000_000,
                                                                           987654321 + 2_000_000))
    assert "rx_bytes_per_second" not in by(first, "net", interface="eth0")[0].fields
    eth0 = by(second, "net", interface="eth0")[0].fields
    assert eth0["rx_bytes_per_second"] == pytest.approx(5_000_000.0)
    assert eth0["tx_bytes_per_second"] == pytest.approx(200_000.0)
    assert by(second, "net", interface="ib0")[0].fields["rx_bytes_per_second"] == 0.0
    # The interface was re-created (counters back near zero): no rate, never negative.
    _rewrite_net(dev, "eth0", 1000, 2000)
    third = list(c.collect(Cycle(time_ns=1_700_000_000 * 10**9 + 20 * 10**9)))
    fields = by(third, "net", interface="eth0")[0].fields
    assert fields["rx_bytes"] == 1000
    assert "rx_bytes_per_second" not in fields and "tx_bytes_per_second" not in fields


def test_net_missing_proc_file_yields_nothing(tmp_path):
    assert list(NetCollector(Roots(proc=tmp_path, sys=tmp_path), "n1").collect(Cycle(time_ns=1))) == []


@pytest.fixture
def node(tmp_path) -> Roots:
    shutil.copytree(FIXTURES / "host" / "x86_64", tmp_path / "node", symlinks=True)
    return Roots(proc=tmp_path / "node" / "proc", sys=tmp_path / "node" / "sys")


def test_net_link_state_speed_and_mtu_from_sysfs(node):
    points = list(NetCollector(node, "n1").collect(Cycle(time_ns=1)))
    assert_schema(points)
    link = {p.tags["interface"]: {k: p.fields.get(k) for k in ("up", "operstate", "speed_bytes_per_second",
                                                                "mtu_bytes")} for p in points}
    assert link == {
        # speed 25000 Mb/s = 25e9 bit/s = 3.125e9 bytes/s; IPoIB's 200000 Mb/s = 25e9 bytes/s.
        "eth0": {"up": 1, "operstate": "up", "speed_bytes_per_second": 3_125_000_000, "mtu_bytes": 9000},
        "ib0": {"up": 1, "operstate": "up", "speed_bytes_per_second": 25_000_000_000, "mtu_bytes": 4092},
        # A down link reads speed -1: no speed rather than a negative one.
        "eth1": {"up": 0, "operstate": "down", "speed_bytes_per_second": None, "mtu_bytes": 1500},
    }


def test_net_speed_that_fails_to_read_is_left_out(node):
    speed = node.sys / "class" / "net" / "eth0" / "speed"
    speed.unlink()
    speed.mkdir()  # a read error, as the EINVAL of a driver that does not know its speed
    (eth0,) = [p for p in NetCollector(node, "n1").collect(Cycle(time_ns=1)) if p.tags["interface"] == "eth0"]
    assert "speed_bytes_per_second" not in eth0.fields
    assert eth0.fields["up"] == 1 and eth0.fields["mtu_bytes"] == 9000


# ---------------------------------------------------------------- infiniband


def test_parse_state_and_rate():
    assert parse_state("4: ACTIVE\n") == 4
    assert parse_state("1: DOWN") == 1
    assert parse_rate("200 Gb/sec (4X HDR)") == 25e9
    assert parse_rate("2.5 Gb/sec (1X SDR)") == pytest.approx(312_500_000.0)
    assert parse_rate("garbage") is None


def test_infiniband_words_times_four_and_port_without_counters_keeps_state_and_rate():
    c = InfinibandCollector(Roots(sys=FIXTURES / "infiniband"), "n1")
    points = list(c.collect(Cycle(time_ns=1)))
    assert_schema(points)
    ports = sorted((p.tags["device"], p.tags["port"]) for p in points if p.measurement == "infiniband")
    assert ports == [("mlx5_0", "1"), ("mlx5_0", "2"), ("mlx5_2", "1")]
    # mlx5_0 port 2 has no counters/: its state and rate still say the link is down.
    assert by(points, "infiniband", device="mlx5_0", port="2")[0].fields == {
        "state": 1, "physical_state": 3, "rate_bytes_per_second": 1.25e9, "link_layer": "InfiniBand"}
    assert by(points, "infiniband_hw", device="mlx5_0", port="2") == []
    p1 = by(points, "infiniband", device="mlx5_0", port="1")[0].fields
    assert p1["xmit_bytes"] == 2_500_000_000 * 4
    assert p1["rcv_bytes"] == 1_250_000_000 * 4
    assert p1["xmit_packets"] == 41_000_000 and p1["rcv_packets"] == 39_000_000
    assert p1["xmit_wait"] == 12345 and p1["symbol_error"] == 3 and p1["link_downed"] == 1
    assert p1["rcv_errors"] == 0 and p1["excessive_buffer_overrun_errors"] == 0
    assert p1["state"] == 4 and p1["physical_state"] == 5
    assert p1["rate_bytes_per_second"] == 25e9
    assert p1["link_layer"] == "InfiniBand"
    roce = by(points, "infiniband", device="mlx5_2", port="1")[0].fields
    assert roce["link_layer"] == "Ethernet"
    assert roce["xmit_bytes"] == 400_000 and roce["rcv_bytes"] == 800_000
    assert roce["rate_bytes_per_second"] == 12.5e9
    hw = {p.tags["counter"]: p.fields["value"] for p in by(points, "infiniband_hw", device="mlx5_0", port="1")}
    assert hw == {"local_ack_timeout_err": 5, "out_of_buffer": 17, "rnr_nak_retry_err": 2}


def test_infiniband_error_counters_and_a_port_without_pma(tmp_path):
    shutil.copytree(FIXTURES / "host" / "x86_64" / "sys", tmp_path / "sys", symlinks=True)
    points = list(InfinibandCollector(Roots(sys=tmp_path / "sys"), "n1").collect(Cycle(time_ns=1)))
    assert_schema(points)
    p1 = by(points, "infiniband", device="mlx5_0", port="1")[0].fields
    errors = {k: p1[k] for k in ("link_error_recovery", "rcv_errors", "rcv_remote_physical_errors",
                                 "rcv_switch_relay_errors", "xmit_discards", "xmit_constraint_errors",
                                 "rcv_constraint_errors", "local_link_integrity_errors",
                                 "excessive_buffer_overrun_errors", "vl15_dropped")}
    assert errors == {"link_error_recovery": 2, "rcv_errors": 7, "rcv_remote_physical_errors": 1,
                      "rcv_switch_relay_errors": 0, "xmit_discards": 11, "xmit_constraint_errors": 0,
                      "rcv_constraint_errors": 4, "local_link_integrity_errors": 0,
                      "excessive_buffer_overrun_errors": 0, "vl15_dropped": 9}
    # i40iw: every counter reads "N/A (no PMA)"; the port is reported with its state and rate only.
    (i40iw,) = by(points, "infiniband", device="i40iw0", port="1")
    assert i40iw.fields == {"state": 4, "physical_state": 5, "rate_bytes_per_second": 1.25e9,
                            "link_layer": "Ethernet"}


def test_infiniband_rates_and_counter_reset(tmp_path):
    shutil.copytree(FIXTURES / "infiniband", tmp_path / "sys")
    counters = tmp_path / "sys" / "class" / "infiniband" / "mlx5_0" / "ports" / "1" / "counters"

    def advance() -> None:
        (counters / "port_xmit_data").write_text(f"{2_500_000_000 + 25_000_000}\n")  # +100 MB in 10 s
        (counters / "port_rcv_data").write_text(f"{1_250_000_000 + 2_500}\n")  # +10 kB

    c = InfinibandCollector(Roots(sys=tmp_path / "sys"), "n1")
    first, second = collect_twice(c, 10.0, between=advance)
    assert "xmit_bytes_per_second" not in by(first, "infiniband", device="mlx5_0", port="1")[0].fields
    f = by(second, "infiniband", device="mlx5_0", port="1")[0].fields
    assert f["xmit_bytes_per_second"] == pytest.approx(10_000_000.0)
    assert f["rcv_bytes_per_second"] == pytest.approx(1_000.0)
    # Counters cleared (perfquery -R, driver reload): no rate field rather than a negative one.
    (counters / "port_xmit_data").write_text("10\n")
    third = list(c.collect(Cycle(time_ns=1_700_000_000 * 10**9 + 20 * 10**9)))
    f = by(third, "infiniband", device="mlx5_0", port="1")[0].fields
    assert f["xmit_bytes"] == 40
    assert "xmit_bytes_per_second" not in f
    assert f["rcv_bytes_per_second"] == 0.0


def test_infiniband_unreadable_counters_keep_the_port_and_the_others(tmp_path):
    shutil.copytree(FIXTURES / "infiniband", tmp_path / "sys")
    counters = tmp_path / "sys" / "class" / "infiniband" / "mlx5_0" / "ports" / "1" / "counters"
    # Stand-in for EINVAL on read (HCA without a PMA): every counter read fails with an OSError.
    for f in list(counters.iterdir()):
        f.unlink()
        f.mkdir()
    points = list(InfinibandCollector(Roots(sys=tmp_path / "sys"), "n1").collect(Cycle(time_ns=1)))
    ib = {(p.tags["device"], p.tags["port"]): p.fields for p in points if p.measurement == "infiniband"}
    assert sorted(ib) == [("mlx5_0", "1"), ("mlx5_0", "2"), ("mlx5_2", "1")]
    assert ib[("mlx5_0", "1")] == {"state": 4, "physical_state": 5, "rate_bytes_per_second": 25e9,
                                   "link_layer": "InfiniBand"}
    assert ib[("mlx5_2", "1")]["xmit_bytes"] == 400_000


def test_infiniband_absent_yields_nothing(tmp_path):
    assert list(InfinibandCollector(Roots(sys=tmp_path), "n1").collect(Cycle(time_ns=1))) == []
