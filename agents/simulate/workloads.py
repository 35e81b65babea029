"""Workload types and their true performance curves: the ground truth the analyzer should recover.

Training throughput (samples/s) of one device at full power is anchored on the Zeus NSDI'23
measurements (../shared/data/zeus): for each workload, the best time_per_epoch over batch sizes at
the highest power cap on V100, A40 and P100, turned into samples/s with the dataset's epoch size.
V100 is measured directly; A100, H100 and MI250 are extrapolated from V100 with published per-family
ratios (see RATIO_SOURCES and docs/simulator.md). A40 and P100 are kept for the cross-check test.

Power cap: time(cap) / time(max) = 1 + alpha * (1/f - 1)**p, f = cap / max cap, fitted (least squares)
to the median over Zeus configurations: V100 alpha=0.205 p=1.47 (fit residual < 0.02), A40 alpha=0.405
p=2.2. V100 uses its own fit; the Ampere/Hopper/CDNA2 parts use the A40 fit (high-TDP boards with a
sharp knee), an assumption documented as such.

Scaling with device count (Optimus-style, data parallel with all-reduce):
    X(n) = X1 * n / (1 + b * (n - 1) + c * (n - 1)**2)
b = b_intra inside one node (NVLink / Infinity Fabric); across nodes b = b_intra + b_net * 25 GB/s / link,
so HDR (25 GB/s) pays b_net in full and NDR half of it. c is contention that grows with the ring size.
"""

from __future__ import annotations

from dataclasses import dataclass

# Best seconds per epoch at the highest power cap, min over batch size and optimizer (Zeus, computed
# by zeus_anchors() from summary_power_{v100,a40,p100}.csv; test_simulator re-derives them).
ZEUS_SECONDS_PER_EPOCH: dict[str, dict[str, float]] = {
    "cifar100/shufflenetv2": {"V100": 7.370, "A40": 8.525, "P100": 16.500},
    "imagenet/resnet50": {"V100": 3514.987, "A40": 3739.500, "P100": 6277.980},
    "librispeech/deepspeech2": {"V100": 5375.030, "A40": 4995.155, "P100": 18893.780},
    "movielens-1m/ncf": {"V100": 7.093, "A40": 8.151, "P100": 11.823},
    "sentiment140/bert_base_uncased": {"V100": 4027.768, "A40": 1961.784, "P100": 7246.105},
    "squad/bert_base_uncased": {"V100": 1573.050, "A40": 909.465, "P100": 2791.790},
}

# Training samples in one epoch of each dataset (dataset cards).
SAMPLES_PER_EPOCH: dict[str, int] = {
    "cifar100/shufflenetv2": 50_000,
    "imagenet/resnet50": 1_281_167,
    "librispeech/deepspeech2": 281_241,
    "movielens-1m/ncf": 994_169,
    "sentiment140/bert_base_uncased": 1_600_000,
    "squad/bert_base_uncased": 88_524,
}

POWER_CURVE: dict[str, tuple[float, float]] = {  # (alpha, p) of time(cap)/time(max)
    "V100": (0.2048, 1.472),
    "A40": (0.4048, 2.2),
    "P100": (0.0681, 1.167),
}
POWER_CURVE_OF = {"V100": "V100", "A100": "A40", "H100": "A40", "MI250": "A40"}

# Speed-up over one V100 per device, by model family. Sources (per device, mixed precision):
#  A100 vs V100: NVIDIA A100 Tensor Core GPU Architecture whitepaper and NVIDIA's DL performance pages
#    (ResNet-50 ~2.2x, BERT ~2.5-3x); recommender/small models gain less (latency-bound, ~1.6x).
#  H100 vs A100: NVIDIA H100 whitepaper and MLPerf Training v2.1/v3.0 (BERT ~2.3x, ResNet-50 ~1.6x).
#  MI250 (one GCD = half an OAM) vs A100: MLPerf-style vendor figures put a whole MI250 OAM at 0.9-1.0x
#    an A100 for training, i.e. 0.45-0.5x per GCD.
# Zeus itself shows the family effect: BERT runs 1.7-2.1x faster on A40 than V100, CNNs do not gain.
FAMILY = {
    "cifar100/shufflenetv2": "cnn", "imagenet/resnet50": "cnn", "librispeech/deepspeech2": "rnn",
    "movielens-1m/ncf": "recsys", "sentiment140/bert_base_uncased": "transformer",
    "squad/bert_base_uncased": "transformer",
}
OVER_V100: dict[str, dict[str, float]] = {
    "A100": {"cnn": 2.2, "rnn": 2.0, "recsys": 1.6, "transformer": 2.6},
    "H100": {"cnn": 2.2 * 1.6, "rnn": 2.0 * 1.8, "recsys": 1.6 * 1.5, "transformer": 2.6 * 2.3},
    "MI250": {"cnn": 2.2 * 0.5, "rnn": 2.0 * 0.45, "recsys": 1.6 * 0.5, "transformer": 2.6 * 0.45},
}
RATIO_SOURCES = "NVIDIA A100/H100 whitepapers, MLPerf Training v2.1/v3.0, AMD Instinct MI250 data sheet"

