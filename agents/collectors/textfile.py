"""textfile: application progress that jobs write as Prometheus text files (node_exporter convention).

A job writes e.g. fleetwise_job_progress_total{job="123",unit="samples"} 51200 to DIR/job-123.prom.tmp
and renames it to DIR/job-123.prom, so a reader never sees half a file.

The job's identity comes the same way (the Slurm prolog writes it, root-owned, as DIR/jobinfo-123.prom):
    fleetwise_job_info{job="123",user="alice",name="train-resnet",account="ml",partition="gpu",command=""} 1
optionally with cpus, gpus and time_limit_seconds labels, or as separate samples
    fleetwise_job_time_limit_seconds{job="123"} 86400
    fleetwise_job_cpus_requested{job="123"} 32
    fleetwise_job_gpus_requested{job="123"} 4
All samples of one job (job, scheduler, user) merge into one job_info point per round.

Files are opened without following links, except the one the Slurm prolog (root) makes from
DIR/job-N.prom to ../jobs/N/progress.prom: a link in DIR may point inside DIR's parent, and what it
points to must itself be a regular file, not another link. So a job cannot make its progress.prom a
link to /proc/self/environ or a secret. Log lines name the file and a line number, never its content.
"""

from __future__ import annotations

import logging
import math
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from agents.collectors.base import Collector, Cycle
from agents.points import FieldValue, Point
from agents.schema.jobs import JOB_INFO, JOB_PROGRESS

# job-NNN.prom: the file the Slurm prolog lets job NNN write (deploy/slurm/prolog.d).
_JOB_FILE = re.compile(r"job-([A-Za-z0-9_.\-]+)\.prom")

# The parser strips _total from a counter's family name; an untyped sample keeps it.
PROGRESS_FAMILIES = frozenset({"fleetwise_job_progress", "fleetwise_job_progress_total"})
PROGRESS_SAMPLES = frozenset({"fleetwise_job_progress_total", "fleetwise_job_progress"})
INFO_SAMPLE = "fleetwise_job_info"
INFO_STRINGS = ("name", "account", "partition", "command")
# numeric job_info fields: (label on the info sample, separate sample name)
INFO_NUMBERS = {"cpus_requested": ("cpus", "fleetwise_job_cpus_requested"),
                "gpus_requested": ("gpus", "fleetwise_job_gpus_requested"),
                "time_limit_seconds": ("time_limit_seconds", "fleetwise_job_time_limit_seconds")}
_NUMBER_SAMPLES = {sample: field for field, (_, sample) in INFO_NUMBERS.items()}


class TextfileOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    directory: Path = Field(Path("/var/lib/fleetwise/textfile"), description="Where jobs drop *.prom files.")
    max_series: int = Field(1000, ge=1, description="At most this many progress series per round (bounds series).")
    max_file_bytes: int = Field(1 << 20, ge=1, description="Larger files are skipped (a runaway writer).")


class TextfileError(ValueError):
    """A *.prom file that cannot be used."""


def parse_progress(text: str) -> list[tuple[dict[str, str], float]]:
    """Progress samples of one file as (tags, value). Raises TextfileError when the file is malformed."""
    return parse_textfile(text)[0]


def parse_textfile(text: str) -> tuple[list[tuple[dict[str, str], float]], list[tuple[dict[str, str], dict]]]:
    """(progress samples as (tags, value), job_info as (tags, fields)) of one file.
    Raises TextfileError when the file is malformed."""
    from prometheus_client.parser import text_string_to_metric_families

    out = []
    infos: dict[tuple[str, str, str], dict] = {}
    try:
        families = list(text_string_to_metric_families(text))
    except Exception:  # the parser raises ValueError, IndexError, ... on malformed input
        # Its message quotes the offending line: never log content (the file may hold anything), name the line.
        raise TextfileError(f"line {_first_bad_line(text)}: not Prometheus text format") from None
    for family in families:
        for sample in family.samples:
            labels = sample.labels
            job = labels.get("job", "")
            if not job or not math.isfinite(sample.value):
                continue
            tags = {"job": job, "scheduler": labels.get("scheduler") or "slurm", "user": labels.get("user", "")}
            if family.name in PROGRESS_FAMILIES and sample.name in PROGRESS_SAMPLES:  # not _created and the like
                out.append(({**tags, "unit": labels.get("unit", "")}, float(sample.value)))
            elif sample.name == INFO_SAMPLE:
                fields = infos.setdefault((tags["job"], tags["scheduler"], tags["user"]), {})
                fields.update({k: labels.get(k, "") for k in INFO_STRINGS})
                for field, (label, _) in INFO_NUMBERS.items():
                    if label in labels:
                        fields[field] = _number(labels[label], field)
            elif sample.name in _NUMBER_SAMPLES and sample.value >= 0:
                field = _NUMBER_SAMPLES[sample.name]
                infos.setdefault((tags["job"], tags["scheduler"], tags["user"]), {})[field] = _number(
                    sample.value, field)
    info_out = [({"job": j, "scheduler": sch, "user": u}, {k: v for k, v in f.items() if v is not None})
                for (j, sch, u), f in infos.items()]
    return out, info_out


