"""jobs collector and cgroup path parsing on cgroup v1 / v2 Slurm and Kubernetes fixture trees."""

from __future__ import annotations

import logging
import pwd
import shutil

import pytest

from agents.collectors.base import Cycle, Roots
from agents.collectors.cgroups import (
    KUBERNETES,
    SLURM,
    JobRef,
    find_job_dirs,
    parse_cgroup_path,
    parse_cpuset,
    parse_proc_cgroup,
)
from agents.collectors.jobs import JobsCollector, JobsOptions
from tests.conftest import FIXTURES
from tests.helpers import collect_twice
from tests.schema_check import assert_schema

T0 = 1_700_000_000 * 10**9
POD_B = "1f2e3d4c-5b6a-4789-8a7b-6c5d4e3f2a1b"  # burstable
POD_G = "9a8b7c6d-5e4f-4321-9876-0fedcba98765"  # guaranteed
# No GPU inventory in these rounds (no GPU collector ran), so no allocation source can name a GPU: the rows come
# from the processes alone (allocation sources: tests/test_gpu_allocation.py).
PROCESS = {"allocation_source": "process"}


def collector(name: str, **options) -> JobsCollector:
    root = FIXTURES / name
    return JobsCollector(Roots(proc=root / "proc", sys=root / "sys"), "n1", JobsOptions(**options))


def jobs_of(points) -> dict[str, dict]:
    return {p.tags["job"]: p for p in points if p.measurement == "job"}


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


# ---------------------------------------------------------------- path parsing


@pytest.mark.parametrize(("path", "ref", "depth"), [
    ("/slurm/uid_1000/job_42/step_0/task_0", JobRef(SLURM, "42", 1000), 3),
    ("/slurm/uid_1000/job_42", JobRef(SLURM, "42", 1000), 3),
    ("/slurm_node07/uid_5/job_9/step_batch", JobRef(SLURM, "9", 5), 3),
    ("/system.slice/slurmstepd.scope/job_42/step_0/user/task_0", JobRef(SLURM, "42"), 3),
    ("/system.slice/node01_slurmstepd.scope/job_77/step_extern", JobRef(SLURM, "77"), 3),
    ("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1f2e3d4c_5b6a_4789_8a7b_6c5d4e3f2a1b.slice"
     "/cri-containerd-abc.scope", JobRef(KUBERNETES, POD_B), 3),
    ("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1f2e3d4c_5b6a_4789_8a7b_6c5d4e3f2a1b.slice",
     JobRef(KUBERNETES, POD_B), 3),
    ("/kubepods.slice/kubepods-pod9a8b7c6d_5e4f_4321_9876_0fedcba98765.slice", JobRef(KUBERNETES, POD_G), 2),
    ("/kubepods/burstable/pod1f2e3d4c-5b6a-4789-8a7b-6c5d4e3f2a1b/0123abcd", JobRef(KUBERNETES, POD_B), 3),
    ("/kubepods/pod9a8b7c6d-5e4f-4321-9876-0fedcba98765", JobRef(KUBERNETES, POD_G), 2),
    ("/kubepods/besteffort/pod0123456789abcdef0123456789abcdef", JobRef(KUBERNETES, "0123456789abcdef0123456789abcdef"),
     3),
])
def test_parse_cgroup_path_every_layout(path, ref, depth):
    assert parse_cgroup_path(path) == (ref, depth)


@pytest.mark.parametrize("path", [
    "/", "/user.slice/user-1000.slice/session-3.scope", "/system.slice/slurmd.service",
    "/system.slice/slurmstepd.scope/system", "/slurm/uid_1000", "/kubepods.slice/kubepods-burstable.slice",
    "/kubepods/besteffort", "/docker/0123abcd",
])
def test_parse_cgroup_path_not_a_job(path):
    assert parse_cgroup_path(path) is None


def test_parse_proc_cgroup_v1_v2_and_kubepods():
    v1 = (FIXTURES / "cgroup_v1_slurm" / "proc" / "2134" / "cgroup").read_text()
    assert parse_proc_cgroup(v1) == JobRef(SLURM, "42", 1000)  # the "0::" line is slurmd's, the v1 lines decide
    v2 = (FIXTURES / "cgroup_v2_slurm" / "proc" / "1234" / "cgroup").read_text()
    assert parse_proc_cgroup(v2) == JobRef(SLURM, "42")
    kube = (FIXTURES / "kubepods" / "proc" / "3105" / "cgroup").read_text()
    assert parse_proc_cgroup(kube) == JobRef(KUBERNETES, POD_B)
    assert parse_proc_cgroup("0::/user.slice/user-1000.slice/session-3.scope\n") is None
    assert parse_proc_cgroup("") is None