# Scaling coefficients (b_intra, b_net, c) per family: big-gradient models pay more for the all-reduce.
SCALING: dict[str, tuple[float, float, float]] = {
    "cnn": (0.010, 0.020, 0.0002),
    "rnn": (0.015, 0.030, 0.0003),
    "recsys": (0.030, 0.060, 0.0010),
    "transformer": (0.012, 0.030, 0.0003),
}
# Which resource limits a workload when nothing else does (embedding lookups are bandwidth-bound).
NATIVE_BOTTLENECK = {"cnn": "gpu_compute", "rnn": "gpu_compute", "recsys": "gpu_memory_bandwidth",
                     "transformer": "gpu_compute"}
# Samples one CPU core prepares per second (decode + augment); None = never input-bound (tokenized text,
# embedding ids). ImageNet: JPEG decode + random-resized-crop of a ~110 kB image; LibriSpeech: feature
# extraction of ~15 s of audio; CIFAR: no decode, but torchvision's per-image crop/flip/normalize in Python
# (~0.25 ms per 32x32 image) is what keeps a fast GPU waiting on a few data-loader workers.
INPUT_SAMPLES_PER_CORE: dict[str, float | None] = {
    "cifar100/shufflenetv2": 4000.0, "imagenet/resnet50": 250.0, "librispeech/deepspeech2": 120.0,
    "movielens-1m/ncf": None, "sentiment140/bert_base_uncased": None, "squad/bert_base_uncased": None,
}
# GPU memory used per device while training (bytes), from the batch sizes Zeus ran.
MEMORY_BYTES = {
    "cifar100/shufflenetv2": 6 << 30, "imagenet/resnet50": 22 << 30, "librispeech/deepspeech2": 18 << 30,
    "movielens-1m/ncf": 5 << 30, "sentiment140/bert_base_uncased": 26 << 30, "squad/bert_base_uncased": 28 << 30,
}
TRAINING_WORKLOADS = tuple(ZEUS_SECONDS_PER_EPOCH)
ACCELERATOR_KEYS = ("V100", "A100", "H100", "MI250")

# Other kinds of job the fleet runs (not training). Inference services follow a diurnal load.
INFERENCE_WORKLOADS = ("llm-serving", "vision-serving")
INFERENCE_PEAK_RPS = {"llm-serving": {"V100": 4.0, "A100": 11.0, "H100": 24.0, "MI250": 5.5},
                      "vision-serving": {"V100": 900.0, "A100": 2000.0, "H100": 3200.0, "MI250": 1000.0}}
INFERENCE_MEMORY_FRACTION = {"llm-serving": 0.85, "vision-serving": 0.25}
CPU_WORKLOADS = ("cfd-solver", "genomics-align")
ETL_WORKLOADS = ("parquet-etl",)
IDLE_WORKLOADS = ("jupyter-idle",)
KINDS = ("training", "inference", "cpu_batch", "etl", "idle")
BOTTLENECKS = ("gpu_compute", "gpu_memory_bandwidth", "cpu_input", "storage_io", "network", "idle", "cpu_compute")


def samples_per_second_v100(workload: str) -> float:
    return SAMPLES_PER_EPOCH[workload] / ZEUS_SECONDS_PER_EPOCH[workload]["V100"]


def device_throughput(workload: str, accelerator: str) -> float:
    """Samples/s of one device at its full power cap."""
    base = samples_per_second_v100(workload)
    if accelerator == "V100":
        return base
    if accelerator in ("A40", "P100"):
        return SAMPLES_PER_EPOCH[workload] / ZEUS_SECONDS_PER_EPOCH[workload][accelerator]
    return base * OVER_V100[accelerator][FAMILY[workload]]


def power_time_factor(accelerator: str, cap_fraction: float) -> float:
    """time(cap)/time(max cap): >= 1, and 1 at full power."""
    alpha, p = POWER_CURVE[POWER_CURVE_OF.get(accelerator, accelerator)]
    f = min(max(cap_fraction, 1e-3), 1.0)
    return 1.0 + alpha * (1.0 / f - 1.0) ** p


