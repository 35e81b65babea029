"""jobs: CPU, memory and GPUs of each Slurm job / Kubernetes pod on this host, from its cgroup."""

from __future__ import annotations

import logging
import os
import pwd
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agents.collectors import gpu_alloc
from agents.collectors.base import Collector, Cycle, listdir, read_int, read_text
from agents.collectors.cgroups import KUBERNETES, SLURM, JobRef, find_job_dirs, parse_cpuset, parse_proc_cgroup
from agents.points import FieldValue, Point
from agents.schema.jobs import JOB, JOB_GPU

# memory.limit_in_bytes on v1 reports "no limit" as PAGE_COUNTER_MAX * page size (9223372036854771712
# with 4 KiB pages); anything this large is unlimited.
_V1_UNLIMITED = 1 << 62

# v1 controller directory names; cpuacct is often mounted together with cpu.
_V1_CPUACCT = ("cpuacct", "cpu,cpuacct", "cpuacct,cpu")
_ENVIRON_PIDS = 8  # processes of a job whose environment is read, at most, to find its GPUs


class JobsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cgroup_root: Path | None = Field(None, description="Where the cgroup tree is mounted "
                                      "(default: SYS_ROOT/fs/cgroup).")
    max_jobs: int = Field(1000, ge=1, description="At most this many jobs are reported per round (bounds series).")
    gpustat_dir: Path = Field(Path("/run/gpustat"), description="Where the Slurm prolog records each "
                              "allocated GPU (one file per GPU index holding the job id, as jobstats does).")
    kubelet_checkpoint: Path = Field(Path("/var/lib/kubelet/device-plugins/kubelet_internal_checkpoint"),
                                     description="The kubelet device manager's checkpoint (pods' GPUs).")
    allocation_sources: list[Literal["prolog", "kubelet", "cgroup", "environ"]] = Field(
        ["prolog", "kubelet", "cgroup", "environ"], description="Where to learn which GPUs each job holds, "
        "whether or not it runs on them; earlier sources are trusted over later ones.")


@dataclass
class _Job:
    ref: JobRef
    v2: Path | None = None
    v1: dict[str, Path] = field(default_factory=dict)
    gpus: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)


def _read_opt_text(path: Path) -> str | None:
    try:
        return read_text(path)
    except OSError:
        return None


def _job_pids(top: Path) -> set[str] | None:
    """Processes in a cgroup and every cgroup below it; None when no cgroup.procs could be read.

    Processes sit in the leaves (step_0/user/task_0; v2 forbids them in inner nodes), so the job
    directory's own cgroup.procs is usually empty.
    """
    pids: set[str] = set()
    seen_any = False
    for dirpath, _dirs, files in os.walk(top):
        name = "cgroup.procs" if "cgroup.procs" in files else "tasks" if "tasks" in files else None
        if name is None:
            continue
        text = _read_opt_text(Path(dirpath) / name)
        if text is None:
            continue
        seen_any = True
        pids.update(w for w in text.split() if w.isdigit())
    return pids if seen_any else None


def _count_procs(top: Path) -> int | None:
    pids = _job_pids(top)
    return None if pids is None else len(pids)


def _cpu_usage_usec(cpu_stat: str) -> int | None:
    for line in cpu_stat.splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value)
    return None


def _fill_unused(jobs: dict[tuple[str, str], _Job]) -> None:
    """Utilization and memory of each held GPU on which none of the job's processes runs."""
    holders: dict[tuple[str, str], int] = {}
    for job in jobs.values():
        for gkey in job.gpus:
            holders[gkey] = holders.get(gkey, 0) + 1
    for job in jobs.values():
        for gkey, share in job.gpus.items():
            g = share["gpu"]
            if share.get("running") or g is None:
                continue
            if g.get("processes_known"):
                share["memory"], share["utilization"] = 0, 0.0  # held, nothing of the job runs there
            elif holders[gkey] == 1:
                # No process list (NVML without permission, no KFD): a GPU one job holds alone is the job's.
                share["memory"], share["utilization"] = g.get("memory_used_bytes"), g.get("utilization_ratio")


