"""Measurements that only public traces fill: inventories, requests and offline profiles.

No agent writes these; `fleetwise ingest` does (docs/traces.md maps every trace column onto them).
Bounded tags only: numbers that vary per row (batch size, power cap) are fields, never tags.
"""

from agents.schema.types import gauge, info, measurement

NODE_INVENTORY = measurement(
    "node_inventory",
    "What a node has, from a cluster inventory (one point per node, at the trace's epoch anchor). "
    "gpu_model is empty for CPU-only nodes; arch is the CPU architecture when the source says it "
    "(empty when unknown); pool names the cluster or partition the node belongs to.",
    ("gpu_model", "arch", "pool"),
    gauge("cpu_cores", "CPU cores (fractional when the source counts millicores)."),
    gauge("memory_bytes", "Main memory.", type=int),
    gauge("gpus", "GPUs on the node.", type=int),
)

JOB_REQUEST = measurement(
    "job_request",
    "What a job or pod asked the scheduler for, written at its creation time. gpu_spec lists the GPU "
    "models it accepts ('|'-separated, empty = any); qos is the scheduler's class of service.",
    ("job", "scheduler", "user", "qos", "gpu_spec"),
    gauge("cpu_cores", "CPU cores requested."),
    gauge("memory_bytes", "Memory requested.", type=int),
    gauge("gpus", "GPUs requested.", type=int),
    gauge("gpu_fraction", "Share of each GPU requested, 0-1 (below 1 the job shares a GPU)."),
    gauge("creation_time_seconds", "When the job was submitted, Unix seconds."),
    gauge("scheduled_time_seconds", "When the job was placed, Unix seconds (absent when never placed)."),
    gauge("deletion_time_seconds", "When the job ended or was removed, Unix seconds (absent when unknown)."),
    info("phase", "Last known phase (Running, Pending, Succeeded, Failed)."),
)

WORKLOAD_PROFILE = measurement(
    "workload_profile",
    "An offline measurement of one training workload at one configuration: time and power per epoch "
    "at a given batch size and GPU power cap. workload is dataset/network.",
    ("workload", "gpu_model", "optimizer"),
    gauge("batch_size", "Training batch size.", type=int),
    gauge("power_limit_watts", "GPU power cap set for the run."),
    gauge("time_per_epoch_seconds", "Wall-clock time of one epoch."),
    gauge("average_power_watts", "Average GPU power draw over the epoch."),
    gauge("energy_per_epoch_joules", "GPU energy per epoch (time_per_epoch_seconds x average_power_watts)."),
)

MEASUREMENTS = (NODE_INVENTORY, JOB_REQUEST, WORKLOAD_PROFILE)
