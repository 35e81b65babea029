"""amd: AMD GPUs through the amdgpu driver's sysfs files (no rocm-smi, no ROCm libraries).

Reads /sys/class/drm/card<N>/device/ for each card bound to amdgpu: gpu_busy_percent,
mem_busy_percent, mem_info_vram_*, and the hwmon directory (power in microwatts, temperatures in
millidegrees, clocks in Hz), as documented in the kernel's Documentation/gpu/amdgpu/thermal.rst
and driver-misc.rst.

Compute processes come from KFD's per-process view (the kernel's amdkfd, as rocm-smi --showpids reads
it): /sys/class/kfd/kfd/proc/<pid>/vram_<gpu_id> is the VRAM the process holds on that GPU, and
/sys/class/kfd/kfd/topology/nodes/<N>/{gpu_id,properties} map gpu_id to the card's render node
(drm_render_minor). They are left, with the GPU inventory, in the round's shared state for the jobs
collector, as the NVIDIA collector does with NVML's processes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

from agents.collectors.base import Collector, Cycle, listdir, read_text
from agents.points import FieldValue, Point
from agents.schema.accelerators import GPU, GPU_INFO

AMD_VENDOR = 0x1002

# PCI device ids of data-centre parts whose boards often lack product_name (no FRU EEPROM read).
KNOWN_DEVICES = {
    0x740C: "MI250X/MI250",
    0x7408: "MI250X",
    0x74A1: "MI300X",
    0x738C: "MI100",
}

_CARD = re.compile(r"card(\d+)$")  # card0-DP-1 and renderD128 are connectors and render nodes


class _Unreadable(Exception):
    """An attribute that exists but could not be read: the GPU answered with an error."""


def _read(path: Path) -> str | None:
    """The attribute's text, None when the file is absent; raises _Unreadable on an I/O error."""
    try:
        return read_text(path).strip()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise _Unreadable(f"{path}: {e}") from e


def _int(path: Path) -> int | None:
    text = _read(path)
    if not text:
        return None
    try:
        word = text.split()[0]
        return int(word, 16) if word.startswith("0x") else int(word)
    except ValueError as e:
        raise _Unreadable(f"{path}: {text!r} is not an integer") from e


def _driver(device: Path) -> str | None:
    try:
        return os.path.basename(os.readlink(device / "driver"))
    except OSError:
        pass
    text = _read(device / "uevent") or ""
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == "DRIVER":
            return value
    return None


def _pci_address(device: Path) -> str:
    for line in (_read(device / "uevent") or "").splitlines():
        key, _, value = line.partition("=")
        if key == "PCI_SLOT_NAME":
            return value
    # In the real tree device is a symlink into /sys/devices/.../0000:c1:00.0.
    return os.path.basename(os.path.realpath(device))


