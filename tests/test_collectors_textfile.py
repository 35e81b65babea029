"""textfile collector: job progress from *.prom files in the node_exporter textfile convention."""

from __future__ import annotations

import logging
import shutil

import pytest

from agents.collectors.base import Cycle, Roots
from agents.collectors.textfile import TextfileCollector, TextfileError, TextfileOptions, parse_progress
from tests.conftest import FIXTURES
from tests.helpers import collect_twice
from tests.schema_check import assert_schema

POD = "9a8b7c6d-5e4f-4321-9876-0fedcba98765"


def collector(directory) -> TextfileCollector:
    return TextfileCollector(Roots(), "n1", TextfileOptions(directory=directory))


def series(points) -> dict[tuple[str, str], dict]:
    return {(p.tags["job"], p.tags["unit"]): p for p in points}


def test_parse_progress_typed_and_untyped():
    typed = parse_progress('# TYPE fleetwise_job_progress_total counter\n'
                           'fleetwise_job_progress_total{job="7",unit="steps"} 10\n')
    assert typed == [({"job": "7", "scheduler": "slurm", "user": "", "unit": "steps"}, 10.0)]
    untyped = parse_progress('fleetwise_job_progress_total{job="8",unit="steps",scheduler="kubernetes"} 3\n')
    assert untyped == [({"job": "8", "scheduler": "kubernetes", "user": "", "unit": "steps"}, 3.0)]
    # No job label: cannot be attributed, dropped. Other metrics are ignored.
    assert parse_progress('fleetwise_job_progress_total{unit="steps"} 3\nother_total 4\n') == []
    with pytest.raises(TextfileError):
        parse_progress('fleetwise_job_progress_total{job="1" 5\n')


def test_textfile_reads_good_files_despite_a_malformed_one(caplog):
    c = collector(FIXTURES / "textfile")
    with caplog.at_level(logging.WARNING, logger="fleetwise.collectors.textfile"):
        points = list(c.collect(Cycle(time_ns=1)))
        list(c.collect(Cycle(time_ns=2)))
    assert_schema(points)
    s = series(points)
    # broken.prom (job 124) is skipped; the temp file train-123.prom.4711 is never read.
    assert sorted(s) == [("123", "samples"), ("123", "tokens"), (POD, "requests")]
    assert s[("123", "samples")].fields == {"progress": 51200.0}
    assert s[("123", "tokens")].fields == {"progress": 26214400.0}
    assert s[("123", "samples")].tags == {"host": "n1", "job": "123", "scheduler": "slurm", "user": "alice",
                                          "unit": "samples"}
    assert s[(POD, "requests")].tags["scheduler"] == "kubernetes"
    assert s[(POD, "requests")].tags["user"] == ""
    warnings = [r.getMessage() for r in caplog.records if "broken.prom" in r.getMessage()]
    assert len(warnings) == 1  # logged once across two rounds


def test_progress_rate_from_two_reads_and_reset(tmp_path):
    shutil.copytree(FIXTURES / "textfile", tmp_path / "tf")
    prom = tmp_path / "tf" / "train-123.prom"
    c = collector(tmp_path / "tf")

    def advance() -> None:
        # Atomic rewrite as a writer does it: temp file, then rename.
        tmp = tmp_path / "tf" / "train-123.prom.4712"
        tmp.write_text(prom.read_text().replace("} 51200", "} 56320"))
        tmp.rename(prom)

    first, second = collect_twice(c, 10.0, between=advance)
    assert "progress_per_second" not in series(first)[("123", "samples")].fields
    assert series(second)[("123", "samples")].fields["progress_per_second"] == pytest.approx(512.0)
    assert series(second)[("123", "tokens")].fields["progress_per_second"] == 0.0
    # The job restarted from scratch: progress went down, no rate rather than a negative one.
    prom.write_text('fleetwise_job_progress_total{job="123",unit="samples",user="alice"} 100\n')
    third = series(c.collect(Cycle(time_ns=1_700_000_000 * 10**9 + 20 * 10**9)))
    assert third[("123", "samples")].fields == {"progress": 100.0}
    assert ("123", "tokens") not in third


def test_missing_directory_yields_nothing(tmp_path):
    assert list(collector(tmp_path / "absent").collect(Cycle(time_ns=1))) == []


def test_max_series_caps(tmp_path):
    (tmp_path / "a.prom").write_text("".join(f'fleetwise_job_progress_total{{job="{i}",unit="s"}} {i}\n'
                                             for i in range(10, 20)))
    c = TextfileCollector(Roots(), "n1", TextfileOptions(directory=tmp_path, max_series=3))
    assert [p.tags["job"] for p in c.collect(Cycle(time_ns=1))] == ["10", "11", "12"]


