"""Ground truth: what each job really does on the hardware it got, and the file written beside the data.

derive() turns a placed job into the levels the emitter draws around (GPU utilization, memory
bandwidth, cores busy, bytes moved) and the facts the analyzer should recover (throughput,
bottleneck, idle GPU-hours). write_truth() stores them as JSON.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from agents.simulate import workloads as wl
from agents.simulate.hardware import ACCELERATORS, MGMT_NETWORK
from agents.simulate.scheduler import Job, Node

STRAGGLER_SLOWDOWN = 0.7  # a thermally throttled device sets the pace of a synchronous job
IDLE_UTILIZATION = 0.01
BYTES_PER_SAMPLE = {"imagenet/resnet50": 110_000, "librispeech/deepspeech2": 350_000,
                    "cifar100/shufflenetv2": 3_100, "movielens-1m/ncf": 16,
                    "sentiment140/bert_base_uncased": 200, "squad/bert_base_uncased": 2_000}
MEMBW_PER_UTIL = {"cnn": 0.45, "rnn": 0.5, "recsys": 0.9, "transformer": 0.4}
FRAMEWORK_CORES_PER_DEVICE = 0.25  # the training loop's thread: launches kernels, then waits on the GPU


def diurnal_mean() -> float:
    return 0.5  # mean of the inference load curve 0.5 - 0.4*cos(...) over whole days


def interconnect(job: Job, nodes: list[Node]) -> tuple[float, str, float]:
    """Bytes/s of one node's link for the job's collectives, which port carries them ("ib" or "eth"), and the
    oversubscription it meets (1 = none).

    A multi-node job without a usable HCA (job.rdma False) falls back to NCCL's TCP sockets over eth0, the
    25 GbE management network every node has. One whose nodes sit under different leaf switches of a tapered
    fat tree shares the leaf's uplinks: link / oversubscription per node (the ring all-reduce runs at the pace
    of its slowest hop). Everything else gets the class's own link."""
    first = nodes[job.hosts[0]].cls
    net = first.network
    if len(job.hosts) > 1 and not job.rdma and net.kind == "infiniband":
        return MGMT_NETWORK.bytes_per_second, "eth", 1.0
    taper = 1.0
    if len({nodes[i].switch for i in job.hosts}) > 1:
        taper = max(nodes[i].cls.oversubscription for i in job.hosts)
    return net.bytes_per_second / taper, "ib" if net.kind == "infiniband" else "eth", taper


def derive(job: Job, nodes: list[Node]) -> None:
    """Fill job.truth. Only for placed jobs."""
    first = nodes[job.hosts[0]].cls
    acc = first.accelerator
    t: dict = {"accelerator": acc.key if acc else None, "node_class": first.name, "diurnal": False,
               "straggler_gpu": None}
    # the GPUs its program runs on: an over-requested job (over_request.py) runs as a job of that many would
    devices = (job.devices_used or job.devices_per_node) * len(job.hosts)
    if job.kind == "training":
        slow = STRAGGLER_SLOWDOWN if job.straggler else 1.0
        link, path, taper = interconnect(job, nodes)
        tt = wl.training_truth(job.workload, acc.key, devices, len(job.hosts), link,
                               job.cap_fraction, job.cpus_per_node * len(job.hosts), slow, job.augment_cost)
        fam = wl.FAMILY[job.workload]
        util = min(0.98, 0.97 * tt.compute_fraction)
        t.update(throughput=tt.throughput, gpu_bound_throughput=tt.gpu_bound, bottleneck=tt.bottleneck,
                 unit="samples", utilization=util * slow, membw=min(0.95, MEMBW_PER_UTIL[fam] * util) * slow,
                 gpu_memory_bytes=min(wl.MEMORY_BYTES[job.workload], int(acc.memory_bytes * 0.95)))
        per_node = tt.throughput / len(job.hosts)
        rate = wl.INPUT_SAMPLES_PER_CORE[job.workload]
        rate = rate / job.augment_cost if rate else rate
        # Input-bound: every allocated core decodes. Otherwise the decode work the throughput needs plus the
        # training loop's own thread per device, which mostly waits on the GPU (a quarter of a core).
        cores = job.cpus_per_node * 0.97 if tt.bottleneck == "cpu_input" else min(
            job.cpus_per_node * 0.9, FRAMEWORK_CORES_PER_DEVICE * (job.devices_used or job.devices_per_node)
            + (per_node / rate if rate else 0.5))
        t.update(cpu_cores=cores, lustre_read=per_node * BYTES_PER_SAMPLE[job.workload], lustre_write=2e6,
                 nvme_write=30e6, nvme_read=per_node * BYTES_PER_SAMPLE[job.workload] * 0.2,
                 net_bytes=link * 0.8 * tt.comm_fraction if len(job.hosts) > 1 else 0.0,
                 net_path=path, network_bytes_per_second=link, oversubscription=taper,
                 # a tapered spine: the HCA has data queued but no credits for (1 - 1/taper) of its sending time
                 ib_blocked=(1 - 1 / taper) * tt.comm_fraction if path == "ib" else 0.0,
                 nvlink_bytes=(acc.link_bytes_per_second * 0.3 * util if devices > 1 else 0.0))
        if job.straggler:
            t["straggler_gpu"] = {"host": nodes[job.hosts[-1]].host, "gpu": job.gpus[job.hosts[-1]][-1]}
    elif job.kind == "inference":
        peak = wl.INFERENCE_PEAK_RPS[job.workload][acc.key] * devices
        llm = job.workload == "llm-serving"
        t.update(throughput=peak * diurnal_mean(), peak_throughput=peak, unit="requests", diurnal=True,
                 bottleneck="gpu_memory_bandwidth" if llm else "gpu_compute", utilization=0.9,
                 membw=0.85 if llm else 0.3,
                 gpu_memory_bytes=int(acc.memory_bytes * wl.INFERENCE_MEMORY_FRACTION[job.workload]),
                 cpu_cores=2.0 * devices, lustre_read=0.0, lustre_write=0.0, nvme_write=1e6, nvme_read=0.0,
                 net_bytes=2e7 * devices, nvlink_bytes=acc.link_bytes_per_second * 0.05 if devices > 1 else 0.0)
    elif job.kind == "idle":
        t.update(throughput=0.0, unit=None, bottleneck="idle", utilization=IDLE_UTILIZATION, membw=0.002,
                 gpu_memory_bytes=int(1.5 * 2**30), cpu_cores=0.05, lustre_read=0.0, lustre_write=0.0,
                 nvme_write=0.0, nvme_read=0.0, net_bytes=1e3, nvlink_bytes=0.0)
    elif job.kind == "etl":
        t.update(throughput=None, unit=None, bottleneck="storage_io", utilization=0.0, membw=0.0,
                 gpu_memory_bytes=0, cpu_cores=job.cpus_per_node * 0.3, iowait_cores=job.cpus_per_node * 0.25,
                 lustre_read=1.5e9, lustre_write=0.8e9, nvme_write=2e8, nvme_read=1e8, net_bytes=0.0,
                 nvlink_bytes=0.0)
    else:  # cpu_batch
        t.update(throughput=None, unit=None, bottleneck="cpu_compute", utilization=0.0, membw=0.0,
                 gpu_memory_bytes=0, cpu_cores=job.cpus_per_node * 0.95, lustre_read=5e6, lustre_write=2e6,
                 nvme_write=5e6, nvme_read=2e7, net_bytes=5e6, nvlink_bytes=0.0)
    t.setdefault("iowait_cores", 0.0)
    t.setdefault("net_path", interconnect(job, nodes)[1])
    t.setdefault("ib_blocked", 0.0)
    t["memory_bytes"] = int(job.memory_per_node * (0.15 if job.kind == "idle" else 0.6))
    job.truth = t