def test_parse_cpuset():
    assert parse_cpuset("0-3,8\n") == 5
    assert parse_cpuset("0-63") == 64
    assert parse_cpuset("7") == 1
    assert parse_cpuset("0-1,4-5,9") == 5
    assert parse_cpuset("\n") == 0


def test_find_job_dirs_v1_kubepods(tmp_path):
    for rel in ("kubepods/burstable/pod1f2e3d4c-5b6a-4789-8a7b-6c5d4e3f2a1b/abc123",
                "kubepods/pod9a8b7c6d-5e4f-4321-9876-0fedcba98765/def456",
                "kubepods/besteffort"):
        (tmp_path / "memory" / rel).mkdir(parents=True)
    found = find_job_dirs(tmp_path / "memory")
    assert found == {
        JobRef(KUBERNETES, POD_B): tmp_path / "memory/kubepods/burstable/pod1f2e3d4c-5b6a-4789-8a7b-6c5d4e3f2a1b",
        JobRef(KUBERNETES, POD_G): tmp_path / "memory/kubepods/pod9a8b7c6d-5e4f-4321-9876-0fedcba98765",
    }


# ---------------------------------------------------------------- cgroup v2 Slurm


def test_v2_slurm_jobs():
    points = list(collector("cgroup_v2_slurm").collect(Cycle(time_ns=T0)))
    assert_schema(points)
    jobs = jobs_of(points)
    assert sorted(jobs) == ["42", "43", "77"]
    j42 = jobs["42"]
    assert j42.tags["scheduler"] == "slurm"
    assert j42.fields == {
        "cpu_seconds": pytest.approx(123.456789), "cpus_allocated": 5, "memory_bytes": 8589934592,
        "memory_peak_bytes": 12884901888, "memory_limit_bytes": 17179869184, "gpus": 0,
        "processes": 5,  # 1200, 1210 (batch), 1220, 1234, 1240 (step 0)
    }
    # Older kernel: no memory.peak -> no peak field; memory.max "max" -> 0 (unlimited).
    j43 = jobs["43"].fields
    assert "memory_peak_bytes" not in j43
    assert j43["memory_limit_bytes"] == 0 and j43["cpus_allocated"] == 2 and j43["processes"] == 1
    # Slurm's older v2 layout (node01_slurmstepd.scope) is found too.
    assert jobs["77"].fields["memory_peak_bytes"] == 4194304 and jobs["77"].fields["cpus_allocated"] == 1
    # v2 paths carry no uid; the directory here is owned by whoever checked out the repo.
    owner = (FIXTURES / "cgroup_v2_slurm/sys/fs/cgroup/system.slice/slurmstepd.scope/job_42").stat().st_uid
    assert j42.tags["user"] == ("" if owner == 0 else user_name(owner))


def test_v2_cpu_cores_from_two_reads_and_reset(tmp_path):
    shutil.copytree(FIXTURES / "cgroup_v2_slurm", tmp_path / "h")
    stat = tmp_path / "h/sys/fs/cgroup/system.slice/slurmstepd.scope/job_42/cpu.stat"
    c = JobsCollector(Roots(proc=tmp_path / "h/proc", sys=tmp_path / "h/sys"), "n1")

    def advance() -> None:
        # 30 CPU-seconds in 10 s: three cores busy.
        stat.write_text(stat.read_text().replace("usage_usec 123456789", "usage_usec 153456789"))

    first, second = collect_twice(c, 10.0, between=advance)
    assert "cpu_cores" not in jobs_of(first)["42"].fields
    assert jobs_of(second)["42"].fields["cpu_cores"] == pytest.approx(3.0)
    assert jobs_of(second)["43"].fields["cpu_cores"] == 0.0
    # A job id reused after a reboot (usage went down): no rate, never negative.
    stat.write_text(stat.read_text().replace("usage_usec 153456789", "usage_usec 1000000"))
    third = jobs_of(c.collect(Cycle(time_ns=T0 + 20 * 10**9)))
    assert third["42"].fields["cpu_seconds"] == pytest.approx(1.0)
    assert "cpu_cores" not in third["42"].fields


