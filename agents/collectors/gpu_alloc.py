"""Which GPUs a job holds, whether or not it runs anything on them: the schedulers' own records.

Pure parsing of each source's real format, so every source is testable from strings; the jobs collector
reads the files and applies them in order of trust (SOURCES):

- ``prolog``: Princeton jobstats' convention. The Slurm prolog writes one file per allocated GPU,
  ``/run/gpustat/<index>``, holding ``"<job id> <uid>"``; the epilog removes it. The index is Slurm's GPU
  index, the device minor number (``/dev/nvidia<N>``) on NVIDIA hosts.
- ``kubelet``: the kubelet device manager's checkpoint,
  ``/var/lib/kubelet/device-plugins/kubelet_internal_checkpoint``: JSON ``{"Data": {"PodDeviceEntries":
  [{"PodUID", "ContainerName", "ResourceName", "DeviceIDs", "AllocResp"}], "RegisteredDevices": {...}},
  "Checksum": N}``. DeviceIDs is a list before Kubernetes 1.20 and a map NUMA node -> list since.
  nvidia.com/gpu IDs are GPU UUIDs ("GPU-...", "GPU-...::2" for a time-sliced replica); amd.com/gpu IDs
  are PCI addresses.
- ``cgroup``: cgroup v1 ``devices.list`` of the job's devices cgroup: the ``c 195:N`` (NVIDIA, N < 254)
  and ``c 226:N`` (DRM render node, AMD) entries Slurm's ConstrainDevices allows. ``a *:* rwm`` means
  unconstrained and says nothing. cgroup v2 enforces devices with an eBPF program, which cannot be read
  back.
- ``environ``: the job's processes' ``/proc/PID/environ`` (NUL-separated): ``SLURM_JOB_GPUS`` /
  ``SLURM_STEP_GPUS`` (Slurm's global indices), ``NVIDIA_VISIBLE_DEVICES`` (set by the NVIDIA container
  runtime / device plugin: UUIDs or indices), and ``CUDA_VISIBLE_DEVICES``, ``GPU_DEVICE_ORDINAL``,
  ``ROCR_VISIBLE_DEVICES``, ``HIP_VISIBLE_DEVICES``: UUIDs always count; their indices only when no Slurm
  variable is set, because Slurm renumbers them from 0 inside a job whose devices are constrained.
- ``process``: no record, but the job has a compute process on the GPU (NVML or KFD).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

SOURCES = ("prolog", "kubelet", "cgroup", "environ", "process")
NVIDIA_MAJOR = 195  # /dev/nvidia<N>; 255 is nvidiactl, 254 nvidia-modeset
NVIDIA_MAX_MINOR = 253
DRM_MAJOR = 226  # /dev/dri/card<N> (minor < 128) and renderD<N> (128-255)
GPU_RESOURCES = ("nvidia.com/gpu", "amd.com/gpu")
_SLURM_VARS = ("SLURM_JOB_GPUS", "SLURM_STEP_GPUS")
_OTHER_VARS = {"NVIDIA_VISIBLE_DEVICES": "nvidia", "CUDA_VISIBLE_DEVICES": "nvidia", "GPU_DEVICE_ORDINAL": "",
               "ROCR_VISIBLE_DEVICES": "amd", "HIP_VISIBLE_DEVICES": "amd"}


@dataclass(frozen=True)
class GpuRef:
    """A GPU named by a source: by slot (Slurm index / device minor), render minor, or identifier."""

    slot: int | None = None
    render_minor: int | None = None
    ident: str | None = None  # UUID or PCI address
    vendor: str = ""  # "" when the source does not say

    @classmethod
    def parse(cls, token: str, vendor: str = "") -> GpuRef | None:
        """One entry of a *_VISIBLE_DEVICES list or a checkpoint DeviceID."""
        token = token.strip()
        if not token or token.lower() in ("all", "none", "void", "nodevfiles"):
            return None
        if token.isdigit():
            return cls(slot=int(token), vendor=vendor)
        if token.startswith("MIG-"):
            return None  # a MIG instance: its parent is not named; left to the process source
        return cls(ident=token.split("::", 1)[0], vendor=vendor)


def parse_gpustat(name: str, text: str) -> tuple[str, GpuRef] | None:
    """A /run/gpustat/<index> file -> (job id, the GPU). None when it is not one of ours."""
    words = text.split()
    if not name.isdigit() or not words or not words[0].isdigit():
        return None
    return words[0], GpuRef(slot=int(name))


def parse_devices_list(text: str) -> list[GpuRef] | None:
    """cgroup v1 devices.list -> the GPUs allowed; None when the cgroup is unconstrained ("a *:* rwm")."""
    refs: list[GpuRef] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        kind, numbers = parts[0], parts[1]
        if kind == "a":
            return None
        major, _, minor = numbers.partition(":")
        if kind != "c" or not major.isdigit() or not minor.isdigit():
            continue  # "c 195:* m" and block devices say nothing about a GPU
        major_n, minor_n = int(major), int(minor)
        if major_n == NVIDIA_MAJOR and minor_n <= NVIDIA_MAX_MINOR:
            refs.append(GpuRef(slot=minor_n, vendor="nvidia"))
        elif major_n == DRM_MAJOR and minor_n >= 128:
            refs.append(GpuRef(render_minor=minor_n, vendor="amd"))
    return refs


def parse_environ(data: bytes) -> list[GpuRef]:
    """/proc/PID/environ (NUL-separated NAME=value) -> the GPUs its variables name."""
    env: dict[str, str] = {}
    for item in data.split(b"\0"):
        name, sep, value = item.partition(b"=")
        if sep:
            env[name.decode("ascii", "replace")] = value.decode("utf-8", "replace")
    slurm = [v for v in _SLURM_VARS if env.get(v)]
    refs: list[GpuRef] = []
    if slurm:
        refs += [r for t in env[slurm[0]].split(",") if (r := GpuRef.parse(t))]
    for var, vendor in _OTHER_VARS.items():
        for token in env.get(var, "").split(","):
            ref = GpuRef.parse(token, vendor)
            if ref is not None and (ref.ident is not None or not slurm):
                refs.append(ref)
    return list(dict.fromkeys(refs))


def parse_kubelet_checkpoint(text: str) -> dict[str, list[GpuRef]]:
    """The device manager checkpoint -> pod UID -> the GPUs its containers hold. Raises ValueError."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON: {e}") from None
    data = doc.get("Data") if isinstance(doc, dict) else None
    entries = data.get("PodDeviceEntries") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError("no Data.PodDeviceEntries list")
    pods: dict[str, list[GpuRef]] = {}
    for e in entries:
        if not isinstance(e, dict) or e.get("ResourceName") not in GPU_RESOURCES:
            continue
        vendor = "nvidia" if e["ResourceName"].startswith("nvidia") else "amd"
        ids = e.get("DeviceIDs") or []
        if isinstance(ids, dict):  # Kubernetes >= 1.20: NUMA node -> IDs
            ids = [i for per_node in ids.values() if isinstance(per_node, list) for i in per_node]
        refs = pods.setdefault(str(e.get("PodUID", "")), [])
        for device in ids:
            ref = GpuRef.parse(str(device), vendor)
            if ref is not None and ref not in refs:
                refs.append(ref)
    return pods


def resolve(ref: GpuRef, inventory: list[dict]) -> dict | None:
    """The inventory entry (see the GPU collectors' shared "gpus") a reference names; None if none or
    ambiguous (the same index on an NVIDIA and an AMD GPU of one host, with no vendor given)."""
    found = []
    for g in inventory:
        if ref.vendor and g["vendor"] != ref.vendor:
            continue
        if ref.ident is not None:
            hit = ref.ident in g["ids"]
        elif ref.render_minor is not None:
            hit = g.get("render_minor") == ref.render_minor
        else:
            hit = g["slot"] == ref.slot
        if hit:
            found.append(g)
    return found[0] if len(found) == 1 else None
