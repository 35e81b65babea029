"""Per-job attribution: Slurm jobs and Kubernetes pods. The job id is a tag only here."""

from agents.schema.types import counter, gauge, info, measurement, rate

JOB_TAGS = ("job", "scheduler", "user")

JOB = measurement(
    "job",
    "Resources used by one job or pod on this host, from its cgroup (v1 or v2). scheduler is slurm "
    "or kubernetes; user is the Slurm user (uid on cgroup v1 paths) or the pod's namespace.",
    JOB_TAGS,
    counter("cpu_seconds", "CPU time used by the job's processes.", telegraf="(jobstats) cpu_time",
            node_exporter="cgroup_cpu_usage_seconds (cgroup_exporter)"),
    rate("cpu_cores", "Cores kept busy over the interval (cpu_seconds rate).", prometheus=True),
    gauge("cpus_allocated", "CPUs in the job's cpuset (0 when unknown).", type=int),
    gauge("memory_bytes", "Memory charged to the cgroup now.", type=int,
          node_exporter="cgroup_memory_used_bytes (cgroup_exporter)"),
    gauge("memory_peak_bytes", "Peak memory charged to the cgroup (memory.peak / max_usage_in_bytes).",
          type=int),
    gauge("memory_limit_bytes", "Memory limit of the cgroup (0 when unlimited).", type=int),
    gauge("gpus", "GPUs the job holds (its allocation, from the sources job_gpu.allocation_source names) "
          "or runs compute processes on.", type=int),
    gauge("processes", "Processes in the job's cgroup.", type=int),
)

JOB_GPU = measurement(
    "job_gpu",
    "One row per GPU a job holds, whether or not a process of it runs there, and per GPU it runs on "
    "without a known allocation. Allocation comes from the scheduler's records (agents/collectors/gpu_alloc.py); "
    "processes from NVML or AMD KFD, matched to the job through /proc/PID/cgroup.",
    (*JOB_TAGS, "gpu", "uuid"),
    info("allocation_source", "How the agent learned the job holds this GPU, most trusted first: prolog "
         "(/run/gpustat/<index> written by the Slurm prolog), kubelet (device manager checkpoint), cgroup "
         "(cgroup v1 devices.list), environ (SLURM_JOB_GPUS, NVIDIA_VISIBLE_DEVICES, CUDA/ROCR_VISIBLE_DEVICES "
         "of the job's processes), process (no allocation record; a process of the job runs there)."),
    gauge("memory_used_bytes", "GPU memory used by the job's processes on this GPU (0 when none runs there).",
          type=int, dcgm="DCGM_FI_DEV_FB_USED (with job labels)"),
    gauge("utilization_ratio", "The GPU's utilization while a process of the job runs on it (shared by all jobs "
          "on it); 0 on a GPU the job holds and runs nothing on.", dcgm="DCGM_FI_DEV_GPU_UTIL (with job labels)"),
)

JOB_PROGRESS = measurement(
    "job_progress",
    "Application progress a job reports through the textfile directory "
    "(fleetwise_job_progress_total{job=...,unit=...} in a *.prom file).",
    (*JOB_TAGS, "unit"),
    counter("progress", "Units of work done (samples, steps, tokens), cumulative.", prometheus=False),
    rate("progress_per_second", "Throughput over the interval."),
)

JOB_INFO = measurement(
    "job_info",
    "What the scheduler knows about a job: its name, account, partition and requests (the workload's "
    "identity). From fleetwise_job_info{job=...,name=...} 1 in a *.prom file of the textfile directory, "
    "which the Slurm prolog writes. Empty strings where the scheduler did not say.",
    JOB_TAGS,
    info("name", "Job name (SLURM_JOB_NAME, pod name)."),
    info("account", "Account charged (SLURM_JOB_ACCOUNT)."),
    info("partition", "Partition or queue (SLURM_JOB_PARTITION)."),
    info("command", "Command or batch script, when known."),
    gauge("cpus_requested", "CPUs requested (0 when unknown).", type=int),
    gauge("gpus_requested", "GPUs requested (0 when unknown).", type=int),
    gauge("time_limit_seconds", "Wall-time limit (0 when unknown or unlimited)."),
)

MEASUREMENTS = (JOB, JOB_GPU, JOB_PROGRESS, JOB_INFO)
