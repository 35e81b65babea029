"""Where a workload's cgroup is: parsing Slurm and Kubernetes cgroup paths on cgroup v1 and v2.

Pure path and text parsing, no metric reading, so every layout can be tested from strings.
Layouts understood (relative to a v2 root or to a v1 controller directory):

- Slurm v1:          slurm/uid_<U>/job_<J>/step_<S>/task_<T>      (also slurm_<node>/ with multiple slurmd)
- Slurm v2:          system.slice/slurmstepd.scope/job_<J>/step_<S>/user/task_<T>
- Slurm v2 (older):  system.slice/<node>_slurmstepd.scope/job_<J>/...
- Kubernetes, systemd driver:  kubepods.slice[/kubepods-<qos>.slice]/kubepods[-<qos>]-pod<uid with _>.slice/...
- Kubernetes, cgroupfs driver: kubepods[/<qos>]/pod<uid>/...
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SLURM = "slurm"
KUBERNETES = "kubernetes"

_SLURM_ROOT = re.compile(r"^(?:slurm(?:_[^/]+)?|(?:[^/]+_)?slurmstepd\.scope)$")
_SLURM_UID = re.compile(r"^uid_(\d+)$")
_SLURM_JOB = re.compile(r"^job_(\d+)$")
_KUBE_ROOT = frozenset({"kubepods", "kubepods.slice"})
# Pod UIDs are UUIDs (dashes become underscores in systemd unit names); static pods use a
# 32-hex-digit config hash instead.
_KUBE_POD = re.compile(r"^(?:kubepods-(?:[a-z]+-)?)?pod([0-9a-fA-F][0-9a-fA-F_-]{31,35})(?:\.slice)?$")

# Glob patterns, relative to a hierarchy root, that can name a job's own cgroup directory.
_CANDIDATES = (
    "system.slice/*slurmstepd.scope/job_*",
    "slurm*/uid_*/job_*",
    "kubepods.slice/*",
    "kubepods.slice/*/*",
    "kubepods/*",
    "kubepods/*/*",
)


@dataclass(frozen=True)
class JobRef:
    """One workload: a Slurm job or a Kubernetes pod. uid is known only from Slurm v1 paths."""

    scheduler: str
    job: str
    uid: int | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.scheduler, self.job)


def parse_cgroup_path(path: str) -> tuple[JobRef, int] | None:
    """A cgroup path -> (the job it belongs to, how many path components name the job's own cgroup).

    The count lets callers tell the job's directory ("/slurm/uid_1/job_4") from a step or container
    below it. None when the path belongs to no job we know.
    """
    parts = [p for p in path.split("/") if p]
    for i, part in enumerate(parts):
        if _SLURM_ROOT.match(part):
            uid = None
            for j in range(i + 1, min(i + 3, len(parts))):
                if m := _SLURM_UID.match(parts[j]):
                    uid = int(m.group(1))
                elif m := _SLURM_JOB.match(parts[j]):
                    return JobRef(SLURM, m.group(1), uid), j + 1
                else:
                    break
            return None
        if part in _KUBE_ROOT:
            for j in range(i + 1, min(i + 3, len(parts))):
                if m := _KUBE_POD.match(parts[j]):
                    return JobRef(KUBERNETES, m.group(1).replace("_", "-")), j + 1
            return None
    return None


def parse_proc_cgroup(text: str) -> JobRef | None:
    """/proc/PID/cgroup ("hierarchy-ID:controllers:path" lines, "0::path" on v2) -> the job, if any.

    Any hierarchy that places the process in a job decides; on hybrid hosts the v2 line may be a
    plain systemd path while the v1 memory line carries the Slurm job.
    """
    for line in text.splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        found = parse_cgroup_path(fields[2])
        if found is not None:
            return found[0]
    return None


def parse_cpuset(text: str) -> int:
    """A cpuset list ("0-3,8") -> number of CPUs (5). Empty -> 0."""
    count = 0
    for item in text.strip().split(","):
        item = item.strip()
        if not item:
            continue
        low, sep, high = item.partition("-")
        count += int(high) - int(low) + 1 if sep else 1
    return count


def find_job_dirs(hierarchy: Path) -> dict[JobRef, Path]:
    """Every job directory under one hierarchy root (the v2 root, or a v1 controller directory)."""
    found: dict[JobRef, Path] = {}
    for pattern in _CANDIDATES:
        for path in sorted(hierarchy.glob(pattern)):
            rel = path.relative_to(hierarchy).as_posix()
            parsed = parse_cgroup_path(rel)
            if parsed is None or not path.is_dir():
                continue
            ref, depth = parsed
            if depth == rel.count("/") + 1:  # the job's own directory, not a step or container below
                found.setdefault(ref, path)
    return found
