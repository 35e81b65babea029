"""infiniband: HCA port counters from /sys/class/infiniband (InfiniBand and RoCE)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

from agents.collectors.base import Collector, Cycle, listdir, read_int, read_str
from agents.points import FieldValue, Point
from agents.schema.interconnect import INFINIBAND, INFINIBAND_HW

# port_xmit_data / port_rcv_data count octets divided by 4 (IBA spec, PortCounters attribute).
_WORD_BYTES = 4

# counters/ file -> (field, multiplier)
_COUNTERS = {
    "port_xmit_data": ("xmit_bytes", _WORD_BYTES),
    "port_rcv_data": ("rcv_bytes", _WORD_BYTES),
    "port_xmit_packets": ("xmit_packets", 1),
    "port_rcv_packets": ("rcv_packets", 1),
    "port_xmit_wait": ("xmit_wait", 1),
    "symbol_error": ("symbol_error", 1),
    "link_downed": ("link_downed", 1),
    "link_error_recovery": ("link_error_recovery", 1),
    "port_rcv_errors": ("rcv_errors", 1),
    "port_rcv_remote_physical_errors": ("rcv_remote_physical_errors", 1),
    "port_rcv_switch_relay_errors": ("rcv_switch_relay_errors", 1),
    "port_xmit_discards": ("xmit_discards", 1),
    "port_xmit_constraint_errors": ("xmit_constraint_errors", 1),
    "port_rcv_constraint_errors": ("rcv_constraint_errors", 1),
    "local_link_integrity_errors": ("local_link_integrity_errors", 1),
    "excessive_buffer_overrun_errors": ("excessive_buffer_overrun_errors", 1),
    "VL15_dropped": ("vl15_dropped", 1),
}

_RATE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*Gb/sec")


def parse_state(text: str) -> int | None:
    """'4: ACTIVE' -> 4 (state); '5: LinkUp' -> 5 (phys_state)."""
    head = text.split(":", 1)[0].strip()
    return int(head) if head.isdigit() else None


def parse_rate(text: str) -> float | None:
    """'200 Gb/sec (4X HDR)' -> 25e9 bytes per second (the signalling rate the port reports)."""
    m = _RATE.match(text)
    return float(m.group(1)) * 1e9 / 8 if m else None


class InfinibandCollector(Collector):
    name = "infiniband"
    measurements = (INFINIBAND, INFINIBAND_HW)

    def collect(self, cycle: Cycle) -> Iterator[Point]:
        base = self.sys("class", "infiniband")
        devices = listdir(base)
        if not devices:
            self.log_once("absent", logging.DEBUG, "no InfiniBand devices under %s", base)
        for device in devices:
            for port in listdir(base / device / "ports"):
                yield from self._port(cycle, device, port, base / device / "ports" / port)

    def _port(self, cycle: Cycle, device: str, port: str, path: Path) -> Iterator[Point]:
        # Every read below is tolerant: one port without a PMA (EINVAL on read) or half
        # torn down by a driver reload must not cost the other ports their points.
        fields: dict[str, FieldValue] = {}
        for file_name, (field, scale) in _COUNTERS.items():
            value = read_int(path / "counters" / file_name)
            if value is not None:
                fields[field] = value * scale
        if not fields:
            # i40iw and some RoCE adapters have no PMA: counters/ is absent or reads "N/A (no PMA)". The
            # port's state and rate still tell whether the link is up, so the point keeps those.
            self.log_once((device, port), logging.DEBUG, "%s port %s has no readable counters", device, port)
        for file_name, field in (("state", "state"), ("phys_state", "physical_state")):
            if (n := parse_state(read_str(path / file_name))) is not None:
                fields[field] = n
        if (r := parse_rate(read_str(path / "rate"))) is not None:
            fields["rate_bytes_per_second"] = r
        link_layer = read_str(path / "link_layer")
        if link_layer:
            fields["link_layer"] = link_layer
        for counter, rate_field in (("xmit_bytes", "xmit_bytes_per_second"), ("rcv_bytes", "rcv_bytes_per_second")):
            if counter in fields:
                self.add_rate(fields, rate_field, (device, port, counter), fields[counter], cycle)
        tags = {"device": device, "port": port}
        if not fields:
            return  # a port torn down between the directory listing and the reads
        yield self.point(INFINIBAND, tags, fields, cycle)
        for counter in listdir(path / "hw_counters"):
            value = read_int(path / "hw_counters" / counter)
            if value is not None:
                yield self.point(INFINIBAND_HW, {**tags, "counter": counter}, {"value": value}, cycle)
