"""Render one simulated node, as the simulator wrote it for one round, into the files the agent reads.

The simulator writes what the agent would measure; this module goes the other way: from the simulator's rows
for one (host, time) it writes the kernel's and the schedulers' files (procfs, sysfs, cgroup v2, amdgpu and KFD
sysfs, /run/gpustat, the kubelet checkpoint, textfiles) and sets a fake NVML (tests/fake_nvml.py) and a fake
statvfs, each in its real format and units, so that the real collectors can read the round back
(tests/test_simulator_conformance.py). Values are written in the source's own units (jiffies, kB, sectors,
4-byte words, NVML percent, mW, mJ, KiB, MHz, microwatts), so the collectors' conversions are exercised.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pandas as pd

from agents.schema.host import CPU_MODES
from agents.simulate.emit import DRIVER, IB_ERROR_COUNTERS, job_identity, process_gpus
from tests.fake_nvml import FakeGpu, FakeNVML, driver_proc

USER_HZ = 100
LUSTRE_INSTANCE = "scratch-ffff888100a2b000"
KFD_GPU_ID0 = 41000


def pod_uid(job_id: str) -> str:
    """The simulator names pods by a number; the agent knows a pod by its UID (a documented exception)."""
    return f"00000000-0000-4000-8000-{int(job_id):012d}"


def _write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)


class NodeRenderer:
    """Writes rounds of one simulated node under `root` (rewritten in place, as the kernel's files change)."""

    def __init__(self, root: Path, sim: dict[str, pd.DataFrame], node, jobs: list, interval: float, seed: int):
        self.root, self.sim, self.node, self.interval, self.seed = root, sim, node, interval, seed
        self.jobs = {j.id: j for j in jobs if j.start is not None and node.index in j.hosts}
        self.cpu_jiffies: list[int] = []
        self.nvml = FakeNVML([], driver=DRIVER["nvidia"])
        self.statvfs: dict[str, os.statvfs_result] = {}

    def rows(self, name: str, t: int) -> pd.DataFrame:
        df = self.sim.get(name)
        if df is None:
            return pd.DataFrame()
        return df[(df["host"] == self.node.host) & (df["time"] == t)]

    def one(self, name: str, t: int) -> pd.Series:
        r = self.rows(name, t)
        assert len(r) == 1, (name, len(r))
        return r.iloc[0]

    # -- a round -------------------------------------------------------------------------------------------------
    def render(self, t: int) -> None:
        for sub in ("proc", "sys", "run", "var", "textfile"):
            shutil.rmtree(self.root / sub, ignore_errors=True)
        self._cpu(t)
        self._memory(t)
        self._disk_net_fs(t)
        self._lustre(t)
        self._infiniband(t)
        self._gpus(t)
        self._jobs(t)

    def _cpu(self, t: int) -> None:
        cpu, system = self.one("cpu", t), self.one("system", t)
        self.cpu_jiffies = [round(cpu[f"{m}_seconds"] * USER_HZ) for m in CPU_MODES]
        line = "cpu  " + " ".join(str(j) for j in self.cpu_jiffies)
        _write(self.root / "proc/stat", f"{line}\nintr 0\nctxt {int(system['context_switches'])}\n"
                                        f"btime {int(system['boot_time_seconds'])}\nprocesses 1000\n"
                                        f"procs_running {int(system['procs_running'])}\n"
                                        f"procs_blocked {int(system['procs_blocked'])}\n")
        _write(self.root / "proc/loadavg",
               f"{system['load1']:.2f} {system['load5']:.2f} {system['load15']:.2f} 3/900 12345\n")
        _write(self.root / "proc/cpuinfo", cpuinfo(self.node.cls, self.root / "sys"))

    def _memory(self, t: int) -> None:
        m = self.one("memory", t)

        def kb(x) -> int:
            return round(int(x) / 1024)

        _write(self.root / "proc/meminfo",
               f"MemTotal:       {kb(m['total_bytes'])} kB\nMemFree:        {kb(m['free_bytes'])} kB\n"
               f"MemAvailable:   {kb(m['available_bytes'])} kB\nBuffers:        {kb(m['buffers_bytes'])} kB\n"
               f"Cached:         {kb(m['cached_bytes'])} kB\nSwapCached:            0 kB\n"
               f"SwapTotal:      {kb(m['swap_total_bytes'])} kB\n"
               f"SwapFree:       {kb(m['swap_total_bytes']) - kb(m['swap_used_bytes'])} kB\n"
               f"HugePages_Total:       0\n")

        v = self.one("vmstat", t)
        keys = {"pgfault": "page_faults", "pgmajfault": "major_page_faults", "pswpin": "swap_in_pages",
                "pswpout": "swap_out_pages", "oom_kill": "oom_kills"}
        _write(self.root / "proc/vmstat", "nr_free_pages 1000000\n" + "".join(
            f"{key} {int(v[field])}\n" for key, field in keys.items()))

    def _disk_net_fs(self, t: int) -> None:
        d = self.one("disk", t)
        # diskstats (5.5+, 20 fields): reads merged sectors ms writes merged sectors ms in_flight io_ms weighted_ms
        # discards merged sectors ms flushes ms
        def ms(x) -> int:
            return round(float(x) * 1000)

        fields = [int(d["reads"]), int(d["reads_merged"]), int(d["read_bytes"]) // 512, ms(d["read_seconds"]),
                  int(d["writes"]), int(d["writes_merged"]), int(d["write_bytes"]) // 512, ms(d["write_seconds"]),
                  int(d["in_progress"]), ms(d["io_seconds"]), ms(d["weighted_io_seconds"]), int(d["discards"]),
                  int(d["discards_merged"]), int(d["discard_bytes"]) // 512, ms(d["discard_seconds"]),
                  int(d["flushes"]), ms(d["flush_seconds"])]
        _write(self.root / "proc/diskstats", "   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
                                             f" 259       0 nvme0n1 {' '.join(map(str, fields))}\n"
                                             " 259       2 nvme0n1p2 1 0 8 0 1 0 8 0 0 0 0 0 0 0 0 0 0\n")
        n = self.one("net", t)
        rx = [n["rx_bytes"], n["rx_packets"], n["rx_errors"], n["rx_drops"], 0, 0, 0, 0]
        tx = [n["tx_bytes"], n["tx_packets"], n["tx_errors"], n["tx_drops"], 0, 0, 0, 0]
        eth0 = self.root / "sys/class/net/eth0"
        _write(eth0 / "operstate", f"{n['operstate']}\n")
        _write(eth0 / "speed", f"{round(n['speed_bytes_per_second'] * 8 / 1e6)}\n")  # Mb/s
        _write(eth0 / "mtu", f"{int(n['mtu_bytes'])}\n")
        _write(self.root / "proc/net/dev",
               "Inter-|   Receive                                                |  Transmit\n"
               " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo "
               "colls carrier compressed\n"
               "    lo: 1000 10 0 0 0 0 0 0 1000 10 0 0 0 0 0 0\n"
               f"  eth0: {' '.join(str(int(x)) for x in rx)} {' '.join(str(int(x)) for x in tx)}\n")
        mounts = ["sysfs /sys sysfs rw,nosuid 0 0", "proc /proc proc rw 0 0"]
        self.statvfs = {}
        for _, fs in self.rows("filesystem", t).iterrows():
            mounts.append(f"{fs['device']} {fs['path']} {fs['fstype']} rw,relatime 0 0")
            # f_frsize 1: every byte count is exact
            self.statvfs[fs["path"]] = os.statvfs_result((4096, 1, int(fs["size_bytes"]), int(fs["free_bytes"]),
                                                          int(fs["avail_bytes"]), int(fs["inodes_total"]),
                                                          int(fs["inodes_free"]), int(fs["inodes_free"]), 0, 255))
        _write(self.root / "proc/mounts", "\n".join(mounts) + "\n")

    def _lustre(self, t: int) -> None:
        lu = self.rows("lustre", t)
        if lu.empty:
            return
        x = lu.iloc[0]
        _write(self.root / "proc/fs/lustre/llite" / LUSTRE_INSTANCE / "stats",
               "snapshot_time             1700000000.000000 secs.usecs\n"
               f"read_bytes                100 samples [bytes] 4096 1048576 {int(x['read_bytes'])}\n"
               f"write_bytes               100 samples [bytes] 4096 1048576 {int(x['write_bytes'])}\n"
               f"open                      {int(x['open'])} samples [usecs]\n"
               f"close                     {int(x['close'])} samples [usecs]\n"
               f"getattr                   {int(x['getattr'])} samples [usecs]\n"
               f"setattr                   {int(x['setattr'])} samples [usecs]\n")

    def _infiniband(self, t: int) -> None:
        ib = self.rows("infiniband", t)
        if ib.empty:
            return
        x = ib.iloc[0]
        port = self.root / "sys/class/infiniband" / x["device"] / "ports" / x["port"]
        for name, value in (("port_xmit_data", int(x["xmit_bytes"]) // 4), ("port_rcv_data", int(x["rcv_bytes"]) // 4),
                            ("port_xmit_packets", x["xmit_packets"]), ("port_rcv_packets", x["rcv_packets"]),
                            ("port_xmit_wait", x["xmit_wait"]), ("symbol_error", x["symbol_error"]),
                            ("link_downed", x["link_downed"]),
                            *((f"port_{f}" if f.startswith(("rcv_", "xmit_")) else f.replace("vl15", "VL15"), x[f])
                              for f in IB_ERROR_COUNTERS)):
            _write(port / "counters" / name, f"{int(value)}\n")
        _write(port / "state", f"{int(x['state'])}: ACTIVE\n")
        _write(port / "phys_state", f"{int(x['physical_state'])}: LinkUp\n")
        _write(port / "rate", f"{x['rate_bytes_per_second'] * 8 / 1e9:g} Gb/sec (4X HDR)\n")
        _write(port / "link_layer", f"{x['link_layer']}\n")

    # -- GPUs ------------------------------------------------------------------------------------------------------
    def _job_pids(self, job_id: str) -> list[int]:
        k = sorted(self.jobs).index(job_id)
        job_row = self.rows("job", self._t)
        n = int(job_row[job_row["job"] == job_id].iloc[0]["processes"])
        return [20000 + 100 * k + i for i in range(n)]

    def _gpu_processes(self, gpu_index: int) -> list[tuple[int, int]]:
        """(pid, memory) of the job processes on this GPU: a job's first process, on each GPU it runs on."""
        running = set(self.rows("job", self._t)["job"])
        out = []
        for job in self.jobs.values():
            if job.id in running and gpu_index in process_gpus(job, self.node.index):
                out.append((self._job_pids(job.id)[0], int(job.truth["gpu_memory_bytes"])))
        return out

    def _gpus(self, t: int) -> None:
        self._t = t
        gpus = self.rows("gpu", t).sort_values("gpu", key=lambda s: s.astype(int))
        if gpus.empty:
            return
        if gpus.iloc[0]["vendor"] == "nvidia":
            self._nvidia(gpus)
        else:
            self._amd(gpus, t)

    def _nvidia(self, gpus: pd.DataFrame) -> None:
        driver_proc(self.root, self.nvml.driver)  # the kernel module's procfs file: the agent looks before NVML
        if not self.nvml.gpus:
            self.nvml.gpus = [FakeGpu(uuid=g["uuid"], name=g["model"], mig_mode=0, nvlink_count=12)
                              for _, g in gpus.iterrows()]
        for fake, (_, g) in zip(self.nvml.gpus, gpus.iterrows(), strict=True):
            fake.memory_used, fake.memory_total = int(g["memory_used_bytes"]), int(g["memory_total_bytes"])
            fake.util_gpu = round(g["utilization_ratio"] * 100)
            fake.util_memory = round(g["memory_bandwidth_ratio"] * 100)
            fake.power_mw, fake.power_limit_mw = round(g["power_watts"] * 1000), round(g["power_limit_watts"] * 1000)
            fake.energy_mj = round(g["energy_joules"] * 1000)
            fake.temperature_c = round(g["temperature_celsius"])
            fake.sm_clock_mhz = round(g["sm_clock_hertz"] / 1e6)
            fake.throttle_reasons = int(g["throttle_reasons"])
            fake.pcie_tx_kbs = round(g["pcie_tx_bytes_per_second"] / 1024)
            fake.pcie_rx_kbs = round(g["pcie_rx_bytes_per_second"] / 1024)
            fake.nvlink = {0: [int(g["nvlink_tx_bytes"]) // 1024, int(g["nvlink_rx_bytes"]) // 1024]}
            fake.ecc_corrected, fake.ecc_uncorrected = int(g["ecc_corrected_errors"]), int(g["ecc_uncorrected_errors"])
            fake.processes = self._gpu_processes(int(g["gpu"]))

    def _amd(self, gpus: pd.DataFrame, t: int) -> None:
        drm, kfd = self.root / "sys/class/drm", self.root / "sys/class/kfd/kfd"
        info = self.sim["gpu_info"]
        driver = info[info["host"] == self.node.host]["driver"].iloc[-1]
        _write(self.root / "sys/module/amdgpu/version", f"{driver}\n")
        for _, g in gpus.iterrows():
            i = int(g["gpu"])
            dev = drm / f"card{i}" / "device"
            for name, value in (("vendor", "0x1002"), ("device", "0x740c"), ("product_name", g["model"]),
                                ("unique_id", g["uuid"]),
                                ("gpu_busy_percent", round(g["utilization_ratio"] * 100)),
                                ("mem_busy_percent", round(g["memory_bandwidth_ratio"] * 100)),
                                ("mem_info_vram_used", int(g["memory_used_bytes"])),
                                ("mem_info_vram_total", int(g["memory_total_bytes"])),
                                ("uevent", f"DRIVER=amdgpu\nPCI_SLOT_NAME=0000:{0xc1 + i:02x}:00.0\n")):
                _write(dev / name, f"{value}\n")
            (dev / "drm" / f"renderD{128 + i}").mkdir(parents=True)
            hw = dev / "hwmon" / f"hwmon{i + 2}"
            for name, value in (("name", "amdgpu"), ("power1_average", round(g["power_watts"] * 1e6)),
                                ("power1_cap", round(g["power_limit_watts"] * 1e6)),
                                ("freq1_input", round(g["sm_clock_hertz"])), ("freq1_label", "sclk"),
                                ("temp1_input", round(g["temperature_celsius"] * 1000)), ("temp1_label", "edge")):
                _write(hw / name, f"{value}\n")
            node = kfd / "topology/nodes" / str(i + 1)
            _write(node / "gpu_id", f"{KFD_GPU_ID0 + i}\n")
            _write(node / "properties", f"cpu_cores_count 0\nsimd_count 416\ndrm_render_minor {128 + i}\n")
            for pid, used in self._gpu_processes(i):
                _write(kfd / "proc" / str(pid) / f"vram_{KFD_GPU_ID0 + i}", f"{used}\n")
        _write(kfd / "topology/nodes/0/gpu_id", "0\n")
        _write(kfd / "topology/nodes/0/properties", "cpu_cores_count 64\nsimd_count 0\n")

    # -- jobs: cgroup v2, allocation records, textfiles --------------------------------------------------------
    def _jobs(self, t: int) -> None:
        cg = self.root / "sys/fs/cgroup"
        _write(cg / "cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n")
        checkpoint, progress, infos = [], [], []
        job_rows = self.rows("job", t).set_index("job")
        for job_id, row in job_rows.iterrows():
            job = self.jobs[job_id]
            pids = self._job_pids(job_id)
            if job.scheduler == "kubernetes":
                uid = pod_uid(job_id)
                top = cg / "kubepods.slice" / f"kubepods-pod{uid.replace('-', '_')}.slice"
                leaf = top / "cri-containerd-0123abcd.scope"
            else:
                top = cg / "system.slice/slurmstepd.scope" / f"job_{job_id}"
                leaf = top / "step_0/user/task_0"
            _write(top / "cpu.stat", f"usage_usec {round(row['cpu_seconds'] * 1e6)}\nuser_usec 0\nsystem_usec 0\n")
            _write(top / "cpuset.cpus.effective", f"0-{int(row['cpus_allocated']) - 1}\n")
            _write(top / "memory.current", f"{int(row['memory_bytes'])}\n")
            _write(top / "memory.peak", f"{int(row['memory_peak_bytes'])}\n")
            _write(top / "memory.max", f"{int(row['memory_limit_bytes'])}\n")
            _write(leaf / "cgroup.procs", "".join(f"{p}\n" for p in pids))
            rel = "/" + leaf.relative_to(cg).as_posix()
            for p in pids:
                _write(self.root / "proc" / str(p) / "cgroup", f"0::{rel}\n")
            held = job.gpus.get(self.node.index, [])
            if job.scheduler == "kubernetes" and held:
                uuids = self.rows("gpu", t).set_index("gpu")["uuid"]
                checkpoint.append({"PodUID": pod_uid(job_id), "ContainerName": "server",
                                   "ResourceName": f"{self.node.cls.accelerator.vendor}.com/gpu",
                                   "DeviceIDs": {"0": [uuids[str(g)] for g in held]}, "AllocResp": ""})
            for g in held:  # the prolog's records (jobstats' /run/gpustat)
                _write(self.root / "run/gpustat" / str(g), f"{job_id} 1000\n")
            ident = job_id if job.scheduler != "kubernetes" else pod_uid(job_id)
            prog = self.rows("job_progress", t)
            for _, p in prog[prog["job"] == job_id].iterrows():
                progress.append(f'fleetwise_job_progress_total{{job="{ident}",scheduler="{job.scheduler}",'
                                f'user="{job.user}",unit="{p["unit"]}"}} {p["progress"]!r}')
            x = job_identity(job, self.seed, self.interval)
            infos.append(f'fleetwise_job_info{{job="{ident}",scheduler="{job.scheduler}",user="{job.user}",'
                         f'name="{x["name"]}",account="{x["account"]}",partition="{x["partition"]}",'
                         f'command="{x["command"]}",cpus="{x["cpus_requested"]}",gpus="{x["gpus_requested"]}",'
                         f'time_limit_seconds="{x["time_limit_seconds"]!r}"}} 1')
        _write(self.root / "var/lib/kubelet/device-plugins/kubelet_internal_checkpoint", json.dumps(
            {"Data": {"PodDeviceEntries": checkpoint, "RegisteredDevices": {}}, "Checksum": 0}))
        _write(self.root / "textfile/progress.prom", "".join(f"{line}\n" for line in progress))
        _write(self.root / "textfile/jobinfo.prom", "".join(f"{line}\n" for line in infos))


def cpuinfo(c, sys_root: Path) -> str:
    """/proc/cpuinfo in the CPU's own dialect (x86, arm64, ppc64le), with sysfs topology where the agent reads
    sockets and cores from it (arm64, ppc64le). Thread i sits on core i // threads-per-core, as on POWER."""
    from agents.collectors.cpu import ARM_IMPLEMENTERS, ARM_PARTS

    tpc = c.cpu.threads_per_core
    per_socket = c.cores // c.sockets
    blocks = []
    for i in range(c.threads):
        core = i // tpc
        socket, core_id = core // per_socket, core % per_socket
        if c.cpu.arch == "x86_64":
            blocks.append(f"processor\t: {i}\nvendor_id\t: {c.cpu.vendor}\nmodel name\t: {c.cpu.model}\n"
                          f"physical id\t: {socket}\ncore id\t\t: {core_id}\ncpu cores\t: {per_socket}\n"
                          "flags\t\t: fpu vme de pse tsc msr pae mce lm sse2 avx2\n")
            continue
        if c.cpu.arch == "aarch64":
            impl = next(k for k, v in ARM_IMPLEMENTERS.items() if v == c.cpu.vendor)
            part = next(p for (i_, p), v in ARM_PARTS.items() if i_ == impl and v == c.cpu.model)
            blocks.append(f"processor\t: {i}\nBogoMIPS\t: 2000.00\nFeatures\t: fp asimd evtstrm sve\n"
                          f"CPU implementer\t: 0x{impl:02x}\nCPU architecture: 8\nCPU variant\t: 0x0\n"
                          f"CPU part\t: 0x{part:03x}\nCPU revision\t: 0\n")
        else:  # ppc64le
            blocks.append(f"processor\t: {i}\ncpu\t\t: {c.cpu.model}, altivec supported\n"
                          "clock\t\t: 3800.000000MHz\nrevision\t: 2.2 (pvr 004e 1202)\n")
        topo = sys_root / "devices/system/cpu" / f"cpu{i}" / "topology"
        first = core * tpc
        _write(topo / "core_id", f"{core_id}\n")
        _write(topo / "physical_package_id", f"{socket}\n")
        _write(topo / "thread_siblings_list", f"{first}-{first + tpc - 1}\n" if tpc > 1 else f"{first}\n")
    tail = "" if c.cpu.arch != "ppc64le" else "timebase\t: 512000000\nplatform\t: PowerNV\nmodel\t\t: 8335-GTH\n"
    return "\n".join(blocks) + "\n" + tail


def close(a: float, b: float, abs_tol: float) -> bool:
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=abs_tol)
