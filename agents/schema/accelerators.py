"""GPU measurements, NVIDIA (NVML) and AMD (amdgpu sysfs) alike, and the one name of an accelerator type.

One accelerator is reported three ways: the driver's model string (NVML "NVIDIA A100-SXM4-80GB"), the type
a job asks for ("A100") and the board with its memory. Everything that joins on accelerators (the job
table, forecast pools, the performance models, the simulator's truth, the recommender's price table) uses
accelerator_key(model): the family and, when the driver names it, the memory size ("a100-80gb",
"mi250"); accelerator_name(key) is its display name ("A100 80GB").
"""

import functools
import re

from agents.schema.types import counter, gauge, info, measurement, rate

_VENDOR_WORDS = {"nvidia", "tesla", "amd", "instinct", "radeon", "intel", "geforce", "quadro", "data", "center",
                 "gpu"}
_FAMILY_WORDS = {"rtx", "gtx", "pro", "max", "arc"}
_MEMORY = re.compile(r"(?<![\d.])(\d{1,4})\s*GB\b", re.I)
_KEY = re.compile(r"[^a-z0-9]+")
_IS_KEY = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def accelerator_family(model: str) -> str:
    """The type a job asks for: "NVIDIA A100-SXM4-80GB" -> "A100", "Tesla V100-SXM2-32GB" -> "V100",
    "NVIDIA H100 80GB HBM3" -> "H100", "AMD Instinct MI250" -> "MI250", "NVIDIA GeForce RTX 4090" -> "RTX 4090".
    Form factor and memory size are dropped."""
    words = [w for w in re.split(r"\s+", (model or "").strip()) if w]
    words = [w for w in words if w.lower() not in _VENDOR_WORDS]
    if not words:
        return (model or "").strip() or "unknown"
    head = words[0].split("-")[0]
    if head.lower() in _FAMILY_WORDS and len(words) > 1:  # "RTX 4090", "RTX A6000": the number is the type
        head = f"{head} {words[1].split('-')[0]}"
    return head


@functools.lru_cache(maxsize=4096)  # a fleet has a handful of model strings, mapped once per row of big frames
def accelerator_key(model: str) -> str:
    """The canonical key of an accelerator type: lower-case family, plus the memory size when the model string
    names one ("NVIDIA A100-SXM4-80GB" -> "a100-80gb", "NVIDIA H100 80GB HBM3" -> "h100-80gb",
    "AMD Instinct MI250" -> "mi250"). Idempotent: a key maps to itself; "" stays "" (no accelerator)."""
    model = (model or "").strip()
    if not model or _IS_KEY.match(model):
        return model
    family = _KEY.sub("-", accelerator_family(model).lower()).strip("-")
    mem = _MEMORY.search(model)
    if mem:
        return f"{family}-{mem.group(1)}gb"
    return family


def accelerator_name(key_or_model: str) -> str:
    """Display name of an accelerator key (or model string): "a100-80gb" -> "A100 80GB", "mi250" -> "MI250"."""
    key = accelerator_key(key_or_model)
    if not key:
        return ""
    family, _, mem = key.rpartition("-") if re.search(r"-\d+gb$", key) else (key, "", "")
    return family.replace("-", " ").upper() + (f" {mem.upper()}" if mem else "")

GPU_TAGS = ("gpu", "uuid", "vendor", "model")