def scaling_b(workload: str, nodes: int, network_bytes_per_second: float) -> float:
    b_intra, b_net, _ = SCALING[FAMILY[workload]]
    if nodes <= 1:
        return b_intra
    return b_intra + b_net * 25e9 / network_bytes_per_second


def comm_overhead(workload: str, devices: int, nodes: int, network_bytes_per_second: float) -> float:
    """The denominator's excess over 1: time spent communicating per unit of compute."""
    b = scaling_b(workload, nodes, network_bytes_per_second)
    c = SCALING[FAMILY[workload]][2]
    return b * (devices - 1) + c * (devices - 1) ** 2


@dataclass(frozen=True)
class TrainingTruth:
    gpu_bound: float  # samples/s the GPUs alone would give (power cap and communication included)
    input_cap: float  # samples/s the allocated cores can prepare (inf when never input-bound)
    throughput: float  # true samples/s of the job = min(gpu_bound, input_cap) * straggler slowdown
    bottleneck: str
    compute_fraction: float  # share of a step the GPUs compute (the rest they wait)
    comm_fraction: float = 0.0  # share of the time the collectives run (fewer steps when input-bound)


def training_truth(workload: str, accelerator: str, devices: int, nodes: int, network_bytes_per_second: float,
                   cap_fraction: float, cpus: int, straggler_slowdown: float = 1.0,
                   augment_cost: float = 1.0) -> TrainingTruth:
    """augment_cost: CPU time per sample relative to the plain pipeline (2 = RandAugment-style heavy
    augmentation that halves what a core prepares per second)."""
    x1 = device_throughput(workload, accelerator) / power_time_factor(accelerator, cap_fraction)
    overhead = comm_overhead(workload, devices, nodes, network_bytes_per_second)
    gpu_bound = x1 * devices / (1.0 + overhead)
    per_core = INPUT_SAMPLES_PER_CORE[workload]
    input_cap = float("inf") if per_core is None else per_core / augment_cost * cpus
    throughput = min(gpu_bound, input_cap) * straggler_slowdown
    if input_cap < gpu_bound:
        bottleneck = "cpu_input"
    elif overhead / (1.0 + overhead) > 0.5:
        bottleneck = "network"
    else:
        bottleneck = NATIVE_BOTTLENECK[FAMILY[workload]]
    compute_fraction = (throughput / straggler_slowdown) / (x1 * devices)
    # each step communicates overhead x its compute time: at the GPUs' pace that is 1 - compute_fraction
    return TrainingTruth(gpu_bound, input_cap, throughput, bottleneck, compute_fraction,
                         overhead * compute_fraction)


def truth_table() -> dict:
    """Per workload and accelerator: device throughput, power curve and scaling parameters."""
    out: dict = {}
    for wl in TRAINING_WORKLOADS:
        fam = FAMILY[wl]
        b_intra, b_net, c = SCALING[fam]
        out[wl] = {
            "family": fam, "samples_per_epoch": SAMPLES_PER_EPOCH[wl], "native_bottleneck": NATIVE_BOTTLENECK[fam],
            "scaling": {"form": "X(n) = X1*n/(1 + b*(n-1) + c*(n-1)^2); b = b_intra (1 node) or "
                                "b_intra + b_net*25e9/link_bytes_per_second",
                        "b_intra": b_intra, "b_net": b_net, "c": c},
            "input_samples_per_core": INPUT_SAMPLES_PER_CORE[wl],
            "accelerators": {
                acc: {"samples_per_second": device_throughput(wl, acc),
                      "power_curve": {"form": "time(f)/time(1) = 1 + alpha*(1/f - 1)^p",
                                      "alpha": POWER_CURVE[POWER_CURVE_OF.get(acc, acc)][0],
                                      "p": POWER_CURVE[POWER_CURVE_OF.get(acc, acc)][1]}}
                for acc in ACCELERATOR_KEYS
            },
        }
    return out


def zeus_anchors(folder) -> dict[str, dict[str, float]]:
    """Re-derive ZEUS_SECONDS_PER_EPOCH from the Zeus CSV files (for the cross-check test)."""
    import pandas as pd

    out: dict[str, dict[str, float]] = {}
    for gpu in ("v100", "a40", "p100"):
        df = pd.read_csv(f"{folder}/summary_power_{gpu}.csv")
        top = df[df["power_limit"] == df["power_limit"].max()]
        best = top.groupby(top["dataset"] + "/" + top["network"])["time_per_epoch"].min()
        for wl, seconds in best.items():
            out.setdefault(wl, {})[gpu.upper()] = float(seconds)
    return out
