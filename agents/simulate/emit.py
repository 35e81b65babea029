"""Columnar generation of exactly what the agent emits, one chunk of rounds at a time.

Everything is numpy over (node, round) or (device, round) arrays; jobs are added as slices. Each
measurement becomes one pyarrow Table: `time` (timestamp[ns, UTC]), one string column per tag of
the schema, one column per schema field typed by it (int64 / float64 / string; null where the
agent would leave the field out, e.g. a rate on the first read or right after a reboot).

Counters are cumulative integers (or floats where the schema says float) built from per-round
increments, carried from chunk to chunk, restarting from zero at a node's reboot; every rate is
exactly (counter now - counter before) / interval. Info measurements (cpu_info, gpu_info) are
written once an hour and after a reboot rather than every round: they never change.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pyarrow as pa

from agents.schema import MEASUREMENTS
from agents.schema.host import CPU_MODES
from agents.simulate.hardware import LUSTRE_CLIENT_BYTES_PER_SECOND, MGMT_NETWORK, NVME_BYTES_PER_SECOND
from agents.simulate.scheduler import REBOOT_DOWN_ROUNDS, Job, Node

TS = pa.timestamp("ns", tz="UTC")
NVIDIA_THROTTLE_IDLE, NVIDIA_THROTTLE_SW_POWER, NVIDIA_THROTTLE_HW_THERMAL = 0x1, 0x4, 0x40
DRIVER = {"nvidia": "550.90.07", "amd": "6.7.0"}
IB_STATE_ACTIVE = 4
IB_PHYS_LINK_UP = 5
# A healthy fabric: every error counter of the port stays at zero.
IB_ERROR_COUNTERS = ("link_error_recovery", "rcv_errors", "rcv_remote_physical_errors", "rcv_switch_relay_errors",
                     "xmit_discards", "xmit_constraint_errors", "rcv_constraint_errors", "local_link_integrity_errors",
                     "excessive_buffer_overrun_errors", "vl15_dropped")
# PortXmitWait ticks per second of a port that has data queued and no credits the whole second. The unit is
# the HCA's internal tick; only ratios matter here (a busy non-blocking port stays below 1e5 per second).
XMIT_WAIT_TICKS_PER_SECOND = 2e7
ROOT_FS_BYTES = 960 * 10**9
LUSTRE_FS_BYTES = 5 * 10**15


def _arrow_type(t: type) -> pa.DataType:
    return {int: pa.int64(), float: pa.float64(), str: pa.string()}[t]


def string_column(codes: np.ndarray, values: list[str]) -> pa.Array:
    """Tags as plain strings, built through a dictionary so that no Python string is made per row."""
    d = pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32, copy=False)), pa.array(values, pa.string()))
    return d.cast(pa.string())


def make_table(name: str, time_ns: np.ndarray, tags: dict[str, pa.Array], fields: dict) -> pa.Table:
    """fields: name -> ndarray, (ndarray, null mask) or a pa.Array. Missing schema fields become null."""
    m = MEASUREMENTS[name]
    if set(tags) != set(m.tags):
        raise ValueError(f"{name}: tags {sorted(tags)} != schema {sorted(m.tags)}")
    unknown = set(fields) - set(m.fields)
    if unknown:
        raise ValueError(f"{name}: fields not in the schema: {sorted(unknown)}")
    n = len(time_ns)
    cols: dict[str, pa.Array] = {"time": pa.array(time_ns.astype("datetime64[ns]"), pa.timestamp("ns")).cast(TS)}
    for t in m.tags:
        cols[t] = tags[t]
    for fname, f in m.fields.items():
        typ = _arrow_type(f.type)
        v = fields.get(fname)
        if v is None:
            cols[fname] = pa.nulls(n, typ)
        elif isinstance(v, pa.Array):
            cols[fname] = v.cast(typ)
        elif isinstance(v, tuple):
            arr, mask = v
            cols[fname] = pa.array(_np_cast(arr, f.type), typ, mask=mask)
        else:
            cols[fname] = pa.array(_np_cast(v, f.type), typ)
    return pa.table(cols)


def _np_cast(a: np.ndarray, t: type) -> np.ndarray:
    a = np.ascontiguousarray(a).ravel()
    if t is int:
        return a if a.dtype == np.int64 else np.rint(a).astype(np.int64)
    if t is float:
        return a if a.dtype == np.float64 else a.astype(np.float64)
    return a


def drop_absent(table: pa.Table, present: np.ndarray) -> pa.Table:
    """Rows are series-major (series * T + round): drop absent rounds by zero-copy slices, not a filter."""
    if present.all():
        return table
    flat = np.flatnonzero(~present.ravel())
    # runs of absent rows -> keep the gaps between them
    breaks = np.flatnonzero(np.diff(flat) != 1)
    starts = np.concatenate([[flat[0]], flat[breaks + 1]])
    ends = np.concatenate([flat[breaks], [flat[-1]]]) + 1
    pieces, pos = [], 0
    for a, b in zip(starts, ends, strict=True):
        if a > pos:
            pieces.append(table.slice(pos, a - pos))
        pos = b
    if pos < present.size:
        pieces.append(table.slice(pos))
    return pa.concat_tables(pieces) if pieces else table.slice(0, 0)


class Counter:
    """Cumulative counters for many series (rows), carried across chunks, restarting at resets."""

    def __init__(self, rows: int, integer: bool = True) -> None:
        self.integer = integer
        self.carry = np.zeros(rows, np.int64 if integer else np.float64)

    def step(self, inc: np.ndarray, reset: np.ndarray | None) -> np.ndarray:
        inc = np.rint(inc).astype(np.int64) if self.integer else inc.astype(np.float64)
        c = np.cumsum(inc, axis=1)
        c += self.carry[:, None]
        if reset is not None:
            for r, k in zip(*np.nonzero(reset), strict=True):
                c[r, k:] -= c[r, k] - inc[r, k]  # the value just before the reset
        self.carry = c[:, -1].copy()
        return c, inc


def diurnal(t_ns: np.ndarray) -> np.ndarray:
    """Inference load, 0.1 at 03:00 UTC to 0.9 at 15:00 UTC."""
    hours = (t_ns // 1_000_000_000 % 86400) / 3600.0
    return 0.5 - 0.4 * np.cos(2 * np.pi * (hours - 3.0) / 24.0)


class Emitter:
    def __init__(self, nodes: list[Node], jobs: list[Job], start_ns: int, interval: float, rounds: int,
                 seed: int, noise_scale: float = 1.0) -> None:
        self.nodes, self.start_ns, self.interval, self.rounds, self.seed = nodes, start_ns, interval, rounds, seed
        self.noise_scale = noise_scale  # the profile's multiplier on every measurement's noise
        self.jobs = [j for j in jobs if j.start is not None]
        self.job_pos = {j.id: k for k, j in enumerate(self.jobs)}
        self.hosts = [n.host for n in nodes]
        self.N = len(nodes)
        self.gpu_base = np.cumsum([0] + [n.cls.devices for n in nodes])
        self.G = int(self.gpu_base[-1])
        self.gpu_node = np.repeat(np.arange(self.N), [n.cls.devices for n in nodes])
        self.gpu_local = np.concatenate([np.arange(n.cls.devices) for n in nodes]) if self.G else np.zeros(0, int)
        self.gpu_uuid = [f"GPU-{seed & 0xffff:04x}{i:04x}-{n:04x}-4000-8000-{(seed * 7919 + i) % 16**12:012x}"
                         for i, n in zip(range(self.G), self.gpu_node, strict=True)]
        accs = [nodes[n].cls.accelerator for n in self.gpu_node]
        self.gpu_vendor = [a.vendor for a in accs]
        self.gpu_model = [a.model for a in accs]
        self.gpu_tdp = np.array([a.tdp_watts for a in accs])
        self.gpu_idle_w = np.array([a.idle_watts for a in accs])
        self.gpu_mem = np.array([a.memory_bytes for a in accs], np.int64)
        self.gpu_maxclk = np.array([a.max_clock_hertz for a in accs])
        self.gpu_baseclk = np.array([a.base_clock_hertz for a in accs])
        self.gpu_nvidia = np.array([v == "nvidia" for v in self.gpu_vendor], bool)
        self.threads = np.array([n.cls.threads for n in nodes], float)
        self.mem_total = np.array([n.cls.memory_bytes for n in nodes], np.int64)
        self.ib_nodes = np.array([i for i, n in enumerate(nodes) if n.cls.network.kind == "infiniband"], int)
        self.lustre_nodes = np.array([i for i, n in enumerate(nodes) if n.cls.lustre], int)
        self.boot0 = start_ns // 10**9 - 86400 * 3 - np.arange(self.N) * 37
        N, G = self.N, self.G
        self.c = {k: Counter(N) for k in ("ctx", "eth_rx", "eth_tx", "eth_rxp", "eth_txp", "nv_rb", "nv_wb",
                                          "nv_r", "nv_w")}
        self.c["nv_io"] = Counter(N, integer=False)
        for k in ("nv_rs", "nv_ws", "nv_fs", *(f"cpu_{m}" for m in CPU_MODES)):
            self.c[k] = Counter(N, integer=False)
        for k in ("nv_rm", "nv_wm", "nv_f", "pgfault", "pgmajfault"):
            self.c[k] = Counter(N)
        self.c["nv_wio"] = Counter(N, integer=False)
        nib = len(self.ib_nodes)
        for k in ("ib_x", "ib_r", "ib_xp", "ib_rp", "ib_wait"):
            self.c[k] = Counter(nib)
        for k in ("lu_r", "lu_w", "lu_open", "lu_close", "lu_get", "lu_set"):
            self.c[k] = Counter(len(self.lustre_nodes))
        self.c["energy"] = Counter(G, integer=False)
        self.c["nvl_tx"] = Counter(G)
        self.c["nvl_rx"] = Counter(G)
        self.load_state = np.zeros((2, N))  # load5, load15 carried
        self.job_cpu: dict[tuple[str, int], float] = {}
        self.job_peak: dict[tuple[str, int], int] = {}
        self.job_progress: dict[str, float] = {}
        self.used_gpu_hours: dict[str, float] = {}
        self.rows = 0

    # -- one chunk -------------------------------------------------------------------------------------------
    def chunk(self, r0: int, r1: int) -> dict[str, pa.Table]:
        rng = np.random.Generator(np.random.PCG64([self.seed, 1, r0]))
        N, G, T, dt = self.N, self.G, r1 - r0, self.interval
        rounds = np.arange(r0, r1)
        t_ns = self.start_ns + (rounds * int(dt * 1e9)).astype(np.int64)
        present = np.ones((N, T), bool)
        reset = np.zeros((N, T), bool)
        for n in self.nodes:
            if n.reboot_round is not None:
                lo, hi = n.reboot_round - REBOOT_DOWN_ROUNDS - r0, n.reboot_round - r0
                present[n.index, max(lo, 0):max(min(hi, T), 0)] = False
                if 0 <= hi < T:
                    reset[n.index, hi] = True
        first = np.zeros((N, T), bool)
        if r0 == 0:
            first[:, 0] = True
        nullrate = first | reset
        load = diurnal(t_ns)

        cores = np.full((N, T), 0.3)
        iowait = np.zeros((N, T))
        mem = np.full((N, T), 6.0 * 2**30)
        lu_r, lu_w = np.zeros((N, T)), np.zeros((N, T))
        nv_r, nv_w = np.zeros((N, T)), np.zeros((N, T))
        net = np.zeros((N, T))  # job traffic on the class's fabric (IB on InfiniBand nodes)
        net_eth = np.zeros((N, T))  # job traffic that goes over eth0 on an InfiniBand node (TCP fallback)
        ib_blocked = np.zeros((N, T))  # share of time the HCA waits for credits (tapered spine)
        g_util, g_membw, g_mem = np.zeros((G, T)), np.zeros((G, T)), np.zeros((G, T))
        g_cap = np.ones((G, T))
        g_nvl = np.zeros((G, T))
        g_slow = np.zeros((G, T), bool)
        g_proc = np.zeros((G, T), bool)  # a process of the holding job runs there (NVML / KFD lists it)
        active: list[tuple[Job, int, int, int]] = []  # job, node, s, e (chunk-relative)
        for j in self.jobs:
            if j.start >= r1 or j.end <= r0:
                continue
            s, e = max(j.start, r0) - r0, min(j.end, r1) - r0
            t = j.truth
            f = load[s:e] if t["diurnal"] else 1.0
            for i in j.hosts:
                active.append((j, i, s, e))
                cores[i, s:e] += t["cpu_cores"] * (f if t["diurnal"] else 1.0)
                iowait[i, s:e] += t["iowait_cores"]
                mem[i, s:e] += t["memory_bytes"]
                lu_r[i, s:e] += t["lustre_read"]
                lu_w[i, s:e] += t["lustre_write"]
                nv_r[i, s:e] += t["nvme_read"]
                nv_w[i, s:e] += t["nvme_write"]
                (net_eth if t["net_path"] == "eth" else net)[i, s:e] += t["net_bytes"] * f
                ib_blocked[i, s:e] += t["ib_blocked"]
                running = process_gpus(j, i)
                for g in j.gpus.get(i, []):
                    G_ = self.gpu_base[i] + g
                    if g not in running:
                        continue  # held, untouched: no process, no load (the row the agent adds from the allocation)
                    g_proc[G_, s:e] = True
                    g_util[G_, s:e] = t["utilization"] * f
                    g_membw[G_, s:e] = t["membw"] * f
                    g_mem[G_, s:e] = t["gpu_memory_bytes"]
                    g_cap[G_, s:e] = j.cap_fraction
                    g_nvl[G_, s:e] = t["nvlink_bytes"] * f
                    sg = t["straggler_gpu"]
                    if sg is not None and sg["host"] == self.hosts[i] and sg["gpu"] == g:
                        g_slow[G_, s:e] = True
                        g_util[G_, s:e] = 0.97
            if j.gpus:
                u = t["utilization"] * (float(np.mean(f)) if t["diurnal"] else 1.0)
                self.used_gpu_hours[j.id] = self.used_gpu_hours.get(j.id, 0.0) + (
                    u * (j.devices_used or j.devices_per_node) * len(j.hosts) * (e - s) * dt / 3600)
        out: dict[str, pa.Table] = {}
        host_codes = np.repeat(np.arange(N), T)
        host_col = string_column(host_codes, self.hosts)
        tt = np.tile(t_ns, N)

        def noise(shape, scale):
            return rng.standard_normal(shape, dtype=np.float32) * np.float32(scale * self.noise_scale)

        # cpu, system, memory ---------------------------------------------------------------------------------
        busy_cores = np.clip(cores + noise((N, T), 0.05) * np.sqrt(cores), 0.0, None)
        busy = np.clip(busy_cores / self.threads[:, None], 0.0, 1.0)
        iow = np.clip(iowait / self.threads[:, None], 0.0, 1.0 - busy)
        nm = nullrate.ravel()
        cpu_f = {f"{m}_ratio": (busy * s_, nm) for m, s_ in (("user", 0.88), ("system", 0.09), ("irq", 0.01),
                                                           ("softirq", 0.02))}
        zero = np.zeros(N * T)
        for m in ("nice", "steal", "guest", "guest_nice"):
            cpu_f[f"{m}_ratio"] = (zero, nm)
        cpu_f["iowait_ratio"] = (iow, nm)
        cpu_f["idle_ratio"] = (1.0 - busy - iow, nm)
        cpu_f["busy_ratio"] = (busy, nm)
        # Cumulative seconds per mode since boot (/proc/stat's jiffies / USER_HZ), from which the ratios are the
        # shares of each interval, as the agent computes them.
        ticks = self.threads[:, None] * dt
        shares = {"user": busy * 0.88, "system": busy * 0.09, "irq": busy * 0.01, "softirq": busy * 0.02,
                  "iowait": iow, "idle": 1.0 - busy - iow}
        for m in CPU_MODES:
            cpu_f[f"{m}_seconds"] = self.c[f"cpu_{m}"].step(np.broadcast_to(shares.get(m, 0.0), (N, T)) * ticks,
                                                            reset)[0]
        out["cpu"] = make_table("cpu", tt, {"host": host_col, "cpu": string_column(np.zeros(N * T), ["total"])},
                                cpu_f)

        load1 = busy_cores + iowait + np.abs(noise((N, T), 0.2))
        from scipy.signal import lfilter

        smoothed = []
        for k, window in enumerate((300.0, 900.0)):
            a = math.exp(-dt / window)
            y, _ = lfilter([1 - a], [1, -a], load1, axis=1, zi=(a * self.load_state[k])[:, None])
            self.load_state[k] = y[:, -1]
            smoothed.append(y)
        ctx, _ = self.c["ctx"].step((3000 + 1500 * busy_cores) * dt, reset)
        boot = np.broadcast_to(self.boot0[:, None], (N, T)).copy()
        for n in self.nodes:
            if n.reboot_round is not None and n.reboot_round < r1:
                k = max(n.reboot_round - r0, 0)
                boot[n.index, k:] = (self.start_ns // 10**9) + int(n.reboot_round * dt) - 20
        out["system"] = make_table("system", tt, {"host": host_col}, {
            "load1": load1, "load5": smoothed[0], "load15": smoothed[1],
            "procs_running": np.minimum(np.rint(busy_cores) + 1, self.threads[:, None]),
            "procs_blocked": np.rint(iowait), "context_switches": ctx, "boot_time_seconds": boot})

        # vmstat: page faults with the CPU work (first touches of fresh pages), a few major faults (file reads
        # into the page cache), no swapping and no OOM kill (the scheduler never overcommits memory).
        pgf, _ = self.c["pgfault"].step((500 + 2000 * busy_cores) * dt, reset)
        pgmaj, pgmaj_i = self.c["pgmajfault"].step((2 + 20 * iowait) * dt, reset)
        out["vmstat"] = make_table("vmstat", tt, {"host": host_col}, {
            "oom_kills": np.zeros(N * T, np.int64), "major_page_faults": pgmaj, "page_faults": pgf,
            "swap_in_pages": np.zeros(N * T, np.int64), "swap_out_pages": np.zeros(N * T, np.int64),
            "major_page_faults_per_second": (pgmaj_i / dt, nm)})

        used = np.clip(mem + noise((N, T), 2**28), 2**30, self.mem_total[:, None] * 0.97)
        used = np.rint(used).astype(np.int64)
        avail = self.mem_total[:, None] - used
        out["memory"] = make_table("memory", tt, {"host": host_col}, {
            "total_bytes": np.broadcast_to(self.mem_total[:, None], (N, T)), "available_bytes": avail,
            "used_bytes": used, "free_bytes": avail * 0.55, "cached_bytes": avail * 0.4, "buffers_bytes": avail * 0.01,
            "used_ratio": used / self.mem_total[:, None], "swap_total_bytes": np.full(N * T, 8 << 30, np.int64),
            "swap_used_bytes": np.zeros(N * T, np.int64)})

        # net (eth0 carries Lustre on Ethernet nodes), infiniband ------------------------------------------------
        is_ib = np.zeros(N, bool)
        is_ib[self.ib_nodes] = True
        eth_extra_r = net_eth + np.where(is_ib[:, None], 0.0, lu_r + net)
        eth_extra_w = net_eth + np.where(is_ib[:, None], 0.0, lu_w + net)
        base = 2e5 * (1 + 0.2 * np.abs(noise((N, T), 1.0)))
        rx = np.minimum(base + eth_extra_r, MGMT_NETWORK.bytes_per_second * 4) * dt
        tx = np.minimum(base * 0.6 + eth_extra_w, MGMT_NETWORK.bytes_per_second * 4) * dt
        rxc, rxi = self.c["eth_rx"].step(rx, reset)
        txc, txi = self.c["eth_tx"].step(tx, reset)
        rxp, _ = self.c["eth_rxp"].step(rx / 1200 + 20 * dt, reset)
        txp, _ = self.c["eth_txp"].step(tx / 1200 + 20 * dt, reset)
        z64 = np.zeros(N * T, np.int64)
        out["net"] = make_table("net", tt, {"host": host_col, "interface": string_column(z64, ["eth0"])}, {
            "rx_bytes": rxc, "tx_bytes": txc, "rx_packets": rxp, "tx_packets": txp, "rx_errors": z64,
            "tx_errors": z64, "rx_drops": z64, "tx_drops": z64, "up": np.ones(N * T, np.int64),
            "operstate": string_column(z64, ["up"]),
            "speed_bytes_per_second": np.full(N * T, MGMT_NETWORK.bytes_per_second),
            "mtu_bytes": np.full(N * T, 9000, np.int64), "rx_bytes_per_second": (rxi / dt, nm),
            "tx_bytes_per_second": (txi / dt, nm)})
        if len(self.ib_nodes):
            ib = self.ib_nodes
            nib = len(ib)
            link = np.array([self.nodes[i].cls.network.bytes_per_second for i in ib])
            xb = np.minimum(net[ib] + lu_w[ib] + 1e4, link[:, None] * 0.95) * dt
            rb = np.minimum(net[ib] + lu_r[ib] + 1e4, link[:, None] * 0.95) * dt
            rs = reset[ib]
            xc, xi = self.c["ib_x"].step(xb, rs)
            rc, ri = self.c["ib_r"].step(rb, rs)
            xp, _ = self.c["ib_xp"].step(xb / 4096 + 10 * dt, rs)
            rp, _ = self.c["ib_rp"].step(rb / 4096 + 10 * dt, rs)
            wait, _ = self.c["ib_wait"].step(((xb / (link[:, None] * dt)) ** 2 * 1e5
                                              + XMIT_WAIT_TICKS_PER_SECOND * np.minimum(ib_blocked[ib], 1.0)) * dt, rs)
            ib_null = nullrate[ib].ravel()
            zi = np.zeros(nib * T, np.int64)
            out["infiniband"] = make_table("infiniband", np.tile(t_ns, nib), {
                "host": string_column(np.repeat(ib, T), self.hosts), "device": string_column(zi, ["mlx5_0"]),
                "port": string_column(zi, ["1"])}, {
                "xmit_bytes": xc, "rcv_bytes": rc, "xmit_packets": xp, "rcv_packets": rp, "xmit_wait": wait,
                "symbol_error": zi, "link_downed": zi, **dict.fromkeys(IB_ERROR_COUNTERS, zi),
                "state": np.full(nib * T, IB_STATE_ACTIVE, np.int64),
                "physical_state": np.full(nib * T, IB_PHYS_LINK_UP, np.int64),
                "rate_bytes_per_second": np.repeat(link, T), "link_layer": string_column(zi, ["InfiniBand"]),
                "xmit_bytes_per_second": (xi / dt, ib_null), "rcv_bytes_per_second": (ri / dt, ib_null)})
            out["infiniband"] = drop_absent(out["infiniband"], present[ib])

        # disk (local NVMe), filesystem, lustre --------------------------------------------------------------------
        rbytes = np.clip(nv_r * (1 + 0.1 * noise((N, T), 1.0)) + 4096 * 20, 0, NVME_BYTES_PER_SECOND) * dt
        wbytes = np.clip(nv_w * (1 + 0.1 * noise((N, T), 1.0)) + 4096 * 50, 0, NVME_BYTES_PER_SECOND) * dt
        rc_, ri_ = self.c["nv_rb"].step(rbytes, reset)
        wc_, wi_ = self.c["nv_wb"].step(wbytes, reset)
        nr, nri = self.c["nv_r"].step(rbytes / 131072 + 1, reset)
        nw, nwi = self.c["nv_w"].step(wbytes / 131072 + 1, reset)
        dbusy = np.clip((rbytes + wbytes) / (NVME_BYTES_PER_SECOND * dt) * 1.5 + 0.002, 0, 1)
        # NVMe service times: ~100 us a read, ~20 us a write into the drive's cache, longer with the queue full;
        # a tenth of the requests merged; xfs flushes the cache after ~5% of the writes; no TRIM during the run.
        rs, rsi = self.c["nv_rs"].step(nri * (1e-4 + 4e-4 * dbusy), reset)
        ws, wsi = self.c["nv_ws"].step(nwi * (2e-5 + 4e-4 * dbusy), reset)
        fl, fli = self.c["nv_f"].step(nwi * 0.05 + 1, reset)
        fls, _ = self.c["nv_fs"].step(fli * 2e-4, reset)
        io_c, io_i = self.c["nv_io"].step(dbusy * dt, reset)
        wio_c, _ = self.c["nv_wio"].step(dbusy * dt * 1.3, reset)
        out["disk"] = make_table("disk", tt, {"host": host_col, "device": string_column(z64, ["nvme0n1"])}, {
            "read_bytes": rc_, "write_bytes": wc_, "reads": nr, "writes": nw, "io_seconds": io_c,
            "weighted_io_seconds": wio_c, "in_progress": np.rint(dbusy * 4),
            "reads_merged": self.c["nv_rm"].step(nri * 0.1, reset)[0],
            "writes_merged": self.c["nv_wm"].step(nwi * 0.1, reset)[0], "read_seconds": rs, "write_seconds": ws,
            "read_await_seconds": (rsi / np.maximum(nri, 1), nm), "write_await_seconds": (wsi / np.maximum(nwi, 1), nm),
            "discards": z64, "discards_merged": z64, "discard_bytes": z64, "discard_seconds": np.zeros(N * T),
            "flushes": fl, "flush_seconds": fls,
            "read_bytes_per_second": (ri_ / dt, nm), "write_bytes_per_second": (wi_ / dt, nm),
            "busy_ratio": (io_i / dt, nm)})

        frac = (rounds / max(self.rounds, 1))[None, :]
        root_used = np.rint(ROOT_FS_BYTES * (0.2 + 0.05 * frac + 0.01 * (np.arange(N) % 7)[:, None] / 7)).astype(
            np.int64)
        fs_tabs = [make_table("filesystem", tt, {"host": host_col, "path": string_column(z64, ["/"]),
                                                  "device": string_column(z64, ["/dev/nvme0n1p2"]),
                                                  "fstype": string_column(z64, ["xfs"])},
                              self._fs_fields(ROOT_FS_BYTES, root_used, 62_500_000))]
        if len(self.lustre_nodes):
            lus = self.lustre_nodes
            nl = len(lus)
            lused = np.broadcast_to(np.rint(LUSTRE_FS_BYTES * (0.62 + 0.03 * frac)).astype(np.int64), (nl, T))
            zl = np.zeros(nl * T, np.int64)
            fs_tabs.append(drop_absent(make_table("filesystem", np.tile(t_ns, nl), {
                "host": string_column(np.repeat(lus, T), self.hosts), "path": string_column(zl, ["/lustre/scratch"]),
                "device": string_column(zl, ["10.10.0.1@o2ib:/scratch"]), "fstype": string_column(zl, ["lustre"])},
                self._fs_fields(LUSTRE_FS_BYTES, lused, 4_000_000_000)), present[lus]))
            lr = np.clip(lu_r[lus], 0, LUSTRE_CLIENT_BYTES_PER_SECOND) * dt
            lw = np.clip(lu_w[lus], 0, LUSTRE_CLIENT_BYTES_PER_SECOND) * dt
            rs = reset[lus]
            lc = {k: self.c[k] for k in ("lu_r", "lu_w", "lu_open", "lu_close", "lu_get", "lu_set")}
            lrc, lri = lc["lu_r"].step(lr, rs)
            lwc, lwi = lc["lu_w"].step(lw, rs)
            ops = (lr + lw) / 2**20 + 2 * dt
            lnull = nullrate[lus].ravel()
            out["lustre"] = drop_absent(make_table("lustre", np.tile(t_ns, nl), {
                "host": string_column(np.repeat(lus, T), self.hosts), "fs": string_column(zl, ["scratch"])}, {
                "read_bytes": lrc, "write_bytes": lwc, "open": lc["lu_open"].step(ops * 0.1, rs)[0],
                "close": lc["lu_close"].step(ops * 0.1, rs)[0], "getattr": lc["lu_get"].step(ops * 0.5, rs)[0],
                "setattr": lc["lu_set"].step(ops * 0.02, rs)[0], "read_bytes_per_second": (lri / dt, lnull),
                "write_bytes_per_second": (lwi / dt, lnull)}), present[lus])

        hourly = np.zeros((N, T), bool)
        hourly[:, (rounds * dt) % 3600 < dt] = True
        hourly |= reset
        hourly &= present
        hsel = hourly.ravel()
        cpu_info = {
            "arch": [n.cls.cpu.arch for n in self.nodes], "vendor": [n.cls.cpu.vendor for n in self.nodes],
            "model": [n.cls.cpu.model for n in self.nodes]}
        hc = host_codes[hsel]
        out["cpu_info"] = make_table("cpu_info", tt[hsel], {"host": string_column(hc, self.hosts)}, {
            **{k: string_column(hc, v) for k, v in cpu_info.items()},
            "sockets": np.array([n.cls.sockets for n in self.nodes])[hc],
            "cores": np.array([n.cls.cores for n in self.nodes])[hc],
            "threads": self.threads[hc]})
        for k in ("cpu", "system", "memory", "vmstat", "net", "disk"):
            out[k] = drop_absent(out[k], present)
        out["filesystem"] = pa.concat_tables([drop_absent(fs_tabs[0], present), *fs_tabs[1:]])

        if G:
            self._gpus(out, rng, t_ns, T, dt, reset, nullrate, present, hourly, g_proc, g_util, g_membw, g_mem, g_cap,
                       g_nvl, g_slow, noise)
        self._jobs(out, active, t_ns, r0, T, dt, load, noise)
        self.rows += sum(t.num_rows for t in out.values())
        return out

    @staticmethod
    def _fs_fields(size: int, used: np.ndarray, inodes: int) -> dict:
        free = size - used
        return {"size_bytes": np.full(used.size, size, np.int64), "free_bytes": free, "avail_bytes": free,
                "used_bytes": used, "used_ratio": used / size, "inodes_total": np.full(used.size, inodes, np.int64),
                "inodes_free": np.rint(inodes * (1 - used / size * 0.5))}

    def _gpus(self, out, rng, t_ns, T, dt, reset, nullrate, present, hourly, g_proc, g_util, g_membw, g_mem, g_cap,
              g_nvl, g_slow, noise) -> None:
        G = self.G
        gn = self.gpu_node
        busy = g_proc
        util = np.clip(g_util + noise((G, T), 0.025) * busy, 0.0, 1.0)
        util = np.where(busy & (g_util < 0.05), np.abs(noise((G, T), 0.01)), util)  # idle holders: 0-3%
        membw = np.clip(g_membw + noise((G, T), 0.02) * busy, 0.0, 1.0) * (util > 0.05) + util * 0.1 * (util <= 0.05)
        self._last_gpu_util = util  # job_gpu reports the same reading
        tdp = self.gpu_tdp[:, None]
        limit = tdp * g_cap
        idle_w = self.gpu_idle_w[:, None]
        power = idle_w + (limit - idle_w) * np.clip(0.75 * util + 0.25 * membw, 0, 1) ** 0.9
        power = np.clip(power + noise((G, T), 3.0), idle_w * 0.8, limit)
        energy, _ = self.c["energy"].step(power * dt, reset[gn])
        temp = 28 + 50 * power / tdp + noise((G, T), 0.7) + 25 * g_slow
        clk = np.where(util > 0.05, self.gpu_maxclk[:, None] * np.minimum(1, g_cap ** 0.35) * (1 - 0.3 * g_slow),
                       self.gpu_baseclk[:, None])
        thr = np.where(util <= 0.05, NVIDIA_THROTTLE_IDLE, 0) | np.where((g_cap < 1) & (util > 0.5),
                                                                         NVIDIA_THROTTLE_SW_POWER, 0)
        thr = thr | np.where(g_slow, NVIDIA_THROTTLE_HW_THERMAL, 0)
        nv = self.gpu_nvidia[:, None]
        nvl = np.where(nv, g_nvl, 0.0) * dt
        nvt, nvti = self.c["nvl_tx"].step(nvl, reset[gn])
        nvr, nvri = self.c["nvl_rx"].step(nvl, reset[gn])
        nvmask = np.broadcast_to(~nv, (G, T)).ravel()
        gnull = nullrate[gn].ravel() | nvmask
        pcie = util * 1.5e9
        codes = np.repeat(np.arange(G), T)
        tags = {"host": string_column(gn[codes], self.hosts),
                "gpu": string_column(codes, [str(i) for i in self.gpu_local]),
                "uuid": string_column(codes, self.gpu_uuid), "vendor": string_column(codes, self.gpu_vendor),
                "model": string_column(codes, self.gpu_model)}
        zG = np.zeros(G * T, np.int64)
        tab = make_table("gpu", np.tile(t_ns, G), tags, {
            "up": np.ones(G * T, np.int64), "utilization_ratio": util, "memory_bandwidth_ratio": membw,
            "memory_used_bytes": np.clip(g_mem + 2**28 + noise((G, T), 2**24), 0, self.gpu_mem[:, None]),
            "memory_total_bytes": np.broadcast_to(self.gpu_mem[:, None], (G, T)),
            "power_watts": power, "power_limit_watts": limit, "energy_joules": (energy, nvmask),
            "temperature_celsius": temp,
            "sm_clock_hertz": clk, "throttle_reasons": (thr, nvmask),
            "pcie_tx_bytes_per_second": (pcie * 0.2, nvmask), "pcie_rx_bytes_per_second": (pcie, nvmask),
            "nvlink_tx_bytes": (nvt, nvmask), "nvlink_rx_bytes": (nvr, nvmask),
            "nvlink_tx_bytes_per_second": (nvti / dt, gnull), "nvlink_rx_bytes_per_second": (nvri / dt, gnull),
            # amdgpu's sysfs has no energy counter and the agent reads no ECC counts there: null on AMD, as
            # the agent leaves them out.
            "ecc_corrected_errors": (zG, nvmask), "ecc_uncorrected_errors": (zG, nvmask),
            "processes": busy.astype(np.int64)})
        out["gpu"] = drop_absent(tab, present[gn])
        hsel = hourly[gn].ravel()
        hc = codes[hsel]
        hs = np.flatnonzero(hsel)
        out["gpu_info"] = make_table("gpu_info", np.tile(t_ns, G)[hs], {
            "host": string_column(gn[hc], self.hosts), "gpu": string_column(hc, [str(i) for i in self.gpu_local]),
            "uuid": string_column(hc, self.gpu_uuid), "vendor": string_column(hc, self.gpu_vendor),
            "model": string_column(hc, self.gpu_model)}, {
            "driver": string_column(hc, [DRIVER[v] for v in self.gpu_vendor]),
            "mig_mode": string_column(hc, ["disabled" if v == "nvidia" else "unsupported" for v in self.gpu_vendor])})

    def _jobs(self, out, active, t_ns, r0, T, dt, load, noise) -> None:
        jt: dict[str, list] = {k: [] for k in ("t", "host", "job", "cpu", "cores", "cnull", "alloc", "mem", "peak",
                                               "limit", "gpus", "procs")}
        gt: dict[str, list] = {k: [] for k in ("t", "host", "job", "gpu", "uuid", "mem", "util")}
        pt: dict[str, list] = {k: [] for k in ("t", "host", "job", "unit", "prog", "pps", "pnull")}
        util_all = getattr(self, "_last_gpu_util", None)
        it: dict[str, list] = {k: [] for k in ("t", "host", "job")}
        for j, i, s, e in active:
            t = j.truth
            node = self.nodes[i]
            if node.blackout and not (j.end <= node.blackout[0] or j.start >= node.blackout[1]):
                continue  # never happens: the scheduler drains nodes before a reboot
            L = e - s
            jp = self.job_pos[j.id]
            f = load[s:e] if t["diurnal"] else 1.0
            cores = np.clip(t["cpu_cores"] * f + noise(L, 0.02) * math.sqrt(t["cpu_cores"] + 0.01), 0.0,
                            j.cpus_per_node)
            # float64 before summing: a float32 running total loses the rate the counter should carry
            inc = cores.astype(np.float64) * dt
            key = (j.id, i)
            c = self.job_cpu.get(key, 0.0) + np.cumsum(inc)
            self.job_cpu[key] = float(c[-1])
            cnull = np.zeros(L, bool)
            if j.start == r0 + s:
                cnull[0] = True
            if j.start == r0 + s and i == j.hosts[0]:
                it["t"].append(t_ns[s:s + 1])
                it["host"].append(np.full(1, i))
                it["job"].append(np.full(1, jp))
            memv = np.rint(t["memory_bytes"] * (1 + 0.02 * noise(L, 1.0))).astype(np.int64)
            peak = np.maximum.accumulate(np.maximum(memv, self.job_peak.get(key, 0)))
            self.job_peak[key] = int(peak[-1])
            for k, v in (("t", t_ns[s:e]), ("host", np.full(L, i)), ("job", np.full(L, jp)), ("cpu", c),
                         ("cores", inc / dt), ("cnull", cnull), ("alloc", np.full(L, j.cpus_per_node)),
                         ("mem", memv), ("peak", peak), ("limit", np.full(L, j.memory_per_node)),
                         ("gpus", np.full(L, len(j.gpus.get(i, [])))),
                         ("procs", np.full(L, max(1, j.devices_per_node) + 2))):
                jt[k].append(v)
            running = process_gpus(j, i)
            for g in j.gpus.get(i, []):
                # One row per held GPU, as the agent reports it from the allocation (prolog records on Slurm,
                # the kubelet checkpoint on Kubernetes); 0 where no process of the job runs.
                G_ = self.gpu_base[i] + g
                on = g in running
                gt["t"].append(t_ns[s:e])
                gt["host"].append(np.full(L, i))
                gt["job"].append(np.full(L, jp))
                gt["gpu"].append(np.full(L, G_))
                gt["mem"].append(np.full(L, t["gpu_memory_bytes"] if on else 0, np.int64))
                gt["util"].append(util_all[G_, s:e] if on else np.zeros(L))
            if t["unit"] and i == j.hosts[0]:
                true = t["peak_throughput"] * f if t["diurnal"] else t["throughput"]
                pps = (true * (1 + 0.01 * noise(L, 1.0))).astype(np.float64)
                prog = self.job_progress.get(j.id, 0.0) + np.cumsum(pps * dt)
                self.job_progress[j.id] = float(prog[-1])
                for k, v in (("t", t_ns[s:e]), ("host", np.full(L, i)), ("job", np.full(L, jp)),
                             ("unit", np.full(L, 0 if t["unit"] == "samples" else 1)), ("prog", prog),
                             ("pps", np.diff(np.concatenate([[prog[0] - pps[0] * dt], prog])) / dt),
                             ("pnull", cnull)):
                    pt[k].append(v)
        ids = [j.id for j in self.jobs]
        users = [j.user for j in self.jobs]
        scheds = [j.scheduler for j in self.jobs]
        cat = {k: np.concatenate(v) if v else np.zeros(0) for k, v in jt.items()}
        jc = cat["job"].astype(np.int64)

        def jtags(c: dict, jcodes: np.ndarray) -> dict:
            return {"host": string_column(c["host"], self.hosts), "job": string_column(jcodes, ids),
                    "scheduler": string_column(jcodes, scheds), "user": string_column(jcodes, users)}

        out["job"] = make_table("job", cat["t"].astype(np.int64), jtags(cat, jc), {
            "cpu_seconds": cat["cpu"], "cpu_cores": (cat["cores"], cat["cnull"].astype(bool)),
            "cpus_allocated": cat["alloc"], "memory_bytes": cat["mem"], "memory_peak_bytes": cat["peak"],
            "memory_limit_bytes": cat["limit"], "gpus": cat["gpus"], "processes": cat["procs"]})
        cg = {k: np.concatenate(v) if v else np.zeros(0) for k, v in gt.items()}
        gcodes = cg["gpu"].astype(np.int64)
        gj = cg["job"].astype(np.int64)
        sources = [ALLOCATION_SOURCE[sched] for sched in scheds]
        out["job_gpu"] = make_table("job_gpu", cg["t"].astype(np.int64), {
            **jtags(cg, gj), "gpu": string_column(gcodes, [str(x) for x in self.gpu_local]),
            "uuid": string_column(gcodes, self.gpu_uuid)}, {"memory_used_bytes": cg["mem"],
                                                             "utilization_ratio": cg["util"],
                                                             "allocation_source": string_column(gj, sources)})
        cp = {k: np.concatenate(v) if v else np.zeros(0) for k, v in pt.items()}
        pj = cp["job"].astype(np.int64)
        out["job_progress"] = make_table("job_progress", cp["t"].astype(np.int64), {
            **jtags(cp, pj), "unit": string_column(cp["unit"], ["samples", "requests"])}, {
            "progress": cp["prog"], "progress_per_second": (cp["pps"], cp["pnull"].astype(bool))})
        self._job_info(out, it, jtags)

    def _job_info(self, out, it: dict, jtags) -> None:
        """job_info once per job, at its start on its first host, as the Slurm prolog would write it."""
        ci = {k: np.concatenate(v) if v else np.zeros(0) for k, v in it.items()}
        ij = ci["job"].astype(np.int64)
        info = [job_identity(self.jobs[k], self.seed, self.interval) for k in ij]
        n = len(info)
        out["job_info"] = make_table("job_info", ci["t"].astype(np.int64), jtags(ci, ij), {
            "name": pa.array([x["name"] for x in info], pa.string()),
            "account": pa.array([x["account"] for x in info], pa.string()),
            "partition": pa.array([x["partition"] for x in info], pa.string()),
            "command": pa.array([x["command"] for x in info], pa.string()),
            "cpus_requested": np.array([x["cpus_requested"] for x in info], np.int64).reshape(n),
            "gpus_requested": np.array([x["gpus_requested"] for x in info], np.int64).reshape(n),
            "time_limit_seconds": np.array([x["time_limit_seconds"] for x in info], np.float64).reshape(n)})


# How the agent learns a job's GPUs on the simulated fleet: the Slurm prolog's records, the kubelet's checkpoint.
ALLOCATION_SOURCE = {"slurm": "prolog", "kubernetes": "kubelet"}


def process_gpus(job: Job, node: int) -> list[int]:
    """The GPUs of `node` on which the job runs a process. An idle holder (a notebook that imported a framework)
    made a context on its first GPU only; an over-requested job (over_request.py) runs on its first
    `devices_used`; every other job runs on all the GPUs it holds."""
    held = job.gpus.get(node, [])
    if job.kind == "idle":
        return held[:1]
    return held if job.devices_used is None else held[:job.devices_used]


UNNAMED_SHARE = 0.2  # jobs submitted without a meaningful name (the analyzer must cluster them)


def job_identity(job: Job, seed: int, interval: float) -> dict:
    """What the scheduler would report about a job. Drawn from a hash of (seed, job id) rather than the
    emitter's random streams, so adding it changed no other series."""
    h = zlib.crc32(f"{seed}:{job.id}".encode())
    u = (h % 10_000) / 10_000
    base = (job.name or job.workload).replace("/", "-")
    suffix = (f"-{h % 9973:04d}", f"_{20261101 + h % 28}", f".run{h % 50}", "")[(h >> 16) % 4]
    # a scheduled script (over_request.py) always submits under its own name
    name = "" if u < UNNAMED_SHARE and not job.name else base + suffix
    gpu = job.devices_per_node > 0
    partition = "serving" if job.scheduler == "kubernetes" else ("gpu" if gpu else "cpu")
    # limits are rounded up to whole hours, with the slack users usually leave (1.2x to 3x)
    slack = 1.2 + 1.8 * ((h >> 8) % 1000) / 1000
    limit = 0.0 if job.scheduler == "kubernetes" else math.ceil(job.duration * interval * slack / 3600) * 3600.0
    return {"name": name, "account": f"acct-{job.user}", "partition": partition,
            "command": "" if not name else f"sbatch {base}.sh", "cpus_requested": job.cpus_per_node * job.nodes,
            "gpus_requested": job.devices_per_node * job.nodes, "time_limit_seconds": limit}