def test_cgroup_root_option_and_missing_tree(tmp_path):
    c = JobsCollector(Roots(proc=tmp_path, sys=tmp_path), "n1",
                      JobsOptions(cgroup_root=FIXTURES / "cgroup_v2_slurm/sys/fs/cgroup"))
    assert sorted(jobs_of(c.collect(Cycle(time_ns=T0)))) == ["42", "43", "77"]
    assert list(JobsCollector(Roots(proc=tmp_path, sys=tmp_path), "n1").collect(Cycle(time_ns=T0))) == []
    with pytest.raises(ValueError):
        JobsOptions(max_jobs=0)
    with pytest.raises(ValueError):
        JobsOptions(cgroup_rot="/x")


def test_max_jobs_caps_series(caplog):
    with caplog.at_level(logging.WARNING, logger="fleetwise.collectors.jobs"):
        c = collector("cgroup_v2_slurm", max_jobs=2)
        points = list(c.collect(Cycle(time_ns=T0)))
        list(c.collect(Cycle(time_ns=T0 + 10**10)))
    assert sorted(jobs_of(points)) == ["42", "43"]
    assert sum("max_jobs" in r.getMessage() for r in caplog.records) == 1  # logged once, not every round


def test_job_whose_cgroup_vanishes_mid_round_does_not_stop_others(tmp_path):
    shutil.copytree(FIXTURES / "cgroup_v2_slurm", tmp_path / "h")
    c = JobsCollector(Roots(proc=tmp_path / "h/proc", sys=tmp_path / "h/sys"), "n1")
    memory_max = tmp_path / "h/sys/fs/cgroup/system.slice/slurmstepd.scope/job_42/memory.max"
    memory_max.write_text("garbage\n")
    assert sorted(jobs_of(c.collect(Cycle(time_ns=T0)))) == ["43", "77"]


# ---------------------------------------------------------------- GPU attribution


def test_gpu_attribution_v2():
    shared = {"gpu_processes": [
        {"gpu": "0", "uuid": "GPU-aaaa", "pid": 1234, "memory_used_bytes": 1 << 30, "utilization_ratio": 0.8},
        {"gpu": "0", "uuid": "GPU-aaaa", "pid": 1240, "memory_used_bytes": 2 << 30, "utilization_ratio": 0.8},
        {"gpu": "1", "uuid": "GPU-bbbb", "pid": 1240, "memory_used_bytes": 512 << 20, "utilization_ratio": None},
        {"gpu": "2", "uuid": "GPU-cccc", "pid": 1400, "memory_used_bytes": None, "utilization_ratio": 0.25},
        {"gpu": "3", "uuid": "GPU-dddd", "pid": 99999, "memory_used_bytes": 4 << 30, "utilization_ratio": 1.0},
        {"gpu": "3", "uuid": "GPU-dddd", "pid": 900, "memory_used_bytes": 4 << 30, "utilization_ratio": 1.0},
    ]}
    points = list(collector("cgroup_v2_slurm").collect(Cycle(time_ns=T0, shared=shared)))
    assert_schema(points)
    jobs = jobs_of(points)
    assert jobs["42"].fields["gpus"] == 2
    assert jobs["77"].fields["gpus"] == 1
    assert jobs["43"].fields["gpus"] == 0
    shares = {(p.tags["job"], p.tags["gpu"], p.tags["uuid"]): p.fields for p in points if p.measurement == "job_gpu"}
    # pid 99999 vanished and pid 900 is in no job: GPU 3 is attributed to nobody.
    assert shares == {
        ("42", "0", "GPU-aaaa"): {"memory_used_bytes": 3 << 30, "utilization_ratio": 0.8, **PROCESS},
        ("42", "1", "GPU-bbbb"): {"memory_used_bytes": 512 << 20, **PROCESS},
        ("77", "2", "GPU-cccc"): {"utilization_ratio": 0.25, **PROCESS},
    }
    gpu_point = next(p for p in points if p.measurement == "job_gpu")
    assert set(gpu_point.tags) == {"host", "job", "scheduler", "user", "gpu", "uuid"}
    # Job ids appear only on job measurements.
    assert {p.measurement for p in points} == {"job", "job_gpu"}