def write_truth(path: Path, meta: dict, nodes: list[Node], jobs: list[Job], interval: float, rounds: int,
                totals: dict) -> None:
    out_jobs = []
    for j in jobs:
        entry = {"job": j.id, "kind": j.kind, "workload": j.workload, "user": j.user, "scheduler": j.scheduler,
                 "arrival_seconds": j.arrival * interval, "requested_accelerator": j.accelerator,
                 "devices_per_node": j.devices_per_node, "nodes": j.nodes, "cpus_per_node": j.cpus_per_node,
                 "memory_per_node_bytes": j.memory_per_node, "power_cap_fraction": j.cap_fraction,
                 "straggler": j.straggler, "rdma": j.rdma, "augment_cost": j.augment_cost,
                 "devices_used_per_node": j.devices_used or j.devices_per_node,
                 "placed": j.start is not None}
        if j.start is not None:
            end = min(j.end, rounds)
            gpu_hours = j.devices_per_node * len(j.hosts) * (end - j.start) * interval / 3600
            t = j.truth
            entry.update(
                start_seconds=j.start * interval, end_seconds=end * interval,
                finished=j.end <= rounds, wait_seconds=(j.start - j.arrival) * interval,
                hosts=[nodes[i].host for i in j.hosts], gpus={nodes[i].host: j.gpus[i] for i in j.hosts},
                accelerator=t["accelerator"],
                accelerator_key=ACCELERATORS[t["accelerator"]].canonical_key if t["accelerator"] else None,
                node_class=t["node_class"], bottleneck=t["bottleneck"],
                throughput=t["throughput"], unit=t["unit"], true_utilization=t["utilization"],
                gpu_hours_allocated=gpu_hours,
                gpu_hours_used=totals["job_used_gpu_hours"].get(j.id, 0.0),
                idle_gpu_hours=gpu_hours if t["bottleneck"] == "idle" else 0.0,
                # held GPUs its program never ran on (over-requested jobs only)
                unused_gpu_hours=gpu_hours * (1 - j.devices_used / j.devices_per_node) if j.devices_used else 0.0,
                straggler_gpu=t["straggler_gpu"])
            for k in ("gpu_bound_throughput", "peak_throughput", "network_bytes_per_second", "oversubscription"):
                if k in t:
                    entry[k] = t[k]
        out_jobs.append(entry)
    doc = {
        **meta,
        "workloads": wl.truth_table(),
        "nodes": [{"host": n.host, "class": n.cls.name, "arch": n.cls.cpu.arch, "cpu": n.cls.cpu.model,
                   "accelerator": n.cls.gpu_model_key or None,
                   "accelerator_key": n.cls.accelerator.canonical_key if n.cls.accelerator else None,
                   "devices": n.cls.devices,
                   "network": n.cls.network.key, "pool": n.cls.pool,
                   "reboot_seconds": None if n.reboot_round is None else n.reboot_round * interval}
                  for n in nodes],
        "jobs": out_jobs,
        "totals": {k: v for k, v in totals.items() if k != "job_used_gpu_hours"},
    }
    text = json.dumps(doc, indent=1, default=_default)
    if path.exists() and not path.is_file():  # /dev/null or a pipe: renaming over it would replace the device
        path.write_text(text, encoding="utf-8")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _default(o):
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return str(o)