def _first_bad_line(text: str) -> int:
    """1-based number of the first line at which the parser fails (bisection over prefixes)."""
    from prometheus_client.parser import text_string_to_metric_families

    lines = text.split("\n")

    def fails(k: int) -> bool:
        try:
            list(text_string_to_metric_families("\n".join(lines[:k]) + "\n"))
        except Exception:
            return True
        return False

    lo, hi = 1, len(lines)
    while lo < hi:
        mid = (lo + hi) // 2
        if fails(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def read_textfile(path: Path, directory: Path, max_bytes: int) -> str:
    """The file's text, without following links out of the textfile directory (see the module docstring).

    Raises TextfileError (a reason without content), FileNotFoundError when it vanished."""
    target = path
    if path.is_symlink():
        link = os.readlink(path)
        target = Path(os.path.normpath(path.parent / link))
        allowed = directory.resolve().parent
        if not target.parent.resolve().is_relative_to(allowed):
            raise TextfileError(f"a link pointing outside {allowed}; not followed")
    try:
        # O_NOFOLLOW: the last component must not be a link; O_NONBLOCK: a FIFO must not hang the agent.
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        if e.errno == getattr(os, "ELOOP", 40):
            raise TextfileError("a link to a link; not followed") from None
        raise
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise TextfileError("not a regular file")
        if info.st_size > max_bytes:
            raise TextfileError(f"larger than {max_bytes} bytes")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise TextfileError(f"larger than {max_bytes} bytes")
    return data.decode("utf-8", errors="replace")


def _number(value, field: str) -> float | int | None:
    """A numeric job_info field from a label or sample value; None (left out) when not a number >= 0."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(x) or x < 0:
        return None
    return x if field == "time_limit_seconds" else int(x)


class TextfileCollector(Collector):
    name = "textfile"
    measurements = (JOB_PROGRESS, JOB_INFO)
    Options = TextfileOptions

    def _log_once(self, path: Path, problem: str) -> None:
        self.log_once((str(path), problem), logging.WARNING, "textfile %s skipped: %s (logged once)", path, problem)

    def _owned(self, path: Path, progress: list, info: list) -> tuple[list, list]:
        """A job-NNN.prom file is writable by job NNN (the Slurm prolog links it into the job's own
        directory), so it may report progress for job NNN only, and never an identity: job_info comes from
        root-written files. Without this a job could report progress under another job's id."""
        match = _JOB_FILE.fullmatch(path.name)
        if match is None:
            return progress, info
        owner = match.group(1)
        foreign = {tags["job"] for tags, _ in progress if tags["job"] != owner}
        if foreign:
            # The count, not the ids: labels are the file's content, which a log line never quotes.
            self._log_once(path, f"samples for {len(foreign)} other job(s) ignored: job {owner}'s file reports "
                                 f"job {owner} only")
        if info:
            self._log_once(path, "job_info ignored: a job's own file cannot set its identity")
        return [(tags, v) for tags, v in progress if tags["job"] == owner], []

    def _read(self, path: Path) -> tuple[list, list]:
        try:
            return parse_textfile(read_textfile(path, self.options.directory, self.options.max_file_bytes))
        except FileNotFoundError:
            return [], []  # removed between listing and reading: the job ended
        except TextfileError as exc:
            self._log_once(path, str(exc))
            return [], []
        except OSError as exc:
            self._log_once(path, exc.strerror or type(exc).__name__)
            return [], []

    def collect(self, cycle: Cycle) -> Iterator[Point]:
        directory = self.options.directory
        if not directory.is_dir():
            self.log_once("absent", logging.DEBUG, "textfile directory %s does not exist", directory)
            return
        # Only *.prom: writers create NAME.prom.$$ and rename it, so a temp file is never half-read.
        series: dict[tuple[str, ...], float] = {}
        infos: dict[tuple[str, ...], dict] = {}
        for path in sorted(directory.glob("*.prom")):
            if path.is_dir():
                continue
            progress, info = self._owned(path, *self._read(path))
            for tags, value in progress:
                series[(tags["job"], tags["scheduler"], tags["user"], tags["unit"])] = value
            for tags, fields in info:
                infos.setdefault((tags["job"], tags["scheduler"], tags["user"]), {}).update(fields)
        keys = sorted(series)
        if len(keys) > self.options.max_series:
            self._log_once(directory, f"{len(keys)} progress series; reporting {self.options.max_series}")
            keys = keys[: self.options.max_series]
        for key in keys:
            value = series[key]
            fields: dict[str, FieldValue] = {"progress": value}
            self.add_rate(fields, "progress_per_second", key, value, cycle)
            job, scheduler, user, unit = key
            yield self.point(JOB_PROGRESS, {"job": job, "scheduler": scheduler, "user": user, "unit": unit},
                             fields, cycle)
        info_keys = sorted(infos)
        if len(info_keys) > self.options.max_series:
            self._log_once(directory, f"{len(info_keys)} job_info series; reporting {self.options.max_series}")
            info_keys = info_keys[: self.options.max_series]
        for key in info_keys:
            if not infos[key]:
                continue  # only unusable numbers: nothing to report
            job, scheduler, user = key
            yield self.point(JOB_INFO, {"job": job, "scheduler": scheduler, "user": user}, infos[key], cycle)