def test_gpu_attribution_v1_and_kubernetes():
    shared = {"gpu_processes": [
        {"gpu": "0", "uuid": "GPU-aaaa", "pid": 2134, "memory_used_bytes": 100, "utilization_ratio": 0.5},
        {"gpu": "0", "uuid": "GPU-aaaa", "pid": 2140, "memory_used_bytes": 50, "utilization_ratio": 0.5},
    ]}
    points = list(collector("cgroup_v1_slurm").collect(Cycle(time_ns=T0, shared=shared)))
    (share,) = [p for p in points if p.measurement == "job_gpu"]
    assert share.tags["job"] == "42" and share.tags["user"] == user_name(1000)
    assert share.fields == {"memory_used_bytes": 150, "utilization_ratio": 0.5, **PROCESS}

    shared = {"gpu_processes": [
        {"gpu": "1", "uuid": "GPU-bbbb", "pid": 3200, "memory_used_bytes": 7 << 30, "utilization_ratio": 0.9},
    ]}
    points = list(collector("kubepods").collect(Cycle(time_ns=T0, shared=shared)))
    (share,) = [p for p in points if p.measurement == "job_gpu"]
    assert share.tags == {"host": "n1", "job": POD_G, "scheduler": "kubernetes", "user": "", "gpu": "1",
                          "uuid": "GPU-bbbb"}
    assert jobs_of(points)[POD_G].fields["gpus"] == 1
    assert jobs_of(points)[POD_B].fields["gpus"] == 0


# ---------------------------------------------------------------- cgroup v1 Slurm


def test_v1_slurm_jobs():
    points = list(collector("cgroup_v1_slurm").collect(Cycle(time_ns=T0)))
    assert_schema(points)
    jobs = jobs_of(points)
    assert sorted(jobs) == ["42", "43"]
    assert jobs["42"].tags == {"host": "n1", "job": "42", "scheduler": "slurm", "user": user_name(1000)}
    assert jobs["42"].fields == {
        "cpu_seconds": pytest.approx(987.654321), "cpus_allocated": 5, "memory_bytes": 8589934592,
        "memory_peak_bytes": 12884901888, "memory_limit_bytes": 17179869184, "gpus": 0, "processes": 3,
    }
    assert jobs["43"].tags["user"] == "root"
    assert jobs["43"].fields["memory_limit_bytes"] == 0  # 9223372036854771712 = unlimited
    assert jobs["43"].fields["cpu_seconds"] == pytest.approx(1.5)
    assert jobs["43"].fields["cpus_allocated"] == 2


def test_v1_unknown_uid_falls_back_to_number(tmp_path):
    shutil.copytree(FIXTURES / "cgroup_v1_slurm", tmp_path / "h", symlinks=True)
    uid = 4_000_000_123
    with pytest.raises(KeyError):
        pwd.getpwuid(uid)
    for ctrl in ("memory", "cpu,cpuacct", "cpuset"):
        base = tmp_path / "h/sys/fs/cgroup" / ctrl / "slurm"
        (base / "uid_1000").rename(base / f"uid_{uid}")
    c = JobsCollector(Roots(proc=tmp_path / "h/proc", sys=tmp_path / "h/sys"), "n1")
    assert jobs_of(c.collect(Cycle(time_ns=T0)))["42"].tags["user"] == str(uid)


def test_v1_cpu_cores_from_two_reads(tmp_path):
    shutil.copytree(FIXTURES / "cgroup_v1_slurm", tmp_path / "h", symlinks=True)
    usage = tmp_path / "h/sys/fs/cgroup/cpu,cpuacct/slurm/uid_1000/job_42/cpuacct.usage"
    c = JobsCollector(Roots(proc=tmp_path / "h/proc", sys=tmp_path / "h/sys"), "n1")
    _, second = collect_twice(c, 4.0, between=lambda: usage.write_text(f"{987_654_321_000 + 2 * 10**9}\n"))
    assert jobs_of(second)["42"].fields["cpu_cores"] == pytest.approx(0.5)


# ---------------------------------------------------------------- Kubernetes v2


def test_kubepods_v2():
    points = list(collector("kubepods").collect(Cycle(time_ns=T0)))
    assert_schema(points)
    jobs = jobs_of(points)
    assert sorted(jobs) == sorted([POD_B, POD_G])
    b = jobs[POD_B]
    assert b.tags == {"host": "n1", "job": POD_B, "scheduler": "kubernetes", "user": ""}
    assert b.fields == {"cpu_seconds": pytest.approx(40.0), "cpus_allocated": 16, "memory_bytes": 536870912,
                        "memory_peak_bytes": 805306368, "memory_limit_bytes": 1073741824, "gpus": 0,
                        "processes": 3}
    assert jobs[POD_G].fields["memory_limit_bytes"] == 68719476736
    assert jobs[POD_G].fields["processes"] == 1

