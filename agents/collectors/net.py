"""net: per-interface counters from /proc/net/dev; link state, speed and MTU from /sys/class/net."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

from pydantic import BaseModel, ConfigDict, Field

from agents.collectors.base import Collector, Cycle, Regex, read_int, read_str, read_text
from agents.points import FieldValue, Point
from agents.schema.interconnect import NET

log = logging.getLogger("fleetwise.collectors.net")

# Virtual interfaces of containers and overlays: per-pod veths would explode cardinality and
# double-count traffic already seen on the physical NIC.
DEFAULT_EXCLUDE = r"^(lo|veth.*|docker\d+|cali.*|flannel.*|cni\d+)$"

# speed is in Mb/s (10^6 bits): bytes per second = Mb/s x 10^6 / 8.
_MBIT_BYTES = 125_000

# Column order after the colon, as the kernel prints it (net/core/net-procfs.c, dev_seq_printf_stats).
_COLUMNS = ("rx_bytes", "rx_packets", "rx_errs", "rx_drop", "rx_fifo", "rx_frame", "rx_compressed", "rx_multicast",
            "tx_bytes", "tx_packets", "tx_errs", "tx_drop", "tx_fifo", "tx_colls", "tx_carrier", "tx_compressed")


class NetOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    exclude: Regex = Field(DEFAULT_EXCLUDE, description="Regex of interface names to leave out.")



def parse_net_dev(text: str) -> dict[str, dict[str, int]]:
    """/proc/net/dev -> {interface: {column: value}}.

    The name is split at the first colon, not at whitespace: wide counters leave no space after it
    ("eth0:123456789012 ..."). Malformed lines are skipped rather than failing the whole file.
    """
    out: dict[str, dict[str, int]] = {}
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        if not sep:
            continue
        words = rest.split()
        if len(words) < len(_COLUMNS):
            continue
        try:
            out[name.strip()] = {col: int(w) for col, w in zip(_COLUMNS, words, strict=False)}
        except ValueError:
            continue
    return out


class NetCollector(Collector):
    name = "net"
    measurements = (NET,)
    Options = NetOptions

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._exclude = re.compile(self.options.exclude)

    def collect(self, cycle: Cycle) -> Iterator[Point]:
        try:
            text = read_text(self.proc("net", "dev"))
        except FileNotFoundError:
            log.debug("no %s; net collector has nothing to read", self.proc("net", "dev"))
            return
        for iface, c in parse_net_dev(text).items():
            if self._exclude.match(iface):
                continue
            fields: dict[str, FieldValue] = {
                "rx_bytes": c["rx_bytes"],
                "tx_bytes": c["tx_bytes"],
                "rx_packets": c["rx_packets"],
                "tx_packets": c["tx_packets"],
                "rx_errors": c["rx_errs"],
                "tx_errors": c["tx_errs"],
                "rx_drops": c["rx_drop"],
                "tx_drops": c["tx_drop"],
            }
            fields.update(self._link(iface))
            self.add_rate(fields, "rx_bytes_per_second", ("rx", iface), c["rx_bytes"], cycle)
            self.add_rate(fields, "tx_bytes_per_second", ("tx", iface), c["tx_bytes"], cycle)
            yield self.point(NET, {"interface": iface}, fields, cycle)

    def _link(self, iface: str) -> dict[str, FieldValue]:
        """operstate, speed and MTU from sysfs; each left out when unreadable (no sysfs in the container,
        an interface gone between the two reads)."""
        base = self.sys("class", "net", iface)
        out: dict[str, FieldValue] = {}
        state = read_str(base / "operstate")
        if state:
            out["operstate"] = state
            out["up"] = int(state == "up")
        # speed reads -1 (or fails with EINVAL) while the link is down or the driver does not know
        # (virtio, some bonds): no value rather than a negative or zero speed.
        speed = read_int(base / "speed")
        if speed is not None and speed > 0:
            out["speed_bytes_per_second"] = speed * _MBIT_BYTES
        mtu = read_int(base / "mtu")
        if mtu is not None:
            out["mtu_bytes"] = mtu
        return out
