"""Catalogue of what a simulated fleet is built from: accelerators, CPUs, networks and node classes.

Figures are vendors' published specifications (memory, board power, link bandwidth, peak memory
bandwidth). An MI250 OAM carries two GCDs that the amdgpu driver shows as two devices of 64 GB each,
so the simulator's unit of accelerator is the device the agent sees: one GCD.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3
GB = 10**9


@dataclass(frozen=True)
class Accelerator:
    key: str
    vendor: str  # the gpu tag value: "nvidia" or "amd"
    model: str  # what NVML / amdgpu product_name report
    memory_bytes: int  # per device
    tdp_watts: float  # per device (an MI250 OAM's 500 W is split over its two GCDs)
    min_power_watts: float  # lowest settable power cap
    idle_watts: float
    memory_bandwidth_bytes_per_second: float
    link: str  # intra-node GPU link
    link_bytes_per_second: float  # per direction, per device
    max_clock_hertz: float
    base_clock_hertz: float

    @property
    def canonical_key(self) -> str:
        """The key the analyzer joins on (agents.schema.accelerators), from the model string the agent reports."""
        from agents.schema.accelerators import accelerator_key

        return accelerator_key(self.model)


# Power caps follow nvidia-smi -q "Min/Max Power Limit" on each board; idle draw from DCGM on idle boards.
ACCELERATORS: dict[str, Accelerator] = {
    a.key: a
    for a in (
        Accelerator("V100", "nvidia", "Tesla V100-SXM2-32GB", 32 * GIB, 300.0, 150.0, 40.0, 900 * GB,
                    "NVLink2", 150 * GB, 1530e6, 135e6),
        Accelerator("A100", "nvidia", "NVIDIA A100-SXM4-80GB", 80 * GIB, 400.0, 100.0, 55.0, 2039 * GB,
                    "NVLink3", 300 * GB, 1410e6, 210e6),
        Accelerator("H100", "nvidia", "NVIDIA H100 80GB HBM3", 80 * GIB, 700.0, 200.0, 70.0, 3350 * GB,
                    "NVLink4", 450 * GB, 1980e6, 345e6),
        # One GCD of an MI250 OAM (128 GB HBM2e, 500 W, 3.2 TB/s per OAM).
        Accelerator("MI250", "amd", "AMD Instinct MI250", 64 * GIB, 250.0, 100.0, 45.0, 1600 * GB,
                    "Infinity Fabric", 200 * GB, 1700e6, 500e6),
    )
}


@dataclass(frozen=True)
class Cpu:
    key: str
    arch: str
    vendor: str
    model: str
    cores_per_socket: int
    threads_per_core: int


CPUS: dict[str, Cpu] = {
    c.key: c
    for c in (
        Cpu("epyc-7763", "x86_64", "AuthenticAMD", "AMD EPYC 7763 64-Core Processor", 64, 2),
        Cpu("epyc-9554", "x86_64", "AuthenticAMD", "AMD EPYC 9554 64-Core Processor", 64, 2),
        Cpu("neoverse-v2", "aarch64", "ARM", "Neoverse-V2", 72, 1),
        # The model as the agent reports it: /proc/cpuinfo says "POWER9, altivec supported"; the agent keeps "POWER9".
        Cpu("power9", "ppc64le", "IBM", "POWER9", 20, 4),
        Cpu("xeon-8480", "x86_64", "GenuineIntel", "Intel(R) Xeon(R) Platinum 8480+", 56, 2),
    )
}


@dataclass(frozen=True)
class Network:
    key: str
    kind: str  # "infiniband" or "ethernet"
    bytes_per_second: float  # link rate, one direction
    description: str


NETWORKS: dict[str, Network] = {
    n.key: n
    for n in (
        Network("ib-hdr", "infiniband", 200e9 / 8, "InfiniBand HDR 200 Gb/s"),
        Network("ib-ndr", "infiniband", 400e9 / 8, "InfiniBand NDR 400 Gb/s"),
        Network("eth-25", "ethernet", 25e9 / 8, "Ethernet 25 GbE"),
        Network("eth-100", "ethernet", 100e9 / 8, "Ethernet 100 GbE"),
    )
}
# Every node also has a 25 GbE management/storage interface; IB nodes carry MPI/NCCL traffic on the HCA.
MGMT_NETWORK = NETWORKS["eth-25"]
NVME_BYTES_PER_SECOND = 6.5e9  # PCIe 4 x4 NVMe sequential read
LUSTRE_CLIENT_BYTES_PER_SECOND = 10e9  # what one Lustre client reaches over HDR


@dataclass(frozen=True)
class NodeClass:
    """One kind of node; the profile says how many of each a fleet has."""

    name: str
    cpu: Cpu
    sockets: int
    memory_bytes: int
    accelerator: Accelerator | None
    devices: int  # accelerator devices the agent sees (GCDs for MI250)
    network: Network
    nvme_bytes: int
    lustre: bool
    pool: str
    # Fat tree: leaf_nodes nodes of the class per leaf switch (0: one non-blocking fabric), and the spine's
    # oversubscription (2.0 = a 2:1 taper: half as many uplinks as node ports on each leaf).
    leaf_nodes: int = 0
    oversubscription: float = 1.0

    @property
    def cores(self) -> int:
        return self.cpu.cores_per_socket * self.sockets

    @property
    def threads(self) -> int:
        return self.cores * self.cpu.threads_per_core

    @property
    def gpu_model_key(self) -> str:
        return self.accelerator.key if self.accelerator else ""
