"""textfile: application progress that jobs write as Prometheus text files (node_exporter convention).

A job writes e.g. fleetwise_job_progress_total{job="123",unit="samples"} 51200 to DIR/job-123.prom.tmp
and renames it to DIR/job-123.prom, so a reader never sees half a file.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from agents.collectors.base import Collector, Cycle, read_text
from agents.points import FieldValue, Point
from agents.schema.jobs import JOB_PROGRESS

log = logging.getLogger("fleetwise.collectors.textfile")

# The parser strips _total from a counter's family name; an untyped sample keeps it.
PROGRESS_FAMILIES = frozenset({"fleetwise_job_progress", "fleetwise_job_progress_total"})
PROGRESS_SAMPLES = frozenset({"fleetwise_job_progress_total", "fleetwise_job_progress"})


class TextfileOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    directory: Path = Field(Path("/var/lib/fleetwise/textfile"), description="Where jobs drop *.prom files.")
    max_series: int = Field(1000, ge=1, description="At most this many progress series per round (bounds series).")
    max_file_bytes: int = Field(1 << 20, ge=1, description="Larger files are skipped (a runaway writer).")


class TextfileError(ValueError):
    """A *.prom file that cannot be used."""


def parse_progress(text: str) -> list[tuple[dict[str, str], float]]:
    """Progress samples of one file as (tags, value). Raises TextfileError when the file is malformed."""
    from prometheus_client.parser import text_string_to_metric_families

    out = []
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as exc:  # the parser raises ValueError, IndexError, ... on malformed input
        raise TextfileError(f"not Prometheus text format: {exc}") from exc
    for family in families:
        if family.name not in PROGRESS_FAMILIES:
            continue
        for sample in family.samples:
            if sample.name not in PROGRESS_SAMPLES:
                continue  # _created and the like
            labels = sample.labels
            job = labels.get("job", "")
            if not job or not math.isfinite(sample.value):
                continue
            tags = {"job": job, "scheduler": labels.get("scheduler") or "slurm",
                    "user": labels.get("user", ""), "unit": labels.get("unit", "")}
            out.append((tags, float(sample.value)))
    return out


class TextfileCollector(Collector):
    name = "textfile"
    measurements = (JOB_PROGRESS,)
    Options = TextfileOptions

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._logged: set[tuple[str, str]] = set()

    def _log_once(self, path: Path, problem: str) -> None:
        key = (str(path), problem)
        if key not in self._logged:
            self._logged.add(key)
            log.warning("textfile %s skipped: %s (logged once)", path, problem)

    def _read(self, path: Path) -> list[tuple[dict[str, str], float]]:
        try:
            if path.stat().st_size > self.options.max_file_bytes:
                raise TextfileError(f"larger than {self.options.max_file_bytes} bytes")
            return parse_progress(read_text(path))
        except FileNotFoundError:
            return []  # removed between listing and reading: the job ended
        except (OSError, TextfileError) as exc:
            self._log_once(path, str(exc))
            return []

    def collect(self, cycle: Cycle) -> Iterator[Point]:
        directory = self.options.directory
        if not directory.is_dir():
            if ("", "absent") not in self._logged:
                self._logged.add(("", "absent"))
                log.debug("textfile directory %s does not exist", directory)
            return
        # Only *.prom: writers create NAME.prom.$$ and rename it, so a temp file is never half-read.
        series: dict[tuple[str, ...], float] = {}
        for path in sorted(directory.glob("*.prom")):
            if not path.is_file():
                continue
            for tags, value in self._read(path):
                series[(tags["job"], tags["scheduler"], tags["user"], tags["unit"])] = value
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