GPU = measurement(
    "gpu",
    "One series per physical GPU. vendor is nvidia or amd; gpu is the index the driver gives.",
    GPU_TAGS,
    gauge("up", "1 when every read of this GPU succeeded, 0 when the GPU answered with an error "
          "(for example fell off the bus).", type=int),
    gauge("utilization_ratio", "Fraction of time one or more kernels ran (NVML utilization.gpu, "
          "amdgpu gpu_busy_percent), 0-1.", telegraf="nvidia_smi.utilization_gpu / 100",
          dcgm="DCGM_FI_DEV_GPU_UTIL / 100"),
    gauge("memory_bandwidth_ratio", "Fraction of time device memory was read or written (NVML "
          "utilization.memory; memory bandwidth busy, not memory used), 0-1.",
          telegraf="nvidia_smi.utilization_memory / 100", dcgm="DCGM_FI_DEV_MEM_COPY_UTIL / 100"),
    gauge("memory_used_bytes", "Framebuffer / VRAM used.", type=int, telegraf="nvidia_smi.memory_used (MiB)",
          dcgm="DCGM_FI_DEV_FB_USED (MiB)"),
    gauge("memory_total_bytes", "Framebuffer / VRAM size.", type=int, telegraf="nvidia_smi.memory_total (MiB)",
          dcgm="DCGM_FI_DEV_FB_FREE + DCGM_FI_DEV_FB_USED"),
    gauge("power_watts", "Board power draw.", telegraf="nvidia_smi.power_draw", dcgm="DCGM_FI_DEV_POWER_USAGE"),
    gauge("power_limit_watts", "Enforced power limit (the power cap).", telegraf="nvidia_smi.power_limit",
          dcgm="DCGM_FI_DEV_POWER_MGMT_LIMIT"),
    counter("energy_joules", "Energy since the driver loaded (NVML total energy consumption, mJ/1000).",
            dcgm="DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION / 1000"),
    gauge("temperature_celsius", "GPU core temperature.", telegraf="nvidia_smi.temperature_gpu",
          dcgm="DCGM_FI_DEV_GPU_TEMP"),
    gauge("sm_clock_hertz", "SM (shader) clock.", telegraf="nvidia_smi.clocks_current_sm (MHz)",
          dcgm="DCGM_FI_DEV_SM_CLOCK (MHz)"),
    gauge("throttle_reasons", "Bitmask of clock throttle reasons (nvmlClocksThrottleReason*; 0 = none).",
          type=int, dcgm="DCGM_FI_DEV_CLOCK_THROTTLE_REASONS"),
    rate("pcie_tx_bytes_per_second", "PCIe transmit throughput (NVML samples it over 20 ms).",
         telegraf="nvidia_smi.pcie_link_*", dcgm="DCGM_FI_PROF_PCIE_TX_BYTES", prometheus=True),
    rate("pcie_rx_bytes_per_second", "PCIe receive throughput (NVML samples it over 20 ms).",
         dcgm="DCGM_FI_PROF_PCIE_RX_BYTES", prometheus=True),
    counter("nvlink_tx_bytes", "NVLink bytes sent over all links, cumulative.", type=int,
            dcgm="DCGM_FI_PROF_NVLINK_TX_BYTES (rate)"),
    counter("nvlink_rx_bytes", "NVLink bytes received over all links, cumulative.", type=int,
            dcgm="DCGM_FI_PROF_NVLINK_RX_BYTES (rate)"),
    rate("nvlink_tx_bytes_per_second", "NVLink transmit rate, differenced from the counter."),
    rate("nvlink_rx_bytes_per_second", "NVLink receive rate, differenced from the counter."),
    counter("ecc_corrected_errors", "Corrected (single-bit) ECC errors, volatile count.", type=int,
            dcgm="DCGM_FI_DEV_ECC_SBE_VOL_TOTAL"),
    counter("ecc_uncorrected_errors", "Uncorrected (double-bit) ECC errors, volatile count.", type=int,
            dcgm="DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"),
    gauge("processes", "Compute processes on this GPU.", type=int),
)

GPU_MIG = measurement(
    "gpu_mig",
    "One series per MIG instance. MIG instances have no NVML utilization rate; on Hopper and later "
    "the SM occupancy comes from GPM.",
    (*GPU_TAGS, "instance", "profile"),
    gauge("memory_used_bytes", "Memory used in this instance.", type=int, dcgm="DCGM_FI_DEV_FB_USED (MIG)"),
    gauge("memory_total_bytes", "Memory of this instance.", type=int),
    gauge("utilization_ratio", "GPM SM occupancy of this instance, 0-1 (Hopper and later only).",
          dcgm="DCGM_FI_PROF_SM_ACTIVE"),
)

GPU_INFO = measurement(
    "gpu_info",
    "Static facts about each GPU.",
    GPU_TAGS,
    info("driver", "Driver version.", telegraf="nvidia_smi.driver_version", dcgm="DCGM_FI_DRIVER_VERSION"),
    info("mig_mode", "MIG mode: enabled, disabled or unsupported."),
)

MEASUREMENTS = (GPU, GPU_MIG, GPU_INFO)
