"""GPUs a job holds, from each allocation source in its real format, through the real collectors.

Fixture tests/fixtures/gpu_alloc: a cgroup v1 Slurm node with 8 NVIDIA GPUs (a fake NVML; NVML index 4 is
/dev/nvidia5 and index 5 is /dev/nvidia4, as when PCI order and minor numbers disagree):
- job 42 (uid 1000): /run/gpustat/{0,1,2,3} from the prolog; devices.list and SLURM_JOB_GPUS agree;
  one process (2134) on GPU 1;
- job 43: no prolog file; devices.list allows c 195:4 (-> NVML index 5), nvidiactl 195:255 and
  nvidia-modeset 195:254 (not GPUs);
- job 44: devices unconstrained (a *:* rwm); SLURM_JOB_GPUS=6 with CUDA_VISIBLE_DEVICES=0 (renumbered
  inside the job: must not be read as GPU 0); one process (2300) on GPU 6;
- /run/gpustat/7 names job 99, which is not on this host (a file an epilog left): ignored.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from agents.collectors import gpu_alloc
from agents.collectors.amd import AmdCollector
from agents.collectors.base import Cycle, Roots
from agents.collectors.jobs import JobsCollector, JobsOptions
from agents.collectors.nvidia import NvidiaCollector
from tests.conftest import FIXTURES
from tests.fake_nvml import FakeGpu, FakeNVML, GiB
from tests.schema_check import assert_schema

T0 = 1_700_000_000 * 10**9
TREE = FIXTURES / "gpu_alloc"
POD_B = "1f2e3d4c-5b6a-4789-8a7b-6c5d4e3f2a1b"
POD_G = "9a8b7c6d-5e4f-4321-9876-0fedcba98765"


def uuid(i: int) -> str:
    return f"GPU-{'abcdefgh'[i] * 8}-0000-4000-8000-{i:012d}"


def eight_gpus() -> FakeNVML:
    gpus = [FakeGpu(uuid=uuid(i), name="NVIDIA A100-SXM4-80GB", memory_total=80 * GiB, memory_used=0,
                    util_gpu=0) for i in range(8)]
    gpus[4].minor_number, gpus[5].minor_number = 5, 4
    gpus[1].processes, gpus[1].util_gpu, gpus[1].memory_used = [(2134, 8 * GiB)], 90, 9 * GiB
    gpus[6].processes, gpus[6].util_gpu, gpus[6].memory_used = [(2300, 1 * GiB)], 40, 2 * GiB
    return FakeNVML(gpus)


def jobs_collector(root: Path = TREE, **options) -> JobsCollector:
    opts = {"gpustat_dir": root / "run/gpustat",
            "kubelet_checkpoint": root / "var/lib/kubelet/device-plugins/kubelet_internal_checkpoint", **options}
    return JobsCollector(Roots(proc=root / "proc", sys=root / "sys"), "n1", JobsOptions(**opts))


def one_round(monkeypatch, fake: FakeNVML, jobs: JobsCollector) -> list:
    fake.install(monkeypatch)
    cycle = Cycle(time_ns=T0)
    points = list(NvidiaCollector(Roots(proc=TREE / "proc"), "n1").collect(cycle)) + list(jobs.collect(cycle))
    assert_schema(points)
    return points


def rows(points) -> dict[tuple[str, str], dict]:
    return {(p.tags["job"], p.tags["gpu"]): p.fields for p in points if p.measurement == "job_gpu"}


def test_every_held_gpu_has_a_row_with_its_source(monkeypatch):
    points = one_round(monkeypatch, eight_gpus(), jobs_collector())
    zero = {"memory_used_bytes": 0, "utilization_ratio": 0.0}
    assert rows(points) == {
        ("42", "0"): {"allocation_source": "prolog", **zero},
        ("42", "1"): {"allocation_source": "prolog", "memory_used_bytes": 8 * GiB, "utilization_ratio": 0.9},
        ("42", "2"): {"allocation_source": "prolog", **zero},
        ("42", "3"): {"allocation_source": "prolog", **zero},
        ("43", "5"): {"allocation_source": "cgroup", **zero},  # c 195:4 is NVML index 5
        ("44", "6"): {"allocation_source": "environ", "memory_used_bytes": 1 * GiB, "utilization_ratio": 0.4},
    }
    uuids = {(p.tags["job"], p.tags["gpu"]): p.tags["uuid"] for p in points if p.measurement == "job_gpu"}
    assert uuids[("43", "5")] == uuid(5) and uuids[("42", "0")] == uuid(0)
    jobs = {p.tags["job"]: p.fields for p in points if p.measurement == "job"}
    assert {j: f["gpus"] for j, f in jobs.items()} == {"42": 4, "43": 1, "44": 1}


def test_each_source_alone(monkeypatch):
    only = {s: rows(one_round(monkeypatch, eight_gpus(), jobs_collector(allocation_sources=[s])))
            for s in ("prolog", "cgroup", "environ")}
    held = {s: sorted(k for k, v in r.items() if v["allocation_source"] == s) for s, r in only.items()}
    assert held["prolog"] == [("42", "0"), ("42", "1"), ("42", "2"), ("42", "3")]
    assert held["cgroup"] == [("42", "0"), ("42", "1"), ("42", "2"), ("42", "3"), ("43", "5")]
    assert held["environ"] == [("42", "0"), ("42", "1"), ("42", "2"), ("42", "3"), ("44", "6")]
    # Without any allocation source, only the GPUs with a process show (the agent before allocation sources).
    none = rows(one_round(monkeypatch, eight_gpus(), jobs_collector(allocation_sources=[])))
    assert none == {("42", "1"): {"allocation_source": "process", "memory_used_bytes": 8 * GiB,
                                  "utilization_ratio": 0.9},
                    ("44", "6"): {"allocation_source": "process", "memory_used_bytes": 1 * GiB,
                                  "utilization_ratio": 0.4}}


def test_a_process_outside_the_allocation_is_reported_as_process(monkeypatch):
    fake = eight_gpus()
    fake.gpus[7].processes, fake.gpus[7].util_gpu = [(2140, 3 * GiB)], 70  # job 42 on a GPU it does not hold
    r = rows(one_round(monkeypatch, fake, jobs_collector()))
    assert r[("42", "7")] == {"allocation_source": "process", "memory_used_bytes": 3 * GiB, "utilization_ratio": 0.7}
    assert len([k for k in r if k[0] == "42"]) == 5


def test_unknown_process_list_gives_the_sole_holders_gpu_reading(monkeypatch):
    fake = eight_gpus()
    fake.gpus[2].util_gpu, fake.gpus[2].memory_used = 55, 3 * GiB
    for g in fake.gpus:  # NVML_ERROR_NOT_SUPPORTED from every version of the call, on every GPU
        g.errors.update(dict.fromkeys(("nvmlDeviceGetComputeRunningProcesses",
                                       "nvmlDeviceGetComputeRunningProcesses_v3",
                                       "nvmlDeviceGetComputeRunningProcesses_v2"), 3))
    r = rows(one_round(monkeypatch, fake, jobs_collector(allocation_sources=["prolog"])))
    assert r[("42", "2")] == {"allocation_source": "prolog", "memory_used_bytes": 3 * GiB, "utilization_ratio": 0.55}


def test_kubelet_checkpoint(monkeypatch):
    """Pods of the kubepods fixture; GPUs named by UUID, one time-sliced replica (::1), a stale pod."""
    fake = FakeNVML([FakeGpu(uuid=uuid(i), name="NVIDIA H100 80GB HBM3", memory_total=80 * GiB) for i in range(4)])
    fake.gpus[0].processes, fake.gpus[0].util_gpu = [(3200, 7 * GiB)], 80
    jobs = jobs_collector(cgroup_root=FIXTURES / "kubepods/sys/fs/cgroup")
    jobs.roots = Roots(proc=FIXTURES / "kubepods/proc", sys=FIXTURES / "kubepods/sys")
    r = rows(one_round(monkeypatch, fake, jobs))
    assert r == {
        (POD_G, "0"): {"allocation_source": "kubelet", "memory_used_bytes": 7 * GiB, "utilization_ratio": 0.8},
        (POD_G, "1"): {"allocation_source": "kubelet", "memory_used_bytes": 0, "utilization_ratio": 0.0},
        (POD_B, "2"): {"allocation_source": "kubelet", "memory_used_bytes": 0, "utilization_ratio": 0.0},
    }  # GPU 3 belongs to a pod no longer on this host


def test_checkpoint_formats_and_bad_input(tmp_path, caplog):
    old = {"Data": {"PodDeviceEntries": [{"PodUID": "p1", "ContainerName": "c", "ResourceName": "amd.com/gpu",
                                          "DeviceIDs": ["0000:c1:00.0", "0000:c2:00.0"], "AllocResp": ""}],
                    "RegisteredDevices": {}}, "Checksum": 1}
    assert gpu_alloc.parse_kubelet_checkpoint(json.dumps(old)) == {"p1": [
        gpu_alloc.GpuRef(ident="0000:c1:00.0", vendor="amd"), gpu_alloc.GpuRef(ident="0000:c2:00.0", vendor="amd")]}
    with pytest.raises(ValueError, match="PodDeviceEntries"):
        gpu_alloc.parse_kubelet_checkpoint('{"Data": {}}')
    bad = tmp_path / "checkpoint"
    bad.write_text("{not json")
    c = jobs_collector(kubelet_checkpoint=bad)
    with caplog.at_level("WARNING"):
        assert c._checkpoint() == {}
    assert str(bad) in caplog.text and "not JSON" in caplog.text


@pytest.mark.parametrize(("text", "expected"), [
    ("c 195:0 rwm\nc 195:255 rwm\nc 195:254 rwm\nc 226:128 rw\nc 226:0 rw\nb 8:0 r\nc 195:* m\n",
     [gpu_alloc.GpuRef(slot=0, vendor="nvidia"), gpu_alloc.GpuRef(render_minor=128, vendor="amd")]),
    ("a *:* rwm\n", None),
    ("", []),
])
def test_devices_list(text, expected):
    assert gpu_alloc.parse_devices_list(text) == expected


def test_environ_variables():
    refs = gpu_alloc.parse_environ(b"NVIDIA_VISIBLE_DEVICES=GPU-x,GPU-y\0CUDA_VISIBLE_DEVICES=0,1\0")
    assert refs == [gpu_alloc.GpuRef(ident="GPU-x", vendor="nvidia"), gpu_alloc.GpuRef(ident="GPU-y", vendor="nvidia"),
                    gpu_alloc.GpuRef(slot=0, vendor="nvidia"), gpu_alloc.GpuRef(slot=1, vendor="nvidia")]
    assert gpu_alloc.parse_environ(b"NVIDIA_VISIBLE_DEVICES=all\0") == []
    assert gpu_alloc.parse_environ(b"SLURM_STEP_GPUS=2,3\0ROCR_VISIBLE_DEVICES=0,1\0") == [
        gpu_alloc.GpuRef(slot=2), gpu_alloc.GpuRef(slot=3)]


def test_amd_kfd_processes_and_held_gcds(tmp_path):
    """Two MI250 GCDs (the amdgpu fixture, with its KFD tree): job 44 holds both (SLURM_JOB_GPUS=0,1) and
    its process 5100 holds 4 GiB of VRAM on GCD 0 only; 5200 belongs to no job."""
    root = tmp_path / "h"
    shutil.copytree(TREE, root, symlinks=True)
    (root / "proc/2300/environ").write_bytes(b"SLURM_JOB_ID=44\0SLURM_JOB_GPUS=0,1\0ROCR_VISIBLE_DEVICES=0,1\0")
    for pid in ("2134", "2140"):  # job 42 holds no GPU on this host
        (root / "proc" / pid / "environ").write_bytes(b"SLURM_JOB_ID=42\0")
    (root / "proc/5100").mkdir()
    (root / "proc/5100/cgroup").write_text((root / "proc/2300/cgroup").read_text())
    cycle = Cycle(time_ns=T0)
    amd = list(AmdCollector(Roots(sys=FIXTURES / "amdgpu/sys"), "n1").collect(cycle))
    jobs = list(jobs_collector(root, allocation_sources=["environ"]).collect(cycle))
    assert_schema(amd + jobs)
    # ROCm's name for a GCD (ROCR_VISIBLE_DEVICES=GPU-<unique_id>) and the AMD device plugin's (PCI address)
    for ident in ("GPU-2b8f5a1c7e3d9a02", "0000:c1:00.0"):
        found = gpu_alloc.resolve(gpu_alloc.GpuRef(ident=ident, vendor="amd"), cycle.shared["gpus"])
        assert found is not None and found["gpu"] == ("1" if ident.startswith("GPU") else "0")
    procs = sorted((p["gpu"], p["pid"], p["memory_used_bytes"]) for p in cycle.shared["gpu_processes"])
    assert procs == [("0", 5100, 4 * GiB), ("1", 5200, 512 * 2**20)]
    r = {(p.tags["job"], p.tags["gpu"], p.tags["uuid"]): p.fields for p in jobs if p.measurement == "job_gpu"}
    assert r == {
        ("44", "0", "2b8f5a1c7e3d9a01"): {"allocation_source": "environ", "memory_used_bytes": 4 * GiB,
                                          "utilization_ratio": 0.87},
        ("44", "1", "2b8f5a1c7e3d9a02"): {"allocation_source": "environ", "memory_used_bytes": 0,
                                          "utilization_ratio": 0.0},
    }


def test_environ_is_read_once_per_job(monkeypatch, tmp_path):
    root = tmp_path / "h"
    shutil.copytree(TREE, root, symlinks=True)
    c = jobs_collector(root, allocation_sources=["environ"])
    fake = eight_gpus()
    assert rows(one_round(monkeypatch, fake, c))[("44", "6")]["allocation_source"] == "environ"
    (root / "proc/2300/environ").write_bytes(b"SLURM_JOB_GPUS=7\0")  # what was found stays: allocations are fixed
    assert ("44", "6") in rows(one_round(monkeypatch, fake, c))


def test_held_four_used_one_reaches_the_analyzer(monkeypatch, tmp_path):
    """Twelve 5-minute rounds of the real collectors on the fixture, into the embedded store; the analyzer
    counts the GPUs held (4 for job 42, of which it used 1), and demand counts every held GPU."""
    import pandas as pd

    from agents.query import open_reader
    from agents.stores.embedded import EmbeddedWriter
    from analyzer.efficiency import job_efficiency
    from analyzer.features import job_table
    from analyzer.forecast.demand import demand_series

    fake = eight_gpus()
    fake.install(monkeypatch)
    nvidia, jobs = NvidiaCollector(Roots(proc=TREE / "proc"), "n1"), jobs_collector()
    start = pd.Timestamp("2026-11-20T10:00:00Z")
    points = []
    for k in range(12):
        cycle = Cycle(time_ns=start.value + k * 300 * 10**9)
        points += list(nvidia.collect(cycle)) + list(jobs.collect(cycle))
    assert len([p for p in points if p.measurement == "job_gpu" and p.tags["job"] == "42"]) == 4 * 12
    EmbeddedWriter(tmp_path / "store").write(points)
    with open_reader(f"embedded:{tmp_path / 'store'}") as reader:
        table = job_table(reader, start, start + pd.Timedelta(hours=1)).set_index("job")
        demand = demand_series(reader, start, start + pd.Timedelta(hours=1))
    assert table.loc["42", "gpus"] == 4 and table.loc["42", "gpus_used"] == 1
    # GPU 1 at 90%, the other three at 0: the job's mean over what it holds is 22.5%.
    assert table.loc["42", "gpu_utilization_mean"] == pytest.approx(0.225)
    assert (table.loc["43", "gpus"], table.loc["43", "gpus_used"]) == (1, 0)
    # Job 43 held its GPU for the whole hour (11 intervals of 5 min between the first and last sample) unused.
    assert table.loc["43", "gpu_idle_seconds"] == pytest.approx(table.loc["43", "duration_seconds"])
    notes = job_efficiency(table.reset_index()).set_index("job")["notes"]
    assert "held 4 GPUs, used 1" in notes["42"]
    assert "held 1 GPU, used 0" in notes["43"]
    assert not any(n.startswith("held") for n in notes["44"])  # holds 1, uses it
    # Six of the eight GPUs are held the whole hour (4 + 1 + 1), whatever runs on them.
    assert demand[["pool", "demand", "capacity"]].to_dict("records") == [
        {"pool": "gpu:a100-80gb", "demand": 6.0, "capacity": 8.0}]