class AmdCollector(Collector):
    name = "amd"
    measurements = (GPU, GPU_INFO)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)


    def cards(self) -> list[Path]:
        """device/ directories of the cards bound to amdgpu, in card-number order."""
        drm = self.sys("class", "drm")
        numbered = sorted((int(m.group(1)), name) for name in listdir(drm) if (m := _CARD.match(name)))
        found = []
        for _, name in numbered:
            device = drm / name / "device"
            try:
                vendor = _int(device / "vendor")
            except _Unreadable:
                continue
            if vendor == AMD_VENDOR and _driver(device) == "amdgpu":
                found.append(device)
        return found

    def collect(self, cycle: Cycle) -> Iterator[Point]:
        cards = self.cards()
        if not cards:
            self.log_once(("absent",), logging.DEBUG, "amd: no card bound to amdgpu under %s",
                           self.sys("class", "drm"))
            return
        driver = None
        with contextlib.suppress(_Unreadable):
            driver = _read(self.sys("module", "amdgpu", "version"))  # present for DKMS builds only
        kfd = self._kfd_processes()
        for index, device in enumerate(cards):
            tags = self._tags(index, device)
            fields = self._fields(index, device)
            procs = self._share(cycle, index, device, tags, fields, kfd)
            if procs is not None:
                fields["processes"] = len(procs)
            yield self.point(GPU, tags, fields, cycle)
            info: dict[str, FieldValue] = {"mig_mode": "unsupported"}
            if driver:
                info["driver"] = driver
            yield self.point(GPU_INFO, tags, info, cycle)

    def _tags(self, index: int, device: Path) -> dict[str, str]:
        try:
            model = _read(device / "product_name")
            if not model:
                device_id = _int(device / "device")
                model = KNOWN_DEVICES.get(device_id, f"0x{device_id:04x}") if device_id is not None else ""
            uuid = _read(device / "unique_id") or _pci_address(device)
        except _Unreadable:
            model, uuid = "", _pci_address(device)
        return {"gpu": str(index), "uuid": uuid, "vendor": "amd", "model": model}

    def _fields(self, index: int, device: Path) -> dict[str, FieldValue]:
        fields: dict[str, FieldValue] = {}
        up = 1
        ratios = (("utilization_ratio", "gpu_busy_percent"), ("memory_bandwidth_ratio", "mem_busy_percent"))
        plain = (("memory_used_bytes", "mem_info_vram_used"), ("memory_total_bytes", "mem_info_vram_total"))
        reads = [(f, device / name, lambda v: v / 100.0) for f, name in ratios]
        reads += [(f, device / name, int) for f, name in plain]
        hwmon = self._hwmon(device)
        if hwmon is not None:
            power = hwmon / "power1_average"
            if not power.exists():  # newer kernels on some ASICs report the instantaneous value only
                power = hwmon / "power1_input"
            reads += [
                ("power_watts", power, lambda v: v / 1e6),  # microwatts
                ("power_limit_watts", hwmon / "power1_cap", lambda v: v / 1e6),
                ("sm_clock_hertz", hwmon / "freq1_input", float),  # sclk, already in Hz
            ]
            temp = self._temperature_input(hwmon)
            if temp is not None:
                reads.append(("temperature_celsius", temp, lambda v: v / 1000.0))  # millidegrees
        for field_name, path, convert in reads:
            try:
                value = _int(path)
            except _Unreadable as e:
                up = 0
                self.log_once(("read", str(path)), logging.WARNING, "amd: GPU %d: %s", index, e)
                continue
            if value is not None:
                fields[field_name] = convert(value)
        return {"up": up, **fields}

    # -- KFD: processes and the VRAM each holds ---------------------------------------------------

    def _kfd_processes(self) -> dict[int, list[tuple[int, int]]] | None:
        """render minor -> [(pid, VRAM bytes)] from KFD; None when the host has no KFD (processes unknown)."""
        kfd = self.sys("class", "kfd", "kfd")
        nodes = kfd / "topology" / "nodes"
        minor_of: dict[str, int] = {}
        for n in listdir(nodes):
            try:
                gpu_id = (_read(nodes / n / "gpu_id") or "0").strip()
                props = _read(nodes / n / "properties") or ""
            except _Unreadable:
                continue
            if gpu_id == "0":  # a CPU node
                continue
            for line in props.splitlines():
                key, _, value = line.partition(" ")
                if key == "drm_render_minor" and value.strip().isdigit():
                    minor_of[gpu_id] = int(value)
        if not minor_of:
            return None
        found: dict[int, list[tuple[int, int]]] = {m: [] for m in minor_of.values()}
        for pid in listdir(kfd / "proc"):
            if not pid.isdigit():
                continue
            for name in listdir(kfd / "proc" / pid):
                gpu_id = name[len("vram_"):] if name.startswith("vram_") else None
                if gpu_id not in minor_of:
                    continue
                try:
                    used = _int(kfd / "proc" / pid / name)
                except _Unreadable:
                    continue  # the process exited while we read
                # KFD creates vram_<id> for every GPU the process can see; holding no VRAM there is not using it.
                if used:
                    found[minor_of[gpu_id]].append((int(pid), used))
        return found

    @staticmethod
    def _render_minor(device: Path) -> int | None:
        for name in listdir(device / "drm"):
            if name.startswith("renderD") and name[7:].isdigit():
                return int(name[7:])
        return None

    def _share(self, cycle: Cycle, index: int, device: Path, tags: dict[str, str], fields: dict[str, FieldValue],
               kfd: dict[int, list[tuple[int, int]]] | None) -> list[tuple[int, int]] | None:
        """Leaves the GPU and its KFD processes in the round's shared state; returns the processes (None:
        unknown)."""
        minor = self._render_minor(device)
        procs = kfd.get(minor) if kfd is not None and minor is not None else None
        util = fields.get("utilization_ratio")
        cycle.shared.setdefault("gpus", []).append({
            "vendor": "amd", "gpu": tags["gpu"], "uuid": tags["uuid"], "slot": index, "render_minor": minor,
            # ROCm names a GPU "GPU-<unique_id in hex>" (ROCR_VISIBLE_DEVICES); the AMD device plugin by PCI address.
            "ids": {tags["uuid"], f"GPU-{tags['uuid']}", _pci_address(device)} - {"", "GPU-"},
            "processes_known": procs is not None,
            "utilization_ratio": util, "memory_used_bytes": fields.get("memory_used_bytes")})
        cycle.shared.setdefault("gpu_processes", []).extend(
            {"gpu": tags["gpu"], "uuid": tags["uuid"], "pid": pid, "memory_used_bytes": used,
             "utilization_ratio": util} for pid, used in procs or ())
        return procs

    @staticmethod
    def _hwmon(device: Path) -> Path | None:
        names = [n for n in listdir(device / "hwmon") if n.startswith("hwmon")]
        return device / "hwmon" / names[0] if names else None

    @staticmethod
    def _temperature_input(hwmon: Path) -> Path | None:
        """The edge sensor, else the junction one (MI300 has no edge sensor), else temp1."""
        labels = {}
        for name in listdir(hwmon):
            m = re.fullmatch(r"(temp\d+)_label", name)
            if m:
                try:
                    labels[(_read(hwmon / name) or "").lower()] = m.group(1)
                except _Unreadable:
                    continue
        for label in ("edge", "junction"):
            if label in labels and (hwmon / f"{labels[label]}_input").exists():
                return hwmon / f"{labels[label]}_input"
        temp1 = hwmon / "temp1_input"
        return temp1 if temp1.exists() else None