class JobsCollector(Collector):
    name = "jobs"
    measurements = (JOB, JOB_GPU)
    Options = JobsOptions

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.cgroup_root: Path = self.options.cgroup_root or self.sys("fs", "cgroup")
        self._user_names: dict[int, str] = {}
        self._checkpoint_cache: tuple[tuple[int, int] | None, dict[str, list]] = (None, {})
        # job -> (pids looked at, or None once found for good; the GPUs its environment names)
        self._environ_cache: dict[tuple[str, str], tuple[tuple[str, ...] | None, list]] = {}

    # -- discovery --------------------------------------------------------------------------------

    def _discover(self) -> dict[tuple[str, str], _Job]:
        root = self.cgroup_root
        jobs: dict[tuple[str, str], _Job] = {}
        if (root / "cgroup.controllers").exists():
            for ref, path in find_job_dirs(root).items():
                jobs.setdefault(ref.key, _Job(ref)).v2 = path
            return jobs
        for controller in ("memory", "cpuset", "devices", *_V1_CPUACCT):
            base = root / controller
            if not base.is_dir():
                continue
            kind = "cpuacct" if controller in _V1_CPUACCT else controller
            for ref, path in find_job_dirs(base).items():
                job = jobs.setdefault(ref.key, _Job(ref))
                job.v1.setdefault(kind, path)
        if not jobs:
            self.log_once("absent", logging.DEBUG, "no Slurm or Kubernetes cgroups under %s", root)
        return jobs

    def _attribute_gpus(self, cycle: Cycle, jobs: dict[tuple[str, str], _Job]) -> None:
        """Each job's GPUs: those it holds (the sources in order of trust) and those it runs on."""
        inventory: list[dict[str, Any]] = cycle.shared.get("gpus", [])
        held_by: dict[tuple[str, str], int] = {}  # GPU -> rank of the source that placed it
        if inventory:
            for rank, (source, claims) in enumerate(self._allocations(jobs)):
                for key, refs in claims.items():
                    for ref in refs:
                        g = gpu_alloc.resolve(ref, inventory)
                        gkey = (g["gpu"], g["uuid"]) if g is not None else None
                        if gkey is None or held_by.get(gkey, rank) < rank:
                            continue  # unknown here, or placed already by a more trusted source
                        held_by[gkey] = rank
                        jobs[key].gpus.setdefault(gkey, {"memory": None, "utilization": None, "source": source,
                                                         "gpu": g})
        for proc in cycle.shared.get("gpu_processes", ()):
            try:
                text = read_text(self.proc(str(int(proc["pid"])), "cgroup"))
            except (OSError, KeyError, TypeError, ValueError):
                continue  # the process exited between NVML's list and now
            ref = parse_proc_cgroup(text)
            if ref is None:
                continue
            job = jobs.setdefault(ref.key, _Job(ref))
            gpu, uuid = str(proc.get("gpu", "")), str(proc.get("uuid", ""))
            share = job.gpus.setdefault((gpu, uuid), {"memory": None, "utilization": None, "source": "process",
                                                      "gpu": None})
            share["running"] = True
            used = proc.get("memory_used_bytes")
            if used is not None:
                share["memory"] = (share["memory"] or 0) + int(used)
            util = proc.get("utilization_ratio")
            if util is not None and share["utilization"] is None:
                share["utilization"] = float(util)
        _fill_unused(jobs)

    def _allocations(self, jobs: dict[tuple[str, str], _Job]) -> Iterator[tuple[str, dict[tuple[str, str], list]]]:
        """(source, job key -> GpuRefs) for each enabled source, most trusted first; only jobs on this host."""
        enabled = set(self.options.allocation_sources)
        if "prolog" in enabled:
            claims: dict[tuple[str, str], list] = {}
            for name in listdir(self.options.gpustat_dir):
                text = _read_opt_text(self.options.gpustat_dir / name)
                found = gpu_alloc.parse_gpustat(name, text) if text is not None else None
                if found is not None and (SLURM, found[0]) in jobs:  # a file the epilog left: not a job here
                    claims.setdefault((SLURM, found[0]), []).append(found[1])
            yield "prolog", claims
        if "kubelet" in enabled:
            pods = self._checkpoint()
            yield "kubelet", {(KUBERNETES, uid): refs for uid, refs in pods.items() if (KUBERNETES, uid) in jobs}
        if "cgroup" in enabled:
            claims = {}
            for key, job in jobs.items():
                text = _read_opt_text(job.v1["devices"] / "devices.list") if "devices" in job.v1 else None
                refs = gpu_alloc.parse_devices_list(text) if text is not None else None
                if refs:
                    claims[key] = refs
            yield "cgroup", claims
        if "environ" in enabled:
            yield "environ", {key: refs for key, job in jobs.items() if (refs := self._environ(key, job))}

    def _checkpoint(self) -> dict[str, list]:
        path = self.options.kubelet_checkpoint
        try:
            st = path.stat()
        except OSError:
            return {}
        stamp = (st.st_mtime_ns, st.st_size)
        if self._checkpoint_cache[0] != stamp:
            try:
                pods = gpu_alloc.parse_kubelet_checkpoint(read_text(path))
            except (OSError, ValueError) as e:
                self.log_once(("checkpoint", str(e)), logging.WARNING, "jobs: %s: %s", path, e)
                pods = {}
            self._checkpoint_cache = (stamp, pods)
        return self._checkpoint_cache[1]

    def _environ(self, key: tuple[str, str], job: _Job) -> list:
        """GPUs named in the environment of the job's processes. A job's allocation does not change while it
        runs, so a found answer is kept; an empty one is asked again only when the job's processes change."""
        cached = self._environ_cache.get(key)
        top = job.v2 if job.v2 is not None else next(iter(job.v1.values()), None)
        if cached is not None and cached[0] is None:
            return cached[1]
        pids = tuple(sorted(_job_pids(top) or ())[:_ENVIRON_PIDS]) if top is not None else ()
        if cached is not None and cached[0] == pids:
            return cached[1]
        for pid in pids:
            try:
                with open(self.proc(pid, "environ"), "rb") as f:
                    refs = gpu_alloc.parse_environ(f.read())
            except OSError:
                continue  # exited, or not ours to read (the agent runs as root on a real node)
            if refs:
                self._environ_cache[key] = (None, refs)
                return refs
        self._environ_cache[key] = (pids, [])
        return []

    # -- users -----------------------------------------------------------------------------------

    def _user_name(self, uid: int) -> str:
        if uid not in self._user_names:
            try:
                self._user_names[uid] = pwd.getpwuid(uid).pw_name
            except KeyError:
                self._user_names[uid] = str(uid)  # a directory-service user this host cannot resolve
        return self._user_names[uid]

    def _user(self, job: _Job) -> str:
        if job.ref.scheduler != SLURM:
            return ""
        if job.ref.uid is not None:
            return self._user_name(job.ref.uid)
        # v2 paths carry no uid. slurmstepd creates the directory as root, so only a non-root
        # owner says who the job belongs to.
        if job.v2 is not None:
            try:
                owner = job.v2.stat().st_uid
            except OSError:
                return ""
            if owner != 0:
                return self._user_name(owner)
        return ""

    # -- reading ---------------------------------------------------------------------------------

    def _read_v2(self, path: Path) -> dict[str, FieldValue]:
        fields: dict[str, FieldValue] = {}
        cpu_stat = _read_opt_text(path / "cpu.stat")
        usec = _cpu_usage_usec(cpu_stat) if cpu_stat is not None else None
        if usec is not None:
            fields["cpu_seconds"] = usec / 1e6
        cpus = _read_opt_text(path / "cpuset.cpus.effective")
        if cpus is None:
            cpus = _read_opt_text(path / "cpuset.cpus")
        fields["cpus_allocated"] = parse_cpuset(cpus) if cpus is not None else 0
        if (current := read_int(path / "memory.current")) is not None:
            fields["memory_bytes"] = current
        if (peak := read_int(path / "memory.peak")) is not None:  # Linux >= 5.19
            fields["memory_peak_bytes"] = peak
        limit = _read_opt_text(path / "memory.max")
        if limit is not None:
            limit = limit.strip()
            fields["memory_limit_bytes"] = 0 if limit == "max" else int(limit)
        if (procs := _count_procs(path)) is not None:
            fields["processes"] = procs
        return fields

    def _read_v1(self, dirs: dict[str, Path]) -> dict[str, FieldValue]:
        fields: dict[str, FieldValue] = {}
        if "cpuacct" in dirs and (ns := read_int(dirs["cpuacct"] / "cpuacct.usage")) is not None:
            fields["cpu_seconds"] = ns / 1e9
        cpus = _read_opt_text(dirs["cpuset"] / "cpuset.cpus") if "cpuset" in dirs else None
        fields["cpus_allocated"] = parse_cpuset(cpus) if cpus is not None else 0
        if "memory" in dirs:
            mem = dirs["memory"]
            if (usage := read_int(mem / "memory.usage_in_bytes")) is not None:
                fields["memory_bytes"] = usage
            if (peak := read_int(mem / "memory.max_usage_in_bytes")) is not None:
                fields["memory_peak_bytes"] = peak
            if (limit := read_int(mem / "memory.limit_in_bytes")) is not None:
                fields["memory_limit_bytes"] = 0 if limit >= _V1_UNLIMITED else limit
        # Any controller's tree holds the same processes; memory is the one Slurm always constrains.
        for kind in ("memory", "cpuacct", "cpuset", "devices"):
            if kind in dirs and (procs := _count_procs(dirs[kind])) is not None:
                fields["processes"] = procs
                break
        return fields

    # -- the round -------------------------------------------------------------------------------

    def collect(self, cycle: Cycle) -> Iterator[Point]:
        jobs = self._discover()
        self._environ_cache = {k: v for k, v in self._environ_cache.items() if k in jobs}
        self._attribute_gpus(cycle, jobs)
        keys = sorted(jobs)
        if len(keys) > self.options.max_jobs:
            self.log_once("cap", logging.WARNING, "%d jobs on this host; reporting the first %d (jobs.max_jobs)",
                          len(keys), self.options.max_jobs)
            keys = keys[: self.options.max_jobs]
        for key in keys:
            job = jobs[key]
            try:
                yield from self._job_points(cycle, job)
            except (OSError, ValueError) as exc:
                # A job ending mid-read (its cgroup removed) must not cost the other jobs their points.
                self.log.debug("job %s/%s skipped: %s", job.ref.scheduler, job.ref.job, exc)

    def _job_points(self, cycle: Cycle, job: _Job) -> Iterator[Point]:
        if job.v2 is not None:
            fields = self._read_v2(job.v2)
        elif job.v1:
            fields = self._read_v1(job.v1)
        else:
            fields = {}  # known only through a GPU process: its cgroup lies outside cgroup_root
        fields["gpus"] = len({uuid or gpu for gpu, uuid in job.gpus})
        if "cpu_seconds" in fields:
            self.add_rate(fields, "cpu_cores", ("cpu", *job.ref.key), fields["cpu_seconds"], cycle)
        tags = {"job": job.ref.job, "scheduler": job.ref.scheduler, "user": self._user(job)}
        points = [self.point(JOB, tags, fields, cycle)]
        for (gpu, uuid), share in sorted(job.gpus.items()):
            gpu_fields: dict[str, FieldValue] = {"allocation_source": share["source"]}
            if share["memory"] is not None:
                gpu_fields["memory_used_bytes"] = int(share["memory"])
            if share["utilization"] is not None:
                gpu_fields["utilization_ratio"] = float(share["utilization"])
            points.append(self.point(JOB_GPU, {**tags, "gpu": gpu, "uuid": uuid}, gpu_fields, cycle))
        yield from points
