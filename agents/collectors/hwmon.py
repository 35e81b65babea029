"""hwmon: temperatures and power from /sys/class/hwmon/hwmon*/ (temp*_input, power*_average|input).

Values are integers in the hwmon sysfs ABI's units (Documentation/hwmon/sysfs-interface.rst):
millidegrees Celsius and microwatts. hwmonN numbers follow driver load order and change between
boots, so the chip is named after the device the hwmon belongs to, exactly as node_exporter names it
(the device link's parent directory and name, e.g. platform_coretemp_0, nvme_nvme0), falling back to
the name file and then to hwmonN.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

from agents.collectors.base import Collector, Cycle, listdir, read_int, read_str
from agents.points import FieldValue, Point
from agents.schema.host import HWMON

_SENSOR_FILE = re.compile(r"^(temp|power)(\d+)_(input|average|max|crit|label)$")
_INVALID = re.compile(r"[^a-z0-9:_]")
_MILLI = 1e-3
_MICRO = 1e-6


def clean_name(text: str) -> str:
    """node_exporter's cleanMetricName: lower case, anything but [a-z0-9:_] to '_', trimmed of '_'."""
    return _INVALID.sub("_", text.strip().lower()).strip("_")


def chip_name(hwmon_dir: Path) -> str:
    device = hwmon_dir / "device"
    if device.exists():
        real = Path(os.path.realpath(device))
        name, kind = clean_name(real.name), clean_name(real.parent.name)
        if kind and name:
            return f"{kind}_{name}"
        if name:
            return name
    name = clean_name(read_str(hwmon_dir / "name"))
    return name or clean_name(Path(os.path.realpath(hwmon_dir)).name)


def sensors(hwmon_dir: Path) -> dict[str, dict[str, str]]:
    """{'temp1': {'input': 'temp1_input', 'label': 'temp1_label', ...}, 'power1': {...}}"""
    out: dict[str, dict[str, str]] = {}
    for name in listdir(hwmon_dir):
        m = _SENSOR_FILE.match(name)
        if m:
            out.setdefault(m[1] + m[2], {})[m[3]] = name
    return out


class HwmonCollector(Collector):
    name = "hwmon"
    measurements = (HWMON,)

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        # entry -> (chip, driver name, sensor files). Naming a chip resolves symlinks and reads files that
        # do not change while the driver stays loaded: done again only when the set of hwmon entries changes.
        self._chips: dict[str, tuple[str, str, dict[str, dict[str, str]]]] = {}

    def collect(self, cycle: Cycle) -> Iterator[Point]:
        base = self.sys("class", "hwmon")
        entries = listdir(base)
        if not entries:
            self.log_once("absent", logging.DEBUG, "no hwmon chips under %s", base)
        if set(entries) != set(self._chips):
            self._chips = {entry: self._describe(base / entry) for entry in entries}
        for entry in entries:
            chip, driver, files_by_sensor = self._chips[entry]
            for sensor, files in files_by_sensor.items():
                fields = self._fields(base / entry, sensor, files)
                if not fields:
                    continue  # a sensor whose reads fail (ENODATA from a sleeping device)
                if driver:
                    fields["chip_name"] = driver
                yield self.point(HWMON, {"chip": chip, "sensor": sensor}, fields, cycle)

    @staticmethod
    def _describe(directory: Path) -> tuple[str, str, dict[str, dict[str, str]]]:
        return chip_name(directory), read_str(directory / "name"), sensors(directory)

    @staticmethod
    def _fields(directory: Path, sensor: str, files: dict[str, str]) -> dict[str, FieldValue]:
        fields: dict[str, FieldValue] = {}
        if sensor.startswith("temp"):
            for kind, field in (("input", "temp_celsius"), ("max", "temp_max_celsius"),
                                ("crit", "temp_crit_celsius")):
                value = read_int(directory / files[kind]) if kind in files else None
                if value is not None:
                    fields[field] = value * _MILLI
        else:
            # power*_average is what most chips (amdgpu, ACPI power meters) offer; power*_input the rest.
            for kind in ("average", "input"):
                value = read_int(directory / files[kind]) if kind in files else None
                if value is not None:
                    fields["power_watts"] = value * _MICRO
                    break
        if fields and "label" in files:
            label = read_str(directory / files["label"])
            if label:
                fields["label"] = label
        return fields
