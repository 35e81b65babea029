"""cpu: time by mode from /proc/stat (cumulative seconds, and each interval's share), load from
/proc/loadavg, and what the CPUs are.

The cpu_info parsing knows the three /proc/cpuinfo dialects of the fleet (x86_64, aarch64, ppc64le);
the architecture is inferred from the dialect, so a fixture tree of another machine reads correctly.
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from agents.collectors.base import Collector, Cycle, read_int, read_text
from agents.points import FieldValue, Point
from agents.schema.host import ACCOUNTED_MODES, CPU, CPU_INFO, CPU_MODES, SYSTEM

log = logging.getLogger("fleetwise.collectors.cpu")

# user..steal: guest and guest_nice are already counted inside user and nice, so only these add to 100%.
_ACCOUNTED = len(ACCOUNTED_MODES)
# /proc/stat counts in USER_HZ, which the kernel fixes at 100 on every architecture whatever CONFIG_HZ is
# (it is ABI: times(2), sysconf(_SC_CLK_TCK)); node_exporter assumes the same.
USER_HZ = 100

ARM_IMPLEMENTERS = {
    0x41: "ARM",
    0x42: "Broadcom",
    0x43: "Cavium",
    0x46: "Fujitsu",
    0x48: "HiSilicon",
    0x4E: "NVIDIA",
    0x50: "APM",
    0x51: "Qualcomm",
    0x61: "Apple",
    0x6D: "Microsoft",
    0xC0: "Ampere",
}

ARM_PARTS = {
    (0x41, 0xD03): "Cortex-A53",
    (0x41, 0xD07): "Cortex-A57",
    (0x41, 0xD08): "Cortex-A72",
    (0x41, 0xD0B): "Cortex-A76",
    (0x41, 0xD0C): "Neoverse-N1",
    (0x41, 0xD40): "Neoverse-V1",
    (0x41, 0xD49): "Neoverse-N2",
    (0x41, 0xD4F): "Neoverse-V2",
    (0x41, 0xD84): "Neoverse-V3",
    (0x41, 0xD8E): "Neoverse-N3",
    (0x43, 0x0AF): "ThunderX2",
    (0x46, 0x001): "A64FX",
    (0x48, 0xD01): "Kunpeng-920",
    (0x4E, 0x004): "Carmel",
    (0x61, 0x022): "M1 Icestorm",
    (0x61, 0x023): "M1 Firestorm",
    (0xC0, 0xAC3): "AmpereOne",
}

# Hardware threads per core when sysfs does not say: the PowerNV/scale-out default of each generation.
POWER_SMT = {"POWER8": 8, "POWER9": 4, "POWER10": 8}


class CpuOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    per_core: bool = Field(False, description="Also emit one cpu series per logical CPU (tag cpu=\"<n>\").")
    arch: str = Field("", description="Override the architecture inferred from /proc/cpuinfo (x86_64, aarch64, "
                                      "ppc64le).")


@dataclass
class ProcStat:
    cpus: dict[str, tuple[int, ...]]  # "total", "0", "1", ... -> the 10 mode counters in jiffies
    scalars: dict[str, int]  # ctxt, btime, procs_running, procs_blocked


@dataclass
class CpuInfo:
    arch: str
    vendor: str
    model: str
    sockets: int
    cores: int
    threads: int


def parse_stat(text: str) -> ProcStat:
    cpus: dict[str, tuple[int, ...]] = {}
    scalars: dict[str, int] = {}
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        key = words[0]
        if key.startswith("cpu"):
            label = key[3:] or "total"
            # Older kernels have fewer columns (steal since 2.6.11, guest_nice since 2.6.33): missing ones are 0.
            values = [int(w) for w in words[1:1 + len(CPU_MODES)]]
            cpus[label] = tuple(values + [0] * (len(CPU_MODES) - len(values)))
        elif key in ("ctxt", "btime", "procs_running", "procs_blocked") and len(words) > 1:
            scalars[key] = int(words[1])
    return ProcStat(cpus, scalars)


def seconds(jiffies: tuple[int, ...]) -> dict[str, FieldValue]:
    """The cumulative time of each mode in seconds, what Prometheus users take rate() over."""
    return {f"{mode}_seconds": j / USER_HZ for mode, j in zip(CPU_MODES, jiffies, strict=True)}


def ratios(previous: tuple[int, ...], current: tuple[int, ...]) -> dict[str, FieldValue] | None:
    """Mode shares between two readings, or None when any counter went down (hotplug, reset) or no time passed."""
    deltas = [c - p for p, c in zip(previous, current, strict=True)]
    if any(d < 0 for d in deltas):
        return None
    total = sum(deltas[:_ACCOUNTED])
    if total <= 0:
        return None
    fields: dict[str, FieldValue] = {f"{mode}_ratio": d / total for mode, d in zip(CPU_MODES, deltas, strict=True)}
    idle = deltas[CPU_MODES.index("idle")] + deltas[CPU_MODES.index("iowait")]
    fields["busy_ratio"] = (total - idle) / total
    return fields


def _blocks(text: str) -> tuple[list[dict[str, str]], dict[str, str]]:
    """cpuinfo -> (one dict per 'processor' block, the keys outside them: ppc's platform/model/machine)."""
    blocks: list[dict[str, str]] = []
    outside: dict[str, str] = {}
    current: dict[str, str] | None = None
    for line in text.splitlines():
        if not line.strip():
            current = None
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key == "processor" and value.isdigit():
            current = {"processor": value}
            blocks.append(current)
        elif current is not None:
            current[key] = value
        else:
            outside[key] = value
    return blocks, outside


def detect_arch(blocks: list[dict[str, str]], outside: dict[str, str]) -> str:
    first = blocks[0] if blocks else {}
    if "CPU implementer" in first:
        return "aarch64" if first.get("CPU architecture", "8").strip() in ("8", "AArch64") else "armv7l"
    if "vendor_id" in first:
        return "x86_64" if " lm " in f" {first.get('flags', '')} " else "i686"
    if "cpu" in first and ("POWER" in first["cpu"] or "platform" in outside):
        return "ppc64le"
    if outside.get("vendor_id", "").startswith("IBM/S390"):
        return "s390x"
    return ""


def _int(text: str, default: int = 0) -> int:
    try:
        return int(text, 0)
    except ValueError:
        return default


def _topology(sys_root: Path, cpus: list[str]) -> tuple[int, int, int] | None:
    """(sockets, cores, smt) from sysfs, or None when the kernel exposes no topology."""
    packages: set[int] = set()
    cores: set[tuple[int, int]] = set()
    smt = 1
    for cpu in cpus:
        topo = sys_root / "devices" / "system" / "cpu" / f"cpu{cpu}" / "topology"
        core = read_int(topo / "core_id")
        if core is None:
            return None
        # -1 means "unknown" (PowerVM LPARs, some arm64 firmware): count that as one package.
        package = max(read_int(topo / "physical_package_id") or 0, 0)
        packages.add(package)
        cores.add((package, core))
        try:
            siblings = read_text(topo / "thread_siblings_list").strip()
            smt = max(smt, _count_list(siblings))
        except OSError:
            pass
    return len(packages), len(cores), smt


def _count_list(text: str) -> int:
    """Kernel cpulist '0-3,8' -> 5."""
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        if lo.strip().isdigit():
            n += (int(hi) - int(lo) + 1) if hi.strip().isdigit() else 1
    return n


def parse_cpuinfo(text: str, sys_root: Path, arch: str = "") -> CpuInfo:
    blocks, outside = _blocks(text)
    arch = arch or detect_arch(blocks, outside)
    threads = len(blocks)
    ids = [b["processor"] for b in blocks]
    first = blocks[0] if blocks else {}
    if arch in ("aarch64", "armv7l"):
        implementer = _int(first.get("CPU implementer", ""), -1)
        part = _int(first.get("CPU part", ""), -1)
        vendor = ARM_IMPLEMENTERS.get(implementer, f"0x{implementer:02x}" if implementer >= 0 else "")
        model = ARM_PARTS.get((implementer, part)) or first.get("model name") or (
            f"part 0x{part:03x}" if part >= 0 else "")
        topo = _topology(sys_root, ids)
        sockets, cores = (topo[0], topo[1]) if topo else (1, threads)
    elif arch.startswith("ppc"):
        vendor = "IBM"
        model = first.get("cpu", "").split(",")[0].split(" (")[0].strip()
        topo = _topology(sys_root, ids)
        if topo:
            sockets, cores = topo[0], topo[1]
        else:
            smt = POWER_SMT.get(model, 1)
            sockets, cores = 1, max(threads // smt, 1) if threads else 0
    else:
        vendor = first.get("vendor_id", "")
        model = first.get("model name", "")
        packages = {b.get("physical id", "0") for b in blocks}
        sockets = len(packages) if blocks else 0
        if all("core id" in b for b in blocks):
            cores = len({(b.get("physical id", "0"), b["core id"]) for b in blocks})
        elif "cpu cores" in first:
            cores = _int(first["cpu cores"], 1) * sockets
        else:
            cores = threads
    return CpuInfo(arch, vendor, model, sockets, cores, threads)


def parse_loadavg(text: str) -> dict[str, FieldValue]:
    words = text.split()
    return {"load1": float(words[0]), "load5": float(words[1]), "load15": float(words[2])}


class CpuCollector(Collector):
    name = "cpu"
    measurements = (CPU, CPU_INFO, SYSTEM)
    Options = CpuOptions

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self._last: dict[str, tuple[int, ...]] = {}
        self._info: CpuInfo | None = None
        self._info_cpus: frozenset[str] = frozenset()

    def collect(self, cycle: Cycle) -> Iterator[Point]:
        stat = parse_stat(read_text(self.proc("stat")))
        wanted = {"total"} | (set(stat.cpus) - {"total"} if self.options.per_core else set())
        for label in sorted(wanted & set(stat.cpus), key=lambda s: (s != "total", int(s) if s.isdigit() else 0)):
            previous = self._last.get(label)
            current = stat.cpus[label]
            self._last[label] = current
            fields = seconds(current)
            fields.update((ratios(previous, current) if previous is not None else None) or {})
            yield self.point(CPU, {"cpu": label}, fields, cycle)
        # Forget CPUs that went offline, so a CPU that comes back starts from a fresh first read.
        for label in set(self._last) - (wanted & set(stat.cpus)):
            del self._last[label]

        info = self._cpu_info(frozenset(stat.cpus))
        if info is not None:
            yield self.point(CPU_INFO, {}, {
                "arch": info.arch, "vendor": info.vendor, "model": info.model,
                "sockets": info.sockets, "cores": info.cores, "threads": info.threads,
            }, cycle)

        system: dict[str, FieldValue] = {}
        try:
            system.update(parse_loadavg(read_text(self.proc("loadavg"))))
        except (OSError, ValueError, IndexError) as e:
            log.debug("no load averages from %s: %s", self.proc("loadavg"), e)
        for key, name in (("procs_running", "procs_running"), ("procs_blocked", "procs_blocked"),
                          ("ctxt", "context_switches"), ("btime", "boot_time_seconds")):
            if key in stat.scalars:
                system[name] = stat.scalars[key]
        if system:
            yield self.point(SYSTEM, {}, system, cycle)

    def _cpu_info(self, cpus: frozenset[str]) -> CpuInfo | None:
        # Reading /proc/cpuinfo on x86 makes the kernel sample every CPU's frequency, which costs
        # milliseconds on big hosts: parse it again only when the set of online CPUs changed.
        if self._info is not None and cpus == self._info_cpus:
            return self._info
        try:
            text = read_text(self.proc("cpuinfo"))
        except OSError as e:
            log.debug("no %s: %s", self.proc("cpuinfo"), e)
            return None
        info = parse_cpuinfo(text, self.roots.sys, self.options.arch)
        if not info.arch and self.roots.proc == Path("/proc"):
            # An unknown dialect on this very machine: uname knows. Never for a fixture tree of another host.
            info.arch = _normalize_machine(platform.machine())
        self._info = info
        self._info_cpus = cpus
        return self._info


def _normalize_machine(machine: str) -> str:
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine.lower(), machine)