def test_oversized_file_is_skipped(tmp_path):
    (tmp_path / "big.prom").write_text('fleetwise_job_progress_total{job="1",unit="s"} 1\n' + "#" * 200 + "\n")
    (tmp_path / "ok.prom").write_text('fleetwise_job_progress_total{job="2",unit="s"} 2\n')
    c = TextfileCollector(Roots(), "n1", TextfileOptions(directory=tmp_path, max_file_bytes=100))
    assert [p.tags["job"] for p in c.collect(Cycle(time_ns=1))] == ["2"]


def test_job_info_from_labels_and_separate_samples(tmp_path):
    (tmp_path / "jobinfo-42.prom").write_text(
        'fleetwise_job_info{job="42",user="ada",name="train-resnet-0042",account="ml",partition="gpu",'
        'command="python train.py",cpus="32",gpus="4"} 1\n'
        'fleetwise_job_time_limit_seconds{job="42",user="ada"} 86400\n'
        # a bad number is left out, the rest of the file still counts
        'fleetwise_job_info{job="43",name="eval",gpus="many"} 1\n'
        'fleetwise_job_gpus_requested{job="43"} -1\n')
    (tmp_path / "job-42.prom").write_text('fleetwise_job_progress_total{job="42",user="ada",unit="samples"} 10\n')
    points = list(collector(tmp_path).collect(Cycle(time_ns=5)))
    assert_schema(points)
    info = {p.tags["job"]: p for p in points if p.measurement == "job_info"}
    assert info["42"].tags == {"host": "n1", "job": "42", "scheduler": "slurm", "user": "ada"}
    assert info["42"].fields == {"name": "train-resnet-0042", "account": "ml", "partition": "gpu",
                                 "command": "python train.py", "cpus_requested": 32, "gpus_requested": 4,
                                 "time_limit_seconds": 86400.0}
    assert info["43"].fields == {"name": "eval", "account": "", "partition": "", "command": ""}
    assert [p.fields for p in points if p.measurement == "job_progress"] == [{"progress": 10.0}]


def test_slurm_prolog_writes_job_info_the_collector_reads(tmp_path):
    import os
    import subprocess

    root = FIXTURES.parent.parent
    env = {"PATH": "/usr/bin:/bin", "FLEETWISE_ROOT": str(tmp_path), "SLURM_JOB_ID": "4242",
           "SLURM_JOB_UID": str(os.getuid()), "SLURM_JOB_USER": "ada", "SLURM_JOB_NAME": 'run "7"\\x',
           "SLURM_JOB_ACCOUNT": "physics", "SLURM_JOB_PARTITION": "gpu"}
    for name in ("prolog", "epilog"):
        script = root / "deploy" / "slurm" / f"{name}.d" / "fleetwise-job.sh"
        assert subprocess.run(["/bin/sh", str(script)], env=env, timeout=30).returncode == 0
        points = list(collector(tmp_path / "textfile").collect(Cycle(time_ns=1)))
        if name == "prolog":
            (p,) = points
            assert p.measurement == "job_info"
            assert p.tags == {"host": "n1", "job": "4242", "scheduler": "slurm", "user": "ada"}
            assert p.fields == {"name": 'run "7"\\x', "account": "physics", "partition": "gpu", "command": ""}
        else:
            assert points == []  # the epilog removed it


def test_a_jobs_own_file_reports_only_that_job_and_no_identity(tmp_path, caplog):
    """job-NNN.prom is writable by job NNN (Slurm prolog): it cannot speak for job 999 or set job_info."""
    (tmp_path / "job-42.prom").write_text(
        'fleetwise_job_progress_total{job="42",unit="steps"} 100\n'
        'fleetwise_job_progress_total{job="999",unit="steps"} 5\n'
        'fleetwise_job_info{job="42",user="root",name="spoofed"} 1\n')
    (tmp_path / "jobinfo-42.prom").write_text('fleetwise_job_info{job="42",user="alice",name="train"} 1\n')
    (tmp_path / "site.prom").write_text('fleetwise_job_progress_total{job="7",unit="steps"} 3\n')
    with caplog.at_level(logging.WARNING, logger="fleetwise.collectors.textfile"):
        points = list(collector(tmp_path).collect(Cycle(time_ns=1)))
    progress = {p.tags["job"]: p.fields["progress"] for p in points if p.measurement == "job_progress"}
    assert progress == {"42": 100.0, "7": 3.0}  # job 999's sample from job 42's file is dropped
    infos = [(p.tags["user"], p.fields.get("name")) for p in points if p.measurement == "job_info"]
    assert infos == [("alice", "train")]
    assert "samples for 1 other job(s) ignored" in caplog.text and "cannot set its identity" in caplog.text
    assert "999" not in caplog.text  # labels are the file's content: counted, never quoted
