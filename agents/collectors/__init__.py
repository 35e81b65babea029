"""Collectors by name. Modules are imported only when a collector is enabled."""

from __future__ import annotations

import importlib

from agents.collectors.base import Collector

# name -> "module:Class"; the order is the order of a collection round (jobs after the GPUs,
# because the jobs collector attributes the GPU processes the nvidia collector saw).
REGISTRY: dict[str, str] = {
    "cpu": "agents.collectors.cpu:CpuCollector",
    "memory": "agents.collectors.memory:MemoryCollector",
    "vmstat": "agents.collectors.vmstat:VmstatCollector",
    "pressure": "agents.collectors.pressure:PressureCollector",
    "disk": "agents.collectors.disk:DiskCollector",
    "filesystem": "agents.collectors.filesystem:FilesystemCollector",
    "nfs": "agents.collectors.nfs:NfsCollector",
    "lustre": "agents.collectors.lustre:LustreCollector",
    "net": "agents.collectors.net:NetCollector",
    "infiniband": "agents.collectors.infiniband:InfinibandCollector",
    "hwmon": "agents.collectors.hwmon:HwmonCollector",
    "thermal": "agents.collectors.thermal:ThermalCollector",
    "rapl": "agents.collectors.rapl:RaplCollector",
    "edac": "agents.collectors.edac:EdacCollector",
    "nvidia": "agents.collectors.nvidia:NvidiaCollector",
    "amd": "agents.collectors.amd:AmdCollector",
    "jobs": "agents.collectors.jobs:JobsCollector",
    "textfile": "agents.collectors.textfile:TextfileCollector",
}

DEFAULT_ENABLED: tuple[str, ...] = tuple(REGISTRY)


def load(name: str) -> type[Collector]:
    try:
        module_name, class_name = REGISTRY[name].split(":")
    except KeyError:
        raise KeyError(f"unknown collector {name!r}; known: {', '.join(REGISTRY)}") from None
    return getattr(importlib.import_module(module_name), class_name)
