"""Job arrivals (Poisson) and placement with queueing, in whole rounds of the sampling interval.

First-fit with backfill over a FIFO queue: at every arrival or completion the queue is scanned in
order and each job that fits starts (best fit: the node left with the fewest free devices). A
multi-node job needs whole nodes of one class. A node with a planned reboot is drained for it: no job
that would overlap the reboot window is placed there. GPUs are never shared between jobs.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np

from agents.simulate import workloads as wl
from agents.simulate.hardware import NodeClass
from agents.simulate.profile import Profile, allocate

REBOOT_DOWN_ROUNDS = 4  # rounds a rebooting node sends nothing
SCAN_LIMIT = 400  # queue entries looked at per event: bounds the cost on a long queue


@dataclass
class Node:
    index: int
    host: str
    cls: NodeClass
    reboot_round: int | None = None  # first round after the reboot (counters restart here)
    leaf: int = 0  # leaf switch within the class's fabric

    @property
    def switch(self) -> tuple[str, int]:
        return self.cls.name, self.leaf

    @property
    def blackout(self) -> tuple[int, int] | None:
        if self.reboot_round is None:
            return None
        return self.reboot_round - REBOOT_DOWN_ROUNDS, self.reboot_round + 1


@dataclass
class Job:
    id: str
    kind: str
    workload: str
    user: str
    scheduler: str
    arrival: int  # round
    duration: int  # rounds
    accelerator: str | None  # requested type; None = any GPU (or CPU job)
    devices_per_node: int
    nodes: int
    cpus_per_node: int
    memory_per_node: int
    cap_fraction: float = 1.0
    straggler: bool = False
    rdma: bool = True  # False: a multi-node job's collectives go over TCP on eth0 (no usable HCA)
    augment_cost: float = 1.0  # CPU cost per sample of the input pipeline, relative to the plain one
    one_leaf: bool = False  # Slurm --switches=1: wait rather than span leaf switches (benchmarks)
    devices_used: int | None = None  # GPUs per node its program runs on (None: all it holds; over_request.py)
    name: str | None = None  # the job name a recurring script submits under (None: drawn from the workload)
    start: int | None = None
    hosts: list[int] = field(default_factory=list)
    gpus: dict[int, list[int]] = field(default_factory=dict)  # node index -> device indices
    truth: dict = field(default_factory=dict)  # filled by truth.derive

    @property
    def end(self) -> int | None:
        return None if self.start is None else self.start + self.duration


def build_fleet(profile: Profile, n_nodes: int, rounds: int, rng: np.random.Generator) -> list[Node]:
    classes = profile.classes()
    counts = allocate([c.share for c in profile.node_class], n_nodes)
    nodes: list[Node] = []
    for cls, count in zip(classes, counts, strict=True):
        for k in range(count):
            i = len(nodes)
            nodes.append(Node(i, f"{cls.name}-{i:04d}", cls, leaf=k // cls.leaf_nodes if cls.leaf_nodes else 0))
    for node in nodes:
        if rounds > 4 * REBOOT_DOWN_ROUNDS and rng.random() < profile.mix.reboot_probability:
            node.reboot_round = int(rng.integers(2 * REBOOT_DOWN_ROUNDS, rounds - REBOOT_DOWN_ROUNDS))
    return nodes


WEEK_SECONDS = 7 * 86400


def arrival_seconds(u: float, growth_per_week: float) -> float | None:
    """Time of an arrival whose operational time is u, for a rate growing linearly by growth_per_week.

    Arrivals are a Poisson process of rate lam * (1 + g t / W): drawing exponential gaps at the starting rate
    gives u = t + g t^2 / (2 W) (the integrated rate over lam), inverted here. g = 0 gives t = u, so a profile
    without growth draws exactly the arrivals it drew before. None once a shrinking rate has reached zero."""
    g = growth_per_week
    if g == 0:
        return u
    disc = 1.0 + 2.0 * g * u / WEEK_SECONDS
    if disc < 0:
        return None
    return (np.sqrt(disc) - 1.0) * WEEK_SECONDS / g


def _duration(rng: np.random.Generator, median_s: float, sigma: float, lo: float, hi: float, interval: float) -> int:
    return max(1, int(np.clip(rng.lognormal(np.log(median_s), sigma), lo, hi) // interval))


def generate_jobs(profile: Profile, nodes: list[Node], rounds: int, interval: float,
                  rng: np.random.Generator) -> list[Job]:
    mix = profile.mix
    gpu_nodes = [n for n in nodes if n.cls.accelerator]
    cpu_nodes = [n for n in nodes if not n.cls.accelerator]
    devices: dict[str, int] = {}
    for n in gpu_nodes:
        devices[n.cls.accelerator.key] = devices.get(n.cls.accelerator.key, 0) + n.cls.devices
    total_devices = sum(devices.values())
    jobs: list[Job] = []
    users = [f"u{i:02d}" for i in range(24)]

    def new_id() -> str:
        return f"{100000 + len(jobs)}"

    # Inference services: up for the whole run on nodes without a planned reboot.
    if total_devices:
        budget = round(mix.inference_gpus_share * total_devices)
        stable = [n for n in gpu_nodes if n.reboot_round is None]
        k = 0
        while budget > 0 and stable:
            node = stable[k % len(stable)]
            k += 7
            g = min(budget, 2 if node.cls.devices >= 4 else 1)
            w = wl.INFERENCE_WORKLOADS[len(jobs) % len(wl.INFERENCE_WORKLOADS)]
            jobs.append(Job(new_id(), "inference", w, "serving", "kubernetes", 0, rounds, node.cls.accelerator.key,
                            g, 1, 8 * g, 64 << 30, cap_fraction=1.0))
            budget -= g
            if k > 10 * len(stable):
                break

    # Scaling sweep (off by default, draws no random numbers): known shapes for recovering the curves.
    jobs.extend(_sweep_jobs(mix, gpu_nodes, rounds, interval, len(jobs)))

    def gpu_shape() -> tuple[str | None, int, int]:
        acc_keys = sorted(devices)
        acc = acc_keys[int(rng.choice(len(acc_keys), p=np.array([devices[a] for a in acc_keys]) / total_devices))]
        per_node = max(n.cls.devices for n in gpu_nodes if n.cls.accelerator.key == acc)
        if rng.random() < mix.multi_node_probability:
            return acc, per_node, int(rng.choice([2, 4]))
        d = int(rng.choice([1, 2, 4, 8]))
        typed = rng.random() < 0.7
        if d > per_node:  # Slurm's --gpus=8 on 4-GPU nodes: whole nodes of one type, as many as it takes
            return acc, per_node, -(-d // per_node)
        return (acc if typed else None), d, 1

    train_share = mix.training / (mix.training + mix.idle) if mix.training + mix.idle else 0
    if total_devices:
        # single node: mean of 1, 2, 4, 8 devices; multi-node: 2 or 4 whole nodes of ~4.5 devices
        mean_devices = 3.75 * (1 - mix.multi_node_probability) + 13.5 * mix.multi_node_probability
        mean_seconds = train_share * 3 * 3600 * np.exp(0.5) + (1 - train_share) * 8 * 3600 * np.exp(0.245)
        free = total_devices * (1 - mix.inference_gpus_share)
        lam = mix.gpu_load * free / (mean_devices * mean_seconds)  # arrivals per second at the start
        u = rng.exponential(1 / lam)
        while (t := arrival_seconds(u, mix.gpu_growth_per_week)) is not None and t < rounds * interval:
            acc, per_node, n_nodes = gpu_shape()
            idle = rng.random() >= train_share
            arrival = int(t // interval)
            if idle:
                work = wl.IDLE_WORKLOADS[0]
                dur = _duration(rng, 8 * 3600, 0.7, 3600, 3 * 86400, interval)
                n_nodes, per_node = 1, min(per_node, int(rng.choice([1, 2, 4])))
                job = Job(new_id(), "idle", work, users[int(rng.integers(len(users)))], "slurm", arrival, dur, acc,
                          per_node, 1, 4 * per_node, (16 << 30) * per_node)
            else:
                work = wl.TRAINING_WORKLOADS[int(rng.integers(len(wl.TRAINING_WORKLOADS)))]
                dur = _duration(rng, 3 * 3600, 1.0, 900, 2 * 86400, interval)
                cpn = int(rng.choice(mix.cpus_per_device)) * per_node
                job = Job(new_id(), "training", work, users[int(rng.integers(len(users)))], "slurm", arrival, dur,
                          acc, per_node, n_nodes, cpn, (32 << 30) * per_node,
                          cap_fraction=float(rng.choice(mix.power_caps)),
                          straggler=bool(per_node * n_nodes >= 2 and rng.random() < mix.straggler_probability),
                          rdma=not (n_nodes > 1 and rng.random() < mix.no_rdma_probability),
                          augment_cost=float(rng.choice(mix.augment_costs)))
            jobs.append(job)
            u += rng.exponential(1 / lam)

    if cpu_nodes:
        cores = sum(n.cls.cores for n in cpu_nodes)
        etl_share = mix.etl / (mix.etl + mix.cpu_batch) if mix.etl + mix.cpu_batch else 0
        mean_cores, mean_seconds = 48.0, 2 * 3600 * np.exp(0.32)
        lam = mix.cpu_load * cores / (mean_cores * mean_seconds)
        u = rng.exponential(1 / lam)
        while (t := arrival_seconds(u, mix.cpu_growth_per_week)) is not None and t < rounds * interval:
            etl = rng.random() < etl_share
            cpus = int(rng.choice([16, 32, 64, 80]))
            dur = _duration(rng, (1 if etl else 2.5) * 3600, 0.8, 600, 86400, interval)
            work = wl.ETL_WORKLOADS[0] if etl else wl.CPU_WORKLOADS[int(rng.integers(len(wl.CPU_WORKLOADS)))]
            jobs.append(Job(new_id(), "etl" if etl else "cpu_batch", work, users[int(rng.integers(len(users)))],
                            "slurm", int(t // interval), dur, None, 0, 1, cpus, cpus * (4 << 30)))
            u += rng.exponential(1 / lam)
    return jobs


def _sweep_jobs(mix, gpu_nodes: list[Node], rounds: int, interval: float, first: int) -> list[Job]:
    """For each sweep workload and GPU type: 1, 2, 4, ... devices on one node and the full node on 2 nodes."""
    out: list[Job] = []
    per_node: dict[str, int] = {}
    count: dict[str, int] = {}
    for n in gpu_nodes:
        key = n.cls.accelerator.key
        per_node[key] = max(per_node.get(key, 0), n.cls.devices)
        count[key] = count.get(key, 0) + 1
    duration = max(1, min(rounds, int(mix.sweep_hours * 3600 // interval)))
    shapes = []
    for work in mix.scaling_sweep:
        for acc in sorted(per_node):
            shapes += [(work, acc, d, 1) for d in (1, 2, 4, 8, 16) if d <= per_node[acc]]
            if count[acc] >= 2:
                shapes.append((work, acc, per_node[acc], 2))
    # Whole-node jobs first in the FIFO queue: single-node ones backfilled ahead of them would starve them.
    shapes.sort(key=lambda s: -s[3])
    for work, acc, d, n_nodes in shapes:
        out.append(Job(f"{100000 + first + len(out)}", "training", work, "sweep", "slurm", 0, duration, acc, d,
                       n_nodes, 16 * d, (32 << 30) * d, one_leaf=True))
    return out


class Scheduler:
    def __init__(self, nodes: list[Node], rounds: int) -> None:
        self.nodes = nodes
        self.rounds = rounds
        self.free_gpus = [list(range(n.cls.devices)) for n in nodes]
        self.free_cpus = [n.cls.threads for n in nodes]
        self.free_mem = [int(n.cls.memory_bytes * 0.9) for n in nodes]

    def _clear(self, node: Node, start: int, end: int) -> bool:
        b = node.blackout
        return b is None or end <= b[0] or start >= b[1]

    def _fits(self, node: Node, job: Job, start: int, whole: bool) -> bool:
        if job.devices_per_node:
            acc = node.cls.accelerator
            if acc is None or (job.accelerator is not None and acc.key != job.accelerator):
                return False
            need = node.cls.devices if whole else job.devices_per_node
            if len(self.free_gpus[node.index]) < need or (whole and need < job.devices_per_node):
                return False
        elif node.cls.accelerator is not None:
            return False
        return (self.free_cpus[node.index] >= job.cpus_per_node and self.free_mem[node.index] >= job.memory_per_node
                and self._clear(node, start, start + job.duration))

    def _take(self, node: Node, job: Job) -> None:
        i = node.index
        gpus, self.free_gpus[i] = self.free_gpus[i][: job.devices_per_node], self.free_gpus[i][job.devices_per_node:]
        job.gpus[i] = gpus
        job.hosts.append(i)
        self.free_cpus[i] -= job.cpus_per_node
        self.free_mem[i] -= job.memory_per_node

    def _release(self, job: Job) -> None:
        for i in job.hosts:
            self.free_gpus[i] = sorted(self.free_gpus[i] + job.gpus[i])
            self.free_cpus[i] += job.cpus_per_node
            self.free_mem[i] += job.memory_per_node

    def _try(self, job: Job, t: int) -> bool:
        if job.nodes == 1:
            fits = [n for n in self.nodes if self._fits(n, job, t, False)]
            if not fits:
                return False
            best = min(fits, key=lambda n: (len(self.free_gpus[n.index]) - job.devices_per_node,
                                            self.free_cpus[n.index], n.index))
            self._take(best, job)
        else:
            by_class: dict[str, list[Node]] = {}
            for n in self.nodes:
                if self._fits(n, job, t, True):
                    by_class.setdefault(n.cls.name, []).append(n)
            group = next((g for _, v in sorted(by_class.items()) if (g := self._topology_fit(v, job)) is not None),
                         None)
            if group is None:
                return False
            job.devices_per_node = group[0].cls.devices
            for n in group[: job.nodes]:
                self._take(n, job)
        job.start = t
        return True

    @staticmethod
    def _topology_fit(free: list[Node], job: Job) -> list[Node] | None:
        """Slurm's topology/tree placement: the fullest leaf switch that holds the whole job; otherwise (unless
        the job asked for one switch) the free nodes in order, spanning leaves."""
        if len(free) < job.nodes:
            return None
        leaves: dict[int, list[Node]] = {}
        for n in free:
            leaves.setdefault(n.leaf, []).append(n)
        fitting = [v for v in leaves.values() if len(v) >= job.nodes]
        if fitting:
            return min(fitting, key=lambda v: (len(v), v[0].index))[: job.nodes]
        return None if job.one_leaf else free[: job.nodes]

    def run(self, jobs: list[Job]) -> None:
        """Place jobs in arrival order; a job that never fits before the end stays queued (start None)."""
        arrivals = sorted(jobs, key=lambda j: (j.arrival, j.id))
        running: list[tuple[int, str, Job]] = []
        queue: list[Job] = []
        a = 0
        while a < len(arrivals) or running:
            t_next_arrival = arrivals[a].arrival if a < len(arrivals) else None
            t_next_end = running[0][0] if running else None
            t = min(x for x in (t_next_arrival, t_next_end) if x is not None)
            if t >= self.rounds:
                break
            while running and running[0][0] <= t:
                self._release(heapq.heappop(running)[2])
            while a < len(arrivals) and arrivals[a].arrival <= t:
                queue.append(arrivals[a])
                a += 1
            kept: list[Job] = []
            for k, job in enumerate(queue):
                if k < SCAN_LIMIT and self._try(job, t):
                    heapq.heappush(running, (job.end, job.id, job))
                else:
                    kept.append(job)
            queue = kept
